"""How runs are timed: stopwatches for the CPU and CUDA, warm-up, rounds and robust statistics.

The protocol (:func:`time_runs`), the same for a whole network and for the blocks of a carrier
network in the latency table:

1. **Warm-up until settled.**  Run at least ``warmup_min`` times, then until the median of the
   last five runs is within ``settle_tol`` of the five before (allocator, caches, oneDNN primitive
   cache and CPU clocks have reached their steady state), or ``warmup_max_s`` has passed.
2. **Rounds.**  ``rounds`` rounds of ``n`` runs each, ``n`` chosen so that a round lasts about
   ``round_s`` and the rounds hold at least ``min_runs`` runs.  A wall-clock run on one CPU
   thread whose thread CPU time is below ``preempt_ratio`` of its wall time was preempted by
   another process; it is dropped and run again.
3. **Re-measure outlier rounds.**  Another process, a frequency change or the hypervisor slows
   whole stretches of time, not single runs.  A round whose median is more than ``round_tol``
   above the fastest round's median is an outlier: it is measured again (up to ``max_rounds``
   rounds in all) and only consistent rounds are kept.  If too few agree, the ``rounds`` fastest
   are kept and the result says it is not stable.  A round in which fewer than half the runs
   escaped preemption keeps its preempted runs and is counted as contended: on a busy CPU the
   wall-clock latency includes waiting for it, and the record says so.
4. **Other processes.**  The CPU time other processes used while the rounds ran (from
   ``/proc/stat``) is reported as ``other_load`` (in cores).  On a machine with SMT siblings or a
   shared memory system, another busy core slows this one even when nothing preempts it: on the
   2-core development VM a single-thread matmul on the other core made MobileNetV3 25 % slower
   in thread CPU time.  A non-zero ``other_load`` means the latency is not that of a quiet machine.
   With ``max_other_load`` set, a measurement during which other processes used more than that
   is made again after ``quiet_wait_s`` (at most ``quiet_retries`` times) and the quietest
   attempt is kept.
5. **Statistics** over the kept runs: p50 (the latency), p90, p10, min, max, mean and the spread
   ``(p90 - p10) / p50``.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class TimingPolicy:
    """Knobs of :func:`time_runs` (see the module docstring)."""

    warmup_min: int = 5
    warmup_max_s: float = 5.0
    settle_tol: float = 0.03
    rounds: int = 3
    max_rounds: int = 8
    round_s: float = 0.3
    min_runs: int = 30
    max_runs_per_round: int = 300
    round_tol: float = 0.04
    preempt_ratio: float = 0.9
    max_other_load: float | None = None  # cores; above it, wait and measure again ...
    quiet_retries: int = 0  # ... at most this many times, keeping the quietest attempt
    quiet_wait_s: float = 2.0

    def scaled(self, factor: float) -> "TimingPolicy":
        """A quicker (factor < 1) or more thorough policy: rounds last ``factor`` times as long."""
        return TimingPolicy(**{**self.__dict__, "round_s": self.round_s * factor,
                               "min_runs": max(6, int(self.min_runs * factor)),
                               "warmup_max_s": self.warmup_max_s * max(factor, 0.2)})


#: The longest timed round a command accepts (seconds): a measurement takes 3 to 8 rounds,
#: so even this makes one network's measurement last minutes; the default round is 0.3 s.
MAX_ROUND_S = 60.0

QUICK = TimingPolicy(warmup_min=3, warmup_max_s=1.0, rounds=2, max_rounds=3, round_s=0.02,
                     min_runs=6)  # for tests: correctness of the machinery, not good numbers


# --- stopwatches --------------------------------------------------------------------------

class Stopwatch(Protocol):
    """Times one run, split into laps: ``start()``, ``lap()`` after each part, ``stop()``.

    ``stop`` returns the seconds of each lap and whether the run was preempted (only detectable
    for wall-clock time on one CPU thread).
    """

    def start(self) -> None: ...

    def lap(self) -> None: ...

    def stop(self) -> tuple[list[float], bool]: ...


class CpuStopwatch:
    """``clock='wall'``: ``time.perf_counter``; ``clock='cpu'``: the calling thread's CPU time
    (immune to preemption, valid with one intra-op thread only)."""

    def __init__(self, clock: str = "wall", threads: int = 1, preempt_ratio: float = 0.9):
        self.cpu_clock = clock == "cpu"
        self.detect = clock == "wall" and threads == 1
        self.preempt_ratio = preempt_ratio
        self._marks: list[float] = []
        self._cpu0 = 0.0

    def start(self) -> None:
        self._marks = []
        if self.detect:
            self._cpu0 = time.thread_time()
        self._marks.append(time.thread_time() if self.cpu_clock else time.perf_counter())

    def lap(self) -> None:
        self._marks.append(time.thread_time() if self.cpu_clock else time.perf_counter())

    def stop(self) -> tuple[list[float], bool]:
        marks = self._marks
        laps = [b - a for a, b in zip(marks, marks[1:])]
        preempted = False
        if self.detect:
            cpu = time.thread_time() - self._cpu0
            wall = marks[-1] - marks[0]
            preempted = cpu < self.preempt_ratio * wall - 20e-6
        return laps, preempted


class CudaStopwatch:
    """CUDA events around each lap, after a synchronisation: the latency one request sees."""

    def __init__(self, torch_module):
        self.torch = torch_module
        self._events: list = []

    def start(self) -> None:
        self.torch.cuda.synchronize()
        self._events = [self._record()]

    def _record(self):
        event = self.torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def lap(self) -> None:
        self._events.append(self._record())

    def stop(self) -> tuple[list[float], bool]:
        self._events[-1].synchronize()
        ev = self._events
        return [a.elapsed_time(b) / 1e3 for a, b in zip(ev, ev[1:])], False


# --- statistics ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LatencyStats:
    """Robust summary of timed runs, in milliseconds."""

    p50: float
    p90: float
    p10: float
    min: float
    max: float
    mean: float
    n: int

    @property
    def spread(self) -> float:
        """(p90 - p10) / p50: the relative width of the middle 80 % of the runs."""
        return (self.p90 - self.p10) / self.p50 if self.p50 > 0 else math.nan

    @classmethod
    def of(cls, seconds: Sequence[float]) -> "LatencyStats":
        if not len(seconds):
            raise ValueError("no runs to summarise")
        ms = np.asarray(seconds, dtype=float) * 1e3
        p10, p50, p90 = np.percentile(ms, (10, 50, 90))
        return cls(p50=float(p50), p90=float(p90), p10=float(p10), min=float(ms.min()),
                   max=float(ms.max()), mean=float(ms.mean()), n=int(ms.size))

    def as_dict(self) -> dict:
        return {"p50_ms": self.p50, "p90_ms": self.p90, "p10_ms": self.p10, "min_ms": self.min,
                "max_ms": self.max, "mean_ms": self.mean, "spread": self.spread, "runs": self.n}


# --- other processes ----------------------------------------------------------------------

def _busy_snapshot() -> tuple[float, float, float] | None:
    """(wall s, CPU seconds all processes used, CPU seconds this process used), Linux only."""
    import resource

    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()[1:]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait
    ticks = [int(v) for v in fields]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), busy / hz, usage.ru_utime + usage.ru_stime


def other_load(before, after) -> float | None:
    """Cores other processes kept busy between two snapshots (0 on an idle machine; the
    resolution is one clock tick, so short windows read coarsely)."""
    if before is None or after is None or after[0] - before[0] < 0.05:
        return None
    return max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / (after[0] - before[0]))


# --- the protocol -------------------------------------------------------------------------

@dataclass
class Runs:
    """The kept runs of :func:`time_runs`: ``laps[i][j]`` is lap ``j`` of run ``i`` (seconds)."""

    laps: list[list[float]]
    warmup_runs: int
    settled: bool
    rounds_kept: int
    rounds_measured: int
    preempted: int
    contended_rounds: int
    stable: bool
    round_medians_ms: list[float] = field(default_factory=list)
    other_load: float | None = None  # cores other processes used while the rounds ran
    attempts: int = 1  # measurements made (more when other processes were busy)

    @property
    def totals(self) -> list[float]:
        return [sum(run) for run in self.laps]

    def lap_medians(self) -> list[float]:
        """Median seconds of each lap over the kept runs."""
        return [float(v) for v in np.median(np.asarray(self.laps), axis=0)]

    def diagnostics(self) -> dict:
        return {"warmup_runs": self.warmup_runs, "settled": self.settled,
                "rounds": self.rounds_kept, "rounds_measured": self.rounds_measured,
                "preempted_runs": self.preempted, "contended_rounds": self.contended_rounds,
                "stable": self.stable, "other_load": self.other_load,
                "attempts": self.attempts,
                "round_p50_ms": [round(m, 4) for m in self.round_medians_ms]}


def time_runs(run: Callable[[Stopwatch], None], stopwatch: Stopwatch,
              policy: TimingPolicy = TimingPolicy()) -> Runs:
    """Time ``run(stopwatch)`` (which calls ``stopwatch.lap()`` after each part) by the protocol
    of the module docstring."""

    def one() -> tuple[list[float], bool]:
        stopwatch.start()
        run(stopwatch)
        return stopwatch.stop()

    warm, settled = _warm_up(one, policy, policy.warmup_max_s)
    estimate = float(np.median(warm[-5:]))
    per_round = max(math.ceil(policy.min_runs / policy.rounds),
                    min(policy.max_runs_per_round, int(policy.round_s / max(estimate, 1e-7))))
    attempts = [_rounds(one, per_round, policy)]
    while (policy.max_other_load is not None and len(attempts) <= policy.quiet_retries
           and (attempts[-1].other_load or 0.0) > policy.max_other_load):
        time.sleep(policy.quiet_wait_s)  # other processes were busy: wait, warm up, again
        _warm_up(one, policy, 0.0)
        attempts.append(_rounds(one, per_round, policy))
    best = min(attempts, key=lambda r: r.other_load or 0.0)
    best.warmup_runs, best.settled, best.attempts = len(warm), settled, len(attempts)
    return best


def _warm_up(one, policy: TimingPolicy, max_s: float) -> tuple[list[float], bool]:
    """1. Run until the median of the last five runs agrees with the five before."""
    warm: list[float] = []
    t_end = time.perf_counter() + max_s
    while True:
        warm.append(sum(one()[0]))
        if len(warm) >= max(policy.warmup_min, 10):
            last, before = np.median(warm[-5:]), np.median(warm[-10:-5])
            if abs(last / before - 1) <= policy.settle_tol:
                return warm, True
        if time.perf_counter() > t_end and len(warm) >= policy.warmup_min:
            return warm, False


def _rounds(one, per_round: int, policy: TimingPolicy) -> Runs:
    """2.-3. Rounds of ``per_round`` runs; outlier rounds measured again."""
    rounds: list[list[list[float]]] = []
    preempted = contended = 0

    def one_round() -> list[list[float]]:
        # preempted runs are dropped and run again (at most as many times again)
        nonlocal preempted, contended
        kept: list[list[float]] = []
        dropped: list[list[float]] = []
        while len(kept) < per_round and len(kept) + len(dropped) < 2 * per_round:
            laps, was_preempted = one()
            (dropped if was_preempted else kept).append(laps)
        preempted += len(dropped)
        if len(kept) < per_round // 2:  # the CPU is busy: preemption is part of the wall time
            contended += 1
            return kept + dropped[:per_round - len(kept)]
        return kept

    def medians() -> list[float]:
        return [float(np.median([sum(r) for r in rnd])) for rnd in rounds]

    def consistent() -> list[int]:
        meds = medians()
        best = min(meds)
        return [i for i, m in enumerate(meds) if m <= best * (1 + policy.round_tol)]

    snapshot = _busy_snapshot()
    for _ in range(policy.rounds):
        rounds.append(one_round())
    while len(consistent()) < policy.rounds and len(rounds) < policy.max_rounds:
        rounds.append(one_round())
    load = other_load(snapshot, _busy_snapshot())
    keep = consistent()
    stable = len(keep) >= policy.rounds
    if not stable:
        keep = sorted(range(len(rounds)), key=lambda i: medians()[i])[:policy.rounds]
    return Runs(laps=[laps for i in sorted(keep) for laps in rounds[i]], warmup_runs=0,
                settled=False, rounds_kept=len(keep), rounds_measured=len(rounds),
                preempted=preempted, contended_rounds=contended, stable=stable,
                round_medians_ms=[m * 1e3 for m in medians()], other_load=load)
