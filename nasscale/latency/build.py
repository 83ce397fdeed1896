"""Build a latency table: every distinct unit of some spaces or networks, timed *in context*.

Timed alone, a block keeps its weights and activations hot in cache and runs 20-25 % faster than
inside a network (docs/DESIGN.md has the numbers); evicting the caches before each run is wrong
the other way for the input, which the previous block has just written.  So every unit is timed
where it really runs: inside a *carrier* network, by timing the network's chain of units one by
one (:func:`time_carrier`), alternating with end-to-end forwards of the same network whose
difference to the sum of the units is the framework overhead.

Sources:

- a network (spec, zoo name, YAML path) is its own carrier;
- a *space* (an object with ``blocks() -> (blocks, heads)`` and ``sample(rng, name)``, such as
  :class:`nasscale.latency.space.Neighbourhood`) gets carriers sampled from it, each chosen among
  ``candidates`` samples as the one holding most units still missing, until every unit the space
  can contain has ``contexts`` measurements.  A unit no sample reaches is timed in a carrier made
  of that block alone (marked ``context: alone``).

The table is saved after every carrier (atomically), so an interrupted build resumes where it
stopped, and adding a source later measures only the units still missing.  A *probe* network
(the first source's network) is timed end to end at the start and the end of every build that
measures something: on a shared or virtual machine, speed drifts (on the development VM by 15 %
within half an hour), and re-measuring the probe later tells by how much.  The probe is also
re-timed every ``probe_every_s`` seconds of a build, and each carrier's times are scaled by
``reference / last probe``: every entry is stated at the speed of the table's first probe
(``LatencyTable.probe_ms``), so a machine that slows down by 30 % during a long build (the
development VM did) does not leave early and late entries on different scales; a prediction
times ``probe now / probe_ms`` is the latency at the machine's speed now.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from nasscale.errors import NasscaleError
from nasscale.latency.measure import Settings, prepare, run_guarded, torch_threads
from nasscale.latency.table import LatencyTable, missing_keys, unit_key, units_of
from nasscale.latency.timing import TimingPolicy, time_runs
from nasscale.specs import (
    ConvSpec,
    HeadSpec,
    NetworkSpec,
    ResolvedBlock,
    ResolvedHead,
    StageSpec,
    resolve,
)

#: timing of carriers: shorter rounds than a single measurement (there are many carriers, and
#: each unit's latency is a median over every run of its carrier); a carrier timed while other
#: processes kept half a core busy is timed again once, a second later
CARRIER_POLICY = TimingPolicy(rounds=3, round_s=0.2, min_runs=24, max_other_load=0.5,
                              quiet_retries=1, quiet_wait_s=1.0)


@dataclass(frozen=True)
class CarrierTiming:
    units_ms: list[float]  # median per unit, in chain order
    overhead_ms: float  # median over runs of (end-to-end - sum of units)
    end_to_end_ms: float
    other_load: float | None = None  # cores other processes used meanwhile


def time_carrier(spec: NetworkSpec, settings: Settings,
                 policy: TimingPolicy = CARRIER_POLICY) -> CarrierTiming:
    """Time each unit of a network inside the network, and the network end to end (in a
    deployment runtime: from its profiler, :mod:`nasscale.latency.runtimes.profile`)."""
    import torch

    if settings.runtime != "torch":
        return _runtime_carrier(spec, settings, policy)
    with torch_threads(settings.threads), torch.inference_mode():
        prepared = prepare(spec, settings, policy=policy)
        units, x = prepared.units, prepared.inputs

        def run(sw):
            prepared.forward()
            sw.lap()
            y = x
            for unit in units:
                y = unit(y)
                sw.lap()

        runs = run_guarded(lambda: time_runs(run, prepared.stopwatch(), policy),
                           f"timing {spec.name}")
    laps = np.asarray(runs.laps) * 1e3
    return CarrierTiming(units_ms=[float(v) for v in np.median(laps[:, 1:], axis=0)],
                         overhead_ms=float(np.median(laps[:, 0] - laps[:, 1:].sum(axis=1))),
                         end_to_end_ms=float(np.median(laps[:, 0])), other_load=runs.other_load)


#: profiled runs per carrier in a deployment runtime (the median share of each block is kept)
PROFILED_RUNS = 20


def _runtime_carrier(spec: NetworkSpec, settings: Settings,
                     policy: TimingPolicy) -> CarrierTiming:
    from nasscale.latency.runtimes.profile import per_unit, profiles, unit_path

    prepared = prepare(spec, settings, policy=policy)

    def run(sw):
        prepared.forward()
        sw.lap()

    runs = run_guarded(lambda: time_runs(run, prepared.stopwatch(), policy),
                       f"timing {spec.name}")
    end_to_end = float(np.median(runs.totals)) * 1e3
    paths = [unit_path(u) for u in units_of(resolve(spec))]
    found = run_guarded(lambda: profiles(settings.runtime, prepared.artifact, prepared.inputs,
                                         settings.threads, PROFILED_RUNS),
                        f"profiling {spec.name}")
    units, overhead = per_unit(found, paths, end_to_end)
    return CarrierTiming(units_ms=units, overhead_ms=overhead, end_to_end_ms=end_to_end,
                         other_load=runs.other_load)


def lone_carrier(unit: "ResolvedBlock | ResolvedHead") -> NetworkSpec:
    """The smallest network that runs ``unit`` on its input shape."""
    if isinstance(unit, ResolvedHead):
        c = unit.in_channels
        head = HeadSpec(norm=unit.norm, hidden=unit.hidden,
                        hidden_activation=unit.hidden_activation)
        return NetworkSpec(name="carrier", stem=(), stages=(StageSpec(ConvSpec(c, 1)),),
                           head=head, resolution=unit.hw[0], num_classes=unit.num_classes,
                           in_channels=c)
    return NetworkSpec(name="carrier", stem=(), stages=(StageSpec(unit.spec),),
                       resolution=unit.in_hw[0], in_channels=unit.in_channels)


# --- sources --------------------------------------------------------------------------------

def source_name(source: object) -> str:
    return source.name if isinstance(source, NetworkSpec) else getattr(source, "name", "space")


def source_units(source: object) -> list:
    if isinstance(source, NetworkSpec):
        return units_of(resolve(source))
    blocks, heads = source.blocks()
    return [*blocks, *heads]


def parse_source(text: str) -> object:
    """``around:NAME`` (the neighbourhood space of a network) or a network name / YAML path.
    Search spaces (``space:NAME[:N]``, a search-space YAML) are sources too, but the latency
    layer knows no search: ``nasscale.search.sources.parse_source`` reads every form."""
    from nasscale.latency.space import around
    from nasscale.zoo import load

    if text.startswith("around:"):
        return around(text.split(":", 1)[1])
    if text.startswith("space:"):
        raise NasscaleError(f"{text}: search spaces are read by nasscale.search.sources."
                            "parse_source (the latency layer knows no search)")
    return load(text)


# --- the build ------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildReport:
    path: Path
    sources: tuple[str, ...]
    required: int  # distinct units the sources can contain
    measured_units: int  # unit measurements added (a unit may be measured in several carriers)
    new_entries: int
    carriers: int
    lone: int  # units timed in a carrier of their own
    entries: int  # entries in the table now
    seconds: float


def open_table(out: "str | Path", settings: Settings) -> LatencyTable:
    """The table at ``out`` if it exists (its key must match this run's), else a new one."""
    key = settings.key()
    out = Path(out)
    if not out.exists():
        return LatencyTable(key=key, policy=dataclasses.asdict(CARRIER_POLICY))
    table = LatencyTable.load(out)
    if table.key != key:
        diff = "; ".join(table.key.differences(key))
        raise NasscaleError(f"{out}: was measured under another key ({diff}; file vs this run); "
                            "write to another --out")
    return table


#: how often a build re-times its probe to follow the machine's drift (seconds; 0: only at the
#: start and the end, no scaling)
PROBE_EVERY_S = 60.0


def build_table(sources: Sequence[object], out: "str | Path", settings: Settings = Settings(),
                contexts: int = 1, policy: TimingPolicy = CARRIER_POLICY, seed: int = 0,
                candidates: int = 100, progress: Callable[[int, int, str], None] | None = None,
                probe_every_s: float = PROBE_EVERY_S) -> BuildReport:
    """Measure every unit of ``sources`` still missing from the table at ``out`` (created if
    absent) with ``contexts`` carriers each; saves after every carrier.  ``progress(done, total,
    note)`` is called as units are covered.  ``probe_every_s``: see the module's docstring."""
    if settings.mode != "eager":
        raise NasscaleError(f"mode: a latency table is built in eager mode, got {settings.mode!r}"
                            " (compiled code and CUDA graphs fuse across blocks, so per-block "
                            "times would not add up)")
    if contexts < 1:
        raise NasscaleError(f"contexts: must be an integer >= 1, got {contexts!r}")
    t0 = time.perf_counter()
    with _exclusive(Path(out)):
        return _build(sources, out, settings, contexts, policy, seed, candidates, progress, t0,
                      probe_every_s)


@contextlib.contextmanager
def _exclusive(out: Path):
    """Hold ``<out>.lock`` while building: two builds writing one table would lose entries."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise NasscaleError(f"{out}: another `lut build` is writing this table; wait for it "
                                "or choose another --out") from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock.name)
            fcntl.flock(lock, fcntl.LOCK_UN)


def add_carrier(table, units: list, timing: CarrierTiming, context: str = "carrier",
                keep_known: bool = False) -> tuple[int, float]:
    """Add one carrier's timing to ``table``: the one place a table grows from a carrier.

    ``keep_known=False`` (``lut build``): every unit's time is a new sample, and a carrier's
    overhead a new overhead sample.  ``keep_known=True`` (NetAdapt, completing a table while
    it prunes): units the table has keep their values — re-timing them would move every
    prediction with the machine's drift — and measure this carrier's drift instead; the new
    units are scaled by it (``known table ms / known measured ms``) so that all entries stay on
    one scale, and the overhead is sampled only by a carrier with no known unit.
    Returns (units added, drift factor)."""
    factor, added = 1.0, 0
    known = [(u, ms) for u, ms in zip(units, timing.units_ms) if unit_key(u) in table] \
        if keep_known else []
    if known:
        measured = sum(ms for _, ms in known)
        if measured > 0:
            factor = sum(table.entries[unit_key(u)].ms for u, _ in known) / measured
    seen: set = set()
    for unit, ms in zip(units, timing.units_ms):
        if keep_known:
            key = unit_key(unit)
            if key in table or key in seen:
                continue
            seen.add(key)
        table.add(unit, ms * factor, context)
        added += 1
    if context == "carrier" and not known:
        table.overhead_samples_ms.append(timing.overhead_ms)
    if timing.other_load is not None:
        table.other_loads.append(round(timing.other_load, 3))
    table.carriers += 1
    return added, factor


def _scaled(timing: CarrierTiming, factor: float) -> CarrierTiming:
    """A carrier's timing restated at the table's reference speed."""
    if factor == 1.0:
        return timing
    return dataclasses.replace(timing, units_ms=[ms * factor for ms in timing.units_ms],
                               overhead_ms=timing.overhead_ms * factor,
                               end_to_end_ms=timing.end_to_end_ms * factor)


def _build(sources, out, settings, contexts, policy, seed, candidates, progress, t0,
           probe_every_s=PROBE_EVERY_S):
    table = open_table(out, settings)
    rng = random.Random(seed)
    names = tuple(source_name(s) for s in sources)
    required: dict[str, object] = {}
    for source in sources:
        for unit in source_units(source):
            required.setdefault(unit_key(unit), unit)
    missing = missing_keys(table, required.values(), contexts)
    total = len(missing)
    before = len(table)
    measured = carriers = lone = 0

    def record(spec: NetworkSpec, units: list, timing: CarrierTiming, context: str) -> None:
        nonlocal measured, carriers
        measured += add_carrier(table, units, timing, context)[0]
        carriers += 1
        table.save(out)
        for key in [k for k in missing if table.contexts(k) >= contexts]:
            del missing[key]
        if progress:
            progress(total - len(missing), total, f"{carriers} carriers, {spec.name}")

    speed = {"factor": 1.0, "at": 0.0}  # reference / last probe, and when it was timed

    def probe() -> None:
        ms = _probe(table, sources, settings, out)
        ref = table.probe_ms
        speed.update(factor=ref / ms if probe_every_s > 0 and ref and ms > 0 else 1.0,
                     at=time.perf_counter())

    def timed(spec: NetworkSpec) -> CarrierTiming:
        if probe_every_s > 0 and time.perf_counter() - speed["at"] > probe_every_s:
            probe()
        return _scaled(time_carrier(spec, settings, policy), speed["factor"])

    if progress:
        progress(0, total, "")
    if missing:
        probe()
    for source in sources:
        for name, spec in _carriers(source, missing, table, contexts, rng, candidates):
            units = units_of(resolve(spec))
            record(spec.replace(name=name), units, timed(spec), "carrier")
    for key, unit in list(missing.items()):  # nothing sampled reaches these: time them alone
        spec = lone_carrier(unit)
        timing = timed(spec)
        chain = [unit_key(u) for u in units_of(resolve(spec))]
        table.add(unit, timing.units_ms[chain.index(key)], "alone")
        lone += 1
        missing.pop(key)  # one context is all a lone carrier can give
        record(spec.replace(name=f"alone:{key}"), [], timing, "alone")
    if measured or lone:
        _probe(table, sources, settings, out)
    for name in names:
        if name not in table.sources:
            table.sources.append(name)
    table.save(out)
    return BuildReport(path=Path(out), sources=names, required=len(required),
                       measured_units=measured, new_entries=len(table) - before,
                       carriers=carriers, lone=lone, entries=len(table),
                       seconds=time.perf_counter() - t0)


#: the probe's timing: a few seconds, at the start and at the end of every build
PROBE_POLICY = TimingPolicy(rounds=3, round_s=0.2, min_runs=24)


def _probe(table: LatencyTable, sources, settings: Settings, out) -> float:
    """Time the table's probe network end to end (the first source's network or base, unless
    the table has one already), save it with the table and return its latency."""
    from nasscale.latency.measure import measure

    spec = table.probe_spec()
    if spec is None:
        first = sources[0]
        spec = first if isinstance(first, NetworkSpec) else getattr(first, "base", None)
        if spec is None:
            spec = first.sample(random.Random(0), "probe")
    rec = measure(spec, settings=settings, policy=PROBE_POLICY)
    table.add_probe(spec, rec.latency_ms, rec.diagnostics.get("other_load"))
    table.save(out)
    return rec.latency_ms


def _carriers(source, missing: dict, table: LatencyTable, contexts: int, rng: random.Random,
              candidates: int):
    """Yield (name, spec) carriers for a source while it still has missing units."""
    if isinstance(source, NetworkSpec):
        keys = {unit_key(u) for u in units_of(resolve(source))}
        if keys & missing.keys():
            yield source.name, source
        return
    space_keys = {unit_key(u) for u in source_units(source)}
    n, stale = 0, 0
    while space_keys & missing.keys() and stale < 3:
        best, best_gain = None, 0
        for _ in range(candidates):
            spec = source.sample(rng, f"{source_name(source)}#{n}")
            keys = {unit_key(u) for u in units_of(resolve(spec))}
            gain = sum(contexts - table.contexts(k) for k in keys & missing.keys())
            if gain > best_gain:
                best, best_gain = spec, gain
        if best is None:
            stale += 1
            continue
        n += 1
        yield best.name, best
