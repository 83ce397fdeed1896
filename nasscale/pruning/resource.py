"""Targets and the resources NetAdapt prunes against: FLOPs, params, latency.

``parse_target("latency=0.75x")`` reads a target: ``METRIC=BOUND`` where the bound is absolute
(``6ms``, ``300M``, ``3.5M``) or relative to the network being pruned (``0.75x``, ``75%``).

FLOPs (multiply-accumulates of conv, linear and attention matmuls; BN, activations, pooling and
element-wise ops not counted) and params are counted analytically.  Latency comes from a
per-block lookup table (``nasscale.latency``), completed as pruning goes: a candidate whose
blocks the table lacks is timed as a carrier network (every block in context, as ``lut build``
does), so each width the search looks at is measured once and then looked up.  Predictions are
calibrated to a measurement of the starting network (the table predicts within a few percent;
the calibration removes the constant part of that error), and the final network is measured.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nasscale.errors import NasscaleError, SpecError
from nasscale.specs import NetworkSpec
from nasscale.units import ALIASES, BASE_UNIT, METRICS, UNITS_HELP, parse_quantity

_TARGET = re.compile(r"^\s*([A-Za-z]+)\s*(?:=|<=|<)\s*(.+?)\s*$")
_FACTOR = re.compile(r"^(-?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(x|×|%)$")
TARGET_HELP = ("latency=0.75x, latency=6ms, flops=300M, flops=0.7x, params=3M or params=80% "
               "(a factor < 1 of the network being pruned, or an absolute bound: latency in "
               "ms/us/s, FLOPs and params with an optional K/M/G suffix)")


@dataclass(frozen=True)
class Target:
    """``metric`` ≤ ``value`` (base units: ms, FLOPs, params), or ``factor`` × the start."""

    metric: str
    value: float | None = None
    factor: float | None = None
    text: str = ""

    def limit(self, start: float) -> float:
        return self.value if self.value is not None else self.factor * start

    def __str__(self) -> str:
        return self.text


def parse_target(text: str) -> Target:
    """Parse ``--target``; a malformed, negative or non-shrinking target is a ``SpecError``
    naming the allowed forms."""
    where = ("--target",)
    m = _TARGET.match(text or "")
    if not m:
        raise SpecError(f"cannot read {text!r}; write METRIC=BOUND, e.g. {TARGET_HELP}", where)
    word, bound = m.group(1).lower(), m.group(2).replace(" ", "")
    metric = ALIASES.get(word, word)
    if metric not in METRICS:
        raise SpecError(f"unknown metric {m.group(1)!r} in {text!r}; allowed: "
                        f"{', '.join(METRICS)}", where)
    rel = _FACTOR.match(bound)
    if rel:
        factor = float(rel.group(1)) / (100.0 if rel.group(2) == "%" else 1.0)
        if not 0 < factor < 1:
            raise SpecError(f"{text!r}: a relative target must be a factor in (0, 1) of the "
                            f"network's own {metric} (e.g. {metric}=0.75x), got {factor:g}",
                            where)
        return Target(metric, factor=factor, text=f"{metric}={bound}")
    if bound.startswith("-"):
        raise SpecError(f"{text!r}: the bound must be positive, got {bound}", where)
    try:
        value = parse_quantity(bound, metric, text)
    except SpecError:
        raise SpecError(f"cannot read {bound!r} as a {metric} bound; {metric} takes "
                        f"{UNITS_HELP[metric]}, or a factor < 1 of the network's own "
                        f"({metric}=0.75x or {metric}=75%)", where) from None
    if value <= 0:
        raise SpecError(f"{text!r}: the bound must be positive, got {bound}", where)
    return Target(metric, value=value, text=f"{metric}={bound}")


def format_amount(metric: str, value: float) -> str:
    if metric == "latency":
        return f"{value:.3f} ms"
    for suffix, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if value >= div:
            return f"{value / div:.3f}{suffix}"
    return f"{value:.0f}"


class Resource:
    """A resource: ``value(spec)`` (fast, used for every candidate), ``confirm(spec)`` (make
    ``value`` exact for this spec if it was estimated; returns the new value)."""

    metric: str = ""
    unit: str = ""

    def value(self, spec: NetworkSpec) -> float:
        raise NotImplementedError

    def confirm(self, spec: NetworkSpec) -> float:
        return self.value(spec)

    def describe(self) -> str:
        return self.metric


class CountResource(Resource):
    """FLOPs or params, counted from the resolved spec."""

    def __init__(self, metric: str):
        self.metric, self.unit = metric, BASE_UNIT[metric]

    def value(self, spec: NetworkSpec) -> float:
        from nasscale.costs.analytic import deployed_cost

        cost = deployed_cost(spec)  # what runs (re-parameterised)
        return float(cost.flops if self.metric == "flops" else cost.params)

    def describe(self) -> str:
        return ("FLOPs (multiply-accumulates of conv, linear and attention matmuls; BN, "
                "activations, pooling, element-wise not counted)" if self.metric == "flops"
                else "parameters")


@dataclass
class LatencyResource(Resource):
    """Latency for NetAdapt: predicted by a table that grows on demand
    (:class:`nasscale.latency.source.GrowingTable`, see the module doc), calibrated to a
    measurement of the start, and measured end to end (:class:`~nasscale.latency.source.Measured`)
    to check the result."""

    path: Path
    settings: object  # nasscale.latency.Settings
    metric: str = "latency"
    unit: str = "ms"
    scale: float = 1.0
    #: timing policies of carriers and of end-to-end measurements (None: the library's
    #: defaults, ``CARRIER_POLICY`` and ``TimingPolicy()``); tests pass ``timing.QUICK``
    carrier_policy: object = None
    measure_policy: object = None
    source: object = field(default=None, init=False)  # the GrowingTable
    table: object = field(default=None, init=False)  # its table

    def __post_init__(self) -> None:
        from nasscale.latency.source import GrowingTable

        self.source = GrowingTable(path=Path(self.path), settings=self.settings,
                                   carrier_policy=self.carrier_policy, source_name="netadapt")
        self.path, self.table = self.source.path, self.source.table

    def set_timing(self, policy) -> None:
        """One timing policy for carriers and end-to-end measurements (tests: ``QUICK``)."""
        self.carrier_policy = self.measure_policy = policy
        if self.source is not None:
            self.source.carrier_policy = policy

    @property
    def carriers(self) -> int:
        return self.source.carriers if self.source is not None else 0

    @property
    def drift(self) -> list:
        return self.source.drift if self.source is not None else []

    def predicted(self, spec: NetworkSpec):
        return self.source.prediction(spec)

    def value(self, spec: NetworkSpec) -> float:
        return self.scale * float(self.predicted(spec).total_ms)

    def missing(self, spec: NetworkSpec) -> bool:
        return self.source.missing(spec)

    def confirm(self, spec: NetworkSpec) -> float:
        self.source.complete(spec)
        return self.value(spec)

    def measure_units(self, spec: NetworkSpec) -> None:
        """Time ``spec`` as a carrier and add the units the table lacks (the units it has keep
        their values; see ``GrowingTable``)."""
        self.source.add_units(spec)

    def measure(self, spec: NetworkSpec, thorough: bool = True) -> float:
        """End-to-end latency, measured now (p50, ms)."""
        from nasscale.latency.source import Measured

        measured = Measured(self.settings, key={}, policy=self.measure_policy)
        if self.measure_policy is not None:
            return measured.latency_ms(spec)
        return float(measured.record(spec, thorough=thorough).latency_ms)

    def measure_median(self, spec: NetworkSpec, repeats: int = 3) -> float:
        """The median of ``repeats`` end-to-end measurements (one can be an outlier: on the
        development VM a single measurement was 40 % off now and then)."""
        import statistics

        return statistics.median(self.measure(spec) for _ in range(repeats))

    def compare(self, a: NetworkSpec, b: NetworkSpec, rounds: int = 3
                ) -> tuple[float, float, float]:
        """Measure ``a`` and ``b`` alternately, ``rounds`` times each: (median ms of a, median
        ms of b, median of the per-round ratios b/a).  Alternating cancels the machine's drift,
        which a before/after pair minutes apart does not."""
        import statistics

        pairs = []
        for _ in range(rounds):
            ma, mb = self.measure(a), self.measure(b)
            pairs.append((ma, mb))
        return (statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs),
                statistics.median(p[1] / p[0] for p in pairs))

    def calibrate(self, spec: NetworkSpec, measured_ms: float) -> None:
        """Scale predictions so that ``spec`` predicts its measured latency."""
        self.confirm(spec)
        self.scale = 1.0
        self.scale = measured_ms / self.value(spec)

    def describe(self) -> str:
        key = self.table.key
        return (f"latency, predicted from {self.path} ({len(self.table)} blocks; "
                f"{key.device_name}, {key.threads} thread(s), batch {key.batch})")


def make_resource(metric: str, lut: str | None, out: Path, settings) -> Resource:
    if metric != "latency":
        return CountResource(metric)
    path = Path(lut) if lut else out / "latency_table.json"
    try:
        return LatencyResource(path=path, settings=settings)
    except NasscaleError as err:
        raise NasscaleError(f"--lut: {err}") from None
