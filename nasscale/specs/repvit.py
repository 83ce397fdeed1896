"""RepViT's block kinds (Wang et al., "RepViT: Revisiting Mobile CNN From ViT Perspective",
CVPR 2024, Fig. 2-3): a MobileNetV3-style network rebuilt with ViT's macro design — separate
token and channel mixers, a deep downsampling layer, an early-conv stem, a BatchNorm
classifier with a distillation twin.  Each kind trains with its branches and BatchNorms and
deploys fused (``deploy``, see ``specs.reparam``), as timm's ``reparameterize_model`` does:
every conv → BN becomes one conv with bias, the token mixer one depthwise conv.

``repvit`` -- the RepViT block: token mixer (a depthwise k×k conv-BN, a depthwise 1×1 conv with
bias and the identity, summed, then a BN: RepVGG's depthwise form), optional SE, then a
residual channel mixer (1×1 conv-BN to ``e`` × the width, the activation, 1×1 conv-BN back).
Its width does not change.  ``alt`` (``se_alternate``): the stage's repeats alternate with and
without the SE, starting with it, as every RepViT stage does (each resolved repeat's spec says
which it is, as Swin's shifted windows).

``repvitdown`` -- the downsampling layer: a strided depthwise k×k conv-BN, a 1×1 conv-BN to
``out_channels``, and a residual channel mixer on the new width (``e`` times it).  RepViT
puts a ``repvit`` block without SE before each (timm's ``pre_block``): the family files write
it as its own row, so that every mixer width is one block's ``mid``.

``repvitstem`` -- the stem: 3×3 stride-2 conv-BN to half the width (``m`` when another), the
activation, 3×3 stride-2 conv-BN to ``out_channels`` (stride 4 in all).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from nasscale.errors import field_error
from nasscale.specs.blocks import BlockSpec, SESpec, _check_expansion, _check_se, _mid, conv_out
from nasscale.specs.common import ACTIVATIONS, check_bool, check_choice, check_int, check_odd
from nasscale.specs.kind import KindRule


def _check(spec: BlockSpec) -> None:
    check_int("out_channels", spec.out_channels)  # type: ignore[attr-defined]
    check_choice("activation", spec.activation, ACTIVATIONS)  # type: ignore[attr-defined]
    check_bool("deploy", spec.deploy)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class RepViTSpec(BlockSpec):
    """The RepViT block (see the module doc)."""

    kind: ClassVar[str] = "repvit"
    title: ClassVar[str] = "RepViT block"
    skip_rule: ClassVar[str] = "always"  # the channel mixer's residual (and the mixer's identity)
    reparameterizable: ClassVar[bool] = True
    rule: ClassVar[KindRule] = KindRule(
        mid="mid_channels", keeps_input_width=True,
        fixed=("kernel_size", "expand_ratio", "activation", "se", "se_alternate", "deploy"),
        text=("k", "e", "m", "c", "act", "se", "alt", "deploy"))
    out_channels: int
    kernel_size: int = 3
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "gelu"
    se: SESpec | None = None
    se_alternate: bool = False
    deploy: bool = False

    def __post_init__(self) -> None:
        _check(self)
        check_odd("kernel_size", self.kernel_size)
        _check_expansion(self)
        _check_se(self)
        check_bool("se_alternate", self.se_alternate)
        if self.se_alternate and self.se is None:
            raise field_error("se_alternate", "false without an SE (it alternates the SE)",
                              self.se_alternate)

    def for_repeat(self, repeat: int) -> "RepViTSpec":
        """Repeat ``repeat`` of a stage: with ``alt``, the SE on even repeats only."""
        if not self.se_alternate:
            return self
        return dataclasses.replace(self, se=None if repeat % 2 else self.se,
                                   se_alternate=False)

    def widths(self, in_channels: int) -> dict[str, int]:
        return {"mid": _mid(self, in_channels),
                "se": self.se.width(in_channels, in_channels) if self.se else 0}

    def check_input(self, in_channels: int) -> None:
        if in_channels != self.out_channels:
            raise field_error("out_channels", f"equal to the input width {in_channels} (a "
                              "RepViT block keeps its width; put a repvitdown before it)",
                              self.out_channels)


@dataclass(frozen=True)
class RepViTDownSpec(BlockSpec):
    """RepViT's downsampling layer after its pre-block (see the module doc); its stride is
    always 2 (no field)."""

    kind: ClassVar[str] = "repvitdown"
    title: ClassVar[str] = "RepViT downsampling"
    skip_rule: ClassVar[str] = "never"  # its residual is inside, on the new width
    reparameterizable: ClassVar[bool] = True
    rule: ClassVar[KindRule] = KindRule(
        mid="mid_channels", mid_base="out_channels", repeatable=False,
        fixed=("kernel_size", "expand_ratio", "activation", "deploy"),
        text=("k", "e", "m", "c", "act", "deploy"))
    out_channels: int
    kernel_size: int = 3
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "gelu"
    deploy: bool = False

    def __post_init__(self) -> None:
        _check(self)
        check_odd("kernel_size", self.kernel_size)
        _check_expansion(self)

    @property
    def block_stride(self) -> int:
        return 2

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        k = self.kernel_size
        return (conv_out(hw[0], k, 2, k // 2), conv_out(hw[1], k, 2, k // 2))

    def widths(self, in_channels: int) -> dict[str, int]:
        """``mid``: the channel mixer's width, ``e`` times the *output* width (explicit ``m``)."""
        return {"mid": _mid(self, self.out_channels)}


@dataclass(frozen=True)
class RepViTStemSpec(BlockSpec):
    """RepViT's stem (see the module doc): stride 4."""

    kind: ClassVar[str] = "repvitstem"
    title: ClassVar[str] = "RepViT stem"
    skip_rule: ClassVar[str] = "never"
    reparameterizable: ClassVar[bool] = True
    rule: ClassVar[KindRule] = KindRule(
        mid="mid_channels", mid_base="out_channels", repeatable=False,
        fixed=("activation", "deploy"), text=("m", "c", "act", "deploy"))
    out_channels: int
    mid_channels: int | None = None
    activation: str = "gelu"
    deploy: bool = False

    def __post_init__(self) -> None:
        _check(self)
        if self.mid_channels is not None:
            check_int("mid_channels", self.mid_channels)
        elif self.out_channels % 2:
            raise field_error("out_channels", "an even width (the first conv makes half of it; "
                              "or give its width with m<int>)", self.out_channels)

    def widths(self, in_channels: int) -> dict[str, int]:
        """``mid``: the first conv's width, half the output unless given (``m``)."""
        return {"mid": self.mid_channels or self.out_channels // 2}

    @property
    def block_stride(self) -> int:
        return 4

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        half = (conv_out(hw[0], 3, 2, 1), conv_out(hw[1], 3, 2, 1))
        return (conv_out(half[0], 3, 2, 1), conv_out(half[1], 3, 2, 1))
