"""Re-parameterisable kinds: the contract every such kind keeps (train form and deploy form
compute one function; both forms count exactly), and MobileOne as data.

The contract runs on every kind whose spec class says ``reparameterizable``, on its tiny
architecture (tests/conftest.py ``TINY``): a new kind is covered by adding its row there.
"""
from __future__ import annotations

import json

import pytest
import torch

import nasscale
from nasscale.cli import main
from nasscale.costs.fvcore_count import fvcore_count
from nasscale.errors import SpecError
from nasscale.grammar import parse_block, parse_stage
from nasscale.specs import BLOCK_KINDS, HeadSpec, NetworkSpec

from conftest import TINY, assert_both_forms_count, rel_error as rel, trained_network as trained

REPARAM_KINDS = sorted(k for k, cls in BLOCK_KINDS.items() if cls.reparameterizable)

# timm 1.0.31: parameters trained / after timm.utils.model.reparameterize_model; FLOPs:
# nasscale's fvcore count of the timm module at 224, both forms (one MAC = one FLOP; conv and
# linear; BN, activations, pooling, branch sums not counted).
MOBILEONE = {
    "mobileone_s0": (5_293_272, 1_051_935_232, 2_078_504, 275_110_400),
    "mobileone_s1": (4_825_192, 830_062_080, 4_764_840, 825_057_024),
    "mobileone_s2": (7_884_648, 1_304_027_392, 7_808_168, 1_298_426_496),
    "mobileone_s3": (10_170_600, 1_902_112_768, 10_078_312, 1_895_790_592),
    "mobileone_s4": (14_951_248, 2_986_802_432, 14_838_352, 2_979_269_760),
}


def tiny(kind: str, deploy: bool = False) -> NetworkSpec:
    """The kind's tiny architecture, in its train form (or deploy form)."""
    spec = NetworkSpec(name=f"tiny_{kind}", stem=(parse_block("conv_k3_s1_c8_relu"),),
                       stages=tuple(parse_stage(s) for s in TINY[kind]), head=HeadSpec(),
                       resolution=16, num_classes=5).train_form()
    return spec.deploy_form() if deploy else spec






# --- the contract -------------------------------------------------------------------------------

def test_reparameterizable_kinds_are_the_ones_with_a_deploy_field():
    for kind, cls in BLOCK_KINDS.items():
        has = "deploy" in cls.__dataclass_fields__
        assert has == cls.reparameterizable, kind
        assert not has or "deploy" in cls.rule.text, f"{kind}: no deploy token"
    assert {"repconv", "mobileone"} <= set(REPARAM_KINDS)


@pytest.mark.parametrize("kind", REPARAM_KINDS)
def test_the_deploy_form_computes_the_train_forms_function(kind):
    spec = tiny(kind)
    model = trained(spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deployed = nasscale.reparameterize(model)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel(deployed(x), model(x)) <= 1e-5
    # the given module is unchanged, and the new one is exactly the deploy form's network
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    reference = nasscale.build(spec.deploy_form())
    assert [(k, v.shape) for k, v in deployed.state_dict().items()] == \
        [(k, v.shape) for k, v in reference.state_dict().items()]
    assert not deployed.training


@pytest.mark.parametrize("kind", REPARAM_KINDS)
def test_both_forms_count_as_built_and_as_fvcore_traces(kind):
    for spec in (tiny(kind), tiny(kind, deploy=True)):
        model = nasscale.build(spec).eval()
        cost = nasscale.count(spec)
        assert cost.params == sum(p.numel() for p in model.parameters())
        assert cost.flops == fvcore_count(model, torch.zeros(1, 3, 16, 16)).flops
    assert nasscale.count(tiny(kind, deploy=True)).params < nasscale.count(tiny(kind)).params


@pytest.mark.parametrize("kind", REPARAM_KINDS)
def test_the_forms_switch_losslessly_in_text_and_spec(kind):
    spec = tiny(kind)
    assert spec.deploy_form().train_form() == spec
    assert spec.deploy_form().deploy_form() == spec.deploy_form()
    assert spec.reparameterizable and not spec.deployed and spec.deploy_form().deployed
    yaml_text = nasscale.dump_network(spec.deploy_form())
    assert "_deploy" in yaml_text
    for stage in spec.deploy_form().stages:
        assert parse_stage(nasscale.format_stage(stage)) == stage


def test_a_network_without_such_blocks_is_its_own_deploy_form():
    spec = nasscale.load("mobilenet_v3_small")
    assert spec.deploy_form() is spec and nasscale.reparameterize(spec) is spec
    assert not spec.reparameterizable
    model = nasscale.build("mobilenet_v3_small").eval()
    again = nasscale.reparameterize(model)
    assert again is not model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values()))


def test_a_deploy_form_module_is_left_as_it_is():
    model = trained(tiny("mobileone"))
    once = nasscale.reparameterize(model)
    twice = nasscale.reparameterize(once)
    assert all(torch.equal(a, b) for a, b in zip(once.state_dict().values(),
                                                 twice.state_dict().values()))


PRUNED = {
    "mobileone": (("repconv_k3_s2_b2_c16_relu",),
                  ("mobileone_r2_k3_s1_b3_c16_relu",
                   "mobileone_k3_s2_b2_c32_relu_se0.25-mid-sigmoid-relu-d8",
                   "mobileone_k3_s1_b2_c32_relu"), HeadSpec()),
    "repvit": (("repvitstem_c16_gelu",),
               ("repvit_r2_k3_e2_c16_gelu_se0.25-in-sigmoid-relu-d8_alt",
                "repvitdown_k3_e2_c32_gelu", "repvit_r2_k3_e2_c32_gelu"),
               HeadSpec(norm="bn", distill=True)),
}


@pytest.mark.parametrize("family", sorted(PRUNED))
def test_pruning_cuts_every_branch_alike_so_pruning_commutes_with_fusion(family):
    """Carrying the trained train form into a narrower network keeps the same channels of
    every branch: fusing the pruned train form equals pruning the fused form."""
    from nasscale.transfer import carry
    from nasscale.transfer.groups import prunable, prune, width_groups

    stem, stages, head = PRUNED[family]
    spec = prunable(NetworkSpec(
        name="t", stem=tuple(map(parse_block, stem)), stages=tuple(map(parse_stage, stages)),
        head=head, resolution=16, num_classes=5))
    model = trained(spec)
    groups = width_groups(spec)
    widths = {g.name: g.width - 8 for g in groups if g.width > 8}
    assert len(widths) >= 2
    small = prune(spec, widths, groups)
    # the channels the train form's norms choose, kept in both forms
    kept = carry.select_channels(model, nasscale.resolve(spec), groups, widths)

    def carried(old, old_spec, new_spec):
        new = nasscale.build(new_spec)
        old_rn, new_rn = nasscale.resolve(old_spec), nasscale.resolve(new_spec)
        binds = carry.bindings(old_rn, groups)
        with torch.no_grad():
            for a, b, rb_a, rb_b, names in zip(carry.block_modules(old), carry.block_modules(new),
                                               old_rn.blocks, new_rn.blocks, binds):
                carry.carry_block(a, rb_a, b, rb_b, names, kept, groups)
            carry.carry_head(old, old_rn, new, new_rn, binds[-1]["out"], kept)
        return new.eval()

    pruned_then_fused = nasscale.reparameterize(carried(model, spec, small)).state_dict()
    fused_then_pruned = carried(nasscale.reparameterize(model), spec.deploy_form(),
                                small.deploy_form()).state_dict()
    # A BatchNorm *before* the classifier (RepViT's head) sends its shift through the
    # classifier into the bias: pruning an input channel of the train form drops that
    # channel's share of the fused bias, which pruning the fused form cannot know.  Everything
    # else is the same tensor either way.
    skip = {"head.classifier.bias"} if head.norm == "bn" else set()
    assert list(pruned_then_fused) == list(fused_then_pruned)
    for key, value in pruned_then_fused.items():
        if key not in skip:
            assert torch.allclose(value, fused_then_pruned[key], atol=1e-5), key


# --- MobileOne as data --------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MOBILEONE))
def test_mobileone_counts_exactly_in_both_forms(name):
    assert_both_forms_count(name, MOBILEONE[name])


def test_mobileone_s0_built_and_traced_at_224_in_both_forms():
    for spec, (params, flops) in ((nasscale.load("mobileone_s0"), MOBILEONE["mobileone_s0"][:2]),
                                  (nasscale.reparameterize("mobileone_s0"),
                                   MOBILEONE["mobileone_s0"][2:])):
        model = nasscale.build(spec).eval()
        assert sum(p.numel() for p in model.parameters()) == params
        assert fvcore_count(model, torch.zeros(1, 3, 224, 224)).flops == flops


def test_an_alternating_se_needs_an_se():
    with pytest.raises(SpecError, match="se_alternate: must be false without an SE"):
        parse_block("repvit_k3_e2_c48_gelu_alt")


def test_the_distillation_head_averages_two_classifiers_and_fuses_to_one():
    spec = tiny("repvit").replace(head=HeadSpec(norm="bn", distill=True))
    model = trained(spec)
    head = model.head
    x = torch.randn(4, 8)
    with torch.no_grad():
        want = (head.classifier(head.norm(x)) + head.classifier_dist(head.norm_dist(x))) / 2
        assert rel(head(x[:, :, None, None]), want) <= 1e-6
        fused = nasscale.reparameterize(model)
        assert isinstance(fused.head.norm, torch.nn.Identity) and not hasattr(fused.head,
                                                                              "classifier_dist")
        y = torch.randn(2, 3, 16, 16)
        assert rel(fused(y), model(y)) <= 1e-5
    assert nasscale.count(spec.deploy_form()).params == sum(
        p.numel() for p in fused.parameters())
    text = nasscale.dump_network(spec.deploy_form())
    assert "distill: true" in text and "deploy: true" in text
    with pytest.raises(SpecError, match="deploy: must be false for a head with nothing to fuse"):
        HeadSpec(deploy=True)


def test_mobileone_s4_squeezes_its_last_blocks_in_both_halves():
    rn = nasscale.resolve(nasscale.load("mobileone_s4"))
    se = [(rb.stage, rb.widths["se_dw"], rb.widths["se"]) for rb in rn.section("stage")
          if rb.widths["se"]]
    assert se == [(3, 56, 56)] * 5 + [(4, 56, 128)]


# --- the command line and bad input ------------------------------------------------------------

def test_show_gives_both_forms_and_checks_both_against_the_reference(capsys):
    assert main(["show", "mobileone_s0"]) == 0
    out = capsys.readouterr().out
    assert "deploy form: 2,078,504 params, 275,110,400 FLOPs" in out
    assert "published deploy params: 2,078,504 (matches)" in out
    assert main(["show", "mobileone_s0", "--form", "deploy", "--format", "json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["params"], record["flops"]) == (2_078_504, 275_110_400)
    assert record["forms"]["train"] == {"params": 5_293_272, "flops": 1_051_935_232}
    assert all(s["block"].endswith("_deploy") for s in record["stages"][:-1])  # not the head


def test_training_refuses_a_fused_network_naming_the_block(tmp_path, capsys):
    path = tmp_path / "fused.yaml"
    path.write_text(nasscale.dump_network(nasscale.reparameterize("mobileone_s0")))
    assert main(["train", str(path), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "fused.yaml: stem[0]: deploy: must be false to train" in err


@pytest.mark.parametrize("text,field", [
    ("mobileone_k3_s1_b0_c16_relu", "branches"),
    ("repconv_k4_s1_c16_relu", "kernel_size"),  # an even kernel has no centre for the 1x1
    ("mobileone_k3_s1_b99_c16_relu", "branches"),
    ("repconv_k3_c16_relu_se0.25-in-sigmoid-relu-d8", "se"),
    ("mobileone_k1_s2_c16_relu", "kernel_size"),
])
def test_bad_reparameterisable_blocks_name_the_field(text, field):
    with pytest.raises(SpecError, match=rf"{field}: "):
        parse_block(text)


def test_a_depthwise_repconv_must_keep_its_width():
    spec = NetworkSpec(name="t", stem=(parse_block("conv_k3_s1_c8_relu"),),
                       stages=(parse_stage("repconv_k3_c16_dw_relu"),), resolution=16)
    with pytest.raises(SpecError, match="out_channels: must be equal to the input width 8"):
        nasscale.resolve(spec)


# --- latency and export run the deploy form ------------------------------------------------------

def test_latency_times_the_deploy_form_and_the_key_says_which():
    from nasscale.latency import Settings
    from nasscale.latency.key import MeasurementKey
    from nasscale.latency.measure import prepare
    from nasscale.modules.reparam import RepConv

    spec = tiny("mobileone")
    deploy, train = Settings(), Settings(form="train")
    assert deploy.key().form == "deploy" and train.key().form == "train"
    assert deploy.key() != train.key()
    fused = [m for m in prepare(spec, deploy).model.modules() if isinstance(m, RepConv)]
    branched = [m for m in prepare(spec, train).model.modules() if isinstance(m, RepConv)]
    assert fused and all(m.deploy for m in fused) and not any(m.deploy for m in branched)
    old = {k: v for k, v in deploy.key().as_dict().items() if k != "form"}
    assert MeasurementKey.from_dict(old).form == "deploy"  # keys written before forms


def test_export_writes_the_fused_form():
    from nasscale.export.to_onnx import deployable
    from nasscale.modules.reparam import RepConv

    spec, model, _, _ = deployable("mobileone_s0", None, 64, normalise=False)
    assert spec.deployed
    assert all(m.deploy for m in model.modules() if isinstance(m, RepConv))


# --- the search space -------------------------------------------------------------------------

def test_mobileone_like_contains_every_mobileone_in_its_train_form():
    from nasscale.search.space_io import load_space

    space = load_space("mobileone_like")
    assert set(space.contains) == set(MOBILEONE)
    for name in MOBILEONE:
        assert space.contains_network(nasscale.load(name)), name
        assert not space.contains_network(nasscale.reparameterize(name))


def test_branches_change_the_trained_network_not_the_deployed_one():
    from optuna.trial import FixedTrial

    from nasscale.search.space_io import load_space

    space = load_space("mobileone_like")
    params = space.params_for(nasscale.load("mobileone_s1"))
    four = space.sample(FixedTrial({**params, **{f"s{i}.branches": 4 for i in range(4)}}))
    one = space.sample(FixedTrial(params))
    assert nasscale.count(four).params > nasscale.count(one).params
    a, b = nasscale.count(four.deploy_form()), nasscale.count(one.deploy_form())
    assert (a.params, a.flops) == (b.params, b.flops)


def test_a_space_stem_kind_is_checked(tmp_path):
    from nasscale.search.space_io import space_from_data

    data = {"name": "x", "resolution": [64], "stem": {"kind": "mbconv", "width": 16},
            "stages": [{"stride": 2, "depth": [1], "width": 16, "kinds": ["mobileone"]}]}
    with pytest.raises(SpecError, match=r"stem.kind: must be one of conv, repconv"):
        space_from_data(data)


def test_pruning_keeps_the_widths_of_gcd_grouped_convs():
    """FastViT's downsampling and head convs have one group per input channel (gcd of the two
    widths): cutting either width would make them denser, so pruning keeps both, and a FLOPs
    target is met by the other widths with fewer parameters too."""
    from nasscale.transfer.groups import prunable, width_groups

    spec = prunable(nasscale.load("fastvit_t8"))
    rn = nasscale.resolve(spec)
    tied = {i for i, rb in enumerate(rn.blocks) if rb.spec.ties_widths()}
    assert tied
    for g in width_groups(spec):
        if any(m.block in tied or m.block is not None and m.block + 1 in tied
               for m in g.members if g.role == "out"):
            assert g.widths_below() == [], g.name
    assert any(g.widths_below() for g in width_groups(spec))
