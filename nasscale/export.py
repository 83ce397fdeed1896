"""Export a network to ONNX (the ``onnx`` extra): ``nasscale export ARCH --onnx FILE``."""
from __future__ import annotations

import warnings
from pathlib import Path

from nasscale.errors import NasscaleError


def export_onnx(spec_or_name, path: str | Path, resolution: int | None = None,
                opset: int = 17, batch: int = 1, check: bool = True) -> Path:
    """Write the network with random (seeded) weights and a dynamic batch axis, then load it
    back with ``onnx.checker``.  Uses torch's TorchScript-based exporter (``dynamo=False``),
    which needs only the ``onnx`` package, not onnxscript."""
    try:
        import onnx
    except ImportError:
        raise NasscaleError("ONNX export needs the onnx package: pip install "
                            "'nasscale[onnx]'") from None
    import torch

    import nasscale

    spec = nasscale.load(spec_or_name)
    res = resolution or spec.resolution
    torch.manual_seed(0)
    model = nasscale.build(spec, res).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(batch, spec.in_channels, res, res)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    if check:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path
