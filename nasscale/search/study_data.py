"""A study's data: where its ``data:`` is, what it is called in outputs, the resolution a
trained evaluator uses by default, and the score a network gets by guessing.

- ``resolve_data``: ``testbed``, ``testbed-v2``, ``testbed-v3:train=N,test=M`` and ``digits`` are
  names; anything else is a path, relative to the study file (like ``space``, ``parent``,
  ``weights`` and ``lut``), so a bare folder name beside the study file (``data: my_photos``)
  is that folder.  A path that exists nowhere is a ``SpecError`` on ``evaluator.data``.
- ``data_label``: the short name outputs show (a folder's or file's own name, not its path).
- ``default_resolution``: the data's own image size (the testbed's 32 px, digits' 8 px, a
  folder of 48 px images 48), declared here once.
- ``chance_level``: chance top-1 (1/classes) and the most that guessing reaches on the
  held-out split (two binomial standard deviations above it).
- ``budget_scale`` and ``budget_line``: where a study measures its latency and FLOPs budgets
  (``budget_resolution``: each candidate's deploy resolution, or the trained one), said in
  one line when a search starts.
"""
from __future__ import annotations

import math

from nasscale.scoring.data_source import (  # noqa: F401  (the data half of a study)
    DATA_NAMES,
    data_label,
    default_resolution,
    image_size,
    is_data_name,
    resolve_data,
)
from nasscale.scoring.evaluators import eval_resolution


def dataset_resolution(dataset) -> int:
    """``default_resolution`` of a loaded ``Dataset``."""
    return default_resolution(max(dataset.x.shape[-2:]))


def held_out_size(dataset, val_fraction: float) -> int:
    """Images in the held-out split a trained evaluator scores on."""
    if dataset.test_y is not None:
        return len(dataset.test_y)
    return max(1, int(round(len(dataset.y) * val_fraction)))


def chance_level(classes: int, held_out: int) -> tuple[float, float]:
    """``(chance, limit)``: top-1 by guessing (1/classes) and two binomial standard deviations
    above it on ``held_out`` images: a best score at or below ``limit`` is within noise of
    guessing."""
    p = 1.0 / classes
    return p, p + 2.0 * math.sqrt(p * (1.0 - p) / max(1, held_out))


def trained_resolution(evaluator, spec) -> int | None:
    """The pixels a trained evaluator (train, inherit) trains ``spec`` at; ``None`` for the
    others (a proxy, a user function)."""
    settings = getattr(evaluator, "settings", None)
    if getattr(settings, "resolution", None) is None:
        return None
    relative = getattr(evaluator, "relative", None)
    return eval_resolution(relative, spec.resolution) if relative else settings.resolution


def budget_scale(study, evaluator) -> int | float | None:
    """Where a study measures its budgets: ``None`` at each candidate's deploy resolution
    (``budget_resolution: deploy``), else the trained one: pixels, or a fraction of each
    network's own (``eval_resolution`` applies it)."""
    if study.budget_resolution != "train":
        return None
    relative = getattr(evaluator, "relative", None)
    return relative if relative else evaluator.settings.resolution


def _trained_text(evaluator) -> str | None:
    settings = getattr(evaluator, "settings", None)
    if getattr(settings, "resolution", None) is None:
        return None
    relative = getattr(evaluator, "relative", None)
    return f"{relative:g}x each network's own" if relative else f"{settings.resolution} px"


def budget_line(study, evaluator, space) -> str:
    """One line: the resolution budgets are measured at (said when a study starts)."""
    trained = _trained_text(evaluator)
    if budget_scale(study, evaluator) is not None:
        return (f"budgets (latency, FLOPs) and the networks they name are measured at the "
                f"trained resolution, {trained} (budget_resolution: train)")
    res = sorted(set(getattr(space, "resolution", None) or ()))
    deploy = (f"{res[0]}-{res[-1]} px" if len(res) > 1 else f"{res[0]} px") if res else ""
    line = ("budgets (latency, FLOPs) are measured at each candidate's deploy resolution"
            + (f" ({deploy}, the space's)" if deploy else ""))
    if trained is None:
        return line
    return (f"{line}, scores at {trained} (budget_resolution: train measures budgets at the "
            "trained resolution)")


def evaluator_label(study, evaluator) -> str:
    """The evaluator's description with its data named by ``data_label``, not its path."""
    text = evaluator.describe()
    source = study.data_source
    return text.replace(source, data_label(source)) if source else text


def chance_info(study, evaluator) -> dict | None:
    """For a trained accuracy evaluator: its classes, held-out images, chance top-1 and the
    ``limit`` a best score must pass to be more than noise (``chance_level``)."""
    if study.evaluator.kind not in ("train", "inherit") or evaluator.name != "accuracy":
        return None
    dataset = getattr(evaluator, "dataset", None) or getattr(evaluator, "_dataset", None)
    settings = getattr(evaluator, "settings", None)
    if dataset is None or settings is None:
        return None
    held_out = held_out_size(dataset, settings.val_fraction)
    chance, limit = chance_level(dataset.num_classes, held_out)
    return {"classes": dataset.num_classes, "held_out": held_out, "chance": chance,
            "limit": limit}


__all__ = ["DATA_NAMES", "budget_line", "budget_scale", "chance_info",
           "chance_level", "data_label", "dataset_resolution", "default_resolution",
           "evaluator_label", "held_out_size", "image_size", "is_data_name", "resolve_data",
           "trained_resolution"]
