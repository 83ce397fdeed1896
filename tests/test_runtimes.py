"""Deployment runtimes: the contract every entry of the runtime registry keeps (it times what
``nasscale export`` writes, records itself in the measurement key, runs every block kind or
says which it cannot), int8, lookup tables from the runtime's profiler, and the bad input."""
from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import yaml

import nasscale
from nasscale.cli import main
from nasscale.errors import NasscaleError
from nasscale.grammar import parse_block, parse_stage
from nasscale.latency import MeasurementKey, Settings, TimingPolicy, measure, runtimes
from nasscale.latency.runtimes.profile import Profile, charge, per_unit, unit_of, unit_path
from nasscale.specs import HeadSpec, NetworkSpec

from conftest import TINY

QUICK = TimingPolicy(warmup_min=1, warmup_max_s=0.1, rounds=1, max_rounds=1, round_s=0.02,
                     min_runs=3)
DEPLOYED = [name for name in runtimes.RUNTIMES if name != "torch"]


def tiny(kind: str = "mbconv", resolution: int = 32) -> NetworkSpec:
    return NetworkSpec(name=f"tiny_{kind}", stem=(parse_block("conv_k3_s1_c8_relu"),),
                       stages=tuple(parse_stage(s) for s in TINY[kind]), head=HeadSpec(),
                       resolution=resolution, num_classes=5)


def installed(name: str) -> bool:
    try:
        importlib.import_module(runtimes.get(name).package)
    except ImportError:
        return False
    return True


def needs(name: str):
    return pytest.mark.skipif(not installed(name), reason=f"the {name} extra is not installed")


# --- the registry ------------------------------------------------------------------------------

def test_every_choice_maps_to_a_registered_runtime_with_the_protocol():
    for choice in runtimes.CHOICES:
        runtime, mode = runtimes.split_choice(choice)
        assert runtime in runtimes.REGISTRY
        assert (mode is not None) == (runtime == "torch")
    for name, info in runtimes.REGISTRY.items():
        assert info.name == name and "none" in info.quantizations
        if name != "torch":
            module = info.module()
            for fn in ("version", "provider", "load"):
                assert callable(getattr(module, fn)), f"{name}: no {fn}()"
            assert info.artifact in ("onnx", "pte")


def test_the_guide_names_every_runtime():
    from pathlib import Path

    guide = (Path(__file__).parents[1] / "docs" / "guide" / "runtimes.md").read_text()
    for choice in runtimes.CHOICES:
        assert f"`{choice}`" in guide, choice


# --- the contract, per deployment runtime ------------------------------------------------------

@pytest.mark.parametrize("name", DEPLOYED)
def test_a_runtime_times_the_export_and_says_so_in_the_key(name, tmp_path):
    if not installed(name):
        pytest.skip(f"the {name} extra is not installed")
    spec = tiny()
    rec = measure(spec, settings=Settings(runtime=name), policy=QUICK)
    key = rec.key
    assert rec.latency_ms > 0 and key.runtime == name and key.quantize == "none"
    assert key.runtime_version == runtimes.get(name).version() != ""
    assert key.provider == runtimes.get(name).provider("cpu")
    assert key != Settings().key()  # never compared with eager PyTorch's
    assert MeasurementKey.from_dict(key.as_dict()) == key
    assert name in key.describe()

    # what it times is the exported file: its output is the PyTorch module's
    from nasscale.latency.measure import write_artifact

    settings = Settings(runtime=name)
    path = write_artifact(spec, 32, settings, tmp_path)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    run = runtimes.get(name).module().load(path, x, settings)
    got = np.asarray(run()[0] if name != "openvino" else list(run().values())[0])
    import torch

    torch.manual_seed(0)
    model = nasscale.build(spec).eval()
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", [n for n in DEPLOYED if n != "executorch"])
def test_int8_is_its_own_key_and_runs(name):
    if not installed(name):
        pytest.skip(f"the {name} extra is not installed")
    rec = measure(tiny(), settings=Settings(runtime=name, quantize="int8"), policy=QUICK)
    assert rec.latency_ms > 0 and rec.key.quantize == "int8"
    assert rec.key != measure(tiny(), settings=Settings(runtime=name), policy=QUICK).key


@pytest.mark.parametrize("kind", sorted(TINY))
@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_every_block_kind_runs_in_the_onnx_runtimes(kind, name):
    """The attention kinds once exported a Transpose with a negative axis that both runtimes
    refuse; every kind must load and run."""
    if not installed(name):
        pytest.skip(f"the {name} extra is not installed")
    rec = measure(tiny(kind), settings=Settings(runtime=name), policy=QUICK)
    assert rec.latency_ms > 0


@needs("executorch")
def test_executorch_int8_program_runs(tmp_path):
    rec = measure(tiny("conv"), settings=Settings(runtime="executorch", quantize="int8"),
                  policy=QUICK)
    assert rec.latency_ms > 0 and rec.key.provider == "XNNPACK"


# --- bad input -------------------------------------------------------------------------------

def test_a_missing_runtime_package_names_the_extra(monkeypatch):
    real = importlib.import_module

    def fake(name, *args):
        if name == "openvino":
            raise ImportError("No module named 'openvino'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(NasscaleError, match=r"pip install 'nasscale\[openvino\]'"):
        Settings(runtime="openvino").key()


@pytest.mark.parametrize("changes, field", [
    ({"quantize": "int8"}, "quantize"),  # eager PyTorch has no int8 path here
    ({"runtime": "onnxruntime", "dtype": "bfloat16"}, "dtype"),
    ({"runtime": "onnxruntime", "memory_format": "channels_last"}, "memory_format"),
    ({"runtime": "openvino", "mode": "compile"}, "mode"),
    ({"runtime": "tflite"}, "runtime"),
    ({"runtime": "onnxruntime", "quantize": "int4"}, "quantize"),
])
def test_settings_a_runtime_cannot_honour_name_the_field(changes, field):
    with pytest.raises(NasscaleError, match=rf"^{field}: "):
        Settings(**changes).key()


def test_the_cli_refuses_a_quantisation_without_a_runtime(capsys):
    assert main(["cost", "mobilenet_v3_small", "--quantize", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quantize" in err[0] and "onnxruntime" in err[0]


def test_keys_written_before_runtimes_read_as_eager_pytorch():
    key = Settings().key()
    old = {k: v for k, v in key.as_dict().items() if k not in
           ("runtime", "runtime_version", "provider", "quantize")}
    assert MeasurementKey.from_dict(old) == key


def test_runtime_options_map_to_settings():
    s = Settings.from_options(runtime="compile")
    assert (s.runtime, s.mode) == ("torch", "compile")
    s = Settings.from_options(runtime="onnxruntime", quantize="int8")
    assert (s.runtime, s.mode, s.quantize) == ("onnxruntime", "eager", "int8")
    assert Settings.from_options(runtime="eager", compile=True).mode == "compile"


# --- lookup tables from the runtime's profiler -------------------------------------------------

def test_node_names_map_to_blocks_and_unnamed_nodes_go_to_the_block_before():
    assert unit_of("/stages/stages.11/stages.11.1/Add") == "stages.11.1"
    assert unit_of("/net/stem/stem.0/Conv_output_0_QuantizeLinear") == "stem.0"
    assert unit_of("/head_blocks/head_blocks.0/head_blocks.0.0/Conv") == "head_blocks.0"
    assert unit_of("/head/classifier/Gemm") == "head"
    assert unit_of("ReorderOutput_token_12") is None
    paths = ["stem.0", "stages.0.0", "head"]
    profile = Profile([("ReorderInput", 1.0), ("/stem/stem.0/Conv", 2.0),
                       ("/stages/stages.0/stages.0.0/Conv", 3.0), ("Reorder_7", 0.5),
                       ("/head/classifier/Gemm", 1.0), ("logits", 0.25)], total_ms=8.75)
    assert charge(profile, paths) == [3.0, 3.5, 1.25]
    units, overhead = per_unit([profile], paths, end_to_end_ms=17.5)
    assert units == pytest.approx([6.0, 7.0, 2.5]) and overhead == pytest.approx(2.0)


def test_unit_paths_are_the_built_modules():
    spec = tiny()
    model = nasscale.build(spec)
    names = dict(model.named_modules())
    from nasscale.latency.table import units_of

    for unit in units_of(nasscale.resolve(spec)):
        assert unit_path(unit) in names


@needs("onnxruntime")
def test_a_runtime_table_adds_up_to_its_carrier_and_predicts_it(tmp_path):
    from nasscale.latency import LatencyTable, build_table, time_carrier

    spec = tiny("bneck", 64)
    settings = Settings(runtime="onnxruntime", quantize="int8")
    timing = time_carrier(spec, settings, QUICK)
    assert sum(timing.units_ms) + timing.overhead_ms == pytest.approx(timing.end_to_end_ms)
    assert all(ms > 0 for ms in timing.units_ms)
    out = tmp_path / "lut.json"
    build_table([spec], out, settings, policy=QUICK, probe_every_s=0)
    table = LatencyTable.load(out)
    assert table.key.runtime == "onnxruntime" and table.key.quantize == "int8"
    assert not table.predict(spec).extrapolated


def test_executorch_offers_no_table(tmp_path):
    from nasscale.latency.runtimes.profile import profiles

    with pytest.raises(NasscaleError, match="executorch: no per-block profile"):
        profiles("executorch", tmp_path / "x.pte", None, 1)


# --- studies, export ---------------------------------------------------------------------------

@needs("onnxruntime")
@pytest.mark.usefixtures("support_on_path")
def test_a_study_searches_under_an_int8_onnxruntime_budget(tmp_path, capsys):
    import optuna

    from nasscale.search.storage import open_storage

    data = {"name": "rt", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
            "evaluator": {"kind": "python", "target": "evalfns:width_score"}, "trials": 2,
            "seed": 1, "references": [], "constraints": ["latency <= 100 ms"],
            "latency": {"runtime": "onnxruntime", "quantize": "int8"}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["search", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 0, \
        capsys.readouterr().err
    study = optuna.load_study(study_name="rt", storage=open_storage(None, tmp_path / "o"))
    measured = [t for t in study.trials if "latency_ms" in t.user_attrs]
    assert measured and all(t.user_attrs["latency_ms"] > 0 for t in measured)


@pytest.mark.usefixtures("support_on_path")
def test_a_study_with_an_unknown_runtime_is_refused(tmp_path, capsys):
    data = {"name": "rt", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
            "evaluator": {"kind": "python", "target": "evalfns:width_score"}, "trials": 1,
            "latency": {"runtime": "tensorrt"}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["search", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "latency.runtime" in err and "onnxruntime" in err


@needs("onnxruntime")
def test_export_int8_onnx_records_its_calibration(tmp_path, capsys):
    out = tmp_path / "n.onnx"
    assert main(["export", "mobilenet_v3_small", "--onnx", str(out), "--quantize", "int8",
                 "--resolution", "64"]) == 0
    assert "quantised: int8 QDQ" in capsys.readouterr().out
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert "seeded noise" in meta["nasscale.quantization"]
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


@needs("executorch")
def test_export_pte_runs_and_matches_pytorch(tmp_path, capsys):
    out = tmp_path / "n.pte"
    assert main(["export", "mobilenet_v3_small", "--pte", str(out), "--resolution", "64"]) == 0
    text = capsys.readouterr().out
    assert "lowered to XNNPACK" in text and "checked: output equals PyTorch's" in text
    assert out.stat().st_size > 0


def test_cost_json_carries_the_runtime_key(capsys):
    if not installed("onnxruntime"):
        pytest.skip("the onnxruntime extra is not installed")
    assert main(["cost", "mobilenet_v3_small", "--runtime", "onnxruntime", "--resolution", "64",
                 "--round-seconds", "0.02", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["key"]["runtime"] == "onnxruntime" and data["latency_ms"] > 0


@needs("onnxruntime")
@pytest.mark.usefixtures("support_on_path")
def test_a_candidate_the_runtime_cannot_run_is_a_failed_trial_with_the_reason(
        tmp_path, capsys, monkeypatch):
    import optuna

    from nasscale.latency.runtimes import onnxrt
    from nasscale.search.storage import open_storage

    def refuse(path, example, settings):
        raise RuntimeError("NOT_IMPLEMENTED : Could not find an implementation for HardSwish")

    monkeypatch.setattr(onnxrt, "load", refuse)
    data = {"name": "rt", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
            "evaluator": {"kind": "python", "target": "evalfns:width_score"}, "trials": 2,
            "seed": 1, "references": [], "constraints": ["latency <= 100 ms"],
            "latency": {"runtime": "onnxruntime"}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    main(["search", str(path), "--out", str(tmp_path / "o"), "--no-progress"])
    capsys.readouterr()
    study = optuna.load_study(study_name="rt", storage=open_storage(None, tmp_path / "o"))
    assert len(study.trials) == 2
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.FAIL
        reason = t.user_attrs["reason"]
        assert "runtime onnxruntime cannot run" in reason and "HardSwish" in reason


@needs("onnxruntime")
def test_int8_export_of_trained_weights_reports_accuracy_before_and_after(tmp_path, capsys):
    from test_export_trained import TINY as TINY_NET, image_folder

    data = image_folder(tmp_path / "photos")
    model = tmp_path / "model.pt"
    assert main(["train", TINY_NET, "--data", str(data), "--epochs", "1", "--batch-size", "8",
                 "--resolution", "20", "--device", "cpu", "--threads", "1", "-o", str(model),
                 "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "q.onnx"
    assert main(["export", str(model), "--onnx", str(out), "--quantize", "int8",
                 "--calibration", str(data)]) == 0
    text = capsys.readouterr().out
    assert "calibrated on the first" in text and "training images" in text
    line = next(t for t in text.splitlines() if t.startswith("held-out top-1"))
    assert "fp32" in line and "int8" in line and "points" in line
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert "nasscale.normalisation" in meta  # the int8 graph still takes plain pixels


@needs("onnxruntime")
@pytest.mark.usefixtures("support_on_path")
def test_a_relative_budget_is_predicted_from_a_runtime_table(tmp_path, capsys):
    """``latency <= 0.8x mobilenet_v3_large`` under ``runtime: onnxruntime`` with a lookup
    table: the table is built in that runtime (its key says so), the reference is timed into it,
    and the trials are predicted, not built (int8 tables: the carrier test above)."""
    import optuna

    from nasscale.latency import LatencyTable
    from nasscale.search.storage import open_storage

    lut = tmp_path / "lut.json"
    data = {"name": "rt", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
            "evaluator": {"kind": "python", "target": "evalfns:width_score"}, "trials": 3,
            "seed": 1, "references": [], "constraints": ["latency <= 0.8x mobilenet_v3_large"],
            "latency": {"source": "lut", "lut": str(lut), "build": ["mobilenet_v3_small"],
                        "runtime": "onnxruntime"}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["search", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 0, \
        capsys.readouterr().err
    table = LatencyTable.load(lut)
    assert (table.key.runtime, table.key.quantize) == ("onnxruntime", "none")
    assert not table.predict("mobilenet_v3_large").extrapolated
    study = optuna.load_study(study_name="rt", storage=open_storage(None, tmp_path / "o"))
    assert all("latency_ms" in t.user_attrs for t in study.trials
               if t.state == optuna.trial.TrialState.COMPLETE)


@needs("openvino")
def test_lut_build_and_cost_predict_in_a_runtime(tmp_path, capsys):
    net = tmp_path / "tiny.yaml"
    net.write_text(nasscale.dump_network(tiny("bneck", 48)))
    lut = tmp_path / "lut.json"
    assert main(["lut", "build", str(net), "--runtime", "openvino", "--out", str(lut)]) == 0
    capsys.readouterr()
    assert main(["cost", str(net), "--predict", str(lut), "--round-seconds", "0.02"]) == 0
    text = capsys.readouterr().out
    assert "openvino" in text and "predicted" in text


def test_prune_measures_latency_in_the_runtime_it_is_given(tmp_path, monkeypatch, capsys):
    """``nasscale prune --runtime R --quantize int8``: the latency resource gets R's settings,
    and a resumed run made for another runtime is refused (the runtime is in its record)."""
    from nasscale.pruning import run as prune_run
    from nasscale.pruning.resume import request_of

    seen = {}

    class Stop(Exception):
        pass

    def capture(metric, lut, out, settings):
        seen.update(metric=metric, runtime=settings.runtime, quantize=settings.quantize)
        raise Stop

    monkeypatch.setattr(prune_run, "make_resource", capture)
    with pytest.raises(Stop):
        main(["prune", "mobilenet_v3_small", "--target", "latency=0.9x", "--runtime",
              "onnxruntime", "--quantize", "int8", "--out", str(tmp_path / "p"), "--quiet"])
    assert seen == {"metric": "latency", "runtime": "onnxruntime", "quantize": "int8"}

    spec = nasscale.load("mobilenet_v3_small")
    evaluator = type("E", (), {"text": "flops"})()
    plain = request_of(prune_run.PruneRequest("n", "latency=0.9x"), spec, evaluator)
    assert "runtime" not in plain  # records from before runtimes still resume
    other = request_of(prune_run.PruneRequest("n", "latency=0.9x", runtime="openvino"), spec,
                       evaluator)
    assert other["runtime"] == "openvino" and other != plain
    with pytest.raises(SystemExit) as refused:  # argparse names the option and its choices
        main(["prune", "mobilenet_v3_small", "--target", "latency=0.9x", "--quantize", "int4"])
    assert refused.value.code == 2 and "--quantize" in capsys.readouterr().err
