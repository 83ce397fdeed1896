"""Per-block latency in a deployment runtime, read from the runtime's own profiler.

A lookup table needs each block's time *inside* a carrier network (:mod:`nasscale.latency.
build`).  In PyTorch the carrier's blocks are called one by one; a runtime runs the whole graph
in one call, so its profiler says where the time went: ONNX Runtime's node profiling, OpenVINO's
performance counters.  Each profiled node is charged to the block whose module path its name
carries (the exporter names nodes by module scope: ``/stages/stages.2/stages.2.1/.../Conv`` is
block ``stages.2.1``).  Nodes whose names carry no block:

- nodes the runtime creates (layout reorders, a Conv+activation fusion renamed, quantisation
  nodes of an input) and nodes fused *across* a block boundary are charged to the block that
  ran just before them in execution order (the first block when nothing ran before): their cost
  is real and lands next to where it happens, never dropped;
- the runtime's own per-run work outside kernels (ONNX Runtime's ``model_run`` minus its
  nodes' kernel times: the executor's steps between kernels, and what the profiler itself adds
  there) is the carrier's overhead, as the framework's is in PyTorch.  Charged instead to the
  node before it (a node's share running to the next node's start), it made an int8 table
  predict its test networks 7 % high at the median (83 % within ±10 %, against 100 % and
  -2.7 % as overhead): the profiler's per-node cost landed on the blocks.

Profiling slows each node down a little, so the per-block sums are scaled by one factor so that
blocks plus overhead equal the carrier's end-to-end latency timed *without* the profiler.
ExecuTorch's XNNPACK delegate runs the network as one call and its per-operator ETDump needs a
devtools build of the runtime, so ExecuTorch tables are not offered (measure end to end).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nasscale.errors import NasscaleError

_UNIT = re.compile(r"(?:^|/)(stem\.\d+|stages\.\d+\.\d+|head_blocks\.\d+|head)(?=/|$)")


def unit_path(unit) -> str:
    """The module path of a resolved unit in a built network (``stages.2.1``, ``head``)."""
    section = getattr(unit, "section", None)
    if section is None:
        return "head"
    if section == "stage":
        return f"stages.{unit.stage}.{unit.repeat}"
    return f"{'stem' if section == 'stem' else 'head_blocks'}.{unit.repeat}"


def unit_of(node_name: str) -> str | None:
    """The block path a node's name carries, or None."""
    found = _UNIT.findall(node_name)
    return found[-1] if found else None


@dataclass(frozen=True)
class Profile:
    """One profiled run: (node name, ms) in execution order, and the run's total in ms."""

    nodes: list[tuple[str, float]]
    total_ms: float


def charge(profile: Profile, paths: list[str]) -> list[float]:
    """Milliseconds per unit (``paths`` in chain order) of one run (see the module doc)."""
    index = {p: i for i, p in enumerate(paths)}
    out = [0.0] * len(paths)
    current = 0
    for name, ms in profile.nodes:
        path = unit_of(name)
        if path in index:
            current = index[path]
        out[current] += ms
    return out


def per_unit(profiles: list[Profile], paths: list[str], end_to_end_ms: float
             ) -> tuple[list[float], float]:
    """(ms per unit, overhead ms), scaled to the unprofiled end-to-end time: median over runs of
    each unit's share of the profiled total."""
    if not profiles:
        raise NasscaleError("profile: the runtime's profiler returned no runs")
    charged = np.asarray([charge(p, paths) for p in profiles])
    totals = np.asarray([max(p.total_ms, sum(ms for _, ms in p.nodes)) for p in profiles])
    shares = np.median(charged / totals[:, None], axis=0)
    units = [float(s * end_to_end_ms) for s in shares]
    return units, float(end_to_end_ms - sum(units))


# --- the runtimes' profilers -------------------------------------------------------------------

def onnxruntime_profiles(path: Path, example, threads: int, runs: int) -> list[Profile]:
    """ONNX Runtime's node profiling of ``runs`` runs (after 3 unprofiled-in-effect warm-ups)."""
    from nasscale.latency.runtimes.onnxrt import session

    sess = session(path, threads, profile=True)
    feed = {sess.get_inputs()[0].name: example}
    for _ in range(3 + runs):
        sess.run(None, feed)
    trace = Path(sess.end_profiling())
    try:
        events = json.loads(trace.read_text())
    finally:
        trace.unlink(missing_ok=True)
    model_runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    nodes = sorted((e for e in events if e.get("cat") == "Node"
                    and str(e.get("name", "")).endswith("_kernel_time")), key=lambda e: e["ts"])
    out = []
    for run in model_runs[3:]:
        start, end = run["ts"], run["ts"] + run["dur"]
        inside = [(e["args"].get("node_name") or e["name"][:-len("_kernel_time")],
                   e["dur"] / 1e3) for e in nodes if start <= e["ts"] <= end]
        out.append(Profile(inside, run["dur"] / 1e3))
    return out


def openvino_profiles(path: Path, example, threads: int, runs: int) -> list[Profile]:
    """OpenVINO's performance counters of ``runs`` inferences (after 3 warm-ups)."""
    from nasscale.latency.runtimes.openvino_rt import compiled

    request = compiled(path, threads, profile=True).create_infer_request()
    out = []
    for i in range(3 + runs):
        request.infer({0: example})
        if i < 3:
            continue
        nodes = [(p.node_name, p.real_time.total_seconds() * 1e3)
                 for p in request.profiling_info if p.real_time.total_seconds() > 0]
        out.append(Profile(nodes, float(request.latency)))
    return out


PROFILERS = {"onnxruntime": onnxruntime_profiles, "openvino": openvino_profiles}


def profiles(runtime: str, path: Path, example, threads: int, runs: int = 30) -> list[Profile]:
    if runtime not in PROFILERS:
        raise NasscaleError(f"runtime {runtime}: no per-block profile (its XNNPACK delegate runs "
                            "the network as one call), so no lookup table; use latency source "
                            "measure, or runtime onnxruntime or openvino")
    return PROFILERS[runtime](path, example, threads, runs)
