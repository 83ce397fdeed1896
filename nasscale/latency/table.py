"""The latency lookup table: one measured latency per distinct resolved block, and the predictor.

**Units.**  A network runs as a chain of *units*: its stem blocks, its stage blocks, its head
blocks, then the head (pool → norm → hidden linears → classifier).  A unit's table key is its
canonical text and input shape, ``bneck_k5_s2_m72_c40_relu_se@24x56x56`` or
``head_avgpool_fc1280-hswish_fc1000@960x7x7``; drop-path rates and names do not change it.

**Prediction** = sum of the units' table latencies + the table's framework overhead (the
network's own module calls, measured as end-to-end minus the sum of the units on every carrier
network).  One network is not summed: the table's *probe*, which every build times whole (see
``nasscale.latency.build``), is predicted as that end-to-end time (``Prediction.timed_whole``).
It is usually the reference of a relative budget ("latency <= 0.8x mobilenet_v3_large"), and a
block's time can depend on its neighbours (an int8 graph fuses the quantisation pairs at block
boundaries), so a sum of in-context entries can miss one particular network by more than it
misses the average one; a ratio to a measured reference has only the candidate's error.

A unit missing from the table is *extrapolated* from the most similar entries of its
kind (by MACs, input size, params, kernel and stride): a local linear fit of latency in
multiply-accumulates, activation traffic and params on its 20 nearest entries scales the 4
nearest to the unit (``LatencyTable._extrapolate``); the prediction lists every extrapolated unit
with the entries it used.

**File.**  JSON a person can read: ``format``, ``version``, the measurement ``key``, the
``method`` and timing policy, the ``sources`` measured into it, the ``probe`` network with its
end-to-end latency at the start and end of every build, the ``overhead`` samples, the
cores other processes kept busy while each carrier was timed (``other_load``) and one
entry per unit key with its ``kind``, latency ``ms`` (mean over contexts of the per-context
median), per-context ``samples_ms``, ``flops`` and ``params``.  It is written atomically (temp
file + rename), so an interrupted build leaves the last complete state.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from nasscale.costs.analytic import block_cost, head_cost
from nasscale.errors import NasscaleError
from nasscale.grammar.text import format_block
from nasscale.latency.key import MeasurementKey
from nasscale.specs import NetworkSpec, ResolvedBlock, ResolvedHead, ResolvedNetwork, resolve

FORMAT = "nasscale-latency-table"
VERSION = 1
MAX_SAMPLES = 8  # per-context medians kept per entry


# --- unit keys ------------------------------------------------------------------------------

def block_key(rb: ResolvedBlock) -> str:
    """A block at its input shape.  A re-parameterisable block is named in its train form
    whichever form the network gives it; the table's key says which form was timed."""
    return (f"{format_block(rb.spec.train_form())}@{rb.in_channels}x{rb.in_hw[0]}x"
            f"{rb.in_hw[1]}")


def head_key(head: ResolvedHead) -> str:
    parts = ["head_avgpool"]
    if head.norm != "none":
        parts.append(head.norm)
    parts += [f"fc{w}-{head.hidden_activation}" for w in head.hidden]
    parts.append(f"fc{head.num_classes}" + ("x2" if head.distill else ""))
    return "_".join(parts) + f"@{head.in_channels}x{head.hw[0]}x{head.hw[1]}"


def unit_key(unit: "ResolvedBlock | ResolvedHead") -> str:
    return head_key(unit) if isinstance(unit, ResolvedHead) else block_key(unit)


def units_of(rn: ResolvedNetwork) -> list["ResolvedBlock | ResolvedHead"]:
    """The chain a network runs: its resolved blocks, then its head."""
    return [*rn.blocks, rn.head]


def unit_label(unit: "ResolvedBlock | ResolvedHead") -> str:
    if isinstance(unit, ResolvedHead):
        return "classifier"
    if unit.section == "stage":
        return f"stage {unit.stage + 1}.{unit.repeat + 1}"
    return f"{unit.section} {unit.repeat + 1}"


def unit_features(unit: "ResolvedBlock | ResolvedHead") -> tuple[str, int, int, float]:
    """(kind, MACs, params, activation elements) — what the extrapolation model reads."""
    if isinstance(unit, ResolvedHead):
        cost = head_cost(unit)
        acts = unit.in_channels * unit.hw[0] * unit.hw[1] + sum(unit.hidden) + unit.num_classes
        return "head", cost.flops, cost.params, float(acts)
    cost = block_cost(unit)
    h_in, h_out = unit.in_hw[0] * unit.in_hw[1], unit.out_hw[0] * unit.out_hw[1]
    mid = unit.widths.get("mid", 0)
    acts = unit.in_channels * h_in + unit.out_channels * h_out + mid * (h_in + 2 * h_out)
    return unit.kind, cost.flops, cost.params, float(acts)


# --- entries and predictions ----------------------------------------------------------------

@dataclass
class Entry:
    """One unit's latency: ``ms`` is the mean of ``samples_ms``, one median per context."""

    kind: str
    samples_ms: list[float]
    flops: int
    params: int
    activations: float
    context: str = "carrier"  # measured inside a carrier network of the space

    @property
    def ms(self) -> float:
        return float(np.mean(self.samples_ms))

    def as_dict(self) -> dict:
        return {"kind": self.kind, "ms": round(self.ms, 5),
                "samples_ms": [round(s, 5) for s in self.samples_ms], "flops": self.flops,
                "params": self.params, "activations": self.activations, "context": self.context}

    @classmethod
    def from_dict(cls, data: dict) -> "Entry":
        return cls(kind=data["kind"], samples_ms=list(data["samples_ms"]), flops=data["flops"],
                   params=data["params"], activations=data["activations"],
                   context=data.get("context", "carrier"))


@dataclass(frozen=True)
class UnitPrediction:
    index: int
    label: str  # "stem 1", "stage 3.2", "head 1", "classifier"
    key: str
    ms: float
    extrapolated: bool
    basis: str  # "table", or how the estimate was made


@dataclass(frozen=True)
class Prediction:
    """A predicted latency: ``total_ms`` = sum of ``units`` + ``overhead_ms``, except for a
    network the table timed whole (``timed_whole``, its probe): its end-to-end latency."""

    total_ms: float
    overhead_ms: float
    units: tuple[UnitPrediction, ...]
    key: MeasurementKey
    timed_whole: bool = False

    @property
    def extrapolated(self) -> list[UnitPrediction]:
        return [u for u in self.units if u.extrapolated]

    def as_dict(self) -> dict:
        return {"predicted_ms": self.total_ms, "overhead_ms": self.overhead_ms,
                "extrapolated": [u.key for u in self.extrapolated],
                "timed_whole": self.timed_whole,
                "units": [{"label": u.label, "key": u.key, "ms": u.ms,
                           "extrapolated": u.extrapolated, "basis": u.basis}
                          for u in self.units], "key": self.key.as_dict()}


# --- the table ------------------------------------------------------------------------------

@dataclass
class LatencyTable:
    """Unit latencies measured under one key.  ``predict(network)`` sums them (see module doc)."""

    key: MeasurementKey
    entries: dict[str, Entry] = field(default_factory=dict)
    overhead_samples_ms: list[float] = field(default_factory=list)
    other_loads: list[float] = field(default_factory=list)  # per carrier, cores
    sources: list[str] = field(default_factory=list)
    carriers: int = 0
    method: str = "in-context"
    policy: dict = field(default_factory=dict)
    probe: dict | None = None  # {"network": YAML mapping, "samples": [{"ms", "at", ...}]}
    _models: dict = field(default_factory=dict, repr=False, compare=False)
    _probe_units: tuple = field(default=(None, None), repr=False, compare=False)

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def probe_ms(self) -> float | None:
        """The probe network's latency at the speed the entries are stated in (see
        ``add_probe``): the first probe of the first build, to which every later carrier is
        scaled (``probe["reference_ms"]``); for tables from before that rule, the median of
        the probe's samples."""
        if not self.probe or not self.probe["samples"]:
            return None
        if self.probe.get("reference_ms"):
            return float(self.probe["reference_ms"])
        return float(np.median([s["ms"] for s in self.probe["samples"]]))

    def probe_spec(self) -> NetworkSpec | None:
        from nasscale.grammar.yaml_io import network_from_data

        return network_from_data(self.probe["network"]) if self.probe else None

    def add_probe(self, spec: NetworkSpec, ms: float, other_load: float | None) -> None:
        """Record one end-to-end latency of the probe network, measured when (and while) the
        table is built: re-measuring it later tells whether the machine still runs at the speed
        the table was measured at."""
        import datetime

        from nasscale.grammar.yaml_io import network_to_data

        if self.probe is None:
            self.probe = {"network": network_to_data(spec), "samples": [],
                          "reference_ms": round(ms, 5)}
        self.probe["samples"].append({
            "ms": round(ms, 5), "other_load": None if other_load is None else round(other_load, 3),
            "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})

    @property
    def overhead_ms(self) -> float:
        return float(np.median(self.overhead_samples_ms)) if self.overhead_samples_ms else 0.0

    def add(self, unit: "ResolvedBlock | ResolvedHead", ms: float, context: str = "carrier"
            ) -> None:
        key = unit_key(unit)
        if key in self.entries:
            samples = self.entries[key].samples_ms
            samples.append(ms)
            del samples[:-MAX_SAMPLES]
        else:
            kind, flops, params, acts = unit_features(unit)
            self.entries[key] = Entry(kind, [ms], flops, params, acts, context)
        self._models.clear()

    def contexts(self, key: str) -> int:
        entry = self.entries.get(key)
        return len(entry.samples_ms) if entry else 0

    # --- prediction ------------------------------------------------------------------------

    def predict(self, network: "ResolvedNetwork | NetworkSpec | str",
                resolution: int | None = None) -> Prediction:
        """Predicted latency of a network (resolved, a spec, a zoo name or a YAML path)."""
        if not isinstance(network, ResolvedNetwork):
            from nasscale.zoo import load

            network = resolve(load(network), resolution)
        units = []
        for i, unit in enumerate(units_of(network)):
            key = unit_key(unit)
            entry = self.entries.get(key)
            if entry is not None:
                units.append(UnitPrediction(i, unit_label(unit), key, entry.ms, False, "table"))
            else:
                ms, basis = self._extrapolate(unit)
                units.append(UnitPrediction(i, unit_label(unit), key, ms, True, basis))
        total = sum(u.ms for u in units) + self.overhead_ms
        whole = self.timed_whole(tuple(u.key for u in units))
        return Prediction(total if whole is None else whole, self.overhead_ms, tuple(units),
                          self.key, timed_whole=whole is not None)

    def timed_whole(self, unit_keys: tuple[str, ...]) -> float | None:
        """The end-to-end latency (at the table's speed) of the network whose chain of unit
        keys is ``unit_keys``, if the table timed it whole: its probe.  Names do not matter;
        the keys hold every shape, so another resolution is another network."""
        if not self.probe_ms:
            return None
        network, keys = self._probe_units
        if network is not self.probe:  # cached per probe record
            keys = tuple(unit_key(u) for u in units_of(resolve(self.probe_spec())))
            self._probe_units = (self.probe, keys)
        return self.probe_ms if keys == unit_keys else None

    #: neighbours whose local fit extrapolates a missing unit, and how many of them it scales
    NEIGHBOURS, SCALED = 20, 4

    def _kind_index(self, kind: str) -> dict:
        """The entries of one kind as arrays (all entries when the kind has fewer than 4)."""
        if kind in self._models:
            return self._models[kind]
        keys = [k for k, e in self.entries.items() if e.kind == kind]
        scope = kind
        if len(keys) < 4:
            keys, scope = list(self.entries), "all kinds"
        if not keys:
            raise NasscaleError("the latency table is empty: nothing to extrapolate from")
        sigs = [_signature(k) for k in keys]
        es = [self.entries[k] for k in keys]
        self._models[kind] = {
            "scope": scope, "keys": keys,
            "flops": np.array([e.flops for e in es], float),
            "acts": np.array([e.activations for e in es], float),
            "params": np.array([e.params for e in es], float),
            "ms": np.array([e.ms for e in es], float),
            "kernel": np.array([-1 if g[0] is None else g[0] for g in sigs]),
            "stride": np.array([g[1] for g in sigs]),
            "hw": np.array([g[2][0] for g in sigs], float)}
        return self._models[kind]

    def _extrapolate(self, unit: "ResolvedBlock | ResolvedHead") -> tuple[float, str]:
        """A unit the table lacks, from its ``NEIGHBOURS`` most similar entries: a local fit of
        ms ≈ a + b·MACs + c·activations + d·params (least relative squares, non-negative), and
        the ``SCALED`` nearest entries each scaled by that fit's ratio for the unit to theirs,
        averaged geometrically with weights falling with the distance.  Chosen by leave-one-out
        on table entries (docs/DESIGN.md, "Extrapolating a missing unit"): 8.5 % mean error
        against 13.6 % for one nearest entry scaled by a per-kind global fit."""
        kind, flops, params, acts = unit_features(unit)
        ix = self._kind_index(kind)
        if isinstance(unit, ResolvedHead):
            kernel, stride, hw = -1, 1, unit.hw[0]
        else:
            k = getattr(unit.spec, "kernel_size", None)
            kernel, stride, hw = -1 if k is None else k, getattr(unit.spec, "stride", 1), \
                unit.in_hw[0]
        score = (np.abs(np.log((ix["flops"] + 1) / (flops + 1))) + np.abs(np.log(ix["hw"] / hw))
                 + 0.5 * (ix["kernel"] != kernel) + 0.5 * (ix["stride"] != stride)
                 + 0.5 * np.abs(np.log((ix["params"] + 1) / (params + 1))))
        near = np.argsort(score, kind="stable")[:self.NEIGHBOURS]

        def features(fl, ac, pa):
            return np.stack([np.ones_like(fl), fl / 1e6, ac / 1e6, pa / 1e6], axis=-1)

        x = features(ix["flops"][near], ix["acts"][near], ix["params"][near])
        coef = _fit_relative(x, ix["ms"][near])
        estimate = float(features(np.array([flops], float), np.array([acts], float),
                                  np.array([params], float))[0] @ coef)
        scaled, base = near[:self.SCALED], x[:self.SCALED] @ coef
        ok = base > 0
        basis = (f"{len(near)} nearest {ix['scope']} entries (local fit on MACs, activations, "
                 f"params), nearest {ix['keys'][near[0]]}")
        if estimate > 0 and ok.any():
            w = 1.0 / (score[scaled][ok] + 0.05)
            logs = np.log(ix["ms"][scaled][ok] * estimate / base[ok])
            return float(np.exp(np.sum(w * logs) / w.sum())), basis
        j = near[0]  # the fit says nothing here: the nearest entry scaled by MACs
        return float(ix["ms"][j] * (flops + 1) / (ix["flops"][j] + 1)), \
            f"{ix['keys'][j]} scaled by MACs"

    # --- file ------------------------------------------------------------------------------

    def as_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "key": self.key.as_dict(),
                "method": self.method, "policy": self.policy, "sources": self.sources,
                "carriers": self.carriers, "probe": self.probe,
                "overhead": {"ms": round(self.overhead_ms, 5),
                             "samples_ms": [round(s, 5) for s in self.overhead_samples_ms]},
                "other_load": {"median": float(np.median(self.other_loads))
                               if self.other_loads else None, "samples": self.other_loads},
                "entries": {k: self.entries[k].as_dict() for k in sorted(self.entries)}}

    def save(self, path: "str | os.PathLike") -> None:
        """Write atomically: a crash leaves either the old file or the new one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.as_dict(), f, indent=1)
                f.write("\n")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the table from others
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: "str | os.PathLike") -> "LatencyTable":
        path = Path(path)
        if not path.exists():
            raise NasscaleError(f"{path}: no such file")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
            raise NasscaleError(f"{path}: not a readable latency table "
                                f"({str(err).splitlines()[0][:200]})") from None
        except RecursionError:  # json reads nested arrays and objects recursively
            raise NasscaleError(f"{path}: not a readable latency table (arrays or objects "
                                "nested too deeply)") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise NasscaleError(f"{path}: not a latency table (format must be {FORMAT!r}; "
                                "build one with `nasscale lut build`)")
        if data.get("version") != VERSION:
            raise NasscaleError(f"{path}: version {data.get('version')!r} is not supported "
                                f"(this nasscale reads version {VERSION})")
        try:
            return cls(key=MeasurementKey.from_dict(data["key"], f"{path}: key"),
                       entries={k: Entry.from_dict(v) for k, v in data["entries"].items()},
                       overhead_samples_ms=list(data["overhead"]["samples_ms"]),
                       other_loads=list(data.get("other_load", {}).get("samples", [])),
                       sources=list(data.get("sources", [])), carriers=data.get("carriers", 0),
                       method=data.get("method", "in-context"), policy=data.get("policy", {}),
                       probe=data.get("probe"))
        except (KeyError, TypeError, AttributeError) as err:
            raise NasscaleError(f"{path}: malformed latency table (missing or bad {err})") \
                from None


def _fit_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least relative squares ``x @ coef ≈ y`` with non-negative coefficients (columns whose
    coefficient comes out negative are dropped, most negative first)."""
    w = 1.0 / np.maximum(y, 1e-6)
    active = list(range(x.shape[1]))
    coef = np.zeros(x.shape[1])
    while active:
        sol, *_ = np.linalg.lstsq(x[:, active] * w[:, None], y * w, rcond=None)
        if (sol >= 0).all():
            coef[active] = sol
            break
        active.pop(int(np.argmin(sol)))
    return coef


def _signature(key: str) -> tuple:
    """(kernel, stride, input HxW) from a block key, for nearest-entry search."""
    text, shape = key.rsplit("@", 1)
    tokens = text.split("_")
    k = next((int(t[1:]) for t in tokens if t[:1] == "k" and t[1:].isdigit()), None)
    s = next((int(t[1:]) for t in tokens if t[:1] == "s" and t[1:].isdigit()), 1)
    _, h, w = shape.split("x")
    return (k, s, (int(h), int(w)))


def missing_keys(table: LatencyTable, units: Iterable["ResolvedBlock | ResolvedHead"],
                 contexts: int = 1) -> dict[str, "ResolvedBlock | ResolvedHead"]:
    """Units (by key) that have fewer than ``contexts`` measurements in the table."""
    out = {}
    for unit in units:
        key = unit_key(unit)
        if table.contexts(key) < contexts:
            out.setdefault(key, unit)
    return out
