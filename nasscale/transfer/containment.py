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
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence

from nasscale.errors import NasscaleError
from nasscale.specs import (
    BLOCK_KINDS,
    ConvSpec,
    FusedMBConvSpec,
    NetworkSpec,
    ResolvedNetwork,
    resolve,
)
from nasscale.transfer.groups import block_names, flatten, has_expand, width_groups


class Slotted(Protocol):
    """What containment reads of a search space (``nasscale.search.SearchSpace``): its name,
    stem widths, stage slots, head choices and largest member."""

    name: str
    stem_width: Any
    stages: Sequence[Any]
    head: Any

    def largest(self, name: str | None = None) -> NetworkSpec: ...


def carried_kinds() -> tuple[str, ...]:
    """The kinds whose weights inheritance carries: those whose rule says ``inherit``."""
    return tuple(code for code, cls in BLOCK_KINDS.items() if cls.rule and cls.rule.inherit)


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
class Alignment:
    """Flat block indices (into ``resolve(network).blocks``) of each part of a network."""

    stem: tuple[int, ...]
    slots: tuple[tuple[int, ...], ...]  # one per slot of the space, in order
    head: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """Where a candidate's weights come from: ``source[i]`` is the parent's flat block that the
    candidate's flat block ``i`` is carried from; ``widths`` the parent's width groups that
    shrink, with the candidate's width."""

    source: tuple[int, ...]
    widths: dict[str, int] = field(default_factory=dict)


# --- aligning a network with the space's slots -----------------------------------------------

def alignments(rn: ResolvedNetwork, space: Slotted, member: bool) -> Iterator[Alignment]:
    """Every way to cut ``rn``'s stage blocks into the space's slots, in order, each slot's
    blocks having the slot's stride first, stride 1 after, and one width.  ``member``: the
    network is a candidate of the space, so depths and widths must be among the slot's
    choices; longer early slots come first."""
    stage = [b for b in rn.blocks if b.section == "stage"]
    offset = stage[0].index if stage else len(rn.section("stem"))
    stem = tuple(b.index for b in rn.section("stem"))
    head = tuple(b.index for b in rn.section("head"))

    def fits(seg, slot) -> bool:
        if not seg:
            return not member or 0 in slot.depth
        if seg[0].spec.block_stride != slot.stride or any(b.spec.block_stride != 1
                                                          for b in seg[1:]):
            return False
        if len({b.out_channels for b in seg}) != 1:
            return False
        return not member or (len(seg) in slot.depth
                              and seg[0].out_channels in slot.width.values())

    def walk(i: int, start: int) -> Iterator[tuple]:
        if i == len(space.stages):
            if start == len(stage):
                yield ()
            return
        for n in range(len(stage) - start, -1, -1):
            seg = stage[start:start + n]
            if fits(seg, space.stages[i]):
                for rest in walk(i + 1, start + n):
                    yield (tuple(range(offset + start, offset + start + n)),) + rest

    for slots in walk(0, 0):
        yield Alignment(stem, slots, head)


def _layout(rn: ResolvedNetwork) -> str:
    return ", ".join(f"{b.spec.block_stride}/{b.out_channels}" for b in rn.section("stage"))


def _slots_layout(space: Slotted) -> str:
    return ", ".join(f"s{i} {s.stride}/{s.width.min}-{s.width.max}"
                     for i, s in enumerate(space.stages))


# --- block-by-block containment ----------------------------------------------------------------

def _has_se(rb) -> bool:
    return rb.widths.get("se", 0) > 0


def block_problems(where: str, c, p, q: str = "", width: bool = True) -> list[str]:
    """Why parent block ``p`` cannot give candidate block ``c`` its weights (resolved blocks;
    ``q`` qualifies the candidate's values, e.g. ``"up to "`` for a whole space; ``width``:
    compare output widths here rather than per slot)."""
    cs, ps = c.spec, p.spec
    if type(cs) is not type(ps):
        return [f"{where} is a {cs.kind} block but the parent's is a {ps.kind} block "
                "(weights carry only between blocks of one kind)"]
    if not (cs.rule and cs.rule.inherit):
        return [f"{where}: {cs.kind} blocks are not carried (inherit carries "
                f"{', '.join(carried_kinds())})"]
    out = []
    if cs.block_stride != ps.block_stride:
        out.append(f"{where} stride {cs.block_stride} but the parent's block has "
                   f"{ps.block_stride}")
    if width and c.out_channels > p.out_channels:
        out.append(f"{where} width {q}{c.out_channels} but the parent's block has "
                   f"{p.out_channels}")
    if cs.kernel_size > ps.kernel_size:
        out.append(f"{where} kernel_size {q}{cs.kernel_size} but the parent's block has "
                   f"{ps.kernel_size}")
    if isinstance(cs, ConvSpec) and (cs.norm != ps.norm or (cs.bias and not ps.bias)):
        out.append(f"{where} has norm {cs.norm}, bias {cs.bias} but the parent's block has "
                   f"norm {ps.norm}, bias {ps.bias}")
    if cs.rule.expands:
        mid, pmid = c.widths["mid"], p.widths["mid"]
        if has_expand(c) and not has_expand(p):
            out.append(f"{where} expanded width {q}{mid} needs an expand conv, which the "
                       "parent's block lacks")
        elif has_expand(p) and not has_expand(c) and isinstance(cs, FusedMBConvSpec):
            out.append(f"{where} has no expand conv (expansion 1) but the parent's fused "
                       "block has one: a fused block without expansion is another conv")
        elif mid > pmid:
            ratio = getattr(cs, "expand_ratio", None) or mid / c.in_channels
            out.append(f"{where} expanded width {q}{mid} (expand_ratio {ratio:.3g} of "
                       f"{c.in_channels}) but the parent's block has {pmid}")
    if _has_se(c) and not _has_se(p):
        out.append(f"{where} has SE but the parent's block has none")
    elif _has_se(c) and c.widths["se"] > p.widths["se"]:
        out.append(f"{where} SE width {q}{c.widths['se']} but the parent's block has "
                   f"{p.widths['se']}")
    return out


# --- the parent --------------------------------------------------------------------------------

class Parent:
    """A parent network aligned with a search space: plans where each candidate's weights
    come from (``plan``) and checks a whole space at once (``space_problems``).  Specs only:
    no module is built until ``carry``."""

    def __init__(self, spec: NetworkSpec, space: Slotted):
        from nasscale.transfer.carry import bindings  # pure, but its module imports torch

        for i, slot in enumerate(space.stages):
            if slot.attention is not None:
                raise NotContained(f"space {space.name}", [
                    f"slot s{i} has an attention tail: inherit does not carry MobileViT "
                    "blocks"])
        self.spec, self.space = spec, space
        self.flat = flatten(spec)
        self.rn = resolve(self.flat)
        self.groups = width_groups(self.flat, block_names(spec))
        self.group_width = {g.name: g.width for g in self.groups}
        self.binds = bindings(self.rn, self.groups)
        self.alignment, self.problems = self._fit()

    # the parent's slot layout: the cut with the fewest problems against the largest member
    def _fit(self) -> tuple[Alignment, list[str]]:
        best = None
        largest = resolve(flatten(self.space.largest()))
        member = next(alignments(largest, self.space, member=True))
        for k, al in enumerate(alignments(self.rn, self.space, member=False)):
            if k >= 500:
                break
            self.alignment = al
            problems = (self._static_problems()
                        + self._plan_aligned(largest, member, "up to ")[1])
            if best is None or len(problems) < len(best[1]):
                best = (al, problems)
            if not problems:
                break
        if best is None:
            raise NotContained(f"{self.spec.name} does not line up with space "
                               f"{self.space.name}", [
                f"its stages (stride/width) {_layout(self.rn)} cannot be cut into the "
                f"space's slots {_slots_layout(self.space)} (each slot: its stride first, "
                "then stride 1, one width)"])
        return best

    def _group_label(self, name: str | None) -> str:
        if name is None:
            return "the image"
        for g in self.groups:
            if g.name == name:
                member = g.members[0]
                if member.block is None:
                    return name
                field = "expanded" if member.field == "mid_channels" else "output"
                return f"the {field} channels of {self._label(member.block)}"
        return name

    def label(self, index: int) -> str:
        """``slot s2 layer 1``, ``stem[0]`` or ``head.blocks[0]`` of a parent block."""
        return self._label(index)

    def _label(self, index: int) -> str:
        block = self.rn.blocks[index]
        if block.section != "stage":
            return f"{'stem' if block.section == 'stem' else 'head.blocks'}[{block.repeat}]"
        for s, seg in enumerate(self.alignment.slots):
            if index in seg:
                return f"slot s{s} layer {seg.index(index)}"
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
            f"its stages (stride/width) {_layout(crn)} cannot be cut into the slots of space "
            f"{self.space.name}: {_slots_layout(self.space)}"])

    def contains(self, candidate: NetworkSpec) -> bool:
        try:
            self.plan(candidate)
            return True
        except NotContained:
            return False

    def _plan_aligned(self, crn: ResolvedNetwork, al: Alignment, q: str
                      ) -> tuple[Plan | None, list[str]]:
        prn, pal = self.rn, self.alignment
        pairs: list[tuple[int, int, str]] = []  # (candidate block, parent block, label)
        problems: list[str] = []

        def fixed(part: str, cs: tuple[int, ...], ps: tuple[int, ...]) -> None:
            if len(cs) != len(ps):
                problems.append(f"{part} has {len(cs)} blocks but the parent's has {len(ps)}")
            for k, (c, p) in enumerate(zip(cs, ps)):
                pairs.append((c, p, f"{part}[{k}]"))
                problems.extend(block_problems(f"{part}[{k}]", crn.blocks[c], prn.blocks[p], q))

        fixed("stem", al.stem, pal.stem)
        for s, (cs, ps) in enumerate(zip(al.slots, pal.slots)):
            if len(cs) > len(ps):
                problems.append(f"slot s{s} depth {q}{len(cs)} but the parent's stage has "
                                f"{len(ps)}")
            if cs and ps and crn.blocks[cs[0]].out_channels > prn.blocks[ps[0]].out_channels:
                problems.append(f"slot s{s} width {q}{crn.blocks[cs[0]].out_channels} but "
                                f"the parent's stage has {prn.blocks[ps[0]].out_channels}")
            for j, (c, p) in enumerate(zip(cs, ps)):
                pairs.append((c, p, f"slot s{s} layer {j}"))
                problems += block_problems(f"slot s{s} layer {j}", crn.blocks[c],
                                           prn.blocks[p], q, width=False)
        fixed("head.blocks", al.head, pal.head)
        ch, ph = crn.head.hidden, prn.head.hidden
        if len(ch) != len(ph) or any(a > b for a, b in zip(ch, ph)):
            problems.append(f"head.hidden {q}{list(ch)} but the parent's head has {list(ph)}")
        if problems:
            return None, problems
        pairs.sort()
        source = tuple(p for _, p, _ in pairs)
        if len(source) != len(crn.blocks):  # cannot happen: every block is in one part
            return None, ["the candidate's blocks do not all line up with the parent's"]
        return self._widths(crn, pairs, q)

    def _widths(self, crn: ResolvedNetwork, pairs, q: str) -> tuple[Plan | None, list[str]]:
        """The width of every parent group the candidate uses; the groups its blocks read
        must be the ones the parent's blocks read."""
        problems: list[str] = []
        widths: dict[str, tuple[int, str]] = {}
        previous = None  # parent block the candidate's previous block comes from
        for c, p, where in pairs:
            rb, names = crn.blocks[c], self.binds[p]
            reads = self.binds[previous]["out"] if previous is not None else None
            if names["in"] != reads:
                problems.append(f"{where} would read {self._group_label(reads)} but the "
                                f"parent's block reads {self._group_label(names['in'])} "
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
                                    f"{self._group_label(g)}, one residual chain) but the "
                                    f"candidate gives them {seen[0]} and {value} channels")
            previous = p
        for k, w in enumerate(crn.head.hidden):
            widths[f"head.hidden[{k}]"] = (w, "head.hidden")
        out = {}
        for g, (w, where) in widths.items():
            if w > self.group_width[g]:
                problems.append(f"{where} needs {q}{w} channels of {self._group_label(g)}, "
                                f"which has {self.group_width[g]}")
            elif w != self.group_width[g]:
                out[g] = w
        if problems:
            return None, problems
        return Plan(tuple(p for _, p, _ in pairs), out), []

    # --- the whole space -------------------------------------------------------------------
    def space_problems(self) -> list[str]:
        """Why some member of the space is not contained (empty: every member is)."""
        return self.problems

    def _static_problems(self) -> list[str]:
        """What the largest member does not show: every listed kind, every shallower depth,
        every head, and widths the parent ties but the space chooses apart."""
        out: list[str] = []
        prn, pal, space = self.rn, self.alignment, self.space
        for s, (slot, seg) in enumerate(zip(space.stages, pal.slots)):
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


def check_space(space: Slotted, parent: NetworkSpec) -> Parent:
    """The parent aligned with ``space``, or ``NotContained`` listing why some member of the
    space is not a sub-network of it (by slot and field)."""
    aligned = Parent(parent, space)
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


__all__ = ["Alignment", "NotContained", "Parent", "Plan", "alignments", "block_problems", "carry",
           "carried_kinds", "check_space"]
