"""Scoring and extracting subnetworks of a trained supernet.

``Supernet.open(path, space)`` reads a supernet file made for ``space`` and the data it was
trained on (the same held-out split).  For a candidate, ``extract`` cuts a standalone module
(the first blocks of each slot, each from the supernet's block or the alternate of its kind,
the centre of each kernel, the first channels of each width group and the first heads of a
Mobile MQA tail: a real, smaller network) and recomputes its BatchNorm statistics over
``calibration_batches`` batches of training images; ``score`` is its held-out top-1.  A
candidate the supernet does not contain is a ``NotContained`` naming the slot and field.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nasscale.errors import NasscaleError
from nasscale.scoring.data import Dataset
from nasscale.scoring.train import centre_crop, evaluate
from nasscale.specs import NetworkSpec
from nasscale.supernet import file
from nasscale.supernet.sandwich import recalibrate
from nasscale.transfer.containment import Parent
from nasscale.transfer.views import View

CALIBRATION_BATCH = 64


def calibration_images(train_x: torch.Tensor, seed: int) -> torch.Tensor:
    """The training images in the fixed, seeded order every recalibration reads them in."""
    g = torch.Generator().manual_seed(seed + 7)
    return train_x[torch.randperm(len(train_x), generator=g)]


@dataclass
class Supernet:
    """A trained supernet, ready to cut subnetworks from (see module doc)."""

    space: Any
    parent: Parent
    model: torch.nn.Module
    meta: dict
    data: Dataset
    calibration: torch.Tensor  # training images, shuffled once
    val_x: torch.Tensor
    val_y: torch.Tensor
    alternates: dict = None  # type: ignore[assignment]  # file.alternates
    calibration_batches: int = 20
    batch_size: int = CALIBRATION_BATCH
    device: str = "cpu"
    path: str = ""
    channels_last: bool = True  # 4x the images/s of NCHW when scoring on a CPU

    def __post_init__(self) -> None:
        # the evaluation transform (centre crop, resize) once, not per candidate
        res = self.resolution
        n = self.calibration_batches * self.batch_size
        self.calibration = centre_crop(self.calibration[:n], res).contiguous(
            memory_format=self.memory)
        self.val_x = centre_crop(self.val_x, res).contiguous(memory_format=self.memory)

    @property
    def memory(self):
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @classmethod
    def open(cls, path: str, space: Any, data: str | None = None, where: str = "supernet",
             calibration_batches: int = 20, batch_size: int = CALIBRATION_BATCH,
             device: str = "cpu", held_out: int | None = None) -> "Supernet":
        """``held_out``: score on this many held-out images (a fixed seeded draw; default
        all): fewer is faster and noisier (binomial sd sqrt(p(1-p)/n))."""
        from nasscale.modules.checkpoint import load_weights
        from nasscale.scoring.data import load_dataset

        ckpt = file.read(path, space, where)
        meta = ckpt.meta["supernet"]
        source = data if data is not None else meta["data_source"]
        try:
            dataset = load_dataset(source)
        except NasscaleError as err:
            raise NasscaleError(f"{where} {path}: its data {source!r} does not load ({err}); "
                                "give the data it was trained on") from None
        if list(dataset.classes) != list(meta["classes"]) or len(dataset.y) != meta["images"]:
            raise NasscaleError(
                f"{where} {path}: trained on {meta['data']} ({len(meta['classes'])} classes, "
                f"{meta['images']} images), but data {source} has {dataset.num_classes} "
                f"classes and {len(dataset.y)} images; score on the data it trained on, so "
                "that the held-out images are the ones it never saw")
        spec = file.supernet_spec(space, meta["resolution"], len(meta["classes"]))
        parent = file.aligned(space, spec, where=f"{where} {path}: space")
        model = load_weights(ckpt, spec, where=f"{where}")
        state = ckpt.meta.get("alternates")
        alts = file.alternates(parent, space, state if state is not None else {})
        tx, _, vx, vy = dataset.split(meta["val_fraction"], meta["seed"], meta["subset"])
        if held_out is not None and held_out < len(vy):
            keep = torch.randperm(len(vy), generator=torch.Generator().manual_seed(11))
            vx, vy = vx[keep[:held_out]], vy[keep[:held_out]]
        return cls(space, parent, model, meta, dataset, calibration_images(tx, meta["seed"]),
                   vx, vy, alts, calibration_batches, batch_size, device, str(path))

    @property
    def resolution(self) -> int:
        return int(self.meta["resolution"])

    def fit(self, spec: NetworkSpec) -> NetworkSpec:
        """``spec`` at the supernet's resolution and classes."""
        return spec.replace(resolution=self.resolution, num_classes=self.data.num_classes)

    def extract(self, spec: NetworkSpec, calibrate: bool = True) -> torch.nn.Module:
        """The standalone module of ``spec`` (``NotContained`` when not a subnetwork), its
        BatchNorm statistics recomputed; in eval mode on the scoring device."""
        from nasscale.scoring.settings import resolve_device

        view = View(self.parent, self.model, self.fit(spec), first=True,
                    alternates=self.alternates)
        device = resolve_device(self.device)
        module = view.module().to(device=device, memory_format=self.memory)
        if calibrate:
            recalibrate(module, self.calibration, self.calibration_batches, self.batch_size,
                        lambda x: x, device, self.memory)
        return module.eval()

    def score(self, spec: NetworkSpec) -> float:
        """Held-out top-1 of the extracted, recalibrated subnetwork, in [0, 1]."""
        return self.top1(self.extract(spec))

    def top1(self, module: torch.nn.Module) -> float:
        """Held-out top-1 of a module of the supernet's data, in [0, 1]."""
        from nasscale.scoring.settings import resolve_device

        module = module.to(device=resolve_device(self.device), memory_format=self.memory)
        return evaluate(module, self.val_x, self.val_y, None, resolve_device(self.device),
                        memory=self.memory, batch_size=500)

    def write_subnet(self, spec: NetworkSpec, path: Path, module: torch.nn.Module | None = None,
                     accuracy: float | None = None) -> None:
        """``spec``'s weights (``module``, else cut and recalibrated now) as a nasscale weights
        file that ``nasscale train --weights``, ``prune --weights`` and ``export`` read;
        atomically."""
        from nasscale.grammar import network_to_data

        spec = self.fit(spec)
        module = module if module is not None else self.extract(spec)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"format": file.WEIGHTS_FORMAT, "state_dict": module.cpu().state_dict(),
                    "network": network_to_data(spec), "classes": list(self.data.classes),
                    "accuracy": accuracy, "data": self.data.name,
                    "normalisation": self.data.normalisation,
                    "inherited_from": {"supernet": self.path, "space": self.space.name}}, tmp)
        tmp.replace(path)

    def timed_score(self, spec: NetworkSpec) -> tuple[float, float]:
        t0 = time.perf_counter()
        value = self.score(spec)
        return value, time.perf_counter() - t0


__all__ = ["CALIBRATION_BATCH", "Supernet", "calibration_images"]
