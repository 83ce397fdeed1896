"""Small torch layers shared by the blocks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasscale.errors import SpecError
from nasscale.modules.registry import cna_axes, weight_axes

_ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hswish": lambda: nn.Hardswish(inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "hsigmoid": lambda: nn.Hardsigmoid(inplace=True),
    "none": nn.Identity,
}


def activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise SpecError(f"unknown activation {name!r}; known: {', '.join(_ACTIVATIONS)}") from None


class ConvNormAct(nn.Sequential):
    """Conv2d ('same' padding for odd kernels) → BatchNorm2d (optional) → activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str = "relu", norm: bool = True, bias: bool = False,
                 bn: tuple[float, float] = (1e-5, 0.1)):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2,
                                             groups=groups, bias=bias)]
        if norm:  # bn: (eps, momentum), the block's NormPolicy
            layers.append(nn.BatchNorm2d(cout, eps=bn[0], momentum=bn[1]))
        if act != "none":
            layers.append(activation(act))
        super().__init__(*layers)


@weight_axes(ConvNormAct)
def conv_axes(m: nn.Module, rb) -> dict:
    conv = m[0]
    return cna_axes("", "out", "in", bn=isinstance(m[1], nn.BatchNorm2d) if len(m) > 1 else False,
                bias=conv.bias is not None)


class SqueezeExcite(nn.Module):
    """Global average pool → 1×1 conv → act → 1×1 conv → gate, scaling the input channels."""

    def __init__(self, channels: int, squeeze: int, act: str, gate: str):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.act = activation(act)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = activation(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's residual branch with probability ``p`` (training)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (N, C, H, W)
