"""Block specs of the attention families: MobileViT (v1 and v2), ViT and Swin Transformer.

Frozen, typed and torch-free like the convolutional specs (``nasscale.specs.blocks``), with two
more things the resolver reads:

**Tensor layouts.**  Every block declares the layout it takes and the one it gives
(``in_layout``/``out_layout``, see ``LAYOUTS``); ``resolve`` checks that consecutive blocks agree
and the head pools whatever the last block gives.  Convolutional blocks and the MobileViT block
work on ``nchw`` maps.  A ViT embedding turns a map into ``tokens`` (a class token followed by the
patch grid in raster order); Swin works channels-last on ``nhwc`` grids, as torchvision's Swin
does, so no block permutes back and forth.

**Sizes.**  ``hw`` stays the spatial grid for every layout: for ``tokens`` it is the patch grid,
and the sequence is ``1 + h·w`` long.

The MLP width of a transformer layer is given like the expanded width of the convolutional
kinds: ``expand_ratio`` (``e``: ``make_divisible(width · e, 8)``, where ``width`` is the
transformer width) or ``mid_channels`` (``m``: explicit, as the ViT and MobileViT tables print
it).  Every projection (qkv, output, MLP) has a bias, as in all reference implementations.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

from nasscale.errors import field_error
from nasscale.specs.blocks import BlockSpec, _check_expansion, conv_out
from nasscale.specs.common import (
    ACTIVATIONS,
    check_bool,
    check_choice,
    check_int,
    check_odd,
    make_divisible,
)
from nasscale.specs.kind import KindRule


def mlp_width(spec: BlockSpec, width: int) -> int:
    """The hidden width of the MLP: ``mid_channels``, or ``make_divisible(width · e, 8)``."""
    if spec.mid_channels is not None:  # type: ignore[attr-defined]
        return spec.mid_channels  # type: ignore[attr-defined]
    return make_divisible(width * spec.expand_ratio, 8)  # type: ignore[attr-defined]


def _check_heads(width_field: str, width: int, heads: int) -> None:
    check_int("num_heads", heads)
    if width % heads:
        raise field_error("num_heads", f"a divisor of {width_field} ({width})", heads)


def _check_keeps_width(kind: str, in_channels: int, out_channels: int, before: str) -> None:
    if in_channels != out_channels:
        raise field_error("out_channels", f"equal to the input width {in_channels} (a {kind} "
                          f"block keeps its width; put a {before} block before it)",
                          out_channels)


def ceil_to(size: int, multiple: int) -> int:
    """``size`` rounded up to a multiple of ``multiple``."""
    return -(-size // multiple) * multiple


def _check_patch_transformer(spec: BlockSpec) -> None:
    """The fields MobileViT and MobileViTv2 blocks share: widths, depth, patch, local kernel,
    MLP expansion and activation."""
    check_int("out_channels", spec.out_channels)  # type: ignore[attr-defined]
    check_int("transformer_dim", spec.transformer_dim)  # type: ignore[attr-defined]
    check_int("transformer_depth", spec.transformer_depth)  # type: ignore[attr-defined]
    check_int("patch_size", spec.patch_size)  # type: ignore[attr-defined]
    check_odd("kernel_size", spec.kernel_size)  # type: ignore[attr-defined]
    _check_expansion(spec)
    check_choice("activation", spec.activation, ACTIVATIONS)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class MobileViTSpec(BlockSpec):
    """MobileViT block (Mehta & Rastegari, ICLR 2022, Figure 1b), as in timm/ml-cvnets:

    k×k conv-BN-act → 1×1 conv to ``transformer_dim`` (no bias, no norm) → unfold into
    ``patch_size``×``patch_size`` patches → ``transformer_depth`` pre-norm transformer layers in
    which each pixel attends to the pixels at the same position of every other patch → LayerNorm
    → fold → 1×1 conv-BN-act to ``out_channels`` → concatenate with the block input → k×k fusion
    conv-BN-act.

    A feature map that the patch size does not divide is resized (bilinear) up to the next
    multiple before unfolding and back after folding, as timm and ml-cvnets do: never an error,
    and the attention runs on ``ceil(H / p) · ceil(W / p)`` patches.
    """

    kind: ClassVar[str] = "mobilevit"
    skip_rule: ClassVar[str] = "never"  # its residuals are inside the block
    title: ClassVar[str] = "MobileViT block"
    rule: ClassVar[KindRule] = KindRule(
        mid="mid_channels", mid_base="transformer_dim", attention=("transformer_dim", "num_heads"),
        depths=("transformer_depth",), repeatable=False,
        fixed=("patch_size", "kernel_size", "expand_ratio", "activation"),
        text=("k", "p", "d", "l", "h", "e", "m", "c", "act"))
    out_channels: int
    transformer_dim: int
    transformer_depth: int = 2
    num_heads: int = 4
    patch_size: int = 2
    kernel_size: int = 3
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "silu"

    def __post_init__(self) -> None:
        _check_patch_transformer(self)
        _check_heads("transformer_dim", self.transformer_dim, self.num_heads)

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return hw

    def widths(self, in_channels: int) -> dict[str, int]:
        return {"mid": mlp_width(self, self.transformer_dim)}


@dataclass(frozen=True)
class MobileViTv2Spec(BlockSpec):
    """MobileViTv2 block (Mehta & Rastegari, "Separable Self-attention for Mobile Vision
    Transformers", TMLR 2023, Figure 1c and Sec. 3), as in timm's ``MobileVitV2Block``:

    k×k depthwise conv-BN-act → 1×1 conv to ``transformer_dim`` (no bias, no norm) → unfold into
    ``patch_size``×``patch_size`` patches → ``transformer_depth`` pre-norm layers of *separable*
    self-attention and a 1×1-conv MLP → GroupNorm(1) → fold → 1×1 conv-BN (no activation) to
    ``out_channels``.  No concatenation with the input and no fusion conv (unlike MobileViT v1).

    Separable self-attention (linear in the number of tokens): a 1×1 conv (bias) projects to
    ``1 + 2d`` channels: a one-channel query, keys and values; the query's softmax over the
    patches of each pixel position gives context scores; the context vector is the
    score-weighted sum of the keys; the output is ReLU(values) × context vector → 1×1 out conv
    (bias).  Its norms are GroupNorm with one group (a LayerNorm over channels and positions;
    epsilon: the network's ``ln_eps``).  The attention has one query (``num_heads`` is 1 and
    stays 1: it is the attention rule's head count, so scaling and pruning treat
    ``transformer_dim`` as an attention width like MobileViT's).

    A feature map the patch size does not divide is resized (bilinear, align_corners) up to the
    next multiple *before* the local conv, and the block gives that larger map, as timm does.
    """

    kind: ClassVar[str] = "mobilevit2"
    skip_rule: ClassVar[str] = "never"  # its residuals are inside the block
    title: ClassVar[str] = "MobileViTv2 block (separable self-attention)"
    rule: ClassVar[KindRule] = KindRule(
        mid="mid_channels", mid_base="transformer_dim", attention=("transformer_dim", "num_heads"),
        depths=("transformer_depth",), repeatable=False,
        fixed=("patch_size", "kernel_size", "expand_ratio", "activation"),
        text=("k", "p", "d", "l", "e", "m", "c", "act"))
    out_channels: int
    transformer_dim: int
    transformer_depth: int = 2
    num_heads: int = 1
    patch_size: int = 2
    kernel_size: int = 3
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "silu"

    def __post_init__(self) -> None:
        _check_patch_transformer(self)
        if self.num_heads != 1:
            raise field_error("num_heads", "1 (separable self-attention has one query)",
                              self.num_heads)

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return (ceil_to(hw[0], self.patch_size), ceil_to(hw[1], self.patch_size))

    def widths(self, in_channels: int) -> dict[str, int]:
        return {"mid": mlp_width(self, self.transformer_dim)}


@dataclass(frozen=True)
class ViTEmbedSpec(BlockSpec):
    """ViT patch embedding (Dosovitskiy et al., ICLR 2021, eq. 1), as in torchvision: a p×p conv
    with stride p (bias) → flatten to a sequence → prepend a learned class token → add a learned
    position embedding of ``1 + h·w`` rows.

    The position embedding is sized for the patch grid at the network's own resolution (the one it
    is trained at).  At any other resolution its grid part is resized bicubically (class-token row
    kept as is), the way torchvision's ``interpolate_embeddings`` does, so the parameters stay
    those of the trained network.
    """

    kind: ClassVar[str] = "vitembed"
    skip_rule: ClassVar[str] = "never"  # its residuals are inside the block
    title: ClassVar[str] = "ViT patch embedding + class token + position embedding"
    rule: ClassVar[KindRule] = KindRule(repeatable=False, fixed=("patch_size",), text=("p", "c"))
    in_layout: ClassVar[str] = "nchw"
    out_layout: ClassVar[str] = "tokens"
    params_depend_on_size: ClassVar[bool] = True
    out_channels: int
    patch_size: int = 16

    def __post_init__(self) -> None:
        check_int("out_channels", self.out_channels)
        check_int("patch_size", self.patch_size)

    @property
    def block_stride(self) -> int:
        return self.patch_size

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        p = self.patch_size
        return (conv_out(hw[0], p, p, 0), conv_out(hw[1], p, p, 0))


@dataclass(frozen=True)
class ViTSpec(BlockSpec):
    """ViT encoder layer, pre-norm: x + MHSA(LN(x)), then x + MLP(LN(x)) with ``activation``
    (GELU).  The width is the input's (``out_channels`` states it, like ConvNeXt)."""

    kind: ClassVar[str] = "vit"
    skip_rule: ClassVar[str] = "never"  # its residuals are inside the block
    title: ClassVar[str] = "ViT encoder layer"
    rule: ClassVar[KindRule] = KindRule(
        widths=(), keeps_input_width=True, mid="mid_channels",
        attention=("out_channels", "num_heads"), fixed=("expand_ratio", "activation"),
        text=("h", "e", "m", "c", "act"))
    in_layout: ClassVar[str] = "tokens"
    out_layout: ClassVar[str] = "tokens"
    out_channels: int
    num_heads: int = 12
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "gelu"

    def __post_init__(self) -> None:
        check_int("out_channels", self.out_channels)
        _check_heads("out_channels", self.out_channels, self.num_heads)
        _check_expansion(self)
        check_choice("activation", self.activation, ACTIVATIONS)

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return hw

    def widths(self, in_channels: int) -> dict[str, int]:
        return {"mid": mlp_width(self, in_channels)}

    def check_input(self, in_channels: int) -> None:
        _check_keeps_width("vit", in_channels, self.out_channels, "vitembed")


@dataclass(frozen=True)
class SwinEmbedSpec(BlockSpec):
    """Swin patch partition + linear embedding: a p×p conv with stride p (bias) → LayerNorm,
    giving a channels-last ``nhwc`` grid (torchvision's Swin stem)."""

    kind: ClassVar[str] = "swinembed"
    skip_rule: ClassVar[str] = "never"  # its residuals are inside the block
    title: ClassVar[str] = "Swin patch partition + linear embedding"
    rule: ClassVar[KindRule] = KindRule(repeatable=False, fixed=("patch_size",), text=("p", "c"))
    in_layout: ClassVar[str] = "nchw"
    out_layout: ClassVar[str] = "nhwc"
    out_channels: int
    patch_size: int = 4

    def __post_init__(self) -> None:
        check_int("out_channels", self.out_channels)
        check_int("patch_size", self.patch_size)

    @property
    def block_stride(self) -> int:
        return self.patch_size

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        p = self.patch_size
        return (conv_out(hw[0], p, p, 0), conv_out(hw[1], p, p, 0))


@dataclass(frozen=True)
class SwinSpec(BlockSpec):
    """Swin Transformer block (Liu et al., ICCV 2021, Figure 3b), as in torchvision's Swin V1:
    x + (S)W-MSA(LN(x)), then x + MLP(LN(x)).  Attention runs inside non-overlapping
    ``window_size``² windows with a learned relative position bias ((2w−1)² × heads).  A
    ``shifted`` block first rolls the grid by ``window_size // 2`` (cyclic shift) and masks
    attention between tokens that were not neighbours before the roll.

    Repeats of a stage alternate: a stage that starts unshifted has its odd repeats shifted
    (W-MSA, SW-MSA, W-MSA, ...), the paper's Figure 3b.  A grid the window does not divide is
    zero-padded at the bottom/right to a multiple of the window (qkv, attention and projection
    run on the padded grid, the MLP on the real one), and no shift is applied along a side the
    window covers whole — both as torchvision does.
    """

    kind: ClassVar[str] = "swin"
    skip_rule: ClassVar[str] = "never"  # its residuals are inside the block
    title: ClassVar[str] = "Swin Transformer block"
    rule: ClassVar[KindRule] = KindRule(
        widths=(), keeps_input_width=True, mid="mid_channels",
        attention=("out_channels", "num_heads"),
        fixed=("window_size", "expand_ratio", "activation", "shifted"),
        text=("w", "h", "e", "m", "c", "act", "shift"))
    in_layout: ClassVar[str] = "nhwc"
    out_layout: ClassVar[str] = "nhwc"
    out_channels: int
    num_heads: int = 3
    window_size: int = 7
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "gelu"
    shifted: bool = False

    def __post_init__(self) -> None:
        check_int("out_channels", self.out_channels)
        _check_heads("out_channels", self.out_channels, self.num_heads)
        check_int("window_size", self.window_size)
        _check_expansion(self)
        check_choice("activation", self.activation, ACTIVATIONS)
        check_bool("shifted", self.shifted)

    def for_repeat(self, repeat: int) -> "SwinSpec":
        return dataclasses.replace(self, shifted=self.shifted != (repeat % 2 == 1))

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return hw

    def widths(self, in_channels: int) -> dict[str, int]:
        return {"mid": mlp_width(self, in_channels)}

    def check_input(self, in_channels: int) -> None:
        _check_keeps_width("swin", in_channels, self.out_channels, "patchmerge")


@dataclass(frozen=True)
class PatchMergeSpec(BlockSpec):
    """Swin patch merging: concatenate each 2×2 neighbourhood (4C channels; an odd side is
    zero-padded) → LayerNorm → Linear to ``out_channels`` without bias (2C in the paper)."""

    kind: ClassVar[str] = "patchmerge"
    skip_rule: ClassVar[str] = "never"  # its residuals are inside the block
    title: ClassVar[str] = "Swin patch merging"
    rule: ClassVar[KindRule] = KindRule(repeatable=False, text=("c",))
    in_layout: ClassVar[str] = "nhwc"
    out_layout: ClassVar[str] = "nhwc"
    out_channels: int

    def __post_init__(self) -> None:
        check_int("out_channels", self.out_channels)

    @property
    def block_stride(self) -> int:
        return 2

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return (math.ceil(hw[0] / 2), math.ceil(hw[1] / 2))


__all__ = ["MobileViTSpec", "MobileViTv2Spec", "PatchMergeSpec", "SwinEmbedSpec", "SwinSpec",
           "ViTEmbedSpec", "ViTSpec", "ceil_to", "mlp_width"]


@dataclass(frozen=True)
class MobileMQASpec(BlockSpec):
    """MobileNetV4's Mobile MQA block (Qin et al., ECCV 2024, Sec. 3.3; timm ``MobileAttention``
    with ``MultiQueryAttention2d``): BatchNorm of the input → multi-query attention → layer
    scale → + input (when ``skip`` and the widths are equal).

    The attention: ``num_heads`` query heads of ``key_dim`` channels (a 1×1 conv), one shared
    key and one shared value of ``key_dim`` channels each (1×1 convs), taken from the input
    downsampled by ``kv_stride`` (text ``v<int>``) with a strided ``kernel_size``×``kernel_size``
    depthwise conv → BatchNorm, one for the key and one for the value, when ``kv_stride`` > 1;
    then a 1×1 conv from the heads' values to ``out_channels``.  No projection has a bias.
    ``layer_scale``: the per-channel scale's initial value (timm: 1e-5), ``None`` for none.
    """

    kind: ClassVar[str] = "mqa"
    skip_rule: ClassVar[str] = "field"
    title: ClassVar[str] = "Mobile MQA"
    rule: ClassVar[KindRule] = KindRule(
        fixed=("kernel_size", "num_heads", "key_dim", "kv_stride", "layer_scale", "skip"),
        text=("k", "h", "kv_stride", "key_dim", "c", "ls", "noskip"))
    out_channels: int
    num_heads: int = 4
    key_dim: int = 64
    kv_stride: int = 1
    kernel_size: int = 3
    layer_scale: float | None = None
    skip: bool = True

    def __post_init__(self) -> None:
        check_int("out_channels", self.out_channels)
        check_int("num_heads", self.num_heads)
        check_int("key_dim", self.key_dim)
        check_choice("kv_stride", self.kv_stride, (1, 2, 4))
        check_odd("kernel_size", self.kernel_size)
        if self.layer_scale is not None and (isinstance(self.layer_scale, bool) or not
                                             isinstance(self.layer_scale, (int, float))
                                             or self.layer_scale <= 0):
            raise field_error("layer_scale", "a number > 0 or none", self.layer_scale)
        check_bool("skip", self.skip)

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return hw

    def kv_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """The key/value grid: the input downsampled by the strided depthwise conv."""
        k, s = self.kernel_size, self.kv_stride
        if s == 1:
            return hw
        return (conv_out(hw[0], k, s, k // 2), conv_out(hw[1], k, s, k // 2))
