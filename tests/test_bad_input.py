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
     ("study.yaml", "evaluator.data: nodata: no such file or folder: tried ",
      "nodata (relative to ")),
    ({"evaluator": {"kind": "python", "target": "nomod:fn"}},
     ("study.yaml", "evaluator.target: cannot import module 'nomod'", "PYTHONPATH")),
    ({**LATENCY, "latency": {"threads": 999}}, ("study.yaml", "latency.threads: must be")),
    ({**LATENCY, "latency": {"device": "tpu"}}, ("study.yaml", "latency.device: must be")),
    ({**LATENCY, "latency": {"batch": 0}}, ("study.yaml", "latency.batch: must be")),
    ({**LATENCY, "latency": {"dtype": "int3"}}, ("study.yaml", "latency.dtype: must be")),
    # every integer key: one checker, a stated range; floats, bools, strings and NaN refused
    ({"seed": 2 ** 32}, ("study.yaml:", "seed: must be an integer >= 0 and <= 4,294,967,295")),
    ({"seed": -1}, ("seed: must be an integer >= 0",)),
    ({"seed": 1.5}, ("seed: must be an integer",)),
    ({"latency": {"threads": "abc"}}, ("latency.threads: must be an integer >= 1 and <= 1,024",
                                       "got 'abc'")),
    ({"latency": {"threads": True}}, ("latency.threads: must be an integer", "got True")),
    ({"latency": {"threads": 1.5}}, ("latency.threads: must be an integer",)),
    ({"latency": {"batch": float("nan")}},
     ("latency.batch: must be an integer >= 1 and <= 4,096",)),
    ({"latency": {"compile": "no"}}, ("latency.compile: must be true or false",)),
    ({"trials": 10 ** 20}, ("trials: must be an integer >= 1 and <= 10,000,000",)),
    ({"trials": 1e20}, ("trials: must be an integer", "got 1e+20")),
    ({"trials": "1e20"}, ("trials: must be an integer", "got '1e20'")),
    ({"timeout": float("nan")}, ("timeout: must be a number of seconds > 0 and <= 2,592,000 "
                                 "(30 days)",)),
    ({"timeout": 10 ** 9}, ("timeout: must be a number of seconds > 0 and <= 2,592,000",)),
    ({"timeout": -5}, ("timeout: must be a number of seconds > 0",)),
    ({"sampler": {"name": "tpe", "n_startup_trials": 10 ** 9}},
     ("sampler.n_startup_trials: must be an integer >= 0 and <= 10,000,000",)),
    ({"evaluator": {"kind": "proxy", "proxy": "naswot", "batch_size": 10 ** 9}},
     ("evaluator.batch_size: must be an integer >= 1 and <= 65,536",)),
    ({"reward": {"target": "5ms", "exponent": float("nan")}, "objectives": {"reward": "maximize"}},
     ("reward.exponent: must be a number <= 0",)),
    ({"latency": {"source": "lut", "lut": "t.json",
                  "build": ["space:mobilenet_v3_like:100000000"]}},
     ("latency.build[0]: space:mobilenet_v3_like:100000000: the sample count",
      "<= 100,000")),
    # a study name is a file name: it cannot reach outside the output folder
    ({"name": "../../../../tmp/x"}, ("study.yaml:", "name: must be a file name of letters, "
                                     "digits, '-', '_' and '.' (not first)", "--out")),
    ({"name": "/tmp/x"}, ("name: must be a file name",)),
    ({"name": ".hidden"}, ("name: must be a file name",)),
    ({"name": "x" * 101}, ("name: must be a file name",)),
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
    (["--timeout", "1e12"], "--timeout: must be a number of seconds > 0 and <= 2,592,000"),
    (["--n-trials", "100000000"], "--n-trials: must be an integer >= 1 and <= 10,000,000"),
    (["--study-name", "../../escape"], "--study-name: must be a file name of letters"),
    (["--study-name", "/tmp/x"], "--study-name: must be a file name"),
    (["--storage-retry", "nan"], "--storage-retry"),
    (["--storage", "/proc/nope/x.journal"], "storage /proc/nope/x.journal"),
])
def test_bad_search_options(tmp_path, capsys, extra, needle):
    one_error(capsys, ["search", study_file(tmp_path), "--out", str(tmp_path / "o"),
                       "--no-progress", *extra], needle)


def test_a_study_name_never_writes_outside_the_output_folder(tmp_path, capsys,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_error(capsys, ["search", study_file(tmp_path, name="../../escaped"), "--no-progress"],
              "name: must be a file name")
    one_error(capsys, ["search", study_file(tmp_path), "--study-name", "../escaped",
                       "--no-progress"], "--study-name: must be a file name")
    assert not list(tmp_path.parent.glob("escaped")) and not (tmp_path / "runs").exists()


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
    # every width within the specs' bounds, 30 blocks of 65,536 x 65,536 weights: ~770 GB
    (tmp_path / "huge.yaml").write_text("name: huge\nstem: [conv_k3_s2_c65536_relu]\n"
                                        "stages: [mbconv_r30_k3_s1_e1_c65536_relu]\n")
    one_error(capsys, ["export", str(tmp_path / "huge.yaml"), "--onnx",
                       str(tmp_path / "x.onnx")], "GB for its weights")


def test_cost_round_seconds_nan(capsys):
    one_error(capsys, ["cost", "mobilenet_v3_small", "--round-seconds", "nan"],
              "--round-seconds: must be a number of seconds > 0")


def test_train_weight_decay_nan(capsys):
    one_error(capsys, ["train", "mobilenet_v3_small", "--data", "testbed", "--weight-decay",
                       "nan"], "--weight-decay: must be a number >= 0")
