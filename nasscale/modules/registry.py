"""Where each block kind's module says how it is built and how its weights are laid out.

A module file registers, next to each module class, its builder (``@builds(SpecClass)``) and the
channel axes of its tensors (``@weight_axes(ModuleClass)``: tensor name → one axis name per
dimension, which ``nasscale.transfer.carry`` slices when it carries weights).  Both live with
the module, so a new block kind is one module file edit; the registry tests fail, naming the
kind, when a kind has no builder or a built module has tensors no axes function describes.

Axis names: ``in`` (the block's input channels), ``out`` (its output), ``mid`` (its expanded
width), ``se`` (the squeeze), ``attention`` (MobileViT's transformer width), ``heads``; a leading
dot (``.mid``) marks an axis that follows a group's indices but does not produce it (a depthwise
conv's output, an SE gate); a tuple of names is their concatenation; ``None``: not a channel axis.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from nasscale.specs import BlockSpec, ResolvedBlock

#: One builder per block kind: ResolvedBlock -> nn.Module.
BUILDERS: dict[type[BlockSpec], Callable[[ResolvedBlock], nn.Module]] = {}
#: module class -> (module, resolved block) -> {tensor name: axes}
AXES: dict[type[nn.Module], Callable[[nn.Module, ResolvedBlock], dict]] = {}


def builds(*specs: type[BlockSpec]):
    """Register the decorated class or function as the builder of these spec classes."""
    def register(builder):
        for spec in specs:
            BUILDERS[spec] = builder
        return builder
    return register


def weight_axes(*modules: type[nn.Module]):
    """Register the decorated function as the axes of these module classes' tensors."""
    def register(fn):
        for module in modules:
            AXES[module] = fn
        return fn
    return register


_BN = ("weight", "bias", "running_mean", "running_var")


def cna_axes(prefix: str, out: str, inp, depthwise: bool = False, bn: bool = True,
             bias: bool = False) -> dict:
    """Axes of a conv → BatchNorm (→ act) stack (``ConvNormAct``) at ``prefix``."""
    axes = {f"{prefix}0.weight": (out, None if depthwise else inp)}
    if bias:
        axes[f"{prefix}0.bias"] = (out,)
    if bn:
        axes.update({f"{prefix}1.{n}": (out,) for n in _BN})
    return axes


def se_axes(prefix: str, channels: str) -> dict:
    """Axes of a squeeze-and-excitation on ``channels``."""
    gate = "." + channels.lstrip(".")  # the gate has the channels' indices but is no feature
    return {f"{prefix}fc1.weight": ("se", channels), f"{prefix}fc1.bias": ("se",),
            f"{prefix}fc2.weight": (gate, "se"), f"{prefix}fc2.bias": (gate,)}


def transformer_axes(prefix: str, width: str, writes: str) -> dict:
    """A pre-norm transformer layer on a stream of ``width``; ``writes``: the axis name of the
    rows that add into the stream (its producers)."""
    qkv = ("." + width,) * 3  # q, k, v follow the stream's channels, head by head
    return {f"{prefix}norm1.weight": (width,), f"{prefix}norm1.bias": (width,),
            f"{prefix}attn.qkv.weight": (qkv, width), f"{prefix}attn.qkv.bias": (qkv,),
            f"{prefix}attn.proj.weight": (writes, "." + width),
            f"{prefix}attn.proj.bias": (writes,),
            f"{prefix}norm2.weight": (width,), f"{prefix}norm2.bias": (width,),
            f"{prefix}mlp.fc1.weight": ("mid", width), f"{prefix}mlp.fc1.bias": ("mid",),
            f"{prefix}mlp.fc2.weight": (writes, "mid"), f"{prefix}mlp.fc2.bias": (writes,)}
