"""NetAdapt's fine-tuning in ``nasscale prune``: short-term steps per proposal, long-term epochs
once at the end (after any latency check that prunes on), and ``nasscale train`` files as
``--weights``.  Tiny network (tests/support/tiny_net.yaml), 8 px images, a few steps."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nasscale
from nasscale.cli import main
from nasscale.pruning.evaluate import DEFAULT_FINAL_EPOCHS, DEFAULT_STEPS, make_evaluator
from nasscale.pruning.netadapt import Options
from nasscale.pruning.run import PruneRequest, run_prune
from nasscale.scoring import train as training

TINY_NET = str(Path(__file__).parent / "support" / "tiny_net.yaml")
CLASSES = 4  # tiny_net.yaml says 3: the weights' 4 classes must win


@pytest.fixture(autouse=True)
def one_thread():
    """These tests train (tiny steps); two intra-op threads on a busy 2-core machine make
    each step ten times slower, one thread does not."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def data(tmp_path):
    """64 grey 8x8 images, 4 classes, each with a bright band of its own."""
    rng = np.random.default_rng(0)
    y = np.arange(64) % CLASSES
    x = rng.integers(0, 60, (64, 8, 8)).astype(np.uint8)
    for c in range(CLASSES):
        x[y == c, 2 * c:2 * c + 2, :] += 150
    path = tmp_path / "bands.npz"
    np.savez(path, x=x, y=y)
    return str(path)


@pytest.fixture()
def weights(tmp_path):
    """A bare state_dict of tiny_net with a 4-class classifier."""
    spec = nasscale.load(TINY_NET).replace(num_classes=CLASSES)
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    torch.save(nasscale.build(spec).state_dict(), path)
    return str(path)


@pytest.fixture()
def calls(monkeypatch):
    """Every ``train`` call: (settings, model, result)."""
    real, seen = training.train, []

    def recording(model, data, settings, **kw):
        result = real(model, data, settings, **kw)
        seen.append((settings, model, result))
        return result

    monkeypatch.setattr(training, "train", recording)
    return seen


def test_train_options_and_defaults(data):
    ev = make_evaluator(f"train:{data},steps=7,final_epochs=2,final_lr=0.02,lr=0.03,batch=8,"
                        "resolution=16,device=cpu,amp=bf16,channels_last=1,progressive=1")
    s = ev.train
    assert (s.steps, s.lr, s.batch_size, s.resolution, s.device, s.amp, s.channels_last,
            s.progressive) == (7, 0.03, 8, 16, "cpu", "bf16", True, True)
    final = ev.final_settings(weighted=True)
    assert (final.epochs, final.steps, final.lr) == (2, None, 0.02)
    assert "after 7 steps" in ev.describe() and "short-term fine-tuning" in ev.describe()
    ev = make_evaluator(f"train:{data}")
    assert ev.train.steps == DEFAULT_STEPS and ev.train.device == "auto"
    assert ev.final_settings(weighted=True).epochs == DEFAULT_FINAL_EPOCHS
    assert ev.final_settings(weighted=True).lr == ev.train.lr
    assert ev.final_settings(weighted=False) is None  # structure only: nothing to fine-tune
    ev = make_evaluator(f"train:{data},epochs=2,final_epochs=0")
    assert (ev.train.steps, ev.train.epochs) == (None, 2)
    assert ev.final_settings(weighted=True) is None
    assert make_evaluator("proxy:naswot").final_settings(weighted=True) is None


@pytest.mark.parametrize("options,message", [
    ("steps=3,epochs=1", "give steps=N or epochs=E, not both"),
    ("steps=0", "steps: must be an integer >= 1 and <= 10,000,000, got 0"),
    ("device=tpu", "device: must be auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("device=cpu,amp=fp16", "amp: fp16 needs CUDA"),
    ("amp=fp8", "amp: must be one of none, bf16, fp16"),
    ("final_epochs=-1", "final_epochs: must be an integer >= 0"),
    ("bogus=1", "unknown option 'bogus=1'; kind train takes epochs, steps, batch_size"),
    ("final_lr=0", "final_lr: must be a number > 0"),
    ("channels_last=maybe", "channels_last: must be 1 or 0 (true or false), got 'maybe'"),
    ("warmup=3", "warmup: must be a number in [0, 1), got 3"),
])
def test_bad_train_options_are_one_line_errors_before_anything_runs(
        data, weights, tmp_path, capsys, options, message):
    out = tmp_path / "o"
    rc = main(["prune", TINY_NET, "--target", "flops=0.8x", "--weights", weights,
               "--evaluator", f"train:{data},{options}", "--out", str(out), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nasscale: error: --evaluator 'train:{data},{options}': ")
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()  # refused before the first iteration


def test_cuda_without_cuda_and_final_epochs_without_weights(data, tmp_path, capsys):
    if not torch.cuda.is_available():
        assert main(["prune", TINY_NET, "--target", "flops=0.8x", "--evaluator",
                     f"train:{data},device=cuda", "--out", str(tmp_path / "o")]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert main(["prune", TINY_NET, "--target", "flops=0.8x", "--evaluator",
                 f"train:{data},final_epochs=2", "--out", str(tmp_path / "o")]) == 2
    assert "final_epochs=2 fine-tunes carried weights; give --weights" in \
        capsys.readouterr().err


def test_short_term_steps_per_proposal_and_long_term_once(data, weights, tmp_path, calls):
    result, out = run_prune(PruneRequest(
        network=TINY_NET, target="flops=0.8x", weights=weights, out=str(tmp_path / "o"),
        evaluator=f"train:{data},steps=3,final_epochs=2,final_lr=0.02,batch=8,resolution=16,"
        "device=cpu", options=Options(initial_step=0.1), verbose=False))
    assert result.met and result.iterations
    *short, (final_settings, final_model, final_run) = calls
    # the start network, then one short-term fine-tuning per proposal, exactly 3 steps each
    assert len(short) == 1 + sum(it.proposals for it in result.iterations)
    assert all(s.steps == 3 and r.steps == 3 for s, _, r in short)
    # the long-term fine-tuning: once, last, epochs and lr of its own, on the final network
    assert (final_settings.steps, final_settings.epochs, final_settings.lr) == (None, 2, 0.02)
    assert final_run.epochs == 2 and final_model is result.model
    assert result.model.state_dict()["head.classifier.weight"].shape[0] == CLASSES
    saved = torch.load(out / "pruned.pt", weights_only=True)["state_dict"]
    for key, value in final_model.state_dict().items():  # pruned.pt: the long-term weights
        torch.testing.assert_close(saved[key], value)
    lt = result.long_term
    assert lt["epochs"] == 2 and lt["steps"] == final_run.steps
    assert lt["accuracy_after"] == final_run.accuracy and 0 <= lt["accuracy_before"] <= 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["long_term"]["accuracy_after"] == lt["accuracy_after"]
    assert summary["long_term"]["accuracy_before"] == lt["accuracy_before"]
    from nasscale.pruning.report import result_text

    assert "long-term fine-tuning: 2 epoch(s) at lr 0.02" in result_text(result, out)


def test_long_term_runs_after_the_latency_check_prunes_on(data, weights, tmp_path, calls,
                                                          monkeypatch):
    """A latency target whose measured check misses once: pruning goes on, and the long-term
    fine-tuning runs once, on the network that came out of the second round."""
    import nasscale.pruning.run as run_module
    from nasscale.pruning.resource import LatencyResource

    compared = []

    class FakeLatency(LatencyResource):  # "latency" = MFLOPs, "measured" ratios scripted
        def __post_init__(self):
            self.path, self.table = Path(self.path), {}

        def value(self, spec):
            return nasscale.count(spec).flops / 1e6

        confirm = measure_median = value

        def calibrate(self, spec, ms):
            pass

        def compare(self, a, b, rounds=3):
            compared.append(b)
            return (10.0, 9.5, 0.95) if len(compared) == 1 else (10.0, 8.5, 0.85)

        def describe(self):
            return "fake latency"

    monkeypatch.setattr(run_module, "make_resource",
                        lambda metric, lut, out, settings: FakeLatency(out / "t.json", settings))
    result, out = run_prune(PruneRequest(
        network=TINY_NET, target="latency=0.9x", weights=weights, out=str(tmp_path / "o"),
        evaluator=f"train:{data},steps=2,final_epochs=1,batch=8,resolution=16,device=cpu",
        options=Options(initial_step=0.1), verbose=False))
    assert len(compared) == 2 and result.extra["measured_meets_target"]
    long_term = [(s, m) for s, m, _ in calls if s.steps is None]
    assert len(long_term) == 1 and calls[-1][1] is long_term[0][1] is result.model
    assert nasscale.count(result.final).flops < nasscale.count(compared[0]).flops
    pruned = nasscale.build(nasscale.load(str(out / "final.yaml")))
    pruned.load_state_dict(torch.load(out / "pruned.pt", weights_only=True)["state_dict"])


def test_prune_weights_from_nasscale_train(data, tmp_path, capsys):
    from nasscale.modules.checkpoint import read_checkpoint

    ckpt = tmp_path / "trained.pt"
    assert main(["train", TINY_NET, "--data", data, "--epochs", "1", "--batch-size", "16",
                 "--resolution", "16", "--device", "cpu", "-o", str(ckpt), "--quiet",
                 "--format", "json"]) == 0
    capsys.readouterr()
    meta = read_checkpoint(str(ckpt)).meta  # the train file: state_dict plus its network
    assert meta["network"]["num_classes"] == CLASSES and len(meta["classes"]) == CLASSES
    out = tmp_path / "o"
    assert main(["prune", TINY_NET, "--target", "flops=0.8x", "--step", "0.1", "--weights",
                 str(ckpt), "--evaluator", f"train:{data},steps=2,final_epochs=1,batch=16,"
                 "resolution=16,device=cpu", "--out", str(out), "--format", "json",
                 "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["met"] and record["long_term"]["epochs"] == 1
    assert {"accuracy_before", "accuracy_after"} <= set(record["long_term"])
    assert record["outputs"]["weights"] == str(out / "pruned.pt")
    final = nasscale.load(str(out / "final.yaml"))
    assert final.num_classes == CLASSES
    pruned = nasscale.build(final)
    pruned.load_state_dict(torch.load(out / "pruned.pt", weights_only=True)["state_dict"])
    with torch.no_grad():
        assert pruned.eval()(torch.randn(2, 3, 16, 16)).shape == (2, CLASSES)
