"""The learning-rate schedule and the weight average of ``nasscale.scoring.train``."""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable

import torch
from torch import nn


def lr_factor(total: int, warmup: float) -> Callable[[int], float]:
    """The learning rate's multiplier at each step: linear warm-up over ``warmup`` of the
    ``total`` steps, then cosine decay to zero at the last step."""
    warm = int(round(warmup * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        t = min(step - warm, total - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * t))
    return factor


class WeightAverage:
    """An exponential moving average of a module's floating-point state (weights and BatchNorm
    statistics), updated after every optimizer step with decay ``min(decay, (1+t)/(10+t))``."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = float(decay), 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()
                       if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        weight = 1.0 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        state = model.state_dict()
        for k, avg in self.shadow.items():
            avg.lerp_(state[k].detach(), weight)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        state = model.state_dict()
        for k, avg in self.shadow.items():
            state[k].copy_(avg)

    @contextmanager
    def applied(self, model: nn.Module):
        """The averaged state in ``model`` for the duration of the block."""
        saved = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                state = model.state_dict()
                for k, v in saved.items():
                    state[k].copy_(v)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
