"""`nasscale scale`: table, JSON, YAML output that `show` loads, budgets, one-line errors."""
import json

import pytest

import nasscale
from nasscale.cli import main
from nasscale.scaling import compound


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_phi_6_table(capsys):
    code, out, err = run(capsys, "scale", "efficientnet_b0", "--phi", "6")
    assert code == 0 and err == ""
    scaled = nasscale.count(compound(nasscale.load("efficientnet_b0"), 6))
    for text in ("compound scaling phi=6 (alpha=1.2 depth, beta=1.1 width, gamma=1.15",
                 "beta^phi = 1.1^6 = 1.7716", "alpha^phi = 1.2^6 = 2.9860",
                 "518.1 -> 520 (multiple of 4)", "stage 7", "1->3", "320->568",
                 "conv_k1_s1_c2264_silu", f"{scaled.flops:,}", f"{scaled.params:,}",
                 "5,288,548", "385,814,752", "(alpha*beta^2*gamma^2)^phi = 1.9203^6 = x50.139",
                 "1 MAC = 1 FLOP"):
        assert text in out, text


def test_json_has_the_documented_fields(capsys):
    code, out, _ = run(capsys, "scale", "efficientnet_b0", "--phi", "2", "--format", "json")
    data = json.loads(out)
    spec = compound(nasscale.load("efficientnet_b0"), 2)
    cost = nasscale.count(spec)
    assert code == 0
    assert {k: data[k] for k in ("base", "phi", "resolution", "params", "flops")} == {
        "base": "efficientnet_b0", "phi": 2, "resolution": 296, "params": cost.params,
        "flops": cost.flops}
    assert data["width"] == pytest.approx(1.21) and data["depth"] == pytest.approx(1.44)
    assert data["flops_ratio"] == pytest.approx(cost.flops / 385_814_752)
    assert data["ideal_flops_ratio"] == pytest.approx((1.2 * 1.1 ** 2 * 1.15 ** 2) ** 2)
    assert [s["scaled"]["repeats"] for s in data["stages"] if s["label"].startswith("stage")] \
        == [st.repeats for st in spec.stages]
    assert data["target"] is None and "multiply-accumulates" in data["flops_convention"]


def test_phi_0_is_the_base(capsys):
    code, out, _ = run(capsys, "scale", "mobilenet_v3_large", "--phi", "0", "--format", "json")
    data = json.loads(out)
    assert (data["params"], data["flops"], data["resolution"]) == (5_483_032, 216_589_760, 224)
    assert data["flops_ratio"] == 1.0


def test_output_yaml_round_trips_through_show(capsys, tmp_path):
    path = tmp_path / "scaled.yaml"
    code, out, _ = run(capsys, "scale", "efficientnet_b0", "--phi", "6", "-o", str(path))
    assert code == 0 and f"wrote {path}" in out
    loaded = nasscale.load(str(path))
    assert loaded == compound(nasscale.load("efficientnet_b0"), 6)
    code, shown, _ = run(capsys, "show", str(path), "--format", "json")
    assert json.loads(shown)["flops"] == nasscale.count(loaded).flops
    code, again, _ = run(capsys, "show", str(path), "--format", "yaml")
    assert again == path.read_text()


def test_explicit_coefficients_reproduce_a_published_variant(capsys):
    code, out, _ = run(capsys, "scale", "efficientnet_b0", "--width", "2.0", "--depth", "3.1",
                       "--resolution", "600", "--format", "json")
    data = json.loads(out)
    assert (data["params"], data["flops"], data["phi"]) == (66_347_960, 37_745_884_192, None)
    code, out, _ = run(capsys, "scale", "mobilenet_v2", "--width", "0.35")
    assert code == 0 and "explicit coefficients" in out and "1,677,128" in out
    code, out, _ = run(capsys, "scale", "convnext_tiny", "--resolution", "1.15x", "--format",
                       "json")
    assert json.loads(out)["resolution"] == 256  # 257.6 on ConvNeXt's grid of 32


def test_yaml_format_and_name(capsys):
    code, out, _ = run(capsys, "scale", "efficientnet_b0", "--phi", "1", "--name", "mine",
                       "--dropout", "0.3", "--format", "yaml")
    assert code == 0 and "name: mine" in out and "dropout: 0.3" in out


@pytest.mark.parametrize("option, budget, metric", [
    ("--target-flops", "2G", "flops"), ("--target-params", "6M", "params"),
    ("--target-flops", "1.5e9", "flops")])
def test_target_finds_the_largest_phi_and_reports_how_close(capsys, option, budget, metric):
    code, out, _ = run(capsys, "scale", "efficientnet_b0", option, budget, "--format", "json")
    data = json.loads(out)
    target = data["target"]
    assert code == 0 and target["metric"] == metric
    assert data[metric] == target["used"] <= target["budget"] < target["next"]
    assert target["next_phi"] == pytest.approx(data["phi"] + 0.001)
    code, out, _ = run(capsys, "scale", "efficientnet_b0", option, budget)
    assert "largest phi on a 0.001 grid" in out and "of the target" in out


@pytest.mark.parametrize("argv, message", [
    (["--phi", "-1"], "--phi: must be a number >= 0, got '-1'"),
    (["--phi", "abc"], "--phi: must be a number >= 0, got 'abc'"),
    (["--phi", "nan"], "--phi: must be a number >= 0"),
    (["--phi", "1", "--alpha", "0.9"], "--alpha: must be a number >= 1, got '0.9'"),
    (["--phi", "1", "--gamma", "0.5"], "--gamma: must be a number >= 1"),
    (["--target-flops", "2X"], "--target-flops: must be a positive number with an optional K"),
    (["--target-params=-5M"], "--target-params: must be a positive number"),
    (["--target-flops", "1M"], "efficientnet_b0 itself needs 385,814,752 FLOPs"),
    ([], "give exactly one of --phi, --width/--depth/--resolution, --target-flops or"),
    (["--phi", "1", "--width", "2"], "(got --phi, --width/--depth/--resolution)"),
    (["--width", "1.1", "--alpha", "1.3"], "--alpha/--beta/--gamma apply to --phi"),
    (["--width", "0"], "--width: must be a number > 0 and <= 100, got '0'"),
    (["--resolution", "260.5"], "--resolution: must be an input size in pixels"),
    (["--phi", "1", "--dropout", "1.5"], "dropout: must be a number in [0, 1)"),
])
def test_bad_input_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, "scale", "efficientnet_b0", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_unknown_base_is_one_line(capsys):
    code, out, err = run(capsys, "scale", "efficientnet_b9", "--phi", "1")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "unknown architecture 'efficientnet_b9' (did you mean" in err


def test_unwritable_output_is_one_line(capsys, tmp_path):
    code, out, err = run(capsys, "scale", "mobilenet_v2", "--phi", "1", "-o",
                         str(tmp_path / "no" / "such" / "dir.yaml"))
    assert code == 2 and "cannot write" in err and err.count("\n") == 1


def test_show_regenerates_the_published_variants(capsys):
    code, out, _ = run(capsys, "show", "efficientnet_b7")
    assert code == 0 and "published params: 66,347,960 (matches)" in out
    assert "published FLOPs: 37,745,884,192 (matches)" in out
    code, out, _ = run(capsys, "show", "mobilenet_v2_140", "--format", "json")
    assert json.loads(out)["params"] == 6_108_776


def test_bad_variant_in_a_family_file_names_file_line_and_field(capsys, tmp_path, monkeypatch):
    (tmp_path / "archs").mkdir()
    (tmp_path / "archs" / "f.yaml").write_text(
        "family: f\nnetworks:\n  n1:\n    stages: [mbconv_r1_k3_s1_e6_c16_relu6]\n"
        "variants:\n  n2:\n    base: n1\n    width: -1\n  n3:\n    base: n11\n"
        "  n4:\n    base: n1\n    widht: 2\n")
    monkeypatch.setenv("NASSCALE_SPACES", str(tmp_path))
    with pytest.raises(nasscale.NasscaleError, match=r"f.yaml:8: variants.n2.width: must be a "
                                                     r"number > 0, got -1"):
        nasscale.load("n2")
    with pytest.raises(nasscale.NasscaleError, match=r"f.yaml:10: variants.n3.base: must name a "
                                                     r"network .*\(did you mean 'n1'\?\)"):
        nasscale.load("n3")
    with pytest.raises(nasscale.NasscaleError, match=r"f.yaml:13: variants.n4.widht: unknown "
                                                     r"field \(did you mean 'width'\?\)"):
        nasscale.load("n4")
    assert nasscale.count("n1").params > 0


def test_a_resolution_too_small_for_the_network_is_one_line(capsys):
    code, out, err = run(capsys, "scale", "convnext_tiny", "--resolution", "16")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "feature map shrinks to 0x0" in err and "(scaling convnext_tiny" in err


def test_a_custom_yaml_base_uses_the_default_policy(capsys, tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nresolution: 160\nstem: [conv_k3_s2_c16_hswish]\n"
                    "stages: [mbconv_r2_k3_s2_e4_c24_relu]\nhead: {blocks: [conv_k1_c96_relu]}\n")
    code, out, _ = run(capsys, "scale", str(path), "--phi", "1", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["base"] == "mine" and data["resolution"] == 184  # 184 = 8 * 23
    assert [s["scaled"]["repeats"] for s in data["stages"]][1] == 3
