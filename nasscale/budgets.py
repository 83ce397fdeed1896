"""Budgets on FLOPs, params and latency: ``parse_budget(text)`` and ``BudgetResolver``.

A budget is ``<metric> <operator> <bound>``::

    flops <= 300M               params < 5M               latency <= 8ms
    flops <= 0.7x efficientnet_b0                         latency <= 0.8x mobilenet_v3_large
    params <= 80% of mobilenet_v2                         latency <= 1.2 x my_net.yaml

- metric: ``latency``, ``flops`` (alias ``macs``: FLOPs are multiply-accumulates here) or
  ``params``; operator: ``<=``, ``<``, ``>=``, ``>``;
- an absolute bound has a unit: latency ``ms``, ``us`` or ``s`` (required); FLOPs and params an
  optional SI suffix ``K``, ``M``, ``G``, ``T`` (decimal: 300M = 300,000,000), optionally followed
  by ``FLOPs``/``MACs`` or ``params``;
- a relative bound is a factor times a named network (a zoo name or a network YAML path):
  ``0.8x NAME``, ``0.8 x NAME`` or ``80% [of] NAME``.

Resolving turns a budget into an absolute limit.  FLOPs and params of the reference are counted
analytically at the reference's own resolution.  A relative *latency* is resolved by measuring the
reference in this process under the same measurement key as the candidates (or by predicting it
from a latency table, when one is given: then the table's key is the key), so the budget means the
same on every machine.  References are measured once per resolver.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from nasscale.errors import NasscaleError, SpecError
from nasscale.units import (  # noqa: F401  (the budget grammar's amounts live there)
    _NUMBER,
    ALIASES,
    BASE_UNIT,
    METRICS,
    OPERATORS,
    SI,
    TIME_UNITS,
    UNITS_HELP,
    _err,
    _number,
    parse_amount,
    parse_quantity,
)

if TYPE_CHECKING:
    from nasscale.latency.key import MeasurementKey
    from nasscale.latency.measure import Settings
    from nasscale.latency.source import LatencySource
    from nasscale.latency.table import LatencyTable

_BUDGET = re.compile(r"^\s*([A-Za-z]+)\s*(<=|>=|<|>|=<|=>|==|=|≤|≥)\s*(.*?)\s*$")
_RELATIVE_X = re.compile(rf"^({_NUMBER})\s*[x×*]\s*(\S.*)$")
_RELATIVE_PCT = re.compile(rf"^({_NUMBER})\s*%\s*(?:of\s+)?(\S.*)$")


@dataclass(frozen=True)
class Budget:
    """A parsed budget.  Absolute: ``value`` in base units (ms, FLOPs, params).  Relative:
    ``factor`` times ``reference`` (a network name or YAML path)."""

    metric: str
    op: str
    value: float | None = None
    factor: float | None = None
    reference: str | None = None

    @property
    def relative(self) -> bool:
        return self.reference is not None

    def __str__(self) -> str:
        if self.relative:
            return f"{self.metric} {self.op} {self.factor:g}x {self.reference}"
        if self.metric == "latency":
            return f"{self.metric} {self.op} {self.value:g}ms"
        return f"{self.metric} {self.op} {_si(self.value)}"


def _si(value: float) -> str:
    for suffix, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= div:
            return f"{value / div:g}{suffix}"
    return f"{value:g}"


def parse_budget(text: str) -> Budget:
    """Parse one budget (see the module docstring); a malformed one raises a one-line
    ``SpecError`` that names what is allowed."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError("a budget must be a non-empty string like 'flops <= 300M' or "
                        "'latency <= 0.8x mobilenet_v3_large'")
    m = _BUDGET.match(text)
    if not m:
        raise _err(text, "must read '<metric> <operator> <bound>', e.g. 'flops <= 300M' or "
                         "'latency <= 0.8x mobilenet_v3_large'; metrics: "
                         + ", ".join(METRICS) + "; operators: " + ", ".join(OPERATORS))
    word, op, rhs = m.group(1).lower(), m.group(2), m.group(3)
    metric = ALIASES.get(word, word)
    if metric not in METRICS:
        raise _err(text, f"unknown metric {m.group(1)!r}; allowed: {', '.join(METRICS)}")
    op = {"=<": "<=", "=>": ">=", "≤": "<=", "≥": ">="}.get(op, op)
    if op not in OPERATORS:
        raise _err(text, f"operator {op!r} is not allowed; allowed: {', '.join(OPERATORS)}")
    if not rhs:
        raise _err(text, f"lacks a bound after {op!r}; write a number with "
                         f"{UNITS_HELP[metric]} or a factor times a network")
    rel = _RELATIVE_X.match(rhs) or _RELATIVE_PCT.match(rhs)
    if rel:  # no unit starts with x, ×, * or %
        factor = _number(rel.group(1)) / (100.0 if rel.re is _RELATIVE_PCT else 1.0)
        reference = rel.group(2).strip()
        if factor <= 0:
            raise _err(text, f"factor must be > 0, got {rel.group(1)}")
        _check_reference(text, reference)
        return Budget(metric, op, factor=factor, reference=reference)
    value = parse_quantity(rhs, metric, text)
    if value <= 0:
        raise _err(text, f"bound must be > 0, got {rhs}")
    return Budget(metric, op, value=value)


def _check_reference(text: str, reference: str) -> None:
    from nasscale.zoo import load

    try:
        load(reference)
    except NasscaleError as err:
        raise _err(text, f"reference network: {err}") from None


# --- resolution -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ResolvedBudget:
    """A budget with its absolute ``limit`` (ms, FLOPs or params) and where the limit came from."""

    budget: Budget
    limit: float
    reference_value: float | None = None
    source: str = "absolute"
    key: "MeasurementKey | None" = None

    def satisfied(self, value: float) -> bool:
        op = self.budget.op
        return {"<=": value <= self.limit, "<": value < self.limit,
                ">=": value >= self.limit, ">": value > self.limit}[op]

    def margin(self, value: float) -> float:
        """``value / limit - 1``: negative when below the limit."""
        return value / self.limit - 1

    def __str__(self) -> str:
        unit = BASE_UNIT[self.budget.metric]
        limit = f"{self.limit:.3f} ms" if unit == "ms" else f"{_si(self.limit)} {unit}"
        return f"{self.budget} → {self.budget.metric} {self.budget.op} {limit} ({self.source})"

    def as_dict(self) -> dict:
        return {"budget": str(self.budget), "metric": self.budget.metric, "op": self.budget.op,
                "limit": self.limit, "unit": BASE_UNIT[self.budget.metric],
                "reference": self.budget.reference, "factor": self.budget.factor,
                "reference_value": self.reference_value, "source": self.source,
                "key": self.key.as_dict() if self.key else None}


@dataclass
class BudgetResolver:
    """Resolves budgets against one measurement key, each reference network once.

    Reference latencies come from ``source`` (a :class:`nasscale.latency.source.LatencySource`:
    measured here, or predicted by a table, under its key).  Without one: predicted from
    ``table`` when given, else measured under ``settings`` (:class:`nasscale.latency.Settings`)
    with ``measure`` (``nasscale.latency.measure`` by default).  ``resolution``: reference
    networks are counted and measured at it (pixels, or a float: a fraction of their own
    resolution) rather than at their own.
    """

    settings: "Settings | None" = None
    table: "LatencyTable | None" = None
    measure: Callable | None = None
    source: "LatencySource | None" = None
    resolution: int | float | None = None
    _cache: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source is None:
            from nasscale.latency.source import Measured, Predicted

            if self.table is not None:
                self.source = Predicted(self.table)
            else:
                from nasscale.latency.measure import Settings

                self.source = Measured(self.settings or Settings(), measure_fn=self.measure)

    def resolve(self, budget: "Budget | str") -> ResolvedBudget:
        if isinstance(budget, str):
            budget = parse_budget(budget)
        if not budget.relative:
            key = self.key() if budget.metric == "latency" else None
            return ResolvedBudget(budget, float(budget.value), source="absolute", key=key)
        value, source, key = self.reference_value(budget.metric, budget.reference)
        return ResolvedBudget(budget, budget.factor * value, value, source, key)

    def key(self) -> "MeasurementKey":
        return self.source.measurement_key()

    def reference_value(self, metric: str, reference: str):
        """(value, how it was obtained, key) of a reference network, cached."""
        cache_key = (metric, reference)
        if cache_key not in self._cache:
            self._cache[cache_key] = self._reference(metric, reference)
        return self._cache[cache_key]

    def spec(self, reference: str):
        """The reference network, at ``resolution`` when one is set."""
        from nasscale import zoo

        spec = zoo.load(reference)
        if self.resolution is None:
            return spec
        from nasscale.units import eval_resolution

        return spec.replace(resolution=eval_resolution(self.resolution, spec.resolution),
                            expected=None)

    def _reference(self, metric: str, reference: str):
        from nasscale.costs.analytic import deployed_cost

        spec = self.spec(reference)
        if metric in ("flops", "params"):
            cost = deployed_cost(spec)  # what runs: the fused form
            value = cost.flops if metric == "flops" else cost.params
            return float(value), f"{spec.name} counted at {spec.resolution}x{spec.resolution}", None
        return self.source.reference(spec)


def warn_if_noisy(name: str, record) -> None:
    """See :func:`nasscale.latency.report.warn_if_noisy`."""
    from nasscale.latency.report import warn_if_noisy as warn

    warn(name, record)


def resolve_budgets(budgets, settings: "Settings | None" = None,
                    table: "LatencyTable | None" = None) -> list[ResolvedBudget]:
    """Resolve several budgets with one resolver (each reference measured once)."""
    resolver = BudgetResolver(settings=settings, table=table)
    return [resolver.resolve(b) for b in budgets]
