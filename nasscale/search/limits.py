"""The ranges of a study's numbers and the rule of its name, and the one checker each goes
through: ``check_int`` for every integer key (a float, a bool, a string such as ``1e20``, NaN
or a value past its stated bound is a one-line ``SpecError`` naming the field and the range,
never truncated or run), ``check_seconds`` for durations, ``check_study_name`` for names."""
from __future__ import annotations

import math
import re
from typing import Any

from nasscale.errors import SpecError
from nasscale.scoring.fields import MAX_EPOCHS  # noqa: F401  (a study's bound too)

#: Upper bounds of a study's numbers: a typo (``trials: 100000000000``) is refused, not run
MAX_TRIALS = 10_000_000
MAX_TIMEOUT_S = 30 * 24 * 3600  # 30 days
MAX_SEED = 2 ** 32 - 1  # what numpy's and Optuna's samplers take
MAX_THREADS = 1024
#: a study name is a file name (it names the output folder): no path separators, no ``..``
STUDY_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
STUDY_NAME_RULE = ("a file name of letters, digits, '-', '_' and '.' (not first), at most 100 "
                   "characters (--out chooses the output folder)")


def check_int(value: Any, where: str, low: int, high: int, auto: bool = False):
    """``value`` if it is an integer from ``low`` to ``high`` (or ``auto`` where allowed): not
    a bool, a float or a string such as ``1e20``; else a one-line ``SpecError`` naming
    ``where`` and the range.  Every integer key of a study goes through it."""
    if auto and value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"must be an integer >= {low} and <= {high:,}"
                        f"{', or auto' if auto else ''}, got {value!r}", (where,))
    return value


def check_seconds(value: Any, where: str) -> float:
    """A duration in seconds: a finite number > 0 and at most ``MAX_TIMEOUT_S`` (30 days)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise SpecError(f"must be a number of seconds > 0 and <= {MAX_TIMEOUT_S:,} (30 days), "
                        f"got {value!r}", (where,))
    return value


def check_study_name(value: Any, where: str = "name") -> str:
    """A study name that is safe as a file name (it names the output folder): letters,
    digits, ``-``, ``_`` and ``.`` (not first), at most 100 characters."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not STUDY_NAME.fullmatch(value):
        raise SpecError(f"must be {STUDY_NAME_RULE}, got {value!r}", (where,))
    return value
