"""The fidelity benchmark's bookkeeping: finished units accumulate in a JSON-lines file across
runs and sessions, a re-run skips them, and the report is made from whatever is there."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def fidelity():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("fidelity_bench", BENCH / "fidelity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCH))


def test_runs_keep_their_configuration_and_survive_a_cut_line(fidelity, tmp_path):
    path = tmp_path / "f.runs.jsonl"
    mine, other = fidelity.Runs(path, {"epochs": 8}), fidelity.Runs(path, {"epochs": 4})
    mine.add("arch0/reference/seed0", value=0.5)
    other.add("arch0/reference/seed0", value=0.1)
    with open(path, "a") as f:
        f.write('{"key": "arch1/reference/seed0", "config": "')  # killed mid-write
    done = mine.load()
    assert list(done) == ["arch0/reference/seed0"] and done["arch0/reference/seed0"]["value"] == 0.5
    assert other.load()["arch0/reference/seed0"]["value"] == 0.1
    mine.add("arch1/reference/seed0", value=0.7)  # the next line starts on a line of its own
    assert set(mine.load()) == {"arch0/reference/seed0", "arch1/reference/seed0"}


def test_units_pair_seeds_first(fidelity):
    class Args:
        seeds, reference_only = 3, True

    keys = [u[0] for u in fidelity.units(Args, [None] * 2)]
    assert keys == ["arch0/reference/seed0", "arch0/reference/seed1", "arch1/reference/seed0",
                    "arch1/reference/seed1", "arch0/reference/seed2", "arch1/reference/seed2"]


def test_a_tiny_benchmark_runs_resumes_and_reports(fidelity, tmp_path, capsys):
    out = tmp_path / "f.json"
    args = ["--n", "3", "--seeds", "2", "--data", "testbed-v3:train=6,test=3",
            "--reference-only", "--epochs", "1", "--threads", "1", "--out", str(out)]
    assert fidelity.main(args) == 0
    lines = (tmp_path / "f.runs.jsonl").read_text().splitlines()
    assert len(lines) == 6
    result = json.loads(out.read_text())
    assert result["progress"]["reference_runs"] == 6
    assert result["reference"]["settings"]["epochs"] == 1
    assert fidelity.main(args) == 0  # a re-run finds every unit done
    assert len((tmp_path / "f.runs.jsonl").read_text().splitlines()) == 6
