"""Re-parameterisable block kinds: trained as parallel branches, deployed as one conv.

A re-parameterisable kind states which of its two forms a spec is in its ``deploy`` field
(text ``deploy``); ``BlockSpec.deploy_form()`` / ``train_form()`` switch between them, and the
module of the train form gives the deploy form with the same function (``reparameterize()``;
``nasscale.reparameterize`` does a whole network).  Every layer reads the form from the spec:
the cost formulas count the form they are given, the latency table times the deploy form.

``repconv`` -- MobileOne's over-parameterised conv (Vasu et al., "MobileOne: An Improved One
millisecond Mobile Backbone", CVPR 2023, Fig. 3), RepVGG's block when ``branches`` is 1:
``branches`` parallel k×k conv → BN, a 1×1 conv → BN "scale" branch (when k > 1) and a BN
"identity" branch (when the input can be added: stride 1, equal widths), summed → optional SE
→ activation.  The deploy form is one k×k conv with bias → SE → activation.  ``dw`` makes every
conv depthwise (the width kept); ``grouped`` gives the convs one group per input channel
with a wider output, each input channel making ``out_channels / in`` outputs (timm's
``group_size=1``: FastViT's final conv doubles the width so; gcd(in, out) groups for other
widths, which scaling and pruning may give).

``mobileone`` -- the paper's block: a depthwise ``repconv`` (k×k, the stride, the input width)
followed by a pointwise one (1×1, to ``out_channels``), each with ``branches`` conv branches,
the block's activation, and the SE when there is one (MobileOne-S4 squeezes both).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from nasscale.errors import SpecError, field_error
from nasscale.specs.blocks import STRIDES, BlockSpec, SESpec, _check_se
from nasscale.specs.common import ACTIVATIONS, check_bool, check_choice, check_int, check_odd
from nasscale.specs.kind import KindRule, NotALayer

#: The most conv branches a re-parameterisable block may train with (the papers use 1 to 4).
MAX_BRANCHES = 64


def _check_reparam(spec: BlockSpec) -> None:
    check_int("out_channels", spec.out_channels)  # type: ignore[attr-defined]
    check_odd("kernel_size", spec.kernel_size)  # type: ignore[attr-defined]
    check_choice("stride", spec.stride, STRIDES)  # type: ignore[attr-defined]
    check_int("branches", spec.branches, maximum=MAX_BRANCHES)  # type: ignore[attr-defined]
    check_choice("activation", spec.activation, ACTIVATIONS)  # type: ignore[attr-defined]
    check_bool("deploy", spec.deploy)  # type: ignore[attr-defined]
    _check_se(spec)
    se = spec.se  # type: ignore[attr-defined]
    if se is not None and se.base != "mid":
        raise field_error("se", "an SE on the conv's output (base mid, e.g. "
                          "se0.0625-mid-sigmoid-relu-d8)", f"base {se.base}")


@dataclass(frozen=True)
class RepConvSpec(BlockSpec):
    """One re-parameterisable conv (MobileOne's stem, RepVGG): see the module doc."""

    kind: ClassVar[str] = "repconv"
    title: ClassVar[str] = "re-parameterisable conv"
    #: the BN identity branch exists exactly where a residual could (stride 1, equal widths)
    skip_rule: ClassVar[str] = "always"
    reparameterizable: ClassVar[bool] = True
    rule: ClassVar[KindRule] = KindRule(
        fixed=("kernel_size", "stride", "branches", "depthwise", "activation", "se", "deploy",
               "grouped"),
        text=("k", "s", "b", "c", "dw", "grouped", "act", "se", "deploy"))
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    branches: int = 1
    depthwise: bool = False
    activation: str = "relu"
    se: SESpec | None = None
    deploy: bool = False
    grouped: bool = False

    def __post_init__(self) -> None:
        _check_reparam(self)
        check_bool("depthwise", self.depthwise)
        check_bool("grouped", self.grouped)
        if self.grouped and self.depthwise:
            raise field_error("grouped", "false with dw (a depthwise conv of equal widths is "
                              "already one group per input channel)", self.grouped)

    def widths(self, in_channels: int) -> dict[str, int]:
        return {"se": self.se.width(self.out_channels, self.out_channels) if self.se else 0}

    def check_input(self, in_channels: int) -> None:
        if self.depthwise and in_channels != self.out_channels:
            raise field_error("out_channels", f"equal to the input width {in_channels} (a "
                              "depthwise repconv keeps its width)", self.out_channels)

    def ties_widths(self) -> bool:
        return self.grouped

    def groups(self, in_channels: int) -> int:
        """The convs' groups: the input width (``dw``), gcd(input, output) (``grouped``: one
        group per input channel when the output width is a multiple of it), else 1."""
        if self.depthwise:
            return in_channels
        return math.gcd(in_channels, self.out_channels) if self.grouped else 1


@dataclass(frozen=True)
class MobileOneSpec(BlockSpec):
    """MobileOne's block, a depthwise then a pointwise ``repconv``: see the module doc."""

    kind: ClassVar[str] = "mobileone"
    title: ClassVar[str] = "MobileOne block"
    #: the pointwise conv's identity branch: equal widths, at any stride (that conv runs at
    #: stride 1); the depthwise conv has one whenever the block has stride 1
    skip_rule: ClassVar[str] = "widths"
    reparameterizable: ClassVar[bool] = True
    rule: ClassVar[KindRule] = KindRule(
        fixed=("kernel_size", "stride", "branches", "activation", "se", "deploy"),
        text=("k", "s", "b", "c", "act", "se", "deploy"))
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    branches: int = 1
    activation: str = "relu"
    se: SESpec | None = None
    deploy: bool = False

    def __post_init__(self) -> None:
        _check_reparam(self)
        if self.kernel_size == 1 and self.stride > 1:
            raise SpecError("a strided MobileOne block needs a depthwise kernel > 1",
                            ("kernel_size",))

    #: a search space's layer picks the conv branches it trains with and whether it squeezes
    layer_fields: ClassVar[tuple[str, ...]] = ("se", "branches")

    @classmethod
    def from_layer(cls, *, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                   activation: str, expand_ratio: float = 1.0, se: bool = False,
                   se_form: SESpec | None = None, branches: int = 1) -> "MobileOneSpec":
        return cls(out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                   branches=branches, activation=activation, se=se_form if se else None)

    def layer_values(self, in_channels: int, expand_ratios, se_form) -> dict:
        if self.deploy:
            raise NotALayer("deploy", "a space holds networks in their train form")
        if self.se is not None and self.se != se_form:
            raise NotALayer("se", f"{self.se} differs from the space's se_form")
        return {"se": self.se is not None, "branches": self.branches}

    @classmethod
    def random_layer(cls, rng, out_channels: int, stride: int, k: int, act: str,
                     expansion: dict, se) -> "MobileOneSpec":
        se = SESpec(se.ratio, "mid", se.gate, se.activation, se.divisor) if se else None
        return cls(out_channels=out_channels, kernel_size=k, stride=stride,
                   branches=rng.choice((1, 2, 4)), activation=act, se=se)

    def widths(self, in_channels: int) -> dict[str, int]:
        """``se_dw``: the depthwise conv's squeeze (of the input width); ``se``: the pointwise
        conv's (of the output width)."""
        if self.se is None:
            return {"se_dw": 0, "se": 0}
        return {"se_dw": self.se.width(in_channels, in_channels),
                "se": self.se.width(self.out_channels, self.out_channels)}
