"""The sections of a study file as frozen dataclasses: each key, its value type and default
declared once (a :func:`~nasscale.scoring.fields.setting`), read by ``from_data`` with a
one-line ``SpecError`` naming the key.  The mapping as written is kept (``as_written``): it is
what a stored study's fingerprint holds, so a study stored before a default changed resumes.
The evaluator section is an evaluator spec (``nasscale.scoring.kinds``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from nasscale.errors import NasscaleError, SpecError, suggest
from nasscale.latency.key import MAX_BATCH
from nasscale.latency.runtimes import CHOICES as RUNTIME_CHOICES, QUANTIZATIONS
from nasscale.scoring.fields import (
    MAX_EPOCHS,
    Choice,
    Flag,
    Int,
    Number,
    Section,
    Source,
    Strings,
    Text,
    setting,
)
from nasscale.search.limits import MAX_THREADS, MAX_TRIALS, check_int
from nasscale.search.sources import sample_count

SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")
#: Optuna pruners by study name, with the keys each takes (``optuna.pruners.<Class>``)
PRUNERS = {
    "successive_halving": ("min_resource", "reduction_factor", "min_early_stopping_rate"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps"),
    "none": (),
}
#: the pruners' integer keys and their ranges
PRUNER_INTS = {"min_resource": (1, MAX_EPOCHS), "max_resource": (1, MAX_EPOCHS),
               "reduction_factor": (2, 1000), "min_early_stopping_rate": (0, 100),
               "n_startup_trials": (0, MAX_TRIALS), "n_warmup_steps": (0, MAX_EPOCHS),
               "interval_steps": (1, MAX_EPOCHS)}


@dataclass(frozen=True)
class LatencySection(Section):
    """``latency:`` — how latency is measured (``source: measure``) or predicted (``lut``)."""

    null_is_default: ClassVar[bool] = True

    source: str = setting("measure", Choice(("measure", "lut")), "measured here or predicted")
    lut: str | None = setting(None, Source(), "the lookup table (source lut)")
    build: tuple[str, ...] = setting((), Strings(), "what the table measures first")
    device: str = setting("cpu", Text(), "where latency is measured")
    threads: int = setting(1, Int(1, MAX_THREADS), "CPU threads while timing")
    batch: int = setting(1, Int(1, MAX_BATCH), "batch size timed")
    dtype: str = setting("float32", Text(), "precision timed")
    channels_last: bool = setting(False, Flag(), "channels-last memory format")
    compile: bool = setting(False, Flag(), "torch.compile before timing")
    clock: str = setting("wall", Text(), "wall or cuda events")
    runtime: str = setting("eager", Choice(RUNTIME_CHOICES), "what runs the network: PyTorch "
                           "(eager, compile) or a deployment runtime")
    quantize: str = setting("none", Choice(QUANTIZATIONS), "int8: the statically quantised form "
                            "(deployment runtimes)")

    @classmethod
    def from_data(cls, data: Any, where: str = "latency"):
        if data is None or isinstance(data, dict):
            data = {"source": "measure", **(data or {})}  # stored fingerprints hold it
        return super().from_data(data, where)

    def validate(self, where: str) -> None:
        if self.source == "lut" and not self.lut:
            raise SpecError("source lut needs lut: path/to/table.json", (f"{where}.lut",))
        if "build" in self.written:
            if self.source != "lut":
                raise SpecError("must be a list of lut sources (space:NAME[:N], around:NAME, "
                                "network names) with source: lut", (f"{where}.build",))
            for i, source in enumerate(self.build):
                if source.startswith("space:"):
                    try:
                        sample_count(source)
                    except NasscaleError as err:
                        raise SpecError(str(err), (f"{where}.build[{i}]",)) from None


@dataclass(frozen=True)
class SamplerSection(Section):
    """``sampler:`` — Optuna's sampler and its settings."""

    null_is_default: ClassVar[bool] = True

    name: str = setting("tpe", Choice(SAMPLERS), "Optuna's sampler")
    n_startup_trials: int = setting(10, Int(0, MAX_TRIALS), "random trials first")
    population_size: int = setting(50, Int(2, 100_000), "NSGA-II's population")
    multivariate: bool = setting(True, Flag(), "TPE's multivariate mode")

    @classmethod
    def from_data(cls, data: Any, where: str = "sampler"):
        if data is None or isinstance(data, dict):
            data = {"name": "tpe", **(data or {})}
            if data["name"] is not None and data["name"] not in SAMPLERS:
                raise SpecError(f"unknown sampler{suggest(str(data['name']), SAMPLERS)}; "
                                f"allowed: {', '.join(SAMPLERS)}", (f"{where}.name",))
        return super().from_data(data, where)


@dataclass(frozen=True)
class RewardSection(Section):
    """``reward:`` — MnasNet's ``score × (latency / target)^exponent``."""

    target: str | None = setting(None, Text(), "the latency target, e.g. 1.0x NAME")
    exponent: float = setting(-0.07, Number(-1e9), "w <= 0 (MnasNet: -0.07)")

    @classmethod
    def from_data(cls, data: Any, where: str = "reward"):
        if isinstance(data, dict) and "target" not in data:
            raise SpecError("missing field 'target'", (where,))
        data = dict(data) if isinstance(data, dict) else data
        if isinstance(data, dict):
            data.setdefault("exponent", -0.07)
            exponent = data["exponent"]
            if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) \
                    or not exponent == exponent or abs(exponent) == float("inf") \
                    or exponent > 0:
                raise SpecError(f"must be a number <= 0 (MnasNet uses -0.07), got "
                                f"{exponent!r}", (f"{where}.exponent",))
        return super().from_data(data, where)


@dataclass(frozen=True)
class PrunerSection(Section):
    """``pruner:`` — Optuna's pruner (``none``: trials are never stopped early) and its keys
    (which keys each pruner takes: ``PRUNERS``; their ranges: ``PRUNER_INTS``)."""

    name: str = setting("none", Choice(tuple(PRUNERS)), "Optuna's pruner")

    @property
    def options(self) -> dict[str, Any]:
        """The pruner's own keyword arguments (every key but ``name``)."""
        return {k: v for k, v in self.written.items() if k != "name"}

    @classmethod
    def from_data(cls, data: Any, where: str = "pruner"):
        if data is None or isinstance(data, str):
            data = {"name": data or "none"}
        options = tuple(sorted({k for v in PRUNERS.values() for k in v}))
        if isinstance(data, dict) and data.get("name", "none") is None:
            data = {**data, "name": "none"}  # ``name: null``: no pruner
        if isinstance(data, dict) and data.get("name") not in (*PRUNERS, None):
            raise SpecError(f"unknown pruner{suggest(str(data['name']), tuple(PRUNERS))}; "
                            f"allowed: {', '.join(PRUNERS)}", (f"{where}.name",))
        cls.check_data(data, where, extra=options)  # a mapping of known keys
        if "name" not in data:
            raise SpecError("missing field 'name'", (where,))
        name = data["name"]
        for key in data:
            if key != "name" and key not in PRUNERS[name]:
                raise SpecError(f"not a setting of pruner {name}; it takes "
                                f"{', '.join(PRUNERS[name]) or 'no settings'}",
                                (f"{where}.{key}",))
        for key, (low, high) in PRUNER_INTS.items():
            if key in data:
                check_int(data[key], f"{where}.{key}", low, high, auto=key == "max_resource"
                          or (key == "min_resource" and name == "successive_halving"))
        return cls(name=name, written=data)


__all__ = ["LatencySection", "PRUNERS", "PRUNER_INTS", "PrunerSection", "RewardSection",
           "SAMPLERS", "SamplerSection"]
