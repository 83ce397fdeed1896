"""`nasscale cost` and `nasscale lut`: output, JSON keys, side-by-side prediction, errors."""
import json

import pytest
import torch

import nasscale
from nasscale.cli import main

QUICK = ["--resolution", "32", "--clock", "cpu", "--round-seconds", "0.01"]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cost_table_shows_costs_latency_and_key(capsys):
    code, out, _ = run(capsys, "cost", "mobilenet_v3_small", *QUICK)
    assert code == 0
    assert "params    2,542,856" in out and "FLOPs" in out and "1 MAC = 1 FLOP" in out
    assert "p50" in out and "p90" in out and "min" in out and "spread" in out
    assert "timed runs" in out and "cpu clock" in out and "1 thread" in out


def test_cost_json_has_the_documented_keys(capsys):
    code, out, _ = run(capsys, "cost", "mobilenet_v3_small", *QUICK, "--batch", "2",
                       "--format", "json")
    data = json.loads(out)
    assert code == 0
    assert {"params", "flops", "latency_ms", "latency_p90_ms", "key", "runs"} <= set(data)
    assert data["key"]["batch"] == 2 and data["key"]["device"] == "cpu"
    assert data["latency_p90_ms"] >= data["latency_ms"] > 0


def test_cost_checks_budgets_against_a_reference_measured_here(capsys):
    code, out, _ = run(capsys, "cost", "mobilenet_v3_small", *QUICK, "--format", "json",
                       "--budget", "latency <= 2x mobilenet_v3_small",
                       "--budget", "flops <= 1M")
    data = json.loads(out)
    lat, flops = data["budgets"]
    assert lat["satisfied"] and lat["limit"] == pytest.approx(2 * lat["reference_value"])
    assert lat["key"] == data["key"]
    assert flops["limit"] == 1e6 and flops["value"] == data["flops"]
    assert data["flops"] == nasscale.count("mobilenet_v3_small", resolution=32).flops > 1e6
    assert not flops["satisfied"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cost_on_cuda_without_a_gpu_is_one_line_exit_2(capsys):
    code, out, err = run(capsys, "cost", "mobilenet_v3_small", "--device", "cuda")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "CUDA is not available here" in err and "--device cpu" in err


@pytest.mark.parametrize("argv, message", [
    (["cost", "mobilenet_v3_small", "--threads", "999"],
     "--threads: must be an integer >= 1 and <= "),
    (["cost", "mobilenet_v3_small", "--budget", "speed <= 3ms"], "unknown metric 'speed'"),
    (["cost", "mobilenet_v3_small", "--predict", "nope.json"], "nope.json: no such file"),
    (["cost", "mobilenet_v3_small", "--cuda-graphs"], "mode: must be eager or compile on the CPU"),
    (["lut", "build", "around:nosuchnet"], "unknown architecture 'nosuchnet'"),
    (["lut", "show", "nope.json"], "nope.json: no such file"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err


def test_lut_build_show_and_cost_predict(capsys, tmp_path, monkeypatch):
    from nasscale.latency import build
    from nasscale.latency.timing import QUICK as POLICY

    real = build.time_carrier
    monkeypatch.setattr(build, "time_carrier", lambda s, st, p=None: real(s, st, POLICY))
    monkeypatch.setattr(build, "PROBE_POLICY", POLICY)
    net = tmp_path / "net.yaml"
    net.write_text("name: small\nresolution: 32\nnum_classes: 10\n"
                   "stem: [conv_k3_s2_c8_hswish]\n"
                   "stages: [bneck_r2_k3_s2_m32_c16_relu_se, mbconv_r1_k5_s1_e4_c24_silu]\n"
                   "head: {blocks: [conv_k1_c64_hswish]}\n")
    out = tmp_path / "lut.json"
    code, text, err = run(capsys, "lut", "build", str(net), "--clock", "cpu", "--out", str(out))
    assert code == 0 and "6 new entries" in text and "lut build [" in err
    code, text, _ = run(capsys, "lut", "build", str(net), "--clock", "cpu", "--out", str(out),
                        "--quiet")
    assert code == 0 and "0 new entries" in text  # nothing missing: nothing measured
    code, text, _ = run(capsys, "lut", "show", str(out))
    assert code == 0 and "6 entries" in text and "bneck" in text and "cpu clock" in text
    # the table's key supplies --clock cpu; measured and predicted side by side
    code, text, _ = run(capsys, "cost", str(net), "--predict", str(out), "--round-seconds",
                        "0.01")
    assert code == 0 and "predicted" in text and "vs measured p50" in text
    # the network is the table's probe: predicted as its end-to-end time, units still shown
    assert "the table's probe, timed whole" in text
    assert "classifier" in text and "in-context ms" in text
    assert "probe     small:" in text and "when the table was built" in text
    assert "at the speed now" in text  # the prediction times the probe's speed factor
    code, text, _ = run(capsys, "cost", str(net), "--predict", str(out), "--round-seconds",
                        "0.01", "--format", "json")
    data = json.loads(text)
    assert data["predicted_ms"] > 0 and data["prediction"]["extrapolated"] == []
    assert data["probe"]["network"] == "small" and data["probe"]["ratio"] > 0
    code, _, err = run(capsys, "cost", str(net), "--predict", str(out), "--clock", "wall")
    assert code == 2 and "another key (clock: 'cpu' vs 'wall'" in err
