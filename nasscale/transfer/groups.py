"""Prunable width groups of a network, and ``prune(spec, widths)``: the pure transformation.

A *group* is one width that can shrink on its own.  Groups are found from the resolved spec,
the one walk over the network (``nasscale.specs.resolve``):

- every block that makes a new tensor width (a conv, a projection, a patch embedding, a head
  conv or hidden linear) starts an ``out`` group;
- a block that adds its input to its output (stride 1, ``skip``, input width = output width)
  or must keep its input width (ConvNeXt, ViT, Swin) *joins* its input's group: the channels
  of a residual chain are pruned together, or the additions would not line up;
- the expanded width of an MBConv, bneck or Fused-MBConv that has an expand conv, the MLP of
  a ConvNeXt, ViT, Swin or MobileViT block, and a MobileViT block's transformer width are
  ``mid``/``attention`` groups of their own.  A block without an expand conv (expansion 1)
  keeps its expanded width tied to its input.

Pruning works on the *flat* form of a network (every stage one block, ``flatten``), so each
layer is its own group as in NetAdapt; ``compact`` folds equal neighbours back into stage
repeats for the YAML a person reads.  Derived widths (SE squeezes) are never groups: they
follow from the pruned widths by the block's own rule, as in scaling.

A width is a multiple of the group's ``unit``: 8 (the rounding divisor), or lcm(8, heads) for
an attention width whose head count stays (MobileViT), or lcm(8, head_dim) when the head
dimension stays and the head count follows (ViT, Swin: the family's ``rounding.attention``).
``prune`` refuses widths that would change a block's structure (a residual connection or an
expand conv appearing or vanishing), because weights could not be carried across that.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

from nasscale.errors import SpecError
from nasscale.specs import (
    BlockSpec,
    NetworkSpec,
    ResolvedNetwork,
    StageSpec,
    resolve,
)
from nasscale.specs.kind import attention_unit, head_dim as _head_dim


def _rule(spec: BlockSpec):
    if spec.rule is None:
        raise SpecError(f"block kind {spec.kind!r} declares no rule (specs.kind.KindRule): "
                        "pruning cannot tell its widths apart")
    return spec.rule


def mlp_width(spec: BlockSpec) -> bool:
    """Whether the kind's expanded width is always a group of its own (an MLP)."""
    rule = _rule(spec)
    return rule.mid is not None and not rule.expands


@dataclass(frozen=True)
class Member:
    """One field that holds a group's width: ``block`` indexes the flat block list (stem, the
    stages' blocks, the head blocks), or is ``None`` for ``head.hidden[index]``."""

    block: int | None
    field: str
    index: int = 0


@dataclass(frozen=True)
class Group:
    """One prunable width: its name, role, current width, the fields that hold it, and the
    multiple (``unit``) its widths keep.  ``heads``: for an attention width, ``(block, field,
    policy)`` of each head count that must follow it."""

    name: str
    role: str  # "out" | "mid" | "attention" | "hidden"
    width: int
    members: tuple[Member, ...]
    unit: int = 8
    heads: tuple[tuple[int, str, str, int], ...] = ()  # (block, heads field, policy, head_dim)

    def widths_below(self) -> list[int]:
        """Every width this group may shrink to, largest first."""
        top = (self.width - 1) // self.unit * self.unit
        return list(range(top, self.unit - 1, -self.unit))


# --- flat form ----------------------------------------------------------------------------------

def flatten(spec: NetworkSpec) -> NetworkSpec:
    """The same network with every stage a single block (``for_repeat`` of its stage)."""
    stages = tuple(StageSpec(st.block.for_repeat(r), 1, st.norm)
                   for st in spec.stages for r in range(st.repeats))
    return spec.replace(stages=stages)


def explicit(spec: NetworkSpec) -> NetworkSpec:
    """The same network with every expanded width that is a group written explicitly (``m``):
    pruning a block's input must not move its expanded width, which is a group of its own."""
    rn = resolve(spec)
    blocks = flat_blocks(spec)
    for i, rb in enumerate(rn.blocks):
        if getattr(rb.spec, "expand_ratio", None) is not None and (
                mlp_width(rb.spec) or has_expand(rb)):
            nominal = {"expand_in": None} if getattr(rb.spec, "expand_in", None) else {}
            blocks[i] = dataclasses.replace(blocks[i], expand_ratio=None,
                                            mid_channels=rb.widths["mid"], **nominal)
        elif (mid := _rule(rb.spec).mid) and not hasattr(rb.spec, "expand_ratio") \
                and getattr(rb.spec, mid) is None:  # a width derived otherwise (RepViT's stem)
            blocks[i] = dataclasses.replace(blocks[i], **{mid: rb.widths["mid"]})
    return _with_blocks(spec, blocks, spec.head.hidden)


def prunable(spec: NetworkSpec) -> NetworkSpec:
    """The form pruning works on: flat, with explicit expanded widths (the same network)."""
    return explicit(flatten(spec))


def compact(spec: NetworkSpec) -> NetworkSpec:
    """Fold runs of stages whose blocks are one block's repeats back into one stage."""
    out: list[StageSpec] = []
    for st in spec.stages:
        if out:
            last = out[-1]
            if (st.repeats == 1 and last.block.for_repeat(last.repeats) == st.block
                    and last.norm == st.norm):
                out[-1] = StageSpec(last.block, last.repeats + 1, last.norm)
                continue
        out.append(st)
    return spec.replace(stages=tuple(out))


def flat_blocks(spec: NetworkSpec) -> list[BlockSpec]:
    return [*spec.stem, *(st.block for st in spec.stages), *spec.head.blocks]


def _with_blocks(spec: NetworkSpec, blocks: list[BlockSpec], hidden: tuple[int, ...]
                 ) -> NetworkSpec:
    ns, nst = len(spec.stem), len(spec.stages)
    return spec.replace(
        stem=tuple(blocks[:ns]),
        stages=tuple(StageSpec(b, st.repeats, st.norm)
                     for b, st in zip(blocks[ns:ns + nst], spec.stages)),
        head=spec.head.replace(blocks=tuple(blocks[ns + nst:]), hidden=hidden))


# --- structure ----------------------------------------------------------------------------------

def has_expand(rb) -> bool:
    """Whether an expanding block (MBConv/bneck/Fused-MBConv) has an expand layer (mid ≠ input):
    ``ResolvedBlock.has_expand``."""
    return rb.has_expand


def is_residual(rb) -> bool:
    """Whether a block adds its input to its output: ``ResolvedBlock.residual``, the rule the
    modules read."""
    return rb.residual


def structure(rn: ResolvedNetwork) -> tuple:
    """What pruning must not change: each block's kind, expand conv and residual connection."""
    return tuple((rb.kind, has_expand(rb), is_residual(rb)) for rb in rn.blocks)


# --- groups -------------------------------------------------------------------------------------

def _attention_unit(spec: BlockSpec, policy) -> tuple[int, int]:
    """(unit, head_dim) of an attention block's width: ``specs.kind.attention_unit``."""
    rule = _rule(spec)
    return attention_unit(spec, rule, policy), _head_dim(spec, rule)


def width_groups(spec: NetworkSpec, names: list[str] | None = None) -> list[Group]:
    """The prunable groups of a *flat* network (see ``flatten``), in network order.  ``names``:
    a name per block (default ``stages[i]`` of the flat form; ``block_names(original)`` names
    them after the network they came from)."""
    rn = resolve(spec)
    policy = spec.rounding
    blocks = rn.blocks
    names = names or _block_names(spec)
    # group under construction: name -> dict(role, width, members, unit, heads)
    groups: dict[str, dict] = {}
    order: list[str] = []

    def new(name, role, width, member, unit=policy.divisor):
        groups[name] = {"role": role, "width": width, "members": [member], "unit": unit,
                        "heads": []}
        order.append(name)
        return name

    current = None  # the group of the tensor flowing into the next block (None: the image)
    for i, rb in enumerate(blocks):
        spec_i = rb.spec
        rule = _rule(spec_i)
        if rule.keeps_input_width or is_residual(rb):
            if current is not None:
                groups[current]["members"].append(Member(i, "out_channels"))
            out = current
        else:
            out = new(f"{names[i]}.out", "out", rb.out_channels, Member(i, "out_channels"))
        if rule.attention is not None:
            width_field, heads_field = rule.attention
            unit, head_dim = _attention_unit(spec_i, policy)
            if width_field == "out_channels":  # the block's output is an attention width
                if out is not None:
                    g = groups[out]
                    g["unit"] = math.lcm(g["unit"], unit)
                    g["heads"].append((i, heads_field, policy.attention, head_dim))
                    g["role"] = "attention" if g["role"] == "out" else g["role"]
            else:  # an attention width inside the block (MobileViT's transformer)
                new(f"{names[i]}.attention", "attention", getattr(spec_i, width_field),
                    Member(i, width_field), unit)
                groups[order[-1]]["heads"].append((i, heads_field, policy.attention, head_dim))
        if mlp_width(spec_i) or has_expand(rb):
            new(f"{names[i]}.mid", "mid", rb.widths["mid"], Member(i, rule.mid))
        elif rule.expands and getattr(spec_i, "expand_ratio", None) is None \
                and current is not None:
            # no expand layer and an explicit expanded width (a bneck's): it is the input
            # width, and stays so
            groups[current]["members"].append(Member(i, rule.mid))
        if spec_i.ties_widths():  # gcd-grouped convs: either width cut makes them denser
            for name in (current, out):
                if name is not None:
                    groups[name]["unit"] = groups[name]["width"]  # no smaller width
        current = out
    for k, width in enumerate(spec.head.hidden):
        new(f"head.hidden[{k}]", "hidden", width, Member(None, "hidden", k))
    return [Group(name, g["role"], g["width"], tuple(g["members"]), g["unit"],
                  tuple(g["heads"])) for name, g in ((n, groups[n]) for n in order)]


def block_names(spec: NetworkSpec) -> list[str]:
    """Each block of ``flatten(spec)`` named after ``spec``: ``stages[2]`` for a one-block
    stage, ``stages[2][1]`` for repeat 1 of a stage of several."""
    return ([f"stem[{i}]" for i in range(len(spec.stem))]
            + [f"stages[{s}]" if st.repeats == 1 else f"stages[{s}][{r}]"
               for s, st in enumerate(spec.stages) for r in range(st.repeats)]
            + [f"head.blocks[{i}]" for i in range(len(spec.head.blocks))])


def _block_names(spec: NetworkSpec) -> list[str]:
    return ([f"stem[{i}]" for i in range(len(spec.stem))]
            + [f"stages[{i}]" for i in range(len(spec.stages))]
            + [f"head.blocks[{i}]" for i in range(len(spec.head.blocks))])


# --- prune ----------------------------------------------------------------------------------------

def prune(spec: NetworkSpec, widths: Mapping[str, int], groups: list[Group] | None = None,
          *, name: str | None = None) -> NetworkSpec:
    """``spec`` (flat) with the named groups set to new widths: a new spec, the argument is never
    modified.  Raises ``SpecError`` naming the group when a width is not a positive multiple of
    the group's unit, or would change the network's structure (see module doc)."""
    groups = width_groups(spec) if groups is None else groups
    by_name = {g.name: g for g in groups}
    blocks = flat_blocks(spec)
    hidden = list(spec.head.hidden)
    changes: dict[int, dict[str, object]] = {}
    for gname, width in widths.items():
        g = by_name.get(gname)
        if g is None:
            raise SpecError(f"unknown width group {gname!r}; groups: {', '.join(by_name)}")
        if isinstance(width, bool) or not isinstance(width, int) or width < g.unit \
                or width % g.unit:
            raise SpecError(f"{gname}: width must be a positive multiple of {g.unit}, "
                            f"got {width!r}")
        for m in g.members:
            if m.block is None:
                hidden[m.index] = width
                continue
            changes.setdefault(m.block, {})[m.field] = width
            if m.field == "mid_channels" and getattr(blocks[m.block], "expand_ratio",
                                                     None) is not None:
                changes[m.block]["expand_ratio"] = None  # a pruned expanded width is explicit
        for block, field, policy, head_dim in g.heads:
            if policy == "head_dim":
                changes.setdefault(block, {})[field] = width // head_dim
    try:
        for i, change in changes.items():
            blocks[i] = dataclasses.replace(blocks[i], **change)
    except SpecError as err:
        raise SpecError(f"{err} (pruning to " + ", ".join(f"{k}={v}" for k, v in widths.items())
                        + ")") from None
    out = _with_blocks(spec, blocks, tuple(hidden))
    if name:
        out = out.replace(name=name)
    out = out.replace(expected=None, reference="")
    if structure(resolve(out)) != structure(resolve(spec)):
        raise SpecError("these widths change the network's structure (a residual connection "
                        "or an expand conv would appear or vanish): "
                        + ", ".join(f"{k}={v}" for k, v in widths.items()))
    return out
