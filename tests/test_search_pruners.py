"""Multi-fidelity search: Optuna pruners in study files, early-stopped trials in every output."""
import json

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml

from nasscale.cli import main
from nasscale.errors import SpecError
from nasscale.search.objective import Objective, trial_status
from nasscale.search.progress import Progress
from nasscale.search.runner import Setup, finished_count, make_pruner, worker_main
from nasscale.search.storage import open_storage
from nasscale.search.study import study_from_data

optuna.logging.set_verbosity(optuna.logging.WARNING)

TINY_SPACE = {  # a few thousand parameters: a trial trains in a fraction of a second
    "name": "tiny", "num_classes": 3, "resolution": [32],
    "stem": {"width": 8, "activation": ["relu"]},
    "stages": [
        {"stride": 2, "depth": [1, 2], "width": {"min": 8, "max": 24}, "kinds": ["ds"],
         "kernel_size": [3, 5], "activation": ["relu"]},
        {"stride": 2, "depth": [1, 2], "width": {"min": 16, "max": 32}, "kinds": ["mbconv"],
         "kernel_size": [3], "expand_ratio": [1, 4], "se": [False], "activation": ["relu"]},
    ],
    "head": {"hidden": [[]], "dropout": 0.0},
}


def study_data(**fields):
    data = {"name": "p", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
            "evaluator": {"kind": "train", "data": "digits", "epochs": 4}, "trials": 2}
    data.update(fields)
    return data


@pytest.mark.parametrize("pruner, cls, expected", [
    (None, optuna.pruners.NopPruner, {"name": "none"}),
    ("median", optuna.pruners.MedianPruner, {"name": "median"}),
    ({"name": "median", "n_startup_trials": 1, "n_warmup_steps": 1, "interval_steps": 2},
     optuna.pruners.MedianPruner,
     {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 1, "interval_steps": 2}),
    ({"name": "successive_halving", "min_resource": 1, "reduction_factor": 2,
      "min_early_stopping_rate": 0}, optuna.pruners.SuccessiveHalvingPruner,
     {"name": "successive_halving", "min_resource": 1, "reduction_factor": 2,
      "min_early_stopping_rate": 0}),
    ({"name": "successive_halving", "min_resource": "auto"},
     optuna.pruners.SuccessiveHalvingPruner, {"name": "successive_halving",
                                              "min_resource": "auto"}),
    # max_resource defaults to the evaluator's epochs: the same brackets in every worker
    ({"name": "hyperband", "min_resource": 1, "reduction_factor": 3},
     optuna.pruners.HyperbandPruner,
     {"name": "hyperband", "min_resource": 1, "reduction_factor": 3, "max_resource": 4}),
])
def test_pruner_sections_parse_to_optuna_pruners(pruner, cls, expected):
    study = study_from_data(study_data(**({} if pruner is None else {"pruner": pruner})))
    assert study.pruner.as_written() == expected
    assert isinstance(make_pruner(study), cls)


def test_worker_processes_load_the_study_with_its_pruner(tmp_path, monkeypatch):
    seen = {}

    def load_study(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(optuna, "load_study", load_study)
    study = study_from_data(study_data(pruner={"name": "median", "n_startup_trials": 1}))
    setup = Setup(study=study, study_name="p", storage=None, out=str(tmp_path), constraints=(),
                  reward=None)
    with pytest.raises(RuntimeError, match="stop here"):
        worker_main(setup, None, 0)
    assert isinstance(seen["pruner"], optuna.pruners.MedianPruner)


def test_reward_objective_may_be_pruned():
    study = study_from_data(study_data(objectives={"reward": "maximize"}, pruner="median",
                                       reward={"target": "5ms"}))
    assert study.pruner["name"] == "median"


@pytest.mark.parametrize("fields, message", [
    ({"pruner": {"name": "asha"}}, "pruner.name: unknown pruner; allowed: successive_halving, "
                                   "hyperband, median, none"),
    ({"pruner": {"name": "median", "min_resource": 1}},
     "pruner.min_resource: not a setting of pruner median; it takes n_startup_trials, "
     "n_warmup_steps, interval_steps"),
    ({"pruner": {"name": "hyperband", "min_resorce": 1}},
     "pruner.min_resorce: unknown field (did you mean 'min_resource'?)"),
    ({"pruner": {"n_startup_trials": 1}}, "pruner: missing field 'name'"),
    ({"pruner": {"name": "successive_halving", "reduction_factor": 1}},
     "pruner.reduction_factor: must be an integer >= 2 and <= 1,000, got 1"),
    ({"pruner": {"name": "successive_halving", "min_resource": "some"}},
     "pruner.min_resource: must be an integer >= 1 and <= 100,000, or auto"),
    ({"pruner": {"name": "median", "n_warmup_steps": -1}},
     "pruner.n_warmup_steps: must be an integer >= 0 and <= 100,000, got -1"),
    ({"pruner": {"name": "median", "interval_steps": 0}},
     "pruner.interval_steps: must be an integer >= 1 and <= 100,000, got 0"),
    ({"pruner": {"name": "successive_halving", "min_early_stopping_rate": 10 ** 6}},
     "pruner.min_early_stopping_rate: must be an integer >= 0 and <= 100, got 1000000"),
    ({"pruner": {"name": "hyperband", "max_resource": 1.5}},
     "pruner.max_resource: must be an integer >= 1 and <= 100,000, or auto, got 1.5"),
    ({"pruner": {"name": "hyperband", "min_resource": 3, "max_resource": 2}},
     "pruner.max_resource: must be >= min_resource (3), got 2"),
    ({"pruner": {"name": "successive_halving", "min_resource": 2, "reduction_factor": 2,
                 "min_early_stopping_rate": 1}},
     "pruner.min_resource: the first rung is at epoch 4, not before evaluator.epochs 4"),
    ({"pruner": {"name": "none", "n_startup_trials": 1}},
     "pruner.n_startup_trials: not a setting of pruner none; it takes no settings"),
    ({"evaluator": {"kind": "train", "device": "gpu"}},
     "evaluator.device: must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ({"evaluator": {"kind": "train", "amp": "fp32"}},
     "evaluator.amp: must be one of none, bf16, fp16, got 'fp32'"),
    ({"evaluator": {"kind": "train", "channels_last": "yes"}},
     "evaluator.channels_last: must be true or false, got 'yes'"),
    ({"evaluator": {"kind": "train", "augment": 1}},
     "evaluator.augment: must be true or false, got 1"),
    ({"evaluator": {"kind": "train", "progressive": None}},
     "evaluator.progressive: must be true or false, got None"),
    ({"evaluator": {"kind": "train", "lr": 0}}, "evaluator.lr: must be a number > 0, got 0"),
    ({"evaluator": {"kind": "train", "val_fraction": 1.5}},
     "evaluator.val_fraction: must be a number in (0, 1), got 1.5"),
])
def test_bad_pruner_and_train_settings_name_the_field(fields, message):
    with pytest.raises(SpecError) as err:
        study_from_data(study_data(**fields))
    assert message in str(err.value)


@pytest.mark.parametrize("fields, has", [
    ({"objectives": {"score": "maximize", "latency": "minimize"}},
     "this study has objectives score, latency and evaluator.kind train"),
    ({"evaluator": {"kind": "proxy", "proxy": "naswot"}},
     "this study has objectives score and evaluator.kind proxy"),
    ({"objectives": {"flops": "minimize"}}, "this study has objectives flops"),
])
def test_pruner_needs_one_trained_objective(tmp_path, capsys, fields, has):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_data(pruner={"name": "median"}, **fields),
                               sort_keys=False))
    assert main(["search", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pruner: median needs a single objective, score or reward, and evaluator.kind: " \
        "train (Optuna's pruners compare the per-epoch values of one objective" in err
    assert has in err and "Use objectives {score: maximize} with the budgets as constraints, " \
        "or {reward: maximize}" in err and "or pruner {name: none}" in err
    assert err.count("\n") == 1 and not (tmp_path / "out" / "trials.csv").exists()


class FakeTrial:
    def __init__(self, prune_at=()):
        self.prune_at, self.reports, self.user_attrs = set(prune_at), [], {}

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.reports[-1][0] in self.prune_at

    def set_user_attr(self, key, value):
        self.user_attrs[key] = value


class Epochs:
    name, epochs = "accuracy", 3


def reporter(metrics, pruner, trial, reward=None, values=None):
    objective = Objective(space=None, metrics=metrics, evaluator=Epochs(), pruner=pruner,
                          reward=reward)
    trained = {"epochs": 0}
    return objective._reporter(trial, values or {}, trained), trained


def test_reports_stop_a_trial_only_with_a_pruner_and_never_after_its_last_epoch():
    trial = FakeTrial(prune_at={2, 3})
    report, trained = reporter(("score",), "median", trial)
    report(1, 0.5)
    with pytest.raises(optuna.TrialPruned, match="stopped early by median after epoch 2 "
                                                 r"\(accuracy 0.412\)"):
        report(2, 0.412)
    assert trial.user_attrs == {"stopped_early": True, "epochs": 2, "score": 0.412,
                                "reason": "stopped early by median after epoch 2 "
                                          "(accuracy 0.412)"}
    trial = FakeTrial(prune_at={3})
    report, trained = reporter(("score",), "median", trial)
    for epoch in (1, 2, 3):  # the pruner would stop it after the last epoch: it is complete
        report(epoch, 0.1 * epoch)
    assert trained["epochs"] == 3 and "stopped_early" not in trial.user_attrs
    trial = FakeTrial(prune_at={1})
    report, _ = reporter(("score",), "none", trial)
    report(1, 0.3)  # no pruner: reported (Optuna keeps the curve), never stopped
    assert trial.reports == [(1, 0.3)]


def test_reward_studies_report_the_reward_and_multi_objective_ones_only_count_epochs():
    trial = FakeTrial()
    report, _ = reporter(("reward",), "median", trial, reward=(2.0, -1.0),
                         values={"latency": 4.0})
    report(1, 0.8)
    assert trial.reports == [(1, pytest.approx(0.4))]  # 0.8 * (4 / 2) ** -1
    trial = FakeTrial()
    report, trained = reporter(("score", "latency"), "none", trial)
    report(1, 0.8)
    report(2, 0.9)
    assert trial.reports == [] and trained["epochs"] == 2


def test_progress_line_counts_stopped_early_apart():
    progress = Progress.__new__(Progress)
    progress.stopping = True
    counts = {"feasible": 3, "over budget": 1, "stopped early": 2, "failed": 0, "running": 1}
    assert progress.text(counts) == ("ok 3, over budget 1, stopped early 2, failed 0, "
                                     "running 1")
    progress.stopping = False
    assert "stopped early" not in progress.text({**counts, "stopped early": 0})


def tiny_npz(path, n_train=72, n_test=36, seed=0):
    """Three classes of noisy 8x8 images (a bright left half, top half or diagonal)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 8, 8))
    masks[0, :, :4] = 1
    masks[1, :4, :] = 1
    masks[2] = np.eye(8) + np.eye(8, k=1) + np.eye(8, k=-1)

    def draw(n):
        y = np.arange(n) % 3
        x = 0.6 * masks[y] + rng.normal(0, 0.45, (n, 8, 8))
        return np.clip(x, 0, 1).astype(np.float32), y

    x, y = draw(n_train)
    tx, ty = draw(n_test)
    np.savez(path, x_train=x, y_train=y, x_test=tx, y_test=ty)
    return path


def test_a_pruned_study_records_stopped_trials_in_every_output(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    data = tiny_npz(tmp_path / "tiny.npz")
    study = study_data(
        space="tiny.yaml", trials=8, seed=1, sampler={"name": "random"},
        evaluator={"kind": "train", "data": str(data), "epochs": 3, "batch_size": 4,
                   "resolution": 16, "lr": 0.05, "device": "cpu", "augment": False},
        pruner={"name": "successive_halving", "min_resource": 1, "reduction_factor": 2})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    out = tmp_path / "out"
    assert main(["search", str(path), "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    frame = pd.read_csv(out / "trials.csv")
    assert len(frame) == 8 and {"status", "epochs"} <= set(frame.columns)
    stopped = frame[frame["status"] == "stopped early"]
    complete = frame[frame["status"] == "feasible"]
    assert len(stopped) >= 1 and len(complete) >= 1 and len(stopped) + len(complete) == 8
    assert (stopped["state"] == "PRUNED").all() and (stopped["epochs"] < 3).all()
    assert stopped["reason"].str.match(
        r"stopped early by successive_halving after epoch \d \(accuracy \d\.\d{3}\)").all()
    assert stopped["accuracy"].notna().all()  # the last reported accuracy, drawn on the plot
    assert (complete["epochs"] == 3).all() and (complete["state"] == "COMPLETE").all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] == len(stopped)
    assert summary["statuses"] == {"feasible": len(complete), "stopped early": len(stopped)}
    assert summary["pruner"]["name"] == "successive_halving"
    assert f"{len(stopped)} stopped early" in stdout
    best = summary["best"][0]["number"]
    assert best in set(complete["number"]) and best not in set(stopped["number"])
    assert "# found by nasscale search, study p, trial " + str(best) in \
        (out / "best.yaml").read_text()
    assert (out / "pareto.png").stat().st_size > 10_000
    ostudy = optuna.load_study(study_name="p", storage=open_storage(None, out))
    assert finished_count(ostudy) == 8  # stopped trials are finished trials
    assert {trial_status(t) for t in ostudy.trials} == {"feasible", "stopped early"}
    assert all(t.intermediate_values for t in ostudy.trials)
    # the pruner is part of the study's settings: resuming with another is refused
    study["pruner"] = {"name": "median"}
    path.write_text(yaml.safe_dump(study))
    assert main(["search", str(path), "--out", str(out), "--no-progress"]) == 2
    assert "created with other settings (pruner differ)" in capsys.readouterr().err


def test_the_train_evaluator_can_score_by_training_loss(tmp_path, capsys):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY_SPACE))
    data = tiny_npz(tmp_path / "tiny.npz")
    study = study_data(
        space="tiny.yaml", trials=4, seed=1, sampler={"name": "random"},
        evaluator={"kind": "train", "data": str(data), "epochs": 2, "batch_size": 4,
                   "resolution": 16, "lr": 0.05, "device": "cpu", "augment": False,
                   "signal": "sotl"},
        pruner={"name": "median", "n_startup_trials": 1})
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    out = tmp_path / "out"
    assert main(["search", str(path), "--out", str(out), "--no-progress"]) == 0
    frame = pd.read_csv(out / "trials.csv")
    assert "sotl" in frame.columns and (frame["sotl"].dropna() < 0).all()  # minus a loss
    ostudy = optuna.load_study(study_name="p", storage=open_storage(None, out))
    for t in ostudy.trials:  # reported per epoch: minus that epoch's training loss
        assert t.intermediate_values and all(v < 0 for v in t.intermediate_values.values())
    assert "minus the training loss (SoTL)" in json.loads(
        (out / "summary.json").read_text())["score"]


def test_an_unknown_train_signal_is_refused():
    with pytest.raises(SpecError, match="evaluator.signal: must be one of accuracy, sotl"):
        study_from_data(study_data(evaluator={"kind": "train", "data": "digits",
                                              "signal": "loss"}))
