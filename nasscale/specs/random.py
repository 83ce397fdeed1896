"""Random valid specs, for property tests and benchmarks (seeded, deterministic)."""
from __future__ import annotations

import random as _random

from nasscale.specs.attention import (
    MobileViTSpec,
    PatchMergeSpec,
    SwinEmbedSpec,
    SwinSpec,
    ViTEmbedSpec,
    ViTSpec,
)
from nasscale.specs.blocks import (
    MOBILENET_V3_SE,
    BlockSpec,
    ConvNeXtSpec,
    ConvSpec,
    LNDownsampleSpec,
    MBConvSpec,
    PatchifySpec,
    SESpec,
)
from nasscale.specs.network import HeadSpec, NetworkSpec, StageSpec


def _kinds():
    from nasscale.specs import BLOCK_KINDS  # the registry of the package that holds this module

    return [cls for cls in BLOCK_KINDS.values() if cls.drawable()]

CONV_ACTS = ("relu", "relu6", "hswish", "silu")


def random_se(rng: _random.Random) -> SESpec:
    return SESpec(ratio=rng.choice((0.125, 0.25, 0.5)), base=rng.choice(("in", "mid")),
                  gate=rng.choice(("sigmoid", "hsigmoid")), activation=rng.choice(CONV_ACTS),
                  divisor=rng.choice((1, 8)))


def random_block(rng: _random.Random, out_channels: int, stride: int) -> BlockSpec:
    """A random convolutional block of the given shape: any kind whose spec defines
    ``random_layer`` (the convolutional kinds but the ConvNeXt ones)."""
    cls = rng.choice(_kinds())
    k = rng.choice((3, 5, 7))
    act = rng.choice(CONV_ACTS)
    expansion = ({"expand_ratio": rng.choice((1.0, 2.0, 2.5, 3.0, 4.0, 6.0))}
                 if rng.random() < 0.7 else {"mid_channels": 8 * rng.randint(2, 40)})
    se = random_se(rng) if rng.random() < 0.5 else None
    return cls.random_layer(rng, out_channels, stride, k, act, expansion, se)


def random_network(seed: int, resolution: int | None = None) -> NetworkSpec:
    """A random valid network: a conv stem and 3–6 random stages, or a ConvNeXt-like network."""
    rng = _random.Random(seed)
    res = resolution or rng.choice((32, 48, 64, 96))
    if rng.random() < 0.2:  # ConvNeXt-like
        width = 8 * rng.randint(2, 6)
        stages = []
        for i in range(rng.randint(1, 3)):
            if i:
                width *= 2
                stages.append(StageSpec(LNDownsampleSpec(out_channels=width)))
            stages.append(StageSpec(ConvNeXtSpec(out_channels=width, expand_ratio=rng.choice(
                (2.0, 3.0, 4.0)), kernel_size=rng.choice((3, 5, 7)),
                layer_scale=rng.choice((0.0, 1e-6))), repeats=rng.randint(1, 2)))
        return NetworkSpec(name=f"random_{seed}", stem=(PatchifySpec(out_channels=stages[0].block
                                                                     .out_channels),),
                           stages=tuple(stages), head=HeadSpec(norm="ln"), resolution=res,
                           num_classes=rng.choice((10, 100)), drop_path_rate=0.1)
    stem = (ConvSpec(out_channels=8 * rng.randint(1, 4), kernel_size=3, stride=2,
                     activation=rng.choice(CONV_ACTS)),)
    stages = []
    width = stem[0].out_channels
    for _ in range(rng.randint(3, 6)):
        stride = rng.choice((1, 2))
        width = 8 * rng.randint(max(1, width // 8), width // 8 + 6)
        stages.append(StageSpec(random_block(rng, width, stride), repeats=rng.randint(1, 3)))
    head_blocks = ((ConvSpec(out_channels=8 * rng.randint(8, 40), kernel_size=1,
                             activation=rng.choice(CONV_ACTS)),) if rng.random() < 0.7 else ())
    hidden = (8 * rng.randint(8, 64),) if rng.random() < 0.3 else ()
    head = HeadSpec(blocks=head_blocks, hidden=hidden, dropout=rng.choice((0.0, 0.2)))
    return NetworkSpec(name=f"random_{seed}", stem=stem, stages=tuple(stages), head=head,
                       resolution=res, num_classes=rng.choice((10, 1000)),
                       drop_path_rate=rng.choice((0.0, 0.1)))


def _mlp(rng: _random.Random, width: int) -> dict:
    if rng.random() < 0.5:
        return {"expand_ratio": rng.choice((1.0, 2.0, 4.0))}
    return {"mid_channels": width * rng.choice((1, 2, 3))}


def random_attention_network(seed: int, resolution: int | None = None) -> NetworkSpec:
    """A small random MobileViT-, ViT- or Swin-like network (any resolution: patch sizes and
    windows need not divide the feature maps)."""
    rng = _random.Random(seed)
    res = resolution or rng.choice((32, 40, 48, 57, 64))
    family = rng.choice(("mobilevit", "vit", "swin"))
    heads = rng.choice((1, 2, 4))
    if family == "vit":
        width = 8 * heads * rng.randint(1, 3)
        stem = (ViTEmbedSpec(out_channels=width, patch_size=rng.choice((4, 7, 8))),)
        stages = (StageSpec(ViTSpec(out_channels=width, num_heads=heads,
                                    activation=rng.choice(("gelu", "silu")), **_mlp(rng, width)),
                            repeats=rng.randint(1, 3)),)
        head = HeadSpec(pool=rng.choice(("token", "avg")),
                        norm=rng.choice(("ln_before_pool", "ln", "none")))
    elif family == "swin":
        width = 8 * heads
        stem = (SwinEmbedSpec(out_channels=width, patch_size=rng.choice((2, 4))),)
        stages = []
        for i in range(rng.randint(1, 3)):
            if i:
                width *= 2
                heads *= 2
                stages.append(StageSpec(PatchMergeSpec(out_channels=width)))
            stages.append(StageSpec(SwinSpec(out_channels=width, num_heads=heads,
                                             window_size=rng.choice((2, 3, 4, 7)),
                                             shifted=rng.random() < 0.3, **_mlp(rng, width)),
                                    repeats=rng.randint(1, 3)))
        stages = tuple(stages)
        head = HeadSpec(norm=rng.choice(("ln_before_pool", "ln")))
    else:
        stem = (ConvSpec(out_channels=16, stride=2, activation="silu"),)
        stages = []
        for _ in range(rng.randint(1, 2)):
            width = 8 * rng.randint(2, 5)
            d = 8 * heads * rng.randint(1, 2)
            stages.append(StageSpec(MBConvSpec(out_channels=width, stride=2, expand_ratio=2.0,
                                               activation="silu")))
            stages.append(StageSpec(MobileViTSpec(
                out_channels=width, transformer_dim=d, transformer_depth=rng.randint(1, 2),
                num_heads=heads, patch_size=rng.choice((1, 2, 3)),
                kernel_size=rng.choice((1, 3)), **_mlp(rng, d))))
        stages = tuple(stages)
        head = HeadSpec(blocks=(ConvSpec(out_channels=64, kernel_size=1, activation="silu"),))
    return NetworkSpec(name=f"random_attention_{seed}", stem=stem, stages=stages, head=head,
                       resolution=res, num_classes=rng.choice((10, 100)),
                       drop_path_rate=rng.choice((0.0, 0.1)))


__all__ = ["MOBILENET_V3_SE", "RandomSuggester", "random_attention_network", "random_block",
           "random_network", "random_se"]


class RandomSuggester:
    """Answers ``suggest_*`` uniformly from a ``random.Random``: samples a search space without
    Optuna (``SearchSpace.sample``)."""

    def __init__(self, rng):
        self.rng = rng

    def suggest_categorical(self, name: str, choices):
        return self.rng.choice(list(choices))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.rng.randrange(low, high + 1, step)
