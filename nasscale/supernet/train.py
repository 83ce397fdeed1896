"""Training a supernet: ``train_supernet(space, data, settings, out)``.

The supernet is the space's largest member.  Every step trains the sandwich of
``nasscale.supernet.sandwich`` on one batch (the testbed recipe otherwise: SGD with Nesterov
momentum, cosine decay after a linear warm-up, label smoothing, random resized crops and flips
drawn on the device), and after every ``sort_every`` epochs the channels of every width group
are re-sorted by importance (``sort_channels``, optimizer momentum permuted alike), so that a
subnetwork's "first channels" are its most important ones (OFA).  After every epoch the
largest, the smallest and ``probes`` fixed random subnetworks are recalibrated and scored on
the held-out split: the run's record.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) every rank trains its share of each
global batch inside ``DistributedDataParallel`` (gloo on the CPU, NCCL on CUDA), sampling the
same subnetworks from the shared seed; rank 0 evaluates and writes.  BatchNorm statistics are
per rank, as in BigNAS; one process with ``accumulate`` = the number of ranks computes the same
steps (each micro-batch is augmented and its dropout drawn as that rank's would be).

Resumable: ``OUT.ckpt`` is written after every epoch; ``resume`` continues it exactly (the
order, crops and subnetworks of epoch ``e`` depend on the seed and ``e`` alone) and refuses a
checkpoint made with other settings, naming the setting.
"""
from __future__ import annotations

import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from nasscale.errors import NasscaleError
from nasscale.scoring.data import Dataset, resize
from nasscale.scoring.optim import lr_factor
from nasscale.scoring.settings import resolve_device
from nasscale.scoring.train import augment_batch, centre_crop, evaluate
from nasscale.supernet import file
from nasscale.supernet.sandwich import Sampler, SandwichLoss, recalibrate
from nasscale.supernet.settings import SupernetSettings
from nasscale.supernet.subnet import CALIBRATION_BATCH, calibration_images
from nasscale.transfer.views import sort_channels

CHECKPOINT_FORMAT = "nasscale-supernet-checkpoint-1"


@dataclass(frozen=True)
class Ranks:
    """This process's place in a ``torchrun`` job (one rank when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @classmethod
    def from_env(cls) -> "Ranks":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK",
                                                                              "0")))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> None:
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def _device(settings: SupernetSettings, ranks: Ranks) -> torch.device:
    device = resolve_device(settings.train.device)
    if device.type == "cuda" and ranks.world > 1 and device.index is None:
        device = torch.device("cuda", ranks.local)
    return device


def train_supernet(space: Any, data: Dataset, settings: SupernetSettings, out: Path, *,
                   data_source: str, init: str | None = None, init_network: str | None = None,
                   resume: bool = False, progress: bool = True,
                   log: Callable[[str], None] | None = None,
                   space_source: str | None = None) -> dict:
    """Train the supernet of ``space`` on ``data`` and write ``out`` (the supernet file),
    ``out.json`` (the record) and, while it runs, ``out.ckpt``; returns the record."""
    from nasscale.scoring.threads import training_threads

    ranks = Ranks.from_env()
    settings.check(ranks.world)
    s = settings.train
    with training_threads(s.threads, resolve_device(s.device).type == "cpu"):
        record = _train(space, data, settings, out, ranks, data_source, init, init_network,
                        resume, progress, log or (lambda m: print(m, file=sys.stderr,
                                                                   flush=True)),
                        {"space_source": space_source} if space_source else {})
    return record


def _train(space, data, settings, out, ranks, data_source, init, init_network, resume,
           progress, log, extra) -> dict:
    from nasscale.scoring.evaluators import build_seeded

    s = settings.train
    device = _device(settings, ranks)
    ranks.start(device)
    spec = file.supernet_spec(space, s.resolution, data.num_classes)
    parent = file.aligned(space, spec)
    model = build_seeded(spec, s.seed)
    alts = file.alternates(parent, space, seed=s.seed)
    ckpt_path = out.with_suffix(".ckpt")
    if resume and not ckpt_path.exists():
        raise NasscaleError(f"--resume: no checkpoint {ckpt_path} to continue; run without "
                            "--resume to start")
    init_note = None
    if init and not resume:
        init_note = file.init_weights(parent, model, init, init_network, space, alts)
        if ranks.main:
            log(init_note)
    elif not resume:
        sort_channels(parent, model, alternates=alts)
    tx, ty, vx, vy = data.split(s.val_fraction, s.seed, s.subset)
    if len(ty) < s.batch_size:
        raise NasscaleError(f"data {data.name}: {len(ty)} training images, fewer than one "
                            f"batch ({s.batch_size}); lower --batch-size")
    memory = torch.channels_last if s.channels_last else torch.contiguous_format
    loss_module: torch.nn.Module = SandwichLoss(model, alts)
    if s.bn_momentum is not None:
        for m in loss_module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = float(s.bn_momentum)
    loss_module.to(device=device, memory_format=memory)
    tx, ty = tx.to(device), ty.to(device)
    steps_per_epoch = len(ty) // s.batch_size
    total = s.epochs * steps_per_epoch
    opt = torch.optim.SGD(loss_module.parameters(), lr=s.lr, momentum=0.9, nesterov=True,
                          weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(total, s.warmup))
    scaler = torch.amp.GradScaler("cuda", enabled=s.amp == "fp16")
    autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(s.amp)
    record = {"space": space.name, "space_fingerprint": file.space_fingerprint(space),
              "data": data.name, "data_source": str(data_source),
              "classes": list(data.classes), "images": int(len(data.y)),
              "val_fraction": s.val_fraction, "subset": s.subset, "seed": s.seed,
              "resolution": s.resolution, "settings": settings.record(), "init": init_note,
              "ranks": ranks.world, "device": str(device), **extra, "history": []}
    epoch0, step = 0, 0
    if resume:
        epoch0, step, record = _restore(ckpt_path, loss_module, opt, sched, scaler, settings,
                                        record, device)
    sampler = Sampler(space, parent, model, s.resolution, data.num_classes, s.seed,
                      alternates=alts)
    if ranks.world > 1:
        loss_module = torch.nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False, find_unused_parameters=bool(alts))
    calib = calibration_images(tx, s.seed)
    bar = None
    if progress and ranks.main:
        from nasscale.reports.progress import Progress

        bar = Progress(total, f"supernet {space.name}")
        bar.update(step)
    parts = ranks.world * settings.accumulate
    micro = s.batch_size // parts
    k = settings.subnets_per_step
    for epoch in range(epoch0, s.epochs):
        g = torch.Generator().manual_seed(s.seed * 100_003 + epoch)
        order = torch.randperm(len(ty), generator=g).to(device)
        loss_module.train()
        t0, loss_sum, seen = time.perf_counter(), 0.0, 0
        for i in range(steps_per_epoch):
            idx = order[i * s.batch_size:(i + 1) * s.batch_size]
            xb = augment_batch(tx[idx], s.resolution, 1.0, g) if s.augment \
                else resize(tx[idx], s.resolution)
            specs = sampler.step(step, k)
            views = [sampler.view(spec) for spec in specs]
            for a in range(settings.accumulate):
                part = ranks.rank * settings.accumulate + a
                sl = slice(part * micro, (part + 1) * micro)
                seeds = [(s.seed * 1_000_003 + step) * 1024 + part * 64 + j
                         for j in range(k)]
                sync = loss_module.no_sync() if ranks.world > 1 and \
                    a < settings.accumulate - 1 else nullcontext()
                with sync, torch.autocast(device.type, dtype=autocast or torch.float32,
                                          enabled=autocast is not None):
                    loss, losses = loss_module(xb[sl].contiguous(memory_format=memory),
                                               ty[idx][sl], views, settings.distill, memory,
                                               seeds)
                    scaler.scale(loss / settings.accumulate).backward()
                loss_sum += float(losses[0]) * micro
                seen += micro
            if not math.isfinite(loss_sum):
                raise NasscaleError(f"training diverged (loss {loss_sum}) in epoch "
                                    f"{epoch + 1}; lower --lr (now {s.lr:g})")
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            sched.step()
            step += 1
            if bar is not None:
                bar.update(step, f"epoch {epoch + 1}/{s.epochs} loss {loss_sum / seen:.3f}")
        train_s = time.perf_counter() - t0
        if settings.sort_every and (epoch + 1) % settings.sort_every == 0:
            sort_channels(parent, model, [_momentum(opt, model, alts)], alts)
        if ranks.main:
            top1 = probe_scores(sampler, settings, calib, vx, vy, device, memory)
            record["history"].append({
                "epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "top1": top1,
                "seconds": time.perf_counter() - t0,
                "images_per_s": seen * ranks.world / max(train_s, 1e-9)})
            _save(ckpt_path, sandwich(loss_module), opt, sched, scaler, settings, epoch + 1,
                  step, record)
            if bar is not None:
                bar.update(step, "  ".join(f"{n} {100 * v:.1f}%" for n, v in top1.items()))
        ranks.barrier()
    if bar is not None:
        bar.close()
    sandwich(loss_module).to("cpu").eval()
    if ranks.main:
        file.write(out, model, spec, data, record, alts)
        ckpt_path.unlink(missing_ok=True)
    ranks.barrier()
    return record


def sandwich(module: torch.nn.Module) -> SandwichLoss:
    """The ``SandwichLoss`` inside a ``DistributedDataParallel`` wrapper (or itself)."""
    return getattr(module, "module", module)


def _momentum(opt, model, alts) -> dict[str, torch.Tensor]:
    """The optimizer's momentum buffers by ``sort_channels``' names."""
    named = [*model.named_parameters(), *((f"alt.{p}.{n}", t) for p, (m, _) in alts.items()
                                          for n, t in m.named_parameters())]
    return {n: opt.state[t]["momentum_buffer"] for n, t in named
            if opt.state.get(t, {}).get("momentum_buffer") is not None}


def probe_scores(sampler: Sampler, settings: SupernetSettings, calib, vx, vy, device,
                 memory) -> dict[str, float]:
    """Held-out top-1 of the largest, smallest and probe subnetworks, recalibrated."""
    s = settings.train
    out = {}
    for name, spec in sampler.probes(settings.probes):
        module = sampler.view(spec).module().to(device=device, memory_format=memory)
        recalibrate(module, calib, settings.calibration_batches, CALIBRATION_BATCH,
                    lambda x: centre_crop(x, s.resolution), device, memory)
        out[name] = evaluate(module, vx, vy, s.resolution, device, s.augment, memory)
    return out


def _save(path: Path, model, opt, sched, scaler, settings, epoch, step, record) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, "settings": settings.resumable(),
                "epoch": epoch, "step": step, "record": record,
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict()}, tmp)
    tmp.replace(path)


def _restore(path: Path, model, opt, sched, scaler, settings, record, device):
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - an unreadable file is bad input
        raise NasscaleError(f"--resume {path}: cannot read the checkpoint ({err})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise NasscaleError(f"--resume {path}: not a supernet training checkpoint")
    was = state["record"]
    for key in ("space", "space_fingerprint", "data", "images"):
        if was.get(key) != record[key]:
            raise NasscaleError(f"--resume {path}: the checkpoint was made for another {key} "
                                f"({str(was.get(key))[:40]!r}, not {str(record[key])[:40]!r});"
                                " start a new one (another -o, or remove it)")
    saved, now = state["settings"], settings.resumable()
    changed = [k for k in now if saved.get(k) != now[k]]
    if changed:
        option = changed[0].replace("_", "-")
        raise NasscaleError(f"--{option}: the checkpoint {path} was trained with "
                            + ", ".join(f"{k} {saved.get(k)!r}" for k in changed)
                            + f", this run asks for {', '.join(repr(now[k]) for k in changed)};"
                            " resume with the same settings or start a new checkpoint")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    return int(state["epoch"]), int(state["step"]), {**was, "device": record["device"],
                                                     "ranks": record["ranks"]}


__all__ = ["CHECKPOINT_FORMAT", "Ranks", "probe_scores", "train_supernet"]
