"""The attention families: MobileViT, ViT and Swin — golden figures, fvcore's attention handles,
layouts, resolutions the patches and windows do not divide, and the blocks' behaviour."""
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

import nasscale
from nasscale.costs.fvcore_count import fvcore_count
from nasscale.errors import SpecError
from nasscale.grammar import format_block, network_from_data, parse_block, parse_stage
from nasscale.modules.attention import WindowAttention, fold, relative_position_index, unfold
from nasscale.specs import (
    HeadSpec,
    NetworkSpec,
    StageSpec,
    SwinSpec,
    ViTEmbedSpec,
    ViTSpec,
    resolve,
)
from nasscale.specs.random import random_attention_network

# fixtures/reference_counts.md (timm 1.0 / torchvision 0.29): resolution, params, FLOPs (MACs)
PUBLISHED = {
    "mobilevit_xxs": (256, 1_272_024, 407_364_096),
    "mobilevit_xs": (256, 2_317_848, 1_025_911_808),
    "mobilevit_s": (256, 5_578_632, 2_000_831_488),
    "vit_b_16": (224, 86_567_656, 17_563_828_224),
    "vit_b_32": (224, 88_224_232, 4_409_186_304),
    "vit_l_16": (224, 304_326_632, 61_554_712_576),
    "swin_t": (224, 28_288_354, 4_490_566_656),
    "swin_s": (224, 49_606_258, 8_740_875_264),
    "swin_b": (224, 87_768_224, 15_430_946_816),
}

# Not in the reference table.  Params: the integers torchvision documents for its weights
# (num_params); FLOPs: its documented GFLOPS (_ops), or the paper's (Swin-L: 197M, 34.5G).
# The derived integers are pinned too, so that a change shows.
DERIVED = {  # name: (resolution, params, FLOPs, documented params, documented GFLOPs)
    "vit_l_32": (224, 306_535_400, 15_377_539_072, 306_535_400, 15.4),
    "vit_h_14": (224, 632_045_800, 167_295_109_120, 632_045_800, 167.3),
    "swin_l": (224, 196_532_476, 34_475_759_616, 197e6, 34.5),
}

# torchvision's weights at other resolutions: the same network trained at that size (its
# position embedding grows), with the params and GFLOPS torchvision documents.
TORCHVISION_OTHER_SIZES = [("vit_b_16", 384, 86_859_496, 55.5),
                           ("vit_l_16", 512, 305_174_504, 362.0),
                           ("vit_h_14", 518, 633_470_440, 1016.7)]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_exact_published_params_and_flops(name):
    resolution, params, flops = PUBLISHED[name]
    spec = nasscale.load(name)
    cost = nasscale.count(spec)
    assert (spec.resolution, cost.params, cost.flops) == (resolution, params, flops)
    assert (spec.expected.params, spec.expected.flops) == (params, flops)
    assert cost.total.attention > 0


def _rounds_to(value: float, figure: float, digits: int) -> bool:
    scale = 10 ** (math.floor(math.log10(figure)) - digits + 1)
    return round(value / scale) == round(figure / scale)


@pytest.mark.parametrize("name", sorted(DERIVED))
def test_derived_networks_match_documented_figures(name):
    resolution, params, flops, doc_params, doc_gflops = DERIVED[name]
    spec = nasscale.load(name)
    cost = nasscale.count(spec)
    assert (spec.resolution, cost.params, cost.flops) == (resolution, params, flops)
    if isinstance(doc_params, int):
        assert spec.expected.params == doc_params
    else:
        assert spec.expected.paper_params == doc_params
        assert _rounds_to(cost.params, doc_params, 3)
    assert spec.expected.paper_flops == doc_gflops * 1e9
    assert _rounds_to(cost.flops, doc_gflops * 1e9, len(str(doc_gflops).replace(".", "")))


@pytest.mark.parametrize("name, resolution, params, gflops", TORCHVISION_OTHER_SIZES)
def test_vit_trained_at_other_sizes_matches_torchvision_weights(name, resolution, params, gflops):
    spec = nasscale.load(name)
    trained_there = nasscale.count(spec.replace(resolution=resolution, expected=None))
    assert trained_there.params == params
    assert round(trained_there.flops / 1e9, 1) == gflops
    # the network trained at 224 evaluated there: same FLOPs, its own (interpolated) parameters
    evaluated_there = nasscale.count(spec, resolution)
    assert evaluated_there.flops == trained_there.flops
    assert evaluated_there.params == nasscale.count(spec).params


# --- fvcore: attention handles, other resolutions ----------------------------------------------

class _SDPA(torch.nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize("q, k, v", [((2, 3, 5, 8), (2, 3, 7, 8), (2, 3, 7, 4)),
                                     ((2, 4, 3, 9, 6), (2, 4, 3, 9, 6), (2, 4, 3, 9, 6))])
def test_sdpa_handle_counts_qk_and_av(q, k, v):
    counted = fvcore_count(_SDPA(), tuple(torch.zeros(s) for s in (q, k, v)))
    batch = math.prod(q[:-2])
    assert counted.flops == batch * q[-2] * k[-2] * q[-1] + batch * q[-2] * k[-2] * v[-1]
    assert set(counted.by_operator) == {"scaled_dot_product_attention"}


def test_multihead_attention_fast_and_slow_paths_count_the_same_once():
    """nn.MultiheadAttention traces to one fused op in eval mode without gradients and to
    linear + SDPA with gradients: both counts equal the formula, nothing counted twice."""
    batch, length, width = 2, 11, 32
    mha = torch.nn.MultiheadAttention(width, 4, batch_first=True)

    class SelfAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            return self.mha(x, x, x, need_weights=False)[0]

    x = torch.randn(batch, length, width)
    expected = batch * (4 * length * width * width + 2 * length * length * width)
    fast = fvcore_count(SelfAttention(), x)  # fvcore_count traces in eval mode, no grad
    assert "_native_multi_head_attention" in fast.by_operator and fast.flops == expected

    from fvcore.nn.jit_analysis import JitModelAnalysis

    from nasscale.costs.fvcore_count import COUNTED_OPS

    analysis = JitModelAnalysis(SelfAttention().train(), (x,))  # gradients on: the slow path
    analysis.set_op_handle(**COUNTED_OPS)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    assert int(analysis.total()) == expected
    assert "scaled_dot_product_attention" in analysis.by_operator()


@pytest.fixture(scope="module")
def swin_t():
    return nasscale.build("swin_t").eval()


@pytest.fixture(scope="module")
def mobilevit_xxs():
    return nasscale.build("mobilevit_xxs").eval()


@pytest.fixture(scope="module")
def vit_b_32():
    return nasscale.build("vit_b_32").eval()


@pytest.mark.parametrize("resolution", [97, 256])
def test_swin_where_windows_do_not_divide(swin_t, resolution):
    """256: maps of 64, 32, 16 and 8 are padded to whole 7x7 windows (and stage 4 is not
    shifted at 97: one window covers it) — the count follows the padding, as torchvision."""
    counted = fvcore_count(swin_t, torch.zeros(1, 3, resolution, resolution))
    cost = nasscale.count("swin_t", resolution)
    assert counted.flops == cost.flops and cost.params == nasscale.count("swin_t").params
    with torch.inference_mode():
        out = swin_t(torch.randn(2, 3, resolution, resolution))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize("resolution", [224, 200])
def test_mobilevit_where_patches_do_not_divide(mobilevit_xxs, resolution):
    """At 224 the last MobileViT block sees 7x7 (at 200: 13x13, 7x7 ...): resized up to whole
    2x2 patches and back, as timm does; attention over ceil(H/2)·ceil(W/2) patches."""
    rn = resolve(nasscale.load("mobilevit_xxs"), resolution)
    assert any(b.kind == "mobilevit" and b.in_hw[0] % 2 for b in rn.blocks)
    counted = fvcore_count(mobilevit_xxs, torch.zeros(1, 3, resolution, resolution))
    assert counted.flops == nasscale.count("mobilevit_xxs", resolution).flops
    assert "aten::upsample_bilinear2d" in counted.not_counted
    with torch.inference_mode():
        out = mobilevit_xxs(torch.randn(2, 3, resolution, resolution))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize("resolution", [160, 288])
def test_vit_at_another_resolution_interpolates_positions(vit_b_32, resolution):
    counted = fvcore_count(vit_b_32, torch.zeros(1, 3, resolution, resolution))
    cost = nasscale.count("vit_b_32", resolution)
    assert counted.flops == cost.flops
    assert cost.params == sum(p.numel() for p in vit_b_32.parameters())  # positions not resized
    assert "aten::upsample_bicubic2d" in counted.not_counted
    with torch.inference_mode():
        out = vit_b_32(torch.randn(2, 3, resolution, resolution))
    assert out.shape == (2, 1000) and torch.isfinite(out).all()


def test_position_embedding_interpolation_keeps_class_token_and_grid():
    rb = resolve(NetworkSpec(name="v", stem=(ViTEmbedSpec(out_channels=8, patch_size=4),),
                             stages=(StageSpec(ViTSpec(out_channels=8, num_heads=2,
                                                       expand_ratio=2)),),
                             resolution=16)).blocks[0]
    from nasscale.modules.attention import ViTEmbed

    embed = ViTEmbed(rb)
    assert embed.grid == (4, 4) and embed.position_embedding((4, 4)) is embed.pos_embedding
    resized = embed.position_embedding((6, 3))
    assert resized.shape == (1, 1 + 6 * 3, 8)
    assert torch.equal(resized[:, 0], embed.pos_embedding[:, 0])  # class token row kept
    # align_corners: the grid's corners land on the corners
    grid = embed.pos_embedding[0, 1:].reshape(4, 4, 8)
    new = resized[0, 1:].reshape(6, 3, 8)
    torch.testing.assert_close(new[0, 0], grid[0, 0])
    torch.testing.assert_close(new[-1, -1], grid[-1, -1])


@pytest.mark.parametrize("seed", range(12))
def test_random_attention_networks_analytic_equals_fvcore_and_round_trip(seed):
    spec = random_attention_network(seed)
    assert network_from_data(yaml.safe_load(nasscale.dump_network(spec))) == spec
    model = nasscale.build(spec).eval()
    assert nasscale.count(spec).params == sum(p.numel() for p in model.parameters())
    for resolution in (spec.resolution, spec.resolution + 13):
        counted = fvcore_count(model, torch.zeros(1, 3, resolution, resolution))
        assert counted.flops == nasscale.count(spec, resolution).flops


# --- blocks -------------------------------------------------------------------------------------

def test_attention_flops_are_reported_apart():
    vit = nasscale.count("vit_b_16")
    tokens, width, layers = 197, 768, 12
    assert vit.total.attention == layers * 2 * tokens * tokens * width  # Q·Kᵀ and A·V
    swin = nasscale.count("swin_t")
    # stage 1: 2 blocks, 64 windows of 49 tokens, 96 channels
    assert swin.blocks[1].attention == 2 * 64 * 49 * 49 * 96
    assert swin.total.conv + swin.total.linear + swin.total.attention == swin.flops


def test_swin_repeats_alternate_shifted_windows():
    rn = resolve(nasscale.load("swin_t"))
    assert [b.spec.shifted for b in rn.stage(4)] == [False, True, False, True, False, True]
    stage = parse_stage("swin_r3_w7_h3_e4_c96_gelu_shift")
    assert [stage.block.for_repeat(r).shifted for r in range(3)] == [True, False, True]
    assert format_block(stage.block.for_repeat(1)) == "swin_w7_h3_e4_c96_gelu"


def _influence(attn, source, target, size=8, width=8):
    """Whether the token at ``source`` changes the output at ``target``."""
    torch.manual_seed(0)
    x = torch.randn(1, size, size, width)
    y = x.clone()
    y[0, source[0], source[1]] += 10.0
    with torch.no_grad():
        return not torch.allclose(attn(x)[0, target[0], target[1]],
                                  attn(y)[0, target[0], target[1]], atol=1e-6)


def test_shifted_windows_connect_neighbouring_windows_and_mask_wrapped_tokens():
    plain, shifted = WindowAttention(8, 2, 4, False), WindowAttention(8, 2, 4, True)
    shifted.load_state_dict(plain.state_dict())
    assert _influence(plain, (0, 1), (2, 3))  # same 4x4 window
    assert not _influence(plain, (4, 4), (3, 3))  # neighbouring windows: no connection ...
    assert _influence(shifted, (4, 4), (3, 3))  # ... until the windows shift by 2
    # rolled by 2, (0, 0) and (7, 7) share the last window but were not neighbours: masked
    assert not _influence(shifted, (7, 7), (0, 0)) and not _influence(shifted, (0, 0), (7, 7))


def test_relative_position_bias_table_and_index():
    index = relative_position_index(7)
    assert index.shape == (49, 49) and int(index.min()) == 0 and int(index.max()) == 13 * 13 - 1
    assert bool((index.diagonal() == 6 * 13 + 6).all())  # zero offset: the table's centre
    block = nasscale.build(NetworkSpec(
        name="s", stem=(parse_block("swinembed_p4_c32"),),
        stages=(StageSpec(SwinSpec(out_channels=32, num_heads=4, window_size=7,
                                   expand_ratio=4)),), resolution=56)).stages[0][0]
    assert block.attn.relative_position_bias_table.shape == (13 * 13, 4)
    assert "relative_position_index" not in block.state_dict()  # a buffer, not a parameter


def test_mobilevit_unfold_groups_same_position_pixels_and_fold_inverts():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    seq = unfold(x, 2)  # 2 samples x 4 pixel positions, 2x3 patches, 3 channels
    assert seq.shape == (8, 6, 3)
    assert seq[0, :, 0].tolist() == [0, 2, 4, 12, 14, 16]  # top-left pixel of every patch
    assert seq[3, :, 0].tolist() == [7, 9, 11, 19, 21, 23]  # bottom-right pixel
    assert torch.equal(fold(seq, 2, 2, 3), x)


def _head(stem, head):
    from nasscale.modules.network import Head

    spec = NetworkSpec(name="h", stem=(), stages=(StageSpec(parse_block(stem)),), head=head,
                       resolution=12)
    return Head(resolve(spec).head).eval()


def test_head_pools_class_token_or_average_of_each_layout():
    head_vit = resolve(nasscale.load("vit_b_16")).head
    head_swin = resolve(nasscale.load("swin_t")).head
    assert (head_vit.layout, head_vit.pool, head_vit.norm) == ("tokens", "token",
                                                               "ln_before_pool")
    assert (head_swin.layout, head_swin.pool, head_swin.hw) == ("nhwc", "avg", (7, 7))
    torch.manual_seed(0)
    tokens, other = torch.randn(2, 1 + 9, 16), torch.randn(2, 1 + 9, 16)
    mixed = torch.cat([tokens[:, :1], other[:, 1:]], dim=1)  # same class token, other patches
    token_head = _head("vitembed_p4_c16", HeadSpec(pool="token", norm="ln_before_pool"))
    avg_head = _head("vitembed_p4_c16", HeadSpec(pool="avg", norm="ln_before_pool"))
    with torch.no_grad():
        assert torch.equal(token_head(tokens), token_head(mixed))  # only the class token counts
        assert not torch.allclose(token_head(tokens), token_head(other))
        assert not torch.allclose(avg_head(tokens), avg_head(mixed))  # patch tokens averaged
        grid = torch.randn(2, 3, 3, 16)  # Swin: LayerNorm of every position, then the average
        swin_head = _head("swinembed_p4_c16", HeadSpec(norm="ln_before_pool"))
        norm, fc = swin_head.norm, swin_head.classifier
        torch.testing.assert_close(swin_head(grid), fc(norm(grid).mean(dim=(1, 2))))
        assert not torch.allclose(swin_head(grid), fc(norm(grid.mean(dim=(1, 2)))))


# --- specs, layouts and errors -------------------------------------------------------------------

@pytest.mark.parametrize("text, field, allowed", [
    ("vit_h5_e4_c768_gelu", "num_heads", "a divisor of out_channels (768)"),
    ("mobilevit_k3_p2_d64_l2_h3_m128_c48_silu", "num_heads", "a divisor of transformer_dim (64)"),
    ("mobilevit_k4_p2_d64_l2_h4_m128_c48_silu", "kernel_size", "odd integer"),
    ("mobilevit_k3_p0_d64_l2_h4_m128_c48_silu", "patch_size", "integer >= 1"),
    ("swin_w0_h3_e4_c96_gelu", "window_size", "integer >= 1"),
    ("swin_w7_h3_c96_gelu", "expand_ratio", "exactly one of"),
    ("vit_h12_e4_m3072_c768_gelu", "expand_ratio", "exactly one of"),
])
def test_spec_errors_name_field_and_allowed(text, field, allowed):
    with pytest.raises(SpecError) as err:
        parse_block(text)
    assert err.value.where[-1] == field and allowed in str(err.value)


def _net(*stages, stem=(), head=HeadSpec()):
    return NetworkSpec(name="n", stem=tuple(parse_block(s) for s in stem),
                       stages=tuple(parse_stage(s) for s in stages), head=head, resolution=32)


@pytest.mark.parametrize("net, message", [
    (_net("vit_h2_e2_c16_gelu", stem=["conv_k3_s2_c16_relu"]),
     r"stages\[0\]: vit block: takes tokens \(N, 1 \+ H\*W, C\) but gets a feature map "
     r"\(N, C, H, W\); put a vitembed block before it"),
    (_net("swin_w4_h2_e2_c16_gelu", stem=["vitembed_p4_c16"]),
     r"takes a channels-last grid .* put a swinembed block before it"),
    (_net("conv_k3_s1_c16_relu", stem=["swinembed_p4_c16"]),
     r"conv block: takes a feature map .* but gets a channels-last grid .*; no block turns it "
     r"back into a feature map"),
    (_net("mbconv_k3_s1_e2_c16_relu6", stem=["conv_k3_s2_c16_relu"], head=HeadSpec(pool="token")),
     r"head.pool: must be 'avg': 'token' pools a class token"),
    (_net("vit_h2_e2_c24_gelu", stem=["vitembed_p4_c16"]),
     r"out_channels: must be equal to the input width 16 .*vitembed"),
    (_net("swin_w4_h2_e2_c24_gelu", stem=["swinembed_p4_c16"]),
     r"out_channels: must be equal to the input width 16 .*patchmerge"),
])
def test_layouts_must_chain(net, message):
    with pytest.raises(SpecError, match=message):
        resolve(net)


def test_layout_error_from_yaml_names_file_line_and_field(tmp_path, capsys):
    from nasscale.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nstem: [conv_k3_s2_c16_relu]\nstages:\n  - vit_h2_e2_c16_gelu\n")
    assert main(["show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nasscale: error: {path}:4: stages[0]: vit block: takes tokens")
    assert err.count("\n") == 1


def test_text_form_of_the_attention_kinds():
    assert format_block(parse_block("swin_c96_gelu_e4_h3_w7_shift")) == \
        "swin_w7_h3_e4_c96_gelu_shift"
    block = parse_block("mobilevit_k3_p2_d64_l2_h4_m128_c48_silu")
    assert (block.transformer_dim, block.transformer_depth, block.num_heads, block.patch_size,
            block.mid_channels) == (64, 2, 4, 2, 128)
    with pytest.raises(SpecError, match=r"unknown token 'k3' in 'vit_k3_h12_m3072_c768_gelu'; "
                                        r"a vit block takes h<int> \(num_heads\)"):
        parse_block("vit_k3_h12_m3072_c768_gelu")


def test_show_table_has_per_stage_attention_flops(capsys):
    from nasscale.cli import main

    assert main(["show", "vit_b_16"]) == 0
    out = capsys.readouterr().out
    assert "attn FLOPs" in out and "ln_clstoken_fc1000" in out and "715.33M" in out
    assert main(["show", "swin_t", "--format", "json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert sum(s["attention_flops"] for s in data["stages"]) == data["flops_by_kind"]["attention"]
    assert data["stages"][-1]["block"] == "ln_avgpool_fc1000"
