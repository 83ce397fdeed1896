"""Export a network to ONNX (the ``onnx`` extra): ``nasscale export ARCH --onnx FILE``."""
from __future__ import annotations

import warnings
from pathlib import Path

from nasscale.errors import NasscaleError


def opset_range() -> tuple[int, int]:
    """The ONNX opsets torch's TorchScript-based exporter writes."""
    try:
        from torch.onnx import _constants as c

        return c.ONNX_MIN_OPSET, c.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    except (ImportError, AttributeError):  # a torch that moved them
        return 7, 20


def check_fits_in_memory(spec, factor: float = 1.5) -> None:
    """A network whose fp32 weights alone exceed this machine's memory is an error naming
    how much it needs, before torch's allocator fails."""
    import os

    from nasscale import zoo

    need = zoo.count(spec).params * 4 * factor
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > have:
        raise NasscaleError(f"{spec.name}: needs about {need / 1e9:.1f} GB for its weights, "
                            f"more than this machine's {have / 1e9:.1f} GB")


def export_onnx(spec_or_name, path: str | Path, resolution: int | None = None,
                opset: int = 17, batch: int = 1, check: bool = True) -> Path:
    """Write the network with random (seeded) weights and a dynamic batch axis, then load it
    back with ``onnx.checker``.  Uses torch's TorchScript-based exporter (``dynamo=False``),
    which needs only the ``onnx`` package, not onnxscript."""
    import torch

    low, high = opset_range()
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise NasscaleError(f"--opset: must be an ONNX opset from {low} to {high} (torch "
                            f"{torch.__version__}'s exporter), got {opset!r}")
    try:
        import onnx
    except ImportError:
        raise NasscaleError("ONNX export needs the onnx package: pip install "
                            "'nasscale[onnx]'") from None

    from nasscale import zoo

    spec = zoo.load(spec_or_name)
    res = resolution or spec.resolution
    check_fits_in_memory(spec)
    torch.manual_seed(0)
    try:
        model = zoo.build(spec, res).eval()
    except (RuntimeError, MemoryError) as err:  # the allocator refused
        raise NasscaleError(f"{spec.name}: cannot build it here: "
                            f"{str(err).splitlines()[0][:200]}") from None
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NasscaleError(f"--onnx {path}: cannot create its folder: "
                            f"{err.strerror or err}") from None
    example = torch.randn(batch, spec.in_channels, res, res)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    except torch.onnx.errors.OnnxExporterError as err:  # e.g. an operator newer than opset
        raise NasscaleError(f"--opset {opset}: {spec.name} cannot be exported at this opset: "
                            f"{str(err).splitlines()[0][:200]}") from None
    except OSError as err:
        raise NasscaleError(f"--onnx {path}: cannot write: {err.strerror or err}") from None
    if check:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path
