"""Analytic parameter and FLOPs counts from resolved blocks — no torch modules are built.

Counting convention (the EfficientNet, MobileNetV3 and ConvNeXt papers', torchvision's published
GFLOPS, and fvcore's conv/linear handles): **one multiply-accumulate = one FLOP**, batch 1.
Convolutions, linear layers and the attention matmuls (Q·Kᵀ and A·V) count; BatchNorm (folded at
inference), LayerNorm, activations, pooling, biases and element-wise products (SE scaling,
residual adds, layer scale) do not.  Parameters are every trainable tensor (BN/LN affine, biases,
layer scale), not buffers.

A block kind without a formula here is an error, never a silent zero (see ``COSTS``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Callable

from nasscale.errors import SpecError
from nasscale.specs import (
    BlockSpec,
    BneckSpec,
    ConvNeXtSpec,
    ConvSpec,
    DepthwiseSeparableSpec,
    FusedMBConvSpec,
    LNDownsampleSpec,
    MBConvSpec,
    MobileMQASpec,
    MobileOneSpec,
    MobileViTSpec,
    MobileViTv2Spec,
    PatchifySpec,
    PatchMergeSpec,
    RepConvSpec,
    ResolvedBlock,
    ResolvedHead,
    ResolvedNetwork,
    SwinEmbedSpec,
    SwinSpec,
    UIBSpec,
    ViTEmbedSpec,
    ViTSpec,
    resolve,
)
from nasscale.specs.attention import ceil_to
from nasscale.specs.blocks import conv_out
from nasscale.specs.fastvit import (
    MLP_KERNEL,
    FastViTAttentionSpec,
    RepCPESpec,
    RepLKSpec,
    RepMixerSpec,
)
from nasscale.specs.repvit import RepViTDownSpec, RepViTSpec, RepViTStemSpec


@dataclass(frozen=True)
class Cost:
    """Parameters and multiply-accumulates, by the kind of operation that performs them."""

    params: int = 0
    conv: int = 0
    linear: int = 0
    attention: int = 0

    @property
    def flops(self) -> int:
        return self.conv + self.linear + self.attention

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Cost)))

    def __mul__(self, times: int) -> "Cost":
        """``times`` copies of this cost (a stack of identical layers)."""
        return Cost(*(getattr(self, f.name) * times for f in fields(Cost)))

    @staticmethod
    def total(costs) -> "Cost":
        out = Cost()
        for c in costs:
            out = out + c
        return out


# --- primitive layers -----------------------------------------------------------------------

def conv(cin: int, cout: int, kernel: int, out_hw: tuple[int, int], groups: int = 1,
         bias: bool = False) -> Cost:
    per_position = cout * (cin // groups) * kernel * kernel
    return Cost(params=per_position + (cout if bias else 0),
                conv=per_position * out_hw[0] * out_hw[1])


def linear(cin: int, cout: int, rows: int = 1, bias: bool = True) -> Cost:
    return Cost(params=cin * cout + (cout if bias else 0), linear=cin * cout * rows)


def norm(channels: int) -> Cost:
    """BatchNorm or LayerNorm: an affine weight and bias; no counted FLOPs."""
    return Cost(params=2 * channels)


def conv_norm(cin: int, cout: int, kernel: int, out_hw, groups: int = 1) -> Cost:
    return conv(cin, cout, kernel, out_hw, groups) + norm(cout)


def squeeze_excite(channels: int, squeeze: int) -> Cost:
    """Two 1×1 convs with bias on the pooled 1×1 map."""
    return conv(channels, squeeze, 1, (1, 1), bias=True) + conv(squeeze, channels, 1, (1, 1),
                                                                 bias=True)


# --- blocks ---------------------------------------------------------------------------------

def conv_cost(rb: ResolvedBlock) -> Cost:
    s = rb.spec
    cost = conv(rb.in_channels, rb.out_channels, s.kernel_size, rb.out_hw, bias=s.bias)
    return cost + norm(rb.out_channels) if s.norm == "bn" else cost


def ds_cost(rb: ResolvedBlock) -> Cost:
    s, cin = rb.spec, rb.in_channels
    cost = conv_norm(cin, cin, s.kernel_size, rb.out_hw, groups=cin)
    if s.se:
        cost += squeeze_excite(cin, rb.widths["se"])
    return cost + conv_norm(cin, rb.out_channels, 1, rb.out_hw)


def mbconv_cost(rb: ResolvedBlock) -> Cost:
    s = rb.spec.as_mbconv() if isinstance(rb.spec, BneckSpec) else rb.spec
    cin, mid, cout = rb.in_channels, rb.widths["mid"], rb.out_channels
    cost = Cost()
    if mid != cin:
        cost += conv_norm(cin, mid, 1, rb.in_hw)
    cost += conv_norm(mid, mid, s.kernel_size, rb.out_hw, groups=mid)
    if s.se:
        cost += squeeze_excite(mid, rb.widths["se"])
    return cost + conv_norm(mid, cout, 1, rb.out_hw)


def fused_cost(rb: ResolvedBlock) -> Cost:
    s = rb.spec
    cin, mid, cout = rb.in_channels, rb.widths["mid"], rb.out_channels
    if mid == cin:
        return conv_norm(cin, cout, s.kernel_size, rb.out_hw)
    cost = conv_norm(cin, mid, s.kernel_size, rb.out_hw)
    if s.se:
        cost += squeeze_excite(mid, rb.widths["se"])
    return cost + conv_norm(mid, cout, 1, rb.out_hw)


def convnext_cost(rb: ResolvedBlock) -> Cost:
    s, c, mid = rb.spec, rb.in_channels, rb.widths["mid"]
    rows = rb.out_hw[0] * rb.out_hw[1]
    cost = conv(c, c, s.kernel_size, rb.out_hw, groups=c, bias=True) + norm(c)
    cost += linear(c, mid, rows) + linear(mid, c, rows)
    # layer scale: one per channel; GRN: γ and β per expanded channel (its products and norms
    # are element-wise: not counted)
    return cost + Cost(params=(c if s.layer_scale > 0 else 0) + (2 * mid if s.grn else 0))


def uib_cost(rb: ResolvedBlock) -> Cost:
    """[start dw] → expand → [mid dw] → project (each conv + BN); layer scale: one per channel.
    The start conv runs at the input size unless it carries the stride (no mid conv)."""
    s, cin, mid, cout = rb.spec, rb.in_channels, rb.widths["mid"], rb.out_channels
    cost = Cost()
    if s.start_kernel:
        start_hw = rb.in_hw if s.kernel_size else rb.out_hw
        cost += conv_norm(cin, cin, s.start_kernel, start_hw, groups=cin)
    expand_hw = rb.out_hw if s.start_kernel and not s.kernel_size else rb.in_hw
    cost += conv_norm(cin, mid, 1, expand_hw)
    if s.kernel_size:
        cost += conv_norm(mid, mid, s.kernel_size, rb.out_hw, groups=mid)
    cost += conv_norm(mid, cout, 1, rb.out_hw)
    return cost + Cost(params=cout if s.layer_scale is not None else 0)


def mqa_cost(rb: ResolvedBlock) -> Cost:
    """BN → query (heads · d) and shared key, value (d each) 1×1 convs, the key/value taken
    from the input downsampled by a strided depthwise conv + BN each → Q·Kᵀ and A·V over the
    (h·w) queries and the downsampled (h'·w') keys → output 1×1 conv; layer scale per channel."""
    s, cin, cout = rb.spec, rb.in_channels, rb.out_channels
    hw, kv = rb.out_hw, s.kv_hw(rb.in_hw)
    heads, d = s.num_heads, s.key_dim
    cost = norm(cin) + conv(cin, heads * d, 1, hw)
    if s.kv_stride > 1:
        cost += (conv_norm(cin, cin, s.kernel_size, kv, groups=cin)) * 2
    cost += conv(cin, d, 1, kv) * 2
    queries, keys = hw[0] * hw[1], kv[0] * kv[1]
    cost += Cost(attention=heads * queries * keys * 2 * d)  # Q·Kᵀ and A·V, per head
    cost += conv(heads * d, cout, 1, hw)
    return cost + Cost(params=cout if s.layer_scale is not None else 0)


def patchify_cost(rb: ResolvedBlock) -> Cost:
    p = rb.spec.patch_size
    return conv(rb.in_channels, rb.out_channels, p, rb.out_hw, bias=True) + norm(rb.out_channels)


def lndown_cost(rb: ResolvedBlock) -> Cost:
    p = rb.spec.patch_size
    return norm(rb.in_channels) + conv(rb.in_channels, rb.out_channels, p, rb.out_hw, bias=True)


# --- attention blocks -----------------------------------------------------------------------

def attention_matmuls(sequences: int, length: int, width: int) -> Cost:
    """Q·Kᵀ and A·V of multi-head self-attention over ``sequences`` independent sequences of
    ``length`` tokens whose heads add up to ``width`` channels: ``2 · sequences · length² · width``
    multiply-accumulates.  Softmax, the 1/√d scaling, masks and bias adds are not counted."""
    return Cost(attention=2 * sequences * length * length * width)


def transformer_layer(width: int, mid: int, rows: int, attention: Cost,
                      attention_rows: int | None = None) -> Cost:
    """Pre-norm layer: LN → qkv linear (width → 3·width) → ``attention`` → output linear → LN →
    MLP (width → mid → width), every linear with bias.  ``attention_rows`` is the number of
    token rows the qkv/output projections see (Swin's padded grid), default ``rows``."""
    a_rows = rows if attention_rows is None else attention_rows
    return (norm(width) + linear(width, 3 * width, a_rows) + attention
            + linear(width, width, a_rows) + norm(width)
            + linear(width, mid, rows) + linear(mid, width, rows))


def mobilevit_cost(rb: ResolvedBlock) -> Cost:
    s, cin, cout = rb.spec, rb.in_channels, rb.out_channels
    d, p, hw = s.transformer_dim, s.patch_size, rb.out_hw
    rows = ceil_to(hw[0], p) * ceil_to(hw[1], p)  # the map is resized up to whole patches
    patches = rows // (p * p)  # each of the p² sequences holds one pixel of every patch
    layer = transformer_layer(d, rb.widths["mid"], rows, attention_matmuls(p * p, patches, d))
    return (conv_norm(cin, cin, s.kernel_size, hw) + conv(cin, d, 1, hw)
            + layer * s.transformer_depth + norm(d)
            + conv_norm(d, cout, 1, hw) + conv_norm(cin + cout, cout, s.kernel_size, hw))


def mobilevit2_cost(rb: ResolvedBlock) -> Cost:
    """Everything runs on the map resized up to whole patches (``rb.out_hw``).  A separable
    attention layer: qkv 1×1 conv (d → 1 + 2d, bias) and out 1×1 conv (d → d, bias); its context
    vector (scores × keys summed over the patches: d·P·N products) and ReLU(values) × context
    are element-wise products and a sum, not matmuls, and are not counted, as fvcore counts
    the reference module (``aten::mul``/``aten::sum``); MLP: two 1×1 convs with bias."""
    s, cin, cout = rb.spec, rb.in_channels, rb.out_channels
    d, mid, hw = s.transformer_dim, rb.widths["mid"], rb.out_hw
    layer = (norm(d) + conv(d, 1 + 2 * d, 1, hw, bias=True) + conv(d, d, 1, hw, bias=True)
             + norm(d) + conv(d, mid, 1, hw, bias=True) + conv(mid, d, 1, hw, bias=True))
    return (conv_norm(cin, cin, s.kernel_size, hw, groups=cin) + conv(cin, d, 1, hw)
            + layer * s.transformer_depth + norm(d) + conv_norm(d, cout, 1, hw))


def vitembed_cost(rb: ResolvedBlock) -> Cost:
    s, c = rb.spec, rb.out_channels
    grid = s.out_hw(rb.trained_hw or rb.in_hw)  # the position embedding's (trained) grid
    positions = 1 + grid[0] * grid[1]
    return (conv(rb.in_channels, c, s.patch_size, rb.out_hw, bias=True)
            + Cost(params=c + positions * c))  # class token + position embedding


def vit_cost(rb: ResolvedBlock) -> Cost:
    c, tokens = rb.in_channels, 1 + rb.out_hw[0] * rb.out_hw[1]
    return transformer_layer(c, rb.widths["mid"], tokens, attention_matmuls(1, tokens, c))


def swin_cost(rb: ResolvedBlock) -> Cost:
    s, c, (h, w) = rb.spec, rb.in_channels, rb.out_hw
    win = s.window_size
    padded = ceil_to(h, win) * ceil_to(w, win)  # qkv, attention and proj see the padded grid
    windows = padded // (win * win)
    bias_table = Cost(params=(2 * win - 1) ** 2 * s.num_heads)
    return bias_table + transformer_layer(c, rb.widths["mid"], h * w,
                                          attention_matmuls(windows, win * win, c), padded)


def patchmerge_cost(rb: ResolvedBlock) -> Cost:
    c4, (h, w) = 4 * rb.in_channels, rb.out_hw
    return norm(c4) + linear(c4, rb.out_channels, h * w, bias=False)


#: One cost formula per block kind.
# --- re-parameterisable kinds: the form the spec is in (``deploy``) ---------------------------

def rep_conv(cin: int, cout: int, kernel: int, out_hw, groups: int, branches: int,
             identity: bool, deploy: bool, se: int = 0) -> Cost:
    """One re-parameterisable conv: ``branches`` k×k conv-BN, a 1×1 conv-BN when k > 1 and a BN
    identity (train form); one k×k conv with bias (deploy form); then the SE of width ``se``."""
    if deploy:
        cost = conv(cin, cout, kernel, out_hw, groups, bias=True)
    else:
        cost = conv_norm(cin, cout, kernel, out_hw, groups) * branches
        if kernel > 1:
            cost += conv_norm(cin, cout, 1, out_hw, groups)
        if identity:
            cost += norm(cout)
    return cost + (squeeze_excite(cout, se) if se else Cost())


def repconv_cost(rb: ResolvedBlock) -> Cost:
    s = rb.spec
    return rep_conv(rb.in_channels, rb.out_channels, s.kernel_size, rb.out_hw,
                    s.groups(rb.in_channels), s.branches, rb.residual, s.deploy,
                    rb.widths["se"])


def mobileone_cost(rb: ResolvedBlock) -> Cost:
    s, cin = rb.spec, rb.in_channels
    dw = rep_conv(cin, cin, s.kernel_size, rb.out_hw, cin, s.branches, s.stride == 1, s.deploy,
                  rb.widths["se_dw"])
    return dw + rep_conv(cin, rb.out_channels, 1, rb.out_hw, 1, s.branches, rb.residual,
                         s.deploy, rb.widths["se"])


# --- RepViT (the form the spec is in) ----------------------------------------------------------

def _conv_bn(cin: int, cout: int, kernel: int, out_hw, groups: int, deploy: bool) -> Cost:
    """A conv → BN (train form) or the conv with bias it fuses to (deploy form)."""
    return (conv(cin, cout, kernel, out_hw, groups, bias=True) if deploy
            else conv_norm(cin, cout, kernel, out_hw, groups))


def _repvit_mixers(c: int, mid: int, k: int, hw, se: int, deploy: bool) -> Cost:
    """Token mixer (dw k×k conv-BN + dw 1×1 conv with bias + identity → BN; deploy: one dw
    conv with bias), SE, channel mixer (1×1 conv-BN, act, 1×1 conv-BN)."""
    if deploy:
        cost = conv(c, c, k, hw, c, bias=True)
    else:
        cost = conv_norm(c, c, k, hw, c) + conv(c, c, 1, hw, c, bias=True) + norm(c)
    if se:
        cost += squeeze_excite(c, se)
    return cost + _conv_bn(c, mid, 1, hw, 1, deploy) + _conv_bn(mid, c, 1, hw, 1, deploy)


def repvit_cost(rb: ResolvedBlock) -> Cost:
    s = rb.spec
    return _repvit_mixers(rb.in_channels, rb.widths["mid"], s.kernel_size, rb.out_hw,
                          rb.widths["se"], s.deploy)


def repvitdown_cost(rb: ResolvedBlock) -> Cost:
    s, cin, cout = rb.spec, rb.in_channels, rb.out_channels
    cost = _conv_bn(cin, cin, s.kernel_size, rb.out_hw, cin, s.deploy)
    cost += _conv_bn(cin, cout, 1, rb.out_hw, 1, s.deploy)
    mid = rb.widths["mid"]
    return cost + _conv_bn(cout, mid, 1, rb.out_hw, 1, s.deploy) + _conv_bn(
        mid, cout, 1, rb.out_hw, 1, s.deploy)


def repvitstem_cost(rb: ResolvedBlock) -> Cost:
    s, half = rb.spec, rb.widths["mid"]
    hw = (conv_out(rb.in_hw[0], 3, 2, 1), conv_out(rb.in_hw[1], 3, 2, 1))
    return (_conv_bn(rb.in_channels, half, 3, hw, 1, s.deploy)
            + _conv_bn(half, rb.out_channels, 3, rb.out_hw, 1, s.deploy))


# --- FastViT (the form the spec is in) ---------------------------------------------------------

def _conv_mlp(c: int, mid: int, hw) -> Cost:
    """FastViT's convolutional MLP: depthwise 7×7 conv-BN, 1×1 convs with bias c → mid → c."""
    return (conv_norm(c, c, MLP_KERNEL, hw, c) + conv(c, mid, 1, hw, bias=True)
            + conv(mid, c, 1, hw, bias=True))


def _layer_scales(c: int, init: float, count: int) -> Cost:
    return Cost(params=c * count if init > 0 else 0)


def repmixer_cost(rb: ResolvedBlock) -> Cost:
    """Token mixer: BN + depthwise MobileOne conv (k×k conv-BN, 1×1 conv-BN, BN identity) +
    layer scale; deploy form: one depthwise k×k conv with bias.  Then the MLP and its layer
    scale (the same in both forms)."""
    s, c, hw = rb.spec, rb.in_channels, rb.out_hw
    if s.deploy:
        mixer = conv(c, c, s.kernel_size, hw, c, bias=True)
    else:
        mixer = (norm(c) + rep_conv(c, c, s.kernel_size, hw, c, 1, True, False)
                 + _layer_scales(c, s.layer_scale, 1))
    return mixer + _conv_mlp(c, rb.widths["mid"], hw) + _layer_scales(c, s.layer_scale, 1)


def fvattn_cost(rb: ResolvedBlock) -> Cost:
    """BN, qkv linear (no bias), Q·Kᵀ and A·V over the h·w positions, output linear, the MLP,
    two layer scales."""
    s, c, hw = rb.spec, rb.in_channels, rb.out_hw
    rows = hw[0] * hw[1]
    return (norm(c) + linear(c, 3 * c, rows, bias=False) + attention_matmuls(1, rows, c)
            + linear(c, c, rows) + _conv_mlp(c, rb.widths["mid"], hw)
            + _layer_scales(c, s.layer_scale, 2))


def replk_cost(rb: ResolvedBlock) -> Cost:
    """Two grouped conv-BN branches (k×k, small kernel; one group per input channel); deploy
    form: one k×k grouped conv with bias."""
    s, cin, cout, hw = rb.spec, rb.in_channels, rb.out_channels, rb.out_hw
    g = s.groups(cin)
    if s.deploy:
        return conv(cin, cout, s.kernel_size, hw, g, bias=True)
    return conv_norm(cin, cout, s.kernel_size, hw, g) + conv_norm(cin, cout, s.small_kernel, hw, g)


def repcpe_cost(rb: ResolvedBlock) -> Cost:
    """A depthwise k×k conv with bias in both forms (the identity folds into its kernel)."""
    c = rb.in_channels
    return conv(c, c, rb.spec.kernel_size, rb.out_hw, c, bias=True)


COSTS: dict[type[BlockSpec], Callable[[ResolvedBlock], Cost]] = {
    ConvSpec: conv_cost,
    DepthwiseSeparableSpec: ds_cost,
    MBConvSpec: mbconv_cost,
    BneckSpec: mbconv_cost,
    FusedMBConvSpec: fused_cost,
    ConvNeXtSpec: convnext_cost,
    PatchifySpec: patchify_cost,
    LNDownsampleSpec: lndown_cost,
    MobileViTSpec: mobilevit_cost,
    MobileViTv2Spec: mobilevit2_cost,
    ViTEmbedSpec: vitembed_cost,
    ViTSpec: vit_cost,
    SwinEmbedSpec: patchify_cost,  # conv p×p/p + LN, like the ConvNeXt stem
    SwinSpec: swin_cost,
    PatchMergeSpec: patchmerge_cost,
    UIBSpec: uib_cost,
    MobileMQASpec: mqa_cost,
    RepConvSpec: repconv_cost,
    MobileOneSpec: mobileone_cost,
    RepViTSpec: repvit_cost,
    RepViTDownSpec: repvitdown_cost,
    RepViTStemSpec: repvitstem_cost,
    RepMixerSpec: repmixer_cost,
    FastViTAttentionSpec: fvattn_cost,
    RepLKSpec: replk_cost,
    RepCPESpec: repcpe_cost,
}


def block_cost(rb: ResolvedBlock) -> Cost:
    try:
        formula = COSTS[type(rb.spec)]
    except KeyError:
        raise SpecError(f"block kind {rb.spec.kind!r} has no cost formula") from None
    return formula(rb)


def head_cost(head: ResolvedHead) -> Cost:
    """Pooling (free) → optional LayerNorm (before or after pooling: the same parameters) →
    hidden linears → classifier."""
    c = head.in_channels
    if head.deploy:  # a bn/distill head fused: one linear
        return linear(c, head.num_classes)
    if head.norm == "bn":  # BatchNorm → classifier, twice with a distillation twin
        return (norm(c) + linear(c, head.num_classes)) * (2 if head.distill else 1)
    cost = norm(c) if head.norm != "none" else Cost()
    for width in head.hidden:
        bn = head.hidden_norm == "bn"
        cost += linear(c, width, bias=not bn) + (norm(width) if bn else Cost())
        c = width
    return cost + linear(c, head.num_classes) * (2 if head.distill else 1)


@dataclass(frozen=True)
class NetworkCost:
    """Costs of every resolved block (same order as ``rn.blocks``) and of the head."""

    network: ResolvedNetwork
    blocks: tuple[Cost, ...]
    head: Cost
    total: Cost = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", Cost.total(self.blocks) + self.head)

    @property
    def params(self) -> int:
        return self.total.params

    @property
    def flops(self) -> int:
        return self.total.flops


def network_cost(rn: ResolvedNetwork) -> NetworkCost:
    return NetworkCost(network=rn, blocks=tuple(block_cost(b) for b in rn.blocks),
                       head=head_cost(rn.head))


def deployed_cost(spec, resolution: int | None = None) -> NetworkCost:
    """The cost of what runs: ``spec``'s deploy form (re-parameterisable blocks fused; any other
    network is its own deploy form).  FLOPs and params budgets, scaling and pruning count this."""
    return network_cost(resolve(spec.deploy_form(), resolution))

