"""Evaluator specs: what scores a candidate, as data.

Protocol.  One frozen dataclass per evaluator kind (``nasscale.scoring.kinds``, registered
in its ``EVALUATORS`` dict).  Its fields are the kind's keys, each declared once with
:func:`nasscale.scoring.fields.setting` (default, value type, help, the context that takes
it).  ``None`` as a default means "the base's": a training kind's base settings are stated once
where they belong (the data's recipe, ``recipe_for``; the fine-tuning budget ``FINE_TUNE``).

- ``from_data(mapping, context, where)``: a study file's ``evaluator:`` mapping, checked key by
  key; the mapping as written is kept (``as_written``: a study's fingerprint);
- ``from_text("kind:ARG,key=value,...", context)``: the same fields as text (``nasscale prune
  --evaluator``); ``to_text()`` writes it back, so ``from_text(s.to_text()) == s``;
- ``check(ctx)``: what needs files, at load (the data exists, the parent contains the space);
- ``build(ctx)``: the :class:`nasscale.scoring.evaluators.Evaluator` that scores candidates.

Class attributes say what the rest of nasscale may rely on: ``trains`` (it trains: a training
resolution, threads, ``budget_resolution: train``), ``reports_epochs`` (per-epoch values for
Optuna's pruners), ``needs_space`` (it needs the study's search space), ``writes_weights``
(its evaluator writes a scored network's weights: ``write_weights(spec, path)``, which a
search calls for its best and Pareto networks), ``contexts`` (where it can be used:
``study``, ``prune``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from nasscale.errors import SpecError, suggest
from nasscale.scoring.fields import Section

CONTEXTS = ("study", "prune")


@dataclass(frozen=True)
class BuildContext:
    """Where a spec is checked and built: the seed, the file its paths are relative to, how a
    data name or path is resolved, and (for kinds that need it) the study's search space."""

    seed: int = 0
    path: str = ""
    context: str = "study"
    space: Callable[[], Any] | None = None
    #: the ``TrainSettings`` a training kind's unset keys take (``None``: the data's recipe)
    train_base: Any = None

    def data(self, value: str) -> str:
        """A data name as it is, a path relative to ``path`` (``SpecError`` on
        ``evaluator.data`` when it exists nowhere)."""
        from nasscale.scoring.data_source import resolve_data

        return resolve_data(value, self.path)


@dataclass(frozen=True)
class EvaluatorSpec(Section):
    """Base of every evaluator kind's spec (see the module doc for the protocol)."""

    kind: ClassVar[str] = ""
    positional: ClassVar[str | None] = None  # the field ``kind:ARG`` sets in the text form
    required: ClassVar[tuple[str, ...]] = ()
    contexts: ClassVar[tuple[str, ...]] = CONTEXTS
    trains: ClassVar[bool] = False
    reports_epochs: ClassVar[bool] = False
    needs_space: ClassVar[bool] = False
    #: its evaluator can write a scored network's weights (``write_weights(spec, path)``)
    writes_weights: ClassVar[bool] = False
    example: ClassVar[str] = ""  # a text form (docs, and the completeness test)

    @classmethod
    def keys(cls, context: str | None = "study") -> tuple[str, ...]:
        return ("kind", *super().keys(context))

    @classmethod
    def from_data(cls, data: Mapping, context: str = "study", where: str = "evaluator"):
        allowed = cls.keys(context)
        for key in data:
            if key not in allowed:
                other = next((c for c in CONTEXTS if c != context
                              and key in cls.keys(c)), None)
                note = (f" (only {'nasscale prune --evaluator' if other == 'prune' else 'a study'}"
                        f" takes it)" if other else "")
                raise SpecError(f"unknown field{suggest(str(key), allowed)} of kind {cls.kind}"
                                f"{note}; allowed: {', '.join(allowed)}", (f"{where}.{key}",))
        for key in cls.required:
            if data.get(key) in (None, ""):
                raise SpecError(f"kind {cls.kind} needs {key}", (f"{where}.{key}",))
        values = cls.check_data(data, where, context, extra=("kind",))
        spec = cls(**values, written={k: v for k, v in data.items()})
        spec.validate(where)
        return spec

    @classmethod
    def from_text(cls, text: str, context: str = "prune", where: str = "--evaluator"):
        head, *parts = text.split(",") if cls.kind != "python" else (text,)
        _, _, arg = head.partition(":")
        data: dict[str, Any] = {"kind": cls.kind}
        if arg and cls.positional:
            data[cls.positional] = arg
        elif arg:
            raise SpecError(f"kind {cls.kind} takes no ':{arg}'", (where,))
        by_name = {f.name: f for f in cls.settings(context)}
        by_name.update({f.metadata["alias"]: f for f in cls.settings(context)
                        if f.metadata["alias"]})
        for part in parts:
            key, sep, value = (s.strip() for s in part.partition("="))
            if not sep or key not in by_name or key == cls.positional:
                names = [f.name for f in cls.settings(context) if f.name != cls.positional]
                raise SpecError(f"unknown option {part!r}{suggest(key, names)}; kind {cls.kind} "
                                f"takes {', '.join(names)}", (where,))
            f = by_name[key]
            data[f.name] = f.metadata["kind"].parse(value, f"{where}.{f.name}")
        return cls.from_data(data, context, where)

    # --- writing --------------------------------------------------------------------------
    def to_text(self) -> str:
        head = self.kind
        if self.positional and getattr(self, self.positional) is not None:
            head += f":{getattr(self, self.positional)}"
        parts = [head]
        for f in self.settings():
            value = getattr(self, f.name)
            if f.name != self.positional and value is not None and value != f.default:
                parts.append(f"{f.name}={f.metadata['kind'].show(value)}")
        return ",".join(parts)

    def as_written(self) -> dict[str, Any]:
        """The mapping as the study file wrote it (what a stored study is compared with)."""
        return dict(self.written) or {"kind": self.kind, **{
            f.name: getattr(self, f.name) for f in self.settings()
            if getattr(self, f.name) != f.default}}

    def given(self) -> dict[str, Any]:
        """The keys set (not ``None``), checked and normalised."""
        return {f.name: getattr(self, f.name) for f in self.settings()
                if getattr(self, f.name) is not None}

    def replace(self, **changes: Any):
        return replace(self, **changes)

    # --- using ----------------------------------------------------------------------------
    def check(self, ctx: BuildContext) -> None:
        """Load-time checks that need files: by default, that the data exists."""
        from nasscale.scoring.fields import Source

        for f in self.settings():
            value = getattr(self, f.name)
            if isinstance(f.metadata["kind"], Source) and f.name == "data" and value:
                ctx.data(value)

    def build(self, ctx: BuildContext):
        raise NotImplementedError(f"evaluator kind {self.kind} has no build()")


__all__ = ["BuildContext", "CONTEXTS", "EvaluatorSpec"]
