"""A study on your own images: data paths relative to the study file, the training resolution
carried from the data to every output, where budgets are measured, training threads, scores
at chance level, and the outputs around them (labels, plot counts, lock file, Ctrl-C)."""
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import nasscale
from nasscale.cli import main
from nasscale.errors import SpecError
from nasscale.search.study import load_study, study_from_data
from nasscale.search.study_data import (
    chance_level,
    data_label,
    default_resolution,
    image_size,
    resolve_data,
)

SPACE = {  # a trial trains in a fraction of a second
    "name": "tiny", "num_classes": 3, "resolution": [64],
    "stem": {"width": 8, "activation": ["relu"]},
    "stages": [
        {"stride": 2, "depth": [1], "width": {"min": 8, "max": 16}, "kinds": ["ds"],
         "kernel_size": [3], "activation": ["relu"]},
        {"stride": 2, "depth": [1, 2], "width": {"min": 16, "max": 24}, "kinds": ["mbconv"],
         "kernel_size": [3], "expand_ratio": [2], "se": [False], "activation": ["relu"]},
    ],
    "head": {"hidden": [[]], "dropout": 0.0},
}
TRAIN = {"kind": "train", "data": "my_photos", "epochs": 1, "batch_size": 8, "device": "cpu",
         "threads": 1, "augment": False}


def photos(root: Path, size: int = 48, per_class: int = 8,
           classes=("class0", "class1", "class2"), seed: int = 0) -> Path:
    """Three classes of ``size`` px images, one colour channel brighter per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 80, (size, size, 3))
            img[..., c] += 150
            Image.fromarray(img.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def write_study(folder: Path, **fields) -> Path:
    """``folder/study.yaml`` over the tiny space beside it (written once)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(yaml.safe_dump(SPACE))
    data = {"name": "mine", "space": "tiny.yaml", "objectives": {"score": "maximize"},
            "evaluator": dict(TRAIN), "sampler": {"name": "random"}, "trials": 2, "seed": 0}
    data.update(fields)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


# --- data: names and paths relative to the study file ---------------------------------------

def test_a_bare_folder_name_beside_the_study_file_is_that_folder(tmp_path, monkeypatch):
    photos(tmp_path / "studies" / "my_photos")
    (tmp_path / "studies" / "digits").mkdir()  # a folder does not shadow a name
    path = write_study(tmp_path / "studies")
    monkeypatch.chdir(tmp_path)
    study = load_study("studies/study.yaml")
    assert study.data_source == os.path.join("studies", "my_photos")
    assert study.evaluator["data"] == "my_photos"  # stored as written: the study can move
    for name in ("testbed", "testbed-v2", "testbed-v3:train=5,test=5", "digits"):
        assert resolve_data(name, str(path)) == name
    assert resolve_data(str(tmp_path / "studies" / "my_photos"), str(path)) == \
        str(tmp_path / "studies" / "my_photos")


@pytest.mark.parametrize("evaluator", [
    dict(TRAIN, data="nope"),
    {"kind": "proxy", "proxy": "naswot", "data": "nope"},
    {"kind": "inherit", "parent": "parent.yaml", "weights": "parent.pt", "data": "nope"},
])
def test_a_missing_data_path_names_the_field_the_path_and_the_folder(tmp_path, monkeypatch,
                                                                     capsys, evaluator):
    write_study(tmp_path / "studies", evaluator=evaluator)
    monkeypatch.chdir(tmp_path)
    assert main(["search", "studies/study.yaml", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "evaluator.data: nope: no such file or folder: tried " \
        f"{os.path.join('studies', 'nope')} (relative to {tmp_path / 'studies'}, the study " \
        "file's folder)" in err
    assert not (tmp_path / "runs").exists()


def test_data_labels_and_image_sizes(tmp_path):
    assert data_label(str(tmp_path / "a" / "my_photos") + "/") == "my_photos"
    assert data_label("testbed-v3:train=5,test=5") == "testbed-v3:train=5,test=5"
    np.savez(tmp_path / "set.npz", x_train=np.zeros((4, 20, 24, 3), np.uint8),
             y_train=np.arange(4) % 2, x_test=np.zeros((2, 20, 24, 3), np.uint8),
             y_test=np.arange(2))
    assert data_label(str(tmp_path / "set.npz")) == "set.npz"
    assert image_size(str(tmp_path / "set.npz")) == 24
    assert image_size(str(photos(tmp_path / "p", size=40, per_class=1))) == 40
    assert (image_size("testbed"), image_size("digits")) == (32, 8)
    assert default_resolution(48) == 48 and default_resolution(8) == default_resolution(None) == 32


# --- one resolution, from the data to every output ------------------------------------------

def test_a_trained_study_records_and_carries_the_data_s_resolution(tmp_path, capsys,
                                                                   monkeypatch):
    photos(tmp_path / "studies" / "my_photos")
    write_study(tmp_path / "studies", constraints=["flops <= 50M"])
    monkeypatch.chdir(tmp_path)
    assert main(["search", "studies/study.yaml", "--out", "out", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "nasscale: budgets (latency, FLOPs) are measured at each candidate's deploy " \
        "resolution (64 px, the space's), scores at 48 px (budget_resolution: train " \
        "measures budgets at the trained resolution)" in captured.err
    frame = pd.read_csv("out/trials.csv")
    assert (frame["resolution"] == 48).all() and (frame["deploy_resolution"] == 64).all()
    text = Path("out/best.yaml").read_text()
    assert "# resolution 48: the score's (trained at it); the candidate's deploy resolution " \
        "is 64 (latency and FLOPs above at 64 px)" in text
    best = nasscale.load("out/best.yaml")
    assert best.resolution == 48
    assert frame.loc[frame["number"] == int(text.split("trial ")[1].split("\n")[0]),
                     "flops"].item() == nasscale.count(best.replace(resolution=64)).flops
    summary = json.loads(Path("out/summary.json").read_text())
    assert summary["score"] == "top-1 after 1 epochs on my_photos at 48px"  # no path
    assert summary["score_name"] == "accuracy" and summary["budget_resolution"] == "deploy"
    assert {"classes": 3, "held_out": 5} .items() <= summary["chance_level"].items()
    table = next(line for line in captured.out.splitlines() if line.startswith("network"))
    assert table.split() == ["network", "accuracy", "latency", "FLOPs", "params"]
    assert "accuracy: top-1 after 1 epochs on my_photos at 48px" in captured.out
    assert not list(Path("out").glob("*.lock"))  # the set-up lock is gone


def test_budget_resolution_train_measures_candidates_and_budget_networks_there(tmp_path,
                                                                              capsys):
    photos(tmp_path / "my_photos", size=40)
    path = write_study(tmp_path, budget_resolution="train",
                       constraints=["flops <= 0.5x mobilenet_v3_small"])
    assert main(["search", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "budgets (latency, FLOPs) and the networks they name are measured at the trained " \
        "resolution, 40 px (budget_resolution: train)" in capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    small = nasscale.load("mobilenet_v3_small").replace(resolution=40, expected=None)
    assert summary["constraints"][0]["limit"] == pytest.approx(
        0.5 * nasscale.count(small).flops)
    frame = pd.read_csv(tmp_path / "out" / "trials.csv")
    best = nasscale.load(str(tmp_path / "out" / "best.yaml"))
    assert best.resolution == 40 and nasscale.count(best).flops in set(frame["flops"])
    assert "deploy resolution" in (tmp_path / "out" / "best.yaml").read_text()


def test_latency_budget_networks_are_timed_at_the_trained_resolution(monkeypatch):
    import importlib

    from nasscale.latency import source
    from nasscale.search.latency_source import make_latency_source, resolve_budgets

    measuring = importlib.import_module("nasscale.latency.measure")  # the module, not the function

    study = study_from_data({
        "name": "r", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
        "evaluator": {"kind": "train", "data": "digits", "resolution": 48},
        "budget_resolution": "train", "constraints": ["latency <= 1.0x mobilenet_v3_small"],
        "trials": 1})
    timed = []

    def reference(self, spec):
        timed.append(spec.resolution)
        return 2.0, "fake", self.settings.key()

    monkeypatch.setattr(source.Measured, "reference", reference)
    constraints, _, _, ref = resolve_budgets(study, 48)
    assert timed == [48] and ref == {"name": "mobilenet_v3_small", "ms": 2.0, "resolution": 48}

    class Ratio:
        ratio = 1.5

    def measure_ratio(spec, other, **kw):
        timed.append((spec.resolution, other.resolution))
        return Ratio()

    monkeypatch.setattr(measuring, "measure_ratio", measure_ratio)
    latency = make_latency_source(study, reference=ref)
    candidate = nasscale.load("mobilenet_v3_large").replace(resolution=48, expected=None)
    assert latency.latency_ms(candidate) == pytest.approx(3.0)
    assert timed[-1] == (48, 48)  # the candidate and its reference, both at 48 px


@pytest.mark.parametrize("fields, message", [
    ({"budget_resolution": "native"}, "budget_resolution: must be deploy (each candidate's own "
                                      "resolution, the space's) or train"),
    ({"budget_resolution": "train", "evaluator": {"kind": "proxy", "proxy": "naswot"}},
     "budget_resolution: train needs an evaluator that trains (kind train or inherit); this "
     "one is kind proxy"),
    ({"budget_resolution": "train", "latency": {"source": "lut", "lut": "t.json"}},
     "budget_resolution: train cannot use latency.source lut"),
    ({"evaluator": dict(TRAIN, threads=0)}, "evaluator.threads: must be an integer from 1 to "),
    ({"evaluator": dict(TRAIN, threads=10_000)}, "evaluator.threads: must be an integer from 1 "),
    ({"evaluator": dict(TRAIN, threads="2")}, "evaluator.threads: must be an integer from 1 "),
    ({"evaluator": {"kind": "proxy", "proxy": "naswot", "threads": 1}},
     "evaluator.threads: unknown field"),
])
def test_bad_budget_resolution_and_threads_are_one_line(tmp_path, capsys, fields, message):
    photos(tmp_path / "my_photos", per_class=1)
    path = write_study(tmp_path, **fields)
    assert main(["search", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_threads_reach_training_and_may_change_on_resume(tmp_path):
    from nasscale.search.setup import _fingerprint

    photos(tmp_path / "my_photos", per_class=1)
    study = load_study(write_study(tmp_path))
    settings = study.evaluator.train_settings(0, 48)
    assert settings.resolution == 48 and settings.threads == 1
    other = load_study(write_study(tmp_path, evaluator={k: v for k, v in TRAIN.items()
                                                        if k != "threads"}))
    assert other.evaluator.train_settings(0, 48).threads is None  # chosen when training
    assert _fingerprint(study) == _fingerprint(other)


# --- chance level -----------------------------------------------------------------------------

def test_chance_level_is_a_binomial_bound_on_the_held_out_images():
    chance, limit = chance_level(4, 100)
    assert chance == 0.25 and limit == pytest.approx(0.25 + 2 * (0.25 * 0.75 / 100) ** 0.5)
    assert chance_level(19, 9500)[1] < 0.06  # the testbed: half a point of noise


def test_a_study_scoring_at_chance_says_so(tmp_path, capsys):
    # identical images: every network predicts one class, exactly chance on balanced labels
    np.savez(tmp_path / "flat.npz", x_train=np.full((24, 16, 16), 7, np.uint8),
             y_train=np.arange(24) % 4, x_test=np.full((40, 16, 16), 7, np.uint8),
             y_test=np.arange(40) % 4)
    path = write_study(tmp_path, evaluator=dict(TRAIN, data="flat.npz"))
    assert main(["search", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    chance = json.loads((tmp_path / "out" / "summary.json").read_text())["chance_level"]
    assert chance["at_chance"] and chance["best"] == 0.25 and chance["held_out"] == 40
    line = next(x for x in err.splitlines() if "chance level" in x)
    assert line.startswith("nasscale: warning: scores are at chance level: the best accuracy "
                           "0.250 is within noise of guessing (0.250 for 4 classes, up to "
                           "0.387 on 40 held-out images)")
    assert "train longer" in line and "check the data" in line


# --- outputs ------------------------------------------------------------------------------------

def test_the_plot_counts_every_over_budget_trial_and_shows_the_unscored_ones(tmp_path,
                                                                             monkeypatch):
    import matplotlib.figure

    from nasscale.search.plots import pareto_plot

    rows = [{"number": i, "state": "COMPLETE", "status": "feasible", "feasible": True,
             "accuracy": 0.3 + 0.01 * i, "latency_ms": 3.0 + i} for i in range(4)]
    rows += [{"number": 10 + i, "state": "PRUNED", "status": "over budget", "feasible": False,
              "accuracy": acc, "latency_ms": lat}
             for i, (acc, lat) in enumerate([(0.5, 9.0), (None, 8.0), (None, 8.5),
                                             (None, None), (None, None), (None, None)])]
    seen = {}

    def savefig(fig, path, **kw):
        ax, strip = fig.axes
        seen.update(legend=[t.get_text() for t in ax.get_legend().get_texts()],
                    title=ax.get_title(), strip=len(strip.collections[0].get_offsets()))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    title = "study: top-1 after 4 epochs on " + "a_long_folder_name/" * 6 + " at 32px vs latency"
    pareto_plot(pd.DataFrame(rows), tmp_path / "p.png", "accuracy", "latency",
                budgets={"latency": 7.0}, title=title)
    assert "over budget: 6 (1 scored)" in seen["legend"]
    assert "  2 rejected before scoring (below)" in seen["legend"] and seen["strip"] == 2
    assert "  3 not drawn (rejected by FLOPs before latency was known)" in seen["legend"]
    lines = seen["title"].splitlines()
    assert len(lines) > 1 and max(map(len, lines)) <= 90
    assert "".join(lines).replace(" ", "") == title.replace(" ", "")  # wrapped, not clipped


def test_the_set_up_lock_is_removed_and_still_excludes(tmp_path):
    from nasscale.search.storage import setup_lock

    inside, most, entries = [0], [0], []
    guard = threading.Lock()

    def worker() -> None:  # flock excludes open files, so threads race like processes
        for _ in range(4):
            with setup_lock(None, tmp_path):
                with guard:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.05)
                with guard:
                    inside[0] -= 1
                entries.append(1)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # a waiter that locked the removed file opens the new one: one holder at a time (without
    # that check, 3 held it at once here)
    assert len(entries) == 24 and most[0] == 1
    assert not (tmp_path / "study.journal.setup.lock").exists()


def test_an_interrupted_search_prints_the_command_that_resumes_it(tmp_path, capsys,
                                                                  monkeypatch):
    import nasscale.search as search
    from nasscale.cli import make_parser
    from nasscale.cli.search import resume_command

    args = make_parser().parse_args(["search", "studies/x.yaml", "--out", "runs/x y",
                                     "--storage", "postgresql://u:secret@h/db", "--workers",
                                     "2", "--no-progress"])
    assert resume_command(args) == ("nasscale search studies/x.yaml --out 'runs/x y' "
                                    "--storage 'postgresql://u:***@h/db' --workers 2 "
                                    "--no-progress")
    photos(tmp_path / "my_photos", per_class=1)
    path = write_study(tmp_path)

    def interrupted(study, options):
        raise KeyboardInterrupt

    monkeypatch.setattr(search, "run_search", interrupted)
    out = tmp_path / "out"
    assert main(["search", str(path), "--out", str(out)]) == 130
    assert capsys.readouterr().err == (
        f"nasscale: interrupted; finished trials are kept in {out / 'study.journal'}; re-run "
        f"the same command to resume: nasscale search {path} --out {out}\n")


def test_a_missing_parent_s_weights_suggest_the_study_s_own_training_command(tmp_path):
    from nasscale.scoring.inherit import parent_command
    from nasscale.scoring.kinds import InheritSpec

    photos(tmp_path / "my_photos", size=40, per_class=1)
    data = str(tmp_path / "my_photos")
    command = parent_command(InheritSpec(val_fraction=0.3, device="cpu", threads=1,
                                         channels_last=False), "parent.yaml", data, "w.pt")
    assert command == (f"nasscale train parent.yaml --data {data} --resolution 40 "
                       "--val-fraction 0.3 --device cpu --threads 1 --no-channels-last -o w.pt")
    assert "--resolution 24 " in parent_command(InheritSpec(resolution=24), "p.yaml", data, "w.pt")


def test_an_unknown_field_is_still_refused(tmp_path):
    with pytest.raises(SpecError, match="budget_resolutions: unknown field"):
        study_from_data({"name": "x", "space": "mobilenet_v3_like", "trials": 1,
                         "objectives": {"score": "maximize"},
                         "evaluator": {"kind": "train", "data": "digits"},
                         "budget_resolutions": "train"})
