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


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` -- the same parameters, buffers, state-dict keys and results -- whose
    forward with running statistics in eval mode calls ``torch.batch_norm`` directly.
    ``nn.BatchNorm2d.forward`` and ``F.batch_norm`` re-decide on every call what only training
    needs (momentum, the batch counter, the batch-size check): microseconds of Python per call,
    over the 50-odd BatchNorms of a mobile network at batch 1 (benchmarks/eager_parity.py)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = self.running_mean
        if self.training or mean is None:
            return super().forward(x)
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (got {x.dim()}D input)")
        return torch.batch_norm(x, self.weight, self.bias, mean, self.running_var, False, 0.0,
                                self.eps, torch.backends.cudnn.enabled)


class ConvNormAct(nn.Sequential):
    """Conv2d ('same' padding for odd kernels) → BatchNorm2d (optional) → activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str = "relu", norm: bool = True, bias: bool = False,
                 bn: tuple[float, float] = (1e-5, 0.1)):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2,
                                             groups=groups, bias=bias)]
        if norm:  # bn: (eps, momentum), the block's NormPolicy
            layers.append(BatchNorm2d(cout, eps=bn[0], momentum=bn[1]))
        if act != "none":
            layers.append(activation(act))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Sequential's loop without its __iter__, and without calling an Identity (the
        # BatchNorm after ``fold_batchnorm``): a module call costs more than the small ops it
        # wraps at batch 1
        for module in self._modules.values():
            if not isinstance(module, nn.Identity):
                x = module(x)
        return x


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
        s = x.mean((2, 3), keepdim=True)  # what adaptive_avg_pool2d(x, 1) computes, one call less
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


def layer_scale(channels: int, init: float | None) -> nn.Parameter | None:
    """A per-channel layer scale starting at ``init``; ``None`` (no scale) for an ``init`` of
    ``None`` or 0."""
    return nn.Parameter(torch.full((channels,), float(init))) if init else None


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


def apply_optional(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, without calling an ``nn.Identity`` (the placeholder of an absent part:
    no expand conv, no SE): at batch 1 a module call costs microseconds."""
    return x if isinstance(module, nn.Identity) else module(x)


def add_residual(x: torch.Tensor, y: torch.Tensor, drop_path: nn.Module) -> torch.Tensor:
    """A block's residual sum ``x + drop_path(y)``, ``y`` being its branch's output.

    ``drop_path`` is called only where it can change ``y`` (a ``DropPath`` in training with
    ``p > 0``; never an ``nn.Identity``; any other module).  Where autograd records nothing
    (``torch.no_grad``, ``torch.inference_mode``: evaluation and latency), the sum is written
    into ``y``, as torchvision's blocks do (``result += input``): no new tensor to allocate
    and fill.  Only when ``y`` is a tensor of its own (not ``x``, not a view) with ``x``'s
    dtype, shape and strides, so that the result is the tensor ``x + y`` would be, bit for
    bit; otherwise, and whenever autograd records (training), the sum is a new tensor.  ``x``
    is never written to.
    """
    if (drop_path.training and drop_path.p > 0.0) if isinstance(drop_path, DropPath) \
            else not isinstance(drop_path, nn.Identity):
        y = drop_path(y)
    if (not torch.is_grad_enabled() and y is not x and y._base is None and y.dtype == x.dtype
            and y.shape == x.shape and y.stride() == x.stride()):
        return y.add_(x)
    return x + y


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (N, C, H, W)
