"""The value types of evaluator settings: each checks a value from a study file (YAML) and
parses one from the ``key=value`` text form, with a one-line ``SpecError`` naming the field.

An evaluator spec (``nasscale.scoring.kinds``) declares each of its keys once, as a dataclass
field made by :func:`setting`: its default, its type from this module and one line of help.
The YAML reader, the text reader and the text writer all walk those fields.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from nasscale.errors import SpecError, suggest
from nasscale.scoring.settings import (
    AMP as TRAIN_AMP,
    DEVICES as TRAIN_DEVICES,  # (or cuda:N)
)

MAX_EPOCHS = 100_000  # the most epochs a run takes (nasscale train, a study, a pruner)


class Kind:
    """A value type: ``check`` a YAML value, ``parse`` a text one, ``show`` it as text."""

    want = "a value"

    def check(self, value: Any, where: str) -> Any:
        return value

    def parse(self, text: str, where: str) -> Any:
        return self.check(text, where)

    def show(self, value: Any) -> str:
        return str(value)

    def fail(self, value: Any, where: str):
        raise SpecError(f"must be {self.want}, got {value!r}", (where,))


@dataclass(frozen=True)
class Int(Kind):
    low: int
    high: int

    @property
    def want(self) -> str:  # type: ignore[override]
        return f"an integer >= {self.low} and <= {self.high:,}"

    def check(self, value, where):
        if isinstance(value, bool) or not isinstance(value, int) \
                or not self.low <= value <= self.high:
            self.fail(value, where)
        return value

    def parse(self, text, where):
        try:
            value = int(text)
        except ValueError:
            self.fail(text, where)
        return self.check(value, where)


@dataclass(frozen=True)
class Number(Kind):
    """A finite number above ``low`` (or at least ``low`` when ``closed``), below ``high``."""

    low: float = 0.0
    closed: bool = False
    high: float | None = None

    @property
    def want(self) -> str:  # type: ignore[override]
        if self.high is not None:
            return f"a number in {'[' if self.closed else '('}{self.low:g}, {self.high:g})"
        return f"a number {'>=' if self.closed else '>'} {self.low:g}"

    def check(self, value, where):
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value) \
                or not (value >= self.low if self.closed else value > self.low) \
                or (self.high is not None and not value < self.high):
            self.fail(value, where)
        return value

    def parse(self, text, where):
        try:
            value = float(text)
        except ValueError:
            self.fail(text, where)
        return self.check(value, where)

    def show(self, value) -> str:
        return f"{value:g}"


class Flag(Kind):
    want = "true or false"

    def check(self, value, where):
        if not isinstance(value, bool):
            self.fail(value, where)
        return value

    def parse(self, text, where):
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise SpecError(f"must be 1 or 0 (true or false), got {text!r}", (where,))

    def show(self, value) -> str:
        return "1" if value else "0"


@dataclass(frozen=True)
class Choice(Kind):
    values: tuple[str, ...]
    note: str = ""

    def check(self, value, where):
        if value not in self.values:
            raise SpecError(f"must be one of {', '.join(self.values)}{self.note}, got "
                            f"{value!r}", (where,))
        return value


class Device(Kind):
    want = "auto, cpu, cuda or cuda:N"

    def check(self, value, where):
        if not isinstance(value, str) or not (value in TRAIN_DEVICES or (
                value.startswith("cuda:") and value[5:].isdigit())):
            self.fail(value, where)
        return value


class Text(Kind):
    want = "a non-empty string"

    def check(self, value, where):
        if not isinstance(value, str) or not value:
            self.fail(value, where)
        return value


class Source(Text):
    """A file or data set: a name, or a path relative to the study file (kept as written)."""

    def check(self, value, where):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        return super().check(value, where)


class Resolution(Kind):
    """Pixels (an integer >= 8), or with ``relative`` a fraction of each candidate's own
    resolution such as ``0.25x`` (kept as the float 0.25)."""

    def __init__(self, relative: bool = True):
        self.relative = relative

    def check(self, value, where):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 8:
            return value
        if self.relative and isinstance(value, float) and 0 < value <= 4:
            return value
        if self.relative and isinstance(value, str) and value.strip().endswith("x"):
            try:
                factor = float(value.strip()[:-1])
            except ValueError:
                factor = 0.0
            if 0 < factor <= 4:
                return factor
        if not self.relative:
            raise SpecError(f"must be pixels, an integer >= 8, got {value!r}", (where,))
        raise SpecError(f"must be pixels (an integer >= 8) or a fraction of the candidate's "
                        f"resolution like '0.25x', got {value!r}", (where,))

    def parse(self, text, where):
        text = text.strip()
        try:
            value = text if text.endswith("x") else int(text)
        except ValueError:
            value = text
        return self.check(value, where)

    def show(self, value) -> str:
        return f"{value:g}x" if isinstance(value, float) else str(value)


class Threads(Kind):
    """CPU threads for training: 1 to the cores this process may run on."""

    def check(self, value, where):
        from nasscale.scoring.threads import cores as machine_cores

        cores = machine_cores()
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cores:
            raise SpecError(f"must be an integer from 1 to {cores} (this machine's cores: CPU "
                            f"threads for training), got {value!r}", (where,))
        return value

    def parse(self, text, where):
        try:
            value = int(text)
        except ValueError:
            value = text
        return self.check(value, where)


def setting(default: Any, kind: Kind, help: str, only: str | None = None,
            alias: str | None = None) -> Any:
    """A field of an evaluator spec: one key of the study's ``evaluator:`` mapping and of the
    ``kind:ARG,key=value`` text.  ``only``: the one context (``study`` or ``prune``) that takes
    it; ``alias``: an older text name read as this key."""
    return field(default=default, metadata={"kind": kind, "help": help, "only": only,
                                            "alias": alias})


class Strings(Kind):
    want = "a list of strings"

    def check(self, value, where):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(value, where)
        return tuple(value)

    def show(self, value) -> str:
        return "[" + ", ".join(value) + "]"


@dataclass(frozen=True)
class Section:
    """A frozen mapping of settings read from a file: its keys are the dataclass fields made
    with :func:`setting` (each default stated there, once); ``written`` keeps the mapping as
    written (what a stored study is compared with), read back by ``as_written``, ``[key]``
    and ``get``.  ``from_data`` checks every key with its value type and then ``validate``
    (rules between keys); with ``null_is_default`` a key written as null takes its default."""

    null_is_default: ClassVar[bool] = False
    written: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def settings(cls, context: str | None = None) -> list:
        """The keys (dataclass fields) in declaration order; with ``context``, those that
        context takes."""
        out = [f for f in fields(cls) if "kind" in f.metadata]
        return [f for f in out if context is None or f.metadata["only"] in (None, context)]

    @classmethod
    def keys(cls, context: str | None = None) -> tuple[str, ...]:
        return tuple(f.name for f in cls.settings(context))

    @classmethod
    def check_data(cls, data: Any, where: str, context: str | None = None,
                   extra: tuple[str, ...] = ()) -> dict[str, Any]:
        """The checked values of ``data``'s keys (``SpecError`` naming the first bad one)."""
        allowed = (*extra, *cls.keys(context))
        if not isinstance(data, Mapping):
            raise SpecError(f"must be a mapping with keys {', '.join(allowed)}; got "
                            f"{type(data).__name__}", (where,))
        for key in data:
            if key not in allowed:
                raise SpecError(f"unknown field{suggest(str(key), allowed)}; allowed: "
                                f"{', '.join(allowed)}", (f"{where}.{key}",))
        values = {}
        for f in cls.settings(context):
            if f.name in data and not (cls.null_is_default and data[f.name] is None):
                values[f.name] = f.metadata["kind"].check(data[f.name], f"{where}.{f.name}")
        return values

    @classmethod
    def from_data(cls, data: Any, where: str):
        section = cls(**cls.check_data(data or {}, where), written=dict(data or {}))
        section.validate(where)
        return section

    def validate(self, where: str) -> None:
        """Rules between keys (a ``SpecError`` naming the key); none by default."""

    def as_written(self) -> dict[str, Any]:
        return dict(self.written)

    def as_dict(self) -> dict[str, Any]:
        return self.as_written()

    def __getitem__(self, key: str) -> Any:
        return self.written[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.written.get(key, default)

    def items(self):
        return self.written.items()


__all__ = ["Section", "Strings", "Choice", "Device", "Flag", "Int", "Kind", "Number", "Source",
           "Resolution", "Text", "Threads", "TRAIN_AMP", "TRAIN_DEVICES", "setting"]
