"""Fault tests: ``kill -9`` in the middle of ``nasscale train`` and ``nasscale lut build``,
then the same command again: nothing finished is lost and the outputs are whole.  (Prune:
``test_pruning_resume.py``; search: ``test_search_scaleout.py``.)"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs kill -9")
TINY = str(Path(__file__).parent / "support" / "tiny_net.yaml")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "nasscale.cli", *args]


def kill_when(cmd: list[str], ready, limit: float = 120) -> bool:
    """Start ``cmd``, kill -9 it once ``ready()`` holds; False when it ended first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + limit
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def test_train_killed_after_an_epoch_resumes_to_the_same_weights(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (96, 16, 16)).astype(np.uint8),
             y=np.arange(96) % 3)
    base = ["train", TINY, "--data", str(tmp_path / "d.npz"), "--epochs", "6",
            "--batch-size", "8", "--device", "cpu", "--threads", "1", "--quiet"]
    full, cut = tmp_path / "full.pt", tmp_path / "cut.pt"
    assert subprocess.run(cli(*base, "-o", str(full)), capture_output=True).returncode == 0
    if not kill_when(cli(*base, "-o", str(cut)), cut.with_suffix(".ckpt").exists):
        pytest.skip("the run finished before it could be killed")
    assert not cut.exists() and cut.with_suffix(".ckpt").exists()
    done = subprocess.run(cli(*base, "-o", str(cut), "--resume"), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-300:]
    a, b = (torch.load(p, weights_only=True)["state_dict"] for p in (full, cut))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(cut.with_suffix(".json").read_text())["epochs"] == 6


def test_lut_build_killed_keeps_every_timed_carrier(tmp_path):
    table = tmp_path / "lut.json"
    cmd = cli("lut", "build", "mobilenet_v3_small", "mobilenet_v3_large", "--out", str(table),
              "--contexts", "2")
    def some_entries() -> bool:
        try:
            return len(json.loads(table.read_text())["entries"]) >= 3
        except (OSError, ValueError, KeyError):
            return False

    if not kill_when(cmd, some_entries):
        pytest.skip("the build finished before it could be killed")
    first = json.loads(table.read_text())["entries"]  # whole: saved atomically per carrier
    assert first
    done = subprocess.run(cmd, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-300:]
    final = json.loads(table.read_text())["entries"]
    for block, entry in first.items():  # every timed block kept, its timings among the final's
        assert block in final
        assert set(entry["samples_ms"]) <= set(final[block]["samples_ms"])
    assert len(final) > len(first)
