"""FastViT's block kinds (Vasu et al., "FastViT: A Fast Hybrid Vision Transformer using
Structural Reparameterization", ICCV 2023, Fig. 2), as timm's ``FastVit`` builds them.

A FastViT network is a MobileOne stem (``repconv`` then ``mobileone``, GELU), four stages and
a MobileOne conv with SE before the pooled classifier (a ``repconv`` head block).  Each stage
after the first opens with a patch embedding: a ``replk`` then a 1×1 ``repconv``.  The SA and MA
variants add a ``repcpe`` before their last stage's ``fvattn`` blocks.  Every kind here keeps
its train form's branches in the ``deploy`` field where timm's ``reparameterize_model`` fuses
them (``specs.reparam``), and only there: the convolutional MLP's conv-BN stays unfused in the
deploy form, as timm leaves it.

``repmixer`` -- the RepMixer block: a token mixer ``x + γ₁·(mixer(x) − BN(x))``, where the
mixer is a depthwise MobileOne conv (k×k conv-BN + 1×1 conv-BN + BN identity, no activation),
then a residual convolutional MLP ``x + γ₂·MLP(x)``: depthwise 7×7 conv-BN, 1×1 conv (bias)
to ``mid``, the activation, 1×1 conv (bias) back.  ``γ`` are per-channel layer scales (init
``layer_scale``; 0: none).  Deploy form: the token mixer is one depthwise k×k conv with bias.

``fvattn`` -- the attention block: ``x + γ₁·MHSA(BN(x))`` (qkv projection without bias,
output projection with bias, ``num_heads`` heads over the feature map's positions) then the
same residual convolutional MLP.  Nothing to fuse: it has no deploy form of its own.

``replk`` -- RepLKNet's large-kernel conv, FastViT's downsampling: a k×k conv-BN and a
``small_kernel`` conv-BN in parallel, both grouped with one group per input channel (each
input channel makes ``out_channels / in`` outputs; gcd(in, out) groups for other widths) and
strided, summed; no activation (timm's original weights have none).  Deploy form: one k×k
grouped conv with bias.

``repcpe`` -- the re-parameterisable conditional positional encoding: ``x + dwconv(x)``, a
depthwise k×k conv with bias.  Deploy form: one depthwise conv with the identity folded into
its kernel (the same parameter count; timm renames it).

The MLP's hidden width is ``int(width · e)`` as timm's ``ConvMlp`` computes it (``m`` gives it
explicitly).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from nasscale.errors import field_error
from nasscale.specs.blocks import STRIDES, BlockSpec, _check_expansion, conv_out
from nasscale.specs.common import (
    ACTIVATIONS,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_odd,
)
from nasscale.specs.kind import KindRule

#: the depthwise conv of FastViT's convolutional MLP (timm's ``ConvMlp``: 7×7)
MLP_KERNEL = 7


def mlp_hidden(spec: BlockSpec, width: int) -> int:
    """The MLP's hidden width: ``mid_channels``, or ``int(width · expand_ratio)`` (timm)."""
    if spec.mid_channels is not None:  # type: ignore[attr-defined]
        return spec.mid_channels  # type: ignore[attr-defined]
    return max(1, int(width * spec.expand_ratio))  # type: ignore[attr-defined]


def _check_keeps_width(kind: str, in_channels: int, out_channels: int) -> None:
    if in_channels != out_channels:
        raise field_error("out_channels", f"equal to the input width {in_channels} (a {kind} "
                          "block keeps its width; put a replk patch embedding before it)",
                          out_channels)


def _check_mixer_block(spec: BlockSpec) -> None:
    check_int("out_channels", spec.out_channels)  # type: ignore[attr-defined]
    _check_expansion(spec)
    check_choice("activation", spec.activation, ACTIVATIONS)  # type: ignore[attr-defined]
    check_number("layer_scale", spec.layer_scale, strict=False)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RepMixerSpec(BlockSpec):
    """FastViT's RepMixer block (see the module doc)."""

    kind: ClassVar[str] = "repmixer"
    title: ClassVar[str] = "FastViT RepMixer block"
    skip_rule: ClassVar[str] = "always"  # the token mixer's identity and the MLP's residual
    reparameterizable: ClassVar[bool] = True
    rule: ClassVar[KindRule] = KindRule(
        mid="mid_channels", keeps_input_width=True,
        fixed=("kernel_size", "expand_ratio", "activation", "layer_scale", "deploy"),
        text=("k", "e", "m", "c", "act", "ls", "deploy"))
    out_channels: int
    kernel_size: int = 3
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "gelu"
    layer_scale: float = 1e-5
    deploy: bool = False

    def __post_init__(self) -> None:
        _check_mixer_block(self)
        check_odd("kernel_size", self.kernel_size)
        check_bool("deploy", self.deploy)

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return hw

    def widths(self, in_channels: int) -> dict[str, int]:
        return {"mid": mlp_hidden(self, in_channels)}

    def check_input(self, in_channels: int) -> None:
        _check_keeps_width("repmixer", in_channels, self.out_channels)


@dataclass(frozen=True)
class FastViTAttentionSpec(BlockSpec):
    """FastViT's attention block (see the module doc); the head width is the width over
    ``num_heads`` (timm: 32 channels per head)."""

    kind: ClassVar[str] = "fvattn"
    title: ClassVar[str] = "FastViT attention block"
    skip_rule: ClassVar[str] = "always"  # both residuals, on the block's one width
    rule: ClassVar[KindRule] = KindRule(
        widths=(), mid="mid_channels", keeps_input_width=True,
        attention=("out_channels", "num_heads"),
        fixed=("expand_ratio", "activation", "layer_scale"),
        text=("h", "e", "m", "c", "act", "ls"))
    out_channels: int
    num_heads: int = 1
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "gelu"
    layer_scale: float = 1e-5

    def __post_init__(self) -> None:
        _check_mixer_block(self)
        check_int("num_heads", self.num_heads)
        if self.out_channels % self.num_heads:
            raise field_error("num_heads", f"a divisor of out_channels ({self.out_channels})",
                              self.num_heads)

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return hw

    def widths(self, in_channels: int) -> dict[str, int]:
        return {"mid": mlp_hidden(self, in_channels)}

    def check_input(self, in_channels: int) -> None:
        _check_keeps_width("fvattn", in_channels, self.out_channels)


@dataclass(frozen=True)
class RepLKSpec(BlockSpec):
    """RepLKNet's large-kernel conv as FastViT downsamples with it (see the module doc)."""

    kind: ClassVar[str] = "replk"
    title: ClassVar[str] = "re-parameterisable large-kernel conv"
    skip_rule: ClassVar[str] = "never"
    reparameterizable: ClassVar[bool] = True
    rule: ClassVar[KindRule] = KindRule(
        repeatable=False, fixed=("kernel_size", "small_kernel", "stride", "deploy"),
        text=("k", "small_kernel", "s", "c", "deploy"))
    out_channels: int
    kernel_size: int = 7
    small_kernel: int = 3
    stride: int = 2
    deploy: bool = False

    def __post_init__(self) -> None:
        check_int("out_channels", self.out_channels)
        check_odd("kernel_size", self.kernel_size)
        check_odd("small_kernel", self.small_kernel)
        if self.small_kernel > self.kernel_size:
            raise field_error("small_kernel", f"at most kernel_size ({self.kernel_size})",
                              self.small_kernel)
        check_choice("stride", self.stride, STRIDES)
        check_bool("deploy", self.deploy)

    def ties_widths(self) -> bool:
        return True

    def groups(self, in_channels: int) -> int:
        """gcd(input, output): one group per input channel when the output width is a multiple
        of the input's (every FastViT), and a valid grouped conv for scaled or pruned widths."""
        return math.gcd(in_channels, self.out_channels)

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        k, s = self.kernel_size, self.stride
        return (conv_out(hw[0], k, s, k // 2), conv_out(hw[1], k, s, k // 2))


@dataclass(frozen=True)
class RepCPESpec(BlockSpec):
    """FastViT's conditional positional encoding (see the module doc)."""

    kind: ClassVar[str] = "repcpe"
    title: ClassVar[str] = "re-parameterisable conditional positional encoding"
    skip_rule: ClassVar[str] = "always"  # the identity it adds (folded in the deploy form)
    reparameterizable: ClassVar[bool] = True
    rule: ClassVar[KindRule] = KindRule(
        keeps_input_width=True, repeatable=False, fixed=("kernel_size", "deploy"),
        text=("k", "c", "deploy"))
    out_channels: int
    kernel_size: int = 7
    deploy: bool = False

    def __post_init__(self) -> None:
        check_int("out_channels", self.out_channels)
        check_odd("kernel_size", self.kernel_size)
        check_bool("deploy", self.deploy)

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return hw

    def check_input(self, in_channels: int) -> None:
        _check_keeps_width("repcpe", in_channels, self.out_channels)
