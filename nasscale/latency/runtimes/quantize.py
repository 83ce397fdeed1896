"""Static int8 post-training quantisation, each runtime on its recommended path.

- ONNX Runtime (and OpenVINO, which reads the same file): ONNX Runtime's ``quantize_static`` in
  QDQ format after its ``quant_pre_process`` (shape inference and graph optimisation), int8
  weights per output channel, int8 activations, MinMax calibration.  OpenVINO runs a QDQ graph
  in int8 (its low-precision transformations turn each QuantizeLinear/DequantizeLinear pair into
  a FakeQuantize and fuse it into the integer kernels), so both runtimes time one file.
- ExecuTorch: XNNPACK's own quantiser (symmetric int8, per channel) through PT2E
  (``prepare_pt2e`` / ``convert_pt2e``) before lowering to XNNPACK.

Latency is timed on a form calibrated on seeded noise: the scales calibration picks change the
accuracy, not the speed.  ``nasscale export --quantize int8 --calibration DATA`` calibrates on
real images (:mod:`nasscale.export.calibration`).
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from nasscale.errors import NasscaleError

CALIBRATION_BATCH = 8
#: without data, one batch of noise: the ranges it gives are meaningless for accuracy and do
#: not change the speed, and ONNX Runtime's calibration costs seconds per batch at 224 px
NOISE_IMAGES = 8


def noise_batches(channels: int, resolution: int, pixels: bool = False,
                  images: int = NOISE_IMAGES) -> list:
    """Seeded calibration batches of noise (float32 NCHW numpy): uniform [0, 1] pixels when
    the graph normalises its input itself, else standard-normal."""
    import torch

    g = torch.Generator().manual_seed(0)
    shape = (images, channels, resolution, resolution)
    x = torch.rand(shape, generator=g) if pixels else torch.randn(shape, generator=g)
    return [x[i:i + CALIBRATION_BATCH].contiguous().numpy()
            for i in range(0, len(x), CALIBRATION_BATCH)]


@contextlib.contextmanager
def _quiet_logging():
    """ONNX Runtime's quantiser logs through the root logger (a warning per LayerNorm weight
    it quantises per tensor, a traceback when it falls back); its failures still raise."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def onnx_int8(fp32: Path, out: Path, batches: list, input_name: str = "image") -> Path:
    """Write the QDQ int8 form of the ONNX file ``fp32`` to ``out`` (see the module doc)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {input_name: batch}

    pre = out.with_name(out.stem + ".pre.onnx")
    try:
        with _quiet_logging():
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8)
    except Exception as err:  # a graph the quantiser cannot handle: one line, not a trace
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise NasscaleError(f"quantize int8: ONNX Runtime's quantiser failed on {fp32.name}: "
                            f"{type(err).__name__}: {first}") from None
    finally:
        pre.unlink(missing_ok=True)
    return out


def pt2e_int8(model, example, batches: list):
    """The XNNPACK-quantised (PT2E) form of ``model``, exported for ``example``."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(
        is_per_channel=True))
    graph = torch.export.export(model, (example,)).module()
    prepared = prepare_pt2e(graph, quantizer)
    for batch in batches:
        for i in range(len(batch)):  # the program is exported for batch 1
            prepared(torch.from_numpy(batch[i:i + 1]))
    return convert_pt2e(prepared)

