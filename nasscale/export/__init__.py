"""Export: a network to ONNX (:mod:`.to_onnx`) or an ExecuTorch program (:mod:`.to_pte`),
fp32 or int8 (:mod:`.calibration`)."""
from nasscale.export.accuracy import quantized_accuracy
from nasscale.export.calibration import calibration_batches, held_out_top1
from nasscale.export.to_onnx import (
    TOLERANCE,
    Exported,
    check_fits_in_memory,
    compare,
    deployable,
    export_onnx,
    network_and_weights,
    opset_range,
)
from nasscale.export.to_pte import export_pte

__all__ = ["TOLERANCE", "Exported", "calibration_batches", "check_fits_in_memory", "compare",
           "deployable", "export_onnx", "export_pte", "held_out_top1", "network_and_weights",
           "opset_range", "quantized_accuracy"]
