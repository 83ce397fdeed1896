"""Weight inheritance: candidates carry a trained parent's weights (first blocks, kernel centres,
largest-norm filters), every member of a space fits its largest member, and a study with
evaluator kind inherit checks containment, classes and the weights file before any trial."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml

import nasscale
from nasscale.errors import NasscaleError, SpecError
from nasscale.modules import build_network
from nasscale.search import load_space
from nasscale.search.space import RandomSuggester
from nasscale.search.study import load_study
from nasscale.transfer.carry import block_modules
from nasscale.transfer.containment import NotContained, Parent, carry, check_space

ROOT = Path(__file__).resolve().parents[1]
optuna.logging.set_verbosity(optuna.logging.WARNING)

#: a bneck space small enough to build in milliseconds: a skippable residual slot, fewer
#: repeats, kernels 3/5, expansions 1/3/6 per layer, optional SE, two head widths
TINY_BNECK = {
    "name": "tiny_bneck", "family": "mobilenet", "num_classes": 10, "resolution": [32],
    "stem": {"width": 16, "activation": ["hswish"]},
    "stages": [
        {"stride": 1, "depth": [0, 1], "width": 16, "kinds": ["bneck"], "kernel_size": [3],
         "expand_ratio": [1], "se": [False], "activation": ["relu"]},
        {"stride": 2, "depth": [1, 2, 3], "width": {"min": 16, "max": 24}, "kinds": ["bneck"],
         "kernel_size": [3, 5], "expand_ratio": [1, 3, 6], "se": [False, True],
         "activation": ["relu", "hswish"], "per_layer": ["expand_ratio"]},
        {"stride": 2, "depth": [1, 2], "width": {"min": 24, "max": 40}, "kinds": ["bneck"],
         "kernel_size": [3, 5], "expand_ratio": [3, 6], "se": [False, True],
         "activation": ["hswish"], "per_layer": ["expand_ratio"]}],
    "head": {"conv_ratio": [2, 4], "conv_activation": "hswish", "hidden": [[64]],
             "hidden_activation": "hswish", "dropout": 0.2},
}
#: the MBConv+SE (SE on the block input) counterpart, EfficientNet style
TINY_MBCONV = {
    "name": "tiny_mbconv", "family": "efficientnet", "num_classes": 10, "resolution": [32],
    "stem": {"width": {"min": 16, "max": 32}, "activation": ["silu"]},
    "stages": [
        {"stride": 1, "depth": [1, 2], "width": {"min": 16, "max": 24}, "kinds": ["mbconv"],
         "kernel_size": [3], "expand_ratio": [1], "se": [True],
         "se_form": "0.25-in-sigmoid-silu-d1", "activation": ["silu"]},
        {"stride": 2, "depth": [1, 2], "width": {"min": 24, "max": 32}, "kinds": ["mbconv"],
         "kernel_size": [3, 5], "expand_ratio": [3, 6], "se": [False, True],
         "se_form": "0.25-in-sigmoid-silu-d1", "activation": ["silu"]}],
    "head": {"conv_width": [64], "conv_activation": "silu", "hidden": [[]], "dropout": 0.2},
}


@pytest.fixture(autouse=True)
def one_thread():
    """Small convolutions on a shared 2-core machine run ten times faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def space_of(data: dict, tmp_path: Path):
    path = tmp_path / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_space(str(path))


def randomised(model):
    """Non-trivial BatchNorm statistics, so carrying them is tested too."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
    return model.eval()


def parent_of(space, classes=4):
    spec = space.largest().replace(num_classes=classes, resolution=16)
    torch.manual_seed(0)
    return spec, randomised(build_network(spec))


@pytest.mark.parametrize("data", [TINY_BNECK, TINY_MBCONV], ids=lambda d: d["name"])
def test_identical_candidate_reproduces_the_parent(data, tmp_path):
    space = space_of(data, tmp_path)
    spec, model = parent_of(space)
    parent = check_space(space, spec)
    plan = parent.plan(spec)
    assert plan.widths == {} and plan.source == tuple(range(len(plan.source)))
    child = carry(model, parent, spec, plan).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(child(x), model(x))


def test_reduced_candidate_gets_first_blocks_kernel_centres_and_largest_filters(tmp_path):
    space = space_of(TINY_BNECK, tmp_path)
    spec, model = parent_of(space)
    parent = check_space(space, spec)
    # slot s1 of the parent: 3 layers, 24 wide, k5, SE, expansions 6 (mid 96, then 144)
    pm = block_modules(model)
    s1 = parent.alignment.slots[1]
    keep = torch.tensor(sorted(random.Random(0).sample(range(24), 16)))
    with torch.no_grad():  # make the filters to keep the strongest, in every producer
        for i in s1:
            pm[i].project[0].weight[keep] *= 10
    params = {"s0.depth": 1, "s1.depth": 2, "s1.width": 16, "s1.kernel_size": 3,
              "s1.se": False, "s1.activation": "hswish", "s1.l0.expand_ratio": 3,
              "s1.l1.expand_ratio": 1, "s2.depth": 1, "s2.width": 32, "s2.kernel_size": 5,
              "s2.se": True, "s2.l0.expand_ratio": 3, "head.conv_ratio": 2}
    cand = space.sample(optuna.trial.FixedTrial(params), name="cand").replace(
        num_classes=4, resolution=16)
    plan = parent.plan(cand)
    child = carry(model, parent, cand, plan)
    cm = block_modules(child)
    # candidate blocks: stem, s0, s1 l0, s1 l1, s2 l0, head conv; the parent's s1 l2 is dropped
    s2 = parent.alignment.slots[2]
    assert plan.source == (0, 1, s1[0], s1[1], s2[0], s2[-1] + 1)
    pl0, pl1, cl0, cl1 = pm[s1[0]], pm[s1[1]], cm[2], cm[3]
    mid0 = torch.sort(torch.topk(pl0.expand[0].weight.pow(2).sum((1, 2, 3)), 48).indices).values
    assert torch.equal(cl0.expand[0].weight, pl0.expand[0].weight[mid0])  # input 16 = 16
    assert torch.equal(cl0.dw[0].weight, pl0.dw[0].weight[mid0][:, :, 1:4, 1:4])  # centre of 5x5
    assert torch.equal(cl0.dw[1].running_var, pl0.dw[1].running_var[mid0])
    assert torch.equal(cl0.project[0].weight, pl0.project[0].weight[keep][:, mid0])
    assert torch.equal(cl0.project[1].running_mean, pl0.project[1].running_mean[keep])
    assert isinstance(cl0.se, torch.nn.Identity) and not isinstance(pl0.se, torch.nn.Identity)
    # expansion 1 under a parent layer that expands: the strongest 16 expanded channels
    assert isinstance(cl1.expand, torch.nn.Identity)
    mid1 = torch.sort(torch.topk(pl1.expand[0].weight.pow(2).sum((1, 2, 3)), 16).indices).values
    assert torch.equal(cl1.dw[0].weight, pl1.dw[0].weight[mid1][:, :, 1:4, 1:4])
    assert torch.equal(cl1.project[0].weight, pl1.project[0].weight[keep][:, mid1])
    # the next slot reads the kept channels: its expand conv's inputs follow
    ps2 = pm[s2[0]]
    assert cm[4].expand[0].weight.shape == (48, 16, 1, 1)
    mid2 = torch.sort(torch.topk(ps2.expand[0].weight.pow(2).sum((1, 2, 3)), 48).indices).values
    assert torch.equal(cm[4].expand[0].weight, ps2.expand[0].weight[mid2][:, keep])
    assert torch.equal(cm[4].dw[0].weight, ps2.dw[0].weight[mid2])  # k5 stays k5
    # the classifier keeps its rows; its hidden layer reads the kept head-conv channels
    assert torch.equal(child.head.classifier.weight, model.head.classifier.weight)


def test_every_sample_is_contained_by_the_largest_member():
    space = load_space("mobilenet_v3_like")
    parent = check_space(space, space.largest())
    rng = random.Random(0)
    for i in range(150):
        parent.plan(space.sample(RandomSuggester(rng), name=f"s{i}"))
    for name in space.contains:  # the published networks too
        parent.plan(nasscale.load(name))
    # efficientnet_like offers fused or mbconv layers in s1/s2: no one parent holds both kinds
    space = load_space("efficientnet_like")
    with pytest.raises(NotContained, match="slot s1 kinds mbconv, fused but the parent's stage "
                                           "has mbconv blocks"):
        check_space(space, space.largest())
    parent = Parent(space.largest(), space)
    fused = 0
    for i in range(150):
        cand = space.sample(RandomSuggester(rng), name=f"e{i}")
        if any(b.kind == "fused" for b in (s.block for s in cand.stages)):
            fused += 1
            with pytest.raises(NotContained, match="is a fused block but the parent's is a "
                                                   "mbconv block"):
                parent.plan(cand)
        else:
            parent.plan(cand)
    assert 0 < fused < 150
    parent.plan(nasscale.load("efficientnet_b0"))


@pytest.mark.parametrize("name", ["mobilenet_v3_like", "efficientnet_like"])
def test_random_members_of_the_real_spaces_carry_and_run(name):
    space = load_space(name)
    big = space.largest().replace(num_classes=4, resolution=16)
    torch.manual_seed(0)
    model = build_network(big).eval()
    parent, rng, done = Parent(big, space), random.Random(3), 0
    while done < 3:
        cand = space.sample(RandomSuggester(rng)).replace(num_classes=4, resolution=16)
        if parent.contains(cand):
            with torch.no_grad():
                assert carry(model, parent, cand).eval()(torch.randn(2, 3, 16, 16)).shape == (2, 4)
            done += 1


def test_the_parent_file_is_the_largest_member():
    text = (ROOT / "studies/parents/mobilenet_v3_like_largest.yaml").read_text()
    largest = load_space("mobilenet_v3_like").largest()
    assert largest.name == "mobilenet_v3_like_largest"
    assert text == nasscale.dump_network(largest), (
        "regenerate: python -c \"import nasscale; from nasscale.search import load_space; "
        "print(nasscale.dump_network(load_space('mobilenet_v3_like').largest()), end='')\" "
        "> studies/parents/mobilenet_v3_like_largest.yaml")


def test_a_candidate_outside_the_parent_is_refused_naming_slot_and_field(tmp_path):
    space = space_of(TINY_BNECK, tmp_path)
    parent = check_space(space, space.largest())
    wider = space.largest().replace(name="wide")
    stages = list(wider.stages)
    stages[1] = stages[1].replace(block=stages[1].block.replace(kernel_size=7))
    with pytest.raises(NotContained, match="slot s1 layer 0 kernel_size 7 but the parent's "
                                           "block has 5"):
        parent.plan(wider.replace(stages=tuple(stages)))
    no_se = space.largest().replace(stages=tuple(
        s.replace(block=s.block.replace(se=False)) for s in space.largest().stages))
    with pytest.raises(NotContained, match="slot s1 layer 0 has SE but the parent's block has "
                                           "none"):
        check_space(space, no_se)
    shallow = space.largest().replace(stages=space.largest().stages[:-1])
    with pytest.raises(NotContained, match="slot s2 depth up to 2 but the parent's stage has 1"):
        check_space(space, shallow)


def write_study(tmp_path: Path, **evaluator) -> Path:
    cfg = {"kind": "inherit", "parent": "parent.yaml", "weights": "parent.pt",
           "data": "data.npz", "steps": 3, "batch_size": 8, "resolution": 16, "device": "cpu",
           **evaluator}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "name": "inherit_t", "space": "tiny_bneck.yaml", "objectives": {"score": "maximize"},
        "evaluator": cfg, "sampler": {"name": "random"}, "trials": 2, "seed": 1}))
    return path


def make_files(tmp_path: Path, classes: int = 4) -> None:
    space = space_of(TINY_BNECK, tmp_path)
    spec, model = parent_of(space, classes)
    (tmp_path / "parent.yaml").write_text(nasscale.dump_network(space.largest()))
    torch.save({"state_dict": model.state_dict(), "classes": [f"c{i}" for i in range(classes)],
                "network": nasscale.grammar.network_to_data(spec)}, tmp_path / "parent.pt")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.integers(0, 255, (48, 16, 16), dtype=np.uint8),
             y=np.arange(48) % 4)


def test_study_load_names_the_uncontained_slot_and_the_missing_weights(tmp_path):
    make_files(tmp_path)
    path = write_study(tmp_path, parent="mobilenet_v3_small")
    data = yaml.safe_load(path.read_text())
    data["space"] = "mobilenet_v3_like"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match=r"study.yaml:\d+: evaluator.parent: mobilenet_v3_small "
                                        r"does not contain space mobilenet_v3_like: .*slot s3 "
                                        r"width up to 80 but the parent's stage has 40"):
        load_study(path)
    path = write_study(tmp_path, weights="runs/missing.pt")
    with pytest.raises(SpecError, match=r"evaluator.weights: .*runs/missing.pt: no such file; "
                                        r"train the parent first: nasscale train .*parent.yaml "
                                        r"--data .*/data.npz --resolution 16 --device cpu "
                                        r"-o .*missing.pt"):
        load_study(path)


def test_classes_of_the_weights_must_match_the_data(tmp_path):
    make_files(tmp_path, classes=10)
    with pytest.raises(NasscaleError, match="evaluator.weights: .*parent.pt has a classifier "
                                            "for 10 classes .* but data data.npz has 4"):
        load_study(write_study(tmp_path)).make_evaluator()


def test_an_inherit_study_runs_and_records_scores(tmp_path, monkeypatch):
    from nasscale.search.runner import RunOptions, run_search
    from nasscale.search.storage import open_storage

    make_files(tmp_path)
    path = write_study(tmp_path)
    monkeypatch.chdir(tmp_path.parent)  # paths in the study are relative to the study file
    study = load_study(path.relative_to(tmp_path.parent))
    summary = run_search(study, RunOptions(out=tmp_path / "out", progress=False))
    trials = optuna.load_study(study_name="inherit_t",
                               storage=open_storage(None, tmp_path / "out")).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"], [
        t.user_attrs.get("reason") for t in trials]
    assert all(0 <= t.values[0] <= 1 and t.user_attrs["score"] == t.values[0] for t in trials)
    assert summary["score"].startswith("top-1 after 3 fine-tuning steps from tiny_bneck_largest")


def test_a_candidate_that_slips_through_is_a_failed_trial_naming_why(tmp_path):
    from nasscale.search.objective import CandidateFailed, Objective

    make_files(tmp_path)
    evaluator = load_study(write_study(tmp_path)).make_evaluator()
    wider = dict(TINY_BNECK, name="wider", stages=[dict(s) for s in TINY_BNECK["stages"]])
    wider["stages"][2]["kernel_size"] = [7]
    objective = Objective(space=space_of(wider, tmp_path), metrics=("score",),
                          evaluator=evaluator, study_name="slip")
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1, catch=(CandidateFailed,))
    trial = study.trials[0]
    assert trial.state.name == "FAIL"
    assert "NotContained: tiny_bneck_largest does not contain slip_trial0: slot s2 layer 0 " \
           "kernel_size 7 but the parent's block has 5" in trial.user_attrs["reason"]
