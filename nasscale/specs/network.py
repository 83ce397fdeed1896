"""Network specs: stem, stages, head, and the metadata a named architecture carries."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from nasscale.errors import SpecError, field_error
from nasscale.specs.blocks import BlockSpec
from nasscale.specs.common import (
    ACTIVATIONS,
    MAX_BLOCKS,
    check_bool,
    check_choice,
    check_int,
    check_number,
)

#: ``avg``: global average pooling (of the patch tokens, for a ViT); ``token``: the class token.
POOLS = ("avg", "token")
#: ``ln``: LayerNorm of the pooled features (ConvNeXt); ``ln_before_pool``: LayerNorm of every
#: position or token before pooling (ViT's and Swin's final norm).
HEAD_NORMS = ("none", "ln", "ln_before_pool", "bn")
DEPTH_ROUNDING = ("ceil", "round", "floor")
STEM_RULES = ("scale", "fixed")
HEAD_RULES = ("scale", "grow", "fixed")
FIXED_DEPTH_RULES = ("none", "first_last")
MID_RULES = ("ratio", "width")
ATTENTION_RULES = ("heads", "head_dim")


@dataclass(frozen=True)
class NormPolicy:
    """The normalisation constants that change a network's function (data, not code).

    ``bn_eps``/``bn_momentum``: every BatchNorm's epsilon and running-statistics momentum
    (PyTorch's defaults 1e-5 and 0.1; torchvision's MobileNetV3 and the TensorFlow originals use
    1e-3 and 0.01).  ``ln_eps``: every LayerNorm's epsilon, the head's included.  A field left
    ``None`` takes the enclosing default: a stage's from the network's, the network's from the
    built-in one (BatchNorm 1e-5 and 0.1; LayerNorm the block kind's published value: 1e-6 for
    ConvNeXt blocks, their stem and downsampling layers, ViT blocks and the head, 1e-5 for
    MobileViT and Swin).  Momentum only matters in training; both epsilons change the output.
    """

    bn_eps: float | None = None
    bn_momentum: float | None = None
    ln_eps: float | None = None

    def __post_init__(self) -> None:
        for name in ("bn_eps", "ln_eps"):
            if getattr(self, name) is not None:
                check_number(f"norm.{name}", getattr(self, name))
        if self.bn_momentum is not None:
            check_number("norm.bn_momentum", self.bn_momentum)
            if self.bn_momentum > 1:
                raise field_error("norm.bn_momentum", "a number in (0, 1]", self.bn_momentum)

    def over(self, outer: "NormPolicy") -> "NormPolicy":
        """This policy with its unset fields taken from ``outer``."""
        return NormPolicy(**{f.name: (getattr(self, f.name) if getattr(self, f.name) is not None
                                      else getattr(outer, f.name))
                             for f in dataclasses.fields(self)})

    @property
    def bn(self) -> tuple[float, float]:
        """``(eps, momentum)`` of a BatchNorm."""
        return (1e-5 if self.bn_eps is None else self.bn_eps,
                0.1 if self.bn_momentum is None else self.bn_momentum)

    def ln(self, kind_default: float) -> float:
        """A LayerNorm's epsilon: the policy's, else the block kind's published default."""
        return kind_default if self.ln_eps is None else self.ln_eps

    def is_default(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self))


@dataclass(frozen=True)
class StageSpec:
    """``repeats`` copies of ``block``; the block's stride applies to the first copy only.
    ``norm`` overrides the network's normalisation constants for these blocks."""

    block: BlockSpec
    repeats: int = 1
    norm: NormPolicy | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.block, BlockSpec):
            raise field_error("block", "a block spec", self.block)
        check_int("repeats", self.repeats)
        if self.norm is not None and not isinstance(self.norm, NormPolicy):
            raise field_error("norm", "a norm policy", self.norm)

    def replace(self, **changes: object) -> "StageSpec":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class HeadSpec:
    """What follows the last stage.

    ``blocks`` (1×1 convs before pooling, e.g. EfficientNet's 1280-wide conv) → ``pool`` (global
    average, or a ViT's class token) → ``norm`` (ConvNeXt: LayerNorm of the pooled features;
    ``ln_before_pool``: of every position first, ViT and Swin) → ``hidden`` linear layers with bias
    and ``hidden_activation`` and no norm (MobileNetV3's 1280/1024) → dropout → the classifier.
    ``hidden_norm: bn``: the hidden linears have no bias and a BatchNorm before their activation
    (MobileNetV4's 1280-wide 1×1 conv after pooling, conv → BN → act).
    The head reads whatever layout the last block gives (map, channels-last grid or tokens).
    ``norm: bn``: a BatchNorm of the pooled vector before the classifier (RepViT's classifier);
    ``distill``: a second classifier of the same shape, with its own norm, whose logits are
    averaged with the first's (the DeiT-style distillation head RepViT trains with).  Such a
    head is re-parameterisable: ``deploy`` is its fused form, one linear layer.
    """

    blocks: tuple[BlockSpec, ...] = ()
    pool: str = "avg"
    norm: str = "none"
    hidden: tuple[int, ...] = ()
    hidden_activation: str = "hswish"
    dropout: float = 0.0
    hidden_norm: str = "none"
    distill: bool = False
    deploy: bool = False

    def __post_init__(self) -> None:
        for i, block in enumerate(self.blocks):
            if not isinstance(block, BlockSpec):
                raise field_error(f"blocks[{i}]", "a block spec", block)
        check_choice("pool", self.pool, POOLS)
        check_choice("norm", self.norm, HEAD_NORMS)
        for i, width in enumerate(self.hidden):
            check_int(f"hidden[{i}]", width)
        check_choice("hidden_activation", self.hidden_activation, ACTIVATIONS)
        check_choice("hidden_norm", self.hidden_norm, ("none", "bn"))
        check_number("dropout", self.dropout, strict=False)
        if self.dropout >= 1:
            raise field_error("dropout", "a number in [0, 1)", self.dropout)
        check_bool("distill", self.distill)
        check_bool("deploy", self.deploy)
        if self.norm == "bn" and self.pool != "avg":
            raise field_error("norm", "bn only after average pooling", self.norm)
        if (self.distill or self.deploy) and (self.hidden or self.norm not in ("none", "bn")):
            raise SpecError("a distillation or fused head is a (BatchNorm and) linear "
                            "classifier: no hidden layers, norm none or bn",
                            ("distill" if self.distill else "deploy",))
        if self.deploy and not self.reparameterizable:
            raise field_error("deploy", "false for a head with nothing to fuse (only norm bn or "
                              "distill heads have a deploy form)", self.deploy)

    @property
    def reparameterizable(self) -> bool:
        """Whether the head trains in another form than it deploys (norm bn or distill)."""
        return self.norm == "bn" or self.distill

    def deploy_form(self) -> "HeadSpec":
        return self.replace(deploy=True) if self.reparameterizable else self

    def train_form(self) -> "HeadSpec":
        return self.replace(deploy=False) if self.reparameterizable else self

    def replace(self, **changes: object) -> "HeadSpec":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class RoundingPolicy:
    """How a family rounds widths, depths and resolutions when it is scaled (data, not code).

    ``divisor``/``min_ratio``: channels to the nearest multiple of ``divisor``, never below
    ``min_ratio`` of the unrounded value.  ``depth``: how scaled repeats are rounded.
    ``stem``: ``scale`` (the stem's width scales like any channel) or ``fixed``.
    ``head``: how the last feature width before the classifier scales (the last head conv, or
    the last hidden linear when there is one): ``scale`` (× w, EfficientNet), ``grow``
    (× max(1, w): MobileNetV2/V3 keep their 1280/1024 for w < 1) or ``fixed``.
    ``mid``: how an explicit expanded width (``m<int>``) scales: ``ratio`` keeps mid/in with the
    scaled input (TF and timm MobileNetV3) or ``width`` multiplies it by w (torchvision).
    ``attention``: what an attention block keeps fixed when its width scales, ``heads`` (the
    head count; the width rounds to a multiple of lcm(divisor, heads)) or ``head_dim``.
    ``fixed_depth``: ``first_last`` keeps the repeats of the first and the last stage when the
    depth scales (EfficientNet-Lite: timm's ``fix_first_last``), ``none`` scales every stage.
    ``resolution_divisor``/``max_resolution``: a scaled input size is rounded to the nearest
    multiple of ``resolution_divisor`` and capped at ``max_resolution`` (EfficientNetV2: 480).
    See nasscale.scaling for where each is applied.
    """

    divisor: int = 8
    min_ratio: float = 0.9
    depth: str = "ceil"
    stem: str = "scale"
    head: str = "scale"
    mid: str = "ratio"
    attention: str = "heads"
    resolution_divisor: int = 8
    max_resolution: int | None = None
    fixed_depth: str = "none"

    def __post_init__(self) -> None:
        check_int("rounding.divisor", self.divisor)
        check_number("rounding.min_ratio", self.min_ratio, strict=False)
        if self.min_ratio > 1:
            raise field_error("rounding.min_ratio", "a number in [0, 1]", self.min_ratio)
        check_choice("rounding.depth", self.depth, DEPTH_ROUNDING)
        check_choice("rounding.stem", self.stem, STEM_RULES)
        check_choice("rounding.head", self.head, HEAD_RULES)
        check_choice("rounding.mid", self.mid, MID_RULES)
        check_choice("rounding.attention", self.attention, ATTENTION_RULES)
        check_int("rounding.resolution_divisor", self.resolution_divisor)
        check_choice("rounding.fixed_depth", self.fixed_depth, FIXED_DEPTH_RULES)
        if self.max_resolution is not None:
            check_int("rounding.max_resolution", self.max_resolution)


@dataclass(frozen=True)
class Expected:
    """Published figures a named network must reproduce.

    ``params``/``flops`` are exact integers from a reference implementation (FLOPs in MACs);
    ``paper_params``/``paper_flops`` are the paper's rounded figures (e.g. ``208e6``), for networks
    whose reference implementation publishes no integer.  ``deploy_params``/``deploy_flops``:
    the same integers of the deploy form (``NetworkSpec.deploy_form``) of a network with
    re-parameterisable blocks, counted on the reference after its own re-parameterisation.
    """

    params: int | None = None
    flops: int | None = None
    paper_params: float | None = None
    paper_flops: float | None = None
    source: str = ""
    deploy_params: int | None = None
    deploy_flops: int | None = None

    def __post_init__(self) -> None:
        for name in ("params", "flops", "deploy_params", "deploy_flops"):
            if getattr(self, name) is not None:
                check_int(f"expected.{name}", getattr(self, name))
        for name in ("paper_params", "paper_flops"):
            if getattr(self, name) is not None:
                check_number(f"expected.{name}", getattr(self, name))


#: An option value of a weights layout (``WeightsLayout.options``).
OptionValue = bool | int | float | str


#: where reference weights come from (``nasscale.weights.layouts``)
WEIGHT_SOURCES = ("torchvision", "timm")


@dataclass(frozen=True)
class WeightsLayout:
    """Whose tensor names a network's weights take in one source: ``layout`` names an entry of
    ``nasscale.weights.layouts.LAYOUTS`` (``tv_mobilenet_v3``, ``timm_convnext``, ...) whose
    ``source`` is ``source`` (``torchvision`` or ``timm``); ``options`` are the layout's own
    switches as ``(name, value)`` pairs, sorted by name (timm's ConvNeXt: ``conv_mlp``).
    Which names exist is the layouts' business: they are checked where a network is read from
    YAML and where a layout is made, not here (the specs know nothing of torchvision or timm).
    """

    source: str
    layout: str
    options: tuple[tuple[str, OptionValue], ...] = ()

    def __post_init__(self) -> None:
        for name in ("source", "layout"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise field_error(name, "a non-empty string", value)
        pairs = isinstance(self.options, tuple) and all(
            isinstance(o, tuple) and len(o) == 2 and isinstance(o[0], str) for o in self.options)
        if not pairs:
            raise field_error("options", "(name, value) pairs", self.options)
        names = [name for name, _ in self.options]
        if names != sorted(set(names)):
            raise field_error("options", "pairs sorted by name, each name once", self.options)
        for name, value in self.options:
            if not isinstance(value, (bool, int, float, str)):
                raise field_error(name, "a boolean, number or string", value)


@dataclass(frozen=True)
class NetworkSpec:
    """A whole classifier.  Only ``stem``, ``stages``, ``head``, ``num_classes``, ``in_channels``,
    ``resolution`` and ``drop_path_rate`` change the network's shape, and ``norm`` its function
    (not its size); the rest is metadata.  ``weights``: the layout of each source (torchvision,
    timm) that has the network, one ``WeightsLayout`` per source (``nasscale.weights.layouts``);
    empty: the family file's (``nasscale.zoo.family_weights``)."""

    name: str
    stem: tuple[BlockSpec, ...]
    stages: tuple[StageSpec, ...]
    head: HeadSpec = field(default_factory=HeadSpec)
    resolution: int = 224
    num_classes: int = 1000
    in_channels: int = 3
    drop_path_rate: float = 0.0
    rounding: RoundingPolicy = field(default_factory=RoundingPolicy)
    norm: NormPolicy = field(default_factory=NormPolicy)
    family: str = ""
    paper: str = ""
    reference: str = ""
    expected: Expected | None = None
    weights: tuple[WeightsLayout, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise field_error("name", "a non-empty string", self.name)
        if not isinstance(self.weights, tuple) or not all(isinstance(w, WeightsLayout)
                                                          for w in self.weights):
            raise field_error("weights", "a tuple of weights layouts", self.weights)
        sources = [w.source for w in self.weights]
        if len(sources) != len(set(sources)):
            raise field_error("weights", "one layout per source", sources)
        if not self.stages:
            raise SpecError("must list at least one stage", ("stages",))
        for i, block in enumerate(self.stem):
            if not isinstance(block, BlockSpec):
                raise field_error(f"stem[{i}]", "a block spec", block)
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, StageSpec):
                raise field_error(f"stages[{i}]", "a stage spec", stage)
        if not isinstance(self.norm, NormPolicy):
            raise field_error("norm", "a norm policy", self.norm)
        check_int("resolution", self.resolution)
        check_int("num_classes", self.num_classes)
        check_int("in_channels", self.in_channels)
        check_number("drop_path_rate", self.drop_path_rate, strict=False)
        if self.drop_path_rate >= 1:
            raise field_error("drop_path_rate", "a number in [0, 1)", self.drop_path_rate)
        blocks = len(self.stem) + self.depth + len(getattr(self.head, "blocks", ()))
        if blocks > MAX_BLOCKS:
            raise SpecError(f"must add up to at most {MAX_BLOCKS:,} blocks with the stem and "
                            f"the head, got {blocks:,}", ("stages",))

    def replace(self, **changes: object) -> "NetworkSpec":
        return dataclasses.replace(self, **changes)

    @property
    def reparameterizable(self) -> bool:
        """Whether any block trains in another form than it deploys (``BlockSpec.deploy_form``)."""
        return self.head.reparameterizable or any(b.reparameterizable for b in self.blocks())

    @property
    def deployed(self) -> bool:
        """Whether every re-parameterisable block is in its deploy form."""
        return self.head.deploy_form() == self.head and all(
            b.deploy_form() == b for b in self.blocks())

    def blocks(self):
        """Every block spec of the network: the stem's, each stage's, the head's."""
        return (*self.stem, *(s.block for s in self.stages), *self.head.blocks)

    def deploy_form(self) -> "NetworkSpec":
        """The network as it is deployed: every re-parameterisable block fused
        (``nasscale.reparameterize``); the same spec when it has none."""
        return self._form(lambda b: b.deploy_form())

    def train_form(self) -> "NetworkSpec":
        """The network as it is trained: every re-parameterisable block with its branches."""
        return self._form(lambda b: b.train_form())

    def check_trainable(self, where: str = "") -> None:
        """Raise unless every re-parameterisable block has its branches: a fused (deploy-form)
        block trains as a plain conv, not as the network it came from.  ``where``: the file or
        name the error starts with."""
        places = [*((f"stem[{i}]", b) for i, b in enumerate(self.stem)),
                  *((f"stages[{i}]", s.block) for i, s in enumerate(self.stages)),
                  *((f"head.blocks[{i}]", b) for i, b in enumerate(self.head.blocks)),
                  ("head", self.head)]
        for place, block in places:
            if block.train_form() != block:
                err = SpecError("must be false to train: this block is in its fused deploy "
                                "form, which trains without the branches it was designed "
                                "with; give the train form (without the deploy token)",
                                (place, "deploy"))
                raise err.with_context(where) if where else err

    def _form(self, to) -> "NetworkSpec":
        new = self.replace(stem=tuple(map(to, self.stem)),
                           stages=tuple(s.replace(block=to(s.block)) for s in self.stages),
                           head=to(self.head).replace(blocks=tuple(map(to, self.head.blocks))))
        return self if new == self else new

    def weights_layout(self, source: str) -> WeightsLayout | None:
        """The layout this spec states for ``source``; ``None`` where it states none."""
        return next((w for w in self.weights if w.source == source), None)

    @property
    def depth(self) -> int:
        """Number of blocks in the stages (stem and head excluded)."""
        return sum(stage.repeats for stage in self.stages)
