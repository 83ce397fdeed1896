"""The ``inherit`` evaluator of a study file: its fields checked at load (the parent must
contain the whole space, the weights must exist and fit the parent), and the evaluator built
from them.  The containment and the carrying themselves are in ``search/inherit.py``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError, SpecError
from nasscale.pruning.groups import flatten
from nasscale.search.inherit import InheritEvaluator, NotContained, check_space
from nasscale.specs import NetworkSpec, resolve


def weights_path(value: str, study_path: str) -> Path:
    """A weights path of a study file: relative to the study file, or else to the working
    folder when only that one exists."""
    p = Path(value)
    if p.is_absolute() or not study_path:
        return p
    beside = Path(os.path.normpath(Path(study_path).parent / p))
    return p if not beside.exists() and p.exists() else beside


def _parent_spec(value: Any, study_path: str) -> NetworkSpec:
    from nasscale import zoo
    from nasscale.search.locate import resolve_path

    if not isinstance(value, str) or not value:
        raise SpecError("must be a network name or a network .yaml (e.g. the space's "
                        "largest member, SearchSpace.largest)", ("evaluator.parent",))
    try:
        return zoo.load(resolve_path(value, study_path))
    except NasscaleError as err:
        raise SpecError(f"cannot load {value!r}: {err}", ("evaluator.parent",)) from None


def check_config(evaluator: dict, space: Any, study_path: str) -> None:
    """Validate an ``inherit`` evaluator at study load: settings, the parent, the parent's
    containment of the whole space, and that the weights file exists.  ``SpecError`` with
    the field."""
    from nasscale.search.locate import check_train_settings, resolve_path
    from nasscale.search.space_io import load_space
    from nasscale.search.limits import EVALUATOR_INTS, check_int
    from nasscale.search.study_data import resolve_data

    for key in ("parent", "weights", "data"):
        if not evaluator.get(key):
            raise SpecError(f"kind inherit needs {key}", (f"evaluator.{key}",))
    data = resolve_data(evaluator["data"], study_path)
    for key in ("steps", "batch_size", "subset"):
        if key in evaluator:
            check_int(evaluator[key], f"evaluator.{key}", *EVALUATOR_INTS[key])
    res = evaluator.get("resolution")
    if "resolution" in evaluator and (isinstance(res, bool) or not isinstance(res, int)
                                      or res < 8):
        raise SpecError(f"must be pixels, an integer >= 8, got {res!r}",
                        ("evaluator.resolution",))
    check_train_settings(evaluator)
    if space is None:
        raise SpecError("kind inherit searches an architecture space; give space: NAME",
                        ("evaluator.kind",))
    try:
        search_space = load_space(resolve_path(str(space), study_path))
    except NasscaleError as err:
        raise SpecError(f"cannot load it: {err}", ("space",)) from None
    parent = _parent_spec(evaluator["parent"], study_path)
    try:
        check_space(search_space, parent)
    except NotContained as err:
        raise SpecError(str(err), ("evaluator.parent",)) from None
    weights = weights_path(str(evaluator["weights"]), study_path)
    if not weights.exists():
        parent_path = resolve_path(evaluator["parent"], study_path)
        raise SpecError(f"{weights}: no such file; train the parent first: "
                        f"{parent_command(evaluator, parent_path, data, weights)}",
                        ("evaluator.weights",))


def parent_command(evaluator: dict, parent: str, data: str, weights) -> str:
    """The ``nasscale train`` command that makes the parent's weights with the study file's
    own settings: its data (as the working folder sees it), the resolution the candidates
    are fine-tuned at (the data's own image size by default), the held-out fraction (so the
    parent never trains on the images candidates are scored on) and the device."""
    import shlex

    from nasscale.search.study_data import default_resolution, image_size

    res = evaluator.get("resolution") or default_resolution(image_size(data))
    words = ["nasscale", "train", parent, "--data", data, "--resolution", str(res)]
    for key, option in (("val_fraction", "--val-fraction"), ("device", "--device"),
                        ("amp", "--amp"), ("threads", "--threads")):
        if evaluator.get(key) is not None:
            words += [option, str(evaluator[key])]
    if evaluator.get("channels_last") is False:
        words.append("--no-channels-last")
    return shlex.join([*words, "-o", str(weights)])


def make_inherit_evaluator(study) -> InheritEvaluator:
    """The evaluator of an ``inherit`` study: the parent aligned with the space, its weights
    loaded and checked against the parent and the data (before any trial)."""
    from nasscale.modules.checkpoint import load_weights, read_checkpoint
    from nasscale.scoring.data import load_dataset
    from nasscale.search.locate import make_space, resolve_path
    from nasscale.search.study_data import data_label, dataset_resolution

    cfg = study.evaluator
    where = f"{study.path or 'study'}: evaluator"
    parent_spec = _parent_spec(cfg.parent, study.path)
    try:
        parent = check_space(make_space(study), parent_spec)
    except NotContained as err:
        raise NasscaleError(f"{where}.parent: {err}") from None
    path = weights_path(cfg.weights, study.path)
    ckpt = read_checkpoint(str(path), f"{where}.weights:")
    from nasscale.weights import convert_to_nasscale, detect_source

    source = detect_source(parent_spec, ckpt.state_dict)
    if source != "nasscale":  # torchvision or timm weights of the parent
        parent_spec, ckpt.state_dict = convert_to_nasscale(
            parent_spec, ckpt.state_dict, source, f"{where}.weights: {path}")
    data = load_dataset(study.data_source)
    n = ckpt.num_classes
    if n is None:
        raise NasscaleError(f"{where}.weights: {path} has no head.classifier.weight: not the "
                            f"weights of a nasscale network")
    if n != data.num_classes:
        shown = ckpt.classes[:4] + (["..."] if len(ckpt.classes or ()) > 4 else [])
        names = f" ({', '.join(shown)})" if ckpt.classes else ""
        raise NasscaleError(
            f"{where}.weights: {path} has a classifier for {n} classes{names} but data "
            f"{cfg.data} has {data.num_classes}; the candidates keep the parent's "
            f"classifier, so train the parent on the same data: " + parent_command(
                cfg.as_dict(), resolve_path(cfg.parent, study.path), study.data_source, path))
    _check_network(ckpt, parent_spec, f"{where}.weights: {path}")
    parent_model = load_weights(ckpt, parent_spec.replace(num_classes=n),
                                where=f"{where}.weights:")
    settings = cfg.train_settings(study.seed, dataset_resolution(data))
    try:
        settings.check()
    except NasscaleError as err:
        raise NasscaleError(f"{where}.{err}") from None
    return InheritEvaluator(parent=parent, parent_model=parent_model, weights=str(path),
                            data=data_label(study.data_source), dataset=data,
                            settings=settings)


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


__all__ = ["check_config", "make_inherit_evaluator", "parent_command", "weights_path"]
