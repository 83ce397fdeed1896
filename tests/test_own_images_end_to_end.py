"""A user's own image folder, end to end, with nothing re-typed: search (train evaluator, 2
trials) -> train the best -> export it with its weights (ONNX equals the module) -> prune it
with its weights -> export the pruned network.  The folder is named in the study by a path
relative to the study file; the resolution (the images' 40 px) is carried by every file."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

import nasscale
from nasscale.cli import main

onnx = pytest.importorskip("onnx")

from test_study_data import SPACE, photos  # noqa: E402 - the tiny space and image folder


def test_search_train_export_prune_export(tmp_path, monkeypatch, capsys):
    work = tmp_path / "project"
    photos(work / "photos", size=40, per_class=12, classes=("bolt", "nut", "washer"), seed=1)
    (work / "tiny.yaml").write_text(yaml.safe_dump(SPACE))
    (work / "study.yaml").write_text(yaml.safe_dump({
        "name": "mine", "space": "tiny.yaml", "objectives": {"score": "maximize"},
        "evaluator": {"kind": "train", "data": "photos", "epochs": 1, "batch_size": 8,
                      "device": "cpu", "threads": 1},
        "sampler": {"name": "random"}, "trials": 2, "seed": 0}))
    monkeypatch.chdir(tmp_path)  # elsewhere: the study's paths are relative to its file
    out = tmp_path / "search"
    assert main(["search", "project/study.yaml", "--out", str(out), "--no-progress"]) == 0
    best = nasscale.load(str(out / "best.yaml"))
    assert best.resolution == 40  # trained and scored at the images' own size
    capsys.readouterr()

    model = tmp_path / "model.pt"
    assert main(["train", str(out / "best.yaml"), "--data", "project/photos", "--epochs", "1",
                 "--batch-size", "8", "--device", "cpu", "-o", str(model), "--quiet",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert record["resolution"] == 40 and record["classes"] == ["bolt", "nut", "washer"]
    assert "images" not in captured.err  # no size warning: nothing to re-type

    assert main(["export", str(model), "--onnx", str(tmp_path / "best.onnx")]) == 0
    said = capsys.readouterr().out
    assert "at 40x40" in said and "3 classes (bolt, nut, washer)" in said
    assert "output equals PyTorch's within" in said

    pruned = tmp_path / "pruned"
    assert main(["prune", str(model), "--target", "flops=0.85x", "--step", "0.1",
                 "--evaluator", "train:project/photos,steps=2,final_epochs=1,batch=8,"
                 "device=cpu,threads=1", "--out", str(pruned), "--quiet"]) == 0
    capsys.readouterr()
    saved = torch.load(pruned / "pruned.pt", weights_only=True)
    assert saved["classes"] == ["bolt", "nut", "washer"] and "normalisation" in saved
    assert saved["network"]["resolution"] == 40
    assert main(["export", str(pruned / "pruned.pt"), "--onnx", str(tmp_path / "p.onnx")]) == 0
    said = capsys.readouterr().out
    assert "at 40x40" in said and "3 classes" in said
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "p.onnx")).metadata_props}
    assert json.loads(meta["nasscale.classes"]) == ["bolt", "nut", "washer"]
