"""RepViT as data (Wang et al., CVPR 2024): both forms count exactly like timm's, the fused form
computes the trained form's function, and weights move to and from timm in both forms.

Golden integers (timm 1.0.31): parameters of ``timm.create_model(name)`` and of the same after
``timm.utils.model.reparameterize_model``; FLOPs: nasscale's fvcore count of those timm modules
at 224, batch 1 (one multiply-accumulate = one FLOP; conv and linear layers; BN, activations,
pooling, the SE's product and the residual and branch sums are not counted).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

import nasscale
from nasscale.costs.fvcore_count import fvcore_count
from nasscale.grammar import parse_block, parse_stage
from nasscale.grammar.yaml_io import network_from_data, network_to_data
from nasscale.specs import HeadSpec, NetworkSpec
from nasscale.weights import export_weights, load_weights, reference_keys
from nasscale.weights.seeded import seeded_tensor

from conftest import assert_both_forms_count, rel_error as rel, trained_network as trained

# name: (params, FLOPs, deploy params, deploy FLOPs)
REPVIT = {
    "repvit_m0_9": (5_489_328, 817_280_832, 5_067_056, 815_617_344),
    "repvit_m1_0": (7_302_796, 1_108_077_600, 6_810_312, 1_106_136_864),
    "repvit_m1_1": (8_802_912, 1_339_242_240, 8_244_312, 1_337_124_608),
    "repvit_m1_5": (14_644_432, 2_276_968_192, 14_049_992, 2_273_596_160),
    "repvit_m2_3": (23_688_792, 4_521_490_880, 22_926_792, 4_515_958_720),
}

FIXTURES = Path(__file__).parent / "fixtures" / "weights"


def _timm_fixture() -> dict:
    with gzip.open(FIXTURES / "timm.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


TIMM = _timm_fixture()


def timm_state(section: str, net: str) -> dict:
    """A timm-shaped state dict of ``net`` (``section``: ``networks`` for the train form,
    ``deploy`` for the form after timm's reparameterize_model), every tensor seeded by name."""
    return {k: torch.tensor(0) if k.endswith("num_batches_tracked") else seeded_tensor(k, s)
            for k, s in TIMM[section][net]["tensors"]}


def tiny(deploy: bool = False) -> NetworkSpec:
    """Every RepViT kind and the distillation head, at 32×32: stem, an SE-alternating stage,
    a downsampling layer, a stage without SE."""
    spec = NetworkSpec(
        name="tiny_repvit", stem=(parse_block("repvitstem_c16_gelu"),),
        stages=(parse_stage("repvit_r3_k3_e2_c16_gelu_se0.25-in-sigmoid-relu-d8_alt"),
                parse_stage("repvitdown_k3_e2_c24_gelu"),
                parse_stage("repvit_r2_k3_e2_c24_gelu")),
        head=HeadSpec(norm="bn", distill=True), resolution=32, num_classes=7)
    return spec.deploy_form() if deploy else spec






# --- counts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(REPVIT))
def test_both_forms_count_exactly_like_timm(name):
    assert_both_forms_count(name, REPVIT[name])


@pytest.mark.parametrize("name", sorted(REPVIT))
def test_the_built_module_has_the_analytic_parameter_count_in_both_forms(name):
    for spec, params in ((nasscale.load(name), REPVIT[name][0]),
                         (nasscale.reparameterize(name), REPVIT[name][2])):
        with torch.device("meta"):
            model = nasscale.build(spec)
        assert sum(p.numel() for p in model.parameters()) == params


def test_repvit_m0_9_built_and_traced_at_224_in_both_forms():
    params, flops, deploy_params, deploy_flops = REPVIT["repvit_m0_9"]
    for spec, want in ((nasscale.load("repvit_m0_9"), flops),
                       (nasscale.reparameterize("repvit_m0_9"), deploy_flops)):
        model = nasscale.build(spec).eval()
        assert fvcore_count(model, torch.zeros(1, 3, 224, 224)).flops == want


def test_every_stage_alternates_its_se_starting_with_it_as_timm():
    rn = nasscale.resolve(nasscale.load("repvit_m1_1"))
    for stage in range(0, 10, 3):  # the rows of RepViT blocks: SE, none, SE, ...
        se = [rb.widths["se"] > 0 for rb in rn.blocks if rb.stage == stage]
        assert se == [i % 2 == 0 for i in range(len(se))], stage
    # each downsampling layer: a pre-block without SE (its own row), then the strided part
    down = [rb for rb in rn.blocks if rb.kind == "repvitdown"]
    assert [rb.stage for rb in down] == [2, 5, 8]
    pre = [rb for rb in rn.blocks if rb.stage in (1, 4, 7)]
    assert [(rb.kind, rb.widths["se"]) for rb in pre] == [("repvit", 0)] * 3


# --- the two forms compute one function ------------------------------------------------------

def test_the_fused_network_computes_the_trained_one():
    model = trained(tiny())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = nasscale.reparameterize(model)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel(deployed(x), model(x)) <= 1e-5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    reference = nasscale.build(tiny(deploy=True))
    assert [(k, v.shape) for k, v in deployed.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    # no BatchNorm is left, and the head is one linear layer
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                   for m in deployed.modules())
    assert sum(isinstance(m, torch.nn.Linear) for m in deployed.modules()) == 1


def test_both_tiny_forms_count_as_built_and_as_traced():
    for spec in (tiny(), tiny(deploy=True)):
        model = nasscale.build(spec).eval()
        cost = nasscale.count(spec)
        assert cost.params == sum(p.numel() for p in model.parameters())
        assert cost.flops == fvcore_count(model, torch.zeros(1, 3, 32, 32)).flops


@pytest.mark.parametrize("deploy", [False, True])
def test_the_network_and_its_head_round_trip_through_yaml(deploy):
    spec = nasscale.reparameterize("repvit_m0_9") if deploy else nasscale.load("repvit_m0_9")
    assert network_from_data(network_to_data(spec)) == spec
    text = nasscale.dump_network(spec)
    assert ("_deploy" in text) == deploy
    assert spec.head.distill and spec.head.norm == "bn" and spec.head.deploy == deploy


# --- weights: timm in both forms --------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(REPVIT))
def test_timm_weights_round_trip_in_both_forms(name):
    for section, spec in (("networks", nasscale.load(name)),
                          ("deploy", nasscale.reparameterize(name))):
        state = timm_state(section, name)
        model = load_weights(spec, state, source="timm")
        out = export_weights(model, spec, target="timm")
        assert set(out) == set(state), section
        assert all(torch.equal(out[k], state[k]) for k in state), section
        assert TIMM[section][name]["params"] == nasscale.count(spec).params


def test_timm_trained_weights_fused_by_nasscale_export_as_timms_deploy_form():
    """Loading timm's train-form tensors, fusing with nasscale and exporting gives exactly the
    tensor names and shapes of timm's own fused model, and the same logits as before fusing."""
    name = "repvit_m0_9"
    model = load_weights(name, timm_state("networks", name), source="timm")
    fused = nasscale.reparameterize(model)
    out = export_weights(fused, nasscale.reparameterize(name), target="timm")
    assert {k: list(v.shape) for k, v in out.items()} == \
        {k: s for k, s in TIMM["deploy"][name]["tensors"]}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # float32 rounding over 24 fused blocks: about 1e-5 here
        assert rel(fused(x), model(x)) <= 1e-4


def test_the_fused_converted_model_computes_timms_reference_logits():
    """The reference output recorded from timm's train-form module (tests/fixtures/weights/
    outputs.json) is reproduced by nasscale's fused form of the converted weights."""
    rows = json.loads((FIXTURES / "outputs.json").read_text())
    row = next(r for r in rows if (r["source"], r["network"]) == ("timm", "repvit_m0_9"))
    model = load_weights(row["network"], timm_state("networks", row["network"]), source="timm")
    fused = nasscale.reparameterize(model)
    x = torch.randn(2, 3, row["size"], row["size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = fused(x)
    want = torch.tensor(row["logits"])
    assert float((y - want).abs().max() / want.abs().max()) < 1e-4


def test_every_timm_tensor_of_both_forms_is_mapped_once():
    for section, spec in (("networks", nasscale.load("repvit_m1_0")),
                          ("deploy", nasscale.reparameterize("repvit_m1_0"))):
        mapped = [r for r, _ in reference_keys(spec, "timm").values()]
        assert len(mapped) == len(set(mapped))
        assert set(mapped) == {k for k, _ in TIMM[section]["repvit_m1_0"]["tensors"]}
