"""Text form and YAML: lossless round trips and clear errors."""
import pytest
import yaml

import nasscale
from nasscale.errors import SpecError
from nasscale.grammar import (
    FORMS,
    block_from_data,
    block_to_data,
    dump_network,
    format_block,
    format_stage,
    load_network_file,
    network_from_data,
    network_to_data,
    parse_block,
    parse_stage,
)
from nasscale.specs import BLOCK_KINDS
from nasscale.specs.random import random_network

from conftest import TINY

SEEDS = range(60)


def all_blocks(spec):
    yield from spec.stem
    for stage in spec.stages:
        yield stage.block
    yield from spec.head.blocks


def test_text_round_trip_on_every_block_of_every_named_architecture(zoo_names):
    seen = set()
    for name in zoo_names:
        spec = nasscale.load(name)
        for block in all_blocks(spec):
            text = format_block(block)
            assert parse_block(text) == block, text
            assert format_block(parse_block(text)) == text
            seen.add(block.kind)
        for stage in spec.stages:
            assert parse_stage(format_stage(stage)) == stage
    for rows in TINY.values():  # a kind no published network uses yet is still round-tripped
        for row in rows:
            stage = parse_stage(row)
            assert parse_stage(format_stage(stage)) == stage
            seen.add(stage.block.kind)
    assert seen == set(BLOCK_KINDS)


def test_the_zoo_uses_every_block_kind(zoo_names):
    """A kind is added with the published networks that use it (a kind no network uses is a
    toy): the golden tests then check its costs against the reference."""
    seen = {block.kind for name in zoo_names for block in all_blocks(nasscale.load(name))}
    assert seen == set(BLOCK_KINDS), f"no published network uses {set(BLOCK_KINDS) - seen}"


@pytest.mark.parametrize("seed", SEEDS)
def test_round_trips_on_random_specs(seed):
    spec = random_network(seed)
    for block in all_blocks(spec):
        assert parse_block(format_block(block)) == block
        assert block_from_data(block_to_data(block), "x") == block
    assert network_from_data(network_to_data(spec)) == spec
    assert network_from_data(yaml.safe_load(dump_network(spec))) == spec


def test_yaml_round_trip_of_every_named_architecture(zoo_names, tmp_path):
    for name in zoo_names:
        spec = nasscale.load(name)
        path = tmp_path / f"{name}.yaml"
        path.write_text(dump_network(spec))
        assert load_network_file(path) == spec
        assert nasscale.load(str(path)) == spec


def test_text_is_canonical_and_carries_se_base_gate_and_activation():
    b0 = parse_block("mbconv_k5_s2_e6_c40_silu_se0.25-in-sigmoid-silu-d1")
    v3 = parse_block("mbconv_k5_s2_m72_c40_relu_se0.25-mid-hsigmoid-relu-d8")
    assert (b0.se.base, b0.se.gate, b0.se.activation, b0.se.divisor) == ("in", "sigmoid", "silu", 1)
    assert (v3.se.base, v3.se.gate, v3.se.divisor) == ("mid", "hsigmoid", 8)
    # the MobileNetV3 bneck is exactly this MBConv
    assert parse_block("bneck_k5_s2_m72_c40_relu_se").as_mbconv() == v3
    # token order does not matter on input; output is canonical
    assert format_block(parse_block("mbconv_c40_silu_e6_k5_s2")) == "mbconv_k5_s2_e6_c40_silu"
    assert format_block(parse_block("mbconv_k3_s1_e6_c16_relu6_noskip")).endswith("_noskip")


@pytest.mark.parametrize("text, message", [
    ("mbconvv_k3_s1_e6_c16_relu6", "unknown block code 'mbconvv' in 'mbconvv_k3_s1_e6_c16_relu6' "
                                   "(did you mean 'mbconv'?)"),
    ("mbconv_k3_s1_e6_c16_relu6_se0.25", "unknown token 'se0.25'"),
    ("mbconv_k3_s1_e6_relu6", "lacks c<int> (out_channels)"),
    ("mbconv_k3_k5_e6_c16_relu6", "token 'k5' repeats field 'kernel_size'"),
    ("mbconv_k4_s1_e6_c16_relu6", "kernel_size: must be an odd integer"),
    ("conv_k3_s2_c0_relu", "out_channels: must be an integer >= 1 and <= 65,536, got 0"),
    ("", "non-empty string"),
])
def test_parse_errors_name_token_and_allowed(text, message):
    with pytest.raises(SpecError) as err:
        parse_block(text)
    assert message in str(err.value)


def test_unknown_token_lists_what_the_kind_takes():
    with pytest.raises(SpecError) as err:
        parse_block("bneck_k3_m16_c16_relu_x2")
    assert "k<int> (kernel_size)" in str(err.value) and "se (se=True)" in str(err.value)


def test_stage_repeats():
    assert parse_stage("mbconv_r3_k3_s2_e6_c24_relu6").repeats == 3
    assert parse_stage("mbconv_k3_s2_e6_c24_relu6").repeats == 1
    with pytest.raises(SpecError, match="unknown token 'r3'"):
        parse_block("mbconv_r3_k3_s2_e6_c24_relu6")
    with pytest.raises(SpecError, match="repeats"):
        parse_stage("mbconv_r0_k3_s2_e6_c24_relu6")


def test_every_kind_has_a_text_form():
    assert set(FORMS) == set(BLOCK_KINDS)


def test_mapping_form_of_blocks_and_stages():
    data = {"name": "m", "stem": [{"kind": "conv", "out_channels": 16, "stride": 2}],
            "stages": [{"kind": "mbconv", "out_channels": 24, "expand_ratio": 6, "repeats": 2,
                        "se": {"ratio": 0.25, "base": "mid", "gate": "hsigmoid", "divisor": 8}},
                       {"block": "ds_k3_s2_c32_relu", "repeats": 1}]}
    spec = network_from_data(data)
    assert spec.stages[0].repeats == 2 and spec.stages[0].block.se.base == "mid"
    with pytest.raises(SpecError,
                       match=r"stages\[0\].expand: unknown field .*did you mean 'expand_ratio'"):
        network_from_data({"name": "m", "stages": [{"kind": "mbconv", "out_channels": 8,
                                                    "expand": 6}]})


def test_yaml_errors_name_file_line_and_field(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("name: x\nstem: [conv_k3_s2_c16_relu]\nstages:\n"
                    "  - mbconv_r1_k3_s1_e6_c16_relu6\n  - mbconv_r2_k3_s5_e6_c24_relu6\n")
    with pytest.raises(SpecError) as err:
        load_network_file(path)
    assert str(err.value).startswith(f"{path}:5: stages[1]: block ")
    assert "stride: must be one of 1, 2, got 5" in str(err.value)

    path.write_text("name: x\nresolutoin: 224\nstages: [mbconv_r1_k3_s1_e6_c16_relu6]\n")
    with pytest.raises(SpecError,
                       match=r":2: resolutoin: unknown field \(did you mean 'resolution'\?\)"):
        load_network_file(path)

    path.write_text("name: x\nstages: [\n")
    with pytest.raises(nasscale.NasscaleError, match="not valid YAML"):
        load_network_file(path)


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\nstages: []\n")
    with pytest.raises(nasscale.NasscaleError, match="not valid YAML"):
        load_network_file(path)
