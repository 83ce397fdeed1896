"""Modules of RepViT's kinds (``specs.repvit``), in their train and deploy forms, keeping the
re-parameterisation protocol of ``modules.reparam``: the train form's ``reparameterize()``
gives the deploy form (every conv → BN one conv with bias; the token mixer's depthwise k×k
conv-BN, depthwise 1×1 conv and identity, then BN, one depthwise conv) with equal outputs in
eval mode."""
from __future__ import annotations

import torch
from torch import nn

from nasscale.modules.layers import BatchNorm2d, ConvNormAct, SqueezeExcite, activation
from nasscale.modules.registry import builds, cna_axes, se_axes, weight_axes
from nasscale.modules.reparam import (
    _KeepsBlock,
    _Shared,
    fuse_bn,
    identity_kernel,
    pad_kernel,
)
from nasscale.specs import RepViTDownSpec, RepViTSpec, RepViTStemSpec, ResolvedBlock

_BN = ("weight", "bias", "running_mean", "running_var")


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
            deploy: bool = False, bn: tuple[float, float] = (1e-5, 0.1)) -> ConvNormAct:
    """A conv → BatchNorm without activation; deploy form: the conv with bias."""
    return ConvNormAct(cin, cout, kernel, stride, groups, act="none", norm=not deploy,
                       bias=deploy, bn=bn)


def fused(m: ConvNormAct) -> tuple[torch.Tensor, torch.Tensor]:
    """The (weight, bias) of a train-form ``conv_bn`` as one conv (eval mode)."""
    return fuse_bn(m[0].weight, m[0].bias, m[1])


def conv_bn_state(m: ConvNormAct, prefix: str) -> dict:
    """A train-form ``conv_bn``'s fused tensors under its deploy form's names."""
    weight, bias = fused(m)
    return {f"{prefix}0.weight": weight, f"{prefix}0.bias": bias}


def conv_bn_axes(prefix: str, out: str, inp, deploy: bool) -> dict:
    return cna_axes(prefix, out, inp, bn=not deploy, bias=deploy)


class Mlp(nn.Module):
    """RepViT's channel mixer: 1×1 conv-BN → act → 1×1 conv-BN."""

    def __init__(self, c: int, mid: int, act: str, deploy: bool, bn):
        super().__init__()
        self.conv1 = conv_bn(c, mid, 1, deploy=deploy, bn=bn)
        self.act = activation(act)
        self.conv2 = conv_bn(mid, c, 1, deploy=deploy, bn=bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.conv1(x)))

    def deploy_state(self, prefix: str) -> dict:
        return {**conv_bn_state(self.conv1, f"{prefix}conv1."),
                **conv_bn_state(self.conv2, f"{prefix}conv2.")}


def mlp_axes(prefix: str, width: str, mid: str, deploy: bool) -> dict:
    return {**conv_bn_axes(f"{prefix}conv1.", mid, width, deploy),
            **conv_bn_axes(f"{prefix}conv2.", width, mid, deploy)}


class TokenMixer(nn.Module):
    """RepVGG's depthwise form: BN(dw k×k conv-BN + dw 1×1 conv with bias + identity)."""

    def __init__(self, c: int, kernel: int, bn):
        super().__init__()
        self.conv = conv_bn(c, c, kernel, groups=c, bn=bn)
        self.conv1 = nn.Conv2d(c, c, 1, groups=c)
        self.bn = BatchNorm2d(c, eps=bn[0], momentum=bn[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x) + self.conv1(x) + x)

    @torch.no_grad()
    def fused(self) -> tuple[torch.Tensor, torch.Tensor]:
        w, b = fused(self.conv)
        k = w.shape[-1]
        w = w + pad_kernel(self.conv1.weight, k) + identity_kernel(w.shape[0], 1, k, w)
        return fuse_bn(w, b + self.conv1.bias, self.bn)


class RepViTCore(nn.Module):
    """Token mixer → [SE] → x + channel mixer(x).  Deploy: ``token_mixer`` is one dw conv."""

    def __init__(self, c: int, mid: int, kernel: int, se: int, rb: ResolvedBlock, deploy: bool):
        super().__init__()
        s, bn = rb.spec, rb.norm.bn
        self.deploy = deploy
        self.token_mixer = (nn.Conv2d(c, c, kernel, 1, kernel // 2, groups=c) if deploy
                            else TokenMixer(c, kernel, bn))
        self.se = SqueezeExcite(c, se, s.se.activation, s.se.gate) if se else None
        self.channel_mixer = Mlp(c, mid, s.activation, deploy, bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.token_mixer(x)
        if self.se is not None:
            x = self.se(x)
        return x + self.channel_mixer(x)

    def deploy_state(self, prefix: str = "") -> dict:
        w, b = self.token_mixer.fused()
        state = {f"{prefix}token_mixer.weight": w, f"{prefix}token_mixer.bias": b,
                 **self.channel_mixer.deploy_state(f"{prefix}channel_mixer.")}
        if self.se is not None:
            state.update({f"{prefix}se.{k}": v for k, v in self.se.state_dict().items()})
        return state


def core_axes(m: RepViTCore, prefix: str, width: str, mid: str) -> dict:
    if m.deploy:
        axes = {f"{prefix}token_mixer.weight": (width, None),
                f"{prefix}token_mixer.bias": (width,)}
    else:
        t = f"{prefix}token_mixer."
        axes = {**conv_bn_axes(f"{t}conv.", width, None, False),
                f"{t}conv1.weight": (width, None), f"{t}conv1.bias": (width,),
                **{f"{t}bn.{n}": (width,) for n in _BN}}
    if m.se is not None:
        axes.update(se_axes(f"{prefix}se.", width))
    return {**axes, **mlp_axes(f"{prefix}channel_mixer.", width, mid, m.deploy)}


@builds(RepViTSpec)
class RepViTBlock(_KeepsBlock, RepViTCore):
    def __init__(self, rb: ResolvedBlock):
        super().__init__(rb.in_channels, rb.widths["mid"], rb.spec.kernel_size,
                         rb.widths["se"], rb, rb.spec.deploy)
        self._rb = _Shared(rb)


@weight_axes(RepViTBlock)
def repvit_axes(m: RepViTBlock, rb) -> dict:
    return core_axes(m, "", "in", "mid")


@builds(RepViTDownSpec)
class RepViTDownsample(_KeepsBlock, nn.Module):
    """spatial_downsample (dw, stride 2) → channel_downsample → x + ffn(x)."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, cin, cout, bn = rb.spec, rb.in_channels, rb.out_channels, rb.norm.bn
        self.spatial_downsample = conv_bn(cin, cin, s.kernel_size, 2, cin, s.deploy, bn)
        self.channel_downsample = conv_bn(cin, cout, 1, deploy=s.deploy, bn=bn)
        self.ffn = Mlp(cout, rb.widths["mid"], s.activation, s.deploy, bn)
        self._rb = _Shared(rb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.channel_downsample(self.spatial_downsample(x))
        return x + self.ffn(x)

    def deploy_state(self) -> dict:
        return {**conv_bn_state(self.spatial_downsample, "spatial_downsample."),
                **conv_bn_state(self.channel_downsample, "channel_downsample."),
                **self.ffn.deploy_state("ffn.")}


@weight_axes(RepViTDownsample)
def repvitdown_axes(m: RepViTDownsample, rb) -> dict:
    deploy = rb.spec.deploy
    return {**conv_bn_axes("spatial_downsample.", "in", None, deploy),
            **conv_bn_axes("channel_downsample.", "out", "in", deploy),
            **mlp_axes("ffn.", "out", "mid", deploy)}


@builds(RepViTStemSpec)
class RepViTStem(_KeepsBlock, nn.Module):
    """conv1 (3×3 stride 2, half the width) → act → conv2 (3×3 stride 2)."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, half, bn = rb.spec, rb.widths["mid"], rb.norm.bn
        self.conv1 = conv_bn(rb.in_channels, half, 3, 2, deploy=s.deploy, bn=bn)
        self.act1 = activation(s.activation)
        self.conv2 = conv_bn(half, rb.out_channels, 3, 2, deploy=s.deploy, bn=bn)
        self._rb = _Shared(rb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act1(self.conv1(x)))

    def deploy_state(self) -> dict:
        return {**conv_bn_state(self.conv1, "conv1."), **conv_bn_state(self.conv2, "conv2.")}


@weight_axes(RepViTStem)
def repvitstem_axes(m: RepViTStem, rb) -> dict:
    return {**conv_bn_axes("conv1.", "mid", "in", rb.spec.deploy),
            **conv_bn_axes("conv2.", "out", "mid", rb.spec.deploy)}
