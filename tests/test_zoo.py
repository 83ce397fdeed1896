"""Golden tests: the published networks, regenerated from YAML, match the published figures."""
import math
import re
from pathlib import Path

import pytest

import nasscale
from nasscale import zoo

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference_counts.md"

CONV_FAMILIES = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
                 "efficientnet_b0", "efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l",
                 "efficientnet_v2_xl", "convnext_tiny", "convnext_small", "convnext_base",
                 "convnext_large", "convnext_xlarge"]

# The published integers (torchvision 0.29 / timm 1.0), as in fixtures/reference_counts.md.
PUBLISHED = {
    "mobilenet_v2": (224, 3_504_872, 300_774_272),
    "mobilenet_v3_large": (224, 5_483_032, 216_589_760),
    "mobilenet_v3_small": (224, 2_542_856, 56_510_400),
    "mobilenet_v1": (224, 4_231_976, 568_740_352),
    "efficientnet_b0": (224, 5_288_548, 385_814_752),
    "efficientnet_v2_s": (384, 21_458_488, 8_365_617_152),
    "efficientnet_v2_m": (480, 54_139_356, 24_582_460_384),
    "efficientnet_v2_l": (480, 118_515_272, 56_079_699_008),
    "convnext_tiny": (224, 28_589_128, 4_455_531_264),
    "convnext_small": (224, 50_223_688, 8_683_712_256),
    "convnext_base": (224, 88_591_464, 15_354_729_472),
    "convnext_large": (224, 197_767_336, 34_361_433_600),
}


def test_zoo_lists_every_convolutional_family_member():
    assert set(CONV_FAMILIES) <= set(nasscale.names())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_exact_published_params_and_flops(name):
    resolution, params, flops = PUBLISHED[name]
    spec = nasscale.load(name)
    cost = nasscale.count(spec)
    assert (spec.resolution, cost.params, cost.flops) == (resolution, params, flops)
    assert (spec.expected.params, spec.expected.flops) == (params, flops)


def test_reference_table_agrees_with_the_yaml_files():
    rows = re.findall(r"^\| (\w+) \| (\d+) \| ([\d,]+) \| ([\d,]+) \|", REFERENCE.read_text(), re.M)
    checked = 0
    for name, res, params, flops in rows:
        if name in nasscale.names():
            cost = nasscale.count(name)
            assert (int(res), cost.params, cost.flops) == (
                nasscale.load(name).resolution, int(params.replace(",", "")),
                int(flops.replace(",", ""))), name
            checked += 1
    assert checked >= len(PUBLISHED)


def significant(value: float, figure: float) -> bool:
    """``value`` rounds to the paper's figure at the precision the paper printed it with."""
    digits = len(repr(figure / 10 ** math.floor(math.log10(figure))).rstrip("0").rstrip(".")
                 .replace(".", "")) if figure else 1
    scale = 10 ** (math.floor(math.log10(figure)) - digits + 1)
    return round(value / scale) * scale == pytest.approx(figure)


@pytest.mark.parametrize("name", [n for n in CONV_FAMILIES if n not in PUBLISHED])
def test_derived_networks_match_the_papers_rounded_figures(name):
    spec = nasscale.load(name)
    cost = nasscale.count(spec)
    assert spec.expected.paper_params and spec.expected.paper_flops
    assert significant(cost.params, spec.expected.paper_params), cost.params
    # Papers count FLOPs with small convention differences (SE products, element-wise ops):
    # within 1 % of the printed figure.
    assert cost.flops == pytest.approx(spec.expected.paper_flops, rel=0.01)


def test_every_named_architecture_cites_its_paper_and_states_expectations():
    for name in nasscale.names():
        spec = nasscale.load(name)
        assert spec.paper and spec.family, name
        assert spec.expected is not None, name
        cost = nasscale.count(spec)
        if spec.expected.params is not None:
            assert cost.params == spec.expected.params, name
        if spec.expected.flops is not None:
            assert cost.flops == spec.expected.flops, name


def test_unknown_name_suggests_and_lists():
    with pytest.raises(nasscale.NasscaleError, match=r"unknown architecture 'mobilenet_v2x' "
                                                     r"\(did you mean 'mobilenet_v2'\?\); known:"):
        nasscale.load("mobilenet_v2x")


def test_family_file_given_as_network_is_a_clear_error():
    path = zoo.spaces_dir() / "archs" / "convnext.yaml"
    with pytest.raises(nasscale.NasscaleError, match="is a family file; name one of its "
                                                     "networks: convnext_tiny"):
        nasscale.load(str(path))


def test_bad_family_file_is_reported_with_file_and_field(tmp_path, monkeypatch):
    (tmp_path / "archs").mkdir()
    (tmp_path / "archs" / "f.yaml").write_text(
        "family: f\nnetworks:\n  n1:\n    stages: [mbconv_r1_k3_s1_e6_c16_relu7]\n")
    monkeypatch.setenv("NASSCALE_SPACES", str(tmp_path))
    with pytest.raises(nasscale.NasscaleError, match=r"f.yaml:4: networks.n1.stages\[0\]: "
                                                     r"unknown token 'relu7'"):
        nasscale.load("n1")
