"""Aligning a network with a search space's slots: which flat blocks are the stem, each slot's
layers and attention tail, and the head (``alignments``).  Specs only, no torch.

A slot's blocks have the slot's stride first, stride 1 after, and one width.  A slot that
offers an attention tail may end with one block of a kind its layers do not offer (Mobile MQA,
MobileViT): that block is the slot's tail, not one of its layers, so a slot's depth counts its
layers only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from nasscale.specs import ResolvedNetwork


@dataclass(frozen=True)
class Alignment:
    """Flat block indices (into ``resolve(network).blocks``) of each part of a network."""

    stem: tuple[int, ...]
    slots: tuple[tuple[int, ...], ...]  # each slot's layers, one entry per slot, in order
    head: tuple[int, ...]
    #: per slot, the flat index of its attention tail (None: none); empty when none has one
    tails: tuple[int | None, ...] = ()

    def tail(self, slot: int) -> int | None:
        """The flat index of slot ``slot``'s attention tail, or None."""
        return self.tails[slot] if self.tails else None


def is_tail(block, slot: Any) -> bool:
    """Whether ``block`` (resolved) can only be ``slot``'s attention tail: the slot offers a
    tail and the block is of a kind its layers do not offer."""
    return slot.attention is not None and block.spec.kind not in slot.layer.kinds


def alignments(rn: ResolvedNetwork, space: Any, member: bool) -> Iterator[Alignment]:
    """Every way to cut ``rn``'s stage blocks into the space's slots, in order, each slot's
    layers having the slot's stride first, stride 1 after, and one width, then optionally its
    attention tail at that width.  ``member``: the network is a candidate of the space, so
    depths and widths must be among the slot's choices; longer early slots come first."""
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

    def split(seg, slot):
        """(layers, tail) of a slot's blocks, or None when they are not a slot's."""
        if seg and is_tail(seg[-1], slot):
            layers, tail = seg[:-1], seg[-1]
            if not layers or tail.spec.block_stride != 1 \
                    or tail.out_channels != layers[-1].out_channels:
                return None
            return (layers, tail) if fits(layers, slot) else None
        return (seg, None) if fits(seg, slot) else None

    def walk(i: int, start: int) -> Iterator[tuple]:
        if i == len(space.stages):
            if start == len(stage):
                yield ()
            return
        for n in range(len(stage) - start, -1, -1):
            got = split(stage[start:start + n], space.stages[i])
            if got is None:
                continue
            layers, tail = got
            first = offset + start
            part = (tuple(range(first, first + len(layers))),
                    tail.index if tail is not None else None)
            for rest in walk(i + 1, start + n):
                yield (part,) + rest

    for parts in walk(0, 0):
        tails = tuple(t for _, t in parts)
        yield Alignment(stem, tuple(s for s, _ in parts), head,
                        tails if any(t is not None for t in tails) else ())


def layout(rn: ResolvedNetwork) -> str:
    """A network's stage blocks as ``stride/width``, for messages."""
    return ", ".join(f"{b.spec.block_stride}/{b.out_channels}" for b in rn.section("stage"))


def slots_layout(space: Any) -> str:
    """A space's slots as ``s<i> stride/min-max width``, for messages."""
    return ", ".join(f"s{i} {s.stride}/{s.width.min}-{s.width.max}"
                     for i, s in enumerate(space.stages))


__all__ = ["Alignment", "alignments", "is_tail", "layout", "slots_layout"]
