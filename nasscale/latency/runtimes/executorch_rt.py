"""ExecuTorch with the XNNPACK backend: the ``.pte`` program ``nasscale export --pte`` writes,
run by ExecuTorch's Python runtime.  XNNPACK's thread pool is set to the key's threads."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from nasscale.latency.runtimes import get


def version() -> str:
    get("executorch").require()
    from importlib.metadata import version as dist_version

    return dist_version("executorch")


def provider(device: str) -> str:
    return "XNNPACK"


def set_threads(threads: int) -> None:
    from executorch.extension.pybindings import portable_lib

    if portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)


def load(path: Path, example, settings) -> Callable[[], object]:
    import torch
    from executorch.runtime import Runtime

    set_threads(settings.threads)
    method = Runtime.get().load_program(str(path)).load_method("forward")
    inputs = [torch.from_numpy(example)]
    method.execute(inputs)
    return lambda: method.execute(inputs)
