"""The evaluator kinds, one frozen spec each, and their registry ``EVALUATORS``.

A study's ``evaluator: {kind: K, ...}`` and ``nasscale prune --evaluator K:ARG,key=value``
both read into these specs (``evaluator_from_data``, ``evaluator_from_text``); the protocol is
in ``nasscale.scoring.evaluator_spec``.  A new kind is a spec class here with its ``build``
(and its :class:`~nasscale.scoring.evaluators.Evaluator`), one line in ``EVALUATORS`` and a
contract test; ``tests/test_evaluator_kinds.py`` names what a registered kind lacks.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from nasscale.errors import NasscaleError, SpecError, suggest
from nasscale.scoring.evaluator_spec import BuildContext, EvaluatorSpec
from nasscale.scoring.fields import (
    MAX_EPOCHS,
    TRAIN_AMP,
    Choice,
    Device,
    Flag,
    Int,
    Number,
    Resolution,
    Source,
    Text,
    Threads,
    setting,
)
from nasscale.scoring.settings import FINE_TUNE, TrainSettings, recipe_for

PROXY_NAMES = ("naswot", "synflow")  # nasscale.scoring.proxies.PROXIES
COSTS = ("flops", "params")  # the naive baselines a proxy must beat
TRAIN_SIGNALS = ("accuracy", "sotl")


BATCH = Int(1, 65_536)
SUBSET = Int(1, 100_000_000)
STEPS = Int(1, 10_000_000)


@dataclass(frozen=True)
class ProxySpec(EvaluatorSpec):
    """A zero-cost proxy on one batch (real images from ``data``, else random inputs), or a
    cost (FLOPs, params) as the baseline a proxy must beat."""

    kind = "proxy"
    positional = "proxy"
    example = "proxy:synflow,batch_size=8,resolution=0.5x"

    proxy: str = setting("naswot", Choice(PROXY_NAMES + COSTS), "the proxy or cost")
    batch_size: int = setting(16, BATCH, "images in the batch", alias="batch")
    resolution: Any = setting(None, Resolution(), "pixels or a fraction of the candidate's "
                              "(default: the candidate's own)")
    data: str | None = setting(None, Source(), "images for the batch (default: random)")

    def build(self, ctx: BuildContext):
        from nasscale.scoring.evaluators import CostEvaluator, ProxyEvaluator

        if self.proxy in COSTS:
            if ctx.context == "prune":
                raise SpecError(f"{self.proxy} is a cost, not a score to prune by; use a "
                                f"proxy ({', '.join(PROXY_NAMES)}) or train", ("proxy",))
            return CostEvaluator(metric=self.proxy)
        data = ctx.data(self.data) if self.data else None
        evaluator = ProxyEvaluator(proxy=self.proxy, batch_size=self.batch_size,
                                   resolution=self.resolution, data=data)
        if data is not None:
            from nasscale.scoring.data import load_dataset

            evaluator.use_dataset(load_dataset(data))
        return evaluator


@dataclass(frozen=True)
class TrainSpec(EvaluatorSpec):
    """Training on a data set, scored by held-out top-1 (or minus the training loss).  Unset
    keys are the base's: in a study the data's recipe (``recipe_for``, ``nasscale train``'s
    defaults), in ``nasscale prune`` NetAdapt's short-term fine-tuning."""

    kind = "train"
    positional = "data"
    trains = True
    reports_epochs = True
    example = "train:digits,epochs=2,batch_size=64,lr=0.05,resolution=16"

    data: str = setting("digits", Source(), "the data set: a name, an .npz or a folder")
    epochs: int | None = setting(None, Int(1, MAX_EPOCHS), "epochs")
    steps: int | None = setting(None, STEPS, "optimizer steps instead of epochs")
    batch_size: int | None = setting(None, BATCH, "images per step", alias="batch")
    lr: float | None = setting(None, Number(0), "peak learning rate")
    weight_decay: float | None = setting(None, Number(0, closed=True), "weight decay")
    subset: int | None = setting(None, SUBSET, "at most this many training images")
    val_fraction: float | None = setting(None, Number(0, high=1), "held-out fraction")
    resolution: Any = setting(None, Resolution(), "pixels or a fraction of the candidate's "
                              "(default: the data's image size, at least 32)")
    device: str | None = setting(None, Device(), "auto, cpu, cuda or cuda:N")
    amp: str | None = setting(None, Choice(TRAIN_AMP), "mixed precision")
    channels_last: bool | None = setting(None, Flag(), "channels-last memory format")
    augment: bool | None = setting(None, Flag(), "random resized crops and flips")
    progressive: bool | None = setting(None, Flag(), "progressive learning")
    ema: float | None = setting(None, Number(0, high=1), "EMA decay of the weights")
    warmup: float | None = setting(None, Number(0, closed=True, high=1), "warm-up fraction")
    threads: int | None = setting(None, Threads(), "CPU threads (default: the idle cores)")
    signal: str = setting("accuracy", Choice(TRAIN_SIGNALS, " (held-out top-1, or minus "
                          "the training loss: SoTL)"), "what is scored", only="study")
    final_epochs: int | None = setting(None, Int(0, MAX_EPOCHS), "long-term fine-tuning "
                                       "epochs of the final network", only="prune")
    final_lr: float | None = setting(None, Number(0), "its learning rate", only="prune")

    def validate(self, where: str) -> None:
        if self.steps is not None and self.epochs is not None:
            raise SpecError("give steps=N or epochs=E, not both", (f"{where}.steps",))

    def train_settings(self, seed: int, image_size: int | None = None, base=None):
        """The ``TrainSettings``: ``base`` (default the data's recipe) under the keys set."""
        return train_settings(self, recipe_for(self.data) if base is None else base, seed,
                              image_size)

    def build(self, ctx: BuildContext):
        from nasscale.scoring.data import load_dataset
        from nasscale.scoring.evaluators import TrainEvaluator

        source = ctx.data(self.data)
        dataset = load_dataset(source)
        settings = self.train_settings(ctx.seed, max(dataset.image_size), ctx.train_base)
        _check_settings(settings, ctx)
        res = self.resolution
        return TrainEvaluator(data=source, settings=settings,
                              relative=res if isinstance(res, float) else None,
                              signal=self.signal,
                              name="sotl" if self.signal == "sotl" else "accuracy"
                              ).use_dataset(dataset)


def train_settings(spec: EvaluatorSpec, base, seed: int, image_size: int | None = None):
    """``base`` (``TrainSettings``) under the spec's keys that are set; an unset resolution
    is the data's image size (``default_resolution``), a relative one is scaled per candidate
    by the evaluator; epochs without steps replace the base's step budget."""
    from nasscale.scoring.data import default_resolution
    names = {f.name for f in fields(TrainSettings)} - {"resolution", "seed"}
    given = {k: v for k, v in spec.given().items() if k in names}
    if getattr(spec, "epochs", None) is not None and given.get("steps") is None:
        given["steps"] = None
    res = getattr(spec, "resolution", None)
    pixels = res if isinstance(res, int) else default_resolution(image_size)
    return replace(base, **given, resolution=pixels, seed=seed)


def _check_settings(settings, ctx: BuildContext) -> None:
    """E.g. device: cuda on a machine without CUDA, fp16 on the CPU: before any trial."""
    try:
        settings.check()
    except NasscaleError as err:
        if ctx.context != "study":
            raise SpecError(str(err)) from None
        raise NasscaleError(f"{ctx.path or 'study'}: evaluator.{err}") from None


@dataclass(frozen=True)
class PythonSpec(EvaluatorSpec):
    """A user function ``package.module:function(model, spec)`` returning a number (or a
    mapping with ``score``)."""

    kind = "python"
    positional = "target"
    required = ("target",)
    example = "python:my_scores:score"

    target: str | None = setting(None, Text(), "package.module:function")
    name: str = setting("score", Text(), "what the score is called", only="study")

    def build(self, ctx: BuildContext):
        from nasscale.scoring.evaluators import PythonEvaluator

        return PythonEvaluator(target=self.target, name=self.name)


@dataclass(frozen=True)
class InheritSpec(EvaluatorSpec):
    """Weights carried from a trained parent that contains every candidate (the transfer
    package), fine-tuned ``steps`` steps, scored by held-out top-1.  Unset training keys are
    the fine-tuning budget ``FINE_TUNE``."""

    kind = "inherit"
    positional = "data"
    required = ("parent", "weights", "data")
    contexts = ("study",)
    trains = True
    needs_space = True
    example = "inherit:testbed,parent=mobilenet_v3_like_largest,weights=parent.pt,steps=20"

    data: str | None = setting(None, Source(), "the data set the parent was trained on")
    parent: str | None = setting(None, Text(), "a network name or .yaml containing the space")
    weights: str | None = setting(None, Source(), "the parent's trained weights (.pt)")
    steps: int | None = setting(None, STEPS, "fine-tuning steps")
    batch_size: int | None = setting(None, BATCH, "images per step", alias="batch")
    lr: float | None = setting(None, Number(0), "fine-tuning learning rate")
    weight_decay: float | None = setting(None, Number(0, closed=True), "weight decay")
    subset: int | None = setting(None, SUBSET, "at most this many training images")
    val_fraction: float | None = setting(None, Number(0, high=1), "held-out fraction (the "
                                         "parent's)")
    resolution: int | None = setting(None, Resolution(relative=False), "pixels (default: "
                                     "the data's image size, at least 32)")
    device: str | None = setting(None, Device(), "auto, cpu, cuda or cuda:N")
    amp: str | None = setting(None, Choice(TRAIN_AMP), "mixed precision")
    channels_last: bool | None = setting(None, Flag(), "channels-last memory format")
    threads: int | None = setting(None, Threads(), "CPU threads (default: the idle cores)")

    def train_settings(self, seed: int, image_size: int | None = None, base=None):
        """The fine-tuning's ``TrainSettings``: ``base`` (default ``FINE_TUNE``) under the
        keys set."""
        return train_settings(self, FINE_TUNE if base is None else base, seed, image_size)

    def check(self, ctx: BuildContext) -> None:
        from nasscale.scoring.inherit import check_inherit

        check_inherit(self, ctx)

    def build(self, ctx: BuildContext):
        from nasscale.scoring.inherit import make_inherit_evaluator

        return make_inherit_evaluator(self, ctx)


@dataclass(frozen=True)
class SupernetSpec(EvaluatorSpec):
    """A subnetwork cut from a trained supernet of the study's space (``nasscale supernet
    train``): its weights sliced into a standalone module, BatchNorm recalibrated on
    ``calibration_batches`` training batches, scored by held-out top-1 of the data the
    supernet trained on.  No training: seconds per candidate."""

    kind = "supernet"
    positional = "weights"
    required = ("weights",)
    contexts = ("study",)
    needs_space = True
    writes_weights = True
    example = "supernet:supernet.pt,calibration_batches=20"

    weights: str | None = setting(None, Source(), "the supernet file (.pt)")
    data: str | None = setting(None, Source(), "the data it trained on (default: the one "
                               "its file records)")
    calibration_batches: int = setting(20, Int(1, 10_000), "training batches that "
                                       "recompute BatchNorm statistics")
    batch_size: int = setting(64, BATCH, "images per calibration batch", alias="batch")
    held_out: int | None = setting(None, Int(1, 100_000_000), "score on this many held-out "
                                   "images, a fixed seeded draw (default: all)")
    device: str = setting("cpu", Device(), "auto, cpu, cuda or cuda:N")
    threads: int | None = setting(None, Threads(), "CPU threads (default: the idle cores)")

    def check(self, ctx: BuildContext) -> None:
        from nasscale.supernet.evaluate import check_supernet

        check_supernet(self, ctx)

    def build(self, ctx: BuildContext):
        from nasscale.supernet.evaluate import make_supernet_evaluator

        return make_supernet_evaluator(self, ctx)


#: every evaluator kind, by the name study files and ``--evaluator`` use
EVALUATORS: dict[str, type[EvaluatorSpec]] = {
    "proxy": ProxySpec,
    "train": TrainSpec,
    "python": PythonSpec,
    "inherit": InheritSpec,
    "supernet": SupernetSpec,
}


def _kind(name: Any, context: str, where: str) -> type[EvaluatorSpec]:
    kinds = [k for k, cls in EVALUATORS.items() if context in cls.contexts]
    if name not in kinds:
        raise SpecError(f"must be one of {', '.join(kinds)}{suggest(str(name), kinds)}, got "
                        f"{name!r}", (where,))
    return EVALUATORS[name]


def evaluator_from_data(data: Any, context: str = "study",
                        where: str = "evaluator") -> EvaluatorSpec:
    """The spec of a study file's ``evaluator:`` mapping (a ``SpecError`` names the key)."""
    if not isinstance(data, Mapping):
        raise SpecError(f"must be a mapping with a kind ({', '.join(EVALUATORS)}); got "
                        f"{type(data).__name__}", (where,))
    if "kind" not in data:
        raise SpecError("missing field 'kind'", (where,))
    return _kind(data["kind"], context, f"{where}.kind").from_data(data, context, where)


def evaluator_from_text(text: str, context: str = "prune",
                        where: str = "--evaluator") -> EvaluatorSpec:
    """The spec of ``kind[:ARG][,key=value...]`` (the text form of the same fields)."""
    name = text.split(",", 1)[0].partition(":")[0].strip()
    try:
        cls = _kind(name, context, where)
    except SpecError:
        kinds = [k for k, c in EVALUATORS.items() if context in c.contexts]
        raise SpecError(f"unknown kind {name!r}{suggest(name, kinds)}; forms: "
                        f"{evaluator_forms(context)}", (where,)) from None
    return cls.from_text(text, context, where)


def evaluator_forms(context: str = "prune") -> str:
    """Every kind's text form with its keys, for help texts."""
    out = []
    for name, cls in EVALUATORS.items():
        if context not in cls.contexts:
            continue
        head = f"{name}:{cls.positional.upper()}" if cls.positional else name
        keys = "".join(f"[,{f.name}=...]" for f in cls.settings(context)
                       if f.name != cls.positional)
        out.append(head + keys)
    return "; ".join(out)


__all__ = ["EVALUATORS", "InheritSpec", "ProxySpec", "PythonSpec", "SupernetSpec",
           "TrainSpec", "evaluator_forms", "evaluator_from_data", "evaluator_from_text"]
