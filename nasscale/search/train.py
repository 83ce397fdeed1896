"""Short training: a few epochs on a small dataset, then top-1 on the held-out split."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nasscale.search.data import Dataset, resize


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 3
    batch_size: int = 32
    lr: float = 0.05
    weight_decay: float = 5e-5
    subset: int | None = None  # cap on training examples
    val_fraction: float = 0.2
    resolution: int = 32  # training resolution (the data is resized to it)
    seed: int = 0


def train_and_evaluate(model: nn.Module, data: Dataset, settings: TrainSettings) -> float:
    """Train ``model`` (SGD, Nesterov momentum 0.9, cosine schedule, label smoothing 0.1) and
    return top-1 accuracy on the held-out split, in [0, 1]."""
    s = settings
    torch.manual_seed(s.seed)
    tx, ty, vx, vy = data.split(s.val_fraction, s.seed, s.subset)
    tx, vx = resize(tx, s.resolution), resize(vx, s.resolution)
    steps_per_epoch = max(1, math.ceil(len(ty) / s.batch_size))
    total = s.epochs * steps_per_epoch
    opt = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=0.9, nesterov=True,
                          weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    g = torch.Generator().manual_seed(s.seed)
    model.train()
    for _ in range(s.epochs):
        order = torch.randperm(len(ty), generator=g)
        for i in range(steps_per_epoch):
            idx = order[i * s.batch_size:(i + 1) * s.batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            loss = F.cross_entropy(model(tx[idx]), ty[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return evaluate(model, vx, vy, s.batch_size)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(y), batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(1, len(y))
