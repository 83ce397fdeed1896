"""The ``supernet`` evaluator of studies: a candidate's held-out top-1 as a subnetwork of a
trained supernet (``nasscale.supernet.subnet``), and its load-time checks.  Its keys and
defaults: ``SupernetSpec`` (``nasscale.scoring.kinds``)."""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError, SpecError
from nasscale.scoring.evaluators import Evaluator
from nasscale.scoring.inherit import weights_path
from nasscale.specs import NetworkSpec
from nasscale.transfer.containment import NotContained


@dataclass(frozen=True)
class ScoredAt:
    """What a study reads of how a candidate is scored (``trained_resolution``)."""

    resolution: int


@dataclass
class SupernetEvaluator(Evaluator):
    """Held-out top-1 of the candidate cut from the supernet, BatchNorm recalibrated."""

    net: Any = None  # nasscale.supernet.subnet.Supernet
    settings: ScoredAt = None  # type: ignore[assignment]
    data: str = ""
    threads: int | None = None  # None: the cores other processes leave idle
    name: str = "accuracy"

    def score(self, spec: NetworkSpec, seed: int, report=None) -> float:
        from nasscale.scoring.threads import training_threads

        try:
            with training_threads(self.threads, self.net.device == "cpu"):
                return self.net.score(spec)
        except NotContained as err:
            raise NasscaleError(f"not a subnetwork of the supernet: "
                                f"{'; '.join(err.problems[:3])}") from None

    def write_weights(self, spec: NetworkSpec, path: Path) -> None:
        """The candidate's weights (recalibrated), as ``nasscale supernet extract`` writes
        them: a file ``nasscale train --weights`` fine-tunes."""
        self.net.write_subnet(spec, path)

    def describe(self) -> str:
        return (f"top-1 of the subnetwork of supernet {Path(self.net.path).name} (BatchNorm "
                f"recalibrated on {self.net.calibration_batches} batches) on "
                f"{len(self.net.val_y)} held-out images of {self.data} at "
                f"{self.net.resolution}px")


def train_command(space: str, data: str | None, weights) -> str:
    words = ["nasscale", "supernet", "train", space, "--data", data or "testbed",
             "-o", str(weights)]
    return shlex.join(words)


def check_supernet(spec, ctx) -> None:
    """At study load: the space can be a supernet, the file exists (else the command that
    makes it).  Whether the file fits the space is checked when the evaluator is built."""
    from nasscale.supernet.file import aligned, supernet_spec

    data = ctx.data(spec.data) if spec.data else None
    if ctx.space is None:
        raise SpecError("kind supernet searches an architecture space; give space: NAME",
                        ("evaluator.kind",))
    try:
        space = ctx.space()
    except NasscaleError as err:
        raise SpecError(f"cannot load it: {err}", ("space",)) from None
    try:
        aligned(space, supernet_spec(space, 32, 2))
    except NasscaleError as err:
        raise SpecError(str(err), ("space",)) from None
    weights = weights_path(spec.weights, ctx.path)
    if not weights.exists():
        raise SpecError(f"{weights}: no such file; train the supernet first: "
                        f"{train_command(space.name, data, weights)}", ("evaluator.weights",))


def make_supernet_evaluator(spec, ctx) -> SupernetEvaluator:
    """The evaluator, its supernet file checked against the study's space and data."""
    from nasscale.scoring.data_source import data_label
    from nasscale.supernet.subnet import Supernet

    where = f"{ctx.path or 'study'}: evaluator.weights"
    data = ctx.data(spec.data) if spec.data else None
    net = Supernet.open(str(weights_path(spec.weights, ctx.path)), ctx.space(), data,
                        where=where, calibration_batches=spec.calibration_batches,
                        batch_size=spec.batch_size, device=spec.device,
                        held_out=spec.held_out)
    return SupernetEvaluator(net=net, settings=ScoredAt(net.resolution),
                             data=data_label(data or net.meta["data_source"]),
                             threads=spec.threads)


__all__ = ["ScoredAt", "SupernetEvaluator", "check_supernet", "make_supernet_evaluator",
           "train_command"]
