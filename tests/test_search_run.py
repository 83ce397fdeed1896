"""Running studies: outputs, resumption after kill -9, workers, failures, Ctrl-C, PostgreSQL."""
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

import nasscale
from nasscale.cli import main
from nasscale.search.storage import open_storage, redact

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.usefixtures("support_on_path")


def write_study(tmp_path, **fields):
    data = {"name": "t", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
            "evaluator": {"kind": "python", "target": "evalfns:width_score"},
            "trials": 6, "seed": 3, "references": ["mobilenet_v3_small"]}
    data.update(fields)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def load(out: Path, name="t"):
    storage = open_storage(None, out)
    return optuna.load_study(study_name=name, storage=storage)


def test_search_writes_every_output(tmp_path, capsys):
    study = write_study(tmp_path)
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "6 complete" in stdout and "mobilenet_v3_small (reference)" in stdout
    frame = pd.read_csv(out / "trials.csv")
    assert len(frame) == 6 and set(frame["state"]) == {"COMPLETE"}
    assert {"number", "state", "feasible", "reason", "flops", "params",
            "architecture"} <= set(frame)
    assert any(c.startswith("param: s1.") for c in frame.columns)
    best = nasscale.load(str(out / "best.yaml"))  # loadable by `nasscale show`
    assert main(["show", str(out / "best.yaml")]) == 0
    top = frame.loc[frame["score"].idxmax()]
    assert nasscale.count(best).flops == top["flops"]
    assert (out / "pareto.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"][0]["number"] == top["number"]
    assert summary["references"]["mobilenet_v3_small"]["flops"] == 56_510_400


def test_same_seed_same_study(tmp_path):
    runs = []
    for i in range(2):
        study = write_study(tmp_path, trials=5)
        out = tmp_path / f"out{i}"
        assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
        runs.append([t.params for t in load(out).trials])
    assert runs[0] == runs[1]


def test_failed_candidates_become_failed_trials_and_the_study_goes_on(tmp_path, capsys):
    study = write_study(tmp_path, evaluator={"kind": "python", "target": "evalfns:flaky_score"},
                        trials=9)
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
    frame = pd.read_csv(out / "trials.csv")
    assert len(frame) == 9
    failed = frame[frame["state"] == "FAIL"]
    assert len(failed) > 0
    assert failed["reason"].str.contains("not enough memory|simulated build failure").all()
    assert (frame["state"] == "COMPLETE").sum() + len(failed) == 9


def run_cli(*args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1", NASSCALE_TEST_SLEEP="0.5")
    return subprocess.Popen([sys.executable, "-m", "nasscale.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for(predicate, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _states(out):
    try:
        return [t.state.name for t in load(out).trials]
    except Exception:  # the study is not created yet
        return []


def test_kill_9_loses_no_finished_trial_and_rerun_resumes(tmp_path):
    study = write_study(tmp_path, evaluator={"kind": "python", "target": "evalfns:slow_score"},
                        trials=6)
    out = tmp_path / "out"
    proc = run_cli("search", str(study), "--out", str(out), "--no-progress")
    try:
        assert wait_for(lambda: _states(out).count("COMPLETE") >= 3
                        and _states(out)[-1] == "RUNNING"), proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    before = {t.number: (t.params, t.values) for t in load(out).trials
              if t.state.name == "COMPLETE"}
    running = [t for t in load(out).trials if t.state.name == "RUNNING"]
    assert len(before) >= 3 and len(running) == 1
    again = run_cli("search", str(study), "--out", str(out), "--no-progress")
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert "re-queued 1 trial" in stderr
    trials = load(out).trials
    after = {t.number: (t.params, t.values) for t in trials if t.state.name == "COMPLETE"}
    assert all(after[n] == before[n] for n in before)  # nothing lost or changed
    killed = trials[running[0].number]
    assert killed.state.name == "FAIL" and killed.user_attrs["reason"].startswith("interrupted")
    retried = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    # the re-queued trial keeps what the killed one had sampled (it may have died mid-sampling)
    assert len(retried) == 1 and running[0].params.items() <= retried[0].params.items()
    assert len(after) == 6  # `trials: 6` counts finished trials; the interrupted one is redone


def test_ctrl_c_stops_cleanly_and_writes_outputs(tmp_path):
    study = write_study(tmp_path, evaluator={"kind": "python", "target": "evalfns:slow_score"},
                        trials=50)
    out = tmp_path / "out"
    proc = run_cli("search", str(study), "--out", str(out), "--no-progress")
    assert wait_for(lambda: _states(out).count("COMPLETE") >= 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "re-run the same command to resume" in stderr and "Traceback" not in stderr
    assert f"to resume: nasscale search {study} --out {out} --no-progress\n" in stderr
    states = _states(out)
    assert "RUNNING" not in states and states.count("COMPLETE") >= 2
    assert len(pd.read_csv(out / "trials.csv")) == len(states)


def test_workers_share_the_storage_without_duplicates_or_losses(tmp_path):
    study = write_study(tmp_path, evaluator={"kind": "python", "target": "evalfns:slow_score"},
                        trials=8)
    out = tmp_path / "out"
    proc = run_cli("search", str(study), "--out", str(out), "--workers", "2", "--no-progress")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    trials = load(out).trials
    assert [t.number for t in trials] == list(range(8))
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2


def test_changed_study_settings_are_refused_on_resume(tmp_path, capsys):
    study = write_study(tmp_path, trials=2)
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
    write_study(tmp_path, trials=2, seed=4)
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 2
    assert "created with other settings (seed differ)" in capsys.readouterr().err


@pytest.mark.parametrize("body, message", [
    ({"objectives": {"acc": "maximize"}}, "objectives.acc: unknown metric"),
    ({"objectives": {"score": "max"}}, "objectives.score: must be maximize or minimize"),
    ({"evaluator": {"kind": "proxy", "proxy": "naswot", "batchsize": 8}},
     "evaluator.batchsize: unknown field (did you mean 'batch_size'?)"),
    ({"sampler": {"name": "cmaes"}}, "sampler.name: unknown sampler"),
    ({"trials": 0}, "trials: must be an integer >= 1"),
    ({"latency": {"source": "lut"}}, "latency.lut: source lut needs lut"),
    ({"space": "nope_space"}, "unknown search space 'nope_space'"),
    ({"evaluator": {"kind": "python", "target": "evalfns:missing"}}, "no callable 'missing'"),
])
def test_bad_study_files_fail_before_any_trial(tmp_path, capsys, body, message):
    study = write_study(tmp_path, **body)
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (out / "trials.csv").exists()


def test_redact_hides_passwords():
    assert redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql+psycopg2://u:p%40w@h/db") == "postgresql+psycopg2://u:***@h/db"
    assert redact("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.parametrize("url, shown", [
    ("postgresql://u:p@ss/w:rd@h/db", "postgresql://u:***@h/db"),  # '@' and '/' in it
    ("postgresql://u@h/db?password=s3cret", "postgresql://u@h/db?password=***"),
    ("postgresql://h/db?user=u&password=s3cret&sslmode=require",
     "postgresql://h/db?user=u&password=***&sslmode=require"),
    ("mysql://h/db?passwd=s3cret", "mysql://h/db?passwd=***"),
    ("postgresql://h/db?PWD=s3cret", "postgresql://h/db?PWD=***"),
    ("postgresql://h/db?sslpassword=s3cret;auth_token=s3cret",
     "postgresql://h/db?sslpassword=***;auth_token=***"),
    ("postgresql://u:a@h/db?password=s3cret", "postgresql://u:***@h/db?password=***"),
    ("host=h dbname=db password=s3cret user=u", "host=h dbname=db password=*** user=u"),
    ("postgresql://u@h/db?sslmode=require", "postgresql://u@h/db?sslmode=require"),
    ("runs/x/study.journal", "runs/x/study.journal"),
])
def test_redact_hides_secrets_in_every_url_form(url, shown):
    assert redact(url) == shown


def test_a_password_in_the_query_is_never_written_or_printed(tmp_path, capsys):
    pytest.importorskip("psycopg2")
    study = write_study(tmp_path)
    url = "postgresql://u@127.0.0.1:1/db?password=topsecret&connect_timeout=2"
    assert main(["search", str(study), "--out", str(tmp_path / "o"), "--no-progress",
                 "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "topsecret" not in err and "password=***" in err
    assert "warning: --storage holds a password" in err and "~/.pgpass" in err
    for path in (tmp_path / "o").rglob("*"):
        assert path.is_dir() or "topsecret" not in path.read_text(errors="replace")


def test_the_password_can_come_from_pgpassword_or_pgpass(tmp_path, postgres):
    """The documented way: no password on the command line (``ps`` shows it); libpq, under
    psycopg2, reads PGPASSWORD or ~/.pgpass (here PGPASSFILE) itself."""
    from postgres import PASSWORD, USER

    postgres.create_database("from_env")
    url = f"postgresql://{USER}@127.0.0.1:{postgres.port}/from_env"
    study = write_study(tmp_path, trials=2)
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres.port}:*:{USER}:{PASSWORD}\n")
    pgpass.chmod(0o600)
    base = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    for i, extra in enumerate(({"PGPASSWORD": PASSWORD}, {"PGPASSFILE": str(pgpass)})):
        proc = subprocess.run(
            [sys.executable, "-m", "nasscale.cli", "search", str(study), "--out",
             str(tmp_path / f"out{i}"), "--no-progress", "--storage", url, "--n-trials",
             str(2 + i)], env={**base, **extra}, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "warning" not in proc.stderr and PASSWORD not in proc.stdout + proc.stderr
    ostudy = optuna.load_study(study_name="t", storage=open_storage(postgres.database_url(
        "from_env"), tmp_path))
    assert len(ostudy.trials) == 3


def test_postgresql_storage_with_two_workers(tmp_path, postgres):
    from postgres import PASSWORD

    study = write_study(tmp_path, evaluator={"kind": "python", "target": "evalfns:slow_score"},
                        trials=6)
    out = tmp_path / "out"
    proc = run_cli("search", str(study), "--out", str(out), "--workers", "2", "--no-progress",
                   "--storage", postgres.url, "--study-name", "pg_two_workers")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, redact(stderr)
    ostudy = optuna.load_study(study_name="pg_two_workers", storage=open_storage(postgres.url, out))
    trials = ostudy.trials
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    # a second machine resuming the same study adds only what is missing
    proc = run_cli("search", str(study), "--out", str(tmp_path / "out2"), "--n-trials", "8",
                   "--no-progress", "--storage", postgres.url, "--study-name", "pg_two_workers")
    stdout2, stderr2 = proc.communicate(timeout=300)
    assert proc.returncode == 0, redact(stderr2)
    assert len(optuna.load_study(study_name="pg_two_workers",
                                 storage=open_storage(postgres.url, out)).trials) == 8
    for text in (stdout, stderr, stdout2, stderr2, *(p.read_text(errors="replace")
                                                     for d in (out, tmp_path / "out2")
                                                     for p in d.rglob("*") if p.is_file())):
        assert PASSWORD not in text
    assert "***" in json.loads((out / "summary.json").read_text())["storage"]


def test_unreachable_postgresql_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("psycopg2")
    study = write_study(tmp_path)
    code = main(["search", str(study), "--out", str(tmp_path / "o"), "--no-progress",
                 "--storage", "postgresql+psycopg2://u:topsecret@127.0.0.1:1/db"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot open" in err and "topsecret" not in err and "u:***@" in err


def test_several_objectives_name_each_objectives_best_on_the_front(tmp_path):
    study = write_study(tmp_path, objectives={"score": "maximize", "flops": "minimize"},
                        trials=8)
    out = tmp_path / "out"
    assert main(["search", str(study), "--out", str(out), "--no-progress"]) == 0
    frame = pd.read_csv(out / "trials.csv")
    front = {int(p.stem.split("_")[1]) for p in (out / "pareto").glob("trial_*.yaml")}
    assert front
    on_front = frame[frame["number"].isin(front)]
    for name, column, pick in (("best_score", "score", "idxmax"),
                               ("best_flops", "flops", "idxmin")):
        spec = nasscale.load(str(out / "pareto" / f"{name}.yaml"))
        want = on_front.loc[getattr(on_front[column], pick)()]
        assert nasscale.count(spec).flops == want["flops"]
