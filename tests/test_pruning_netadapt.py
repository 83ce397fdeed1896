"""NetAdapt: targets are met, widths stay multiples of 8, outputs load, bad targets fail clearly."""
from __future__ import annotations

import json

import pytest
import torch

import nasscale
from nasscale.cli import main
from nasscale.latency.timing import QUICK
from nasscale.pruning import prunable, width_groups
from nasscale.pruning.evaluate import make_evaluator
from nasscale.pruning.netadapt import Options, netadapt
from nasscale.pruning.resource import CountResource, parse_target
from nasscale.specs import resolve

TINY = """\
name: tiny
resolution: 32
num_classes: 10
stem: [conv_k3_s2_c16_hswish]
stages:
  - mbconv_k3_s1_e1_c16_relu
  - mbconv_k3_s2_e4_c24_relu_r2
  - bneck_k5_s2_m96_c40_hswish_se
  - mbconv_k3_s1_e4_c40_silu_se0.25-in-sigmoid-silu-d1
head:
  blocks: [conv_k1_s1_c192_hswish]
  hidden: [256]
"""


@pytest.fixture()
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def widths_of(spec):
    rn = resolve(spec)
    out = []
    for rb in rn.blocks:
        out.append(rb.out_channels)
        if "mid" in rb.widths:
            out.append(rb.widths["mid"])
    return out + list(spec.head.hidden)


@pytest.mark.parametrize("target", ["flops=0.7x", "params=0.8x", "flops=1.5M"])
def test_target_is_met_and_widths_stay_multiples_of_8(tiny, target):
    spec = nasscale.load(str(tiny))
    t = parse_target(target)
    resource = CountResource(t.metric)
    result = netadapt(spec, t, resource, make_evaluator("proxy:naswot,batch=8"))
    cost = nasscale.count(result.final)
    value = cost.flops if t.metric == "flops" else cost.params
    assert value <= t.limit(resource.value(spec))
    assert result.met and result.iterations
    assert all(w % 8 == 0 for w in widths_of(result.final))
    # each iteration got smaller and met its own limit
    values = [it.resource for it in result.iterations]
    assert values == sorted(values, reverse=True)
    assert all(it.resource <= it.limit for it in result.iterations)
    # the pruned network builds and runs
    with torch.no_grad():
        assert nasscale.build(result.final)(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_step_decays_and_the_best_ratio_is_kept(tiny):
    spec = nasscale.load(str(tiny))
    t = parse_target("flops=0.6x")
    result = netadapt(spec, t, CountResource("flops"), make_evaluator("proxy:naswot,batch=8"),
                      Options(initial_step=0.05, decay=0.9))
    start = nasscale.count(spec).flops
    for i, it in enumerate(result.iterations):
        prev = start if i == 0 else result.iterations[i - 1].resource
        step = 0.05 * start * 0.9 ** i
        assert it.limit == pytest.approx(max(t.limit(start), prev - step))


class Recorder:
    """A user evaluator: the score is minus the number of parameters (prefers pruning weights
    that cost the most parameters) -- deterministic, to check the selection rule."""

    def __call__(self, model, spec):
        return -float(sum(p.numel() for p in model.parameters()))


def test_python_evaluator_and_selection_rule(tiny, monkeypatch):
    import sys
    import types

    mod = types.ModuleType("prune_eval_mod")
    mod.score = Recorder()
    monkeypatch.setitem(sys.modules, "prune_eval_mod", mod)
    spec = nasscale.load(str(tiny))
    result = netadapt(spec, parse_target("flops=0.8x"), CountResource("flops"),
                      make_evaluator("python:prune_eval_mod:score"))
    assert result.iterations and result.met


def test_cli_outputs_load_and_json_has_the_fields(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["prune", str(tiny), "--target", "flops=0.75x", "--out", str(out),
               "--evaluator", "proxy:naswot,batch=8", "--format", "json", "--quiet"])
    assert rc == 0
    record = json.loads(capsys.readouterr().out)
    for key in ("flops", "params", "iterations"):
        assert key in record
    assert isinstance(record["flops"], int) and isinstance(record["params"], int)
    assert record["met"] and record["flops"] <= record["limit"]
    final = nasscale.load(str(out / "final.yaml"))
    assert nasscale.count(final).flops == record["flops"]
    files = sorted((out / "iterations").glob("*.yaml"))
    assert len(files) == len(record["iterations"]) + 1
    for f in files:
        nasscale.count(nasscale.load(str(f)))
    last = nasscale.load(str(files[-1]))
    assert nasscale.count(last).flops == record["flops"]
    header = (out / "iterations.csv").read_text().splitlines()[0]
    assert header.startswith("iteration,group,width_from,width,limit_flops")
    assert json.loads((out / "summary.json").read_text())["flops"] == record["flops"]


def test_cli_table_shows_iterations(tiny, tmp_path, capsys):
    rc = main(["prune", str(tiny), "--target", "params=0.85x", "--out", str(tmp_path / "o"),
               "--evaluator", "proxy:naswot,batch=8", "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "layer group pruned" in text and "(start)" in text
    assert "1 MAC = 1 FLOP" in text


def test_weights_in_weights_out(tiny, tmp_path):
    spec = nasscale.load(str(tiny))
    torch.manual_seed(0)
    model = nasscale.build(spec)
    ckpt = tmp_path / "tiny.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    out = tmp_path / "out"
    rc = main(["prune", str(tiny), "--target", "flops=0.8x", "--weights", str(ckpt),
               "--out", str(out), "--evaluator", "proxy:naswot,batch=8", "--quiet"])
    assert rc == 0
    final = nasscale.load(str(out / "final.yaml"))
    pruned = nasscale.build(final)
    state = torch.load(out / "pruned.pt", weights_only=True)["state_dict"]
    pruned.load_state_dict(state)  # shapes match the final YAML
    # untouched layers keep their weights exactly: the classifier's bias is never pruned
    torch.testing.assert_close(state["head.classifier.bias"], model.state_dict()[
        "head.classifier.bias"])


def test_train_evaluator_fine_tunes_carried_weights(tiny, tmp_path):
    spec = nasscale.load(str(tiny))
    torch.manual_seed(0)
    model = nasscale.build(spec)
    ckpt = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), ckpt)
    from nasscale.pruning.run import PruneRequest, run_prune

    result, out = run_prune(PruneRequest(
        network=str(tiny), target="flops=0.9x", weights=str(ckpt), out=str(tmp_path / "o"),
        evaluator="train:digits,epochs=1,final_epochs=1,subset=160,resolution=32,device=cpu",
        verbose=False))
    assert result.met and 0 <= result.iterations[-1].score <= 1
    assert (out / "pruned.pt").exists()
    assert result.long_term["epochs"] == 1 and 0 <= result.long_term["accuracy_after"] <= 1


def test_weights_that_do_not_fit_are_a_clear_error(tiny, tmp_path, capsys):
    torch.save(nasscale.build("mobilenet_v3_small").state_dict(), tmp_path / "v3.pt")
    rc = main(["prune", str(tiny), "--target", "flops=0.8x", "--weights",
               str(tmp_path / "v3.pt"), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "not a state_dict of tiny" in err and "v3.pt" in err


def test_train_evaluator_with_other_classes_is_refused(tmp_path, capsys):
    torch.save(nasscale.build("mobilenet_v3_small").state_dict(), tmp_path / "v3.pt")
    rc = main(["prune", "mobilenet_v3_small", "--target", "flops=0.8x", "--weights",
               str(tmp_path / "v3.pt"), "--evaluator", "train:digits", "--out",
               str(tmp_path / "o")])
    assert rc == 2
    assert "1000 classes but digits has 10" in capsys.readouterr().err


@pytest.mark.parametrize("target,message", [
    ("flops=1K", "unreachable"),
    ("flops=-300M", "must be positive"),
    ("flops=0x", "factor in (0, 1)"),
    ("flops=1.3x", "factor in (0, 1)"),
    ("latency=6", "latency takes ms, us or s"),
    ("flops=3 apples", "cannot read"),
    ("speed=0.5x", "unknown metric 'speed'"),
    ("flops", "write METRIC=BOUND"),
])
def test_bad_targets_are_clear_errors(tiny, tmp_path, capsys, target, message):
    rc = main(["prune", str(tiny), "--target", target, "--out", str(tmp_path / "o"),
               "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nasscale: error:") and message in err
    assert len(err.splitlines()) == 1


def test_bad_evaluator_and_options(tiny, tmp_path, capsys):
    for extra, message in ((["--evaluator", "proxy:magic"],
                            "proxy: must be one of naswot, synflow, flops, params, got 'magic'"),
                           (["--evaluator", "train:/no/such/data.npz"], "data.npz"),
                           (["--step", "1.5"], "--step"),
                           (["--lut", "x.json"], "--lut is for latency")):
        rc = main(["prune", str(tiny), "--target", "flops=0.8x", "--out", str(tmp_path / "o"),
                   *extra])
        assert rc == 2
        assert message in capsys.readouterr().err


def test_groups_of_a_residual_chain_are_pruned_together():
    spec = prunable(nasscale.load("mobilenet_v2"))
    groups = {g.name: g for g in width_groups(spec)}
    rn = resolve(spec)
    for g in groups.values():
        blocks = [m.block for m in g.members if m.block is not None and m.field == "out_channels"]
        for b in blocks[1:]:  # every later member adds its input back: same width in and out
            assert rn.blocks[b].in_channels == rn.blocks[b].out_channels
    # MobileNetV2's 32-wide stage (3 blocks) is one group
    assert any(len(g.members) == 3 and g.width == 32 for g in groups.values())


def test_latency_target_with_a_growing_table(tmp_path):
    """At 32x32 the tiny network's latency is mostly per-layer overhead that no width removes
    (even its minimal widths need 92 %); at 192x192 the convolutions dominate."""
    from nasscale.pruning.run import PruneRequest, run_prune

    net = tmp_path / "tiny192.yaml"
    net.write_text(TINY.replace("resolution: 32", "resolution: 192"))
    lut = tmp_path / "lut.json"
    result, out = run_prune(PruneRequest(network=str(net), target="latency=0.8x", lut=str(lut),
                                         out=str(tmp_path / "o"),
                                         evaluator="proxy:naswot,batch=8", verbose=False,
                                         timing=QUICK))
    assert result.met  # predicted latency meets the limit
    assert result.measured_ms is not None and result.start_measured_ms is not None
    assert lut.exists() and result.extra["carriers_timed"] >= 1
    meas = result.extra["measured"]  # start and result measured alternately
    assert meas["ratio"] == pytest.approx(meas["pruned_ms"] / meas["start_ms"], rel=0.5)
    assert isinstance(result.extra["measured_meets_target"], bool)
    table = nasscale.latency.LatencyTable.load(lut)
    assert not table.predict(resolve(result.final)).extrapolated  # every block was measured


def test_every_command_has_help(capsys):
    from nasscale.cli import COMMANDS

    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([command.name, "--help"])
        assert exit_.value.code == 0
    assert "--target METRIC=BOUND" in capsys.readouterr().out


def test_a_measured_miss_prunes_on(tmp_path, monkeypatch):
    """The table predicts within a few percent; when the measured ratio misses the target, the
    limit is tightened by the miss and pruning goes on."""
    from nasscale.pruning.resource import LatencyResource
    from nasscale.pruning.run import PruneRequest, run_prune

    calls = []

    def compare(self, a, b, rounds=3):
        calls.append(b)
        return (10.0, 9.5, 0.95) if len(calls) == 1 else (10.0, 8.5, 0.85)

    monkeypatch.setattr(LatencyResource, "compare", compare)
    net = tmp_path / "tiny192.yaml"
    net.write_text(TINY.replace("resolution: 32", "resolution: 192"))
    result, out = run_prune(PruneRequest(network=str(net), target="latency=0.9x",
                                         lut=str(tmp_path / "lut.json"), out=str(tmp_path / "o"),
                                         evaluator="proxy:naswot,batch=8", verbose=False,
                                         timing=QUICK))
    assert len(calls) == 2 and result.extra["measured_meets_target"]
    first_final = calls[0]
    assert nasscale.count(result.final).flops < nasscale.count(first_final).flops
    indices = [it.index for it in result.iterations]
    assert indices == list(range(1, len(indices) + 1))
    assert len(list((out / "iterations").glob("*.yaml"))) == len(indices) + 1


def test_latency_on_a_missing_device_or_too_many_threads(tiny, tmp_path, capsys):
    import os

    if not torch.cuda.is_available():
        assert main(["prune", str(tiny), "--target", "latency=0.8x", "--device", "cuda",
                     "--out", str(tmp_path / "o")]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    cores = len(os.sched_getaffinity(0))
    assert main(["prune", str(tiny), "--target", "latency=0.8x", "--threads", str(cores + 1),
                 "--out", str(tmp_path / "o")]) == 2
    assert "threads" in capsys.readouterr().err
