"""The families added as data: MnasNet, EfficientNet-Lite, EfficientNet-EdgeTPU,
ConvNeXt-V2, MobileNetV4, MobileViTv2, PP-LCNet.

Golden integers: params of the reference module (torchvision 0.29 / timm 1.0.31) and FLOPs as
nasscale's fvcore count of that module (multiply-accumulates of conv and linear layers, batch
1, at the resolution given), recorded from the reference venv (docs/WEIGHTS.md).  The analytic
count must equal both; tests/test_costs.py and tests/test_variants.py check that the built
nasscale module agrees with the analytic count, tests/test_weights.py that every reference
tensor is mapped.
"""
import json

import pytest
import torch

import nasscale
from nasscale.cli import main
from nasscale.errors import SpecError
from nasscale.grammar.yaml_io import network_from_data, network_to_data
from nasscale.scaling import scale
from nasscale.specs import StageSpec

# name: (reference, resolution, params, FLOPs)
REFERENCE = {
    "mnasnet0_5": ("torchvision mnasnet0_5", 224, 2_218_512, 104_455_968),
    "mnasnet0_75": ("torchvision mnasnet0_75", 224, 3_170_208, 215_493_104),
    "mnasnet1_0": ("torchvision mnasnet1_0", 224, 4_383_312, 314_415_872),
    "mnasnet1_3": ("torchvision mnasnet1_3", 224, 6_282_256, 526_362_432),
    "mnasnet_a1": ("timm semnasnet_100", 224, 3_887_038, 311_579_072),
    "mnasnet_small": ("timm mnasnet_small", 224, 2_030_264, 68_339_184),
    "efficientnet_lite0": ("timm efficientnet_lite0", 224, 4_652_008, 385_187_552),
    "efficientnet_lite1": ("timm efficientnet_lite1", 240, 5_416_680, 600_185_232),
    "efficientnet_lite2": ("timm efficientnet_lite2", 260, 6_092_072, 859_736_272),
    "efficientnet_lite3": ("timm efficientnet_lite3", 280, 8_197_096, 1_383_321_872),
    "efficientnet_lite4": ("timm efficientnet_lite4", 300, 13_006_568, 2_553_034_336),
    "efficientnet_edgetpu_s": ("timm efficientnet_es", 224, 5_438_392, 1_788_731_008),
    "efficientnet_edgetpu_m": ("timm efficientnet_em", 240, 6_899_496, 3_013_321_088),
    "efficientnet_edgetpu_l": ("timm efficientnet_el", 300, 10_589_712, 7_936_082_848),
    "convnext_v2_atto": ("timm convnextv2_atto", 224, 3_708_400, 547_332_480),
    "convnext_v2_femto": ("timm convnextv2_femto", 224, 5_233_240, 779_629_824),
    "convnext_v2_pico": ("timm convnextv2_pico", 224, 9_066_280, 1_367_055_360),
    "convnext_v2_nano": ("timm convnextv2_nano", 224, 15_623_800, 2_445_528_320),
    "convnext_v2_tiny": ("timm convnextv2_tiny", 224, 28_635_496, 4_455_531_264),
    "convnext_v2_base": ("timm convnextv2_base", 224, 88_717_800, 15_354_729_472),
    "convnext_v2_large": ("timm convnextv2_large", 224, 197_956_840, 34_361_433_600),
    "convnext_v2_huge": ("timm convnextv2_huge", 224, 660_289_640, 114_922_100_480),
    "lcnet_050": ("timm lcnet_050", 224, 1_880_856, 44_731_008),
    "lcnet_075": ("timm lcnet_075", 224, 2_358_288, 94_786_496),
    "lcnet_100": ("timm lcnet_100", 224, 2_953_800, 155_700_480),
    "lcnet_150": ("timm lcnet_150", 224, 4_501_112, 334_188_416),
    # timm's default_cfg input sizes: conv-S 224, conv-M 256, conv-L 384
    "mobilenet_v4_conv_small": ("timm mobilenetv4_conv_small", 224, 3_774_024, 186_005_568),
    "mobilenet_v4_conv_medium": ("timm mobilenetv4_conv_medium", 256, 9_715_512,
                                 1_080_244_224),
    "mobilenet_v4_conv_large": ("timm mobilenetv4_conv_large", 384, 32_590_864,
                                6_376_220_672),
    # FLOPs with the attention matmuls (Q·Kᵀ and A·V, fvcore's sdpa handle)
    "mobilenet_v4_hybrid_medium": ("timm mobilenetv4_hybrid_medium", 256, 11_074_648,
                                   1_271_183_360),
    "mobilenet_v4_hybrid_large": ("timm mobilenetv4_hybrid_large", 384, 37_764_624,
                                  7_711_877_120),
    "mobilevit_v2_050": ("timm mobilevitv2_050", 256, 1_370_593, 464_594_944),
    "mobilevit_v2_075": ("timm mobilevitv2_075", 256, 2_866_009, 1_027_980_288),
    "mobilevit_v2_100": ("timm mobilevitv2_100", 256, 4_901_841, 1_812_090_880),
    "mobilevit_v2_125": ("timm mobilevitv2_125", 256, 7_478_089, 2_816_926_720),
    "mobilevit_v2_150": ("timm mobilevitv2_150", 256, 10_594_753, 4_042_487_808),
    "mobilevit_v2_175": ("timm mobilevitv2_175", 256, 14_251_833, 5_488_774_144),
    "mobilevit_v2_200": ("timm mobilevitv2_200", 256, 18_449_329, 7_155_785_728),
}
# the TF builders' tables: (width, depth, resolution, dropout)
LITE = {"efficientnet_lite1": (1.0, 1.1, 240, 0.2), "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
        "efficientnet_lite3": (1.2, 1.4, 280, 0.3), "efficientnet_lite4": (1.4, 1.8, 300, 0.3)}
MNASNET = {"mnasnet0_5": 0.5, "mnasnet0_75": 0.75, "mnasnet1_3": 1.3}
EDGETPU = {"efficientnet_edgetpu_m": (1.0, 1.1, 240, 0.2),
           "efficientnet_edgetpu_l": (1.2, 1.4, 300, 0.3)}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_exact_reference_params_and_flops(name):
    _, resolution, params, flops = REFERENCE[name]
    spec = nasscale.load(name)
    cost = nasscale.count(spec)
    assert (spec.resolution, cost.params, cost.flops) == (resolution, params, flops)
    assert (spec.expected.params, spec.expected.flops) == (params, flops)
    assert spec.paper and spec.reference


@pytest.mark.parametrize("name", sorted(LITE))
def test_lite_variants_are_lite0_scaled_with_fixed_stem_head_and_end_stages(name):
    width, depth, resolution, dropout = LITE[name]
    base = nasscale.load("efficientnet_lite0")
    spec = nasscale.load(name)
    again = scale(base, width, depth, resolution, dropout=dropout)
    assert (spec.stem, spec.stages, spec.head) == (again.stem, again.stages, again.head)
    assert spec.stem == base.stem and spec.head.blocks == base.head.blocks  # 32 and 1280
    assert spec.stages[0].repeats == spec.stages[-1].repeats == 1
    # the middle stages do scale (lite4: 2, 2, 3, 3, 4 -> 4, 4, 6, 6, 8)
    if name == "efficientnet_lite4":
        assert [st.repeats for st in spec.stages] == [1, 4, 4, 6, 6, 8, 1]


def test_without_the_lite_rule_the_end_stages_would_scale():
    base = nasscale.load("efficientnet_lite0")
    plain = base.replace(rounding=base.rounding.__class__(
        **{**base.rounding.__dict__, "fixed_depth": "none"}))
    assert [st.repeats for st in scale(plain, 1.4, 1.8, 300).stages] == [2, 4, 4, 6, 6, 8, 2]


def test_an_unknown_fixed_depth_rule_names_the_field_and_the_choices():
    from nasscale.specs.network import RoundingPolicy

    with pytest.raises(SpecError, match="rounding.fixed_depth.*first_last"):
        RoundingPolicy(fixed_depth="ends")


@pytest.mark.parametrize("name", sorted(MNASNET))
def test_mnasnet_multipliers_scale_widths_but_not_the_head(name):
    spec = nasscale.load(name)
    again = scale(nasscale.load("mnasnet1_0"), MNASNET[name])
    assert (spec.stem, spec.stages, spec.head) == (again.stem, again.stages, again.head)
    assert spec.head.blocks[0].out_channels == 1280
    assert [st.repeats for st in spec.stages] == [1, 3, 3, 3, 2, 4, 1]


@pytest.mark.parametrize("name", sorted(EDGETPU))
def test_edgetpu_variants_scale_the_nominal_input_of_the_first_block(name):
    width, depth, resolution, dropout = EDGETPU[name]
    spec = nasscale.load(name)
    again = scale(nasscale.load("efficientnet_edgetpu_s"), width, depth, resolution,
                  dropout=dropout)
    assert (spec.stem, spec.stages, spec.head) == (again.stem, again.stages, again.head)
    first = nasscale.resolve(spec).blocks[1]  # stem, then the fused block that expands 4x fc
    assert first.kind == "fused" and not first.residual
    nominal = {"efficientnet_edgetpu_m": 24, "efficientnet_edgetpu_l": 32}[name]
    assert first.widths["mid"] == 4 * nominal  # timm's 4 * round_chs(24 * w), not 4 * the stem


def test_fc_round_trips_and_needs_an_expansion_ratio():
    block = nasscale.parse_block("fused_k3_s1_e4_c24_fc24_relu_noskip")
    assert block.expand_in == 24 and nasscale.format_block(block) == \
        "fused_k3_s1_e4_c24_fc24_relu_noskip"
    with pytest.raises(SpecError, match="expand_in"):
        nasscale.parse_block("fused_k3_s1_m96_c24_fc24_relu")


CONVNEXT_V2 = {"convnext_v2_femto": ("convnext_v2_atto", 1.2),
               "convnext_v2_pico": ("convnext_v2_atto", 1.6),
               "convnext_v2_large": ("convnext_v2_base", 1.5),
               "convnext_v2_huge": ("convnext_v2_base", 2.75)}


@pytest.mark.parametrize("name", sorted(CONVNEXT_V2))
def test_convnext_v2_sizes_are_their_base_scaled_in_width(name):
    base, width = CONVNEXT_V2[name]
    spec, again = nasscale.load(name), scale(nasscale.load(base), width)
    assert (spec.stem, spec.stages, spec.head) == (again.stem, again.stages, again.head)


LCNET = {"lcnet_050": 0.5, "lcnet_075": 0.75, "lcnet_150": 1.5}


@pytest.mark.parametrize("name", sorted(LCNET))
def test_lcnet_scales_are_lcnet_100_in_width_with_a_fixed_1280_head(name):
    spec = nasscale.load(name)
    again = scale(nasscale.load("lcnet_100"), LCNET[name])
    assert (spec.stem, spec.stages, spec.head) == (again.stem, again.stages, again.head)
    assert spec.head.hidden == (1280,)  # timm num_features=1280 at every scale
    assert spec.stem[0].out_channels == {"lcnet_050": 8, "lcnet_075": 16, "lcnet_150": 24}[name]
    rn = nasscale.resolve(spec)
    # SE only in the last two blocks, on the block's input, ReLU and hard-sigmoid; no skip
    se = [rb for rb in rn.section("stage") if rb.spec.se is not None]
    assert len(se) == 2 and all(rb.spec.se.gate == "hsigmoid" for rb in se)
    assert not any(rb.residual for rb in rn.section("stage"))


def test_lcnet_timm_stages_split_the_256_wide_run_after_its_first_5x5_block():
    from nasscale.weights import reference_keys

    keys = [ref for ref, _ in reference_keys("lcnet_100", "timm").values()]
    stages = sorted({k.split(".")[1] for k in keys if k.startswith("blocks.")}, key=int)
    assert stages == ["0", "1", "2", "3", "4", "5"]
    assert {k.split(".")[2] for k in keys if k.startswith("blocks.3.")} == {"0", "1"}
    assert {k.split(".")[2] for k in keys if k.startswith("blocks.4.")} == {"0", "1", "2", "3"}


def test_grn_is_the_papers_formula_and_starts_as_the_identity():
    from nasscale.modules.blocks import GlobalResponseNorm

    grn = GlobalResponseNorm(6)
    x = torch.randn(2, 5, 4, 6)  # (N, H, W, C)
    assert torch.equal(grn(x), x)
    with torch.no_grad():
        grn.weight.copy_(torch.randn(6))
        grn.bias.copy_(torch.randn(6))
    g = x.pow(2).sum(dim=(1, 2), keepdim=True).sqrt()  # Eq. 1: per-channel L2 over the map
    n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)  # Eq. 2: divided by the channels' mean
    torch.testing.assert_close(grn(x), grn.weight * (x * n) + grn.bias + x)  # Eq. 3


def test_a_grn_block_counts_gamma_and_beta_and_round_trips():
    block = nasscale.parse_block("convnext_k7_e4_c40_gelu_ls0_grn")
    assert block.grn and block.layer_scale == 0
    assert nasscale.format_block(block) == "convnext_k7_e4_c40_gelu_ls0_grn"
    plain = nasscale.load("convnext_v2_atto")
    no_grn = plain.replace(stages=tuple(
        st.replace(block=st.block.replace(grn=False)) if st.block.kind == "convnext" else st
        for st in plain.stages))
    mids = sum(4 * st.block.out_channels * st.repeats for st in plain.stages
               if st.block.kind == "convnext")
    assert nasscale.count(plain).params - nasscale.count(no_grn).params == 2 * mids
    assert nasscale.count(plain).flops == nasscale.count(no_grn).flops  # element-wise


UIB_VARIANTS = {"uib_a3_k5_s2_e4_c80_relu": "ExtraDW", "uib_a0_k3_s1_e2_c96_relu": "IB",
                "uib_a3_k0_s1_e4_c96_relu": "ConvNeXt", "uib_a0_k0_s1_e2_c160_relu": "FFN"}


@pytest.mark.parametrize("text", sorted(UIB_VARIANTS))
def test_uib_variants_round_trip_and_count_as_built(text):
    block = nasscale.parse_block(text)
    assert block.variant == UIB_VARIANTS[text]
    assert nasscale.format_block(block) == text
    spec = nasscale.NetworkSpec(name="t", stem=(nasscale.parse_block("conv_k3_s1_c24_relu"),),
                                stages=(nasscale.parse_stage(text),), resolution=16)
    model = nasscale.build(spec)
    assert nasscale.count(spec).params == sum(p.numel() for p in model.parameters())


def test_uib_stride_goes_on_the_mid_dw_else_the_start_dw_which_has_no_activation():
    from nasscale.modules.blocks import UniversalInvertedBottleneck

    def built(text):
        spec = nasscale.NetworkSpec(name="t", stem=(nasscale.parse_block("conv_k3_s1_c16_relu"),),
                                    stages=(nasscale.parse_stage(text),), resolution=16)
        return nasscale.build(spec).stages[0][0]

    extra = built("uib_a3_k5_s2_e4_c24_relu")
    assert isinstance(extra, UniversalInvertedBottleneck)
    assert extra.dw_start[0].stride == (1, 1) and extra.dw_mid[0].stride == (2, 2)
    assert len(extra.dw_start) == 2 and len(extra.dw_mid) == 3  # conv, BN (, act)
    assert extra.expand[0].out_channels == 64  # make_divisible(16 * 4, 8)
    convnext = built("uib_a5_k0_s2_e2_c24_relu")
    assert convnext.dw_start[0].stride == (2, 2)
    with pytest.raises(SpecError, match="stride"):
        nasscale.parse_block("uib_a0_k0_s2_e2_c24_relu")


def test_uib_layer_scale_and_residual():
    block = nasscale.parse_block("uib_a3_k3_s1_e4_c16_relu_ls1e-05")
    assert block.layer_scale == 1e-05
    plain = block.replace(layer_scale=None)
    net = lambda b: nasscale.NetworkSpec(  # noqa: E731
        name="t", stem=(nasscale.parse_block("conv_k3_s1_c16_relu"),),
        stages=(StageSpec(block=b),), resolution=16)
    assert nasscale.count(net(block)).params - nasscale.count(net(plain)).params == 16
    assert nasscale.resolve(net(block)).blocks[1].residual
    assert not nasscale.resolve(net(block.replace(skip=False))).blocks[1].residual


def test_mobilenet_v4_head_is_conv_bn_act_after_pooling():
    spec = nasscale.load("mobilenet_v4_conv_small")
    assert spec.head.hidden == (1280,) and spec.head.hidden_norm == "bn"
    model = nasscale.build(spec)
    assert model.head.hidden[0].bias is None
    assert isinstance(model.head.hidden_norm[0], torch.nn.BatchNorm1d)
    data = network_to_data(spec)
    assert data["head"]["hidden_norm"] == "bn"
    assert network_from_data(data).head == spec.head


def test_mobile_mqa_counts_its_attention_matmuls_and_round_trips():
    text = "mqa_k3_h4_v2_d64_c160_ls1e-05"
    block = nasscale.parse_block(text)
    assert (block.num_heads, block.key_dim, block.kv_stride, block.layer_scale) == (4, 64, 2,
                                                                                   1e-05)
    assert nasscale.format_block(block) == text
    spec = nasscale.NetworkSpec(name="t", stem=(nasscale.parse_block("conv_k3_s2_c160_relu"),),
                                stages=(nasscale.parse_stage(text),), resolution=32)
    rb = nasscale.resolve(spec).blocks[1]
    cost = nasscale.count(spec).blocks[1]
    # 16x16 queries, 8x8 keys/values (the stride-2 depthwise conv), 4 heads of 64
    assert cost.attention == 4 * 256 * 64 * (64 + 64)
    assert rb.residual and rb.out_hw == (16, 16)
    model = nasscale.build(spec)
    assert nasscale.count(spec).params == sum(p.numel() for p in model.parameters())
    no_kv_stride = nasscale.parse_block("mqa_k3_h4_v1_d64_c160")
    assert nasscale.format_block(no_kv_stride) == "mqa_k3_h4_v1_d64_c160"


def test_torchvision_has_no_mobilenet_v4():
    from nasscale.errors import NasscaleError
    from nasscale.weights import reference_keys

    with pytest.raises(NasscaleError, match="torchvision has no counterpart of "
                                            "mobilenet_v4_conv_small .*timm only"):
        reference_keys("mobilenet_v4_conv_small", "torchvision")


def test_torchvision_has_no_convnext_v2():
    from nasscale.errors import NasscaleError
    from nasscale.weights import reference_keys

    with pytest.raises(NasscaleError,
                       match="torchvision has no counterpart of convnext_v2_atto .*timm only"):
        reference_keys("convnext_v2_atto", "torchvision")


@pytest.mark.parametrize("name", ["mnasnet1_0", "mnasnet_a1", "mnasnet_small",
                                  "efficientnet_lite0", "efficientnet_edgetpu_s",
                                  "convnext_v2_atto", "mobilenet_v4_conv_small",
                                  "mobilenet_v4_hybrid_medium", "lcnet_100",
                                  "mobilevit_v2_050"])
def test_nasscale_scale_works_on_every_new_family(name, capsys):
    assert main(["scale", name, "--phi", "1", "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["flops"] > record["base_flops"] and record["params"] > record["base_params"]
    if name == "lcnet_100":  # the 1280-wide conv after pooling does not scale
        assert nasscale.load("lcnet_100").head.hidden == (1280,)
    if name.startswith(("mnasnet", "efficientnet_lite")):  # they keep their 1280 head conv
        head = [st for st in record["stages"] if st["label"] == "head"][0]
        assert head["scaled"]["out_channels"] == 1280
    if name == "efficientnet_lite0":
        ends = [st for st in record["stages"] if st["label"] in ("stem", "stage 1", "stage 7")]
        assert all(st["scaled"]["repeats"] == 1 for st in ends)
        assert ends[0]["scaled"]["out_channels"] == 32


@pytest.mark.parametrize("name", ["mnasnet0_5", "mnasnet_small", "efficientnet_lite0",
                                  "efficientnet_edgetpu_s", "convnext_v2_atto",
                                  "mobilenet_v4_conv_small", "mobilenet_v4_hybrid_medium",
                                  "lcnet_050", "mobilevit_v2_050"])
def test_nasscale_prune_works_on_every_new_family(name, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["prune", name, "--target", "flops=0.9x", "--out", str(out), "--step", "0.06",
               "--evaluator", "proxy:naswot,batch=2,resolution=32", "--format", "json",
               "--quiet"])
    assert rc == 0
    record = json.loads(capsys.readouterr().out)
    assert record["met"] and record["flops"] <= record["limit"]
    final = nasscale.load(str(out / "final.yaml"))
    assert final.family == nasscale.load(name).family
    assert nasscale.count(final).flops == record["flops"]


MOBILEVIT_V2 = {"mobilevit_v2_050": 0.5, "mobilevit_v2_075": 0.75, "mobilevit_v2_125": 1.25,
                "mobilevit_v2_150": 1.5, "mobilevit_v2_175": 1.75, "mobilevit_v2_200": 2.0}


@pytest.mark.parametrize("name", sorted(MOBILEVIT_V2))
def test_mobilevit_v2_multipliers_are_the_base_scaled_in_width(name):
    width = MOBILEVIT_V2[name]
    spec, again = nasscale.load(name), scale(nasscale.load("mobilevit_v2_100"), width)
    assert (spec.stem, spec.stages, spec.head) == (again.stem, again.stages, again.head)
    # timm: int(c * alpha) channels, d = make_divisible(c / 2, 8), MLP 2d; depths fixed
    assert spec.stem[0].out_channels == int(32 * width)
    blocks = [st.block for st in spec.stages if st.block.kind == "mobilevit2"]
    assert [b.out_channels for b in blocks] == [int(c * width) for c in (256, 384, 512)]
    assert [b.transformer_dim for b in blocks] == [int(c * width) // 2 for c in (256, 384, 512)]
    assert all(b.mid_channels == 2 * b.transformer_dim and b.num_heads == 1 for b in blocks)
    assert [b.transformer_depth for b in blocks] == [2, 4, 3]


def test_separable_attention_is_the_papers_formula_and_linear_in_tokens():
    from nasscale.modules.attention import SeparableSelfAttention

    torch.manual_seed(0)
    attn = SeparableSelfAttention(4).eval()
    x = torch.randn(2, 4, 3, 5)  # (N, d, P pixels per patch, T patches)
    qkv = torch.einsum("oc,ncpt->nopt", attn.qkv_proj.weight[:, :, 0, 0], x) \
        + attn.qkv_proj.bias[None, :, None, None]
    scores = qkv[:, :1].softmax(dim=-1)  # one query channel, softmax over the patches
    context = (qkv[:, 1:5] * scores).sum(-1, keepdim=True)  # weighted sum of the keys
    out = torch.einsum("oc,ncpt->nopt", attn.out_proj.weight[:, :, 0, 0],
                       torch.relu(qkv[:, 5:]) * context) + attn.out_proj.bias[None, :, None, None]
    torch.testing.assert_close(attn(x), out)
    # a block's count grows linearly with its tokens (no Q·Kᵀ)
    from nasscale.costs.analytic import network_cost

    def blocks(resolution):
        nc = network_cost(nasscale.resolve(nasscale.load("mobilevit_v2_050"), resolution))
        return sum(c.flops for c, rb in zip(nc.blocks, nc.network.blocks)
                   if rb.kind == "mobilevit2")

    assert blocks(256) == 4 * blocks(128)


def test_mobilevit_v2_block_pads_to_whole_patches_and_keeps_the_padded_map():
    from nasscale.costs.fvcore_count import fvcore_count

    spec = nasscale.load("mobilevit_v2_050")
    rn = nasscale.resolve(spec, 200)  # 200 -> 25 at the first MobileViTv2 block: padded to 26
    odd = [b for b in rn.blocks if b.kind == "mobilevit2" and b.in_hw[0] % 2]
    assert odd and odd[0].out_hw == (odd[0].in_hw[0] + 1,) * 2
    model = nasscale.build(spec).eval()
    counted = fvcore_count(model, torch.zeros(1, 3, 200, 200))
    assert counted.flops == nasscale.count(spec, 200).flops
    with torch.no_grad():
        assert model(torch.randn(1, 3, 200, 200)).shape == (1, 1000)


def test_mobilevit_v2_text_form_round_trips_and_has_one_query():
    text = "mobilevit2_k3_p2_d128_l2_m256_c256_silu"
    block = nasscale.parse_block(text)
    assert block.num_heads == 1 and nasscale.format_block(block) == text
    with pytest.raises(SpecError, match="num_heads"):
        block.replace(num_heads=2)
