"""The one grammar of amounts in nasscale: numbers with units for latency (``8ms``,
``500us``), FLOPs (``300M``, ``2.5GFLOPs``, ``0.39B``, ``1,000,000``) and params (``5M``), and
the metric names with their aliases (``macs`` = ``flops``: FLOPs are multiply-accumulates
here).  Study constraints (``nasscale.budgets``), ``scale --target-*`` and ``prune --target``
all read amounts through it.  Imports nothing but ``nasscale.errors``."""
from __future__ import annotations

import re

from nasscale.errors import SpecError

METRICS = ("latency", "flops", "params")
ALIASES = {"macs": "flops", "flop": "flops", "parameters": "params", "param": "params"}
OPERATORS = ("<=", "<", ">=", ">")
SI = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9, "t": 1e12}  # b: billion, = G
TIME_UNITS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
UNITS_HELP = {"latency": "ms, us or s (e.g. 'latency <= 8ms')",
              "flops": "none or K, M, G, T (B = G), optionally followed by FLOPs/MACs "
                       "(e.g. 'flops <= 300M', 'flops <= 1,000,000')",
              "params": "none or K, M, G, optionally followed by params (e.g. 'params <= 5M')"}
BASE_UNIT = {"latency": "ms", "flops": "FLOPs", "params": "params"}

_NUMBER = r"(?:[0-9][0-9,_]*(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"  # 1,000,000 too
_ABSOLUTE = re.compile(rf"^({_NUMBER})\s*([A-Za-zµ]*)$")


def _err(text: str, message: str) -> SpecError:
    return SpecError(message, (f"budget {text!r}",))


def parse_quantity(text: str, metric: str, where: str | None = None) -> float:
    """``'300M'`` → 3e8 FLOPs, ``'8ms'``/``'500us'`` → milliseconds, ``'5M params'`` → 5e6."""
    where = where or text
    m = _ABSOLUTE.match(text.replace(" ", "")) if text else None
    if not m:
        raise _err(where, f"cannot read {text!r} as a {metric} bound; write a number with "
                          f"{UNITS_HELP[metric]}, or a factor times a network (e.g. "
                          f"'0.8x mobilenet_v3_large')")
    number, unit = _number(m.group(1)), m.group(2)
    if metric == "latency":
        scale = TIME_UNITS.get(unit.lower() if unit != "µs" else unit)
        if scale is None:
            need = "needs a unit" if not unit else f"unit {unit!r} is not a time unit"
            raise _err(where, f"latency {need}; allowed: {UNITS_HELP['latency']}")
        return number * scale
    low = unit.lower()
    words = ("flops", "flop", "macs", "mac") if metric == "flops" else ("params", "param")
    for word in words:
        if low.endswith(word):
            low = low[: -len(word)]
            break
    if low not in SI or (metric == "params" and low in ("t", "b")):
        raise _err(where, f"unit {unit!r} is not a {metric} unit; allowed: {UNITS_HELP[metric]}")
    return number * SI[low]


def _number(text: str) -> float:
    return float(text.replace(",", "").replace("_", ""))


def parse_amount(text: object, metric: str = "flops", what: str = "budget") -> float:
    """A positive FLOPs or params amount with the budget grammar's units (``2G``, ``0.39B``,
    ``500M``, ``2e9``, ``1,000,000``): what ``scale --target-flops`` and ``--target-params``
    read."""
    from nasscale.errors import field_error

    allowed = ("a positive number with an optional K, M, G (or B) or T suffix "
               "(e.g. 2G, 500M, 5.3M, 2e9)")
    try:
        value = parse_quantity(str(text).strip(), metric, what)
    except SpecError:
        raise field_error(what, allowed, text) from None
    if value <= 0:
        raise field_error(what, allowed, text)
    return value


def eval_resolution(value: int | float | None, candidate: int) -> int:
    """Pixels for a network of ``candidate`` pixels given a resolution that is pixels
    (``64``), a fraction of the network's own (``0.5``: a multiple of 8) or ``None`` (its own):
    evaluators and relative budgets read resolutions this one way."""
    if value is None:
        return candidate
    if isinstance(value, float):
        return max(8, int(round(candidate * value / 8)) * 8)
    return int(value)
