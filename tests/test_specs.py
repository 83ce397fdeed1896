"""Spec validation and the resolve pass."""
import pytest

from nasscale.errors import SpecError
from nasscale.specs import (
    BneckSpec,
    ConvNeXtSpec,
    ConvSpec,
    FusedMBConvSpec,
    HeadSpec,
    MBConvSpec,
    NetworkSpec,
    SESpec,
    StageSpec,
    make_divisible,
    resolve,
    round_repeats,
)


@pytest.mark.parametrize("kwargs, field, allowed", [
    (dict(out_channels=0, expand_ratio=6), "out_channels", "integer >= 1"),
    (dict(out_channels=-8, expand_ratio=6), "out_channels", "integer >= 1"),
    (dict(out_channels=16, kernel_size=4, expand_ratio=6), "kernel_size", "odd integer"),
    (dict(out_channels=16, stride=3, expand_ratio=6), "stride", "one of 1, 2"),
    (dict(out_channels=16, expand_ratio=0), "expand_ratio", "number > 0"),
    (dict(out_channels=16), "expand_ratio", "exactly one of"),
    (dict(out_channels=16, expand_ratio=6, mid_channels=96), "expand_ratio", "exactly one of"),
    (dict(out_channels=16, expand_ratio=6, activation="swish"), "activation", "'silu'"),
    (dict(out_channels=16.0, expand_ratio=6), "out_channels", "integer >= 1"),
])
def test_mbconv_validation_names_field_and_allowed(kwargs, field, allowed):
    with pytest.raises(SpecError) as err:
        MBConvSpec(**kwargs)
    assert err.value.where[0] == field
    assert allowed in str(err.value)


@pytest.mark.parametrize("kwargs, field", [
    (dict(ratio=0), "se.ratio"), (dict(ratio=1.5), "se.ratio"), (dict(base="out"), "se.base"),
    (dict(gate="relu"), "se.gate"), (dict(divisor=0), "se.divisor"),
])
def test_se_validation(kwargs, field):
    with pytest.raises(SpecError) as err:
        SESpec(**kwargs)
    assert err.value.where[0] == field


def test_bneck_activation_is_relu_or_hswish():
    with pytest.raises(SpecError, match="activation: must be one of 'relu', 'hswish'"):
        BneckSpec(out_channels=16, mid_channels=16, activation="silu")


def test_specs_are_frozen_and_transformations_return_new_specs():
    spec = MBConvSpec(out_channels=16, expand_ratio=6)
    with pytest.raises(AttributeError):
        spec.out_channels = 8
    other = spec.replace(out_channels=24)
    assert (spec.out_channels, other.out_channels) == (16, 24)


@pytest.mark.parametrize("value, divisor, expected", [
    (32 * 1.1, 8, 32), (16 * 1.1, 8, 16), (24 * 1.4, 8, 32), (11.2, 8, 16), (18, 8, 24),
    (90, 8, 88), (4, 8, 8), (5.5, 1, 6), (0, 1, 1), (1280 * 1.1, 8, 1408),
])
def test_make_divisible_is_tensorflows_rule(value, divisor, expected):
    assert make_divisible(value, divisor) == expected
    assert make_divisible(value, divisor) >= 0.9 * value


def test_round_repeats():
    assert [round_repeats(x) for x in (1.0, 1.1, 2.0000000001, 3.1)] == [1, 2, 2, 4]
    assert round_repeats(2.5, "round") == 3 and round_repeats(2.9, "floor") == 2
    with pytest.raises(SpecError, match="depth"):
        round_repeats(2.0, "up")


def _net(*stages, stem=(ConvSpec(out_channels=16, stride=2),), **kw):
    return NetworkSpec(name="t", stem=stem, stages=tuple(StageSpec(b, r) for b, r in stages), **kw)


def test_resolve_shapes_strides_and_widths():
    net = _net((MBConvSpec(out_channels=24, stride=2, expand_ratio=6,
                           se=SESpec(base="in", divisor=1)), 3),
               (BneckSpec(out_channels=40, mid_channels=72, kernel_size=5, stride=2, se=True), 1),
               resolution=225, drop_path_rate=0.3)
    rn = resolve(net)
    shapes = [(b.section, b.in_channels, b.out_channels, b.in_hw, b.out_hw, b.stride)
              for b in rn.blocks]
    assert shapes == [
        ("stem", 3, 16, (225, 225), (113, 113), 2),  # 'same' padding: ceil(225 / 2)
        ("stage", 16, 24, (113, 113), (57, 57), 2),
        ("stage", 24, 24, (57, 57), (57, 57), 1),  # later repeats: stride 1, in = out
        ("stage", 24, 24, (57, 57), (57, 57), 1),
        ("stage", 24, 40, (57, 57), (29, 29), 2),
    ]
    assert dict(rn.blocks[1].widths) == {"mid": 96, "se": 4}  # SE of the block input: 16 / 4
    assert dict(rn.blocks[2].widths) == {"mid": 144, "se": 6}
    assert dict(rn.blocks[4].widths) == {"mid": 72, "se": 24}  # MobileNetV3: make_div(72/4, 8)
    assert [b.drop_path for b in rn.section("stage")] == pytest.approx([0, 0.1, 0.2, 0.3])
    assert rn.head.in_channels == 40 and rn.head.hw == (29, 29)


def test_resolve_rejects_width_change_in_convnext_and_too_small_inputs():
    with pytest.raises(SpecError, match=r"stages\[0\].*equal to the input width 16"):
        resolve(_net((ConvNeXtSpec(out_channels=32, expand_ratio=4), 1)))
    with pytest.raises(SpecError, match="shrinks to 0x0"):
        from nasscale.specs import LNDownsampleSpec
        resolve(_net((LNDownsampleSpec(out_channels=32), 1)), resolution=2)
    with pytest.raises(SpecError, match="resolution"):
        resolve(_net((MBConvSpec(out_channels=16, expand_ratio=1), 1)), resolution=0)


def test_fused_without_expansion_cannot_have_se():
    net = _net((FusedMBConvSpec(out_channels=16, expand_ratio=1, se=SESpec()), 1))
    with pytest.raises(SpecError, match=r"stages\[0\]: fused block: se: must be none"):
        resolve(net)


def test_network_validation():
    with pytest.raises(SpecError, match="stages: must list at least one stage"):
        NetworkSpec(name="x", stem=(), stages=())
    with pytest.raises(SpecError, match="dropout"):
        HeadSpec(dropout=1.0)
    with pytest.raises(SpecError, match="norm: must be one of 'none', 'ln', 'ln_before_pool', "
                                        "'bn'"):
        HeadSpec(norm="gn")


def test_every_block_kind_states_its_skip_rule():
    import dataclasses

    from nasscale.specs import BLOCK_KINDS
    from nasscale.specs.blocks import SKIP_RULES

    for kind, cls in BLOCK_KINDS.items():
        assert cls.__dict__.get("skip_rule") in SKIP_RULES, \
            f"block kind {kind!r} ({cls.__name__}) states no skip_rule in {SKIP_RULES}"
        if cls.skip_rule == "field":
            assert "skip" in {f.name for f in dataclasses.fields(cls)}, kind


def test_modules_add_the_skip_connections_the_resolved_blocks_declare():
    import nasscale
    from nasscale.modules.network import build_network

    seen = 0
    for name in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
                 "efficientnet_v2_s"):
        spec = nasscale.load(name).replace(resolution=64)
        rn = nasscale.resolve(spec)
        model = build_network(spec)
        flags = [m.residual for m in model.modules() if hasattr(m, "residual")]
        declared = [rb.residual for rb in rn.blocks if rb.kind in ("ds", "mbconv", "fused",
                                                                    "bneck")]
        assert flags == declared, name
        seen += sum(declared)
    assert seen > 50  # V2, V3, EfficientNet and V2-S have plenty
