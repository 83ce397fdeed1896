"""A supernet's alternate blocks: one bank of weights per layer, block form and input.

A supernet is its space's largest member (the *parent*), and a subnetwork's block is normally
a cut of the parent's block at the same place.  A block is not a cut of it when its weights
would mean something else there:

- another block kind (a slot that offers conv or UIB layers): no weights of one kind are part
  of another's;
- the parent block's kind without its expand conv (expansion 1) under a parent block that has
  one: its depthwise conv reads the block's input channels, the parent's reads expanded ones;
- a block that reads other channels than the parent's reads: after a skipped slot whose
  layers are not residual (a member without an optional 1x1 conv), or after a residual layer
  where the parent's layer is not (a UIB layer passes the residual stream on, where the
  parent's conv made new channels).

For each such (layer, form, input) the supernet keeps an *alternate* block: the layer at its
largest in that form (the largest kernels, expansion and SE the slot offers, at the parent's
widths) reading those channels.  A block's *form* is its kind and whether it has an expand
conv.  ``variants`` finds them by walking the slots in order with the width groups that can
flow into each layer: every depth a slot offers, every form each layer may take, its attention
tail present or not.

An alternate's axes bind to the parent's width groups: its input to the group it reads, its
output to the parent block's, or to its input when it is residual.  Its expanded width (an
expand conv's or a UIB's) is a group of its own, ``alt.KEY.mid``.  A key is the parent
block's flat index, then the form's kind when it is not the parent block's, ``e1`` for a form
without expand conv, ``inQ`` for the output of parent block ``Q`` as its input; the parent
block's own kind without expand conv, reading what the parent block reads, is plain ``P``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from nasscale.specs import BLOCK_KINDS, ResolvedBlock
from nasscale.specs.resolve import resolve_block
from nasscale.transfer.groups import mlp_width

Form = tuple[str, bool]  # (kind, has an expand conv)


@dataclass(frozen=True)
class Variant:
    """One alternate block: its ``key``, the parent ``block`` (flat index) whose place it
    takes, its resolved block, its axis bindings to width groups and a label for messages."""

    key: str
    block: int
    rb: ResolvedBlock
    binds: Mapping[str, str | None]
    label: str

    @property
    def prefix(self) -> str:
        """Its tensors' name prefix (``alt.KEY``) beside the supernet's own."""
        return f"alt.{self.key}"

    @property
    def mid_group(self) -> str:
        return f"alt.{self.key}.mid"

    @property
    def own_groups(self) -> dict[str, int]:
        """Its width groups of its own (an expanded width), name -> width."""
        g = self.mid_group
        return {g: self.rb.widths["mid"]} if self.binds.get("mid") == g else {}


def form(rb: ResolvedBlock) -> Form:
    """A block's form: its kind and whether it has an expand conv."""
    return rb.kind, rb.has_expand


def _own_mid(rb: ResolvedBlock) -> bool:
    return rb.has_expand or mlp_width(rb.spec)


def slot_forms(slot: Any) -> list[Form]:
    """The forms a slot's layers may take: every kind, with and without expand conv as its
    expansion choices allow."""
    out: list[Form] = []
    ratios = [float(e) for e in slot.layer.expand_ratio]
    for kind in slot.layer.kinds:
        if BLOCK_KINDS[kind].rule.expands:
            out += [(kind, True)] if any(e != 1.0 for e in ratios) else []
            out += [(kind, False)] if 1.0 in ratios else []
        else:
            out.append((kind, False))
    return out


class _Largest:
    """A suggester answering every choice with its largest (a switch: on), the block kind
    with ``kind`` and the expansion with 1 when ``expand`` is False."""

    def __init__(self, kind: str | None = None, expand: bool = True):
        self.kind, self.expand = kind, expand

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        choices = list(choices)
        if name.endswith(".kind") and self.kind is not None:
            return self.kind
        if name.endswith(".expand_ratio") and not self.expand:
            return next(c for c in choices if float(c) == 1.0)
        if all(isinstance(c, (int, float)) for c in choices):
            return max(choices)
        return choices[0]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return low + (high - low) // step * step


def tail_kind(slot: Any, index: int) -> str:
    """The block kind of a slot's attention tail (``mqa``, ``mobilevit``...)."""
    return slot.attention.sample(_Largest(), index, slot.width.max).kind


def _resolved(prb: ResolvedBlock, spec, in_channels: int) -> ResolvedBlock:
    """``spec`` resolved in parent block ``prb``'s place, reading ``in_channels``."""
    rb = resolve_block(spec, in_channels, prb.in_hw, prb.section, max(prb.stage, 0),
                       prb.repeat, prb.index)
    return dataclasses.replace(rb, stage=prb.stage, drop_path=prb.drop_path,
                               trained_hw=prb.trained_hw, norm=prb.norm)


def _key(p: int, f: Form, pf: Form, reads_from: int | None) -> str:
    kind, expand = f
    tags = [kind] if kind != pf[0] else []
    if BLOCK_KINDS[kind].rule.expands and not expand:
        tags.append("e1")
    if reads_from is not None:
        tags.append(f"in{reads_from}")
    if tags == ["e1"]:
        return str(p)  # the parent block's kind without expand conv, as files name it
    return "_".join([str(p), *(tags or ["e"])])


def variants(parent: Any) -> tuple[dict[str, Variant], dict[tuple, str], list[str]]:
    """The alternates a supernet of ``parent.space`` needs (see module doc): by key, the key
    of each (parent block, form, input group) a member may need, and why some member cannot be
    cut (empty: every one can).  ``parent``: a ``containment.Parent`` being aligned (its
    resolved blocks, width groups, bindings, alignment and labels)."""
    rn, binds, al, space = parent.rn, parent.binds, parent.alignment, parent.space
    found: dict[str, Variant] = {}
    keys: dict[tuple, str] = {}
    producer = {g.name: next((m.block for m in g.members if m.field == "out_channels"), None)
                for g in parent.groups}

    def take(p: int, spec, g: str | None) -> str | None:
        """A block of ``spec`` at parent block ``p`` reading group ``g``: its output group."""
        prb = rn.blocks[p]
        reads_own = g == binds[p]["in"]
        rb = prb if reads_own and spec == prb.spec else _resolved(
            prb, spec, parent.group_width[g] if g is not None else prb.in_channels)
        f = form(rb)
        if f == form(prb) and reads_own:
            return binds[p]["out"]
        key = _key(p, f, form(prb), None if reads_own else producer.get(g))
        if key not in found:
            mid = f"alt.{key}.mid" if _own_mid(rb) else g
            names = {"in": g, "out": g if rb.residual else binds[p]["out"], "mid": mid,
                     "attention": None}
            label = parent.label(p)
            if f[0] != prb.kind:
                label += f" as a {f[0]} block"
            if BLOCK_KINDS[f[0]].rule.expands and not f[1]:
                label += " without expand conv"
            if not reads_own:
                label += f" reading {parent.group_label(g)}"
            found[key] = Variant(key, p, rb, MappingProxyType(names), label)
        keys[(p, f, g)] = key
        return found[key].binds["out"]

    def layer_spec(s: int, j: int, p: int, f: Form, g: str | None):
        prb, slot = rn.blocks[p], space.stages[s]
        if f == form(prb) and g == binds[p]["in"]:
            return prb.spec
        if f == (prb.kind, False) and prb.has_expand and g == binds[p]["in"]:
            spec = prb.spec  # as supernet files have always had it: the parent's, mid = input
            if getattr(spec, "mid_channels", None) is not None:
                return dataclasses.replace(spec, mid_channels=prb.in_channels)
            return dataclasses.replace(spec, expand_ratio=1.0)
        cin = parent.group_width[g] if g is not None else prb.in_channels
        largest = _Largest(f[0], f[1] or not BLOCK_KINDS[f[0]].rule.expands)
        return slot.layer.sample(largest, lambda field: slot.name(s, j, field), cin,
                                 prb.out_channels, slot.stride if j == 0 else 1)

    def ordered(groups: set) -> list:
        return sorted(groups, key=lambda g: (g is not None, str(g)))

    incoming = {binds[al.stem[-1]]["out"]} if al.stem else {None}
    for s, (slot, seg) in enumerate(zip(space.stages, al.slots)):
        cur, ends = set(incoming), set()
        for j, p in enumerate(seg):
            cur = {take(p, layer_spec(s, j, p, f, g), g) for g in ordered(cur)
                   for f in slot_forms(slot)}
            if j + 1 in slot.depth:
                ends |= cur
        tail = al.tail(s)
        if tail is not None:
            present = slot.attention.present
            tails = {take(tail, rn.blocks[tail].spec, g) for g in ordered(ends)} \
                if True in present else set()
            ends = tails | (ends if False in present else set())
        incoming = ends | (incoming if 0 in slot.depth else set())
    for p in al.head:
        incoming = {take(p, rn.blocks[p].spec, g) for g in ordered(incoming)}
    problems = []
    last = binds[len(rn.blocks) - 1]["out"] if rn.blocks else None
    if incoming - {last}:
        problems.append(f"the head pools {' or '.join(map(parent.group_label, ordered(incoming)))}"
                        f" but the parent's pools {parent.group_label(last)} (a head without a "
                        "conv layer cannot read other channels)")
    return found, keys, problems


__all__ = ["Form", "Variant", "form", "slot_forms", "tail_kind", "variants"]
