"""Latency: measurement on CPU and CUDA, and a per-block lookup table that predicts it.

::

    rec = measure("mobilenet_v3_large", device="cpu", threads=1)   # -> LatencyRecord
    rec.latency_ms, rec.stats.p90, rec.key                          # p50, p90, measurement key

    build_table(["around:mobilenet_v3_large"], "lut.json")          # (sources may be specs/spaces)
    table = LatencyTable.load("lut.json")
    pred = table.predict(nasscale.resolve(spec))                     # -> Prediction
    pred.total_ms, pred.units, pred.extrapolated

Torch is imported only when something is measured; the table and the predictor need numpy only.
"""
from nasscale.latency.build import time_carrier
from nasscale.latency.key import (
    ALLOCATORS,
    CLOCKS,
    DEVICES,
    DTYPES,
    MAX_BATCH,
    MeasurementKey,
    available_cores,
    current_key,
)
from nasscale.latency.measure import LatencyRecord, Settings, measure
from nasscale.latency.report import prediction_rows, record_lines, table_summary, warnings_for
from nasscale.latency.runtimes import CHOICES as RUNTIME_CHOICES, QUANTIZATIONS, get as runtime_info
from nasscale.latency.source import GrowingTable, LatencySource, Measured, Predicted
from nasscale.latency.space import Neighbourhood, around
from nasscale.latency.table import LatencyTable, Prediction, UnitPrediction, unit_key
from nasscale.latency.timing import MAX_ROUND_S, LatencyStats, TimingPolicy


def build_table(sources, out, settings=None, **options):
    """Measure every unit of ``sources`` (``around:NAME`` strings, names, YAML paths, specs or
    spaces; ``nasscale.search.sources.parse_source`` reads search spaces) missing from the table
    at ``out``; see :func:`nasscale.latency.build.build_table`."""
    from nasscale.latency.build import build_table as _build, parse_source

    parsed = [parse_source(s) if isinstance(s, str) else s for s in sources]
    return _build(parsed, out, settings or Settings(), **options)


__all__ = [
    "ALLOCATORS", "CLOCKS", "DEVICES", "DTYPES", "MAX_BATCH", "MAX_ROUND_S", "QUANTIZATIONS",
    "RUNTIME_CHOICES", "available_cores", "runtime_info",
    "prediction_rows", "record_lines",
    "table_summary", "time_carrier", "warnings_for", "GrowingTable", "LatencySource", "Measured",
    "Predicted", "LatencyRecord", "LatencyStats", "LatencyTable", "MeasurementKey", "Neighbourhood",
    "Prediction", "Settings", "TimingPolicy", "UnitPrediction", "around", "build_table",
    "current_key", "measure", "unit_key",
]
