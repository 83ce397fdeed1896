"""The ``inherit`` evaluator: a candidate starts from the weights of a trained parent that
contains it (carried by ``nasscale.transfer``), is fine-tuned a few steps and scored by
held-out top-1.  Also its load-time checks (the parent must contain the whole space, the
weights must exist and fit the parent) and the ``nasscale train`` command that makes the
parent's weights.  Its keys and defaults: ``InheritSpec`` (``nasscale.scoring.kinds``)."""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError, SpecError
from nasscale.reports.paths import resolve_path
from nasscale.scoring.evaluators import Evaluator
from nasscale.specs import NetworkSpec, resolve
from nasscale.transfer.containment import NotContained, Parent, carry, check_space
from nasscale.transfer.groups import flatten


@dataclass
class InheritEvaluator(Evaluator):
    """Top-1 after carrying the parent's weights and ``settings.steps`` fine-tuning steps."""

    parent: Parent = None  # type: ignore[assignment]
    parent_model: Any = None
    weights: str = ""
    data: str = ""
    dataset: Any = None
    settings: Any = None  # TrainSettings with steps set
    name: str = "accuracy"

    def score(self, spec: NetworkSpec, seed: int, report=None) -> float:
        from nasscale.scoring.train import train_and_evaluate

        plan = self.parent.plan(spec)
        spec = spec.replace(num_classes=self.dataset.num_classes,
                            resolution=self.settings.resolution)
        model = carry(self.parent_model, self.parent, spec, plan)
        return train_and_evaluate(model, self.dataset, replace(self.settings, seed=seed))

    def describe(self) -> str:
        s = self.settings
        return (f"top-1 after {s.steps} fine-tuning steps from {self.parent.spec.name}'s "
                f"weights on {self.data} at {s.resolution}px")


def weights_path(value: str, study_path: str) -> Path:
    """A weights path of a study file: relative to the study file, or else to the working
    folder when only that one exists."""
    p = Path(value)
    if p.is_absolute() or not study_path:
        return p
    beside = Path(os.path.normpath(Path(study_path).parent / p))
    return p if not beside.exists() and p.exists() else beside


def _parent_spec(value: str, study_path: str, where: str = "evaluator") -> NetworkSpec:
    from nasscale import zoo

    try:
        return zoo.load(resolve_path(value, study_path))
    except NasscaleError as err:
        raise SpecError(f"cannot load {value!r}: {err}", (f"{where}.parent",)) from None


def _aligned(space, parent: NetworkSpec, where: str) -> Parent:
    try:
        return check_space(space, parent)
    except NotContained as err:
        raise SpecError(str(err), (f"{where}.parent",)) from None


def check_inherit(spec, ctx) -> None:
    """At study load: the data exists, the parent loads and contains the whole space, the
    weights file exists (else the command that makes it).  ``SpecError`` with the field."""
    data = ctx.data(spec.data)
    if ctx.space is None:
        raise SpecError("kind inherit searches an architecture space; give space: NAME",
                        ("evaluator.kind",))
    try:
        space = ctx.space()
    except NasscaleError as err:
        raise SpecError(f"cannot load it: {err}", ("space",)) from None
    _aligned(space, _parent_spec(spec.parent, ctx.path), "evaluator")
    weights = weights_path(spec.weights, ctx.path)
    if not weights.exists():
        command = parent_command(spec, resolve_path(spec.parent, ctx.path), data, weights)
        raise SpecError(f"{weights}: no such file; train the parent first: {command}",
                        ("evaluator.weights",))


def parent_command(spec, parent: str, data: str, weights) -> str:
    """The ``nasscale train`` command that makes the parent's weights with the study file's
    own settings: its data (as the working folder sees it), the resolution the candidates
    are fine-tuned at (the data's own image size by default), the held-out fraction (so the
    parent never trains on the images candidates are scored on) and the device."""
    from nasscale.scoring.data_source import default_resolution, image_size

    res = spec.resolution or default_resolution(image_size(data))
    words = ["nasscale", "train", parent, "--data", data, "--resolution", str(res)]
    for key, option in (("val_fraction", "--val-fraction"), ("device", "--device"),
                        ("amp", "--amp"), ("threads", "--threads")):
        if getattr(spec, key) is not None:
            words += [option, str(getattr(spec, key))]
    if spec.channels_last is False:
        words.append("--no-channels-last")
    return shlex.join([*words, "-o", str(weights)])


def make_inherit_evaluator(spec, ctx) -> InheritEvaluator:
    """The evaluator: the parent aligned with the space, its weights loaded and checked
    against the parent and the data (before any trial)."""
    from nasscale.modules.checkpoint import load_weights, read_checkpoint
    from nasscale.scoring.data import load_dataset
    from nasscale.scoring.data_source import data_label
    from nasscale.weights import convert_to_nasscale, detect_source

    where = f"{ctx.path or 'study'}: evaluator"
    parent_spec = _parent_spec(spec.parent, ctx.path)
    try:
        parent = check_space(ctx.space(), parent_spec)
    except NotContained as err:
        raise NasscaleError(f"{where}.parent: {err}") from None
    path = weights_path(spec.weights, ctx.path)
    ckpt = read_checkpoint(str(path), f"{where}.weights:")
    source = detect_source(parent_spec, ckpt.state_dict)
    if source != "nasscale":  # torchvision or timm weights of the parent
        parent_spec, ckpt.state_dict = convert_to_nasscale(
            parent_spec, ckpt.state_dict, source, f"{where}.weights: {path}")
    data_source = ctx.data(spec.data)
    data = load_dataset(data_source)
    n = ckpt.num_classes
    if n is None:
        raise NasscaleError(f"{where}.weights: {path} has no head.classifier.weight: not the "
                            f"weights of a nasscale network")
    if n != data.num_classes:
        shown = ckpt.classes[:4] + (["..."] if len(ckpt.classes or ()) > 4 else [])
        names = f" ({', '.join(shown)})" if ckpt.classes else ""
        raise NasscaleError(
            f"{where}.weights: {path} has a classifier for {n} classes{names} but data "
            f"{spec.data} has {data.num_classes}; the candidates keep the parent's "
            f"classifier, so train the parent on the same data: " + parent_command(
                spec, resolve_path(spec.parent, ctx.path), data_source, path))
    _check_network(ckpt, parent_spec, f"{where}.weights: {path}")
    parent_model = load_weights(ckpt, parent_spec.replace(num_classes=n),
                                where=f"{where}.weights:")
    settings = spec.train_settings(ctx.seed, max(data.image_size))
    try:
        settings.check()
    except NasscaleError as err:
        raise NasscaleError(f"{where}.{err}") from None
    return InheritEvaluator(parent=parent, parent_model=parent_model, weights=str(path),
                            data=data_label(data_source), dataset=data, settings=settings)


def _check_network(ckpt, parent: NetworkSpec, where: str) -> None:
    """A weights file that names its network must hold the parent's blocks."""
    from nasscale.grammar import format_block
    from nasscale.grammar.yaml_io import network_from_data

    data = ckpt.meta.get("network")
    if not isinstance(data, dict):
        return
    try:
        saved = network_from_data(data)
    except NasscaleError:
        return  # not nasscale's own network record: the tensor shapes are still checked

    def blocks(spec: NetworkSpec) -> list[str]:
        return [format_block(b.spec) for b in resolve(flatten(spec)).blocks]

    a, b = blocks(saved), blocks(parent)
    if a != b or saved.head.hidden != parent.head.hidden:
        diff = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        raise NasscaleError(
            f"{where} holds the weights of {saved.name}, not of the parent {parent.name} "
            f"(block {diff}: {a[diff] if diff < len(a) else 'none'} against "
            f"{b[diff] if diff < len(b) else 'none'})")


__all__ = ["InheritEvaluator", "check_inherit", "make_inherit_evaluator", "parent_command",
           "weights_path"]
