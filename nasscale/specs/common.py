"""Small shared vocabulary of the specs: activations, channel rounding, field checks."""
from __future__ import annotations

import math
from typing import Iterable

from nasscale.errors import field_error, one_of

#: Activation names the grammar knows, as written in block strings and YAML.  ``hswish`` and
#: ``hsigmoid`` are MobileNetV3's piecewise-linear approximations; ``silu`` is EfficientNet's swish.
ACTIVATIONS = ("relu", "relu6", "hswish", "silu", "gelu", "sigmoid", "hsigmoid", "none")

#: Gates of a squeeze-and-excitation module.
SE_GATES = ("sigmoid", "hsigmoid")


def make_divisible(value: float, divisor: int = 8, min_ratio: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``min_ratio · value``.

    The rule of the TensorFlow EfficientNet/MobileNet code and torchvision's ``_make_divisible``:
    round half up to a multiple of ``divisor`` (at least ``divisor``); if that lost more than 10 %
    of the value, add one more ``divisor``.  ``divisor == 1`` is plain rounding (at least 1).
    """
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < min_ratio * value:
        new += divisor
    return int(new)


def round_repeats(value: float, mode: str = "ceil") -> int:
    """Round a scaled depth: ``ceil`` (EfficientNet), ``round`` or ``floor``; at least 1."""
    if mode == "ceil":
        return max(1, int(math.ceil(value - 1e-9)))
    if mode == "round":
        return max(1, int(math.floor(value + 0.5)))
    if mode == "floor":
        return max(1, int(math.floor(value + 1e-9)))
    raise field_error("depth", one_of(("ceil", "round", "floor")), mode)


# --- field checks: each raises a SpecError naming the field and what is allowed -----------------

def check_int(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise field_error(name, f"an integer >= {minimum}", value)


def check_number(name: str, value: object, minimum: float = 0.0, strict: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        raise field_error(name, f"a number {'>' if strict else '>='} {minimum:g}", value)


def check_odd(name: str, value: object) -> None:
    check_int(name, value)
    if value % 2 == 0:  # type: ignore[operator]
        raise field_error(name, "an odd integer (1, 3, 5, 7, ...)", value)


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise field_error(name, one_of(choices), value)


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise field_error(name, "true or false", value)
