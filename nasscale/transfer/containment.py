"""Weight inheritance (the once-for-all idea): candidates start from a trained parent's weights.

``evaluator: {kind: inherit, parent: NAME_OR_YAML, weights: FILE.pt, steps: N, data: ...}``
scores a candidate of the study's space by carrying the weights of a trained *parent* network
that contains it, fine-tuning ``steps`` optimizer steps, and taking top-1 on the held-out split.
The natural parent is ``space.largest()``; train it first with ``nasscale train``.

Which parent blocks a candidate's blocks come from (``Parent.plan``): the parent's stage blocks
are aligned with the space's slots (each slot: its stride on the first block, stride 1 after,
one width), and

- a candidate slot with fewer layers keeps the parent slot's FIRST layers; a slot the
  candidate skips (depth 0) or the layers it drops must be residual in the parent, so the
  channels the next block reads are the same width group;
- a narrower width keeps the parent's filters of largest L2 norm, by the rule ``nasscale prune``
  uses (``nasscale.transfer.carry``): one choice per width group of the parent, a residual
  chain's channels together, every expanded width on its own, scored over the whole parent (so
  every candidate reuses one channel ranking, as once-for-all sorts its channels once);
- a smaller kernel takes the centre of the parent's (3×3 = centre of 5×5), for depthwise and
  full convs alike;
- a smaller expansion keeps the strongest expanded channels.  A block with no expand conv
  (expansion 1) under a parent block that has one keeps the parent's strongest expanded
  channels for its depthwise conv, SE and projection: the one case where the carried block is
  a warm start rather than an exact sub-network of the parent;
- SE the parent has may be dropped (its weights are unused); activations, residual
  connections and dropout carry no weights and may differ.

Not contained (an error naming the slot and field, at study load for the whole space and, if a
candidate still slips through, a failed trial — never a silent re-initialisation): SE the
parent lacks, a wider width, a larger kernel or expansion, more repeats or stages, a different
block kind or stride layout, another head (hidden widths) or another number of classes.

A supernet's parent (``Parent(..., per_kind=True)``) is wider: it keeps an alternate block
per layer, form and input where a member's block is not a cut of the parent's (another kind,
no expand conv, other input channels: ``nasscale.transfer.variants``), so a slot may mix
kinds, skip non-residual layers and end with a Mobile MQA tail (fewer heads and channels per
head keep the first ones; no key/value downsampling drops its convs).  A plan then names, per
candidate block, the alternate it is cut from.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from nasscale.errors import NasscaleError
from nasscale.specs import NetworkSpec, ResolvedNetwork, resolve
from nasscale.transfer.alignment import Alignment, alignments, layout, slots_layout
from nasscale.transfer.blockfit import (
    SUPERNET_KINDS,
    block_problems,
    carried_kinds,
    shared_kinds,
)
from nasscale.transfer.groups import block_names, flatten, width_groups
from nasscale.transfer.variants import Variant, form, tail_kind, variants


class Slotted(Protocol):
    """What containment reads of a search space (``nasscale.search.SearchSpace``): its name,
    stem widths, stage slots, head choices and largest member."""

    name: str
    stem_width: Any
    stages: Sequence[Any]
    head: Any

    def largest(self, name: str | None = None) -> NetworkSpec: ...


MAX_SHOWN = 12  # problems listed in one message


class NotContained(NasscaleError):
    """The parent cannot give a candidate (or a whole space) its weights; ``problems`` says
    why, one entry per slot and field: the stem, each slot's depth, width and kinds in slot
    order, the head, then the layers' own fields."""

    def __init__(self, what: str, problems: list[str]):
        def order(text: str) -> tuple[int, int]:
            m = re.match(r"slot s(\d+)( layer)?", text)
            if m:
                return (1 if m.group(2) else 0, int(m.group(1)))
            return (0, -1 if text.startswith("stem") else 1 << 20)

        problems = sorted(problems, key=order)
        self.problems = problems
        shown = "; ".join(problems[:MAX_SHOWN])
        more = f" (and {len(problems) - MAX_SHOWN} more)" if len(problems) > MAX_SHOWN else ""
        super().__init__(f"{what}: {shown}{more}")


@dataclass(frozen=True)
class Plan:
    """Where a candidate's weights come from: ``source[i]`` is the parent's flat block that the
    candidate's flat block ``i`` is carried from; ``widths`` the parent's width groups that
    shrink, with the candidate's width."""

    source: tuple[int, ...]
    widths: dict[str, int] = field(default_factory=dict)
    #: per candidate block, the key of the parent's alternate block it is cut from (None: the
    #: parent's block itself; see ``nasscale.transfer.variants``); empty when none is
    variant: tuple[str | None, ...] = ()


# --- the parent --------------------------------------------------------------------------------

class Parent:
    """A parent network aligned with a search space: plans where each candidate's weights
    come from (``plan``) and checks a whole space at once (``space_problems``).  Specs only:
    no module is built until ``carry``.

    ``per_kind``: the parent of a supernet, which keeps an alternate block wherever a member's
    block is not a cut of the parent's (``variants``: by key; see
    ``nasscale.transfer.variants``), so that slots may mix kinds, drop non-residual layers and
    end with a Mobile MQA tail; ``group_width`` then holds the alternates' own widths too."""

    def __init__(self, spec: NetworkSpec, space: Slotted, per_kind: bool = False):
        from nasscale.transfer.carry import bindings  # pure, but its module imports torch

        for i, slot in enumerate(space.stages):
            if slot.attention is None:
                continue
            kind = tail_kind(slot, i)
            if not per_kind or kind != "mqa":
                raise NotContained(f"space {space.name}", [
                    f"slot s{i} has a {kind} attention tail: inherit does not carry attention "
                    "blocks" if not per_kind else f"slot s{i} has a {kind} attention tail: a "
                    "supernet shares Mobile MQA tails only (cutting a MobileViT block's "
                    "transformer depth and width is not implemented)"])
        self.spec, self.space, self.per_kind = spec, space, per_kind
        self.kinds = shared_kinds() if per_kind else None
        self.flat = flatten(spec)
        self.rn = resolve(self.flat)
        self.groups = width_groups(self.flat, block_names(spec))
        self.binds = bindings(self.rn, self.groups)
        self.variants: dict[str, Variant] = {}
        self._variant_keys: dict[tuple, str] = {}
        self.alignment, self.problems = self._fit()
        self._align(self.alignment)

    def _align(self, al: Alignment) -> list[str]:
        """Take alignment ``al`` (and, per kind, its alternates); what they cannot share."""
        self.alignment = al
        self.group_width = {g.name: g.width for g in self.groups}
        if not self.per_kind:
            return []
        try:
            self.variants, self._variant_keys, problems = variants(self)
        except NasscaleError as err:  # this cut's layers cannot take the slot's forms
            self.variants, self._variant_keys = {}, {}
            return [f"the alternate blocks of this alignment: {err}"]
        for v in self.variants.values():
            self.group_width.update(v.own_groups)
        return problems

    # the parent's slot layout: the cut with the fewest problems against the largest member
    def _fit(self) -> tuple[Alignment, list[str]]:
        best = None
        largest = resolve(flatten(self.space.largest()))
        member = next(alignments(largest, self.space, member=True))
        for k, al in enumerate(alignments(self.rn, self.space, member=False)):
            if k >= 500:
                break
            problems = (self._align(al) + self._static_problems()
                        + self._plan_aligned(largest, member, "up to ")[1])
            if best is None or len(problems) < len(best[1]):
                best = (al, problems)
            if not problems:
                break
        if best is None:
            raise NotContained(f"{self.spec.name} does not line up with space "
                               f"{self.space.name}", [
                f"its stages (stride/width) {layout(self.rn)} cannot be cut into the "
                f"space's slots {slots_layout(self.space)} (each slot: its stride first, "
                "then stride 1, one width)"])
        return best

    def group_label(self, name: str | None) -> str:
        """A width group in words: ``the output channels of slot s2 layer 0``."""
        if name is None:
            return "the image"
        if name.startswith("alt.") and name[4:-4] in self.variants:
            return f"the expanded channels of {self.variants[name[4:-4]].label}"
        for g in self.groups:
            if g.name == name:
                member = g.members[0]
                if member.block is None:
                    return name
                field = "expanded" if member.field == "mid_channels" else "output"
                return f"the {field} channels of {self.label(member.block)}"
        return name

    def label(self, index: int) -> str:
        """``slot s2 layer 1``, ``slot s4 attention``, ``stem[0]`` or ``head.blocks[0]`` of a
        parent block."""
        block = self.rn.blocks[index]
        if block.section != "stage":
            return f"{'stem' if block.section == 'stem' else 'head.blocks'}[{block.repeat}]"
        for s, seg in enumerate(self.alignment.slots):
            if index in seg:
                return f"slot s{s} layer {seg.index(index)}"
            if index == self.alignment.tail(s):
                return f"slot s{s} attention"
        return f"block {index}"

    # --- one candidate ---------------------------------------------------------------------
    def plan(self, candidate: NetworkSpec) -> Plan:
        """Where ``candidate``'s weights come from, or ``NotContained`` naming why not."""
        crn = resolve(flatten(candidate))
        first = None
        for member in (True, False):
            for al in alignments(crn, self.space, member):
                plan, problems = self._plan_aligned(crn, al, "")
                if not problems:
                    return plan
                first = first or problems
            if first:
                break
        raise NotContained(f"{self.spec.name} does not contain {candidate.name}", first or [
            f"its stages (stride/width) {layout(crn)} cannot be cut into the slots of space "
            f"{self.space.name}: {slots_layout(self.space)}"])

    def contains(self, candidate: NetworkSpec) -> bool:
        try:
            self.plan(candidate)
            return True
        except NotContained:
            return False

    def _plan_aligned(self, crn: ResolvedNetwork, al: Alignment, q: str
                      ) -> tuple[Plan | None, list[str]]:
        prn, pal = self.rn, self.alignment
        # (candidate block, parent block, label, compare widths block by block)
        pairs: list[tuple[int, int, str, bool]] = []
        problems: list[str] = []

        def fixed(part: str, cs: tuple[int, ...], ps: tuple[int, ...]) -> None:
            if len(cs) != len(ps):
                problems.append(f"{part} has {len(cs)} blocks but the parent's has {len(ps)}")
            pairs.extend((c, p, f"{part}[{k}]", True) for k, (c, p) in enumerate(zip(cs, ps)))

        fixed("stem", al.stem, pal.stem)
        for s, (cs, ps) in enumerate(zip(al.slots, pal.slots)):
            if len(cs) > len(ps):
                problems.append(f"slot s{s} depth {q}{len(cs)} but the parent's stage has "
                                f"{len(ps)}")
            if cs and ps and crn.blocks[cs[0]].out_channels > prn.blocks[ps[0]].out_channels:
                problems.append(f"slot s{s} width {q}{crn.blocks[cs[0]].out_channels} but "
                                f"the parent's stage has {prn.blocks[ps[0]].out_channels}")
            pairs.extend((c, p, f"slot s{s} layer {j}", False)
                         for j, (c, p) in enumerate(zip(cs, ps)))
            tail, ptail = al.tail(s), pal.tail(s)
            if tail is not None and ptail is None:
                problems.append(f"slot s{s} has an attention tail but the parent's stage has "
                                "none")
            elif tail is not None:
                pairs.append((tail, ptail, f"slot s{s} attention", False))
        fixed("head.blocks", al.head, pal.head)
        ch, ph = crn.head.hidden, prn.head.hidden
        if len(ch) != len(ph) or any(a > b for a, b in zip(ch, ph)):
            problems.append(f"head.hidden {q}{list(ch)} but the parent's head has {list(ph)}")
        if problems:
            return None, problems
        pairs.sort()
        if len(pairs) != len(crn.blocks):  # cannot happen: every block is in one part
            return None, ["the candidate's blocks do not all line up with the parent's"]
        return self._walk(crn, pairs, q)

    def _source(self, p: int, rb, reads: str | None):
        """(alternate key or None, resolved block, bindings) that candidate block ``rb``,
        reading group ``reads``, is cut from in parent block ``p``'s place."""
        key = self._variant_keys.get((p, form(rb), reads)) if self.per_kind else None
        if key is None:
            return None, self.rn.blocks[p], self.binds[p]
        v = self.variants[key]
        return key, v.rb, v.binds

    def _walk(self, crn: ResolvedNetwork, pairs, q: str) -> tuple[Plan | None, list[str]]:
        """Each block's source (the parent's block or an alternate) and the width of every
        group the candidate uses; the groups its blocks read must be the ones their sources
        read."""
        blocks: list[str] = []
        problems: list[str] = []
        widths: dict[str, tuple[int, str]] = {}
        keys: list[str | None] = []
        reads = None  # the group the candidate's next block reads
        for c, p, where, whole in pairs:
            rb = crn.blocks[c]
            key, source, names = self._source(p, rb, reads)
            keys.append(key)
            blocks += block_problems(where, rb, source, q, width=whole, kinds=self.kinds)
            if names["in"] != reads:
                problems.append(f"{where} would read {self.group_label(reads)} but the "
                                f"parent's block reads {self.group_label(names['in'])} "
                                "(fewer repeats and skipped slots carry only through "
                                "residual layers)")
            for axis, value in (("in", rb.in_channels), ("out", rb.out_channels),
                                ("mid", rb.widths.get("mid", rb.in_channels))):
                g = names.get(axis)
                if g is None:
                    continue
                seen = widths.setdefault(g, (value, where))
                if seen[0] != value:
                    problems.append(f"the parent ties {seen[1]} and {where} ("
                                    f"{self.group_label(g)}, one residual chain) but the "
                                    f"candidate gives them {seen[0]} and {value} channels")
            reads = names["out"]
        if blocks:
            return None, blocks
        for k, w in enumerate(crn.head.hidden):
            widths[f"head.hidden[{k}]"] = (w, "head.hidden")
        out = {}
        for g, (w, where) in widths.items():
            if w > self.group_width[g]:
                problems.append(f"{where} needs {q}{w} channels of {self.group_label(g)}, "
                                f"which has {self.group_width[g]}")
            elif w != self.group_width[g]:
                out[g] = w
        if problems:
            return None, problems
        return Plan(tuple(p for _, p, _, _ in pairs), out,
                    tuple(keys) if any(k is not None for k in keys) else ()), []

    # --- the whole space -------------------------------------------------------------------
    def space_problems(self) -> list[str]:
        """Why some member of the space is not contained (empty: every member is)."""
        return self.problems

    def _static_problems(self) -> list[str]:
        """What the largest member does not show: every listed kind, every shallower depth,
        every head, and widths the parent ties but the space chooses apart (per kind, the
        alternates stand in for the other kinds and for dropped non-residual layers)."""
        out: list[str] = []
        prn, pal, space = self.rn, self.alignment, self.space
        for s, (slot, seg) in enumerate(zip(space.stages, pal.slots)):
            if slot.attention is not None and True in slot.attention.present \
                    and pal.tail(s) is None:
                out.append(f"slot s{s} offers an attention tail but the parent's stage has "
                           "none")
            if self.per_kind:
                out += [f"slot s{s} kinds {', '.join(slot.layer.kinds)}: {k} blocks are not "
                        f"shared (a supernet shares {', '.join(self.kinds)})"
                        for k in slot.layer.kinds if k not in self.kinds]
                continue
            kinds = sorted({prn.blocks[i].spec.kind for i in seg})
            if seg and any(k not in kinds or len(kinds) > 1 for k in slot.layer.kinds):
                out.append(f"slot s{s} kinds {', '.join(slot.layer.kinds)} but the parent's "
                           f"stage has {', '.join(kinds)} blocks (weights carry only between "
                           "blocks of one kind)")
            for d in sorted(set(slot.depth)):
                if not seg or d >= len(seg):
                    continue
                kept = self.binds[seg[d - 1]]["out"] if d else self.binds[seg[0]]["in"]
                if kept != self.binds[seg[-1]]["out"]:
                    out.append(f"slot s{s} depth {d} drops the parent's layers {d}-"
                               f"{len(seg) - 1}, which are not residual (the next block "
                               "reads their channels)")
        for hidden in space.head.hidden:
            ph = prn.head.hidden
            if len(hidden) != len(ph) or any(a > b for a, b in zip(hidden, ph)):
                out.append(f"head.hidden {list(hidden)} but the parent's head has {list(ph)}")
        choice = {i: ("stem.width", space.stem_width) for i in pal.stem}
        for s, seg in enumerate(pal.slots):
            choice.update({i: (f"s{s}.width", space.stages[s].width) for i in seg})
        for g in self.groups:
            tied = {choice[m.block] for m in g.members
                    if m.field == "out_channels" and m.block in choice}
            values = {tuple(w.values()) for _, w in tied}
            if len(tied) > 1 and (len(values) > 1 or len(next(iter(values))) > 1):
                names = sorted(f"{n} {w.min}-{w.max}" for n, w in tied)
                out.append(f"the parent ties {' and '.join(names)} (one residual chain) but "
                           "the space chooses them apart")
        return out


def check_space(space: Slotted, parent: NetworkSpec, per_kind: bool = False) -> Parent:
    """The parent aligned with ``space``, or ``NotContained`` listing why some member of the
    space is not a sub-network of it (by slot and field); ``per_kind``: a supernet's parent,
    with alternate blocks (``Parent``)."""
    aligned = Parent(parent, space, per_kind)
    if aligned.problems:
        raise NotContained(f"{parent.name} does not contain space {space.name}",
                           aligned.problems)
    return aligned


# --- carrying the weights (torch) --------------------------------------------------------------

def carry(parent_model, parent: Parent, candidate: NetworkSpec, plan: Plan | None = None):
    """A module of ``candidate`` holding ``parent_model``'s weights by the rules of the module
    doc.  Every tensor of the candidate is copied from the parent; nothing keeps its random
    initialisation."""
    import torch

    from nasscale.modules import build_network
    from nasscale.transfer.carry import block_modules, carry_block, carry_head, select_channels

    plan = plan or parent.plan(candidate)
    model = build_network(candidate)
    crn = resolve(candidate)
    kept = select_channels(parent_model, parent.rn, parent.groups, plan.widths)
    src = block_modules(parent_model)
    with torch.no_grad():
        for i, (module, rb) in enumerate(zip(block_modules(model), crn.blocks)):
            p = plan.source[i]
            carry_block(src[p], parent.rn.blocks[p], module, rb, parent.binds[p], kept,
                        parent.groups, crop_kernels=True)
        carry_head(parent_model, parent.rn, model, crn, parent.binds[plan.source[-1]]["out"],
                   kept)
    return model


__all__ = ["SUPERNET_KINDS", "Alignment", "NotContained", "Parent", "Plan", "alignments",
           "block_problems", "carried_kinds", "carry", "check_space", "shared_kinds"]
