"""Latency measurement: the key, the timing protocol, records, BN folding, the CUDA path."""
import json

import pytest
import torch

import nasscale
from nasscale.errors import NasscaleError, SpecError
from nasscale.latency import LatencyStats, Settings, measure
from nasscale.latency.key import MeasurementKey, available_cores, current_key
from nasscale.latency.measure import fold_batchnorm
from nasscale.latency.timing import QUICK, TimingPolicy, time_runs

TINY = dict(resolution=32, policy=QUICK, clock="cpu")


class Scripted:
    """A stopwatch that replays scripted (seconds, preempted) runs."""

    def __init__(self, runs):
        self.runs = iter(runs)

    def start(self):
        pass

    def lap(self):
        pass

    def stop(self):
        seconds, preempted = next(self.runs)
        return [seconds], preempted


def test_stats_are_percentiles_of_the_runs():
    s = LatencyStats.of([i / 1000 for i in range(1, 102)])  # 1..101 ms
    assert (s.min, s.p50, s.max, s.n) == (1.0, 51.0, 101.0, 101)
    assert s.p10 == pytest.approx(11.0) and s.p90 == pytest.approx(91.0)
    assert s.spread == pytest.approx(80 / 51)


def test_warmup_settles_then_rounds_and_an_outlier_round_is_measured_again():
    policy = TimingPolicy(warmup_min=3, warmup_max_s=10, rounds=3, max_rounds=5, round_s=0.05,
                          min_runs=9, round_tol=0.04)
    per_round = 5  # round_s / 10 ms
    warm = [0.05, 0.04, 0.03, 0.02, 0.015] + [0.010] * 8  # slow first runs, then settled
    rounds = [[0.010] * per_round, [0.015] * per_round, [0.0101] * per_round,
              [0.0102] * per_round]
    script = [(s, False) for s in warm] + [(s, False) for r in rounds for s in r]
    runs = time_runs(lambda sw: sw.lap(), Scripted(script), policy)
    assert runs.warmup_runs == 13 and runs.settled
    assert runs.rounds_measured == 4 and runs.rounds_kept == 3 and runs.stable
    assert max(runs.totals) < 0.011  # the 15 ms round was dropped
    assert len(runs.totals) == 3 * per_round


def test_preempted_runs_are_dropped_and_counted():
    policy = TimingPolicy(warmup_min=1, warmup_max_s=0, rounds=1, max_rounds=1, round_s=0.04,
                          min_runs=4)
    script = [(0.01, False)] + [(0.01, False), (0.05, True), (0.01, False), (0.01, False),
                                (0.01, False)]
    runs = time_runs(lambda sw: sw.lap(), Scripted(script), policy)
    assert runs.preempted == 1 and runs.totals == [0.01] * 4 and not runs.contended_rounds


def test_key_names_the_machine_and_settings():
    key = current_key(threads=1, clock="cpu")
    assert key.device == "cpu" and key.torch == torch.__version__ and key.threads == 1
    assert key.device_name and key.capability and key.allocator.endswith(("steady", "default",
                                                                            "malloc"))
    assert MeasurementKey.from_dict(key.as_dict()) == key
    assert key.differences(key) == []
    other = MeasurementKey.from_dict({**key.as_dict(), "threads": 2})
    assert key.differences(other) == ["threads: 1 vs 2"]
    assert "1 thread" in key.describe() and "cpu clock" in key.describe()


@pytest.mark.parametrize("settings, message", [
    (dict(threads=available_cores() + 1), "threads: must be at most the"),
    (dict(threads=0), "threads: must be an integer >= 1"),
    (dict(batch=0), "batch: must be an integer >= 1"),
    (dict(batch=4097), "batch: must be an integer >= 1 and <= 4,096, got 4097"),
    (dict(dtype="float8"), "dtype: must be one of 'float32', 'bfloat16', 'float16'"),
    (dict(clock="cpu", threads=2), "clock: must be 'wall', or 'cpu' only on the CPU with 1 thread"),
    (dict(mode="cuda-graph"), "mode: must be eager or compile on the CPU"),
    (dict(device="tpu"), "device: must be one of 'cpu', 'cuda'"),
])
def test_bad_settings_name_the_field_and_what_is_allowed(settings, message):
    if settings.get("threads", 1) == 2 and available_cores() < 2:
        pytest.skip("needs 2 cores")
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(**settings).key()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(NasscaleError, match="CUDA is not available here"):
        measure("mobilenet_v3_small", device="cuda", resolution=32, policy=QUICK)


def test_record_has_costs_stats_and_key():
    rec = measure("mobilenet_v3_small", **TINY)
    cost = nasscale.count("mobilenet_v3_small", resolution=32)
    assert (rec.params, rec.flops, rec.resolution) == (cost.params, cost.flops, 32)
    s = rec.stats
    assert 0 < s.min <= s.p10 <= s.p50 <= s.p90 <= s.max and s.n >= QUICK.min_runs
    data = json.loads(json.dumps(rec.as_dict()))
    assert {"params", "flops", "latency_ms", "latency_p90_ms", "key"} <= set(data)
    assert data["latency_ms"] == s.p50 and data["key"]["clock"] == "cpu"
    assert data["key"]["threads"] == 1 and data["key"]["batch"] == 1
    assert data["diagnostics"]["rounds"] >= QUICK.rounds


def test_measure_restores_threads_and_accepts_batch_and_channels_last():
    before = torch.get_num_threads()
    rec = measure("mobilenet_v3_small", batch=2, channels_last=True, dtype="bfloat16", **TINY)
    assert torch.get_num_threads() == before
    assert rec.key.batch == 2 and rec.key.memory_format == "channels_last"
    assert rec.key.dtype == "bfloat16" and rec.latency_ms > 0


def test_folding_batchnorm_keeps_the_function():
    torch.manual_seed(0)
    model = nasscale.build("mobilenet_v3_small").eval()
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 48, 48)
    with torch.inference_mode():
        ref = model(x)
        folded = fold_batchnorm(model)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        torch.testing.assert_close(folded(x), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_measurement_with_events_and_graphs():
    eager = measure("mobilenet_v3_small", device="cuda", resolution=64, policy=QUICK)
    graph = measure("mobilenet_v3_small", device="cuda", resolution=64, policy=QUICK,
                    cuda_graphs=True)
    assert eager.key.device == "cuda" and graph.key.mode == "cuda-graph"
    assert eager.latency_ms > 0 and graph.latency_ms > 0


def test_cuda_stopwatch_times_laps_between_events_after_a_synchronisation():
    from nasscale.latency.timing import CudaStopwatch

    log = []

    class FakeEvent:
        clock = 0.0

        def __init__(self, enable_timing):
            assert enable_timing

        def record(self):
            FakeEvent.clock += 2.5  # ms of GPU time per lap
            self.t = FakeEvent.clock
            log.append("record")

        def synchronize(self):
            log.append("event sync")

        def elapsed_time(self, other):
            return other.t - self.t

    class Cuda:
        Event = FakeEvent

        @staticmethod
        def synchronize():
            log.append("device sync")

    class FakeTorch:
        cuda = Cuda

    sw = CudaStopwatch(FakeTorch)
    sw.start()
    sw.lap()
    sw.lap()
    laps, preempted = sw.stop()
    assert laps == [0.0025, 0.0025] and not preempted
    assert log[0] == "device sync" and log[-1] == "event sync"  # synchronised, then events


def test_measure_ratio_is_about_one_for_a_network_against_itself():
    from nasscale.latency.measure import measure_ratio
    from nasscale.latency.timing import QUICK

    spec = nasscale.load("mobilenet_v3_small").replace(resolution=64)
    twin = spec.replace(name="twin")
    rec = measure_ratio(spec, twin, policy=QUICK, pairs=4)
    r = sorted(rec.pair_ratios)
    assert len(r) == 4 and rec.ratio == pytest.approx((r[1] + r[2]) / 2)  # their median
    assert 0.5 < rec.ratio < 2.0  # the same network: one, give or take a busy test machine
    big = nasscale.load("mobilenet_v3_large").replace(resolution=64)
    assert measure_ratio(big, spec, policy=QUICK, pairs=2).ratio > 1.0
