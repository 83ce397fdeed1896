"""OpenVINO, CPU plugin: the same ONNX file ONNX Runtime runs, read by OpenVINO's ONNX frontend.

Compiled for latency (``PERFORMANCE_HINT: LATENCY``, one stream), ``INFERENCE_NUM_THREADS`` =
the key's threads, and ``INFERENCE_PRECISION_HINT: f32``: on a CPU with bf16 or fp16 units the
plugin would otherwise run an fp32 network in lower precision.  An int8 (QDQ) file runs in int8
(:mod:`nasscale.latency.runtimes.quantize`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from nasscale.latency.runtimes import get


def version() -> str:
    ov = get("openvino").require()
    return ov.get_version().split("-")[0]


def provider(device: str) -> str:
    return "CPU plugin"


def compiled(path: Path, threads: int, profile: bool = False):
    ov = get("openvino").require()
    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": threads,
              "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": profile}
    return core.compile_model(core.read_model(str(path)), "CPU", config)


def load(path: Path, example, settings) -> Callable[[], object]:
    request = compiled(path, settings.threads).create_infer_request()
    request.infer({0: example})
    return lambda: request.infer({0: example}, share_inputs=True)
