"""Supernets: a subnetwork's tensors are cuts of the supernet's that autograd follows, sorting
channels keeps the function, a trained network writes back into the supernet, the sandwich
trains and resumes exactly, two gloo ranks equal one process, and bad input is one line; a
MobileNetV4-like space is shared per kind (alternate blocks), with UIB variants and Mobile MQA
tails cut to real smaller blocks."""
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


def supernet_of(space, classes: int = 4, seed: int = 0, resolution: int = 16):
    """(parent, supernet module, alternates), BatchNorm statistics randomised."""
    spec = file.supernet_spec(space, resolution, classes)
    parent = file.aligned(space, spec)
    alts = file.alternates(parent, space, seed=seed)
    for module, _ in alts.values():
        randomised(module)
    return parent, randomised(build_seeded(spec, seed)), alts


def test_a_view_computes_its_module_and_trains_the_supernet(tmp_path):
    space = space_of(TINY_BNECK, tmp_path)
    parent, model, alts = supernet_of(space)
    model.eval()
    x = torch.randn(3, 3, 16, 16)
    import random

    rng = random.Random(0)
    for _ in range(4):
        cand = space.sample(RandomSuggester(rng)).replace(resolution=16, num_classes=4)
        view = View(parent, model, cand, first=True, alternates=alts)
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
                    first=True, alternates=alts)
    assert sum(t.numel() for t in smallest.tensors().values()) < sum(
        t.numel() for t in model.state_dict().values())


def test_sorting_channels_keeps_the_function_and_permutes_optimizer_state(tmp_path):
    space = space_of(TINY_BNECK, tmp_path)
    parent, model, alts = supernet_of(space)
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    before = model(x)
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    sort_channels(parent, model, [state], alts)
    assert torch.allclose(model(x), before, atol=1e-5)
    for n, p in model.named_parameters():  # the state moved with its parameter
        assert torch.equal(state[n], p.detach()), n
    # after sorting, the first channels are the largest-norm ones: both cuts agree
    cand = space.smallest().replace(resolution=16, num_classes=4)
    first = View(parent, model, cand, first=True, alternates=alts).module().eval()
    strongest = View(parent, model, cand, first=False, alternates=alts).module().eval()
    assert torch.allclose(first(x), strongest(x), atol=1e-5)


def test_a_trained_network_writes_back_where_its_cut_takes_it(tmp_path):
    space = space_of(TINY_BNECK, tmp_path)
    parent, model, alts = supernet_of(space)
    cand = space.smallest(name="small").replace(resolution=16, num_classes=4)
    small = build_seeded(cand, 5)
    fresh = View(parent, model, cand, first=True, alternates=alts).write_back(small.state_dict())
    cut = View(parent, model, cand, first=True, alternates=alts).tensors()
    for name, t in small.state_dict().items():
        assert torch.equal(cut[name], t), name
    assert 0 < sum(fresh.values()) < len(fresh)
    largest = build_seeded(parent.spec, 6)
    fresh = View(parent, model, parent.spec, first=True).write_back(largest.state_dict())
    assert not any(fresh.values())  # the largest fills everything


def test_the_sandwich_is_largest_smallest_then_seeded_random(tmp_path):
    space = space_of(TINY_BNECK, tmp_path)
    parent, model, _ = supernet_of(space)
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
    parent, model, alts = supernet_of(space)
    small = space.smallest(name="small").replace(resolution=16, num_classes=10)
    trained = build_seeded(small, 2)
    path = tmp_path / "small.pt"
    torch.save({"state_dict": trained.state_dict(), "network": network_to_data(small)}, path)
    note = file.init_weights(parent, model, str(path), alts=alts)
    assert "of small" in note and "fresh:" in note and "new: the classifier (4 classes, the " \
        "file's has 10)" in note
    cut = View(parent, model, small.replace(num_classes=4), first=True,
               alternates=alts).tensors()
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
    mixed = dict(TINY_MBCONV, name="mixed")  # a MobileViT tail: not shared
    mixed["stages"] = [TINY_MBCONV["stages"][0], dict(TINY_MBCONV["stages"][1], attention={
        "present": [False, True], "transformer_dim": {"min": 32, "max": 32},
        "transformer_depth": [1], "num_heads": [4], "patch_size": [2]})]
    (tmp_path / "mixed.yaml").write_text(yaml.safe_dump(mixed))
    args = ["--data", str(data), "--epochs", "1", "--batch-size", "8", "--resolution", "16",
            "--device", "cpu", "--quiet", "--probes", "0", "--calibration-batches", "1"]
    assert main(["supernet", "train", str(tmp_path / "mixed.yaml"), *args,
                 "-o", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "cannot be trained as a supernet: slot s1 has a mobilevit attention tail" in err
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


# --- mobilenet_v4_like: per-kind alternates, UIB variants, Mobile MQA tails -------------------

#: a MobileNetV4-like space small enough to train in seconds: conv or fused in s0, an optional
#: 1x1 conv (s1, s3: skipping it changes what the next block reads), conv or UIB per layer in
#: s2, UIB variants and a Mobile MQA tail (heads, key_dim, kv_stride searched) in s4
TINY_V4 = {
    "name": "tiny_v4", "family": "mobilenet_v4", "num_classes": 10, "resolution": [32],
    "stem": {"width": 16, "activation": ["relu"]},
    "stages": [
        {"stride": 2, "depth": [1], "width": {"min": 16, "max": 24}, "kinds": ["conv", "fused"],
         "kernel_size": [3], "expand_ratio": [2], "activation": ["relu"]},
        {"stride": 1, "depth": [0, 1], "width": {"min": 16, "max": 24}, "kinds": ["conv"],
         "kernel_size": [1], "activation": ["relu"]},
        {"stride": 2, "depth": [1, 2], "width": {"min": 24, "max": 32}, "kinds": ["conv", "uib"],
         "kernel_size": [3, 5], "start_kernel": [0, 3, 5], "expand_ratio": [2, 4],
         "activation": ["relu"],
         "per_layer": ["kind", "kernel_size", "start_kernel", "expand_ratio"]},
        {"stride": 1, "depth": [0, 1], "width": {"min": 24, "max": 32}, "kinds": ["conv"],
         "kernel_size": [1], "activation": ["relu"]},
        {"stride": 2, "depth": [1, 2], "width": {"min": 32, "max": 40}, "kinds": ["uib"],
         "kernel_size": [0, 3, 5], "start_kernel": [0, 3, 5], "expand_ratio": [2, 4],
         "activation": ["relu"], "per_layer": ["kernel_size", "start_kernel", "expand_ratio"],
         "attention": {"kind": "mqa", "present": [False, True], "num_heads": [2, 4],
                       "key_dim": [8, 16], "kv_stride": [1, 2]}}],
    "head": {"conv_width": [64], "conv_activation": "relu", "hidden": [[64]],
             "hidden_activation": "relu", "hidden_norm": "bn", "dropout": 0.0},
}


class Choose:
    """A suggester: the named choices as given, every other one its largest (a switch on, a
    name the first listed): full-width members of chosen kinds and depths."""

    def __init__(self, chosen: dict | None = None):
        self.chosen = chosen or {}

    def suggest_categorical(self, name, choices):
        if name in self.chosen:
            return self.chosen[name]
        choices = list(choices)
        return max(choices) if all(isinstance(c, (int, float)) for c in choices) \
            else choices[0]

    def suggest_int(self, name, low, high, step=1):
        return self.chosen.get(name, low + (high - low) // step * step)


def features(spec) -> set[str]:
    """What a member of TINY_V4 exercises: each slot's kinds, UIB variants, its MQA tail."""
    from nasscale.specs import resolve

    out = set()
    for b in resolve(spec).section("stage"):
        out.add(b.kind)
        if b.kind == "uib":
            out.add(b.spec.variant)
        if b.kind == "mqa":
            out |= {f"kv{b.spec.kv_stride}", f"h{b.spec.num_heads}", f"d{b.spec.key_dim}"}
    out.add("mqa" if any(b.kind == "mqa" for b in resolve(spec).blocks) else "no mqa")
    return out


def test_mobilenet_v4_like_is_a_supernet_and_mobilevit_tails_are_refused():
    from nasscale.search import load_space

    space = load_space("mobilenet_v4_like")
    parent = file.aligned(space, file.supernet_spec(space, 32, 4))
    labels = {v.label for v in parent.variants.values()}
    assert "slot s0 layer 0 as a fused block" in labels
    assert {"slot s2 layer 0 as a uib block", "slot s2 layer 1 as a uib block"} <= labels
    # without slot s3's optional 1x1 conv, s4 reads slot s2's channels: its own bank
    assert "slot s4 layer 0 reading the output channels of slot s2 layer 1" in labels
    assert [parent.label(t) for t in parent.alignment.tails if t is not None] == [
        "slot s4 attention", "slot s5 attention"]
    rng = __import__("random").Random(0)
    for i in range(40):  # every member is a subnetwork
        parent.plan(space.sample(RandomSuggester(rng), name=f"m{i}"))
    for name in space.contains:
        parent.plan(nasscale.load(name))
    hybrid = nasscale.search.load_space("mobilevit_hybrid")
    with pytest.raises(NasscaleError, match=r"^space mobilevit_hybrid: cannot be trained as a "
                                            r"supernet: slot s2 has a mobilevit attention "
                                            r"tail: a supernet shares Mobile MQA tails only"):
        file.aligned(hybrid, file.supernet_spec(hybrid, 32, 4))
    # what the supernet lacks is named by slot and field
    more = space.largest(name="more")
    stages = tuple(replace(s, block=replace(s.block, kv_stride=2))
                   if s.block.kind == "mqa" else s for s in more.stages)
    with pytest.raises(nasscale.transfer.containment.NotContained,
                       match="slot s5 attention kv_stride 2 needs key/value downsampling convs"):
        parent.plan(more.replace(stages=stages))


def test_every_v4_kind_and_tail_cuts_to_a_module_computing_the_view(tmp_path):
    """Largest, smallest and random members of every kind combination (conv or fused, conv or
    UIB, the four UIB variants, MQA absent or present with kv_stride 1 and 2, fewer heads and
    channels per head): the standalone module computes what the functional path computes."""
    import random

    space = space_of(TINY_V4, tmp_path)
    parent, model, alts = supernet_of(space, resolution=32)
    x = torch.randn(2, 3, 32, 32)
    rng = random.Random(0)
    members = [space.largest(), space.smallest(),
               space.sample(Choose({"s0.kind": "fused", "s1.depth": 0, "s2.l0.kind": "uib",
                                    "s2.l1.kind": "conv", "s3.depth": 0}))]
    members += [space.sample(RandomSuggester(rng)) for _ in range(40)]
    seen, used = set(), set()
    for cand in members:
        cand = cand.replace(resolution=32, num_classes=4)
        view = View(parent, model, cand, first=True, alternates=alts)
        with torch.no_grad():
            a = view.forward(x)
            b = view.module().eval()(x)
        assert torch.allclose(a, b, atol=1e-5), cand.name
        seen |= features(cand)
        used |= {k for k in view.plan.variant if k is not None}
    assert {"conv", "fused", "uib", "ExtraDW", "IB", "ConvNeXt", "FFN", "mqa", "no mqa", "kv1",
            "kv2", "h2", "h4", "d8", "d16"} <= seen
    assert used == set(alts)  # every alternate is some member's


def test_an_mqa_cut_is_the_first_heads_and_channels_of_each(tmp_path):
    space = space_of(TINY_V4, tmp_path)
    parent, model, alts = supernet_of(space, resolution=32)
    cand = space.sample(Choose({"s4.attn.heads": 2, "s4.attn.key_dim": 8,
                                "s4.attn.kv_stride": 1, "s4.width": 32}))
    cand = cand.replace(resolution=32, num_classes=4)
    big = next(m for m in model.modules() if type(m).__name__ == "MobileMQA")
    small = next(m for m in View(parent, model, cand, first=True, alternates=alts).module()
                 .modules() if type(m).__name__ == "MobileMQA")
    assert (big.heads, big.key_dim, small.heads, small.key_dim) == (4, 16, 2, 8)
    q = big.query.weight.reshape(4, 16, 40)[:2, :8, :32].reshape(16, 32, 1, 1)
    assert torch.equal(small.query.weight, q)  # head h's channel d: row h * key_dim + d
    assert torch.equal(small.key.weight, big.key.weight[:8, :32])
    assert torch.equal(small.value.weight, big.value.weight[:8, :32])
    out = big.output.weight.reshape(40, 4, 16)[:32, :2, :8].reshape(32, 16, 1, 1)
    assert torch.equal(small.output.weight, out)
    assert isinstance(small.key_down, torch.nn.Identity)  # kv_stride 1: no downsampling


def test_sorting_keeps_the_function_of_every_v4_form_at_full_width(tmp_path):
    """Sorting permutes the supernet and its alternates alike: a member at full widths (so
    that no channel is cut) of any kinds and depths computes the same before and after, and
    the alternates' optimizer state moves with them."""
    space = space_of(TINY_V4, tmp_path)
    parent, model, alts = supernet_of(space, resolution=32)
    x = torch.randn(2, 3, 32, 32)
    members = [space.sample(Choose(c)).replace(resolution=32, num_classes=4) for c in (
        {}, {"s0.kind": "fused", "s2.l0.kind": "uib", "s2.l1.kind": "uib"},
        {"s1.depth": 0, "s2.l0.kind": "uib", "s2.depth": 1, "s3.depth": 0},
        {"s2.l1.kind": "uib", "s3.depth": 0, "s4.attn": False})]
    with torch.no_grad():
        before = [View(parent, model, m, first=True, alternates=alts).module().eval()(x)
                  for m in members]
    state = {f"alt.{k}.{n}": t.detach().clone() for k, (m, _) in alts.items()
             for n, t in m.named_parameters()}
    sort_channels(parent, model, [state], alts)
    for k, (m, _) in alts.items():
        for n, t in m.named_parameters():
            assert torch.equal(state[f"alt.{k}.{n}"], t.detach()), (k, n)
    with torch.no_grad():
        for m, b in zip(members, before):
            after = View(parent, model, m, first=True, alternates=alts).module().eval()(x)
            assert torch.allclose(after, b, atol=1e-5), m.name
    # after sorting, the first channels are the strongest: both cuts agree (alternates too)
    small = space.sample(Choose({"s0.kind": "fused", "s0.width": 16, "s2.l0.kind": "uib",
                                 "s2.width": 24, "s2.l0.expand_ratio": 2}))
    small = small.replace(resolution=32, num_classes=4)
    first = View(parent, model, small, first=True, alternates=alts)
    assert "1_fused" in first.plan.variant
    strongest = View(parent, model, small, first=False, alternates=alts).module().eval()
    assert torch.allclose(first.module().eval()(x), strongest(x), atol=1e-5)


def test_a_v4_supernet_trains_extracts_and_scores_from_the_command_line(tmp_path, capsys):
    space_path = tmp_path / "tiny_v4.yaml"
    space_path.write_text(yaml.safe_dump(TINY_V4))
    data = data_file(tmp_path)
    out = tmp_path / "v4.pt"
    assert main(["supernet", "train", str(space_path), "--data", str(data), "--epochs", "1",
                 "--batch-size", "8", "--resolution", "32", "--device", "cpu", "--threads",
                 "1", "--quiet", "--probes", "1", "--calibration-batches", "1",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    ckpt = torch.load(out, weights_only=True)
    assert {k.split(".")[0] for k in ckpt["alternates"]} >= {"1_fused", "3_uib", "4_uib"}
    space = space_of(TINY_V4, tmp_path)
    member = space.sample(Choose({"s0.kind": "fused", "s1.depth": 0, "s2.l0.kind": "uib",
                                  "s2.l1.kind": "conv", "s4.attn.heads": 2,
                                  "s4.attn.key_dim": 8}), name="member")
    (tmp_path / "member.yaml").write_text(nasscale.dump_network(member))
    assert main(["supernet", "extract", str(out), str(tmp_path / "member.yaml"),
                 "-o", str(tmp_path / "member.pt"), "--calibration-batches", "1",
                 "--format", "json"]) == 0
    record = yaml.safe_load(capsys.readouterr().out)
    assert 0 <= record["accuracy"] <= 1 and record["resolution"] == 32
    spec, got = nasscale.modules.checkpoint.trained_network(str(tmp_path / "member.pt"))
    assert spec.name == "member" and got.meta["inherited_from"]["space"] == "tiny_v4"
    net = Supernet.open(str(out), space, calibration_batches=1)
    assert 0 <= net.score(space.smallest()) <= 1


def test_init_writes_mobilenet_v4_conv_small_into_the_v4_supernet(tmp_path):
    """MNv4-Conv-S (a published member) written into ``mobilenet_v4_like``'s supernet, its
    blocks where their cuts take them from, alternates included: the cut gives it back."""
    from nasscale.search import load_space

    space = load_space("mobilenet_v4_like")
    parent, model, alts = supernet_of(space, resolution=32)
    small = nasscale.load("mobilenet_v4_conv_small").replace(resolution=32, num_classes=4)
    trained = build_seeded(small, 3)
    path = tmp_path / "small.pt"
    torch.save({"state_dict": trained.state_dict(), "network": network_to_data(small)}, path)
    note = file.init_weights(parent, model, str(path), space=space, alts=alts)
    assert "nasscale weights of mobilenet_v4_conv_small" in note and "fresh:" in note
    view = View(parent, model, small, first=True, alternates=alts)
    assert "5_in3" in view.plan.variant  # s3's conv after a one-layer s2: its own bank
    cut = view.tensors()
    for name, t in trained.state_dict().items():
        assert torch.equal(cut[name], t), name
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(view.module().eval()(x), trained.eval()(x), atol=1e-5)
