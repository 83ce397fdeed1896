"""ONNX Runtime, CPU execution provider: the ONNX file ``nasscale export --onnx`` writes.

The session runs with every graph optimisation on (``ORT_ENABLE_ALL``: BatchNorm folding,
Conv+activation and Conv+Add fusion, layout transformation to its blocked NCHWc kernels),
sequential execution, ``intra_op_num_threads`` = the key's threads, one inter-op thread, and
no spinning once a run ends (a spinning pool would steal the core from the next timing round).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from nasscale.latency.runtimes import get


def version() -> str:
    return get("onnxruntime").require().__version__


def provider(device: str) -> str:
    return "CPUExecutionProvider"


def session_options(ort, threads: int, profile: bool = False):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    opts.enable_profiling = profile
    return opts


def session(path: Path, threads: int, profile: bool = False):
    ort = get("onnxruntime").require()
    return ort.InferenceSession(str(path), session_options(ort, threads, profile),
                                providers=["CPUExecutionProvider"])


def load(path: Path, example, settings) -> Callable[[], object]:
    sess = session(path, settings.threads)
    name = sess.get_inputs()[0].name
    feed = {name: example}
    sess.run(None, feed)
    return lambda: sess.run(None, feed)
