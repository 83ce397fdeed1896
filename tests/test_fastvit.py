"""FastViT as data (spaces/archs/fastvit.yaml): its kinds (repmixer, fvattn, replk, repcpe and
repconv's grouped form), both forms counted exactly against timm, re-parameterisation, and
weights in timm's names in both forms.

Golden integers: timm 1.0.31 ``fastvit_*``: parameters of the module as created (train form)
and after timm's ``reparameterize_model`` (deploy form); FLOPs: nasscale's fvcore count of
that timm module at 256 (timm's default_cfg input size), batch 1, one multiply-accumulate =
one FLOP (conv, linear and the attention's Q·Kᵀ and A·V), recorded in the reference venv.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

import nasscale
from nasscale.costs.fvcore_count import fvcore_count
from nasscale.errors import SpecError
from nasscale.grammar import format_stage, parse_block, parse_stage
from nasscale.specs import HeadSpec, NetworkSpec
from nasscale.weights import export_weights, load_weights
from nasscale.weights.seeded import seeded_tensor

from conftest import (
    assert_both_forms_count,
    assert_exports_back,
    rel_error as rel,
    trained_network as trained,
)

# name: (params, FLOPs, deploy params, deploy FLOPs)
FASTVIT = {
    "fastvit_t8": (4_026_232, 690_149_376, 3_996_040, 685_160_448),
    "fastvit_t12": (7_553_704, 1_397_727_232, 7_508_840, 1_390_944_256),
    "fastvit_s12": (9_473_576, 1_800_380_416, 9_428_712, 1_793_597_440),
    "fastvit_sa12": (11_580_968, 1_943_937_024, 11_545_320, 1_937_219_584),
    "fastvit_sa24": (21_554_216, 3_769_966_592, 21_501_288, 3_762_069_504),
    "fastvit_sa36": (31_527_464, 5_595_996_160, 31_457_256, 5_586_919_424),
    "fastvit_ma36": (44_068_004, 7_825_709_056, 43_984_632, 7_814_930_432),
}

#: A small network with every FastViT part: MobileOne stem, RepMixer stage, patch embedding
#: (replk + 1×1 repconv), positional encoding, attention, the grouped SE head conv.
TINY_FASTVIT = NetworkSpec(
    name="tiny_fastvit",
    stem=(parse_block("repconv_k3_s2_b1_c8_gelu"), parse_block("mobileone_k3_s1_b1_c8_gelu")),
    stages=tuple(parse_stage(s) for s in (
        "repmixer_r2_k3_e3_c8_gelu_ls0.1", "replk_k7_sk3_s2_c16", "repconv_k1_s1_b1_c16_gelu",
        "repmixer_k5_e2_c16_gelu_ls0", "replk_k5_sk3_s2_c32", "repconv_k1_s1_b2_c32_gelu",
        "repcpe_k3_c32", "fvattn_r2_h4_e2_c32_gelu_ls0.1")),
    head=HeadSpec(blocks=(parse_block(
        "repconv_k3_s1_b1_c64_grouped_gelu_se0.0625-mid-sigmoid-relu-d1"),)),
    resolution=32, num_classes=7)






# --- counts -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(FASTVIT))
def test_both_forms_count_exactly_as_timm(name):
    assert_both_forms_count(name, FASTVIT[name])
    assert nasscale.load(name).resolution == 256


@pytest.mark.parametrize("name", sorted(FASTVIT))
def test_both_forms_build_with_the_counted_parameters(name):
    for spec in (nasscale.load(name), nasscale.reparameterize(name)):
        with torch.device("meta"):
            model = nasscale.build(spec)
        assert sum(p.numel() for p in model.parameters()) == nasscale.count(spec).params


@pytest.mark.parametrize("name", ["fastvit_t8", "fastvit_sa12"])
def test_both_forms_trace_to_the_counted_flops_at_256(name):
    for spec in (nasscale.load(name), nasscale.reparameterize(name)):
        model = nasscale.build(spec).eval()
        counted = fvcore_count(model, torch.zeros(1, 3, 256, 256))
        assert counted.flops == nasscale.count(spec).flops
        assert not set(counted.not_counted) & {"aten::_convolution", "aten::linear"}


def test_attention_counts_its_matmuls_with_32_channels_per_head():
    rn = nasscale.resolve(nasscale.load("fastvit_ma36"))
    attn = [rb for rb in rn.blocks if rb.kind == "fvattn"]
    assert len(attn) == 6 and {rb.spec.num_heads for rb in attn} == {19}
    from nasscale.costs.analytic import block_cost

    # 8×8 positions at 256: Q·Kᵀ and A·V, 2 · 64² · 608 per block
    assert {block_cost(rb).attention for rb in attn} == {2 * 64 * 64 * 608}


# --- re-parameterisation ----------------------------------------------------------------------

def test_the_tiny_fastvit_deploys_with_the_train_forms_function():
    model = trained(TINY_FASTVIT)
    deployed = nasscale.reparameterize(model)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel(deployed(x), model(x)) <= 1e-5
    reference = nasscale.build(TINY_FASTVIT.deploy_form())
    assert [(k, v.shape) for k, v in deployed.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    for spec, module in ((TINY_FASTVIT, model), (TINY_FASTVIT.deploy_form(), deployed)):
        cost = nasscale.count(spec)
        assert cost.params == sum(p.numel() for p in module.parameters())
        assert cost.flops == fvcore_count(module, torch.zeros(1, 3, 32, 32)).flops


def test_the_deploy_form_fuses_what_timm_fuses_and_keeps_the_mlp():
    deploy = nasscale.reparameterize(TINY_FASTVIT)
    kinds = {b.kind: b for b in deploy.blocks()}
    assert all(b.deploy for k, b in kinds.items() if k != "fvattn")
    model = nasscale.build(deploy)
    keys = set(model.state_dict())
    assert "stages.0.0.token_mixer.conv.weight" in keys  # the token mixer: one dw conv
    assert "stages.0.0.mlp.conv.1.running_var" in keys  # the MLP's conv-BN stays
    assert "stages.6.0.conv.weight" in keys and "stages.6.0.pos_enc.weight" not in keys
    # the positional encoding keeps its size; the identity moves into its kernel
    cpe = [rb.index for rb in nasscale.resolve(deploy).blocks if rb.kind == "repcpe"]
    before, after = (nasscale.count(s).blocks[cpe[0]] for s in (TINY_FASTVIT, deploy))
    assert before == after and before.params == 32 * 9 + 32


def test_the_text_forms_round_trip_in_both_forms():
    for stage in (*TINY_FASTVIT.stages, *TINY_FASTVIT.deploy_form().stages):
        assert parse_stage(format_stage(stage)) == stage
    assert nasscale.format_block(TINY_FASTVIT.head.blocks[0]) == \
        "repconv_k3_s1_b1_c64_grouped_gelu_se0.0625-mid-sigmoid-relu-d1"
    yaml_text = nasscale.dump_network(nasscale.reparameterize("fastvit_sa12"))
    assert "replk_r1_k7_sk3_s2_c512_deploy" in yaml_text and "repcpe_r1_k7_c512_deploy" in yaml_text


@pytest.mark.parametrize("text, field", [
    ("replk_k3_sk5_s2_c16", "small_kernel"),
    ("replk_k7_sk4_s2_c16", "small_kernel"),
    ("repmixer_k3_c8_gelu", "expand_ratio"),
    ("repmixer_k3_e3_c8_gelu_ls-1", "ls-1"),
    ("fvattn_h3_e2_c8_gelu", "num_heads"),
    ("repconv_k3_c16_dw_grouped_gelu", "grouped"),
])
def test_bad_fields_are_named(text, field):
    with pytest.raises(SpecError, match=field):
        parse_stage(text)


def test_width_keeping_kinds_name_the_patch_embedding_they_lack():
    for text in ("repmixer_k3_e3_c16_gelu", "fvattn_h2_e2_c16_gelu", "repcpe_k7_c16"):
        spec = NetworkSpec(name="t", stem=(parse_block("conv_k3_s1_c8_relu"),),
                           stages=(parse_stage(text),), resolution=16)
        with pytest.raises(SpecError, match="equal to the input width 8.*replk"):
            nasscale.resolve(spec)


def test_grouped_convs_take_one_group_per_input_channel_or_the_gcd():
    rn = nasscale.resolve(nasscale.load("fastvit_t8"))
    replk = [rb for rb in rn.blocks if rb.kind == "replk"]
    assert [rb.spec.groups(rb.in_channels) for rb in replk] == [48, 96, 192]
    head = rn.section("head")[0]
    assert head.spec.groups(head.in_channels) == 384 and head.out_channels == 768
    odd = parse_block("replk_k7_sk3_s2_c40")
    assert odd.groups(24) == 8  # scaled or pruned widths: gcd(24, 40) groups


# --- weights in timm's names, both forms ------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "weights"


def _timm(form: str) -> dict:
    with gzip.open(FIXTURES / "timm.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)[form]


def _seeded(tensors) -> dict:
    return {k: torch.tensor(0) if k.endswith("num_batches_tracked") else seeded_tensor(k, s)
            for k, s in tensors}


@pytest.mark.parametrize("name", ["fastvit_t8", "fastvit_sa12"])
def test_timm_state_dicts_load_and_export_back_in_both_forms(name):
    for form, spec in (("networks", nasscale.load(name)),
                       ("deploy", nasscale.reparameterize(name))):
        fixture = _timm(form)[name]
        state = _seeded(fixture["tensors"])
        model = load_weights(spec, state, source="timm")
        assert sum(p.numel() for p in model.parameters()) == fixture["params"]
        assert_exports_back(model, spec, state, "timm")


def test_loaded_timm_weights_fuse_to_the_exported_deploy_weights():
    """timm train-form weights, loaded and fused by nasscale, export under the names of
    timm's deploy form and compute the train form's function."""
    state = _seeded(_timm("networks")["fastvit_sa12"]["tensors"])
    model = load_weights("fastvit_sa12", state, source="timm").eval()
    deployed = nasscale.reparameterize(model)
    out = export_weights(deployed, nasscale.reparameterize("fastvit_sa12"), target="timm")
    assert set(out) == {k for k, _ in _timm("deploy")["fastvit_sa12"]["tensors"]}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert rel(deployed(x), model(x)) <= 1e-4
