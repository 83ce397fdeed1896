"""Search spaces: every shipped space contains the networks it claims; sampling inverts; bad
spaces give errors naming the field."""
import optuna
import pytest

import nasscale
from nasscale.errors import SpecError
from nasscale.search import load_space, same_architecture, space_names
from nasscale.search.space import NotInSpace
from nasscale.search.space_io import space_from_data

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.parametrize("space_name", space_names())
def test_shipped_space_contains_its_named_networks(space_name):
    space = load_space(space_name)
    assert space.contains, f"{space_name} claims no named network"
    for name in space.contains:
        network = nasscale.load(name)
        params = space.params_for(network)
        sampled = space.sample(optuna.trial.FixedTrial(params))
        assert same_architecture(sampled, network), name
        cost, ref = nasscale.count(sampled), nasscale.count(network)
        assert (cost.params, cost.flops) == (ref.params, ref.flops), name


def test_required_spaces_are_shipped():
    assert {"mobilenet_v3_like", "efficientnet_like", "mobilevit_hybrid"} <= set(space_names())
    assert "mobilevit_xs" in load_space("mobilevit_hybrid").contains
    assert {"mobilenet_v3_large", "mobilenet_v3_small"} <= set(
        load_space("mobilenet_v3_like").contains)
    assert "efficientnet_b0" in load_space("efficientnet_like").contains
    assert {"mobilenet_v4_conv_small", "mobilenet_v4_conv_medium"} <= set(
        load_space("mobilenet_v4_like").contains)


def test_mobilenet_v4_space_searches_uib_variants_per_layer():
    space = load_space("mobilenet_v4_like")
    params = space.params_for(nasscale.load("mobilenet_v4_conv_medium"))
    # the medium's stage 3 FFN (a0 k0) and ConvNeXt-like (a3 k0) layers
    assert params["s4.l6.kernel_size"] == 0 and params["s4.l6.start_kernel"] == 0
    assert params["s4.l5.kernel_size"] == 0 and params["s4.l5.start_kernel"] == 3
    with pytest.raises(SpecError, match="0 \\(none\\) only for uib"):
        space_from_data({**_v4_data(), "stages": [
            {"stride": 2, "depth": [1], "width": 32, "kinds": ["mbconv"],
             "kernel_size": [0, 3]}]})


def test_mobilenet_v4_space_offers_mobile_mqa_in_its_late_slots():
    from nasscale.specs import MobileMQASpec

    space = load_space("mobilenet_v4_like")
    largest = space.largest()
    mqa = [st.block for st in largest.stages if isinstance(st.block, MobileMQASpec)]
    assert [(b.out_channels, b.num_heads, b.key_dim, b.kv_stride) for b in mqa] == [
        (160, 4, 64, 2), (256, 8, 64, 1)]
    params = space.params_for(largest)
    assert params["s4.attn"] and params["s5.attn"] and params["s4.attn.kv_stride"] == 2
    back = space.sample(optuna.trial.FixedTrial(params))
    assert same_architecture(back, largest)


def _v4_data():
    return {"name": "x", "family": "mobilenet_v4", "num_classes": 10, "resolution": [32],
            "stem": {"width": 16}, "head": {}}


@pytest.mark.parametrize("space_name", space_names())
def test_random_samples_resolve_and_invert(space_name):
    space = load_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(25):
        trial = study.ask()
        net = space.sample(trial)
        study.tell(trial, 0.0)
        assert nasscale.count(net).flops > 0
        back = space.sample(optuna.trial.FixedTrial(space.params_for(net)))
        assert same_architecture(back, net)
        for stage in net.stages:  # every width is a multiple of 8
            assert stage.block.out_channels % 8 == 0


def test_network_outside_the_space_says_why():
    space = load_space("mobilenet_v3_like")
    with pytest.raises(NotInSpace, match="resolution: 256 not among"):
        space.params_for(nasscale.load("mobilenet_v3_large").replace(resolution=256))
    with pytest.raises(NotInSpace):
        space.params_for(nasscale.load("efficientnet_b0"))
    assert not space.contains_network(nasscale.load("mobilenet_v2"))


BASE = {"name": "s", "resolution": [64], "stem": {"width": 16},
        "stages": [{"stride": 2, "depth": [1, 2], "width": {"min": 16, "max": 32},
                    "kinds": ["mbconv"], "expand_ratio": [3, 6]}]}


def _with(**changes):
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    stage = dict(BASE["stages"][0])
    stage.update(changes.pop("stage", {}))
    data["stages"] = [stage]
    data.update(changes)
    return data


@pytest.mark.parametrize("data, message", [
    (_with(stage={"kinds": []}), "stages[0]: kinds: must list at least one choice"),
    (_with(stage={"kinds": ["mbconvv"]}), "stages[0]: kinds: choice 'mbconvv' is not allowed"),
    (_with(stage={"width": {"min": 12, "max": 32}}), "stages[0].width: must be a multiple of 8"),
    (_with(stage={"width": 20}), "stages[0].width: must be a multiple of 8"),
    (_with(stage={"kernel_size": [3, 4]}), "kernel_size: choice 4 is not an odd kernel"),
    (_with(stage={"depth": []}), "depth: must list at least one choice"),
    (_with(stage={"stride": 3}), "stride: must be 1 or 2"),
    (_with(stage={"per_layer": ["kernel"]}), "per_layer: unknown layer field 'kernel'"),
    (_with(stage={"kernell_size": [3]}), "stages[0].kernell_size: unknown field (did you mean "
                                         "'kernel_size'?)"),
    (_with(stage={"se_form": "0.25-in"}), "stages[0].se_form: must look like"),
    (_with(resolution=[]), "resolution: must be a list of integers"),
    (_with(stage={"attention": {"transformer_dim": {"min": 72, "max": 72}, "num_heads": [5]}}),
     "stages[0].attention: attention.num_heads: transformer width 72 is not divisible by 5"),
    (_with(stage={"attention": {"kind": "swin", "transformer_dim": 64}}),
     "stages[0].attention.kind: must be mobilevit"),
    (_with(stages=[]), "stages: must be a non-empty list"),
])
def test_invalid_spaces_name_the_field(data, message):
    with pytest.raises(SpecError) as err:
        space_from_data(data)
    assert message in str(err.value)


def test_invalid_space_file_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nresolution: [64]\nstem: {width: 16}\nstages:\n"
                    "  - {stride: 2, depth: [1], width: 16, kinds: [mbconv], expand_ratio: []}\n")
    with pytest.raises(SpecError, match=r"bad.yaml:5: stages\[0\]: expand_ratio: must list"):
        load_space(str(path))
    with pytest.raises(nasscale.NasscaleError, match="unknown search space 'mobilenet_v3_lik'"):
        load_space("mobilenet_v3_lik")


def test_per_layer_fields_become_separate_parameters():
    space = load_space("mobilenet_v3_like")
    params = space.params_for(nasscale.load("mobilenet_v3_large"))
    assert params["s3.depth"] == 4 and params["s3.kernel_size"] == 3
    assert [params[f"s3.l{j}.expand_ratio"] for j in range(4)] == [6.0, 2.5, 2.3, 2.3]


def test_hybrid_space_can_switch_attention_off():
    space = load_space("mobilevit_hybrid")
    params = space.params_for(nasscale.load("mobilevit_xs"))
    assert params["s2.attn"] is True and params["s3.attn.depth"] == 4
    off = space.sample(optuna.trial.FixedTrial({**params, "s2.attn": False, "s3.attn": False,
                                                "s4.attn": False}))
    assert {s.block.kind for s in off.stages} == {"mbconv"}
    assert nasscale.count(off).total.attention == 0



def test_a_slot_can_end_with_a_mobilevit_v2_block():
    import dataclasses

    from nasscale.specs import MobileViTv2Spec

    space = load_space("mobilevit_hybrid")
    v2 = dataclasses.replace(space, stages=tuple(
        st if st.attention is None else dataclasses.replace(st, attention=dataclasses.replace(
            st.attention, kind="mobilevit2", num_heads=(1,)))
        for st in space.stages))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = 0
    for _ in range(15):
        trial = study.ask()
        net = v2.sample(trial)
        study.tell(trial, 0.0)
        blocks = [st.block for st in net.stages if st.block.kind == "mobilevit2"]
        assert all(isinstance(b, MobileViTv2Spec) and b.num_heads == 1 for b in blocks)
        assert not [st for st in net.stages if st.block.kind == "mobilevit"]
        seen += len(blocks)
        assert nasscale.count(net).flops > 0
        back = v2.sample(optuna.trial.FixedTrial(v2.params_for(net)))
        assert same_architecture(back, net)
    assert seen > 0
    with pytest.raises(NotInSpace, match="mobilevit2"):  # a v1 block is not a point of it
        v2.params_for(nasscale.load("mobilevit_xs"))
    with pytest.raises(SpecError, match="num_heads"):
        space_from_data({**_v4_data(), "stages": [{"stride": 2, "depth": [1], "width": {
            "min": 32, "max": 32}, "kinds": ["mbconv"], "expand_ratio": [4],
            "attention": {"kind": "mobilevit2", "transformer_dim": {"min": 64, "max": 64},
                          "num_heads": [4]}}]})
    two = space_from_data({**_v4_data(), "stages": [{"stride": 2, "depth": [1], "width": {
        "min": 32, "max": 32}, "kinds": ["mbconv"], "expand_ratio": [4],
        "attention": {"kind": "mobilevit2", "transformer_dim": {"min": 64, "max": 64}}}]})
    assert two.stages[0].attention.num_heads == (1,)  # one query by default


@pytest.mark.parametrize("n", ["100001", "100000000", "0", "²", "9" * 5000, "x"])
def test_the_sample_count_of_a_space_source_is_bounded(n):
    from nasscale.errors import NasscaleError
    from nasscale.search import parse_source

    with pytest.raises(NasscaleError, match=r"must be an integer >= 1 and <= 100,000 "
                                            r"\(space:NAME:N\)"):
        parse_source(f"space:mobilenet_v3_like:{n}")
    assert parse_source("space:mobilenet_v3_like:100000").n == 100_000
