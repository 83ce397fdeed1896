"""Training on the machine you have: top-1 on the held-out split after E epochs (or N steps).

One loop serves every use: ``nasscale train``, the ``train`` evaluator of studies (one report
per epoch, so Optuna's pruners can stop a trial early), the ``inherit`` evaluator (N steps of
fine-tuning) and NetAdapt's short- and long-term fine-tuning.

Recipe: SGD with Nesterov momentum 0.9, cosine learning-rate decay to zero over the run,
label smoothing 0.1, weight decay on every parameter.  Training images get a random resized
crop (area 35–100 % of the image at full magnitude, aspect 3/4–4/3) and a horizontal flip,
both drawn per image on the device (``grid_sample``, no data-loader processes); evaluation
images get the centre crop (87.5 %) resized to the resolution, as ImageNet evaluation does.

Determinism: epoch ``e`` draws its order, crops and dropout masks from ``seed`` and ``e``
alone, so a run resumed from its checkpoint after epoch ``e`` continues exactly as the
uninterrupted run (on the same device and threads).

``progressive=True`` is EfficientNetV2's progressive learning (Tan & Le 2021, Algorithm 1):
the run is cut into up to 4 stages; the image size grows linearly from half the target to the
target, and regularisation grows with it — dropout from 0.1 to the network's own rate (at
least 0.2), mixup alpha from 0 to 0.2 and the crop magnitude from 0.25 to 1.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nasscale.errors import NasscaleError
from nasscale.scoring.data import Dataset, resize
from nasscale.scoring.optim import WeightAverage, lr_factor
from nasscale.scoring.settings import (  # noqa: F401  (part of this module's API)
    AMP,
    DEVICES,
    EVAL_CROP,
    FINE_TUNE,
    MAX_TRAIN_RESOLUTION,
    MIN_CROP_AREA,
    TrainSettings,
    recipe_for,
    resolve_device,
)


@dataclass
class TrainResult:
    accuracy: float  # top-1 on the held-out split, in [0, 1]
    epochs: int  # epochs completed (a stopped or step-limited run may have fewer)
    steps: int
    seconds: float
    device: str
    history: list[dict] = field(default_factory=list)  # per epoch: accuracy, loss, size, s

    def record(self) -> dict:
        return asdict(self)


# --- augmentation (batched, on the device) ---------------------------------------------------

def _crop_grid(n: int, size: int, area: torch.Tensor, aspect: torch.Tensor, cx: torch.Tensor,
               cy: torch.Tensor, flip: torch.Tensor, device) -> torch.Tensor:
    """Sampling grids for crops of relative ``area``/``aspect`` centred at (cx, cy) in [-1, 1]
    (normalised coordinates), mirrored where ``flip``."""
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = cx * (1 - w)
    cy = cy * (1 - h)
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0] = w * torch.where(flip, -1.0, 1.0)
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    return F.affine_grid(theta, (n, 3, size, size), align_corners=False)


def augment_batch(x: torch.Tensor, size: int, magnitude: float, g: torch.Generator) -> torch.Tensor:
    """Random resized crop (area ``1 - (1 - MIN_CROP_AREA) * magnitude`` to 1, aspect 3/4 to
    4/3) and horizontal flip, resampled to ``size`` pixels.  ``g`` is a CPU generator."""
    n = x.shape[0]
    lo = 1.0 - (1.0 - MIN_CROP_AREA) * magnitude
    area = torch.empty(n).uniform_(lo, 1.0, generator=g)
    aspect = torch.exp(torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g))
    cx, cy = (torch.rand(n, generator=g) * 2 - 1 for _ in range(2))
    flip = torch.rand(n, generator=g) < 0.5
    grid = _crop_grid(n, size, *(t.to(x.device) for t in (area, aspect, cx, cy, flip)),
                      device=x.device)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection",
                         align_corners=False)


def centre_crop(x: torch.Tensor, size: int, fraction: float = EVAL_CROP) -> torch.Tensor:
    """The central ``fraction`` of each image, resized to ``size`` pixels."""
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return resize(x[..., top:top + ch, left:left + cw], size)


# --- progressive learning --------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    """One stage of training: its epochs and what the inputs and regularisation are."""

    first_epoch: int  # 0-based
    epochs: int
    size: int
    dropout: float | None  # None: the network's own
    mixup: float  # Beta(alpha, alpha); 0 = off
    magnitude: float  # crop magnitude in [0, 1]


def plan_stages(settings: TrainSettings, base_dropout: float) -> list[Stage]:
    """The stages of a run: one stage at full size, or EfficientNetV2's growing stages."""
    s = settings
    mag = 1.0 if s.augment else 0.0
    if not s.progressive:
        return [Stage(0, s.epochs, s.resolution, None, 0.0, mag)]
    n = max(1, min(4, s.epochs))
    lo = max(8, int(round(s.resolution * 0.5 / 8)) * 8)
    top_dropout = max(0.2, base_dropout)
    bounds = [round(i * s.epochs / n) for i in range(n + 1)]
    stages = []
    for i in range(n):
        t = i / (n - 1) if n > 1 else 1.0
        size = s.resolution if i == n - 1 else int(round((lo + (s.resolution - lo) * t) / 8)) * 8
        stages.append(Stage(bounds[i], bounds[i + 1] - bounds[i], max(8, size),
                            0.1 + (top_dropout - 0.1) * t, 0.2 * t,
                            (0.25 + 0.75 * t) * mag))
    return stages


def _dropouts(model: nn.Module) -> list[nn.Dropout]:
    return [m for m in model.modules() if isinstance(m, nn.Dropout)]


# --- the loop --------------------------------------------------------------------------------

def train(model: nn.Module, data: Dataset, settings: TrainSettings, **kwargs) -> TrainResult:
    """Train ``model`` in place on ``data`` and return top-1 on the held-out split, on
    ``settings.threads`` CPU threads (``None``: the cores other processes leave idle) —
    :func:`_train` says the rest."""
    from nasscale.scoring.threads import training_threads

    settings.check()
    with training_threads(settings.threads, resolve_device(settings.device).type == "cpu"):
        return _train(model, data, settings, **kwargs)


def _train(model: nn.Module, data: Dataset, settings: TrainSettings, *,
           on_epoch: Callable[[int, float], None] | None = None, progress: bool = False,
           checkpoint: str | Path | None = None, resume: bool = False,
           label: str = "train", on_record: Callable[[dict], None] | None = None,
           made_for: dict | None = None) -> TrainResult:
    """Train ``model`` in place on ``data`` and return top-1 on the held-out split.

    ``on_record(entry)`` gets each epoch's history entry (epoch, accuracy, training loss, size,
    seconds) as well.
    ``on_epoch(epoch, accuracy)`` is called after every epoch (1-based) with the held-out
    top-1; if it raises (``optuna.TrialPruned``), training stops and the exception propagates.
    ``checkpoint``: written after every epoch (model, optimizer, schedule, history); with
    ``resume`` an existing one is continued.  ``made_for`` (e.g. the network and the data) is
    written into the checkpoint, and resuming a checkpoint made for anything else is an error.
    The model ends on the CPU in eval mode.
    """
    s = settings
    s.check()
    device = resolve_device(s.device)
    t_start = time.perf_counter()
    tx, ty, vx, vy = data.split(s.val_fraction, s.seed, s.subset)
    if len(ty) < 2:
        raise NasscaleError(f"data {data.name}: needs at least 2 training images, has {len(ty)}")
    memory = torch.channels_last if s.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory)
    if s.bn_momentum is not None:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.momentum = float(s.bn_momentum)
    tx, ty = tx.to(device), ty.to(device)
    dropouts = _dropouts(model)
    base_dropout = max((d.p for d in dropouts), default=0.0)
    stages = plan_stages(s, base_dropout)
    steps_per_epoch = max(1, len(ty) // s.batch_size) if len(ty) >= s.batch_size else 1
    total = s.steps if s.steps is not None else s.epochs * steps_per_epoch
    epochs = math.ceil(total / steps_per_epoch) if s.steps is not None else s.epochs
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=0.9, nesterov=True,
                          weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(total, s.warmup))
    average = WeightAverage(model, s.ema) if s.ema is not None else None
    scaler = torch.amp.GradScaler("cuda", enabled=s.amp == "fp16")
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(s.amp)
    history: list[dict] = []
    start_epoch, step = 0, 0
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and resume and ckpt.exists():
        start_epoch, step, history = _restore(ckpt, model, opt, sched, scaler, s, device,
                                              average, made_for)
    bar = None
    if progress:
        from nasscale.reports.progress import Progress

        bar = Progress(epochs * steps_per_epoch if s.steps is None else total, label)
        bar.update(step)
    accuracy = history[-1]["accuracy"] if history else float("nan")
    done = start_epoch
    want_epoch_eval = on_epoch is not None or progress or ckpt is not None
    for epoch in range(start_epoch, epochs):
        if step >= total:
            break
        stage = next(st for st in reversed(stages) if epoch >= st.first_epoch) \
            if s.steps is None else stages[-1]
        for d in dropouts:
            d.p = base_dropout if stage.dropout is None else stage.dropout
        g = torch.Generator().manual_seed(s.seed * 100_003 + epoch)
        torch.manual_seed(s.seed * 100_003 + epoch)
        order = torch.randperm(len(ty), generator=g).to(device)
        model.train()
        t0, loss_sum, seen = time.perf_counter(), 0.0, 0
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = order[i * s.batch_size:(i + 1) * s.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb = tx[idx]
            xb = augment_batch(xb, stage.size, stage.magnitude, g) if stage.magnitude > 0 \
                else resize(xb, stage.size)
            xb = xb.contiguous(memory_format=memory)
            yb = ty[idx]
            lam, perm = 1.0, None
            if stage.mixup > 0:
                lam = float(torch.distributions.Beta(stage.mixup, stage.mixup).sample())
                perm = torch.randperm(len(idx), generator=g).to(device)
                xb = lam * xb + (1 - lam) * xb[perm]
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                enabled=autocast_dtype is not None):
                out = model(xb)
                loss = F.cross_entropy(out.float(), yb, label_smoothing=0.1)
                if perm is not None:
                    loss = lam * loss + (1 - lam) * F.cross_entropy(
                        out.float(), yb[perm], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            if average is not None:
                average.update(model)
            step += 1
            loss_sum += float(loss.detach()) * len(idx)
            seen += len(idx)
            if not math.isfinite(loss_sum):
                raise NasscaleError(f"training diverged (loss {loss_sum}) in epoch {epoch + 1}; "
                                    f"lower lr (now {s.lr:g})")
            if bar is not None:
                bar.update(step, f"epoch {epoch + 1}/{epochs} loss {loss_sum / seen:.3f}"
                           + (f" val {accuracy:.3f}" if history else ""))
        done = epoch + 1
        train_s = time.perf_counter() - t0
        last = epoch == epochs - 1 or step >= total
        if want_epoch_eval or last:
            with average.applied(model) if average is not None else nullcontext():
                accuracy = evaluate(model, vx, vy, s.resolution, device, s.augment, memory,
                                    autocast_dtype)
            history.append({"epoch": epoch + 1, "accuracy": accuracy,
                            "loss": loss_sum / max(seen, 1), "size": stage.size,
                            "seconds": time.perf_counter() - t0,
                            "images_per_s": seen / max(train_s, 1e-9)})
            if ckpt is not None:
                _save(ckpt, model, opt, sched, scaler, s, epoch + 1, step, history, average,
                      made_for)
            if on_epoch is not None and s.steps is None:
                on_epoch(epoch + 1, accuracy)
            if on_record is not None and s.steps is None:
                on_record(history[-1])
    if bar is not None:
        bar.close()
    for d in dropouts:
        d.p = base_dropout
    if average is not None:  # the weights that were evaluated are the ones kept
        average.copy_to(model)
    model.to("cpu").eval()
    return TrainResult(accuracy=float(accuracy), epochs=done,
                       steps=step, seconds=time.perf_counter() - t_start, device=str(device),
                       history=history)


def train_and_evaluate(model: nn.Module, data: Dataset, settings: TrainSettings,
                       on_epoch: Callable[[int, float], None] | None = None) -> float:
    """``train(...).accuracy``: top-1 on the held-out split, in [0, 1]."""
    return train(model, data, settings, on_epoch=on_epoch).accuracy


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, resolution: int | None = None,
             device: torch.device | str = "cpu", crop: bool = True,
             memory=torch.contiguous_format, autocast_dtype=None,
             batch_size: int = 256) -> float:
    """Top-1 of ``model`` on (x, y): centre crop (when ``crop``) resized to ``resolution``."""
    device = torch.device(device)
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(y), batch_size):
            xb = x[i:i + batch_size].to(device)
            if resolution is not None:
                xb = centre_crop(xb, resolution) if crop else resize(xb, resolution)
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                enabled=autocast_dtype is not None):
                pred = model(xb.contiguous(memory_format=memory)).argmax(1)
            correct += int((pred.cpu() == y[i:i + batch_size]).sum())
    return correct / max(1, len(y))


# --- checkpoints -----------------------------------------------------------------------------

_RESUMABLE = ("epochs", "batch_size", "lr", "weight_decay", "subset", "val_fraction",
              "resolution", "seed", "augment", "progressive", "steps", "ema", "warmup")


def _difference(was, now) -> str:
    """Where a checkpoint's network or data description differs from this run's, briefly."""
    if not isinstance(was, dict):
        return "not recorded in the checkpoint"
    if was.get("name") != now.get("name"):
        return f"{was.get('name')!r}, not {now.get('name')!r}"
    key = next(k for k in sorted(set(was) | set(now), key=str) if was.get(k) != now.get(k))
    return f"{now.get('name')!r} with another {key}: {str(was.get(key))[:50]} != " \
           f"{str(now.get(key))[:50]}"


def _save(path: Path, model, opt, sched, scaler, s: TrainSettings, epoch: int, step: int,
          history: list[dict], average: WeightAverage | None = None,
          made_for: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": "nasscale-train-checkpoint-1", "settings": asdict(s),
                "made_for": made_for or {},
                "epoch": epoch, "step": step, "history": history,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "average": average.state_dict() if average is not None else None}, tmp)
    tmp.replace(path)  # a kill during the write leaves the previous checkpoint intact


def _restore(path: Path, model, opt, sched, scaler, s: TrainSettings, device, average=None,
             made_for: dict | None = None):
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unreadable file is bad input
        raise NasscaleError(f"--resume {path}: cannot read the checkpoint ({err})") from None
    if not isinstance(state, dict) or state.get("format") != "nasscale-train-checkpoint-1":
        raise NasscaleError(f"--resume {path}: not a nasscale training checkpoint")
    was = state.get("made_for") or {}
    for key, value in (made_for or {}).items():
        if was.get(key) != value:
            raise NasscaleError(f"--resume {path}: the checkpoint was made for another {key} "
                                f"({_difference(was.get(key), value)}); start a new one "
                                "(another -o, or remove it)")
    saved = state["settings"]
    changed = [k for k in _RESUMABLE if saved.get(k) != getattr(s, k)]
    if changed:
        raise NasscaleError(f"--resume {path}: the checkpoint was trained with other settings ("
                            + ", ".join(f"{k} {saved.get(k)!r} != {getattr(s, k)!r}"
                                        for k in changed) + "); start a new checkpoint")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise NasscaleError(f"--resume {path}: not a checkpoint of this network "
                            f"({str(err).strip().splitlines()[-1].strip()})") from None
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    if average is not None:
        average.load_state_dict(state["average"])
    return int(state["epoch"]), int(state["step"]), list(state["history"])
