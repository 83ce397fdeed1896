"""Typed, frozen, torch-free specs: blocks, networks, and the resolve pass."""
from nasscale.specs.attention import (
    MobileMQASpec,
    MobileViTSpec,
    MobileViTv2Spec,
    PatchMergeSpec,
    SwinEmbedSpec,
    SwinSpec,
    ViTEmbedSpec,
    ViTSpec,
)
from nasscale.specs.blocks import (
    MOBILENET_V3_SE,
    BlockSpec,
    BneckSpec,
    ConvNeXtSpec,
    ConvSpec,
    DepthwiseSeparableSpec,
    FusedMBConvSpec,
    LNDownsampleSpec,
    MBConvSpec,
    PatchifySpec,
    SESpec,
    UIBSpec,
)
from nasscale.specs.common import (
    ACTIVATIONS,
    LIMITS,
    MAX_BLOCKS,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_EXPAND_RATIO,
    MAX_KERNEL,
    MAX_PATCH,
    MAX_REPEATS,
    MAX_RESOLUTION,
    make_divisible,
    round_repeats,
)
from nasscale.specs.fastvit import (
    FastViTAttentionSpec,
    RepCPESpec,
    RepLKSpec,
    RepMixerSpec,
)
from nasscale.specs.kind import KindRule
from nasscale.specs.network import (
    WEIGHT_SOURCES,
    Expected,
    HeadSpec,
    NetworkSpec,
    NormPolicy,
    RoundingPolicy,
    StageSpec,
    WeightsLayout,
)
from nasscale.specs.reparam import MobileOneSpec, RepConvSpec
from nasscale.specs.repvit import RepViTDownSpec, RepViTSpec, RepViTStemSpec
from nasscale.specs.resolve import ResolvedBlock, ResolvedHead, ResolvedNetwork, resolve

#: Every block kind, by its code.  Adding a kind (docs/ARCHITECTURE.md, "Adding a block kind"):
#: its spec class with its ``rule`` (specs.kind.KindRule), its entry here, a cost formula
#: (costs.analytic.COSTS) and a module with ``@builds``/``@weight_axes`` (modules.registry);
#: tests/test_modules.py names the registry that lacks a kind.
BLOCK_KINDS: dict[str, type[BlockSpec]] = {
    ConvSpec.kind: ConvSpec,
    DepthwiseSeparableSpec.kind: DepthwiseSeparableSpec,
    MBConvSpec.kind: MBConvSpec,
    FusedMBConvSpec.kind: FusedMBConvSpec,
    BneckSpec.kind: BneckSpec,
    ConvNeXtSpec.kind: ConvNeXtSpec,
    PatchifySpec.kind: PatchifySpec,
    LNDownsampleSpec.kind: LNDownsampleSpec,
    MobileViTSpec.kind: MobileViTSpec,
    MobileViTv2Spec.kind: MobileViTv2Spec,
    ViTEmbedSpec.kind: ViTEmbedSpec,
    ViTSpec.kind: ViTSpec,
    SwinEmbedSpec.kind: SwinEmbedSpec,
    SwinSpec.kind: SwinSpec,
    PatchMergeSpec.kind: PatchMergeSpec,
    UIBSpec.kind: UIBSpec,
    MobileMQASpec.kind: MobileMQASpec,
    RepConvSpec.kind: RepConvSpec,
    MobileOneSpec.kind: MobileOneSpec,
    RepViTSpec.kind: RepViTSpec,
    RepViTDownSpec.kind: RepViTDownSpec,
    RepViTStemSpec.kind: RepViTStemSpec,
    RepMixerSpec.kind: RepMixerSpec,
    FastViTAttentionSpec.kind: FastViTAttentionSpec,
    RepLKSpec.kind: RepLKSpec,
    RepCPESpec.kind: RepCPESpec,
}

__all__ = [
    "ACTIVATIONS", "BLOCK_KINDS", "BlockSpec", "BneckSpec", "ConvNeXtSpec", "ConvSpec",
    "DepthwiseSeparableSpec", "Expected", "FusedMBConvSpec", "HeadSpec", "KindRule",
    "LNDownsampleSpec",
    "MBConvSpec", "MOBILENET_V3_SE", "NetworkSpec", "PatchifySpec", "ResolvedBlock",
    "NormPolicy", "ResolvedHead", "ResolvedNetwork", "RoundingPolicy", "SESpec", "StageSpec",
    "UIBSpec",
    "WEIGHT_SOURCES",
    "WeightsLayout",
    "make_divisible", "resolve", "round_repeats",
    # upper bounds of the specs' numbers
    "LIMITS", "MAX_BLOCKS", "MAX_CHANNELS", "MAX_CLASSES", "MAX_EXPAND_RATIO", "MAX_KERNEL",
    "MAX_PATCH", "MAX_REPEATS", "MAX_RESOLUTION",
    # attention families
    "MobileMQASpec", "MobileViTSpec", "MobileViTv2Spec", "PatchMergeSpec", "SwinEmbedSpec",
    "SwinSpec", "ViTEmbedSpec", "ViTSpec",
    # re-parameterisable families
    "MobileOneSpec", "RepConvSpec", "RepViTDownSpec", "RepViTSpec", "RepViTStemSpec",
    "FastViTAttentionSpec", "RepCPESpec", "RepLKSpec", "RepMixerSpec",
]
