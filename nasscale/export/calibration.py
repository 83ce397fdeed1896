"""Calibration and accuracy of quantised exports.

``nasscale export --quantize int8 --calibration DATA`` calibrates on the first 64 training
images of ``DATA`` (any data source ``nasscale train`` reads) at the network's resolution, and
scores the network on the first 2,000 images of the held-out split ``nasscale train`` keeps,
before and after quantisation.  Without data, calibration uses one seeded batch of noise: the
file is right for latency, not for accuracy, and its metadata says so.
"""
from __future__ import annotations

from nasscale.errors import NasscaleError
from nasscale.latency.runtimes.quantize import CALIBRATION_BATCH, noise_batches

#: training images drawn for calibration
CALIBRATION_IMAGES = 64


def calibration_batches(calibration: str | None, channels: int, resolution: int,
                        pixels: dict | None = None, images: int = CALIBRATION_IMAGES
                        ) -> tuple[list, str]:
    """(list of float32 NCHW numpy batches, a description of where they came from).

    ``pixels``: the graph takes pixels in [0, 1] and normalises them itself (an export whose
    weights record their normalisation), so the batches are pixels too; else they are what the
    module takes (the data set's normalised images, or standard-normal noise)."""
    import torch

    if calibration is None:
        batches = noise_batches(channels, resolution, bool(pixels))
        n = sum(len(b) for b in batches)
        return batches, f"{n} images of seeded noise (no calibration data given)"
    from nasscale.scoring.data import load_dataset, resize

    data = load_dataset(calibration)
    if int(data.x.shape[1]) != channels:
        raise NasscaleError(f"--calibration {calibration}: images have {data.x.shape[1]} "
                            f"channels, the network takes {channels}")
    x = resize(data.x[:images], resolution)
    if pixels:
        view = (1, -1, 1, 1)
        x = x * torch.tensor(data.std).view(view) + torch.tensor(data.mean).view(view)
    what = f"the first {len(x)} training images of {data.name}"
    batches = [x[i:i + CALIBRATION_BATCH].contiguous().numpy()
               for i in range(0, len(x), CALIBRATION_BATCH)]
    return batches, what


#: held-out images scored after quantisation (the first of the held-out split)
ACCURACY_IMAGES = 2000


def held_out_top1(run, data_source: str, resolution: int, pixels: dict | None,
                  images: int = ACCURACY_IMAGES, batch: int = 50) -> tuple[float, int]:
    """(top-1, images) of ``run`` (numpy NCHW batch -> logits) on the first ``images`` of the
    held-out split ``nasscale train`` keeps for ``data_source``; inputs as
    :func:`calibration_batches` makes them."""
    import numpy as np
    import torch

    from nasscale.scoring.data import load_dataset, resize
    from nasscale.scoring.settings import TrainSettings

    data = load_dataset(data_source)
    s = TrainSettings()
    _, _, vx, vy = data.split(s.val_fraction, s.seed)
    vx, vy = vx[:images], vy[:images]
    correct = 0
    for i in range(0, len(vy), batch):
        x = resize(vx[i:i + batch], resolution)
        if pixels:
            view = (1, -1, 1, 1)
            x = x * torch.tensor(data.std).view(view) + torch.tensor(data.mean).view(view)
        logits = np.asarray(run(x.contiguous().numpy()))
        correct += int((logits.argmax(1) == vy[i:i + batch].numpy()).sum())
    return correct / max(1, len(vy)), len(vy)

