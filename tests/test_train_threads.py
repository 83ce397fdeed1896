"""Training threads: the cores other processes leave idle unless told, a warning when others
keep the cores busy, an explicit count checked and restored after the run."""
from __future__ import annotations

import pytest
import torch

from nasscale.errors import NasscaleError
from nasscale.scoring import threads as th
from nasscale.scoring.train import TrainSettings


@pytest.fixture()
def four_cores(monkeypatch):
    monkeypatch.setattr(th, "cores", lambda: 4)


@pytest.mark.parametrize("requested, busy, threads, warns", [
    (None, 0.0, 4, None),          # idle: every core
    (None, None, 4, None),         # the system does not say: every core
    (None, 0.3, 4, None),          # less than half a core busy: noise
    (None, 1.2, 3, "training with 3 thread(s)"),
    (None, 3.9, 1, "training with 1 thread(s)"),  # at least one
    (2, 1.0, 2, None),             # asked for what is idle
    (4, 2.0, 4, "share cores with them"),
    (1, 3.0, 1, None),
])
def test_choose_threads(four_cores, requested, busy, threads, warns):
    got, warning = th.choose_threads(requested, busy=busy)
    assert got == threads
    assert (warning is None) if warns is None else (warns in warning)


@pytest.mark.parametrize("value", [0, -1, 5, 1.5, "2", True])
def test_thread_counts_outside_the_machine_are_errors(four_cores, value):
    with pytest.raises(NasscaleError, match=r"threads: must be an integer from 1 to 4"):
        TrainSettings(threads=value).check()


def test_training_threads_are_set_for_the_run_and_restored(monkeypatch):
    monkeypatch.setattr(th, "other_busy_cores", lambda window=th.WINDOW_S: 0.0)
    before = torch.get_num_threads()
    with th.training_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_the_warning_is_said_once(monkeypatch, capsys):
    monkeypatch.setattr(th, "_said", set())
    th.say_once("other processes keep 1.0 of 2 cores busy")
    th.say_once("other processes keep 1.0 of 2 cores busy")
    assert capsys.readouterr().err.count("cores busy") == 1


def test_the_load_is_measured_once_for_a_while(monkeypatch):
    calls = []
    monkeypatch.setattr(th, "_last", [])
    from nasscale.latency import timing

    monkeypatch.setattr(timing, "_busy_snapshot", lambda: calls.append(1) or (len(calls), 0, 0))
    monkeypatch.setattr(th.time, "sleep", lambda s: None)
    first = th.other_busy_cores()
    assert th.other_busy_cores() == first and len(calls) == 2  # reused, not measured again
