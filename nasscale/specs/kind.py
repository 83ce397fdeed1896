"""What every layer needs to know about a block kind's fields, declared once, on the kind.

Each block spec class carries one :class:`KindRule` (its ``rule`` class attribute).  The rule
sorts *each* field of the kind into "scales with width", "explicit expanded width", "attention
width", "inner depth" or "fixed", and says how the kind's widths behave: whether its output must
keep its input width, whether its expanded width exists only with an expand layer, which text
tokens spell it, whether weight inheritance can map it.  Scaling, pruning, the grammar and the
inheritance evaluator all read this record; none keeps a list of kinds of its own, and the
registry tests fail, naming the kind and the field, when a rule is missing or incomplete.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class KindRule:
    """The record of one block kind.

    ``widths``: channel fields multiplied by the width coefficient and rounded by the policy.
    ``mid``: the field of an explicit expanded width (``m<int>``), scaled by the policy's ``mid``
    rule and pruned as a ``mid`` group; ``None`` for kinds without one.  ``mid_base``: the width
    the ``ratio`` rule keeps ``mid`` proportional to (default: the block's input; MobileViT's
    MLP follows its transformer width).  (A ratio ``e`` needs no rule: the expanded width is
    derived from the scaled input when the network is resolved, and so is every SE width.)
    ``expands``: the expanded width is made by an expand layer that is absent when it equals the
    input width (MBConv, Fused-MBConv, bneck); without it the expanded width is a group of its
    own whenever the kind has ``mid`` (an MLP: ConvNeXt, ViT, Swin, MobileViT).
    ``attention``: ``(width field, heads field)`` of an attention block: the width rounds to a
    multiple of lcm(divisor, heads) when the policy keeps ``heads`` fixed, or of lcm(divisor,
    head_dim) with heads recomputed when it keeps ``head_dim`` fixed.  A width field of
    ``out_channels`` makes the block's output an attention width; any other field is an
    attention width inside the block (MobileViT's transformer).
    ``depths``: inner layer counts (a MobileViT block's transformer layers), scaled by the depth
    coefficient and rounded like a stage's repeats.
    ``repeatable``: whether a stage of this kind gains repeats with depth (ConvNeXt's
    downsampling layers and stems are never repeated).
    ``keeps_input_width``: the block's ``out_channels`` must equal its input width (ConvNeXt,
    ViT, Swin): scaling sets it to the scaled input width, pruning ties it to its input's group.
    ``fixed``: every other field, which scaling never changes (kernel, stride, patch size,
    expansion ratio, activation, SE recipe, flags).
    ``text``: the kind's text-form tokens in canonical order (names in
    ``nasscale.grammar.text.TOKENS``), after the kind's code.
    ``inherit``: whether the ``inherit`` evaluator can take this kind's weights from a parent
    block of the same kind (kernel centre, filter-norm widths).
    """

    widths: tuple[str, ...] = ("out_channels",)
    mid: str | None = None
    mid_base: str | None = None
    expands: bool = False
    attention: tuple[str, str] | None = None
    depths: tuple[str, ...] = ()
    repeatable: bool = True
    keeps_input_width: bool = False
    fixed: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    inherit: bool = False

    def named_fields(self) -> tuple[str, ...]:
        """Every field this rule mentions (the completeness test compares it with the kind's)."""
        return (*self.widths, *((self.mid,) if self.mid else ()), *(self.attention or ()),
                *self.depths, *self.fixed)


class NotALayer(Exception):
    """A block that a search space's layer choices cannot express: ``field`` ('' for the block
    as a whole) and the reason (``BlockSpec.layer_values``)."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason


def attention_unit(spec, rule: KindRule, policy) -> int:
    """The divisor an attention block imposes on its width: lcm(divisor, heads) when the policy
    keeps the heads, lcm(divisor, head_dim) when it keeps the head dimension."""
    dim, heads = (getattr(spec, f) for f in rule.attention)  # type: ignore[union-attr]
    return math.lcm(policy.divisor, heads if policy.attention == "heads" else dim // heads)


def attention_heads(spec, rule: KindRule, policy, new_dim: int) -> int:
    """The head count for a new width: unchanged, or new_dim / head_dim (``head_dim`` policy)."""
    dim, heads = (getattr(spec, f) for f in rule.attention)  # type: ignore[union-attr]
    return heads if policy.attention == "heads" else new_dim // (dim // heads)


def head_dim(spec, rule: KindRule) -> int:
    """Channels per head of an attention block."""
    dim, heads = (getattr(spec, f) for f in rule.attention)  # type: ignore[union-attr]
    return dim // heads
