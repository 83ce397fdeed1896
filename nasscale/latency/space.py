"""A seeded neighbourhood of a named network: the latency table's own space of carriers.

Besides the search spaces (``space:NAME[:N]``), ``lut build`` and the predictor benchmark use a
space whose networks look like real MobileNetV3 / EfficientNet variants and whose *blocks* can be
enumerated.  ``Neighbourhood(base)`` is that space.  Each stage row of the base may independently
change

- its kernel size (``kernels``, 3/5/7), where the kind has one,
- its expansion (an ``expand_ratio`` from ``expand_ratios``; an explicit expanded width, such as
  a bneck's, times one of ``mid_factors``, rounded to 8; rows with expansion 1 keep it),
- its output width (times one of ``width_factors``, rounded to 8) where the kind's width scales
  on its own; a kind that keeps its input width (ConvNeXt, ViT, Swin) follows its input,
- its depth (``repeats`` plus one of ``depth_deltas``, at least 1) where the kind repeats,

while the stem, the head, activations and SE stay as in the base, and the input is one of
``resolutions`` (default: the base's).  ``sample(rng)`` draws one network; ``blocks()`` lists every
distinct resolved block any network of the space can contain (plus the head), which is what a
latency table must cover.  The protocol a space offers the latency table is just these two methods.

What may vary is read from each kind's rule (``specs.kind.KindRule``): any kind works, and a
row whose kind has nothing that varies stays as it is.  A choice that makes an invalid block
(an attention width no longer divisible by its heads) is left out of ``blocks()`` and redrawn by
``sample``.
"""
from __future__ import annotations

import dataclasses
import itertools
import random
from dataclasses import dataclass
from typing import Iterator

from nasscale.errors import SpecError
from nasscale.specs import (
    BlockSpec,
    NetworkSpec,
    ResolvedBlock,
    ResolvedHead,
    StageSpec,
    make_divisible,
    resolve,
)
from nasscale.specs.resolve import resolve_block

#: how many times ``sample`` redraws a network whose choices make an invalid block
MAX_REDRAWS = 100


@dataclass(frozen=True)
class RowChoice:
    """What one stage row of a sampled network chose."""

    kernel_size: int  # 0: the kind has no kernel to vary
    expansion: float  # expand_ratio, or the factor on a bneck's mid_channels
    width_factor: float
    repeats: int


@dataclass(frozen=True)
class Neighbourhood:
    """Networks around ``base`` (a named or loaded network of any block kinds)."""

    base: NetworkSpec
    kernels: tuple[int, ...] = (3, 5, 7)
    expand_ratios: tuple[float, ...] = (3.0, 4.0, 6.0)
    mid_factors: tuple[float, ...] = (0.75, 1.0, 1.25)
    width_factors: tuple[float, ...] = (0.75, 1.0, 1.25)
    depth_deltas: tuple[int, ...] = (-1, 0, 1)
    resolutions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for i, stage in enumerate(self.base.stages):
            if stage.block.rule is None:
                raise SpecError(f"a {stage.block.kind} block declares no rule "
                                "(specs.kind.KindRule), so nothing tells what may vary",
                                (f"stages[{i}]",))
        if not self.resolutions:
            object.__setattr__(self, "resolutions", (self.base.resolution,))

    @property
    def name(self) -> str:
        return f"around:{self.base.name}"

    # --- one row --------------------------------------------------------------------------

    def _expansions(self, block: BlockSpec) -> tuple[float, ...]:
        rule = block.rule
        if rule.mid is None:
            return (1.0,)
        if not hasattr(block, "expand_ratio"):  # an explicit width by nature (bneck)
            return self.mid_factors
        if block.expand_ratio == 1.0:  # MobileNetV2 t=1 / EfficientNet stage 1: no expand conv
            return (1.0,)
        if block.expand_ratio is None and not rule.expands:  # an explicit MLP width
            return self.mid_factors
        return self.expand_ratios

    def _row_options(self, stage: StageSpec) -> Iterator[RowChoice]:
        block, rule = stage.block, stage.block.rule
        depths = (sorted({max(1, stage.repeats + d) for d in self.depth_deltas})
                  if rule.repeatable else [stage.repeats])
        kernels = self.kernels if "kernel_size" in rule.fixed else (0,)
        widths = (self.width_factors if "out_channels" in rule.widths
                  and not rule.keeps_input_width else (1.0,))
        for k, e, w in itertools.product(kernels, self._expansions(block), widths):
            for r in depths:
                yield RowChoice(k, e, w, r)

    def _row_block(self, block: BlockSpec, choice: RowChoice, in_channels: int | None = None,
                   ) -> BlockSpec:
        """The block of one row choice; ``in_channels``: its input width, which a kind that
        keeps its input width (ConvNeXt, ViT, Swin) takes as its own."""
        rule = block.rule
        changes: dict[str, object] = {}
        if choice.kernel_size:
            changes["kernel_size"] = choice.kernel_size
        if rule.keeps_input_width:
            if in_channels is not None:
                changes["out_channels"] = in_channels
        elif "out_channels" in rule.widths:
            changes["out_channels"] = make_divisible(block.out_channels * choice.width_factor, 8)
        if rule.mid is not None:
            if getattr(block, "expand_ratio", None) is not None:
                changes["expand_ratio"] = choice.expansion
            elif choice.expansion != 1.0:  # an explicit expanded width (a bneck's): scale it
                changes[rule.mid] = make_divisible(getattr(block, rule.mid) * choice.expansion,
                                                   8)
        return dataclasses.replace(block, **changes) if changes else block

    # --- the protocol ---------------------------------------------------------------------

    def network(self, choices: tuple[RowChoice, ...], resolution: int, name: str) -> NetworkSpec:
        """The network of one choice per stage row."""
        width = self.base.stem[-1].out_channels if self.base.stem else self.base.in_channels
        stages = []
        for s, c in zip(self.base.stages, choices):
            block = self._row_block(s.block, c, width)
            width = block.out_channels
            stages.append(StageSpec(block, c.repeats))
        return self.base.replace(name=name, stages=tuple(stages), resolution=resolution,
                                 expected=None, paper="", reference="")

    def sample(self, rng: random.Random, name: str = "sample") -> NetworkSpec:
        """One network, every choice uniform and independent (redrawn when the choices make
        an invalid block)."""
        for _ in range(MAX_REDRAWS):
            choices = tuple(rng.choice(list(self._row_options(s))) for s in self.base.stages)
            try:
                return self.network(choices, rng.choice(self.resolutions), name)
            except SpecError:
                continue
        raise SpecError(f"{self.name}: {MAX_REDRAWS} draws in a row made invalid networks")

    def blocks(self) -> tuple[list[ResolvedBlock], list[ResolvedHead]]:
        """Every distinct resolved block (stem, stages, head blocks) and head of the space.

        Walks the stages keeping the set of possible (input width, feature-map size) states; the
        first repeat of a row meets every state, later repeats take the row's own width.
        """
        found: dict[tuple, ResolvedBlock] = {}
        heads: dict[ResolvedHead, None] = {}
        for res in self.resolutions:
            rn = resolve(self.base, res)
            for rb in rn.section("stem"):
                found.setdefault(_identity(rb), rb)
            states = {(rn.section("stem")[-1].out_channels, rn.section("stem")[-1].out_hw)
                      if rn.section("stem") else (self.base.in_channels, (res, res))}
            for i, stage in enumerate(self.base.stages):
                new_states = set()
                for choice in self._row_options(stage):
                    for cin, hw in states:
                        try:
                            block = self._row_block(stage.block, choice, cin)
                            first = resolve_block(block, cin, hw, "stage", i, 0)
                        except SpecError:  # e.g. a width its heads do not divide
                            continue
                        found.setdefault(_identity(first), first)
                        out = (first.out_channels, first.out_hw)
                        if choice.repeats > 1:
                            rest = resolve_block(block.for_repeat(1), *out, "stage", i, 1)
                            found.setdefault(_identity(rest), rest)
                        new_states.add(out)
                states = new_states
            for cin, hw in states:
                for j, block in enumerate(self.base.head.blocks):
                    rb = resolve_block(block, cin, hw, "head", -1, j)
                    found.setdefault(_identity(rb), rb)
                    cin, hw = rb.out_channels, rb.out_hw
                h = rn.head
                heads.setdefault(dataclasses.replace(h, in_channels=cin, hw=hw), None)
        return list(found.values()), list(heads)


def _identity(rb: ResolvedBlock) -> tuple:
    return (rb.spec, rb.in_channels, rb.in_hw)


def around(name_or_spec: "str | NetworkSpec", **options: object) -> Neighbourhood:
    """The neighbourhood of a zoo name, a network YAML path or a spec."""
    from nasscale.zoo import load

    return Neighbourhood(load(name_or_spec), **options)
