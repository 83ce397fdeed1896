"""Weights in and out of nasscale modules: torchvision, timm and nasscale state dicts
(``nasscale.weights.convert``; the names each source uses: ``nasscale.weights.layouts``)."""
from nasscale.weights.convert import (
    ALL_SOURCES,
    WeightsError,
    convert_to_nasscale,
    detect_source,
    export_weights,
    load_weights,
    reference_keys,
    save_weights,
    spec_for,
)

__all__ = ["ALL_SOURCES", "WeightsError", "convert_to_nasscale", "detect_source",
           "export_weights", "load_weights", "reference_keys", "save_weights", "spec_for"]
