"""The same study with the same seed writes the same trials.csv, before and after any change
to the code around it: the quickstart study with FLOPs in place of measured latency (every
number exact), its expected trials.csv committed beside it.  A refactoring that changes a
sampled architecture, a constraint value, a FLOPs count, a state or a column fails here."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "fixtures" / "golden_study"


def rows(path: Path) -> list[dict]:
    out = list(csv.DictReader(path.open()))
    for r in out:
        r.pop("seconds", None)  # wall clock: the one column that may differ
    return out


def test_quickstart_with_flops_writes_the_same_trials(tmp_path):
    run = subprocess.run([sys.executable, "-m", "nasscale.cli", "search",
                          str(HERE / "quickstart_flops.yaml"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    got, want = rows(tmp_path / "out" / "trials.csv"), rows(HERE / "trials.csv")
    assert [r["number"] for r in got] == [r["number"] for r in want]
    for g, w in zip(got, want):
        naswot_g, naswot_w = float(g.pop("naswot") or "nan"), float(w.pop("naswot") or "nan")
        assert g == w
        if w["state"] == "COMPLETE":  # a float: equal to 1e-9 across CPUs
            assert naswot_g == pytest.approx(naswot_w, rel=1e-9)
