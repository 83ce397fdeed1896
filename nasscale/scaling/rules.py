"""What scales in each block kind, and how widths and resolutions are rounded.

Scaling never guesses from field names: every block kind has a :class:`KindRule` in
``KIND_RULES`` (a dict literal) that sorts *each* of its fields into "scales with width",
"explicit expanded width", "attention width" or "fixed".  The registry test fails when a kind has
no rule, or when a kind gains a field its rule does not mention, so adding a kind (or a field)
forces a decision about how it scales.

Rounding is the network's :class:`~nasscale.specs.RoundingPolicy`; the helpers here apply it.
A coefficient of exactly 1 leaves its dimension untouched, so scaling by (1, 1, base resolution)
returns the base network, whatever its widths.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

from nasscale.errors import SpecError
from nasscale.specs import (
    BLOCK_KINDS,
    BlockSpec,
    BneckSpec,
    ConvNeXtSpec,
    ConvSpec,
    DepthwiseSeparableSpec,
    FusedMBConvSpec,
    LNDownsampleSpec,
    MBConvSpec,
    MobileViTSpec,
    PatchifySpec,
    PatchMergeSpec,
    SwinEmbedSpec,
    SwinSpec,
    ViTEmbedSpec,
    ViTSpec,
    RoundingPolicy,
    make_divisible,
)


@dataclass(frozen=True)
class KindRule:
    """How one block kind scales.

    ``widths``: channel fields multiplied by the width coefficient and rounded by the policy.
    ``mid``: the field of an explicit expanded width (``m<int>``), scaled by the policy's ``mid``
    rule; ``None`` for kinds without one.  ``mid_base``: the width the ``ratio`` rule keeps
    ``mid`` proportional to (default: the block's input; MobileViT's MLP follows its
    transformer width).  (A ratio ``e`` needs no rule: the expanded width is
    derived from the scaled input when the network is resolved, and so is every SE width.)
    ``attention``: ``(width field, heads field)`` of an attention block: the width rounds to a
    multiple of lcm(divisor, heads) when the policy keeps ``heads`` fixed, or of lcm(divisor,
    head_dim) with heads recomputed when it keeps ``head_dim`` fixed.
    ``depths``: inner layer counts (a MobileViT block's transformer layers), scaled by the depth
    coefficient and rounded like a stage's repeats.
    ``repeatable``: whether a stage of this kind gains repeats with depth (ConvNeXt's
    downsampling layers and stems are never repeated).
    ``keeps_input_width``: the block's ``out_channels`` must equal its input width (ConvNeXt);
    it is set to the scaled input width rather than rounded on its own.
    ``fixed``: every other field, which scaling never changes (kernel, stride, patch size,
    expansion ratio, activation, SE recipe, flags).
    """

    widths: tuple[str, ...] = ("out_channels",)
    mid: str | None = None
    mid_base: str | None = None
    attention: tuple[str, str] | None = None
    depths: tuple[str, ...] = ()
    repeatable: bool = True
    keeps_input_width: bool = False
    fixed: tuple[str, ...] = ()

    def named_fields(self) -> tuple[str, ...]:
        """Every field this rule mentions (the completeness test compares it with the kind's)."""
        return (*self.widths, *((self.mid,) if self.mid else ()), *(self.attention or ()),
                *self.depths, *self.fixed)


_ACT_SE = ("activation", "se")

#: One rule per block kind (see docs/DESIGN.md, "Scaling").  Attention kinds name their
#: ``attention=(width field, heads field)``: heads, patch and window sizes never scale.
KIND_RULES: dict[type[BlockSpec], KindRule] = {
    ConvSpec: KindRule(fixed=("kernel_size", "stride", "activation", "norm", "bias")),
    DepthwiseSeparableSpec: KindRule(fixed=("kernel_size", "stride", *_ACT_SE, "skip")),
    MBConvSpec: KindRule(mid="mid_channels",
                         fixed=("kernel_size", "stride", "expand_ratio", *_ACT_SE, "skip")),
    FusedMBConvSpec: KindRule(mid="mid_channels",
                              fixed=("kernel_size", "stride", "expand_ratio", *_ACT_SE, "skip")),
    BneckSpec: KindRule(mid="mid_channels", fixed=("kernel_size", "stride", *_ACT_SE)),
    ConvNeXtSpec: KindRule(mid="mid_channels", keeps_input_width=True,
                           fixed=("kernel_size", "expand_ratio", "activation", "layer_scale")),
    PatchifySpec: KindRule(repeatable=False, fixed=("patch_size",)),
    LNDownsampleSpec: KindRule(repeatable=False, fixed=("patch_size",)),
    # a MobileViT block deepens through its transformer layers, not by repeating the block
    MobileViTSpec: KindRule(mid="mid_channels", mid_base="transformer_dim",
                            attention=("transformer_dim", "num_heads"),
                            depths=("transformer_depth",), repeatable=False,
                            fixed=("patch_size", "kernel_size", "expand_ratio", "activation")),
    ViTEmbedSpec: KindRule(repeatable=False, fixed=("patch_size",)),
    ViTSpec: KindRule(widths=(), keeps_input_width=True, mid="mid_channels",
                      attention=("out_channels", "num_heads"),
                      fixed=("expand_ratio", "activation")),
    SwinEmbedSpec: KindRule(repeatable=False, fixed=("patch_size",)),
    SwinSpec: KindRule(widths=(), keeps_input_width=True, mid="mid_channels",
                       attention=("out_channels", "num_heads"),
                       fixed=("window_size", "expand_ratio", "activation", "shifted")),
    PatchMergeSpec: KindRule(repeatable=False),
}


def kind_rule(spec: BlockSpec, rules: dict[type[BlockSpec], KindRule] = KIND_RULES) -> KindRule:
    try:
        return rules[type(spec)]
    except KeyError:
        raise SpecError(f"block kind {spec.kind!r} has no scaling rule "
                        "(nasscale.scaling.rules.KIND_RULES)") from None


def missing_rules(rules: dict[type[BlockSpec], KindRule] = KIND_RULES) -> list[str]:
    """Problems with the registry: kinds without a rule, fields a rule does not sort."""
    problems = []
    for code, cls in BLOCK_KINDS.items():
        if cls not in rules:
            problems.append(f"{code}: no rule")
            continue
        names = {f.name for f in fields(cls)}
        mentioned = rules[cls].named_fields()
        problems += [f"{code}: rule names unknown field {n!r}" for n in mentioned if n not in names]
        problems += [f"{code}: field {n!r} is neither scaled nor fixed" for n in sorted(names)
                     if n not in mentioned]
    return problems


# --- rounding -------------------------------------------------------------------------------

def round_width(channels: int, width: float, policy: RoundingPolicy, divisor: int | None = None,
                ) -> int:
    """``channels · width`` rounded by the policy (nearest multiple of the divisor, never below
    ``min_ratio`` of the unrounded value); ``width == 1`` returns ``channels`` unchanged."""
    if width == 1:
        return channels
    return make_divisible(channels * width, divisor or policy.divisor, policy.min_ratio)


def head_width(channels: int, width: float, policy: RoundingPolicy) -> int:
    """The last feature width before the classifier, by the policy's ``head`` rule."""
    factor = {"scale": width, "grow": max(1.0, width), "fixed": 1.0}[policy.head]
    return round_width(channels, factor, policy)


def attention_unit(spec: BlockSpec, rule: KindRule, policy: RoundingPolicy) -> int:
    """The divisor an attention block imposes on its width: lcm(divisor, heads) when the policy
    keeps the heads, lcm(divisor, head_dim) when it keeps the head dimension."""
    dim, heads = (getattr(spec, f) for f in rule.attention)  # type: ignore[union-attr]
    return math.lcm(policy.divisor, heads if policy.attention == "heads" else dim // heads)


def attention_heads(spec: BlockSpec, rule: KindRule, policy: RoundingPolicy, new_dim: int,
                    ) -> int:
    """The head count for a new width: unchanged, or new_dim / head_dim (``head_dim`` policy)."""
    dim, heads = (getattr(spec, f) for f in rule.attention)  # type: ignore[union-attr]
    return heads if policy.attention == "heads" else new_dim // (dim // heads)


def round_resolution(value: float, policy: RoundingPolicy, base: int) -> int:
    """A scaled input size: the nearest multiple of ``resolution_divisor`` (at least one), capped
    at ``max_resolution`` unless the base is already larger (a scaled network never shrinks)."""
    d = policy.resolution_divisor
    res = max(d, int(math.floor(value / d + 0.5)) * d)
    if policy.max_resolution is not None:
        res = min(res, max(policy.max_resolution, base))
    return res
