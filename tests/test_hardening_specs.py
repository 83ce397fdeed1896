"""Hostile input to the readers, the specs, the latency and weights commands and their output
paths: one line on stderr naming the field or option and what is allowed, exit 2 — never a
traceback, a hang or a silent change of meaning."""
import os
import time

import pytest
import yaml

from nasscale.cli import main
from nasscale.errors import NasscaleError, SpecError
from nasscale.grammar import parse_stage
from nasscale.grammar.yaml_io import MAX_YAML_DEPTH, network_from_data, read_yaml
from nasscale.reports.paths import output_dir, output_file
from nasscale.specs.common import MAX_CHANNELS, MAX_RESOLUTION

NET = "name: t\nstages: [conv_k3_s2_c8_relu]\n"


def one_error(capsys, argv, *needles):
    """``argv`` exits 2 with one line on stderr holding every needle."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def write(tmp_path, text, name="net.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- YAML: nesting, repeated keys, huge integers --------------------------------------------

@pytest.mark.parametrize("text", [
    "[" * 10_000 + "]" * 10_000,
    "{a: " * 10_000 + "1" + "}" * 10_000,
    "".join(f"{' ' * i}k:\n" for i in range(200)) + " " * 200 + "k: 1\n",
])
def test_deep_nesting_is_one_error_naming_the_file_and_line(tmp_path, capsys, text):
    path = write(tmp_path, text)
    one_error(capsys, ["show", path], f"{path}:", f"nested more than {MAX_YAML_DEPTH} levels")


def test_nesting_up_to_the_bound_reads(tmp_path):
    deepest = "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH
    assert read_yaml(write(tmp_path, deepest))[0] is not None
    with pytest.raises(NasscaleError, match="nested more than"):
        read_yaml(write(tmp_path, "[" + deepest + "]"))


@pytest.mark.parametrize("text, key", [
    ("name: t\nstages: [conv_c8]\nrounding: {divisor: 8, divisor: 4}\n", "'divisor'"),
    ("{name: t, name: u, stages: [conv_c8]}\n", "'name'"),
    ("name: t\nstages:\n  - {block: conv_c8, repeats: 1, repeats: 3}\n", "'repeats'"),
])
def test_a_key_repeated_in_a_flow_mapping_is_refused(tmp_path, capsys, text, key):
    one_error(capsys, ["show", write(tmp_path, text)], f"duplicate key {key}",
              "first given on line", "column")


def test_merge_keys_still_override(tmp_path):
    text = ("a: &a {p: 1, q: 1}\nb: {<<: *a, p: 2}\n"
            "x: {y: {c: &c {<<: *a, q: 3}}}\nd: {<<: *c, p: 4}\n")
    assert read_yaml(write(tmp_path, text, "m.yaml"))[0] == yaml.safe_load(text)


def test_an_integer_too_long_to_read(tmp_path, capsys):
    path = write(tmp_path, f"name: t\nresolution: {'9' * 5000}\nstages: [conv_c8]\n")
    one_error(capsys, ["show", path], f"{path}:2:", "too long to read")


def test_a_latency_table_nested_too_deeply(tmp_path, capsys):
    path = write(tmp_path, "[" * 100_000 + "]" * 100_000, "t.json")
    one_error(capsys, ["lut", "show", path], f"{path}: not a readable latency table",
              "nested too deeply")


# --- absurd sizes in specs: one bound per field, for the text form and YAML alike --------------

@pytest.mark.parametrize("stage, message", [
    ("conv_c65537", "out_channels: must be an integer >= 1 and <= 65,536, got 65537"),
    ("conv_k65_c8", "kernel_size: must be an integer >= 1 and <= 63"),
    ("mbconv_r100000000_k3_e6_c8", "repeats: must be an integer >= 1 and <= 1,000"),
    ("mbconv_r0_k3_e6_c8", "repeats: must be an integer >= 1 and <= 1,000, got 0"),
    ("mbconv_k3_e65_c8", "expand_ratio: must be a number > 0 and <= 64"),
    ("mbconv_k3_e1e400_c8", "expand_ratio: must be a number > 0 and <= 64, got inf"),
    ("bneck_k3_m100000_c8", "mid_channels: must be an integer >= 1 and <= 65,536"),
    ("patchify_p2048_c8", "patch_size: must be an integer >= 1 and <= 1,024"),
    ("swin_w5000_h3_e4_c96", "window_size: must be an integer >= 1 and <= 1,024"),
    ("conv_c" + "9" * 5000, "out_channels: must be at most 65,536, got a number of 5,000 digits"),
    ("mbconv_k3_e6_c8_se0.25-in-sigmoid-relu-d" + "9" * 30, "se.divisor: must be at most"),
])
def test_text_form_bounds(stage, message):
    t0 = time.perf_counter()
    with pytest.raises(SpecError) as err:
        parse_stage(stage)
    assert message in str(err.value) and len(str(err.value)) < 300
    assert time.perf_counter() - t0 < 1


def test_bounds_themselves_are_allowed():
    assert parse_stage(f"conv_k63_c{MAX_CHANNELS}").block.out_channels == MAX_CHANNELS
    assert parse_stage("mbconv_r1000_k3_e64_c8").repeats == 1000


@pytest.mark.parametrize("fields, message", [
    ({"resolution": 10**26}, "resolution: must be an integer >= 1 and <= 8,192"),
    ({"resolution": 224.0}, "resolution: must be an integer"),
    ({"resolution": True}, "resolution: must be an integer"),
    ({"resolution": float("nan")}, "resolution: must be an integer"),
    ({"num_classes": 10**7}, "num_classes: must be an integer >= 1 and <= 1,000,000"),
    ({"in_channels": 70000}, "in_channels: must be an integer >= 1 and <= 65,536"),
    ({"head": {"hidden": [100_000_000]}}, "hidden[0]: must be an integer >= 1 and <= 65,536"),
    ({"rounding": {"divisor": 10**9}}, "rounding.divisor: must be an integer >= 1 and <="),
    ({"stages": [{"kind": "conv", "out_channels": 100_000_000}]},
     "out_channels: must be an integer >= 1 and <= 65,536"),
    ({"stages": [{"kind": "conv", "out_channels": 8, "kernel_size": float("inf")}]},
     "kernel_size: must be an integer"),
    ({"stages": [{"kind": "mbconv", "out_channels": 8, "expand_ratio": float("nan")}]},
     "expand_ratio: must be a number > 0 and <= 64, got nan"),
    ({"stages": ["conv_r1000_c8"] * 11}, "stages: must add up to at most 10,000 blocks"),
])
def test_yaml_bounds(fields, message):
    with pytest.raises(SpecError) as err:
        network_from_data({**yaml.safe_load(NET), **fields})
    assert message in str(err.value)


def test_a_derived_width_past_the_bound(tmp_path, capsys):
    path = write(tmp_path, "name: t\nstem: [conv_k3_s2_c4096_relu]\nstages: [mbconv_k3_e64_c8]\n")
    one_error(capsys, ["show", path], "stages[0]", "mid width: must be at most 65,536 channels")


@pytest.mark.parametrize("resolution", ["0", str(MAX_RESOLUTION + 1), "1000000000"])
def test_show_resolution_out_of_bounds(capsys, resolution):
    one_error(capsys, ["show", "mobilenet_v3_small", "--resolution", resolution],
              "resolution: must be an integer >= 1 and <= 8,192")


# --- latency and scale command-line numbers -------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--threads", "999"], "--threads: must be an integer >= 1 and <= "),
    (["--threads", "two"], "--threads: must be an integer >= 1"),
    (["--batch", "100000"], "--batch: must be an integer >= 1 and <= 4,096"),
    (["--batch", "1.5"], "--batch: must be an integer"),
    (["--resolution", "0"], "--resolution: must be an integer >= 1 and <= 8,192"),
    (["--resolution", "1000000000"], "--resolution: must be an integer >= 1 and <= 8,192"),
    (["--round-seconds", "1e9"], "--round-seconds: must be a number of seconds > 0 and <= 60"),
    (["--round-seconds", "inf"], "--round-seconds: must be a number of seconds > 0 and <= 60"),
])
def test_cost_numbers(capsys, extra, message):
    t0 = time.perf_counter()
    one_error(capsys, ["cost", "mobilenet_v3_small", *extra], message)
    assert time.perf_counter() - t0 < 10


@pytest.mark.parametrize("extra, message", [
    (["--threads", "999"], "--threads: must be an integer >= 1 and <= "),
    (["--batch", "0"], "--batch: must be an integer >= 1 and <= 4,096"),
    (["--contexts", "1000000000"], "--contexts: must be an integer >= 1 and <= 100"),
    (["--contexts", "0"], "--contexts: must be an integer >= 1"),
    (["--seed", "-1"], "--seed: must be an integer >= 0"),
])
def test_lut_build_numbers(tmp_path, capsys, extra, message):
    one_error(capsys, ["lut", "build", "mobilenet_v3_small", "--quiet", "--out",
                       str(tmp_path / "t.json"), *extra], message)
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("extra, message", [
    (["--width", "1e9"], "--width: must be a number > 0 and <= 100"),
    (["--depth", "1e300"], "--depth: must be a number > 0 and <= 100"),
    (["--resolution", "99999"], "--resolution: must be an input size in pixels"),
    (["--resolution", "1e9x"], "--resolution: must be an input size in pixels"),
])
def test_scale_numbers(capsys, extra, message):
    one_error(capsys, ["scale", "efficientnet_b0", *extra], message)


# --- output paths -------------------------------------------------------------------------

def bad_paths(tmp_path):
    (tmp_path / "afile").write_text("keep")
    return [("/proc/nasscale_x", "cannot write in /proc"),
            ("/proc/nasscale_nope/x", "cannot create the folder /proc/nasscale_nope"),
            (str(tmp_path), "is a folder; give a file name"),
            (str(tmp_path / "afile" / "x"), "afile is a file, not a folder")]


def test_lut_build_unusable_out(tmp_path, capsys):
    for path, message in bad_paths(tmp_path):
        one_error(capsys, ["lut", "build", "mobilenet_v3_small", "--quiet", "--out", path],
                  f"--out {path}: ", message)
    assert (tmp_path / "afile").read_text() == "keep"


def test_weights_convert_unusable_output(tmp_path, capsys):
    for path, message in bad_paths(tmp_path):
        one_error(capsys, ["weights", "convert", "mobilenet_v3_small", "nofile.pt", "-o", path],
                  f"-o {path}: ", message)


def test_output_file_creates_folders_and_leaves_files_alone(tmp_path):
    target = tmp_path / "a" / "b" / "t.json"
    assert output_file(str(target), "--out") == target
    assert target.parent.is_dir() and os.listdir(target.parent) == []
    (tmp_path / "old.json").write_text("old")
    output_file(tmp_path / "old.json", "--out")
    assert (tmp_path / "old.json").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["a", "old.json"]
    with pytest.raises(NasscaleError, match="^--out /dev/null: is not a regular file$"):
        output_file("/dev/null", "--out")


def test_output_dir(tmp_path):
    assert output_dir(tmp_path / "x" / "y", "--out").is_dir()
    (tmp_path / "f").write_text("keep")
    with pytest.raises(NasscaleError, match="is a file, not a folder"):
        output_dir(tmp_path / "f", "--out")
    with pytest.raises(NasscaleError, match="cannot create the folder"):
        output_dir("/proc/nasscale_d", "--out")
    assert (tmp_path / "f").read_text() == "keep"


# --- state dicts with keys that are not names -------------------------------------------------

@pytest.mark.parametrize("key", [1, (1, 2)])
def test_weights_convert_of_a_state_dict_with_other_keys(tmp_path, capsys, key):
    import torch

    path = tmp_path / "w.pt"
    torch.save({key: torch.zeros(2), "a": torch.zeros(1)}, path)
    one_error(capsys, ["weights", "convert", "mobilenet_v3_small", str(path), "-o",
                       str(tmp_path / "o.pt")], str(path), f"the key {key!r}")
    assert not (tmp_path / "o.pt").exists()


def test_load_weights_of_a_mapping_with_other_keys():
    import torch

    import nasscale

    with pytest.raises(NasscaleError, match=r"the key 1 \(int\)"):
        nasscale.load_weights("mobilenet_v3_small", {1: torch.zeros(2), "a": torch.zeros(1)},
                              source="auto")
