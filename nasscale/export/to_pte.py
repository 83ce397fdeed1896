"""Export a network to an ExecuTorch program (the ``executorch`` extra):
``nasscale export NETWORK --pte FILE [--quantize int8]``.  The program is written by
:func:`nasscale.latency.runtimes.artifacts.write_pte`, which latency measurement uses too.

The network and its input convention are those of the ONNX export (:mod:`nasscale.export`);
the program is ``torch.export``-ed for a fixed batch (default 1), optionally quantised by
XNNPACK's quantiser, lowered with the XNNPACK partitioner and written as ``.pte``.  Operators
XNNPACK does not take run in ExecuTorch's portable kernels; how many did is recorded.  An fp32
program is run once in ExecuTorch's runtime and compared with the PyTorch module, with the ONNX
export's tolerance.
"""
from __future__ import annotations

from pathlib import Path

from nasscale.errors import NasscaleError
from nasscale.export.calibration import calibration_batches
from nasscale.export.to_onnx import TOLERANCE, Exported, _metadata, deployable
from nasscale.latency.runtimes.artifacts import write_pte


def export_pte(spec_or_name, path: str | Path, resolution: int | None = None, batch: int = 1,
               weights: str | None = None, normalise: bool = True, quantize: str = "none",
               calibration: str | None = None, check: bool = True) -> Exported:
    """Write the ``.pte`` program (see the module doc); ``Exported.meta`` says what ran where."""
    import torch

    from nasscale.latency import runtime_info

    runtime_info("executorch").require()
    if quantize not in ("none", "int8"):
        raise NasscaleError(f"--quantize: must be one of none, int8, got {quantize!r}")
    spec, model, meta, norm = deployable(spec_or_name, weights, resolution, normalise)
    res = spec.resolution
    from nasscale.reports import output_file

    path = output_file(path, "--pte")
    example = torch.randn(batch, spec.in_channels, res, res,
                          generator=torch.Generator().manual_seed(0))
    out = Exported(path, spec.name, res, None, str(weights or spec_or_name)
                   if meta or weights else None, norm)
    if isinstance(meta.get("classes"), list):
        out.classes = [str(c) for c in meta["classes"]]
    out.meta = _metadata(out, spec, meta)
    batches = None
    if quantize == "int8":
        batches, what = calibration_batches(calibration, spec.in_channels, res, norm)
        out.meta["nasscale.quantization"] = ("int8 (XNNPACK quantiser, symmetric, per "
                                             f"channel), calibrated on {what}")
    try:
        portable = write_pte(model, example, Path(path), quantize, batches)
    except OSError as err:
        raise NasscaleError(f"--pte {path}: cannot write: {err.strerror or err}") from None
    except NasscaleError:
        raise
    except Exception as err:  # an operator torch.export or the lowering cannot take
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise NasscaleError(f"--pte: {spec.name} cannot be lowered to ExecuTorch/XNNPACK: "
                            f"{type(err).__name__}: {first}") from None
    out.meta["nasscale.portable_ops"] = str(portable)
    if check and quantize == "none":
        out.max_error, out.runtime = _compare(path, model, example)
    return out


def _compare(path: Path, model, example) -> tuple[float, str]:
    import torch
    from executorch.runtime import Runtime

    from nasscale.latency import runtime_info

    with torch.inference_mode():
        want = model(example)
    got = Runtime.get().load_program(str(path)).load_method("forward").execute([example])[0]
    err = float((got - want).abs().max())
    if err > TOLERANCE * max(1.0, float(want.abs().max())):
        raise NasscaleError(f"--pte {path}: the program's output differs from the PyTorch "
                            f"module's by {err:.3g} (tolerance {TOLERANCE:g} x the largest "
                            "logit)")
    return err, f"executorch {runtime_info('executorch').version()}"
