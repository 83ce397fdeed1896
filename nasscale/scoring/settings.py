"""How a network is trained: ``TrainSettings`` (every knob with its default, checked by
``check``), the fine-tuning budget ``FINE_TUNE`` and ``recipe_for`` (a data set's own recipe).
No torch: studies and ``nasscale prune`` read these before anything trains."""
from __future__ import annotations

import math
from dataclasses import dataclass

from nasscale.errors import NasscaleError

DEVICES = ("auto", "cpu", "cuda")
AMP = ("none", "bf16", "fp16")
#: the largest training resolution (pixels): a batch of 32 at 4096 px is 6 GB of input alone
MAX_TRAIN_RESOLUTION = 4096
EVAL_CROP = 0.875
MIN_CROP_AREA = 0.35  # at full augmentation magnitude


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 0.05
    weight_decay: float = 5e-5
    subset: int | None = None  # cap on training examples
    val_fraction: float = 0.2
    resolution: int = 32  # training and evaluation resolution (pixels)
    seed: int = 0
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    amp: str = "none"  # none | bf16 | fp16 (fp16: CUDA only, with loss scaling)
    channels_last: bool = True  # twice the images/s of NCHW on a CPU (training_speed)
    augment: bool = True  # random resized crop + flip for training, centre crop to evaluate
    progressive: bool = False  # EfficientNetV2 progressive learning (see module doc)
    steps: int | None = None  # exactly this many optimizer steps instead of ``epochs`` epochs
    #: BatchNorm running-statistics momentum while training: 0.1 by default, so that the
    #: statistics settle within a short run (a network's published value, e.g. torchvision's
    #: MobileNetV3 0.01, is for runs of hundreds of epochs: with it, a 3-epoch run evaluates
    #: with statistics still near their initial values); ``None`` keeps the network's own.
    bn_momentum: float | None = 0.1
    #: evaluate (and keep) an exponential moving average of the weights and BatchNorm
    #: statistics with this decay per step instead of the last iterate; ``None``: the last
    #: iterate.  The decay ramps up as (1 + t) / (10 + t) so that early averages forget the
    #: random initialisation.
    ema: float | None = None
    #: linear learning-rate warm-up over this fraction of the steps, then cosine decay
    warmup: float = 0.0
    #: CPU threads; ``None``: the cores other processes leave idle (``scoring/threads.py``)
    threads: int | None = None

    def check(self) -> None:
        """Raise a NasscaleError naming the setting when a value is not allowed."""
        if self.amp not in AMP:
            raise NasscaleError(f"amp: must be one of {', '.join(AMP)}, got {self.amp!r}")
        for name, high in (("epochs", 100_000), ("batch_size", 65_536),
                           ("resolution", MAX_TRAIN_RESOLUTION)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise NasscaleError(f"{name}: must be an integer from 1 to {high:,}, got "
                                    f"{value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) \
                or not 0 <= self.seed < 2 ** 32:
            raise NasscaleError(f"seed: must be an integer from 0 to 2**32 - 1, got {self.seed!r}")
        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise NasscaleError(f"steps: must be an integer >= 1, got {self.steps!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise NasscaleError(f"lr: must be a number > 0, got {self.lr!r}")
        wd = self.weight_decay
        if isinstance(wd, bool) or not (isinstance(wd, (int, float)) and math.isfinite(wd)
                                        and wd >= 0):
            raise NasscaleError(f"weight_decay: must be a number >= 0, got {wd!r}")
        if not 0 < self.val_fraction < 1:
            raise NasscaleError(f"val_fraction: must be in (0, 1), got {self.val_fraction!r}")
        m = self.bn_momentum
        if m is not None and (isinstance(m, bool) or not isinstance(m, (int, float))
                              or not 0 < m <= 1):
            raise NasscaleError(f"bn_momentum: must be a number in (0, 1] or null (the "
                                f"network's own), got {m!r}")
        e = self.ema
        if e is not None and (isinstance(e, bool) or not isinstance(e, (int, float))
                              or not 0 < e < 1):
            raise NasscaleError(f"ema: must be a decay in (0, 1) or null (no averaging), "
                                f"got {e!r}")
        w = self.warmup
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < 1:
            raise NasscaleError(f"warmup: must be a fraction of the run in [0, 1), got {w!r}")
        from nasscale.scoring.threads import check_threads

        check_threads(self.threads)
        resolve_device(self.device)
        if self.amp == "fp16" and resolve_device(self.device).type != "cuda":
            raise NasscaleError("amp: fp16 needs CUDA (it relies on loss scaling); use bf16 on "
                                "the CPU, or none")


#: the fine-tuning budget of carried weights (the inherit evaluator's defaults): 50 steps at
#: learning rate 0.01, batch 32
FINE_TUNE = TrainSettings(steps=50, lr=0.01, batch_size=32)


def recipe_for(data: str) -> TrainSettings:
    """The default settings for training on ``data``: a testbed version's own recipe
    (``nasscale.scoring.testbed``), else ``TrainSettings()``."""
    from nasscale.scoring.data import testbed_version

    bed = testbed_version(data)
    return TrainSettings(**dict(bed.recipe)) if bed else TrainSettings()


def resolve_device(name: str):
    """``auto`` → CUDA when present, else the CPU; ``cuda`` without CUDA is an error (a
    ``torch.device``)."""
    import torch  # heavy: only when a device is chosen

    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise NasscaleError(f"device: {name!r} asked for, but CUDA is not available here "
                                f"(torch {torch.__version__}); use auto or cpu")
        dev = torch.device(text)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise NasscaleError(f"device: {name!r}: this machine has "
                                f"{torch.cuda.device_count()} CUDA device(s)")
        return dev
    raise NasscaleError(f"device: must be auto, cpu, cuda or cuda:N, got {name!r}")
