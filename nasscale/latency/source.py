"""Where a latency comes from: one abstraction for the search, budgets and pruning.

- :class:`Measured`: build and time the network here, under ``settings``; quick timing
  (``policy``) for candidates, the full :class:`TimingPolicy` when ``thorough`` (references,
  budgets).  With ``ratio_to`` (``{"name": ..., "ms": ...}``, and ``"resolution"`` when the
  reference was timed at another resolution than its own) a quick timing is made
  interleaved with that network and the latency is ``ratio × its ms``, so that the machine's
  drift between two moments (or two workers' machines of one kind) cancels.
- :class:`Predicted`: the per-unit lookup table's prediction; nothing is built.
- :class:`GrowingTable`: a prediction from a table that measures, on demand, the units it lacks
  (each new network is timed as a carrier; ``build.add_carrier(keep_known=True)``).

Each says its measurement key (``key``, a dict as studies store it), whether it builds the
module (``builds_module()``) and how a reference figure was obtained (``reference``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nasscale.latency.key import MeasurementKey
from nasscale.latency.measure import Settings
from nasscale.latency.table import LatencyTable, Prediction
from nasscale.latency.timing import TimingPolicy
from nasscale.specs import NetworkSpec, resolve


def quick_policy() -> TimingPolicy:
    """A candidate's timing: about a third of ``nasscale cost``'s (a second or so for a mobile
    network)."""
    return TimingPolicy().scaled(0.35)


class LatencySource(ABC):
    """Measured or predicted latency of a network, in ms (p50 when measured): the one
    abstraction the search, budgets and pruning use.

    Protocol: ``key`` is the measurement key as a dict (what a study stores; latencies under
    different keys never compare); ``latency_ms(spec, thorough)`` is a candidate's latency
    (``thorough``: the full timing policy, for references and budgets), a finite number > 0;
    ``reference(spec)`` is ``(ms, how it was obtained, MeasurementKey)`` for a budget's
    reference network; ``measurement_key()`` is ``key`` as a :class:`MeasurementKey`;
    ``builds_module()`` says whether a torch module is built (a prediction builds none, so a
    study can reject a candidate before building it); ``describe()`` is one line for outputs.
    The contract suite (``tests/test_latency_source_contract.py``) checks every source."""

    key: dict

    @abstractmethod
    def latency_ms(self, spec: NetworkSpec, thorough: bool = False) -> float: ...

    @abstractmethod
    def reference(self, spec: NetworkSpec) -> tuple[float, str, MeasurementKey]: ...

    @abstractmethod
    def measurement_key(self) -> MeasurementKey: ...

    @abstractmethod
    def builds_module(self) -> bool: ...

    @abstractmethod
    def describe(self) -> str: ...


@dataclass
class Measured(LatencySource):
    settings: Settings = field(default_factory=Settings)
    key: dict | None = None  # None: this machine's key under ``settings``
    policy: TimingPolicy | None = None  # quick timing; None: ``quick_policy()``
    ratio_to: dict | None = None
    #: the measuring function (``nasscale.latency.measure`` by default; tests pass a stand-in)
    measure_fn: Callable[..., Any] | None = None
    last_ratio: float | None = None
    _cache: Any = None

    def __post_init__(self) -> None:
        if self.key is None:
            self.key = self.settings.key().as_dict()

    def record(self, spec: NetworkSpec, thorough: bool = False):
        """The :class:`LatencyRecord` of one measurement."""
        from nasscale.latency.measure import measure

        fn = self.measure_fn or measure
        if thorough:
            return fn(spec, settings=self.settings)  # the full policy, as `nasscale cost`
        return fn(spec, settings=self.settings, policy=self.policy or quick_policy())

    def latency_ms(self, spec: NetworkSpec, thorough: bool = False) -> float:
        self.last_ratio = None
        if self.ratio_to is not None and not thorough:
            from nasscale import zoo
            from nasscale.latency.measure import PreparedCache, measure_ratio

            policy = self.policy or quick_policy()
            if self._cache is None:
                self._cache = PreparedCache(self.settings, policy)
            reference = zoo.load(self.ratio_to["name"])
            if self.ratio_to.get("resolution"):  # measured at the study's budget resolution
                reference = reference.replace(resolution=int(self.ratio_to["resolution"]),
                                              expected=None)
            rec = measure_ratio(spec, reference, settings=self.settings,
                                policy=policy, pairs=4, cache=self._cache)
            self.last_ratio = rec.ratio
            return rec.ratio * float(self.ratio_to["ms"])
        record = self.record(spec, thorough)
        if thorough:  # a reference: say when the machine was busy, as `nasscale cost` does
            from nasscale.latency.report import warn_if_noisy

            warn_if_noisy(spec.name, record)
        return float(record.latency_ms)

    def reference(self, spec: NetworkSpec) -> tuple[float, str, MeasurementKey]:
        from nasscale.latency.report import warn_if_noisy

        record = self.record(spec, thorough=True)
        warn_if_noisy(spec.name, record)
        return (float(record.latency_ms), f"{spec.name} measured here: p50 of "
                f"{record.stats.n} runs at {record.resolution}x{record.resolution}", record.key)

    def measurement_key(self) -> MeasurementKey:
        return self.settings.key()

    def builds_module(self) -> bool:
        return True

    def describe(self) -> str:
        s = self.settings
        return f"latency, measured here ({s.device}, {s.threads} thread(s), batch {s.batch})"


@dataclass
class Predicted(LatencySource):
    table: LatencyTable
    key: dict | None = None  # None: the table's

    def __post_init__(self) -> None:
        if self.key is None:
            self.key = self.table.key.as_dict()

    def prediction(self, spec: NetworkSpec) -> Prediction:
        return self.table.predict(resolve(spec))

    def latency_ms(self, spec: NetworkSpec, thorough: bool = False) -> float:
        return float(self.prediction(spec).total_ms)

    def reference(self, spec: NetworkSpec) -> tuple[float, str, MeasurementKey]:
        pred = self.prediction(spec)
        if pred.timed_whole:
            return (float(pred.total_ms), f"{spec.name} timed whole when the latency table was "
                    "built (its probe)", self.table.key)
        extra = f", {len(pred.extrapolated)} units extrapolated" if pred.extrapolated else ""
        return (float(pred.total_ms), f"{spec.name} predicted from the latency table{extra}",
                self.table.key)

    def measurement_key(self) -> MeasurementKey:
        return self.table.key

    def builds_module(self) -> bool:
        return False

    def describe(self) -> str:
        key = self.table.key
        return (f"latency, predicted from a table of {len(self.table)} blocks "
                f"({key.device_name}, {key.threads} thread(s), batch {key.batch})")


@dataclass
class GrowingTable(Predicted):
    """A table at ``path`` (created under ``settings`` when absent) that times each network
    whose units it lacks as a carrier and keeps what it learnt.

    Units the table has keep their values: re-timing them would move the prediction of every
    network that contains them with the machine's drift (5 % between runs minutes apart on
    the development VM), and a pruner would then take noise for savings.  Instead the units
    already known measure the drift of this carrier, and the new units are scaled by it."""

    table: LatencyTable = None  # type: ignore[assignment]  (opened from ``path``)
    path: Path = Path("latency_table.json")
    settings: Settings = field(default_factory=Settings)
    carrier_policy: TimingPolicy | None = None  # None: ``build.CARRIER_POLICY``
    source_name: str = "carrier"
    drift: list = field(default_factory=list)  # per carrier: table ms / measured ms (known)
    carriers: int = 0

    def __post_init__(self) -> None:
        from nasscale.latency.build import open_table

        self.path = Path(self.path)
        if self.table is None:
            self.table = open_table(self.path, self.settings)
        super().__post_init__()

    def prediction(self, spec: NetworkSpec) -> Prediction:
        if not len(self.table):  # a new table: the first network seeds it
            self.add_units(spec)
        return self.table.predict(resolve(spec))

    def missing(self, spec: NetworkSpec) -> bool:
        return bool(self.prediction(spec).extrapolated)

    def complete(self, spec: NetworkSpec) -> None:
        """Measure ``spec``'s missing units, if any."""
        if self.missing(spec):
            self.add_units(spec)

    def add_units(self, spec: NetworkSpec) -> None:
        """Time ``spec`` as a carrier and add the units the table lacks; save the table."""
        from nasscale.latency.build import add_carrier, time_carrier
        from nasscale.latency.table import units_of

        units = units_of(resolve(spec))
        timing = (time_carrier(spec, self.settings) if self.carrier_policy is None
                  else time_carrier(spec, self.settings, self.carrier_policy))
        _, factor = add_carrier(self.table, units, timing, "carrier", keep_known=True)
        self.drift.append(round(factor, 4))
        self.carriers += 1
        if self.source_name not in self.table.sources:
            self.table.sources.append(self.source_name)
        self.table.save(self.path)

    def latency_ms(self, spec: NetworkSpec, thorough: bool = False) -> float:
        self.complete(spec)
        return float(self.table.predict(resolve(spec)).total_ms)

    def describe(self) -> str:
        key = self.table.key
        return (f"latency, predicted from {self.path} ({len(self.table)} blocks; "
                f"{key.device_name}, {key.threads} thread(s), batch {key.batch})")
