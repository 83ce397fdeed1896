"""Supernets: a subnetwork's tensors are cuts of the supernet's that autograd follows, sorting
channels keeps the function, a trained network writes back into the supernet, the sandwich
trains and resumes exactly, two gloo ranks equal one process, and bad input is one line."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import nasscale
from nasscale.cli import main
from nasscale.errors import NasscaleError
from nasscale.grammar import network_to_data
from nasscale.scoring.data import load_dataset
from nasscale.scoring.evaluators import build_seeded
from nasscale.scoring.settings import TrainSettings
from nasscale.specs.random import RandomSuggester
from nasscale.supernet import Supernet, SupernetSettings, file, train_supernet
from nasscale.supernet.sandwich import Sampler
from nasscale.transfer.views import View, sort_channels

from test_inherit import TINY_BNECK, TINY_MBCONV, one_thread, randomised, space_of  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def data_file(tmp_path: Path, n: int = 64, classes: int = 4) -> Path:
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    x = rng.integers(0, 80, (n, 16, 16)).astype(np.uint8) + (y * 40)[:, None, None]
    path = tmp_path / "data.npz"
    np.savez(path, x=x.astype(np.uint8), y=y)
    return path


def settings(**changes) -> SupernetSettings:
    train = TrainSettings(epochs=2, batch_size=8, lr=0.05, resolution=16, device="cpu",
                          threads=1, warmup=0.1)
    return replace(SupernetSettings(train, probes=1, calibration_batches=2), **changes)


def supernet_of(space, classes: int = 4, seed: int = 0):
    spec = file.supernet_spec(space, 16, classes)
    return file.aligned(space, spec), randomised(build_seeded(spec, seed))


def test_a_view_computes_its_module_and_trains_the_supernet(tmp_path):
    space = space_of(TINY_BNECK, tmp_path)
    parent, model = supernet_of(space)
    model.eval()
    x = torch.randn(3, 3, 16, 16)
    import random

    rng = random.Random(0)
    for _ in range(4):
        cand = space.sample(RandomSuggester(rng)).replace(resolution=16, num_classes=4)
        view = View(parent, model, cand, first=True)
        with torch.no_grad():
            a = view.forward(x)
            b = view.module().eval()(x)
        assert torch.equal(a, b)
    model.train()
    model.zero_grad()
    view.forward(x).square().sum().backward()
    used = [p for p in model.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert used  # the loss reaches the shared weights
    smallest = View(parent, model, space.smallest().replace(resolution=16, num_classes=4),
                    first=True)
    assert sum(t.numel() for t in smallest.tensors().values()) < sum(
        t.numel() for t in model.state_dict().values())


def test_sorting_channels_keeps_the_function_and_permutes_optimizer_state(tmp_path):
    space = space_of(TINY_BNECK, tmp_path)
    parent, model = supernet_of(space)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    before = model(x)
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    sort_channels(parent, model, [state])
    assert torch.allclose(model(x), before, atol=1e-5)
    for n, p in model.named_parameters():  # the state moved with its parameter
        assert torch.equal(state[n], p.detach()), n
    # after sorting, the first channels are the largest-norm ones: both cuts agree
    cand = space.smallest().replace(resolution=16, num_classes=4)
    first = View(parent, model, cand, first=True).module().eval()
    strongest = View(parent, model, cand, first=False).module().eval()
    assert torch.allclose(first(x), strongest(x), atol=1e-5)


def test_a_trained_network_writes_back_where_its_cut_takes_it(tmp_path):
    space = space_of(TINY_BNECK, tmp_path)
    parent, model = supernet_of(space)
    cand = space.smallest(name="small").replace(resolution=16, num_classes=4)
    small = build_seeded(cand, 5)
    fresh = View(parent, model, cand, first=True).write_back(small.state_dict())
    cut = View(parent, model, cand, first=True).tensors()
    for name, t in small.state_dict().items():
        assert torch.equal(cut[name], t), name
    assert 0 < sum(fresh.values()) < len(fresh)
    largest = build_seeded(parent.spec, 6)
    fresh = View(parent, model, parent.spec, first=True).write_back(largest.state_dict())
    assert not any(fresh.values())  # the largest fills everything


def test_the_sandwich_is_largest_smallest_then_seeded_random(tmp_path):
    space = space_of(TINY_BNECK, tmp_path)
    parent, model = supernet_of(space)
    sampler = Sampler(space, parent, model, 16, 4, seed=3)
    step = sampler.step(7, 4)
    assert step[0] == sampler.largest and step[1] == sampler.smallest and len(step) == 4
    assert step == Sampler(space, parent, model, 16, 4, seed=3).step(7, 4)
    assert sampler.step(8, 4)[2:] != step[2:] or sampler.step(9, 4)[2:] != step[2:]
    assert sampler.step(7, 1) == [sampler.largest]
    flops = nasscale.count(sampler.smallest).flops
    assert all(nasscale.count(s).flops >= flops for s in sampler.step(11, 6))


def _train(space, data_path, out, **changes):
    return train_supernet(space, load_dataset(str(data_path)), settings(**changes), out,
                          data_source=str(data_path), progress=False, log=lambda m: None)


def test_training_records_probes_scores_and_extracts(tmp_path):
    space = space_of(TINY_BNECK, tmp_path)
    data = data_file(tmp_path)
    out = tmp_path / "supernet.pt"
    record = _train(space, data, out)
    assert [h["epoch"] for h in record["history"]] == [1, 2]
    assert set(record["history"][-1]["top1"]) == {"largest", "smallest", "probe0"}
    assert out.exists() and not out.with_suffix(".ckpt").exists()
    net = Supernet.open(str(out), space)
    value = net.score(space.smallest())
    assert 0.0 <= value <= 1.0 and value == net.score(space.smallest())
    assert net.score(space.largest()) == pytest.approx(
        record["history"][-1]["top1"]["largest"], abs=0.05)
    # the file is the largest member's weights, as nasscale train --weights reads them
    spec, ckpt = nasscale.modules.checkpoint.trained_network(str(out))
    assert spec.name == f"{space.name}_supernet" and ckpt.meta["supernet"]["space"] == space.name


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    space = space_of(TINY_BNECK, tmp_path)
    data = data_file(tmp_path)
    whole = tmp_path / "whole.pt"
    _train(space, data, whole)
    cut = tmp_path / "cut.pt"
    from nasscale.supernet import train as train_module

    calls = []

    def stop(self):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module.Ranks, "barrier", stop)
    with pytest.raises(KeyboardInterrupt):
        _train(space, data, cut)
    assert cut.with_suffix(".ckpt").exists() and not cut.exists()
    monkeypatch.undo()
    with pytest.raises(NasscaleError, match=r"--lr: the checkpoint .* lr 0.05.*0.1"):
        train_supernet(space, load_dataset(str(data)), settings(
            train=replace(settings().train, lr=0.1)), cut, data_source=str(data),
            resume=True, progress=False)
    train_supernet(space, load_dataset(str(data)), settings(), cut, data_source=str(data),
                   resume=True, progress=False)
    a = torch.load(whole, weights_only=True)["state_dict"]
    b = torch.load(cut, weights_only=True)["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_init_writes_a_contained_network_and_says_what_stays_fresh(tmp_path, capsys):
    space = space_of(TINY_BNECK, tmp_path)
    parent, model = supernet_of(space)
    small = space.smallest(name="small").replace(resolution=16, num_classes=10)
    trained = build_seeded(small, 2)
    path = tmp_path / "small.pt"
    torch.save({"state_dict": trained.state_dict(), "network": network_to_data(small)}, path)
    note = file.init_weights(parent, model, str(path))
    assert "of small" in note and "fresh:" in note and "new: the classifier (4 classes, the " \
        "file's has 10)" in note
    cut = View(parent, model, small.replace(num_classes=4), first=True).tensors()
    for name, t in trained.state_dict().items():
        if not name.startswith("head.classifier"):
            assert torch.equal(cut[name], t), name
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {"x": torch.zeros(2)}}, wrong)
    with pytest.raises(NasscaleError, match=r"--init .*wrong.pt: the file does not name its "
                                            r"network; give --init-network NAME"):
        file.init_weights(parent, model, str(wrong), space=space)
    with pytest.raises(NasscaleError, match=r"--init .*wrong.pt: these weights fit none of "
                                            r"mobilenet_v3_small"):
        file.init_weights(parent, model, str(wrong), "mobilenet_v3_small", space)


def test_two_gloo_ranks_give_the_weights_of_one_process_accumulating(tmp_path):
    """``torchrun --nproc-per-node 2`` on the CPU (gloo) against one process with the same
    global batch in two micro-batches: the same steps, to float tolerance."""
    space_path = tmp_path / "tiny.yaml"
    space_path.write_text(yaml.safe_dump(TINY_BNECK))
    data = data_file(tmp_path)
    common = ["supernet", "train", str(space_path), "--data", str(data), "--epochs", "1",
              "--batch-size", "16", "--resolution", "16", "--device", "cpu", "--threads", "1",
              "--probes", "0", "--calibration-batches", "1", "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", port, "-m", "nasscale", *common,
                          "-o", str(tmp_path / "ddp.pt")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert main([*common, "--accumulate", "2", "-o", str(tmp_path / "one.pt")]) == 0
    a = torch.load(tmp_path / "ddp.pt", weights_only=True)
    b = torch.load(tmp_path / "one.pt", weights_only=True)
    assert a["supernet"]["ranks"] == 2 and b["supernet"]["ranks"] == 1
    for k, v in a["state_dict"].items():
        if "running" in k or "num_batches" in k:
            continue  # BatchNorm statistics are per rank (recalibrated before scoring)
        assert torch.allclose(v, b["state_dict"][k], atol=1e-5, rtol=1e-4), k


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    space_path = tmp_path / "tiny.yaml"
    space_path.write_text(yaml.safe_dump(TINY_BNECK))
    data = data_file(tmp_path)
    mixed = dict(TINY_MBCONV, name="mixed")
    mixed["stages"] = [dict(TINY_MBCONV["stages"][1], kinds=["mbconv", "fused"])]
    (tmp_path / "mixed.yaml").write_text(yaml.safe_dump(mixed))
    args = ["--data", str(data), "--epochs", "1", "--batch-size", "8", "--resolution", "16",
            "--device", "cpu", "--quiet", "--probes", "0", "--calibration-batches", "1"]
    assert main(["supernet", "train", str(tmp_path / "mixed.yaml"), *args,
                 "-o", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "cannot be trained as a supernet: slot s0 kinds mbconv, fused" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["supernet", "train", str(space_path), *args, "--batch-size", "7",
                 "--accumulate", "2", "-o", str(tmp_path / "s.pt")]) == 2
    assert "--batch-size: 7 images per step must split into 2 micro-batches" in \
        capsys.readouterr().err
    out = tmp_path / "s.pt"
    assert main(["supernet", "train", str(space_path), *args, "-o", str(out)]) == 0
    capsys.readouterr()
    # a network the supernet does not contain
    wide = space_of(TINY_BNECK, tmp_path).largest(name="wide")
    wide = wide.replace(stages=wide.stages[:1] + tuple(
        replace(s, block=replace(s.block, out_channels=64)) for s in wide.stages[1:2]))
    (tmp_path / "wide.yaml").write_text(nasscale.dump_network(wide))
    assert main(["supernet", "extract", str(out), str(tmp_path / "wide.yaml"),
                 "-o", str(tmp_path / "w.pt")]) == 2
    err = capsys.readouterr().err
    assert "not a subnetwork of the supernet of tiny_bneck" in err and "\n" == err[-1]
    # a supernet file made for another space
    other = dict(TINY_BNECK, stages=TINY_BNECK["stages"][:2])
    other_space = space_of(other, tmp_path / "o") if (tmp_path / "o").mkdir() is None else None
    with pytest.raises(NasscaleError, match="made for another version of space tiny_bneck"):
        Supernet.open(str(out), other_space)
    # not a supernet file
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    assert main(["supernet", "extract", str(tmp_path / "plain.pt"),
                 str(tmp_path / "wide.yaml"), "-o", str(tmp_path / "w.pt")]) == 2
    assert "not a supernet file" in capsys.readouterr().err


def test_an_extracted_subnetwork_fine_tunes_and_exports(tmp_path, capsys):
    space_path = tmp_path / "tiny.yaml"
    space_path.write_text(yaml.safe_dump(TINY_BNECK))
    data = data_file(tmp_path)
    out = tmp_path / "s.pt"
    assert main(["supernet", "train", str(space_path), "--data", str(data), "--epochs", "1",
                 "--batch-size", "8", "--resolution", "16", "--device", "cpu", "--quiet",
                 "--probes", "0", "--calibration-batches", "1", "-o", str(out)]) == 0
    capsys.readouterr()
    small = space_of(TINY_BNECK, tmp_path).smallest(name="small")
    (tmp_path / "small.yaml").write_text(nasscale.dump_network(small))
    assert main(["supernet", "extract", str(out), str(tmp_path / "small.yaml"),
                 "-o", str(tmp_path / "sub.pt"), "--calibration-batches", "2",
                 "--format", "json"]) == 0
    record = yaml.safe_load(capsys.readouterr().out)
    assert 0 <= record["accuracy"] <= 1 and record["resolution"] == 16
    assert main(["train", str(tmp_path / "small.yaml"), "--data", str(data), "--epochs", "1",
                 "--batch-size", "8", "--resolution", "16", "--device", "cpu", "--quiet",
                 "--weights", str(tmp_path / "sub.pt"), "-o", str(tmp_path / "ft.pt")]) == 0
    assert math.isfinite(torch.load(tmp_path / "ft.pt", weights_only=True)["accuracy"])
    pytest.importorskip("onnxruntime")
    assert main(["export", str(tmp_path / "sub.pt"), "--onnx", str(tmp_path / "sub.onnx")]) == 0
    assert (tmp_path / "sub.onnx").stat().st_size > 0


def make_supernet_file(tmp_path: Path, name: str = "supernet.pt") -> Path:
    """An untrained supernet file of ``TINY_BNECK`` for ``tmp_path/data.npz`` (the files of
    ``test_inherit.make_files``): what a study's ``supernet`` evaluator reads."""
    space = space_of(TINY_BNECK, tmp_path)
    data = load_dataset(str(tmp_path / "data.npz"))
    spec = file.supernet_spec(space, 16, data.num_classes)
    record = {"space": space.name, "space_fingerprint": file.space_fingerprint(space),
              "data": "data.npz", "data_source": str(tmp_path / "data.npz"),
              "classes": list(data.classes), "images": len(data.y), "val_fraction": 0.2,
              "subset": None, "seed": 0, "resolution": 16, "history": []}
    path = tmp_path / name
    parent = file.aligned(space, spec)
    file.write(path, randomised(build_seeded(spec, 0)), spec, data, record,
               file.alternates(parent, space))
    return path


def test_a_study_scores_by_the_supernet_and_writes_the_best_weights(tmp_path):
    from nasscale.search import RunOptions, load_study, run_search

    from test_inherit import make_files

    make_files(tmp_path)
    make_supernet_file(tmp_path)
    (tmp_path / "tiny_bneck.yaml").write_text(yaml.safe_dump(TINY_BNECK))
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({
        "name": "sn", "space": "tiny_bneck.yaml", "objectives": {"score": "maximize"},
        "evaluator": {"kind": "supernet", "weights": "supernet.pt", "calibration_batches": 1,
                      "batch_size": 8, "threads": 1},
        "trials": 4, "seed": 0, "sampler": {"name": "random"}}))
    summary = run_search(load_study(str(study)), RunOptions(out=tmp_path / "out"))
    assert summary["states"].get("COMPLETE") == 4
    best = tmp_path / "out" / "best.pt"
    assert summary["weights"] == [str(best)] and best.exists()
    spec, ckpt = nasscale.modules.checkpoint.trained_network(str(best))
    assert spec.resolution == 16 and ckpt.meta["inherited_from"]["space"] == "tiny_bneck"


def test_the_bundled_study_says_how_to_make_its_supernet(tmp_path, monkeypatch):
    from nasscale.errors import SpecError
    from nasscale.search import load_study

    monkeypatch.chdir(tmp_path)
    path = ROOT / "studies" / "supernet_cpu.yaml"
    if (ROOT / "runs" / "supernet" / "mobilenet_v3_like.pt").exists():
        study = load_study(str(path))  # made already on this machine
        assert study.evaluator.kind == "supernet"
        return
    with pytest.raises(SpecError, match=r"evaluator.weights: .*mobilenet_v3_like.pt: no such "
                                        r"file; train the supernet first: nasscale supernet "
                                        r"train mobilenet_v3_like --data testbed -o "):
        load_study(str(path))


def test_init_takes_torchvision_weights_of_a_published_member(tmp_path):
    """MobileNetV3-Large's torchvision weights into ``mobilenet_v3_like``'s supernet: found
    among the space's published members, written where its subnetwork reads them."""
    from nasscale.search import load_space
    from nasscale.weights import export_weights, spec_for

    space = load_space("mobilenet_v3_like")
    ref = spec_for(nasscale.load("mobilenet_v3_large"), "torchvision")
    trained = build_seeded(ref, 4)
    torch.save(export_weights(trained, ref, "torchvision"), tmp_path / "tv.pth")
    spec = file.supernet_spec(space, 32, 19)
    parent = file.aligned(space, spec)
    model, alts = build_seeded(spec, 0), file.alternates(parent, space)
    note = file.init_weights(parent, model, str(tmp_path / "tv.pth"), space=space, alts=alts)
    assert "torchvision weights of mobilenet_v3_large" in note
    assert "new: the classifier (19 classes, the file's has 1000)" in note
    cut = View(parent, model, ref.replace(resolution=32, num_classes=19), first=True,
               alternates=alts).tensors()
    for name, t in trained.state_dict().items():
        if not name.startswith("head.classifier"):
            assert torch.equal(cut[name], t), name


def test_a_candidate_the_supernet_lacks_fails_its_trial_with_the_reason(tmp_path):
    from nasscale.scoring.evaluator_spec import BuildContext
    from nasscale.scoring.kinds import evaluator_from_data

    from test_inherit import make_files

    make_files(tmp_path)
    make_supernet_file(tmp_path)
    space = space_of(TINY_BNECK, tmp_path)
    spec = evaluator_from_data({"kind": "supernet", "weights": "supernet.pt",
                                "calibration_batches": 1, "held_out": 5})
    ctx = BuildContext(seed=0, path=str(tmp_path / "study.yaml"), space=lambda: space)
    evaluator = spec.build(ctx)
    assert len(evaluator.net.val_y) == 5 and "5 held-out images" in evaluator.describe()
    wide = space.largest(name="wide")
    wide = wide.replace(stages=tuple(replace(s, block=replace(s.block, out_channels=64))
                                     if i == 1 else s for i, s in enumerate(wide.stages)))
    with pytest.raises(NasscaleError, match=r"not a subnetwork of the supernet: .*width"):
        evaluator.score(wide, 0)
