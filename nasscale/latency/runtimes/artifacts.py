"""The files a deployment runtime runs, written by one set of functions for both
``nasscale export`` and latency measurement, so what is timed is what is shipped.

- :func:`write_onnx`: torch's TorchScript-based ONNX exporter (``dynamo=False``: it needs only
  the ``onnx`` package), input ``image`` and output ``logits`` with a dynamic batch axis;
- :func:`write_pte`: ``torch.export`` at the example's (fixed) batch, optionally quantised by
  XNNPACK's quantiser, lowered with the XNNPACK partitioner; returns how many operators run in
  ExecuTorch's portable kernels instead;
- :func:`write_artifact`: a spec's artifact for a runtime, with the seeded random weights
  ``nasscale export`` gives a network without weights (latency does not depend on their values),
  int8 calibrated on seeded noise (:mod:`.quantize`).
"""
from __future__ import annotations

import warnings
from pathlib import Path

from nasscale.errors import NasscaleError
from nasscale.latency.runtimes import get


def write_onnx(model, example, path: Path, opset: int = 17) -> None:
    import torch

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})


def write_pte(model, example, path: Path, quantize: str = "none",
              batches: list | None = None) -> int:
    """Write the program; raise the lowering's own exception when it fails."""
    import torch

    get("executorch").require()
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    from nasscale.latency.runtimes.quantize import pt2e_int8

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = pt2e_int8(model, example, batches or []) if quantize == "int8" else model
        with torch.no_grad():
            program = torch.export.export(module, (example,))
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        graph = edge.exported_program().graph_module.graph
        portable = sum(1 for n in graph.nodes if n.op == "call_function"
                       and "executorch_call_delegate" not in str(n.target)
                       and "getitem" not in str(n.target))
        Path(path).write_bytes(edge.to_executorch().buffer)
    return portable


def write_artifact(spec, resolution: int, settings, folder: Path) -> Path:
    """The artifact of ``spec`` at ``resolution`` for ``settings.runtime`` (module doc)."""
    import torch

    from nasscale import zoo
    from nasscale.latency.runtimes.quantize import noise_batches, onnx_int8

    spec = spec.replace(resolution=resolution) if resolution != spec.resolution else spec
    torch.manual_seed(0)
    model = zoo.build(spec, resolution).eval()
    example = torch.randn(settings.batch, spec.in_channels, resolution, resolution)
    int8 = settings.quantize == "int8"
    batches = noise_batches(spec.in_channels, resolution) if int8 else None
    what = f"{spec.name} (runtime {settings.runtime}, quantize {settings.quantize})"
    try:
        if get(settings.runtime).artifact == "pte":
            path = folder / "network.pte"
            write_pte(model, example, path, settings.quantize, batches)
            return path
        path = folder / "network.onnx"
        write_onnx(model, example, folder / "network.fp32.onnx" if int8 else path)
        if int8:
            onnx_int8(folder / "network.fp32.onnx", path, batches)
        return path
    except NasscaleError:
        raise
    except Exception as err:  # an operator the exporter or the lowering cannot take
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise NasscaleError(f"{what}: cannot be exported for the runtime: "
                            f"{type(err).__name__}: {first}") from None
