"""End-to-end latency of a network: ``measure(spec_or_name, device=..., ...) -> LatencyRecord``.

The network is built from its spec, put in eval mode with every conv → BatchNorm pair folded into
one conv (what any inference runtime does, and why FLOPs do not count BN), converted to the dtype
and memory format, optionally compiled or captured in a CUDA graph, and timed under
``torch.inference_mode`` by the protocol of :mod:`nasscale.latency.timing`.  In a deployment
runtime (``Settings.runtime``), what is timed is the file ``nasscale export`` writes, loaded in
that runtime (:mod:`nasscale.latency.runtimes`).  The thread count is
set for the measurement and restored afterwards; it may never exceed the cores.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nasscale.costs.analytic import network_cost
from nasscale.errors import NasscaleError
from nasscale.latency.key import MeasurementKey, current_key
from nasscale.latency.runtimes.artifacts import write_artifact
from nasscale.latency.timing import (
    CpuStopwatch,
    CudaStopwatch,
    LatencyStats,
    TimingPolicy,
    time_runs,
)
from nasscale.specs import NetworkSpec, ResolvedNetwork, resolve


@dataclass(frozen=True)
class Settings:
    """What to measure with; ``key()`` adds the machine and validates everything."""

    device: str = "cpu"
    threads: int = 1
    dtype: str = "float32"
    batch: int = 1
    memory_format: str = "contiguous"
    mode: str = "eager"
    clock: str = "wall"
    allocator: str = "steady"
    runtime: str = "torch"  # what runs the network (nasscale.latency.runtimes)
    quantize: str = "none"  # int8: calibrated on seeded noise (the scales do not set the speed)
    form: str = "deploy"  # re-parameterisable networks: fused (deploy) or branched (train)

    def key(self) -> MeasurementKey:
        return current_key(self.device, self.threads, self.dtype, self.batch, self.memory_format,
                           self.mode, self.clock, self.allocator, self.runtime, self.quantize,
                           self.form)

    def timed_form(self, spec: NetworkSpec) -> NetworkSpec:
        """The form of ``spec`` these settings time: fused (``deploy``) or branched."""
        return spec.deploy_form() if self.form == "deploy" else spec.train_form()

    @classmethod
    def of_key(cls, key: MeasurementKey) -> "Settings":
        """Settings that reproduce ``key`` (the allocator's name is mapped back to its policy)."""
        allocator = "default" if key.allocator.endswith("-default") else "steady"
        return cls(key.device, key.threads, key.dtype, key.batch, key.memory_format, key.mode,
                   key.clock, allocator, key.runtime, key.quantize, key.form)

    def replace(self, **changes: object) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_options(cls, base: "Settings | None" = None, *, channels_last: bool | None = None,
                     compile: bool | None = None, cuda_graphs: bool | None = None,
                     runtime: str | None = None, **fields: object) -> "Settings":
        """The one mapping from what users write (CLI flags, a study's ``latency:`` section,
        ``nasscale prune``'s options) to settings: ``channels_last`` sets the memory format,
        ``compile``/``cuda_graphs`` the mode, ``runtime`` (``eager``, ``compile`` or a
        deployment runtime) the runtime and, for PyTorch, the mode; the other options are fields
        of the same name.  ``None`` leaves ``base``'s value (default: ``Settings()``)."""
        from nasscale.latency.runtimes import split_choice

        changes = {k: v for k, v in fields.items() if v is not None}
        if channels_last is not None:
            changes["memory_format"] = "channels_last" if channels_last else "contiguous"
        if compile is not None or cuda_graphs is not None:
            changes["mode"] = mode_of(bool(compile), bool(cuda_graphs))
        if runtime is not None:
            changes["runtime"], mode = split_choice(runtime)
            if mode == "compile" or (mode == "eager" and "mode" not in changes):
                changes["mode"] = mode_of(mode == "compile", bool(cuda_graphs))
        return (base or cls()).replace(**changes)


def mode_of(compile: bool, cuda_graphs: bool) -> str:
    return {(False, False): "eager", (True, False): "compile", (False, True): "cuda-graph",
            (True, True): "compile+cuda-graph"}[(bool(compile), bool(cuda_graphs))]


@dataclass(frozen=True)
class LatencyRecord:
    """One network's measured latency with its costs and key; ``latency_ms`` is the p50."""

    name: str
    resolution: int
    params: int
    flops: int  # multiply-accumulates per image (batch 1 convention)
    stats: LatencyStats
    key: MeasurementKey
    diagnostics: dict
    compile_s: float = 0.0

    @property
    def latency_ms(self) -> float:
        return self.stats.p50

    def as_dict(self) -> dict:
        from nasscale.reports.text import FLOPS_CONVENTION

        s = self.stats
        return {"name": self.name, "resolution": self.resolution, "params": self.params,
                "flops": self.flops, "flops_convention": FLOPS_CONVENTION,
                "latency_ms": s.p50, "latency_p90_ms": s.p90, "latency_p10_ms": s.p10,
                "latency_min_ms": s.min, "latency_max_ms": s.max, "latency_mean_ms": s.mean,
                "latency_spread": s.spread, "runs": s.n, "key": self.key.as_dict(),
                "diagnostics": self.diagnostics, "compile_s": self.compile_s}


# --- preparing a network ------------------------------------------------------------------

def fold_batchnorm(model):
    """Fold every Conv2d → BatchNorm2d pair of ``ConvNormAct`` layers into one conv (eval)."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from nasscale.modules.layers import ConvNormAct

    for module in model.modules():
        if isinstance(module, ConvNormAct) and len(module) > 1 \
                and isinstance(module[1], nn.BatchNorm2d):
            module[0] = fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    return model


@dataclass
class Prepared:
    """A built network ready to time: ``forward()`` runs it once on ``inputs``; ``units`` are the
    modules whose chain the network runs (stem, stage, head blocks, then the head), for per-block
    timing in eager mode."""

    rn: ResolvedNetwork
    model: object
    inputs: object
    forward: Callable[[], object]
    units: list
    stopwatch: Callable[[], object]
    compile_s: float = 0.0  # torch.compile, CUDA-graph capture, or a runtime's export and load
    artifact: Path | None = None  # the file a deployment runtime runs
    workdir: object = None  # the temporary folder holding it (removed with the Prepared)


def _torch_dtype(torch, name: str):
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def prepare(spec: NetworkSpec, settings: Settings, resolution: int | None = None,
            policy: TimingPolicy | None = None) -> Prepared:
    """Build, fold, convert and (optionally) compile/capture a network for timing: the form of
    a re-parameterisable network that ``settings.form`` names (deploy: fused, what ``nasscale
    export`` writes)."""
    import torch

    from nasscale.modules import build_network

    spec = settings.timed_form(spec)
    rn = resolve(spec, resolution)
    if settings.runtime != "torch":
        return _prepare_runtime(spec, rn, settings, policy)
    device = torch.device("cuda" if settings.device == "cuda" else "cpu")
    dtype = _torch_dtype(torch, settings.dtype)
    fmt = (torch.channels_last if settings.memory_format == "channels_last"
           else torch.contiguous_format)
    model = fold_batchnorm(build_network(spec, rn.resolution).eval())
    model = model.to(device=device, dtype=dtype, memory_format=fmt)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(settings.batch, spec.in_channels, rn.resolution, rn.resolution,
                    generator=generator).to(device=device, dtype=dtype, memory_format=fmt)
    units = [*model.stem, *(b for stage in model.stages for b in stage), *model.head_blocks,
             model.head]
    forward: Callable[[], object] = lambda: model(x)  # noqa: E731
    compile_s = 0.0
    if settings.mode != "eager":
        t0 = time.perf_counter()
        forward = _compiled_forward(torch, model, x, settings.mode)
        compile_s = time.perf_counter() - t0
    if settings.device == "cuda":
        stopwatch = lambda: CudaStopwatch(torch)  # noqa: E731
    else:
        ratio = (policy or TimingPolicy()).preempt_ratio
        stopwatch = lambda: CpuStopwatch(settings.clock, settings.threads, ratio)  # noqa: E731
    return Prepared(rn, model, x, forward, units, stopwatch, compile_s)


def _prepare_runtime(spec: NetworkSpec, rn: ResolvedNetwork, settings: Settings,
                     policy: TimingPolicy | None) -> Prepared:
    """Write what ``nasscale export`` writes for the runtime (an ONNX file or a ``.pte``
    program, int8 when asked) into a temporary folder and load it there; ``units`` is empty
    (a runtime is timed end to end; its lookup tables read the runtime's profiler)."""
    import tempfile

    import torch

    from nasscale.latency.runtimes import get

    info = get(settings.runtime)
    info.require()
    workdir = tempfile.TemporaryDirectory(prefix="nasscale-runtime-")
    t0 = time.perf_counter()
    path = write_artifact(spec, rn.resolution, settings, Path(workdir.name))  # as export does
    x = torch.randn(settings.batch, spec.in_channels, rn.resolution, rn.resolution,
                    generator=torch.Generator().manual_seed(0)).numpy()
    try:
        forward = info.module().load(path, x, settings)
    except NasscaleError:
        raise
    except Exception as err:  # a kind the runtime cannot run: one line naming both
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise NasscaleError(f"runtime {settings.runtime} cannot run {spec.name}: "
                            f"{type(err).__name__}: {first}") from None
    ratio = (policy or TimingPolicy()).preempt_ratio
    return Prepared(rn, None, x, forward, [],
                    lambda: CpuStopwatch(settings.clock, settings.threads, ratio),
                    time.perf_counter() - t0, artifact=path, workdir=workdir)


def _compiled_forward(torch, model, x, mode: str) -> Callable[[], object]:
    """torch.compile and/or a CUDA graph; the first calls (compilation, capture) happen here."""
    try:
        if mode == "compile":
            compiled = torch.compile(model)
            with torch.inference_mode():
                compiled(x)
            return lambda: compiled(x)
        if mode == "compile+cuda-graph":  # inductor's CUDA-graph trees
            compiled = torch.compile(model, mode="reduce-overhead")
            with torch.inference_mode():
                for _ in range(3):
                    compiled(x)
            return lambda: compiled(x)
        # eager network captured in one CUDA graph, replayed on the same static input
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(3):
                model(x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            model(x)
        return graph.replay
    except NasscaleError:
        raise
    except Exception as err:  # compiler missing, op not capturable, ...: one line, not a trace
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NasscaleError(f"mode {mode!r} failed: {type(err).__name__}: {first}") from None


@contextlib.contextmanager
def torch_threads(threads: int):
    """Set torch's intra-op threads for a block of code, restoring them afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_guarded(fn: Callable[[], object], what: str) -> object:
    """Turn a torch failure (dtype or op unsupported on this device, out of memory) into a
    one-line error."""
    try:
        return fn()
    except NasscaleError:
        raise
    except (RuntimeError, NotImplementedError, TypeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NasscaleError(f"{what}: {type(err).__name__}: {first}") from None


# --- the measurement ----------------------------------------------------------------------

def measure(spec_or_name: "NetworkSpec | str", device: str = "cpu", threads: int = 1,
            batch: int = 1, resolution: int | None = None, dtype: str = "float32",
            channels_last: bool = False, compile: bool = False, cuda_graphs: bool = False,
            clock: str = "wall", allocator: str = "steady",
            policy: TimingPolicy = TimingPolicy(), settings: Settings | None = None
            ) -> LatencyRecord:
    """Measure a network's latency (a zoo name, a network YAML path or a spec).

    ``settings`` (a :class:`Settings`) replaces the individual keyword arguments when given.
    Returns a :class:`LatencyRecord`: p50/p90/min/spread in ms, runs, params, FLOPs, the key.
    """
    from nasscale.zoo import load

    spec = load(spec_or_name)
    if settings is None:
        settings = Settings(device, threads, dtype, batch,
                            "channels_last" if channels_last else "contiguous",
                            mode_of(compile, cuda_graphs), clock, allocator)
    key = settings.key()
    cost = network_cost(resolve(settings.timed_form(spec), resolution))  # of the form that runs
    what = f"measuring {spec.name} ({settings.device}, {settings.dtype})"
    import torch

    with torch_threads(settings.threads), torch.inference_mode():
        prepared = run_guarded(lambda: prepare(spec, settings, resolution, policy), what)

        def run(sw):
            prepared.forward()
            sw.lap()

        runs = run_guarded(lambda: time_runs(run, prepared.stopwatch(), policy), what)
    return LatencyRecord(name=spec.name, resolution=cost.network.resolution,
                         params=cost.params, flops=cost.flops,
                         stats=LatencyStats.of(runs.totals), key=key,
                         diagnostics=runs.diagnostics(), compile_s=prepared.compile_s)


# --- relative to a reference, interleaved ------------------------------------------------------

@dataclass(frozen=True)
class RatioRecord:
    """A network's latency as a multiple of a reference network's, timed in alternating rounds
    in one process (``measure_ratio``)."""

    name: str
    reference: str
    ratio: float  # median over the pairs of rounds
    pair_ratios: tuple[float, ...]
    candidate_ms: float  # p50 over all the candidate's kept runs
    reference_ms: float  # ... and the reference's, in the same time window
    key: MeasurementKey
    other_load: float | None = None  # the most cores other processes used in a round

    @property
    def spread(self) -> float:
        """(max - min) / median of the pair ratios."""
        r = sorted(self.pair_ratios)
        return (r[-1] - r[0]) / self.ratio if self.ratio > 0 else float("nan")


class PreparedCache:
    """Prepared (built, folded, warm) networks by name, so that a reference timed against many
    candidates is built once."""

    def __init__(self, settings: Settings, policy: TimingPolicy):
        self.settings, self.policy = settings, policy
        self._items: dict[str, Prepared] = {}

    def get(self, spec: NetworkSpec, keep: bool = False) -> "Prepared":
        if spec.name in self._items:
            return self._items[spec.name]
        what = f"measuring {spec.name} ({self.settings.device}, {self.settings.dtype})"
        prepared = run_guarded(lambda: prepare(spec, self.settings, None, self.policy), what)
        if keep:
            self._items[spec.name] = prepared
        return prepared


def measure_ratio(spec_or_name: "NetworkSpec | str", reference: "NetworkSpec | str",
                  settings: Settings | None = None, policy: TimingPolicy = TimingPolicy(),
                  pairs: int = 4, cache: PreparedCache | None = None) -> RatioRecord:
    """Latency of a network divided by a reference's, measured interleaved: rounds alternate
    candidate, reference, reference, candidate, ... (ABBA, so a linear drift of the machine's
    speed cancels), each pair of neighbouring rounds gives one ratio, and the median of the
    ``pairs`` ratios is the result.  A slow or fast stretch of the machine (another process, a
    frequency change, the hypervisor) scales both halves of a pair alike, so the ratio repeats
    where absolute milliseconds do not.  A relative budget ("latency <= 0.8x
    mobilenet_v3_large") asks exactly this question."""
    from nasscale.zoo import load

    spec, ref = load(spec_or_name), load(reference)
    settings = settings or Settings()
    key = settings.key()
    cache = cache or PreparedCache(settings, policy)
    one_round = dataclasses.replace(policy, rounds=1, max_rounds=1)
    warm_round = dataclasses.replace(one_round, warmup_min=1, warmup_max_s=0.0)
    import numpy as np
    import torch

    what = f"measuring {spec.name} against {ref.name}"
    with torch_threads(settings.threads), torch.inference_mode():
        a = cache.get(spec)
        b = cache.get(ref, keep=True)

        warm: set[int] = set()

        def timed(p: "Prepared") -> list[float]:
            """One round; the first round of each network warms it up until settled."""
            def run(sw):
                p.forward()
                sw.lap()

            rounds = warm_round if id(p) in warm or getattr(p, "_warm", False) else one_round
            warm.add(id(p))
            runs = run_guarded(lambda: time_runs(run, p.stopwatch(), rounds), what)
            if runs.other_load is not None:
                loads.append(runs.other_load)
            return runs.totals

        ratios, ta, tb, loads = [], [], [], []
        for i in range(max(1, pairs)):
            order = (a, b) if i % 2 == 0 else (b, a)
            first, second = timed(order[0]), timed(order[1])
            ra, rb = (first, second) if order[0] is a else (second, first)
            ratios.append(float(np.median(ra) / np.median(rb)))
            ta += ra
            tb += rb
        b._warm = True  # the cached reference stays warm for the next candidate
    return RatioRecord(name=spec.name, reference=ref.name, ratio=float(np.median(ratios)),
                       pair_ratios=tuple(ratios), candidate_ms=float(np.median(ta)) * 1e3,
                       reference_ms=float(np.median(tb)) * 1e3, key=key,
                       other_load=max(loads) if loads else None)
