"""Deployment runtimes: where a network is timed besides eager PyTorch.

A latency depends on what runs the network.  ``--runtime`` (and a study's ``latency: {runtime:
...}``) picks one of :data:`CHOICES`:

- ``eager`` and ``compile``: PyTorch itself (the key's ``runtime`` is ``torch``; ``mode`` says
  eager or compiled);
- ``onnxruntime``: the ONNX file ``nasscale export --onnx`` writes, in ONNX Runtime's CPU
  execution provider (the ``onnxruntime`` extra);
- ``openvino``: the same ONNX file read by OpenVINO's CPU plugin (the ``openvino`` extra);
- ``executorch``: the ``.pte`` program ``nasscale export --pte`` writes, lowered to XNNPACK (the
  ``executorch`` extra).

``quantize: int8`` times the statically quantised form (:mod:`.quantize`).  The measurement key
records the runtime, its version, its execution provider or device plugin and the quantisation,
so latencies from different runtimes never compare.

The protocol (every entry of :data:`REGISTRY` implements it; ``tests/test_runtimes.py`` is its
contract suite)::

    runtime.version() -> str          # the package's version; one-line error naming the extra
    runtime.provider(device) -> str   # execution provider / device plugin / backend
    runtime.load(path, example, settings) -> Callable[[], object]
        # load the artifact ``nasscale export`` wrote (ONNX or .pte; :mod:`.artifacts` writes
        # it) with ``settings.threads`` threads and return a function that runs it once on
        # ``example`` (a float32 NCHW numpy array)
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from nasscale.errors import NasscaleError, field_error, one_of

#: what ``--runtime`` accepts; ``eager``/``compile`` are PyTorch's modes
CHOICES = ("eager", "compile", "onnxruntime", "openvino", "executorch")
#: the key's ``runtime`` field
RUNTIMES = ("torch", "onnxruntime", "openvino", "executorch")
QUANTIZATIONS = ("none", "int8")


@dataclass(frozen=True)
class RuntimeInfo:
    """One runtime: its key name, the package it needs, the pip extra that installs it, what it
    can quantise to, and the module implementing the protocol above."""

    name: str
    package: str  # the import name of what it needs
    extra: str  # pip install 'nasscale[EXTRA]'
    quantizations: tuple[str, ...]
    implementation: str  # module path, imported on first use
    artifact: str  # what it times: "module", "onnx" or "pte"

    def module(self):
        return importlib.import_module(self.implementation)

    def require(self):
        """Import the runtime's package, or a one-line error naming the extra."""
        try:
            return importlib.import_module(self.package)
        except ImportError:
            raise NasscaleError(f"runtime {self.name}: needs the {self.package} package: pip "
                                f"install 'nasscale[{self.extra}]'") from None

    def version(self) -> str:
        if self.name == "torch":
            import torch

            return torch.__version__
        return self.module().version()

    def provider(self, device: str) -> str:
        if self.name == "torch":
            return "cuda" if device == "cuda" else "aten"
        return self.module().provider(device)


REGISTRY: dict[str, RuntimeInfo] = {r.name: r for r in (
    RuntimeInfo("torch", "torch", "", ("none",), "nasscale.latency.measure", "module"),
    RuntimeInfo("onnxruntime", "onnxruntime", "onnxruntime", ("none", "int8"),
                "nasscale.latency.runtimes.onnxrt", "onnx"),
    RuntimeInfo("openvino", "openvino", "openvino", ("none", "int8"),
                "nasscale.latency.runtimes.openvino_rt", "onnx"),
    RuntimeInfo("executorch", "executorch", "executorch", ("none", "int8"),
                "nasscale.latency.runtimes.executorch_rt", "pte"),
)}


def get(name: str) -> RuntimeInfo:
    if name not in REGISTRY:
        raise field_error("runtime", one_of(RUNTIMES), name)
    return REGISTRY[name]


def split_choice(choice: str) -> tuple[str, str | None]:
    """``--runtime`` value -> (key runtime, torch mode or None): ``compile`` is PyTorch's
    compiled mode, ``eager`` its eager mode, any other a deployment runtime."""
    if choice not in CHOICES:
        raise field_error("runtime", one_of(CHOICES), choice)
    if choice in ("eager", "compile"):
        return "torch", choice
    return choice, None


def check(runtime: str, quantize: str, device: str, dtype: str, memory_format: str,
          mode: str) -> None:
    """One-line errors for settings a runtime cannot honour, naming the field."""
    info = get(runtime)
    if quantize not in QUANTIZATIONS:
        raise field_error("quantize", one_of(QUANTIZATIONS), quantize)
    if quantize not in info.quantizations:
        raise field_error("quantize", f"{' or '.join(info.quantizations)} with runtime "
                          f"{runtime} (int8 needs a deployment runtime: onnxruntime, openvino "
                          "or executorch)", quantize)
    if runtime == "torch":
        return
    fixed = (("device", device, "cpu", "its CPU path is what nasscale times"),
             ("dtype", dtype, "float32", "use quantize: int8 for its integer form"),
             ("memory_format", memory_format, "contiguous", "the runtime chooses its own layout"),
             ("mode", mode, "eager", "torch.compile is a PyTorch mode; pick --runtime compile "
              "for it"))
    for field, value, want, why in fixed:
        if value != want:
            raise field_error(field, f"{want} with runtime {runtime} ({why})", value)


__all__ = ["CHOICES", "QUANTIZATIONS", "REGISTRY", "RUNTIMES", "RuntimeInfo", "check", "get",
           "split_choice"]
