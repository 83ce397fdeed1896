"""The command line: output formats, YAML round trip, and one-line errors with exit status 2."""
import json
import subprocess
import sys

import pytest
import yaml

import nasscale
from nasscale.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_table_and_json(capsys):
    code, out, _ = run(capsys, "list")
    assert code == 0 and "efficientnet_b0" in out and "multiply-accumulates" in out
    code, out, _ = run(capsys, "list", "--format", "json")
    records = {r["name"]: r for r in json.loads(out)}
    assert records["mobilenet_v2"]["params"] == 3_504_872
    assert set(records) == set(nasscale.names())


@pytest.mark.parametrize("name", nasscale.names())
def test_show_json_gives_exact_params_and_flops(capsys, name):
    code, out, _ = run(capsys, "show", name, "--format", "json")
    data = json.loads(out)
    cost = nasscale.count(name)
    assert code == 0
    assert (data["name"], data["params"], data["flops"]) == (name, cost.params, cost.flops)
    assert data["resolution"] == nasscale.load(name).resolution
    assert sum(s["params"] for s in data["stages"]) == data["params"]
    assert sum(s["flops"] for s in data["stages"]) == data["flops"]


def test_show_table(capsys):
    code, out, _ = run(capsys, "show", "mobilenet_v3_large")
    assert code == 0
    assert "stage 1" in out and "bneck_k3_s1_m16_c16_relu" in out and "classifier" in out
    assert "total: 5,483,032 params, 216,589,760 FLOPs" in out
    assert "published params: 5,483,032 (matches)" in out
    assert "1 MAC = 1 FLOP" in out


def test_show_other_resolution_does_not_claim_published_figures(capsys):
    code, out, _ = run(capsys, "show", "efficientnet_b0", "--resolution", "256")
    assert code == 0 and "at 256x256" in out and "published" not in out
    code, out, _ = run(capsys, "show", "efficientnet_b0", "--resolution", "256", "--format", "yaml")
    assert "resolution: 256" in out and "expected" not in out


def test_show_yaml_loads_again_unchanged(capsys, tmp_path):
    for name in nasscale.names():
        code, out, _ = run(capsys, "show", name, "--format", "yaml")
        path = tmp_path / f"{name}.yaml"
        path.write_text(out)
        assert nasscale.load(str(path)) == nasscale.load(name)
        code, again, _ = run(capsys, "show", str(path), "--format", "yaml")
        assert again == out
        assert yaml.safe_load(out)["name"] == name


@pytest.mark.parametrize("argv, message", [
    (["show", "efficientnet_b9"], "unknown architecture 'efficientnet_b9'"),
    (["show", "nope.yaml"], "nope.yaml: no such file"),
    (["show", "mobilenet_v2", "--resolution", "0"], "resolution: must be an integer >= 1"),
])
def test_bad_input_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize("body, message", [
    ("name: x\nstages: [mbconvv_r1_k3_s1_e6_c16_relu6]\n",
     ":2: stages[0]: unknown block code 'mbconvv'"),
    ("name: x\nresolutoin: 224\nstages: [mbconv_r1_k3_s1_e6_c16_relu6]\n",
     ":2: resolutoin: unknown field (did you mean 'resolution'?)"),
    ("name: x\nstages:\n  - mbconv_r1_k3_s1_e6_c0_relu6\n",
     ":3: stages[0]: block 'mbconv_r1_k3_s1_e6_c0_relu6': out_channels: must be an integer >= 1"),
    ("name: x\nstages: [mbconv_r1_k3_s4_e6_c16_relu6]\n", "stride: must be one of 1, 2, got 4"),
    ("name: x\nstages: [mbconv_r1_k4_s1_e6_c16_relu6]\n", "kernel_size: must be an odd integer"),
    ("name: x\nstages: [mbconv_r1_k3_s1_e6_c16_relu6]\nhead: {pool: max}\n",
     ":3: head: pool: must be one of 'avg', 'token', got 'max'"),
    ("- just\n- a list\n", "must be a mapping with keys name"),
    ("name: x\nstages: [\n", "not valid YAML"),
])
def test_bad_yaml_one_line_with_file_and_field(capsys, tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    code, out, err = run(capsys, "show", str(path))
    assert code == 2 and out == ""
    assert err.startswith(f"nasscale: error: {path}")
    assert message in err and err.count("\n") == 1


def test_console_script_exit_status_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "nasscale.cli", "show", "convnext_tinyy"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "did you mean 'convnext_tiny'" in result.stderr and "Traceback" not in result.stderr
