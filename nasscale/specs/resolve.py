"""Resolve a network spec at an input size: the one walk over the network.

``resolve(spec, resolution)`` fixes, for every block, its input and output channels, its
feature-map sizes, its per-repeat stride, its derived widths and its stochastic-depth rate.  The
analytic cost model, the module builder, the latency table and the pruner all read these
resolved blocks; nothing else walks a network.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from nasscale.errors import SpecError
from nasscale.specs.blocks import LAYOUTS, BlockSpec
from nasscale.specs.common import check_int, check_width
from nasscale.specs.network import NetworkSpec, NormPolicy

SECTIONS = ("stem", "stage", "head")


@dataclass(frozen=True)
class ResolvedBlock:
    """One block at one place in a network, with every shape fixed."""

    index: int  # position among all blocks, stem first
    section: str  # "stem" | "stage" | "head"
    stage: int  # stage number (0-based) for section "stage"; -1 otherwise
    repeat: int  # repeat number inside the stage (0 = the one with the stage's stride)
    spec: BlockSpec  # this repeat's spec (stride already 1 for repeats after the first)
    in_channels: int
    out_channels: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    widths: Mapping[str, int]  # derived inner widths: "mid", "se", ...
    drop_path: float = 0.0
    #: the input size at the network's own (trained) resolution; what size-dependent parameters
    #: (ViT's position embedding) are sized for.  ``None``: the same as ``in_hw``.
    trained_hw: tuple[int, int] | None = None
    #: the normalisation constants of this block (its stage's over the network's)
    norm: NormPolicy = NormPolicy()

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def stride(self) -> int:
        return self.spec.block_stride

    @property
    def residual(self) -> bool:
        """Whether the block adds its input to its output (its kind's ``skip_rule``, at
        stride 1 with equal widths): the one rule modules, costs and pruning read."""
        rule = self.spec.skip_rule
        if rule == "widths":  # the part that adds runs at stride 1 whatever the block's stride
            return self.in_channels == self.out_channels
        skip = getattr(self.spec, "skip", False) if rule == "field" else rule == "always"
        return bool(skip) and self.stride == 1 and self.in_channels == self.out_channels

    @property
    def has_expand(self) -> bool:
        """Whether the block has an expand layer: its kind ``expands`` (``KindRule``) and its
        expanded width differs from its input (MBConv, Fused-MBConv, bneck with e ≠ 1)."""
        rule = self.spec.rule
        return bool(rule and rule.expands) and self.widths["mid"] != self.in_channels

    @property
    def in_layout(self) -> str:
        return self.spec.in_layout

    @property
    def out_layout(self) -> str:
        return self.spec.out_layout

    @property
    def where(self) -> str:
        """The YAML path of the spec this block comes from (``stages[3]``, ``stem[0]``, ...)."""
        return {"stage": f"stages[{self.stage}]", "stem": f"stem[{self.repeat}]",
                "head": f"head.blocks[{self.repeat}]"}[self.section]


@dataclass(frozen=True)
class ResolvedHead:
    """The head after the head blocks: pooled features → norm → hidden linears → classifier."""

    in_channels: int  # features after the head blocks
    hw: tuple[int, int]  # feature-map size that is pooled (for tokens: the patch grid)
    norm: str
    hidden: tuple[int, ...]
    hidden_activation: str
    dropout: float
    num_classes: int
    hidden_norm: str = "none"  # "bn": bias-free hidden linears, each followed by BatchNorm
    distill: bool = False  # a second classifier, averaged with the first (HeadSpec)
    deploy: bool = False  # the fused form of a bn/distill head: one linear
    pool: str = "avg"
    layout: str = "nchw"  # layout of the features the head receives (LAYOUTS)
    norm_policy: NormPolicy = NormPolicy()  # the network's (the head's LayerNorm eps)


@dataclass(frozen=True)
class ResolvedNetwork:
    spec: NetworkSpec
    resolution: int
    blocks: tuple[ResolvedBlock, ...]
    head: ResolvedHead

    def section(self, name: str) -> tuple[ResolvedBlock, ...]:
        return tuple(b for b in self.blocks if b.section == name)

    def stage(self, index: int) -> tuple[ResolvedBlock, ...]:
        return tuple(b for b in self.blocks if b.section == "stage" and b.stage == index)


_LAYOUT_TEXT = {"nchw": "a feature map (N, C, H, W)",
                "nhwc": "a channels-last grid (N, H, W, C)",
                "tokens": "tokens (N, 1 + H*W, C)"}
_LAYOUT_FIX = {"nchw": "no block turns it back into a feature map",
               "nhwc": "put a swinembed block before it",
               "tokens": "put a vitembed block before it"}
assert set(_LAYOUT_TEXT) == set(LAYOUTS) == set(_LAYOUT_FIX)


def _resolve_block(index, section, stage, repeat, spec, in_channels, hw, drop_path, layout,
                   trained_hw, norm=NormPolicy()):
    where = {"stage": f"stages[{stage}]", "stem": f"stem[{repeat}]",
             "head": f"head.blocks[{repeat}]"}[section]
    if spec.in_layout != layout:
        raise SpecError(f"{spec.kind} block: takes {_LAYOUT_TEXT[spec.in_layout]} but gets "
                        f"{_LAYOUT_TEXT[layout]}; {_LAYOUT_FIX[spec.in_layout]}", (where,))
    try:
        spec.check_input(in_channels)
        out_hw = spec.out_hw(hw)
        widths = spec.widths(in_channels)
        for name, width in widths.items():
            check_width(name, width)
    except SpecError as err:
        raise SpecError(f"{spec.kind} block: {err}", (where,)) from None
    if out_hw[0] < 1 or out_hw[1] < 1:
        raise SpecError(f"the feature map shrinks to {out_hw[0]}x{out_hw[1]} at this block "
                        f"(input {hw[0]}x{hw[1]}); use a larger resolution", (where,))
    return ResolvedBlock(index=index, section=section, stage=stage, repeat=repeat, spec=spec,
                         in_channels=in_channels, out_channels=spec.out_channels,
                         in_hw=hw, out_hw=out_hw, widths=MappingProxyType(widths),
                         drop_path=drop_path, trained_hw=trained_hw, norm=norm)


def resolve_block(spec: BlockSpec, in_channels: int, hw: tuple[int, int], section: str = "stage",
                  stage: int = 0, repeat: int = 0, index: int = 0) -> ResolvedBlock:
    """One block resolved on its own, for a given input (what a latency table enumerates)."""
    if section != "stage":
        stage = -1
    return _resolve_block(index, section, stage, repeat, spec, in_channels, tuple(hw), 0.0,
                          spec.in_layout, tuple(hw))


def resolve(spec: NetworkSpec, resolution: int | None = None) -> ResolvedNetwork:
    """Fix every block's shapes for a square input of ``resolution`` (default: the spec's)."""
    res = spec.resolution if resolution is None else resolution
    check_int("resolution", res)
    channels, hw, layout = spec.in_channels, (res, res), "nchw"
    blocks: list[ResolvedBlock] = []
    total = spec.depth
    rate = spec.drop_path_rate
    trained = _trained_sizes(spec, res)

    def add(section, stage, repeat, block_spec, drop_path=0.0, norm=spec.norm):
        nonlocal channels, hw, layout
        index = len(blocks)
        rb = _resolve_block(index, section, stage, repeat, block_spec, channels, hw,
                            drop_path, layout, trained[index] if trained else hw, norm)
        blocks.append(rb)
        channels, hw, layout = rb.out_channels, rb.out_hw, rb.out_layout

    for i, block in enumerate(spec.stem):
        add("stem", -1, i, block)
    k = 0  # stochastic depth grows linearly from 0 to drop_path_rate over the stage blocks
    for s, stage in enumerate(spec.stages):
        for r in range(stage.repeats):
            add("stage", s, r, stage.block.for_repeat(r), rate * k / max(total - 1, 1),
                stage.norm.over(spec.norm) if stage.norm is not None else spec.norm)
            k += 1
    for i, block in enumerate(spec.head.blocks):
        add("head", -1, i, block)
    if spec.head.pool == "token" and layout != "tokens":
        raise SpecError(f"must be 'avg': 'token' pools a class token, but the last block gives "
                        f"{_LAYOUT_TEXT[layout]} (a vitembed block makes tokens)",
                        ("head.pool",))
    head = ResolvedHead(in_channels=channels, hw=hw, norm=spec.head.norm,
                        hidden=spec.head.hidden, hidden_activation=spec.head.hidden_activation,
                        dropout=spec.head.dropout, num_classes=spec.num_classes,
                        pool=spec.head.pool, layout=layout, norm_policy=spec.norm,
                        hidden_norm=spec.head.hidden_norm, distill=spec.head.distill,
                        deploy=spec.head.deploy)
    return ResolvedNetwork(spec=spec, resolution=res, blocks=tuple(blocks), head=head)


def _trained_sizes(spec: NetworkSpec, res: int) -> list[tuple[int, int]] | None:
    """Each block's input size at the network's own resolution, when a block's parameters
    depend on it (ViT's position embedding) and ``res`` differs; else ``None``."""
    if res == spec.resolution:
        return None
    blocks = [*spec.stem, *(s.block for s in spec.stages), *spec.head.blocks]
    if not any(b.params_depend_on_size for b in blocks):
        return None
    try:
        return [b.in_hw for b in resolve(spec).blocks]
    except SpecError as err:
        raise SpecError(f"the network must resolve at its own resolution {spec.resolution}, "
                        f"which sizes its position embedding: {err}", ("resolution",)) from None
