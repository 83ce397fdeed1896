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
Parameter names: ``resolution``, ``stem.width``, ``stem.activation``, ``s<i>.depth``,
``s<i>.width``, ``s<i>.<field>`` (shared) or ``s<i>.l<j>.<field>`` (per layer),
``head.hidden``.  This module does not import optuna.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from nasscale.errors import SpecError
from nasscale.specs import (
    BLOCK_KINDS,
    BlockSpec,
    ConvSpec,
    HeadSpec,
    NetworkSpec,
    RoundingPolicy,
    SESpec,
    StageSpec,
    make_divisible,
    resolve,
)
from nasscale.specs.common import ACTIVATIONS
from nasscale.specs.kind import NotALayer


class Suggester(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int: ...


class NotInSpace(Exception):
    """Raised by ``params_for`` with the reason a network is not a point of the space."""


# --- choice lists -----------------------------------------------------------------------------

def _choices(name: str, values: Sequence[Any], allowed: Sequence[Any] | None = None,
             kind: type | tuple = object) -> tuple:
    values = tuple(values)
    if not values:
        raise SpecError("must list at least one choice, got an empty list", (name,))
    if len(set(map(repr, values))) != len(values):
        raise SpecError(f"lists a choice twice: {list(values)}", (name,))
    for v in values:
        if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
            raise SpecError(f"choice {v!r} has the wrong type", (name,))
        if allowed is not None and v not in allowed:
            raise SpecError(f"choice {v!r} is not allowed; allowed: "
                            f"{', '.join(map(str, allowed))}", (name,))
    return values


@dataclass(frozen=True)
class WidthChoice:
    """Widths ``min..max`` in steps of ``step`` (a multiple of 8)."""

    min: int
    max: int
    step: int = 8

    def __post_init__(self) -> None:
        for field in ("min", "max", "step"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 8 or v % 8:
                raise SpecError(f"must be a multiple of 8 (8, 16, 24, ...), got {v!r}",
                                (f"width.{field}",))
        if self.max < self.min:
            raise SpecError(f"max {self.max} is below min {self.min}", ("width",))
        if (self.max - self.min) % self.step:
            raise SpecError(f"max - min must be a multiple of step {self.step}", ("width",))

    def values(self) -> range:
        return range(self.min, self.max + 1, self.step)

    def sample(self, trial: Suggester, name: str) -> int:
        if self.min == self.max:
            return self.min
        return trial.suggest_int(name, self.min, self.max, step=self.step)




def layer_kinds() -> tuple[str, ...]:
    """The kinds a layer choice may offer: those whose spec defines ``from_layer``."""
    return tuple(code for code, cls in BLOCK_KINDS.items() if cls.searchable())


@dataclass(frozen=True)
class LayerChoice:
    """Choices for one layer (or for all layers of a slot when not ``per_layer``)."""

    kinds: tuple[str, ...]
    kernel_size: tuple[int, ...] = (3,)
    expand_ratio: tuple[float, ...] = (6.0,)
    se: tuple[bool, ...] = (False,)
    activation: tuple[str, ...] = ("relu",)
    #: the SE of mbconv/fused layers when ``se`` is on (bneck has its own fixed SE)
    se_form: SESpec = SESpec()

    def __post_init__(self) -> None:
        _choices("kinds", self.kinds, layer_kinds(), str)
        _choices("kernel_size", self.kernel_size, kind=int)
        for k in self.kernel_size:
            if k < 1 or k % 2 == 0:
                raise SpecError(f"choice {k} is not an odd kernel (1, 3, 5, 7, ...)",
                                ("kernel_size",))
        _choices("expand_ratio", self.expand_ratio, kind=(int, float))
        if any(e <= 0 for e in self.expand_ratio):
            raise SpecError("choices must be > 0", ("expand_ratio",))
        _choices("se", self.se, (False, True), bool)
        _choices("activation", self.activation, ACTIVATIONS, str)
        for kind in self.kinds:
            if BLOCK_KINDS[kind].layer_activations is not None:
                _choices("activation", self.activation, BLOCK_KINDS[kind].layer_activations, str)

    def sample(self, trial: Suggester, name, in_channels: int, out_channels: int,
               stride: int) -> BlockSpec:
        """``name(field)`` gives the Optuna parameter name of a field for this layer."""
        def pick(field: str, values: tuple) -> Any:
            return values[0] if len(values) == 1 else \
                trial.suggest_categorical(name(field), list(values))

        kind = pick("kind", self.kinds)
        k = pick("kernel_size", self.kernel_size)
        act = pick("activation", self.activation)
        cls = BLOCK_KINDS[kind]
        values: dict[str, Any] = {}
        if "expand_ratio" in cls.layer_fields:
            values["expand_ratio"] = float(pick("expand_ratio", self.expand_ratio))
        if "se" in cls.layer_fields:
            values["se"] = bool(pick("se", self.se))
        return cls.from_layer(in_channels=in_channels, out_channels=out_channels, kernel_size=k,
                              stride=stride, activation=act, se_form=self.se_form, **values)

    def params_for(self, block: BlockSpec, name, in_channels: int) -> dict[str, Any]:
        """The choices that sample ``block`` after ``in_channels`` inputs (or NotInSpace)."""
        out: dict[str, Any] = {}
        prefix = name("")

        def put(field: str, values: tuple, value: Any) -> None:
            if value not in values:
                raise NotInSpace(f"{name(field)}: {value!r} not among {list(values)}")
            if len(values) > 1:
                out[name(field)] = value

        put("kind", self.kinds, block.kind)
        put("kernel_size", self.kernel_size, block.kernel_size)
        put("activation", self.activation, block.activation)
        try:
            values = block.layer_values(in_channels, self.expand_ratio, self.se_form)
        except NotALayer as err:
            raise NotInSpace(f"{prefix}{err.field}: {err.reason}") from None
        for field in ("expand_ratio", "se"):
            if field in values:
                put(field, getattr(self, field), values[field])
        return out


LAYER_FIELDS = ("kind", "kernel_size", "expand_ratio", "se", "activation")


@dataclass(frozen=True)
class AttentionTail:
    """An optional MobileViT block after a slot's convolutional layers (the MobileViT layout:
    an MV2 layer that downsamples, then a MobileViT block at the same width).  Its MLP width is
    ``make_divisible(transformer_dim · mlp_ratio, 8)``, written explicitly (``m``) like the
    paper's tables."""

    transformer_dim: WidthChoice
    present: tuple[bool, ...] = (True,)
    transformer_depth: tuple[int, ...] = (2,)
    mlp_ratio: tuple[float, ...] = (2.0,)
    num_heads: tuple[int, ...] = (4,)
    patch_size: tuple[int, ...] = (2,)
    kernel_size: tuple[int, ...] = (3,)
    activation: str = "silu"

    def __post_init__(self) -> None:
        _choices("attention.present", self.present, (False, True), bool)
        for name in ("transformer_depth", "num_heads", "patch_size", "kernel_size"):
            values = _choices(f"attention.{name}", getattr(self, name), kind=int)
            if any(v < 1 for v in values):
                raise SpecError("choices must be >= 1", (f"attention.{name}",))
        _choices("attention.mlp_ratio", self.mlp_ratio, kind=(int, float))
        for d in self.transformer_dim.values():
            for h in self.num_heads:
                if d % h:
                    raise SpecError(f"transformer width {d} is not divisible by {h} heads",
                                    ("attention.num_heads",))
        if self.activation not in ACTIVATIONS:
            raise SpecError(f"must be one of {', '.join(ACTIVATIONS)}", ("attention.activation",))

    def _pick(self, trial: Suggester, name: str, values: tuple) -> Any:
        return values[0] if len(values) == 1 else trial.suggest_categorical(name, list(values))

    def sample(self, trial: Suggester, i: int, width: int) -> BlockSpec | None:
        from nasscale.specs import MobileViTSpec

        if not self._pick(trial, f"s{i}.attn", self.present):
            return None
        dim = self.transformer_dim.sample(trial, f"s{i}.attn.dim")
        ratio = float(self._pick(trial, f"s{i}.attn.mlp_ratio", self.mlp_ratio))
        return MobileViTSpec(
            out_channels=width, transformer_dim=dim,
            transformer_depth=self._pick(trial, f"s{i}.attn.depth", self.transformer_depth),
            num_heads=self._pick(trial, f"s{i}.attn.heads", self.num_heads),
            patch_size=self._pick(trial, f"s{i}.attn.patch", self.patch_size),
            kernel_size=self._pick(trial, f"s{i}.attn.kernel_size", self.kernel_size),
            mid_channels=make_divisible(dim * ratio, 8), activation=self.activation)

    def params_for(self, block: BlockSpec | None, i: int) -> dict[str, Any]:
        from nasscale.specs import MobileViTSpec

        out: dict[str, Any] = {}

        def put(name: str, values: Sequence[Any], value: Any) -> None:
            if value not in values:
                raise NotInSpace(f"{name}: {value!r} not among {list(values)}")
            if len(values) > 1:
                out[name] = value

        put(f"s{i}.attn", self.present, block is not None)
        if block is None:
            return out
        if not isinstance(block, MobileViTSpec) or block.activation != self.activation:
            raise NotInSpace(f"s{i}: the attention layer must be a {self.activation} mobilevit")
        put(f"s{i}.attn.dim", list(self.transformer_dim.values()), block.transformer_dim)
        ratios = [r for r in self.mlp_ratio if make_divisible(block.transformer_dim * r, 8)
                  == block.mid_channels]
        if block.mid_channels is None or not ratios:
            raise NotInSpace(f"s{i}.attn.mlp_ratio: no choice gives MLP width "
                             f"{block.mid_channels}")
        put(f"s{i}.attn.mlp_ratio", self.mlp_ratio, ratios[0])
        put(f"s{i}.attn.depth", self.transformer_depth, block.transformer_depth)
        put(f"s{i}.attn.heads", self.num_heads, block.num_heads)
        put(f"s{i}.attn.patch", self.patch_size, block.patch_size)
        put(f"s{i}.attn.kernel_size", self.kernel_size, block.kernel_size)
        return out


@dataclass(frozen=True)
class StageChoice:
    """A stage slot.  ``per_layer`` names the layer fields that every layer samples on its own;
    the other fields are shared by the slot's layers (one Optuna parameter each)."""

    stride: int
    depth: tuple[int, ...]
    width: WidthChoice
    layer: LayerChoice
    per_layer: tuple[str, ...] = ()
    attention: AttentionTail | None = None

    def __post_init__(self) -> None:
        if self.stride not in (1, 2):
            raise SpecError(f"must be 1 or 2, got {self.stride!r}", ("stride",))
        _choices("depth", self.depth, kind=int)
        if any(d < 0 for d in self.depth):
            raise SpecError("choices must be >= 0", ("depth",))
        for field in self.per_layer:
            if field not in LAYER_FIELDS:
                raise SpecError(f"unknown layer field {field!r}; allowed: "
                                f"{', '.join(LAYER_FIELDS)}", ("per_layer",))

    @property
    def layerwise(self) -> bool:
        """Whether each layer becomes its own stage string: some field is sampled per layer,
        or a layer can be a bneck (whose expanded width is explicit, so it cannot follow each
        repeat's input the way ``e<ratio>`` does)."""
        return bool(self.per_layer) or "bneck" in self.layer.kinds

    def name(self, i: int, j: int, field: str) -> str:
        return f"s{i}.l{j}.{field}" if field in self.per_layer else f"s{i}.{field}"


@dataclass(frozen=True)
class HeadChoice:
    """Head: optional 1×1 conv (width = ``conv_ratio`` × last stage width, rounded to 8, or a
    fixed ``conv_width``), then hidden linears (one choice of the lists in ``hidden``)."""

    conv_width: tuple[int, ...] = ()
    conv_ratio: tuple[float, ...] = ()
    conv_activation: str = "relu"
    hidden: tuple[tuple[int, ...], ...] = ((),)
    hidden_activation: str = "hswish"
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if self.conv_width and self.conv_ratio:
            raise SpecError("give conv_width or conv_ratio, not both", ("head",))
        for w in self.conv_width:
            if w % 8:
                raise SpecError(f"must be multiples of 8, got {w}", ("head.conv_width",))
        _choices("head.hidden", self.hidden, kind=tuple)
        if self.conv_activation not in ACTIVATIONS or self.hidden_activation not in ACTIVATIONS:
            raise SpecError(f"activations must be among {', '.join(ACTIVATIONS)}", ("head",))

    def conv_widths(self, last: int) -> tuple[int, ...]:
        if self.conv_ratio:
            return tuple(make_divisible(last * r, 8) for r in self.conv_ratio)
        return self.conv_width

    def sample(self, trial: Suggester, last: int) -> HeadSpec:
        blocks: tuple[BlockSpec, ...] = ()
        widths = self.conv_widths(last)
        if widths:
            if self.conv_ratio and len(self.conv_ratio) > 1:
                ratio = trial.suggest_categorical("head.conv_ratio", list(self.conv_ratio))
                width = make_divisible(last * ratio, 8)
            elif len(widths) > 1:
                width = trial.suggest_categorical("head.conv_width", list(widths))
            else:
                width = widths[0]
            blocks = (ConvSpec(out_channels=width, kernel_size=1,
                               activation=self.conv_activation),)
        if len(self.hidden) > 1:
            labels = [_hidden_label(h) for h in self.hidden]
            hidden = self.hidden[labels.index(trial.suggest_categorical("head.hidden", labels))]
        else:
            hidden = self.hidden[0]
        return HeadSpec(blocks=blocks, hidden=hidden, hidden_activation=self.hidden_activation,
                        dropout=self.dropout)


def _hidden_label(hidden: tuple[int, ...]) -> str:
    return "none" if not hidden else "x".join(map(str, hidden))


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
                block = slot.layer.sample(trial, lambda f, j=j: slot.name(i, j, f), channels,
                                          width, slot.stride if j == 0 else 1)
                stages.append(StageSpec(block, 1 if slot.layerwise else depth))
                channels = width
            tail = slot.attention.sample(trial, i, width) if slot.attention else None
            if tail is not None:
                stages.append(StageSpec(tail))
        if not stages:
            raise SpecError("every stage slot sampled depth 0", ("stages",))
        head = self.head.sample(trial, channels)
        return NetworkSpec(name=name, stem=(ConvSpec(out_channels=stem_w, kernel_size=3,
                                                     stride=2, activation=stem_act),),
                           stages=tuple(stages), head=head, resolution=res,
                           num_classes=self.num_classes, family=self.family or self.name,
                           rounding=RoundingPolicy())

    def largest(self, name: str | None = None) -> NetworkSpec:
        """The space's largest member: every slot at its deepest and widest, the largest
        kernel, expansion and head, SE on where a slot offers it, the largest resolution (the
        first listed block kind and activation, which carry no size).  Every member with
        those kinds is a sub-network of it, so it is the parent a weight-inheritance study
        trains (``nasscale.search.inherit``)."""
        spec = self.sample(_Largest(), name=name or f"{self.name}_largest")
        return spec.replace(paper=f"the largest member of search space {self.name} "
                                  "(SearchSpace.largest): the parent of weight inheritance")

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
        if len(network.stem) != 1 or not isinstance(network.stem[0], ConvSpec):
            raise NotInSpace("the space's stem is one 3x3 stride-2 conv")
        stem = network.stem[0]
        if (stem.kernel_size, stem.stride, stem.norm, stem.bias) != (3, 2, "bn", False):
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
            p["head.hidden"] = _hidden_label(head.hidden)
        if (head.norm, head.pool) != ("none", "avg") or (
                head.hidden and head.hidden_activation != self.head.hidden_activation):
            raise NotInSpace("head norm/pool/hidden activation differ")
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


class _Largest:
    """Answers ``suggest_*`` with the largest choice: the highest number, ``True``, the head
    with the most hidden units; a choice of names (kind, activation) takes the first listed."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        choices = list(choices)
        if name == "head.hidden":
            def units(label: str) -> tuple[int, int]:
                widths = [] if label == "none" else [int(w) for w in label.split("x")]
                return sum(widths), len(widths)
            return max(choices, key=units)
        if all(isinstance(c, (int, float)) for c in choices):
            return max(choices)
        return choices[0]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return low + (high - low) // step * step


class RandomSuggester:
    """Answers ``suggest_*`` uniformly from a ``random.Random``: samples a space without Optuna."""

    def __init__(self, rng):
        self.rng = rng

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.rng.choice(list(choices))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.rng.randrange(low, high + 1, step)


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
        import random

        from nasscale.latency.table import unit_key, units_of

        rng = random.Random(self.seed)
        blocks: dict[str, Any] = {}
        heads: dict[str, Any] = {}
        for i in range(self.n):
            for unit in units_of(resolve(self.sample(rng, f"s{i}"))):
                (heads if not hasattr(unit, "spec") else blocks).setdefault(unit_key(unit), unit)
        return list(blocks.values()), list(heads.values())
