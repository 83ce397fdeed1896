"""Torch modules of the convolutional block kinds; each is built from a ``ResolvedBlock``."""
from __future__ import annotations

import torch
from torch import nn

from nasscale.modules.layers import (
    ConvNormAct,
    DropPath,
    LayerNorm2d,
    SqueezeExcite,
    activation,
    add_residual,
    layer_scale,
)
from nasscale.modules.registry import builds, cna_axes, se_axes, weight_axes
from nasscale.specs import (
    BneckSpec,
    ConvNeXtSpec,
    ConvSpec,
    DepthwiseSeparableSpec,
    FusedMBConvSpec,
    LNDownsampleSpec,
    MBConvSpec,
    PatchifySpec,
    ResolvedBlock,
    UIBSpec,
)


@builds(DepthwiseSeparableSpec)
class DepthwiseSeparable(nn.Module):
    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, cin = rb.spec, rb.in_channels
        self.dw = ConvNormAct(cin, cin, s.kernel_size, s.stride, groups=cin, act=s.activation,
                              bn=rb.norm.bn)
        self.se = (SqueezeExcite(cin, rb.widths["se"], s.se.activation, s.se.gate)
                   if s.se else nn.Identity())
        self.pw = ConvNormAct(cin, rb.out_channels, 1, act=s.activation, bn=rb.norm.bn)
        self.residual = rb.residual
        self.drop_path = DropPath(rb.drop_path) if self.residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        se = self.se
        y = self.dw(x)
        if not isinstance(se, nn.Identity):  # an absent part is not called (see apply_optional)
            y = se(y)
        y = self.pw(y)
        return add_residual(x, y, self.drop_path) if self.residual else y


@weight_axes(DepthwiseSeparable)
def ds_axes(m: DepthwiseSeparable, rb) -> dict:
    axes = {**cna_axes("dw.", "in", "in", depthwise=True), **cna_axes("pw.", "out", "in")}
    if not isinstance(m.se, nn.Identity):
        axes.update(se_axes("se.", "in"))
    return axes


@builds(MBConvSpec, BneckSpec)
class InvertedResidual(nn.Module):
    """MBConv and MobileNetV3 bneck (``rb.spec`` is an MBConvSpec or a BneckSpec)."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s = rb.spec.as_mbconv() if hasattr(rb.spec, "as_mbconv") else rb.spec
        cin, mid, cout = rb.in_channels, rb.widths["mid"], rb.out_channels
        # no expand conv when the expanded width is the input width (MobileNetV2 t=1, V3 row 1)
        self.expand = (ConvNormAct(cin, mid, 1, act=s.activation, bn=rb.norm.bn)
                       if mid != cin else nn.Identity())
        self.dw = ConvNormAct(mid, mid, s.kernel_size, s.stride, groups=mid, act=s.activation,
                              bn=rb.norm.bn)
        self.se = (SqueezeExcite(mid, rb.widths["se"], s.se.activation, s.se.gate)
                   if s.se else nn.Identity())
        self.project = ConvNormAct(mid, cout, 1, act="none", bn=rb.norm.bn)
        self.residual = rb.residual
        self.drop_path = DropPath(rb.drop_path) if self.residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expand, se = self.expand, self.se
        y = x if isinstance(expand, nn.Identity) else expand(x)  # absent parts are not called
        y = self.dw(y)
        if not isinstance(se, nn.Identity):
            y = se(y)
        y = self.project(y)
        return add_residual(x, y, self.drop_path) if self.residual else y


@weight_axes(InvertedResidual)
def ir_axes(m: InvertedResidual, rb) -> dict:
    mid = "mid" if rb.has_expand else "in"
    axes = {**cna_axes("dw.", "." + mid, mid, depthwise=True), **cna_axes("project.", "out", mid)}
    if mid == "mid":
        axes.update(cna_axes("expand.", "mid", "in"))
    if not isinstance(m.se, nn.Identity):
        axes.update(se_axes("se.", mid))
    return axes


@builds(FusedMBConvSpec)
class FusedMBConv(nn.Module):
    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s = rb.spec
        cin, mid, cout = rb.in_channels, rb.widths["mid"], rb.out_channels
        if mid != cin:
            self.expand = ConvNormAct(cin, mid, s.kernel_size, s.stride, act=s.activation,
                                      bn=rb.norm.bn)
            self.se = (SqueezeExcite(mid, rb.widths["se"], s.se.activation, s.se.gate)
                       if s.se else nn.Identity())
            self.project = ConvNormAct(mid, cout, 1, act="none", bn=rb.norm.bn)
        else:  # expansion 1: one k×k conv straight to the output width (no SE: see the spec)
            self.expand = ConvNormAct(cin, cout, s.kernel_size, s.stride, act=s.activation,
                                      bn=rb.norm.bn)
            self.se = nn.Identity()
            self.project = nn.Identity()
        self.residual = rb.residual
        self.drop_path = DropPath(rb.drop_path) if self.residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        se, project = self.se, self.project
        y = self.expand(x)
        if not isinstance(se, nn.Identity):  # absent parts are not called
            y = se(y)
        if not isinstance(project, nn.Identity):
            y = project(y)
        return add_residual(x, y, self.drop_path) if self.residual else y


@weight_axes(FusedMBConv)
def fused_axes(m: FusedMBConv, rb) -> dict:
    if not rb.has_expand:
        return cna_axes("expand.", "out", "in")
    axes = {**cna_axes("expand.", "mid", "in"), **cna_axes("project.", "out", "mid")}
    if not isinstance(m.se, nn.Identity):
        axes.update(se_axes("se.", "mid"))
    return axes


@builds(ConvNeXtSpec)
class ConvNeXtBlock(nn.Module):
    """The ConvNeXt paper's block in its "channels-last" form: the two 1×1 convs are Linear
    layers on an (N, H, W, C) tensor (the paper found it slightly faster in PyTorch than
    1×1 convs; the parameters and multiply-accumulates are the same)."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, c, mid = rb.spec, rb.in_channels, rb.widths["mid"]
        self.dwconv = nn.Conv2d(c, c, s.kernel_size, padding=s.kernel_size // 2, groups=c)
        self.norm = nn.LayerNorm(c, eps=rb.norm.ln(1e-6))
        self.pwconv1 = nn.Linear(c, mid)
        self.act = activation(s.activation)
        self.grn = GlobalResponseNorm(mid) if s.grn else None
        self.pwconv2 = nn.Linear(mid, c)
        self.layer_scale = layer_scale(c, s.layer_scale)
        self.drop_path = DropPath(rb.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        y = self.act(self.pwconv1(self.norm(y)))
        if self.grn is not None:
            y = self.grn(y)
        y = self.pwconv2(y)
        if self.layer_scale is not None:
            y = y * self.layer_scale
        return add_residual(x, y.permute(0, 3, 1, 2), self.drop_path)  # back to (N, C, H, W)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2's GRN on a channels-last (N, H, W, C) tensor: x + γ·(x·N(x)) + β, where
    N(x) is each channel's L2 norm over H, W divided by its mean over channels (+1e-6).
    γ and β start at zero, so a new GRN is the identity."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        n = g / (g.mean(dim=-1, keepdim=True) + self.eps)
        return x + torch.addcmul(self.bias, self.weight, x * n)


@weight_axes(ConvNeXtBlock)
def convnext_axes(m: ConvNeXtBlock, rb) -> dict:
    axes = {"dwconv.weight": ("in", None), "dwconv.bias": ("in",), "norm.weight": ("in",),
            "norm.bias": ("in",), "pwconv1.weight": ("mid", "in"), "pwconv1.bias": ("mid",),
            "pwconv2.weight": ("out", "mid"), "pwconv2.bias": ("out",)}
    if m.layer_scale is not None:
        axes["layer_scale"] = ("out",)
    if m.grn is not None:
        axes.update({"grn.weight": ("mid",), "grn.bias": ("mid",)})
    return axes


@builds(UIBSpec)
class UniversalInvertedBottleneck(nn.Module):
    """MobileNetV4's UIB (see ``UIBSpec``): [start dw → BN] → expand → BN → act →
    [mid dw → BN → act] → project → BN → [layer scale] → + input."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, cin, mid, cout = rb.spec, rb.in_channels, rb.widths["mid"], rb.out_channels
        bn = rb.norm.bn
        self.dw_start = (ConvNormAct(cin, cin, s.start_kernel, 1 if s.kernel_size else s.stride,
                                     groups=cin, act="none", bn=bn)
                         if s.start_kernel else nn.Identity())
        self.expand = ConvNormAct(cin, mid, 1, act=s.activation, bn=bn)
        self.dw_mid = (ConvNormAct(mid, mid, s.kernel_size, s.stride, groups=mid,
                                   act=s.activation, bn=bn)
                       if s.kernel_size else nn.Identity())
        self.project = ConvNormAct(mid, cout, 1, act="none", bn=bn)
        self.layer_scale = layer_scale(cout, s.layer_scale)
        self.residual = rb.residual
        self.drop_path = DropPath(rb.drop_path) if self.residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dw_start, dw_mid = self.dw_start, self.dw_mid
        y = x if isinstance(dw_start, nn.Identity) else dw_start(x)  # absent parts: not called
        y = self.expand(y)
        if not isinstance(dw_mid, nn.Identity):
            y = dw_mid(y)
        y = self.project(y)
        if self.layer_scale is not None:
            y = y * self.layer_scale.view(1, -1, 1, 1)
        return add_residual(x, y, self.drop_path) if self.residual else y


@weight_axes(UniversalInvertedBottleneck)
def uib_axes(m: UniversalInvertedBottleneck, rb) -> dict:
    axes = {**cna_axes("expand.", "mid", "in"), **cna_axes("project.", "out", "mid")}
    if not isinstance(m.dw_start, nn.Identity):
        axes.update(cna_axes("dw_start.", ".in", "in", depthwise=True))
    if not isinstance(m.dw_mid, nn.Identity):
        axes.update(cna_axes("dw_mid.", ".mid", "mid", depthwise=True))
    if m.layer_scale is not None:
        axes["layer_scale"] = ("out",)
    return axes


@builds(PatchifySpec)
class Patchify(nn.Sequential):
    def __init__(self, rb: ResolvedBlock):
        p = rb.spec.patch_size
        super().__init__(nn.Conv2d(rb.in_channels, rb.out_channels, p, p),
                         LayerNorm2d(rb.out_channels, eps=rb.norm.ln(1e-6)))


@weight_axes(Patchify)
def patchify_axes(m, rb) -> dict:
    return {"0.weight": ("out", "in"), "0.bias": ("out",), "1.weight": ("out",),
            "1.bias": ("out",)}


@builds(LNDownsampleSpec)
class LNDownsample(nn.Sequential):
    def __init__(self, rb: ResolvedBlock):
        p = rb.spec.patch_size
        super().__init__(LayerNorm2d(rb.in_channels, eps=rb.norm.ln(1e-6)),
                         nn.Conv2d(rb.in_channels, rb.out_channels, p, p))


@weight_axes(LNDownsample)
def lndown_axes(m, rb) -> dict:
    return {"0.weight": ("in",), "0.bias": ("in",), "1.weight": ("out", "in"), "1.bias": ("out",)}


@builds(ConvSpec)
def build_conv(rb: ResolvedBlock) -> nn.Module:
    s = rb.spec
    return ConvNormAct(rb.in_channels, rb.out_channels, s.kernel_size, s.stride,
                       act=s.activation, norm=s.norm == "bn", bias=s.bias, bn=rb.norm.bn)
