"""Bad input anywhere is one line on stderr naming the file or option and the field, and exit
2 — never a traceback, never silently accepted."""
import pytest
import yaml

from nasscale.cli import main

STUDY = {"name": "t", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
         "evaluator": {"kind": "proxy", "proxy": "naswot"}, "trials": 2}
LATENCY = {"constraints": ["latency <= 10ms"]}


def one_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def study_file(tmp_path, **fields):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**STUDY, **fields}))
    return str(path)


@pytest.mark.parametrize("fields, needles", [
    ({"max_memory_gb": "abc"}, ("study.yaml", "max_memory_gb: must be a number of gigabytes")),
    ({"max_memory_gb": -1}, ("max_memory_gb: must be a number of gigabytes > 0",)),
    ({"sampler": {"name": "tpe", "n_startup_trials": -10}},
     ("sampler.n_startup_trials: must be an integer >= 0",)),
    ({"evaluator": {"kind": "proxy", "proxy": "nope"}}, ("study.yaml", "evaluator.proxy")),
    ({"space": "nospace"}, ("study.yaml", "space: unknown search space 'nospace'")),
    ({"references": ["nosuchnet"]}, ("study.yaml", "references[0]: unknown architecture")),
    ({"evaluator": {"kind": "proxy", "proxy": "naswot", "data": "nodata"}},
     ("study.yaml", "evaluator.data: 'nodata'")),
    ({"evaluator": {"kind": "python", "target": "nomod:fn"}},
     ("study.yaml", "evaluator.target: cannot import module 'nomod'", "PYTHONPATH")),
    ({**LATENCY, "latency": {"threads": 999}}, ("study.yaml", "latency.threads: must be")),
    ({**LATENCY, "latency": {"device": "tpu"}}, ("study.yaml", "latency.device: must be")),
    ({**LATENCY, "latency": {"batch": 0}}, ("study.yaml", "latency.batch: must be")),
    ({**LATENCY, "latency": {"dtype": "int3"}}, ("study.yaml", "latency.dtype: must be")),
])
def test_bad_study_fields(tmp_path, capsys, fields, needles):
    one_error(capsys, ["search", study_file(tmp_path, **fields), "--out",
                       str(tmp_path / "out"), "--no-progress"], *needles)
    assert not (tmp_path / "out" / "trials.csv").exists()


def test_a_study_file_that_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_bytes(yaml.safe_dump(STUDY).encode() + b"# \xff\xfe\n")
    one_error(capsys, ["search", str(path), "--out", str(tmp_path / "o")], "not UTF-8",
              "study.yaml:")


def test_a_key_given_twice_is_refused(tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY) + "trials: 3\n")
    one_error(capsys, ["search", str(path), "--out", str(tmp_path / "o")],
              "duplicate key 'trials'", "first given on line")


@pytest.mark.parametrize("extra, needle", [
    (["--timeout", "nan"], "--timeout: must be a number of seconds > 0"),
    (["--storage-retry", "nan"], "--storage-retry"),
    (["--storage", "/proc/nope/x.journal"], "storage /proc/nope/x.journal"),
])
def test_bad_search_options(tmp_path, capsys, extra, needle):
    one_error(capsys, ["search", study_file(tmp_path), "--out", str(tmp_path / "o"),
                       "--no-progress", *extra], needle)


def test_out_naming_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    one_error(capsys, ["search", study_file(tmp_path), "--out", str(tmp_path / "afile")],
              "is a file, not a folder")


def test_a_huge_phi(capsys):
    one_error(capsys, ["scale", "efficientnet_b0", "--phi", "1e6"], "phi: must be at most")


@pytest.mark.parametrize("opset", ["0", "3", "99"])
def test_export_opsets_outside_the_exporters_range(tmp_path, capsys, opset):
    one_error(capsys, ["export", "mobilenet_v3_small", "--onnx", str(tmp_path / "x.onnx"),
                       "--opset", opset], "--opset: must be an ONNX opset from")


def test_export_of_a_network_too_big_for_memory(tmp_path, capsys):
    import nasscale

    text = nasscale.dump_network(nasscale.load("mobilenet_v3_small")).replace(
        "c16_hswish", "c99999999_hswish", 1)
    (tmp_path / "huge.yaml").write_text(text)
    one_error(capsys, ["export", str(tmp_path / "huge.yaml"), "--onnx",
                       str(tmp_path / "x.onnx")], "GB for its weights")


def test_cost_round_seconds_nan(capsys):
    one_error(capsys, ["cost", "mobilenet_v3_small", "--round-seconds", "nan"],
              "--round-seconds: must be a number of seconds > 0")


def test_train_weight_decay_nan(capsys):
    one_error(capsys, ["train", "mobilenet_v3_small", "--data", "testbed", "--weight-decay",
                       "nan"], "--weight-decay: must be a number >= 0")
