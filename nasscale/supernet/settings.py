"""How a supernet is trained: ``SupernetSettings`` (the training knobs of ``TrainSettings`` and
the sandwich rule's own), checked by ``check``.  No torch."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from nasscale.errors import NasscaleError
from nasscale.scoring.settings import TrainSettings

#: settings a resumed run must share with its checkpoint (the others — device, threads,
#: precision and memory format — change how fast it runs, not what it computes)
RESUMABLE = ("epochs", "batch_size", "lr", "weight_decay", "subset", "val_fraction",
             "resolution", "seed", "augment", "warmup", "bn_momentum")
SANDWICH_RESUMABLE = ("subnets_per_step", "distill", "accumulate", "sort_every")


@dataclass(frozen=True)
class SupernetSettings:
    train: TrainSettings = field(default_factory=TrainSettings)
    #: subnetworks per step: the largest, the smallest, then ``k - 2`` random ones
    subnets_per_step: int = 4
    #: the others learn the largest's predictions (in-place distillation) instead of labels
    distill: bool = True
    #: random subnetworks whose top-1 every epoch records, beside the largest and smallest
    probes: int = 3
    #: batches of training images that recompute a subnetwork's BatchNorm statistics
    calibration_batches: int = 20
    #: micro-batches per step (gradients accumulated): one process then reproduces a run of
    #: that many ranks with the same global batch, BatchNorm statistics included
    accumulate: int = 1
    #: re-sort the channels by importance every this many epochs (0: never)
    sort_every: int = 1

    def check(self, world: int = 1) -> None:
        """A ``NasscaleError`` naming the setting (as its command-line option) when a value
        is not allowed."""
        if self.train.steps is not None:
            raise NasscaleError("steps: a supernet trains whole epochs")
        self.train.check()
        for name, low, high in (("subnets_per_step", 1, 64), ("probes", 0, 64),
                                ("calibration_batches", 1, 10_000), ("accumulate", 1, 1024),
                                ("sort_every", 0, 100_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not low <= value <= high:
                raise NasscaleError(f"{name}: must be an integer from {low} to {high}, got "
                                    f"{value!r}")
        parts = world * self.accumulate
        if self.train.batch_size % parts or self.train.batch_size // parts < 2:
            raise NasscaleError(
                f"batch_size: {self.train.batch_size} images per step must split into "
                f"{parts} micro-batches ({world} rank(s) x accumulate {self.accumulate}) of "
                "at least 2 images each (BatchNorm needs two)")

    def resumable(self) -> dict:
        """What a checkpoint records and a resume must match."""
        train = asdict(self.train)
        return {**{k: train[k] for k in RESUMABLE},
                **{k: getattr(self, k) for k in SANDWICH_RESUMABLE}}

    def record(self) -> dict:
        return {**asdict(self.train), **{k: v for k, v in asdict(self).items() if k != "train"}}


__all__ = ["RESUMABLE", "SANDWICH_RESUMABLE", "SupernetSettings"]
