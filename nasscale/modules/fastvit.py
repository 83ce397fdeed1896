"""Modules of FastViT's kinds (``specs.fastvit``) in their train and deploy forms, keeping the
re-parameterisation protocol of ``modules.reparam``: a train form's ``reparameterize()`` gives
the deploy form with equal outputs in eval mode.  What fuses is what timm's
``reparameterize_model`` fuses: RepMixer's token mixer (its MobileOne conv, the BN it subtracts,
the identity and the layer scale: one depthwise conv), RepLKNet's two conv-BN branches (one
grouped conv), and the positional encoding's identity (folded into its kernel); the
convolutional MLP keeps its conv-BN.

The attention is ``F.scaled_dot_product_attention`` (what fvcore's handle counts: Q·Kᵀ and A·V).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nasscale.modules.layers import (
    BatchNorm2d,
    ConvNormAct,
    DropPath,
    activation,
    add_residual,
    layer_scale,
)
from nasscale.modules.registry import builds, cna_axes, weight_axes
from nasscale.modules.reparam import (
    RepConv,
    _KeepsBlock,
    _Shared,
    fuse_bn,
    identity_kernel,
    pad_kernel,
    rep_axes,
)
from nasscale.specs import ResolvedBlock
from nasscale.specs.fastvit import (
    MLP_KERNEL,
    FastViTAttentionSpec,
    RepCPESpec,
    RepLKSpec,
    RepMixerSpec,
)

_BN = ("weight", "bias", "running_mean", "running_var")


def _scaled(y: torch.Tensor, gamma: nn.Parameter | None) -> torch.Tensor:
    return y if gamma is None else y * gamma.view(1, -1, 1, 1)


class ConvMlp(nn.Module):
    """FastViT's convolutional MLP: depthwise 7×7 conv-BN, 1×1 conv (bias) to ``mid``, the
    activation, 1×1 conv (bias) back."""

    def __init__(self, c: int, mid: int, act: str, bn: tuple[float, float]):
        super().__init__()
        self.conv = ConvNormAct(c, c, MLP_KERNEL, 1, c, act="none", bn=bn)
        self.fc1 = nn.Conv2d(c, mid, 1)
        self.act = activation(act)
        self.fc2 = nn.Conv2d(mid, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.conv(x))))


def conv_mlp_axes(prefix: str) -> dict:
    return {**cna_axes(f"{prefix}conv.", "in", "in", depthwise=True),
            f"{prefix}fc1.weight": ("mid", "in"), f"{prefix}fc1.bias": ("mid",),
            f"{prefix}fc2.weight": ("out", "mid"), f"{prefix}fc2.bias": ("out",)}


class RepMixer(nn.Module):
    """``x + γ·(mixer(x) − BN(x))``; the mixer is a depthwise MobileOne conv without
    activation.  Deploy form: ``conv``, one depthwise k×k conv with bias."""

    def __init__(self, c: int, kernel: int, scale_init: float, deploy: bool,
                 bn: tuple[float, float]):
        super().__init__()
        self.deploy = deploy
        if deploy:
            self.conv = nn.Conv2d(c, c, kernel, 1, kernel // 2, groups=c)
            return
        self.norm = BatchNorm2d(c, eps=bn[0], momentum=bn[1])
        self.mixer = RepConv(c, c, kernel, 1, c, 1, True, "none", None, False, bn)
        self.layer_scale = layer_scale(c, scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.conv(x)
        return x + _scaled(self.mixer(x) - self.norm(x), self.layer_scale)

    @torch.no_grad()
    def fused(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The depthwise conv (weight, bias) this train form computes (eval mode)."""
        weight, bias = self.mixer.fused()
        c, kernel = weight.shape[0], weight.shape[-1]
        eye = identity_kernel(c, 1, kernel, weight)
        norm_w, norm_b = fuse_bn(eye, None, self.norm)
        gamma = (self.layer_scale if self.layer_scale is not None
                 else weight.new_ones(c))
        return eye + gamma.view(-1, 1, 1, 1) * (weight - norm_w), gamma * (bias - norm_b)


@builds(RepMixerSpec)
class RepMixerBlock(_KeepsBlock, nn.Module):
    """The RepMixer block: token mixer (``token_mixer``), then ``x + γ·MLP(x)``."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, c = rb.spec, rb.in_channels
        self.token_mixer = RepMixer(c, s.kernel_size, s.layer_scale, s.deploy, rb.norm.bn)
        self.mlp = ConvMlp(c, rb.widths["mid"], s.activation, rb.norm.bn)
        self.layer_scale = layer_scale(c, s.layer_scale)
        self.drop_path = DropPath(rb.drop_path)
        self._rb = _Shared(rb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.token_mixer(x)
        return add_residual(x, _scaled(self.mlp(x), self.layer_scale), self.drop_path)

    def deploy_state(self) -> dict[str, torch.Tensor]:
        weight, bias = self.token_mixer.fused()
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("token_mixer.")}
        return {**state, "token_mixer.conv.weight": weight, "token_mixer.conv.bias": bias}


@weight_axes(RepMixerBlock)
def repmixer_axes(m: RepMixerBlock, rb) -> dict:
    t = m.token_mixer
    if t.deploy:
        axes = {"token_mixer.conv.weight": ("out", None), "token_mixer.conv.bias": ("out",)}
    else:
        axes = {**rep_axes(t.mixer, "token_mixer.mixer.", "out", "in", True, "se"),
                **{f"token_mixer.norm.{n}": ("out",) for n in _BN}}
        if t.layer_scale is not None:
            axes["token_mixer.layer_scale"] = ("out",)
    axes.update(conv_mlp_axes("mlp."))
    if m.layer_scale is not None:
        axes["layer_scale"] = ("out",)
    return axes


class Attention(nn.Module):
    """Multi-head self-attention over the positions of an (N, C, H, W) map: qkv projection
    without bias, scaled dot-product attention, output projection with bias."""

    def __init__(self, c: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(c, 3 * c, bias=False)
        self.proj = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (N, H·W, C)
        qkv = self.qkv(t).reshape(n, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (N, heads, H·W, d)
        o = self.proj(o.transpose(1, 2).reshape(n, h * w, c))
        return o.transpose(1, 2).reshape(n, c, h, w)


@builds(FastViTAttentionSpec)
class FastViTAttentionBlock(nn.Module):
    """``x + γ₁·MHSA(BN(x))``, then ``x + γ₂·MLP(x)``."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, c = rb.spec, rb.in_channels
        eps, momentum = rb.norm.bn
        self.norm = BatchNorm2d(c, eps=eps, momentum=momentum)
        self.token_mixer = Attention(c, s.num_heads)
        self.layer_scale_1 = layer_scale(c, s.layer_scale)
        self.mlp = ConvMlp(c, rb.widths["mid"], s.activation, rb.norm.bn)
        self.layer_scale_2 = layer_scale(c, s.layer_scale)
        self.drop_path = DropPath(rb.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = add_residual(x, _scaled(self.token_mixer(self.norm(x)), self.layer_scale_1),
                         self.drop_path)
        return add_residual(x, _scaled(self.mlp(x), self.layer_scale_2), self.drop_path)


@weight_axes(FastViTAttentionBlock)
def fvattn_axes(m: FastViTAttentionBlock, rb) -> dict:
    axes = {**{f"norm.{n}": (".in",) for n in _BN},
            "token_mixer.qkv.weight": ((".in",) * 3, "in"),
            "token_mixer.proj.weight": ("out", ".in"), "token_mixer.proj.bias": ("out",),
            **conv_mlp_axes("mlp.")}
    for name in ("layer_scale_1", "layer_scale_2"):
        if getattr(m, name) is not None:
            axes[name] = ("out",)
    return axes


@builds(RepLKSpec)
class RepLKBlock(_KeepsBlock, nn.Module):
    """A k×k and a small-kernel conv-BN (``large``, ``small``), one group per input channel,
    summed; deploy form: ``conv``, the k×k grouped conv with bias."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, cin, cout = rb.spec, rb.in_channels, rb.out_channels
        groups = s.groups(cin)
        self.deploy = s.deploy
        if s.deploy:
            self.conv = nn.Conv2d(cin, cout, s.kernel_size, s.stride, s.kernel_size // 2,
                                  groups=groups)
        else:
            self.large = ConvNormAct(cin, cout, s.kernel_size, s.stride, groups, act="none",
                                     bn=rb.norm.bn)
            self.small = ConvNormAct(cin, cout, s.small_kernel, s.stride, groups, act="none",
                                     bn=rb.norm.bn)
        self._rb = _Shared(rb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.conv(x)
        return self.large(x) + self.small(x)

    def deploy_state(self) -> dict[str, torch.Tensor]:
        weight, bias = fuse_bn(self.large[0].weight, None, self.large[1])
        small_w, small_b = fuse_bn(self.small[0].weight, None, self.small[1])
        return {"conv.weight": weight + pad_kernel(small_w, weight.shape[-1]),
                "conv.bias": bias + small_b}


@weight_axes(RepLKBlock)
def replk_axes(m: RepLKBlock, rb) -> dict:
    # one group per input channel: each output reads one input, no input axis to cut
    if m.deploy:
        return {"conv.weight": ("out", None), "conv.bias": ("out",)}
    return {**cna_axes("large.", "out", None), **cna_axes("small.", "out", None)}


@builds(RepCPESpec)
class RepCPEBlock(_KeepsBlock, nn.Module):
    """``x + pos_enc(x)``, a depthwise conv with bias; deploy form: ``conv``, the same conv
    with the identity in its kernel."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, c = rb.spec, rb.in_channels
        self.deploy = s.deploy
        conv = nn.Conv2d(c, c, s.kernel_size, 1, s.kernel_size // 2, groups=c)
        if s.deploy:
            self.conv = conv
        else:
            self.pos_enc = conv
        self._rb = _Shared(rb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.conv(x)
        return x + self.pos_enc(x)

    def deploy_state(self) -> dict[str, torch.Tensor]:
        w = self.pos_enc.weight
        eye = identity_kernel(w.shape[0], 1, w.shape[-1], w)
        return {"conv.weight": w + eye, "conv.bias": self.pos_enc.bias.clone()}


@weight_axes(RepCPEBlock)
def repcpe_axes(m: RepCPEBlock, rb) -> dict:
    name = "conv" if m.deploy else "pos_enc"
    return {f"{name}.weight": ("out", None), f"{name}.bias": ("out",)}
