"""The measurement key: everything a latency depends on besides the network.

Two latencies may be compared, summed or used as a budget only when their keys are equal.  The key
names the device (``cpu``/``cuda``) and its model (``/proc/cpuinfo``'s model name, or the GPU's
name), the CPU's vector ISA as torch sees it, the torch version, the intra-op thread count, the
dtype, the batch size, the memory format, the execution mode (``eager``, ``compile``,
``cuda-graph``, ``compile+cuda-graph``), the clock the runs were timed with (``wall``, or the
calling thread's ``cpu`` time), the memory allocator (see :func:`setup_allocator`), and what ran
the network: the runtime (``torch``, ``onnxruntime``, ``openvino``, ``executorch``: see
:mod:`nasscale.latency.runtimes`), its version, its execution provider or device plugin, and
the quantisation (``none``, ``int8``), and the form of re-parameterisable networks that ran
(``deploy``, the fused form every runtime ships, or ``train``, with its branches: MobileOne,
RepViT, FastViT; a network without such blocks is one form).  A key written before runtimes
were recorded reads as PyTorch's (``torch``, the key's torch version, ``aten``/``cuda``,
``none``); one written before forms were recorded reads as ``deploy`` (its networks had no
re-parameterisable blocks).

The input resolution is *not* part of the key: a network record states its resolution beside the
key, and a latency table stores one entry per block *input shape*, so one table serves every
resolution.
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import os
import platform
from dataclasses import dataclass

from nasscale.errors import NasscaleError, field_error, one_of

DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")
MEMORY_FORMATS = ("contiguous", "channels_last")
MODES = ("eager", "compile", "cuda-graph", "compile+cuda-graph")
CLOCKS = ("wall", "cpu")
ALLOCATORS = ("steady", "default")
#: which form of a re-parameterisable network is timed: the fused one it deploys in, or the
#: branched one it trains in
FORMS = ("deploy", "train")
#: the key's fields that say what ran the network (absent from keys of older files)
RUNTIME_FIELDS = ("runtime", "runtime_version", "provider", "quantize")
#: The largest batch a measurement takes: throughput benchmarks use up to about 1,024, and
#: 4,096 images of 3 x 224 x 224 in float32 are already 2.5 GB of input alone.
MAX_BATCH = 4096


@dataclass(frozen=True)
class MeasurementKey:
    """Where and how a latency was measured (see the module docstring)."""

    device: str
    device_name: str
    capability: str  # CPU: torch's vector ISA (AVX512, AVX2, ...); CUDA: compute capability
    torch: str
    threads: int
    dtype: str
    batch: int
    memory_format: str
    mode: str
    clock: str
    allocator: str
    runtime: str = "torch"
    runtime_version: str = ""
    provider: str = "aten"
    quantize: str = "none"
    form: str = "deploy"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "key") -> "MeasurementKey":
        names = [f.name for f in dataclasses.fields(cls)]
        if isinstance(data, dict) and not set(RUNTIME_FIELDS) & set(data):  # an older key
            data = {**data, "runtime": "torch", "runtime_version": data.get("torch", ""),
                    "provider": "cuda" if data.get("device") == "cuda" else "aten",
                    "quantize": "none"}
        if isinstance(data, dict) and "form" not in data:  # before forms were recorded
            data = {**data, "form": "deploy"}
        if not isinstance(data, dict) or sorted(data) != sorted(names):
            raise NasscaleError(f"{where}: must be a mapping with exactly the fields "
                                f"{', '.join(names)}")
        return cls(**data)

    def differences(self, other: "MeasurementKey") -> list[str]:
        """``field: ours vs theirs`` for every field that differs."""
        return [f"{f.name}: {getattr(self, f.name)!r} vs {getattr(other, f.name)!r}"
                for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(other, f.name)]

    def describe(self) -> str:
        """One line for tables: ``cpu (Intel Xeon, AVX512) · torch 2.13.0 · 1 thread · ...``."""
        threads = f"{self.threads} thread" + ("s" if self.threads != 1 else "")
        runtime = () if self.runtime == "torch" else (
            f"{self.runtime} {self.runtime_version} ({self.provider})"
            + (f" {self.quantize}" if self.quantize != "none" else ""),)
        form = ("train form (unfused)",) if self.form == "train" else ()
        return " · ".join((f"{self.device} ({self.device_name}, {self.capability})",
                           *runtime, *form, f"torch {self.torch}", threads, self.dtype,
                           f"batch {self.batch}", self.memory_format, self.mode,
                           f"{self.clock} clock", f"{self.allocator} allocator"))


# --- the machine ------------------------------------------------------------------------------

def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@functools.cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


@functools.cache
def _steady_glibc() -> bool:
    """Stop glibc from returning freed memory to the OS between forward passes.

    With its defaults, glibc serves large tensors with ``mmap`` and trims the heap after frees,
    so every forward pass page-faults its activations back in: on the development machine
    4,500 page faults and ~6 ms of kernel time per EfficientNet-B0 forward (20 % of its latency),
    and how many depends on what the process ran before.  Raising the mmap and trim thresholds
    makes the steady state fault-free, as jemalloc/tcmalloc (PyTorch's tuning guide) or a
    serving runtime's arena would.  This changes the process's malloc settings for good.
    """
    if platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok_mmap = libc.mallopt(m_mmap_threshold, 1 << 30)
    ok_trim = libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    return bool(ok_mmap and ok_trim)


def setup_allocator(allocator: str) -> str:
    """Prepare the process's allocator and return its name for the key.

    ``steady``: a preloaded jemalloc/tcmalloc as is, else glibc with raised mmap/trim thresholds
    (``glibc-steady``); ``default``: whatever the process has (``glibc-default``).
    """
    if allocator not in ALLOCATORS:
        raise field_error("allocator", one_of(ALLOCATORS), allocator)
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if name in preload:
            return name
    libc = "glibc" if platform.libc_ver()[0] == "glibc" else "system"
    if allocator == "steady":
        return f"{libc}-steady" if libc == "glibc" and _steady_glibc() else f"{libc}-default"
    if libc == "glibc" and _steady_glibc.cache_info().currsize:
        return "glibc-steady"  # set earlier in this process: it cannot be undone
    return f"{libc}-default"


def check_settings(device: str, threads: int, dtype: str, batch: int, memory_format: str,
                   mode: str, clock: str, runtime: str = "torch", quantize: str = "none",
                   form: str = "deploy") -> None:
    """Validate measurement settings with one-line messages naming the field."""
    from nasscale.latency import runtimes

    if device not in DEVICES:
        raise field_error("device", one_of(DEVICES), device)
    if dtype not in DTYPES:
        raise field_error("dtype", one_of(DTYPES), dtype)
    if memory_format not in MEMORY_FORMATS:
        raise field_error("memory_format", one_of(MEMORY_FORMATS), memory_format)
    if mode not in MODES:
        raise field_error("mode", one_of(MODES), mode)
    if clock not in CLOCKS:
        raise field_error("clock", one_of(CLOCKS), clock)
    if form not in FORMS:
        raise field_error("form", one_of(FORMS), form)
    for name, value in (("threads", threads), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise field_error(name, "an integer >= 1", value)
    if batch > MAX_BATCH:
        raise field_error("batch", f"an integer >= 1 and <= {MAX_BATCH:,}", batch)
    cores = available_cores()
    if threads > cores:
        raise field_error("threads", f"at most the {cores} cores this process may use", threads)
    if device == "cpu" and "cuda-graph" in mode:
        raise field_error("mode", "eager or compile on the CPU (CUDA graphs need --device cuda)",
                          mode)
    if clock == "cpu" and (device != "cpu" or threads != 1):
        raise field_error("clock", "'wall', or 'cpu' only on the CPU with 1 thread (thread CPU "
                          "time misses the other threads' and the GPU's work)", clock)
    runtimes.check(runtime, quantize, device, dtype, memory_format, mode)


def current_key(device: str = "cpu", threads: int = 1, dtype: str = "float32", batch: int = 1,
                memory_format: str = "contiguous", mode: str = "eager", clock: str = "wall",
                allocator: str = "steady", runtime: str = "torch", quantize: str = "none",
                form: str = "deploy") -> MeasurementKey:
    """The key of a measurement with these settings on this machine (validated; sets up the
    allocator).  ``device='cuda'`` without CUDA, or a runtime whose package is missing, is a
    one-line error."""
    check_settings(device, threads, dtype, batch, memory_format, mode, clock, runtime, quantize,
                   form)
    import torch

    from nasscale.latency import runtimes

    info = runtimes.get(runtime)
    if device == "cuda":
        if not torch.cuda.is_available():
            raise NasscaleError("device: CUDA is not available here (torch "
                                f"{torch.__version__}, no GPU visible); use --device cpu")
        name = torch.cuda.get_device_name()
        major, minor = torch.cuda.get_device_capability()
        capability = f"sm_{major}{minor}"
    else:
        name = cpu_model()
        capability = torch.backends.cpu.get_cpu_capability()
    return MeasurementKey(device=device, device_name=name, capability=capability,
                          torch=torch.__version__, threads=threads, dtype=dtype, batch=batch,
                          memory_format=memory_format, mode=mode, clock=clock,
                          allocator=setup_allocator(allocator), runtime=runtime,
                          runtime_version=info.version(), provider=info.provider(device),
                          quantize=quantize, form=form)
