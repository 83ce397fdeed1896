"""Study files (``studies/*.yaml``): what to search, for what, under which budgets.

Schema::

    name: quickstart                      # the Optuna study name
    description: ...
    space: mobilenet_v3_like              # spaces/search/<name>.yaml, or a path
    objectives: {score: maximize, latency: minimize}   # metrics: score, reward, latency,
                                                       # flops, params (one or several)
    evaluator: {kind: proxy, proxy: naswot, batch_size: 16, resolution: 128, data: digits}
               # or {kind: train, data: digits, epochs: 3, subset: 1000, resolution: 32, ...}
               # or {kind: python, target: package.module:function}
    reward: {target: 1.0x mobilenet_v3_small, exponent: -0.07}  # MnasNet: score·(lat/T)^w
    constraints: ["latency <= 1.0x mobilenet_v3_small", "flops <= 300M"]
    latency: {source: measure, device: cpu, threads: 1, batch: 1}  # or source: lut, lut: FILE
             # (+ build: [space:NAME:N, ...]: measure what the table lacks before searching)
    sampler: {name: tpe, n_startup_trials: 10}   # tpe, nsga2, gp, random, grid
    trials: 30
    timeout: 600                          # seconds (optional)
    seed: 0
    storage: null                         # default: a journal file in the output folder
    references: [mobilenet_v3_small]      # drawn on the Pareto plot (evaluated once)
    max_memory_gb: 8                      # candidates estimated above it fail without building

Everything is validated on load; errors name the file, line and field.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError, SpecError, suggest
from nasscale.grammar.yaml_io import check_keys, in_file, read_yaml

STUDY_KEYS = ("name", "description", "space", "coefficients", "objectives", "evaluator",
              "reward",
              "constraints", "latency", "sampler", "trials", "timeout", "seed", "storage",
              "references", "max_memory_gb")
METRICS = ("score", "reward", "latency", "flops", "params")
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")
EVALUATOR_KINDS = ("proxy", "train", "python")
EVALUATOR_KEYS = {
    "proxy": ("kind", "proxy", "batch_size", "resolution", "data"),
    "train": ("kind", "data", "epochs", "batch_size", "lr", "weight_decay", "subset",
              "val_fraction", "resolution"),
    "python": ("kind", "target", "name"),
}
LATENCY_KEYS = ("source", "lut", "build", "device", "threads", "batch", "dtype",
                "channels_last", "compile", "clock")
SAMPLER_KEYS = ("name", "n_startup_trials", "population_size", "multivariate")


@dataclass(frozen=True)
class StudySpec:
    name: str
    space: str | None  # a search space name or path; or None with ``coefficients``
    objectives: tuple[tuple[str, str], ...]  # (metric, direction)
    evaluator: dict[str, Any]
    constraints: tuple[str, ...] = ()
    reward: dict[str, Any] | None = None
    latency: dict[str, Any] = field(default_factory=lambda: {"source": "measure"})
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe"})
    trials: int | None = None
    timeout: float | None = None
    seed: int = 0
    storage: str | None = None
    references: tuple[str, ...] = ()
    max_memory_gb: float = 8.0
    description: str = ""
    path: str = ""  # the file it came from
    coefficients: dict[str, Any] | None = None  # EfficientNet step 1 (search/coefficients.py)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.objectives)

    @property
    def needs_latency(self) -> bool:
        return ("latency" in self.metrics or self.reward is not None
                or any(c.strip().startswith("latency") for c in self.constraints))

    def replace(self, **changes: Any) -> "StudySpec":
        from dataclasses import replace

        return replace(self, **changes)


def _positive_int(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"must be an integer >= {minimum}, got {value!r}", (where,))
    return value


def study_from_data(data: Any, path: str = "") -> StudySpec:
    data = check_keys(data, STUDY_KEYS, "", required=("name", "objectives", "evaluator"))
    if ("space" in data) == ("coefficients" in data):
        raise SpecError("give either space (an architecture search) or coefficients (a "
                        "compound-scaling coefficient grid)", ("space",))
    coefficients = None
    if "coefficients" in data:
        from nasscale.search.coefficients import coefficient_space_from_data

        coefficient_space_from_data(data["coefficients"])  # validate now, with its field names
        coefficients = dict(data["coefficients"])
    objectives = data["objectives"]
    if not isinstance(objectives, dict) or not objectives:
        raise SpecError("must be a mapping of metric -> maximize|minimize, e.g. "
                        "{score: maximize, latency: minimize}", ("objectives",))
    for metric, direction in objectives.items():
        if metric not in METRICS:
            raise SpecError(f"unknown metric{suggest(str(metric), METRICS)}; allowed: "
                            f"{', '.join(METRICS)}", (f"objectives.{metric}",))
        if direction not in DIRECTIONS:
            raise SpecError(f"must be maximize or minimize, got {direction!r}",
                            (f"objectives.{metric}",))
    evaluator = check_keys(data["evaluator"], tuple(sorted({k for v in EVALUATOR_KEYS.values()
                                                            for k in v})), "evaluator",
                           required=("kind",))
    kind = evaluator["kind"]
    if kind not in EVALUATOR_KINDS:
        raise SpecError(f"must be one of {', '.join(EVALUATOR_KINDS)}, got {kind!r}",
                        ("evaluator.kind",))
    check_keys(evaluator, EVALUATOR_KEYS[kind], "evaluator")
    if kind == "python" and not evaluator.get("target"):
        raise SpecError("needs target: package.module:function", ("evaluator.target",))
    if "reward" in objectives and data.get("reward") is None:
        raise SpecError("the 'reward' objective needs a reward: {target: ..., exponent: ...} "
                        "section", ("objectives.reward",))
    reward = data.get("reward")
    if reward is not None:
        reward = dict(check_keys(reward, ("target", "exponent"), "reward", required=("target",)))
        exponent = reward.setdefault("exponent", -0.07)
        if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) or exponent > 0:
            raise SpecError(f"must be a number <= 0 (MnasNet uses -0.07), got {exponent!r}",
                            ("reward.exponent",))
    constraints = data.get("constraints") or []
    if not isinstance(constraints, list) or not all(isinstance(c, str) for c in constraints):
        raise SpecError("must be a list of budget strings such as 'flops <= 300M' or "
                        "'latency <= 0.8x mobilenet_v3_large'", ("constraints",))
    latency = dict(check_keys(data.get("latency") or {}, LATENCY_KEYS, "latency"))
    latency.setdefault("source", "measure")
    if latency["source"] not in ("measure", "lut"):
        raise SpecError(f"must be measure or lut, got {latency['source']!r}",
                        ("latency.source",))
    if latency["source"] == "lut" and not latency.get("lut"):
        raise SpecError("source lut needs lut: path/to/table.json", ("latency.lut",))
    if "build" in latency:
        build = latency["build"]
        if not isinstance(build, list) or not all(isinstance(b, str) for b in build) or \
                latency["source"] != "lut":
            raise SpecError("must be a list of lut sources (space:NAME[:N], around:NAME, network "
                            "names) with source: lut", ("latency.build",))
    sampler = dict(check_keys(data.get("sampler") or {}, SAMPLER_KEYS, "sampler"))
    sampler.setdefault("name", "tpe")
    if sampler["name"] not in SAMPLERS:
        raise SpecError(f"unknown sampler{suggest(str(sampler['name']), SAMPLERS)}; allowed: "
                        f"{', '.join(SAMPLERS)}", ("sampler.name",))
    trials = data.get("trials")
    timeout = data.get("timeout")
    if trials is None and timeout is None and coefficients is None:
        raise SpecError("give trials and/or timeout", ("trials",))
    if sampler["name"] == "grid" and coefficients is None:
        raise SpecError("grid samples coefficient studies only (an architecture space is far "
                        "too large to enumerate); use tpe, nsga2, gp or random",
                        ("sampler.name",))
    if trials is not None:
        _positive_int(trials, "trials")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout <= 0):
        raise SpecError(f"must be a number of seconds > 0, got {timeout!r}", ("timeout",))
    references = data.get("references") or []
    if not isinstance(references, list):
        raise SpecError("must be a list of architecture names", ("references",))
    storage = data.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise SpecError("must be a storage URL string or null", ("storage",))
    for key in ("batch_size", "epochs", "subset"):
        if key in evaluator:
            _positive_int(evaluator[key], f"evaluator.{key}")
    if "resolution" in evaluator:
        parse_eval_resolution(evaluator["resolution"], "evaluator.resolution")
    return StudySpec(
        name=str(data["name"]), space=str(data["space"]) if "space" in data else None,
        coefficients=coefficients,
        objectives=tuple(objectives.items()), evaluator=dict(evaluator),
        constraints=tuple(constraints), reward=reward, latency=latency, sampler=sampler,
        trials=trials, timeout=timeout, seed=_positive_int(data.get("seed", 0), "seed", 0),
        storage=storage, references=tuple(map(str, references)),
        max_memory_gb=float(data.get("max_memory_gb", 8.0)),
        description=str(data.get("description", "")), path=path)


def load_study(path: str | os.PathLike) -> StudySpec:
    path = Path(path)
    if not path.exists():
        raise NasscaleError(f"{path}: no such study file")
    data, text = read_yaml(path)
    try:
        return study_from_data(data, str(path))
    except SpecError as err:
        raise in_file(err, path, text) from None


def parse_eval_resolution(value: Any, where: str = "evaluator.resolution") -> int | float:
    """An evaluator's input size: pixels (``64``) or a fraction of each candidate's own
    resolution (``"0.25x"``; coefficient studies need this so that γ still matters)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 8:
        return value
    if isinstance(value, str) and value.strip().endswith("x"):
        try:
            factor = float(value.strip()[:-1])
        except ValueError:
            factor = 0.0
        if 0 < factor <= 4:
            return factor
    raise SpecError(f"must be pixels (an integer >= 8) or a fraction of the candidate's "
                    f"resolution like '0.25x', got {value!r}", (where,))


def eval_resolution(value: int | float | None, candidate: int) -> int:
    """The pixels an evaluator uses for a candidate of ``candidate`` pixels (multiple of 8)."""
    if value is None:
        return candidate
    if isinstance(value, float):
        return max(8, int(round(candidate * value / 8)) * 8)
    return int(value)
