"""Where a study's files are and what they hold, below the study and its evaluators.

``resolve_path`` (a path in a study file is relative to that file), ``make_space`` (the study's
space or coefficient grid) and the train evaluator's settings check live here, so that the
study loader and the inheritance evaluator both use them without importing each other.
"""
from __future__ import annotations

import os
from pathlib import Path

from nasscale.errors import SpecError

TRAIN_DEVICES = ("auto", "cpu", "cuda")  # or cuda:N
TRAIN_AMP = ("none", "bf16", "fp16")


def resolve_path(value: str, study_path: str) -> str:
    """A path in a study file is relative to that file; a bare name is a name."""
    if (value.endswith((".yaml", ".yml", ".json")) or os.sep in value) and study_path \
            and not os.path.isabs(value):
        candidate = Path(study_path).parent / value
        if candidate.exists():
            return str(candidate)
    return value


def make_space(study):
    """The study's search space: a grammar space, or a coefficient grid."""
    if study.coefficients is not None:
        from nasscale.search.coefficients import coefficient_space_from_data

        return coefficient_space_from_data(study.coefficients)
    from nasscale.search.space_io import load_space

    return load_space(resolve_path(study.space, study.path))


def check_train_settings(evaluator: dict) -> None:
    """The train evaluator's device, precision and recipe switches (``TrainSettings``)."""
    device = evaluator.get("device", "auto")
    if not isinstance(device, str) or not (device in TRAIN_DEVICES or (
            device.startswith("cuda:") and device[5:].isdigit())):
        raise SpecError(f"must be one of {', '.join(TRAIN_DEVICES)} (or cuda:N), got "
                        f"{device!r}", ("evaluator.device",))
    if evaluator.get("amp", "none") not in TRAIN_AMP:
        raise SpecError(f"must be one of {', '.join(TRAIN_AMP)}, got {evaluator['amp']!r}",
                        ("evaluator.amp",))
    for key in ("channels_last", "augment", "progressive"):
        if key in evaluator and not isinstance(evaluator[key], bool):
            raise SpecError(f"must be true or false, got {evaluator[key]!r}",
                            (f"evaluator.{key}",))
    for key, low, closed in (("lr", 0, False), ("weight_decay", 0, True)):
        value = evaluator.get(key)
        if key in evaluator and (isinstance(value, bool) or not isinstance(value, (int, float))
                                 or not (value >= low if closed else value > low)):
            raise SpecError(f"must be a number {'>=' if closed else '>'} {low}, got {value!r}",
                            (f"evaluator.{key}",))
    fraction = evaluator.get("val_fraction", 0.2)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 < fraction < 1:
        raise SpecError(f"must be a number in (0, 1), got {fraction!r}",
                        ("evaluator.val_fraction",))
