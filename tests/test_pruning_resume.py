"""``nasscale prune --resume``: a run interrupted after an iteration (in process, or by
kill -9) goes on from the last finished iteration and ends where the uninterrupted run ends;
a fresh run never overwrites an unfinished one; a changed command is refused."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

import nasscale
from nasscale.cli import main
from nasscale.pruning import resume as progress_file

from test_pruning_netadapt import TINY  # noqa: F401 - the network

EVALUATOR = "proxy:naswot,batch=8"


@pytest.fixture()
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture()
def weights(tiny, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "w.pt"
    torch.save(nasscale.build(nasscale.load(str(tiny))).state_dict(), path)
    return path


def prune(tiny, out, *extra):
    return main(["prune", str(tiny), "--target", "flops=0.6x", "--out", str(out),
                 "--evaluator", EVALUATOR, "--quiet", *extra])


def same_outputs(a, b):
    assert (a / "final.yaml").read_text() == (b / "final.yaml").read_text()
    fa, fb = (pd.read_csv(d / "iterations.csv").drop(columns="seconds") for d in (a, b))
    pd.testing.assert_frame_equal(fa, fb)
    assert not (b / progress_file.FILE).exists()


def test_an_interrupted_prune_resumes_where_it_stopped(tiny, weights, tmp_path, monkeypatch,
                                                       capsys):
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert prune(tiny, full, "--weights", str(weights)) == 0
    saved = progress_file.save
    calls = []

    def save_then_die(*args):
        saved(*args)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(progress_file, "save", save_then_die)
    assert prune(tiny, cut, "--weights", str(weights)) == 130
    monkeypatch.setattr(progress_file, "save", saved)
    assert (cut / progress_file.FILE).exists()
    capsys.readouterr()
    # a fresh run does not overwrite it; another command does not continue it
    assert prune(tiny, cut, "--weights", str(weights)) == 2
    assert "holds an unfinished prune" in capsys.readouterr().err
    assert main(["prune", str(tiny), "--target", "flops=0.5x", "--out", str(cut),
                 "--evaluator", EVALUATOR, "--quiet", "--weights", str(weights),
                 "--resume"]) == 2
    assert "made with another target" in capsys.readouterr().err
    assert prune(tiny, cut, "--weights", str(weights), "--resume") == 0
    same_outputs(full, cut)
    a, b = (torch.load(d / "pruned.pt", weights_only=True)["state_dict"] for d in (full, cut))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_without_an_unfinished_run_is_an_error(tiny, tmp_path, capsys):
    assert prune(tiny, tmp_path / "none", "--resume") == 2
    assert "no unfinished prune in" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
def test_kill_9_then_resume(tiny, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    slow = ["--step", "0.01", "--decay", "1.0"]  # a dozen iterations: time to kill one
    assert main(["prune", str(tiny), "--target", "flops=0.4x", "--out", str(full),
                 "--evaluator", EVALUATOR, "--quiet", *slow]) == 0
    cmd = [sys.executable, "-m", "nasscale.cli", "prune", str(tiny), "--target", "flops=0.4x",
           "--out", str(cut), "--evaluator", EVALUATOR, "--quiet", *slow]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (cut / "iterations" / "002.yaml").exists() and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be killed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (cut / progress_file.FILE).exists()
    assert subprocess.run(cmd + ["--resume"], capture_output=True).returncode == 0
    same_outputs(full, cut)
