"""Search spaces over the block grammar (``spaces/search/*.yaml``).

A space is a stem choice, an ordered list of *stage slots* and a head choice, plus the input
resolutions.  A slot has a fixed stride (of its first layer), a depth choice (0 skips the slot),
an output-width choice (multiples of 8) and layer choices: block kind, kernel size, expansion
ratio, SE on/off, activation.  With ``per_layer: true`` every layer of the slot samples its own
layer choices (the FBNet/MobileNetV3 style, needed for networks whose rows differ inside a
resolution stage); otherwise the slot shares one choice for all its layers (EfficientNet style,
one stage string ``block × repeats``).

``space.sample(trial)`` asks any object with Optuna's ``suggest_categorical``/``suggest_int``
(an ``optuna.Trial``, ``optuna.trial.FixedTrial``) and returns a ``NetworkSpec``.
``space.params_for(network)`` inverts it: the parameter assignment that samples exactly that
network, or a ``NotInSpace`` reason — so "this space contains mobilenet_v3_large" is a test.
Parameter names: ``resolution``, ``stem.width``, ``stem.activation``, ``stem.branches``,
``s<i>.depth``, ``s<i>.width``, ``s<i>.<field>`` (shared) or ``s<i>.l<j>.<field>`` (per
layer), ``head.hidden``.  This module does not import optuna.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any, Sequence

from nasscale.errors import SpecError
from nasscale.latency.table import unit_key, units_of
from nasscale.search.choices import (  # noqa: F401  (NotInSpace, Suggester: API)
    HeadChoice,
    NotInSpace,
    StageChoice,
    Suggester,
    WidthChoice,
    hidden_label,
)
from nasscale.specs import (
    ConvSpec,
    HeadSpec,
    NetworkSpec,
    NormPolicy,
    RepConvSpec,
    RoundingPolicy,
    StageSpec,
    resolve,
)
from nasscale.specs.random import RandomSuggester  # noqa: F401  (part of this module's API)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    resolution: tuple[int, ...]
    stem_width: WidthChoice
    stem_activation: tuple[str, ...]
    stages: tuple[StageChoice, ...]
    head: HeadChoice
    num_classes: int = 1000
    contains: tuple[str, ...] = ()
    description: str = ""
    family: str = ""
    #: the normalisation constants every member is built with (``NormPolicy``)
    norm: NormPolicy = NormPolicy()
    #: the stem's kind: ``conv`` (3x3 stride-2 conv-BN-act) or ``repconv`` (the same as a
    #: re-parameterisable conv, MobileOne's) with ``stem_branches`` conv branches
    stem_kind: str = "conv"
    stem_branches: tuple[int, ...] = (1,)

    def _stem(self, trial: Suggester, width: int, activation: str):
        if self.stem_kind == "conv":
            return ConvSpec(out_channels=width, kernel_size=3, stride=2, activation=activation)
        branches = self.stem_branches[0] if len(self.stem_branches) == 1 else \
            trial.suggest_categorical("stem.branches", list(self.stem_branches))
        return RepConvSpec(out_channels=width, kernel_size=3, stride=2, branches=branches,
                           activation=activation)

    # --- sampling ------------------------------------------------------------------------
    def sample(self, trial: Suggester, name: str = "candidate") -> NetworkSpec:
        res = self.resolution[0] if len(self.resolution) == 1 else \
            trial.suggest_categorical("resolution", list(self.resolution))
        stem_w = self.stem_width.sample(trial, "stem.width")
        stem_act = self.stem_activation[0] if len(self.stem_activation) == 1 else \
            trial.suggest_categorical("stem.activation", list(self.stem_activation))
        channels = stem_w
        stages: list[StageSpec] = []
        for i, slot in enumerate(self.stages):
            depth = slot.depth[0] if len(slot.depth) == 1 else \
                trial.suggest_categorical(f"s{i}.depth", list(slot.depth))
            if depth == 0:
                continue
            width = slot.width.sample(trial, f"s{i}.width")
            for j in range(depth if slot.layerwise else 1):
                block = slot.layer.sample(
                    trial, lambda f, i=i, j=j, slot=slot: slot.name(i, j, f), channels, width,
                    slot.stride if j == 0 else 1)
                stages.append(StageSpec(block, 1 if slot.layerwise else depth))
                channels = width
            tail = slot.attention.sample(trial, i, width) if slot.attention else None
            if tail is not None:
                stages.append(StageSpec(tail))
        if not stages:
            raise SpecError("every stage slot sampled depth 0", ("stages",))
        head = self.head.sample(trial, channels)
        return NetworkSpec(name=name, stem=(self._stem(trial, stem_w, stem_act),),
                           stages=tuple(stages), head=head, resolution=res,
                           num_classes=self.num_classes, family=self.family or self.name,
                           rounding=RoundingPolicy(), norm=self.norm)

    def largest(self, name: str | None = None) -> NetworkSpec:
        """The space's largest member: every slot at its deepest and widest, the largest
        kernel, expansion and head, SE on where a slot offers it, the largest resolution (the
        first listed block kind and activation, which carry no size).  Every member with
        those kinds is a sub-network of it, so it is the parent a weight-inheritance study
        trains (``nasscale.transfer.containment``)."""
        spec = self.sample(_Extreme(largest=True), name=name or f"{self.name}_largest")
        return spec.replace(paper=f"the largest member of search space {self.name} "
                                  "(SearchSpace.largest): the parent of weight inheritance")

    def smallest(self, name: str | None = None) -> NetworkSpec:
        """The space's smallest member: every slot at its shallowest and narrowest, the
        smallest kernel, expansion and head, no SE where a slot offers a choice, the smallest
        resolution (the first listed block kind and activation) — the other end of a
        supernet's sandwich."""
        return self.sample(_Extreme(largest=False), name=name or f"{self.name}_smallest")

    # --- inversion -----------------------------------------------------------------------
    def params_for(self, network: NetworkSpec) -> dict[str, Any]:
        """Parameters that make ``sample`` return ``network``'s structure; raises NotInSpace."""
        p: dict[str, Any] = {}

        def put(name: str, values: Sequence[Any], value: Any) -> None:
            if value not in values:
                raise NotInSpace(f"{name}: {value!r} not among {list(values)}")
            if len(values) > 1:
                p[name] = value

        put("resolution", self.resolution, network.resolution)
        if network.num_classes != self.num_classes:
            raise NotInSpace(f"num_classes {network.num_classes} != {self.num_classes}")
        stem = network.stem[0] if len(network.stem) == 1 else None
        if stem is None or stem.kind != self.stem_kind:
            raise NotInSpace(f"the space's stem is one 3x3 stride-2 {self.stem_kind}")
        if stem.kind == "repconv":
            if stem != RepConvSpec(out_channels=stem.out_channels, kernel_size=3, stride=2,
                                   branches=stem.branches, activation=stem.activation):
                raise NotInSpace("the space's stem is a 3x3 stride-2 repconv without SE, in "
                                 "its train form")
            put("stem.branches", self.stem_branches, stem.branches)
        elif (stem.kernel_size, stem.stride, stem.norm, stem.bias) != (3, 2, "bn", False):
            raise NotInSpace("the space's stem is a 3x3 stride-2 conv-BN-act")
        put("stem.width", list(self.stem_width.values()), stem.out_channels)
        put("stem.activation", self.stem_activation, stem.activation)
        layers = [(b.spec, b.in_channels) for b in resolve(network).section("stage")]
        p.update(self._match(layers, 0))
        p.update(self._match_head(network.head, layers[-1][0].out_channels))
        return p

    def _match(self, layers: list, slot_index: int) -> dict[str, Any]:
        if slot_index == len(self.stages):
            if layers:
                raise NotInSpace(f"{len(layers)} layers left after the last stage slot")
            return {}
        slot = self.stages[slot_index]
        reasons = []
        tails = (slot.attention.present if slot.attention else (False,))
        for depth in slot.depth:
            for tail in (tails if depth else (False,)):
                try:
                    here = self._match_slot(slot, slot_index, layers[:depth], depth)
                    if slot.attention is not None and depth:
                        block = layers[depth][0] if tail and len(layers) > depth else None
                        if tail and block is None:
                            raise NotInSpace("no layer left for the attention block")
                        here.update(slot.attention.params_for(block, slot_index))
                    rest = layers[depth + (1 if tail else 0):]
                    return {**here, **self._match(rest, slot_index + 1)}
                except NotInSpace as err:
                    reasons.append(f"depth {depth}{' + attention' if tail else ''}: {err}")
        raise NotInSpace(f"s{slot_index}: " + "; ".join(reasons))

    def _match_slot(self, slot: StageChoice, i: int, layers: list, depth: int) -> dict:
        if len(layers) < depth:
            raise NotInSpace("not enough layers")
        p: dict[str, Any] = {}
        if len(slot.depth) > 1:
            p[f"s{i}.depth"] = depth
        if depth == 0:
            return p
        width = layers[0][0].out_channels
        if width not in slot.width.values():
            raise NotInSpace(f"s{i}.width: {width} not in {slot.width}")
        if slot.width.min != slot.width.max:
            p[f"s{i}.width"] = width
        for j, (block, cin) in enumerate(layers):
            stride = slot.stride if j == 0 else 1
            if block.out_channels != width or block.block_stride != stride:
                raise NotInSpace(f"layer {j}: width {block.out_channels}/stride "
                                 f"{block.block_stride}, wanted {width}/{stride}")
            choice = slot.layer.params_for(block, lambda f, j=j: slot.name(i, j, f), cin)
            clash = {k: (v, p[k]) for k, v in choice.items() if k in p and p[k] != v}
            if clash:
                raise NotInSpace(f"layer {j} differs from earlier layers in shared "
                                 f"choices {clash}")
            p.update(choice)
        return p

    def _match_head(self, head: HeadSpec, last: int) -> dict[str, Any]:
        p: dict[str, Any] = {}
        widths = self.head.conv_widths(last)
        if widths:
            if len(head.blocks) != 1 or head.blocks[0] != ConvSpec(
                    out_channels=head.blocks[0].out_channels, kernel_size=1,
                    activation=self.head.conv_activation):
                raise NotInSpace("head: the space's head has one 1x1 conv-BN-act")
            width = head.blocks[0].out_channels
            if width not in widths:
                raise NotInSpace(f"head conv width {width} not among {list(widths)}")
            if self.head.conv_ratio and len(self.head.conv_ratio) > 1:
                p["head.conv_ratio"] = self.head.conv_ratio[widths.index(width)]
            elif len(widths) > 1:
                p["head.conv_width"] = width
        elif head.blocks:
            raise NotInSpace("head: the space's head has no conv")
        if head.hidden not in self.head.hidden:
            raise NotInSpace(f"head.hidden {list(head.hidden)} not among "
                             f"{[list(h) for h in self.head.hidden]}")
        if len(self.head.hidden) > 1:
            p["head.hidden"] = hidden_label(head.hidden)
        if (head.norm, head.pool) != ("none", "avg") or (
                head.hidden and (head.hidden_activation, head.hidden_norm)
                != (self.head.hidden_activation, self.head.hidden_norm)):
            raise NotInSpace("head norm/pool/hidden activation/hidden norm differ")
        return p

    def contains_network(self, network: NetworkSpec) -> bool:
        try:
            self.params_for(network)
            return True
        except NotInSpace:
            return False


def same_architecture(a: NetworkSpec, b: NetworkSpec) -> bool:
    """Same network (ignoring names, metadata, dropout and stage grouping)."""
    def shape(n: NetworkSpec):
        blocks = [(x.spec, x.in_channels, x.in_hw) for x in resolve(n).blocks]
        head = dataclasses.replace(n.head, blocks=(), dropout=0.0)
        return blocks, head, n.resolution, n.num_classes, n.in_channels

    return shape(a) == shape(b)


def _units(label: str) -> tuple[int, int]:
    """A head.hidden choice's total hidden units and layers (``"1024x512"``, ``"none"``)."""
    widths = [] if label == "none" else [int(w) for w in label.split("x")]
    return sum(widths), len(widths)


@dataclass(frozen=True)
class _Extreme:
    """Answers ``suggest_*`` with the largest choice (``largest``: the highest number, ``True``,
    the head with the most hidden units) or the smallest (``False`` for a switch such as SE);
    a choice of names (kind, activation) takes the first listed."""

    largest: bool = True

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        choices = list(choices)
        pick = max if self.largest else min
        if name == "head.hidden":
            return pick(choices, key=_units)
        if all(isinstance(c, (int, float)) for c in choices):
            return pick(choices)
        return choices[0]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return low + (high - low) // step * step if self.largest else low


@dataclass(frozen=True)
class SampledSpace:
    """A search space as a latency-table source (``lut build space:NAME[:N]``).

    A grammar space can hold tens of thousands of distinct resolved blocks (every input width
    times every output width, kernel, expansion, ... at every resolution), too many to time
    one by one; the table's per-kind model extrapolates blocks it has not measured, and reports
    them.  So the table covers the blocks of ``n`` seeded random networks of the space — the
    blocks a search meets most — and carriers are sampled from the whole space."""

    space: SearchSpace
    n: int = 200
    seed: int = 0

    @property
    def name(self) -> str:
        return f"space:{self.space.name}:{self.n}"

    def sample(self, rng, name: str = "sample") -> NetworkSpec:
        return self.space.sample(RandomSuggester(rng), name=name)

    def blocks(self):
        rng = random.Random(self.seed)
        blocks: dict[str, Any] = {}
        heads: dict[str, Any] = {}
        for i in range(self.n):
            for unit in units_of(resolve(self.sample(rng, f"s{i}"))):
                (heads if not hasattr(unit, "spec") else blocks).setdefault(unit_key(unit), unit)
        return list(blocks.values()), list(heads.values())
