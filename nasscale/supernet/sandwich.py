"""The sandwich rule and what scores a subnetwork: which subnetworks a step trains, the loss
that trains them together, and BatchNorm recalibration.

Each step trains the largest member on the labels and ``k - 1`` more subnetworks (BigNAS,
AttentiveNAS): the smallest, then ``k - 2`` drawn uniformly from the space — the same ones on
every rank and after a resume, because they are drawn from ``(seed, step)`` alone.  With
in-place distillation (``distill``) the others learn the largest's softened predictions of the
same batch (its output, detached) instead of the labels.  All of them run in one forward pass
of ``SandwichLoss`` so that ``DistributedDataParallel`` sees one forward and one backward per
step; the gradient is the sum of every subnetwork's loss, as in BigNAS.

Subnetworks share BatchNorm weights but not statistics (a narrow one sees other activations):
a subnetwork is scored after ``recalibrate`` recomputes its statistics over a few training
batches (BigNAS, OFA).
"""
from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasscale.specs import NetworkSpec
from nasscale.specs.random import RandomSuggester
from nasscale.transfer.containment import Parent
from nasscale.transfer.views import View

LABEL_SMOOTHING = 0.1
SUBNET = "subnet"  # the name sampled subnetworks carry (equal structures then compare equal)


class Sampler:
    """The subnetworks of a space at the supernet's resolution and classes, and their views
    into the supernet module (``View``, cached for the largest, smallest and recent ones)."""

    def __init__(self, space: Any, parent: Parent, supernet: nn.Module, resolution: int,
                 num_classes: int, seed: int, cache: int = 16, alternates: dict | None = None):
        self.space, self.parent, self.supernet = space, parent, supernet
        self.alternates = alternates or {}
        self.resolution, self.num_classes, self.seed = resolution, num_classes, seed
        self._views: OrderedDict[NetworkSpec, View] = OrderedDict()
        self._cache = cache
        self.largest = self._fit(space.largest(name=SUBNET))
        self.smallest = self._fit(space.smallest(name=SUBNET))

    def _fit(self, spec: NetworkSpec) -> NetworkSpec:
        return spec.replace(resolution=self.resolution, num_classes=self.num_classes,
                            name=SUBNET, paper="")

    def random(self, rng: random.Random) -> NetworkSpec:
        return self._fit(self.space.sample(RandomSuggester(rng), name=SUBNET))

    def step(self, step: int, k: int) -> list[NetworkSpec]:
        """The subnetworks of step ``step``: largest, smallest, then ``k - 2`` random ones."""
        rng = random.Random(self.seed * 1_000_003 + step)
        nets = [self.largest, self.smallest][:k]
        return nets + [self.random(rng) for _ in range(k - len(nets))]

    def probes(self, n: int) -> list[tuple[str, NetworkSpec]]:
        """The fixed subnetworks whose top-1 every epoch records: largest, smallest and ``n``
        drawn from a seed of their own."""
        rng = random.Random(f"probes:{self.seed}")
        return [("largest", self.largest), ("smallest", self.smallest),
                *((f"probe{i}", self.random(rng)) for i in range(n))]

    def view(self, spec: NetworkSpec) -> View:
        spec = self._fit(spec)
        view = self._views.pop(spec, None)
        if view is None:
            view = View(self.parent, self.supernet, spec, first=True,
                        alternates=self.alternates)
        self._views[spec] = view
        while len(self._views) > self._cache:
            self._views.popitem(last=False)
        return view


class SandwichLoss(nn.Module):
    """The summed loss of one step's subnetworks on one batch (see module doc).  Holds the
    supernet module and its alternate blocks, so that
    ``DistributedDataParallel(SandwichLoss(...))`` reduces their gradients; ``forward`` takes
    the step's views (the first is the largest)."""

    def __init__(self, supernet: nn.Module, alternates: dict | None = None):
        super().__init__()
        self.supernet = supernet
        self.alternates = nn.ModuleDict({str(p): m for p, (m, _) in (alternates or {}).items()})

    def forward(self, x: torch.Tensor, y: torch.Tensor, views: list[View], distill: bool,
                memory=torch.contiguous_format, seeds: list[int] | None = None
                ) -> tuple[torch.Tensor, list[float]]:
        losses = []
        if seeds:
            torch.manual_seed(seeds[0])
        teacher = self.supernet(x)  # the largest member is the supernet itself
        total = F.cross_entropy(teacher.float(), y, label_smoothing=LABEL_SMOOTHING)
        losses.append(total.detach())
        soft = F.softmax(teacher.detach().float(), dim=1)
        for j, view in enumerate(views[1:], 1):
            if seeds:
                torch.manual_seed(seeds[j])  # dropout masks independent of the rank layout
            out = view.forward(x, memory).float()
            if distill:
                loss = -(soft * F.log_softmax(out, dim=1)).sum(1).mean()
            else:
                loss = F.cross_entropy(out, y, label_smoothing=LABEL_SMOOTHING)
            losses.append(loss.detach())
            total = total + loss
        return total, losses


@torch.no_grad()
def recalibrate(model: nn.Module, images: torch.Tensor, batches: int, batch_size: int,
                transform, device, memory=torch.contiguous_format) -> None:
    """Recompute every BatchNorm's running statistics as the exact average over ``batches``
    batches of ``images`` (taken in order: shuffle them first), passed through ``transform``;
    dropout stays off.  The model ends in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    for i in range(max(1, batches)):
        xb = images[i * batch_size:(i + 1) * batch_size]
        if len(xb) < 2:
            break
        model(transform(xb.to(device)).contiguous(memory_format=memory))
    model.eval()


__all__ = ["LABEL_SMOOTHING", "Sampler", "SandwichLoss", "recalibrate"]
