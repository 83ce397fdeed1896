"""Many processes, one study: exact totals, one budget, no replayed draws, Ctrl-C and parent
death re-queue, storage outages, set-ups that failed, atomic outputs, dashboard metadata."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from nasscale.cli import main
from nasscale.search.objective import Objective, Surplus, counted
from nasscale.search.runner import optimize
from nasscale.search.space_io import load_space
from nasscale.search.storage import normalise_url, open_storage, redact

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.usefixtures("support_on_path")


def write_study(tmp_path, name="study.yaml", **fields):
    data = {"name": "t", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
            "evaluator": {"kind": "python", "target": "evalfns:slow_score"},
            "constraints": ["flops <= 3x mobilenet_v3_small"],
            "trials": 8, "seed": 3, "references": ["mobilenet_v3_small"]}
    data.update(fields)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def run_cli(*args, sleep="0.4"):
    env = dict(os.environ, PYTHONUNBUFFERED="1", NASSCALE_TEST_SLEEP=sleep)
    return subprocess.Popen([sys.executable, "-m", "nasscale.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def load(out: Path, url=None, name="t"):
    return optuna.load_study(study_name=name, storage=open_storage(url, out))


def wait_for(predicate, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if predicate():
                return True
        except Exception:  # the study does not exist yet
            pass
        time.sleep(0.2)
    return False


def param_sets(trials):
    return [tuple(sorted(t.params.items())) for t in trials if t.params]


def test_two_commands_on_one_journal_run_the_total_once_with_one_budget(tmp_path):
    study = write_study(tmp_path)
    out = tmp_path / "out"
    procs = [run_cli("search", str(study), "--out", str(out), "--no-progress")
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1] for r in results]
    trials = load(out).trials
    assert len(counted(trials)) == 8  # the study's total, not 8 per process
    assert len(set(param_sets(counted(trials)))) == 8  # nobody replayed anybody's draws
    # the budget was resolved once, by whichever process set the study up first
    journal = (out / "study.journal").read_text()
    assert journal.count('"nasscale.shared"') == 1
    summaries = json.loads((out / "summary.json").read_text())
    assert summaries["trials"] == 8


def test_a_resumed_study_draws_new_networks(tmp_path):
    study = write_study(tmp_path, evaluator={"kind": "python", "target": "evalfns:width_score"},
                        sampler={"name": "tpe", "n_startup_trials": 10})
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--n-trials", "4",
                 "--no-progress"]) == 0
    first = param_sets(load(out).trials)
    assert main(["search", str(study), "--out", str(out), "--n-trials", "8",
                 "--no-progress"]) == 0
    trials = load(out).trials
    assert len(trials) == 8 and param_sets(trials)[:4] == first
    assert len(set(param_sets(trials))) == 8  # trials 4-7 are not trials 0-3 again


def _objective(target):
    return Objective(space=load_space("mobilenet_v3_like"), metrics=("flops",), evaluator=None,
                     target=target)


def test_a_trial_started_when_the_study_was_full_is_surplus_and_not_counted():
    ostudy = optuna.create_study(direction="minimize")
    optimize(ostudy, _objective(2), target=2, timeout=None, retry_for=0)
    assert [t.state.name for t in ostudy.trials] == ["COMPLETE", "COMPLETE"]
    optimize(ostudy, _objective(2), target=2, timeout=None, retry_for=0)  # nothing to do
    assert len(ostudy.trials) == 2
    late = ostudy.ask()  # another worker asked in the same instant as the last slot went
    with pytest.raises(Surplus):
        _objective(2)(late)
    ostudy.tell(late, state=optuna.trial.TrialState.FAIL)
    assert ostudy.trials[2].user_attrs["reason"].startswith("surplus")
    assert len(counted(ostudy.trials)) == 2


def test_a_point_drawn_again_reuses_the_earlier_result():
    ostudy = optuna.create_study(direction="minimize")
    optimize(ostudy, _objective(1), target=1, timeout=None, retry_for=0)
    first = ostudy.trials[0]
    ostudy.enqueue_trial(first.params)
    optimize(ostudy, _objective(2), target=2, timeout=None, retry_for=0)
    again = ostudy.trials[1]
    assert again.user_attrs["duplicate_of"] == 0 and again.values == first.values
    assert "seconds" in again.user_attrs and "network" in again.user_attrs


def test_ctrl_c_requeues_the_running_trial(tmp_path):
    study = write_study(tmp_path, trials=5, constraints=[])  # every trial sleeps
    out = tmp_path / "out"
    proc = run_cli("search", str(study), "--out", str(out), "--no-progress", sleep="2.0")
    assert wait_for(lambda: [t.state.name for t in load(out).trials].count("COMPLETE") >= 2
                    and load(out).trials[-1].state.name == "RUNNING")
    time.sleep(0.5)  # inside the running trial's 2 s
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stderr
    trials = load(out).trials
    stopped = [t for t in trials if t.state.name == "FAIL"]
    assert len(stopped) == 1 and stopped[0].user_attrs["reason"].startswith("interrupted")
    frame = pd.read_csv(out / "trials.csv")
    assert frame.loc[frame["number"] == stopped[0].number, "status"].item() == "interrupted"
    assert json.loads((out / "summary.json").read_text())["trials"] == len(counted(trials))
    again = run_cli("search", str(study), "--out", str(out), "--no-progress", sleep="0.1")
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    trials = load(out).trials
    assert len(counted(trials)) == 5
    retried = [t for t in trials if t.user_attrs.get("retry_of") == stopped[0].number]
    assert len(retried) == 1 and stopped[0].params.items() <= retried[0].params.items()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(c) for c in text]
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_workers_stop_when_their_parent_is_killed(tmp_path):
    study = write_study(tmp_path, trials=40)
    out = tmp_path / "out"
    proc = run_cli("search", str(study), "--out", str(out), "--workers", "2", "--no-progress",
                   sleep="1.0")
    assert wait_for(lambda: sum(t.state.name == "RUNNING" for t in load(out).trials) == 2)
    workers = [c for c in _children(proc.pid) if _alive(c)]
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert wait_for(lambda: not any(_alive(w) for w in workers), timeout=60)
    trials = load(out).trials
    assert not [t for t in trials if t.state.name == "RUNNING"]  # re-queued, not left running
    assert all(t.user_attrs.get("reason", "").startswith("interrupted")
               for t in trials if t.state.name == "FAIL")


def test_a_failed_set_up_does_not_poison_the_output_folder(tmp_path, capsys):
    out = tmp_path / "out"
    bad = write_study(tmp_path, constraints=["flops <= 2x nosuchnet"], trials=2,
                      evaluator={"kind": "python", "target": "evalfns:width_score"})
    assert main(["search", str(bad), "--out", str(out), "--no-progress"]) == 2
    assert "nosuchnet" in capsys.readouterr().err
    good = write_study(tmp_path, constraints=["flops <= 2x mobilenet_v3_small"], trials=2,
                       evaluator={"kind": "python", "target": "evalfns:width_score"})
    assert main(["search", str(good), "--out", str(out), "--no-progress"]) == 0
    assert len(load(out).trials) == 2


def test_a_worker_measuring_under_another_key_is_refused_unless_it_owns_its_budgets(
        tmp_path, capsys):
    study = write_study(tmp_path, constraints=["latency <= 3x mobilenet_v3_small"], trials=1,
                        references=[], space="mobilenet_v3_like",
                        evaluator={"kind": "python", "target": "evalfns:width_score"})
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
    ostudy = load(out)
    shared = ostudy.user_attrs["nasscale.shared"]
    shared["latency_key"] = dict(shared["latency_key"], device_name="Some Other CPU")
    ostudy.set_user_attr("nasscale.shared", shared)
    capsys.readouterr()
    assert main(["search", str(study), "--out", str(out), "--n-trials", "2",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "another key" in err and "device_name" in err and "--own-budgets" in err
    assert err.count("\n") == 1
    assert main(["search", str(study), "--out", str(out), "--n-trials", "2", "--no-progress",
                 "--own-budgets"]) == 0
    assert "--own-budgets: this worker measures on its own hardware" in capsys.readouterr().err
    assert len(counted(load(out).trials)) == 2


def test_outputs_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    study = write_study(tmp_path, trials=3,
                        evaluator={"kind": "python", "target": "evalfns:width_score"})
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
    before = (out / "trials.csv").read_text()

    def half_then_die(self, path, *args, **kwargs):
        Path(path).write_text("number,state\n0,COM")  # a kill -9 in the middle of writing
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_die)
    assert main(["search", str(study), "--out", str(out), "--n-trials", "4",
                 "--no-progress"]) == 130
    assert (out / "trials.csv").read_text() == before


def test_the_dashboard_sees_metric_names_and_constraints(tmp_path):
    study = write_study(tmp_path, trials=2, objectives={"score": "maximize",
                                                       "flops": "minimize"},
                        evaluator={"kind": "python", "target": "evalfns:width_score"})
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
    ostudy = load(out)
    # (yaml.safe_dump sorts keys: flops comes first); the python evaluator's score is "score"
    assert ostudy.metric_names == ["flops", "score"]
    t = ostudy.trials[0]
    assert set(t.user_attrs["constraints"]) == {"flops <= 3x mobilenet_v3_small"}
    assert isinstance(t.user_attrs["within_budget"], bool)
    frame = pd.read_csv(out / "trials.csv")
    for t in ostudy.trials:  # the dashboard shows the status trials.csv shows
        assert t.user_attrs["status"] == frame.loc[frame["number"] == t.number, "status"].item()


def test_a_damaged_journal_line_is_one_clear_error(tmp_path, capsys):
    study = write_study(tmp_path, trials=2,
                        evaluator={"kind": "python", "target": "evalfns:width_score"})
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
    lines = (out / "study.journal").read_text().splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]
    (out / "study.journal").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and err.count("\n") == 1


def test_the_documented_postgresql_url_uses_the_extras_driver():
    pytest.importorskip("psycopg2")
    assert normalise_url("postgresql://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"
    assert normalise_url("postgres://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"
    assert normalise_url("postgresql+psycopg://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_two_commands_on_a_fresh_postgresql_database(tmp_path, postgres):
    from postgres import PASSWORD

    url = postgres.create_database("fresh_two")
    study = write_study(tmp_path, trials=6)
    procs = [run_cli("search", str(study), "--out", str(tmp_path / f"out{i}"), "--no-progress",
                     "--storage", url) for i in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [redact(r[1]) for r in results]
    trials = load(tmp_path, url).trials
    assert len(counted(trials)) == 6 and len(set(param_sets(trials))) == len(param_sets(trials))
    assert len({json.dumps(json.loads((tmp_path / f"out{i}" / "summary.json").read_text())
                           ["constraints"]) for i in range(2)}) == 1  # one budget
    for text in (*(r for pair in results for r in pair),):
        assert PASSWORD not in text


def test_a_database_outage_stops_cleanly_and_resumes(tmp_path, postgres):
    url = postgres.create_database("outage")
    study = write_study(tmp_path, trials=30)
    out = tmp_path / "out"
    proc = run_cli("search", str(study), "--out", str(out), "--no-progress", "--storage", url,
                   "--storage-retry", "4", sleep="0.5")
    try:
        assert wait_for(lambda: [t.state.name for t in load(out, url).trials].count(
            "COMPLETE") >= 2)
        postgres.pause()
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
        postgres.resume()
    assert proc.returncode == 2, stderr
    assert "Traceback" not in stderr and "no answer for" in stderr
    assert "retrying" in stderr
    # outputs of what had finished, as last read before the database went away
    written = pd.read_csv(out / "trials.csv")
    assert len(written) >= 1 and set(written["state"]) <= {"COMPLETE", "PRUNED", "RUNNING"}
    again = run_cli("search", str(study), "--out", str(out), "--no-progress", "--storage", url,
                    "--n-trials", "6", sleep="0.1")
    _, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, redact(stderr)
    assert len(counted(load(out, url).trials)) >= 6


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_swallowed_by_a_finalizer_still_stops_the_trial_loop():
    """Python drops a KeyboardInterrupt raised while a finalizer runs (the garbage collection
    after each trial frees torch modules): the handler also sets a flag that the trial loop
    reads between trials, so the Ctrl-C is not lost."""
    import gc
    import signal
    from types import SimpleNamespace

    from nasscale.search import runner

    class Finalized:
        def __del__(self):
            signal.raise_signal(signal.SIGINT)  # Ctrl-C arrives while a finalizer runs

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with runner.ctrl_c_never_lost():
            obj = Finalized()
            del obj  # the KeyboardInterrupt raised in __del__ is printed and dropped by Python
            gc.collect()
            runner.optimize(None, SimpleNamespace(target=None), target=None, timeout=None,
                            retry_for=0)
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    assert not runner._INTERRUPTED.is_set()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_study_file_s_timeout_stops_the_search(tmp_path, workers):
    """``timeout:`` in the study file applies (the command line's --timeout overrides it),
    for one process and for --workers, which share one deadline."""
    study = write_study(tmp_path, trials=1_000_000, timeout=3, constraints=[], references=[])
    out = tmp_path / "out"
    start = time.monotonic()
    proc = run_cli("search", str(study), "--out", str(out), "--no-progress", "--workers",
                   str(workers), sleep="0.2")
    try:
        _, stderr = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert time.monotonic() - start < 60
    assert len(load(out).trials) <= workers * (3 / 0.2 + 2)
    assert main(["search", str(study), "--out", str(out), "--no-progress", "--timeout",
                 "0.001"]) == 0  # the command line's wins: at most the trial already started


def test_a_journal_whose_last_line_was_cut_resumes_with_every_finished_trial(tmp_path,
                                                                              capsys):
    study = write_study(tmp_path, trials=2,
                        evaluator={"kind": "python", "target": "evalfns:width_score"})
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
    journal = out / "study.journal"
    whole = journal.read_bytes()
    last = whole.splitlines()[-1]
    journal.write_bytes(whole + last[: len(last) // 2])  # a write killed half-way
    capsys.readouterr()
    assert main(["search", str(study), "--out", str(out), "--n-trials", "4",
                 "--no-progress"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "cut off" in line]
    assert len(notes) == 1 and "study.journal.damaged-" in notes[0], err
    damaged = list(out.glob("study.journal.damaged-*"))
    assert len(damaged) == 1 and damaged[0].read_bytes() == whole + last[: len(last) // 2]
    trials = load(out).trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4 and len(counted(trials)) == 4
    assert journal.read_bytes().startswith(whole)  # the 2 finished trials, as they were


def _storage_fails_once(monkeypatch, method: str, key: str | None = None):
    """The journal's ``method`` raises like a database that went away, once, for trial 1."""
    from optuna.storages import JournalStorage

    real = getattr(JournalStorage, method)
    done = []

    def flaky(self, trial_id, *args, **kwargs):
        if trial_id == 1 and not done and (key is None or args[0] == key):
            done.append(1)
            try:
                raise OSError("connection refused")
            except OSError as err:
                raise optuna.exceptions.StorageInternalError(
                    "An exception is raised during the commit.") from err
        return real(self, trial_id, *args, **kwargs)

    monkeypatch.setattr(JournalStorage, method, flaky)


@pytest.mark.parametrize("method, key", [("set_trial_user_attr", "network"),  # in the trial
                                         ("set_trial_state_values", None)])  # telling it
def test_a_trial_lost_to_a_storage_outage_says_so_and_is_redone(tmp_path, capsys,
                                                                monkeypatch, method, key):
    from nasscale.search import storage

    study = write_study(tmp_path, trials=4, constraints=[],
                        evaluator={"kind": "python", "target": "evalfns:width_score"})
    out = tmp_path / "out"
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)  # the retry's back-off
    _storage_fails_once(monkeypatch, method, key)
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "not answering while running a trial (OSError: connection refused)" in err
    assert "An exception is raised during the commit" not in err and "Traceback" not in err
    trials = load(out).trials
    lost = trials[1]
    assert lost.state.name == "FAIL"
    assert lost.user_attrs["reason"] == ("interrupted: storage unavailable: OSError: "
                                         "connection refused; re-queued")
    assert [t.user_attrs.get("retry_of") for t in trials].count(1) == 1
    assert len(counted(trials)) == 4  # the lost trial is redone, not counted
    frame = pd.read_csv(out / "trials.csv")
    row = frame.loc[frame["number"] == 1]
    assert row["status"].item() == "interrupted"
    assert row["reason"].item().startswith("interrupted: storage unavailable: OSError")


def test_of_two_processes_writing_one_folder_the_last_writer_read_last(tmp_path,
                                                                     monkeypatch):
    """The race of two commands on one journal: the first to stop read the trials while the
    other's last trial ran, and wrote its outputs after the other's.  Outputs are read and
    written under a lock, so the last written are the last read (summary: the full total)."""
    import threading

    from nasscale.search import outputs, runner
    from nasscale.search.storage import worker_tag

    study = write_study(tmp_path, trials=2, constraints=[],
                        evaluator={"kind": "python", "target": "evalfns:width_score"})
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
    ostudy = load(out)
    running = ostudy.ask()  # the other process's last trial, still running
    running.set_user_attr("worker", worker_tag())  # a live worker: not re-queued
    real_write, real_lock = outputs.write_outputs, runner.outputs_lock
    waiting = threading.Event()

    def other_process() -> None:  # finishes its trial, then writes its outputs
        ostudy.tell(running, 1.0)
        assert main(["search", str(study), "--out", str(out), "--n-trials", "3",
                     "--no-progress"]) == 0

    other = threading.Thread(target=other_process)

    def lock(path, *args):
        if threading.current_thread() is other:
            waiting.set()
        return real_lock(path, *args)

    def write(*args, **kwargs):  # this process writes from its read: trial 2 running
        if threading.current_thread() is not other:
            other.start()
            while other.is_alive() and not waiting.is_set():
                time.sleep(0.05)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(outputs, "write_outputs", write)
    monkeypatch.setattr(runner, "outputs_lock", lock)
    assert main(["search", str(study), "--out", str(out), "--n-trials", "3",
                 "--no-progress"]) == 0
    other.join(timeout=120)
    assert json.loads((out / "summary.json").read_text())["trials"] == 3
