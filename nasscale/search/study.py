"""Study files (``studies/*.yaml``): what to search, for what, under which budgets.

Schema::

    name: quickstart                      # the Optuna study name: letters, digits, - _ .
                                          # (not first), at most 100 characters
    description: ...
    space: mobilenet_v3_like              # spaces/search/<name>.yaml, or a path
    objectives: {score: maximize, latency: minimize}   # metrics: score, reward, latency,
                                                       # flops, params (one or several)
    evaluator: {kind: proxy, proxy: naswot, batch_size: 16, resolution: 128, data: digits}
               # or {kind: train, data: digits, epochs: 3, subset: 1000, resolution: 32, ...,
               #     device: auto|cpu|cuda, amp: none|bf16|fp16, channels_last: false,
               #     augment: true, progressive: false, threads: 2}
               # or {kind: python, target: package.module:function}
               # or {kind: inherit, parent: NAME_OR_YAML, weights: FILE.pt, steps: 50,
               #     data: testbed, lr: 0.01, threads: 2, ...}: weights carried from a trained
               #     parent that contains every candidate, fine-tuned N steps (search/inherit.py)
               # data: testbed, testbed-v2, testbed-v3[:train=N,test=M] and digits are names;
               #     anything else is an .npz file or an image folder, relative to this file
               #     (a bare folder name beside it is that folder; search/study_data.py).
               # resolution (train, inherit): default the data's own image size (testbed 32,
               #     digits 8, a folder of 48 px images 48).  Every trial records the
               #     resolution it trained at (trials.csv), and best.yaml / pareto/*.yaml carry
               #     it, so `nasscale train best.yaml` trains at the resolution that was scored.
               # threads (train, inherit): CPU threads for training, 1 to this machine's
               #     cores (default: chosen by nasscale; latency is measured at latency.threads)
    budget_resolution: deploy             # or train: where latency and FLOPs budgets (and the
                                          # networks of relative budgets) are measured: each
                                          # candidate's deploy resolution (the space's; the
                                          # default) or the resolution a train/inherit
                                          # evaluator trains at (not with latency.source lut)
    reward: {target: 1.0x mobilenet_v3_small, exponent: -0.07}  # MnasNet: score·(lat/T)^w
    constraints: ["latency <= 1.0x mobilenet_v3_small", "flops <= 300M"]
    latency: {source: measure, device: cpu, threads: 1, batch: 1}  # or source: lut, lut: FILE
             # (+ build: [space:NAME:N, ...]: measure what the table lacks before searching)
    sampler: {name: tpe, n_startup_trials: 10}   # tpe, nsga2, gp, random, grid
    pruner: {name: successive_halving, min_resource: 1, reduction_factor: 3}
             # multi-fidelity early stopping with Optuna's pruners: successive_halving
             # (min_resource, reduction_factor, min_early_stopping_rate), hyperband
             # (min_resource, max_resource, reduction_factor), median (n_startup_trials,
             # n_warmup_steps, interval_steps) or none (the default).  A pruner other than
             # none needs ONE objective, score or reward (budgets go in constraints), and
             # evaluator.kind: train, which reports held-out accuracy after every epoch:
             # Optuna's pruners compare the intermediate values of a single objective.
    trials: 30                            # finished trials the study should have (<= 10**7)
    timeout: 600                          # seconds (optional; <= 30 days): no trial starts
                                          # after it; --timeout overrides it
    seed: 0                               # 0 to 2**32 - 1
    storage: null                         # default: a journal file in the output folder
    references: [mobilenet_v3_small]      # drawn on the Pareto plot (evaluated once)
    max_memory_gb: 8                      # candidates estimated above it fail without building

Everything is validated on load; errors name the file, line and field.  Every integer key
goes through ``check_int`` with a stated range (a float, a bool, a string such as ``1e20`` or
a value past the bound is refused, never truncated or run).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from nasscale.errors import NasscaleError, SpecError, suggest
from nasscale.grammar.yaml_io import check_keys, in_file, read_yaml
from nasscale.scoring.evaluators import parse_eval_resolution
from nasscale.search.limits import (  # noqa: F401  (the limits: API of study files)
    EVALUATOR_INTS,
    MAX_SEED,
    MAX_THREADS,
    MAX_TIMEOUT_S,
    MAX_TRIALS,
    PRUNER_INTS,
    check_int,
    check_seconds,
    check_study_name,
)
from nasscale.search.locate import check_train_settings

STUDY_KEYS = ("name", "description", "space", "coefficients", "objectives", "evaluator",
              "reward",
              "constraints", "budget_resolution", "latency", "sampler", "pruner", "trials",
              "timeout", "seed", "storage", "references", "max_memory_gb")
METRICS = ("score", "reward", "latency", "flops", "params")
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "nsga2", "gp", "random", "grid")
EVALUATOR_KINDS = ("proxy", "train", "python", "inherit")
TRAINED_KINDS = ("train", "inherit")  # evaluators that train: a training resolution, threads
#: where budgets are measured: each candidate's deploy resolution, or the trained one
BUDGET_RESOLUTIONS = ("deploy", "train")
TRAIN_SIGNALS = ("accuracy", "sotl")
EVALUATOR_KEYS = {
    "proxy": ("kind", "proxy", "batch_size", "resolution", "data"),
    "train": ("kind", "data", "epochs", "batch_size", "lr", "weight_decay", "subset",
              "val_fraction", "resolution", "device", "amp", "channels_last", "augment",
              "progressive", "signal", "ema", "warmup", "threads"),
    "python": ("kind", "target", "name"),
    "inherit": ("kind", "parent", "weights", "steps", "data", "batch_size", "lr",
                "weight_decay", "subset", "val_fraction", "resolution", "device", "amp",
                "channels_last", "threads"),
}
LATENCY_KEYS = ("source", "lut", "build", "device", "threads", "batch", "dtype",
                "channels_last", "compile", "clock")
SAMPLER_KEYS = ("name", "n_startup_trials", "population_size", "multivariate")
#: Optuna pruners by study name, with the keys each takes (``optuna.pruners.<Class>``)
PRUNERS = {
    "successive_halving": ("min_resource", "reduction_factor", "min_early_stopping_rate"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps"),
    "none": (),
}


class Section(Mapping):
    """One section of a study file, typed: its attributes carry the defaults (in one place),
    and it stays a read-only mapping of the values as written, which is what the study's
    fingerprint and outputs store (a study stored before a default changed still resumes)."""

    def __init__(self, given: Mapping | None = None):
        self._given = dict(given or {})

    def __getitem__(self, key: str) -> Any:
        return self._given[key]

    def __iter__(self):
        return iter(self._given)

    def __len__(self) -> int:
        return len(self._given)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._given!r})"

    def as_dict(self) -> dict[str, Any]:
        return dict(self._given)

    def _get(self, key: str, default: Any) -> Any:
        value = self._given.get(key)
        return default if value is None else value


class LatencyConfig(Section):
    """``latency:`` — how latency is measured (``source: measure``) or predicted (``lut``)."""

    @property
    def source(self) -> str:
        return self._get("source", "measure")

    @property
    def lut(self) -> str | None:
        return self._given.get("lut")

    @property
    def build(self) -> tuple[str, ...]:
        return tuple(self._given.get("build") or ())

    @property
    def device(self) -> str:
        return self._get("device", "cpu")

    @property
    def threads(self) -> int:
        return int(self._given.get("threads") or 1)

    @property
    def batch(self) -> int:
        return int(self._get("batch", 1))

    @property
    def dtype(self) -> str:
        return self._get("dtype", "float32")

    @property
    def channels_last(self) -> bool:
        return bool(self._given.get("channels_last"))

    @property
    def compile(self) -> bool:
        return bool(self._given.get("compile", False))

    @property
    def clock(self) -> str:
        return self._get("clock", "wall")


class SamplerConfig(Section):
    """``sampler:`` — Optuna's sampler and its settings."""

    @property
    def name(self) -> str:
        return self._get("name", "tpe")

    @property
    def n_startup_trials(self) -> int:
        return int(self._get("n_startup_trials", 10))

    @property
    def population_size(self) -> int:
        return int(self._get("population_size", 50))

    @property
    def multivariate(self) -> bool:
        return bool(self._get("multivariate", True))


class PrunerConfig(Section):
    """``pruner:`` — Optuna's pruner (``none``: trials are never stopped early) and its keys."""

    @property
    def name(self) -> str:
        return self._get("name", "none")

    @property
    def options(self) -> dict[str, Any]:
        """The pruner's own keyword arguments (every key but ``name``)."""
        return {k: v for k, v in self._given.items() if k != "name"}


class RewardConfig(Section):
    """``reward:`` — MnasNet's ``score × (latency / target)^exponent``."""

    @property
    def target(self) -> str:
        return self._given["target"]

    @property
    def exponent(self) -> float:
        return float(self._get("exponent", -0.07))


class EvaluatorConfig(Section):
    """``evaluator:`` — what scores a candidate: a zero-cost ``proxy`` (or FLOPs/params),
    ``train`` (short training), ``python`` (a user function) or ``inherit`` (weights carried
    from a trained parent, then fine-tuned).  Which keys each kind takes: ``EVALUATOR_KEYS``."""

    @property
    def kind(self) -> str:
        return self._given["kind"]

    @property
    def proxy(self) -> str:
        return self._get("proxy", "naswot")

    @property
    def target(self) -> str:
        return self._given["target"]

    @property
    def name(self) -> str:
        return self._get("name", "score")

    @property
    def signal(self) -> str:
        return self._get("signal", "accuracy")

    @property
    def data(self) -> str | None:
        """The data set (a bundled name, an image folder or a .npz); ``train`` defaults to
        digits, a proxy to random inputs, ``inherit`` has to say."""
        return self._get("data", "digits" if self.kind == "train" else None)

    @property
    def batch_size(self) -> int | None:
        return self._get("batch_size", 16 if self.kind == "proxy" else None)

    @property
    def resolution(self) -> int | float | None:
        """Pixels, or a float: a fraction of each candidate's own resolution (``0.5x``);
        ``None``: a proxy's candidate's own, a trained evaluator's the data's own image size
        (``study_data.default_resolution``)."""
        value = self._given.get("resolution")
        return None if value is None else parse_eval_resolution(value)

    @property
    def threads(self) -> int | None:
        """CPU threads for a trained evaluator's training (``None``: chosen by nasscale)."""
        return self._given.get("threads")

    @property
    def parent(self) -> str:
        return self._given["parent"]

    @property
    def weights(self) -> str:
        return str(self._given["weights"])

    def train_settings(self, seed: int, image_size: int | None = None):
        """The :class:`nasscale.scoring.train.TrainSettings` of a ``train`` or ``inherit``
        evaluator (inherit: its fine-tuning, ``DEFAULTS`` of ``search/inherit.py`` under what
        the file says).  Without a resolution it trains at the data's own ``image_size``
        (``study_data.default_resolution``); a relative one is scaled per candidate by the
        evaluator."""
        from dataclasses import fields

        from nasscale.scoring.train import TrainSettings
        from nasscale.search.study_data import default_resolution

        names = {f.name for f in fields(TrainSettings)} - {"resolution", "seed"}
        given = {k: v for k, v in self._given.items() if k in names}
        res = self.resolution
        pixels = res if isinstance(res, int) else default_resolution(image_size)
        if self.kind == "inherit":
            from nasscale.search.inherit import DEFAULTS

            given = {**DEFAULTS, **given}
            return TrainSettings(**given, resolution=pixels, seed=seed)
        from dataclasses import replace

        from nasscale.scoring.train import recipe_for

        # a testbed's own recipe under what the file says (``nasscale train``'s defaults)
        return replace(recipe_for(self.data), **given, resolution=pixels, seed=seed)


#: field of ``StudySpec`` -> its typed section
SECTIONS = {"latency": LatencyConfig, "sampler": SamplerConfig, "pruner": PrunerConfig,
            "reward": RewardConfig, "evaluator": EvaluatorConfig}


@dataclass(frozen=True)
class StudySpec:
    name: str
    space: str | None  # a search space name or path; or None with ``coefficients``
    objectives: tuple[tuple[str, str], ...]  # (metric, direction)
    evaluator: EvaluatorConfig
    constraints: tuple[str, ...] = ()
    budget_resolution: str = "deploy"  # or train: see BUDGET_RESOLUTIONS and the module doc
    reward: RewardConfig | None = None
    latency: LatencyConfig = field(default_factory=lambda: LatencyConfig({"source": "measure"}))
    sampler: SamplerConfig = field(default_factory=lambda: SamplerConfig({"name": "tpe"}))
    pruner: PrunerConfig = field(default_factory=lambda: PrunerConfig({"name": "none"}))
    trials: int | None = None
    timeout: float | None = None
    seed: int = 0
    storage: str | None = None
    references: tuple[str, ...] = ()
    max_memory_gb: float = 8.0
    description: str = ""
    path: str = ""  # the file it came from
    coefficients: dict[str, Any] | None = None  # EfficientNet step 1 (search/coefficients.py)

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():  # a plain mapping (tests, callers) becomes typed
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                object.__setattr__(self, name, cls(value))

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.objectives)

    @property
    def needs_latency(self) -> bool:
        return ("latency" in self.metrics or self.reward is not None
                or any(c.strip().startswith("latency") for c in self.constraints))

    @property
    def has_budgets(self) -> bool:
        """Whether latency or FLOPs are measured against something (a budget, an objective)."""
        return self.needs_latency or bool(self.constraints) or "flops" in self.metrics

    @property
    def data_source(self) -> str | None:
        """The evaluator's data as a loader takes it: a name, or the path resolved against
        the study file (``study_data.resolve_data``)."""
        from nasscale.search.study_data import resolve_data

        data = self.evaluator.data if self.evaluator.kind != "python" else None
        return None if data is None else resolve_data(data, self.path)

    def replace(self, **changes: Any) -> "StudySpec":
        from dataclasses import replace

        return replace(self, **changes)


def _int_key(cfg: Mapping, key: str, where: str, ranges: Mapping, auto: bool = False) -> None:
    """``cfg[key]`` checked against its range in ``ranges``, when given."""
    if key in cfg:
        low, high = ranges[key]
        check_int(cfg[key], f"{where}.{key}", low, high, auto)


def pruner_from_data(value: Any, objectives: dict, evaluator: dict) -> dict[str, Any]:
    """The ``pruner:`` section, checked: a known name (or a bare name, ``pruner: median``),
    that pruner's keys, values in range, and nasscale's rule that stopping trials early needs
    one objective (score or reward) and the train evaluator."""
    if value is None or isinstance(value, str):
        value = {"name": value or "none"}
    cfg = dict(check_keys(value, ("name", *sorted({k for v in PRUNERS.values() for k in v})),
                          "pruner", required=("name",)))
    name = cfg["name"] if cfg["name"] is not None else "none"
    if name not in PRUNERS:
        raise SpecError(f"unknown pruner{suggest(str(name), tuple(PRUNERS))}; allowed: "
                        f"{', '.join(PRUNERS)}", ("pruner.name",))
    cfg["name"] = name
    for key in cfg:
        if key != "name" and key not in PRUNERS[name]:
            raise SpecError(f"not a setting of pruner {name}; it takes "
                            f"{', '.join(PRUNERS[name]) or 'no settings'}", (f"pruner.{key}",))
    for key in PRUNER_INTS:
        _int_key(cfg, key, "pruner", PRUNER_INTS,
                 auto=key == "max_resource" or (key == "min_resource"
                                                and name == "successive_halving"))
    if name == "none":
        return cfg
    metrics = list(objectives)
    if len(metrics) != 1 or metrics[0] not in ("score", "reward") or evaluator["kind"] != "train":
        raise SpecError(
            f"{name} needs a single objective, score or reward, and evaluator.kind: train "
            f"(Optuna's pruners compare the per-epoch values of one objective, and only "
            f"training reports them); this study has objectives {', '.join(metrics)} and "
            f"evaluator.kind {evaluator['kind']}.  Use objectives {{score: maximize}} with the "
            f"budgets as constraints, or {{reward: maximize}}, with evaluator {{kind: train, "
            f"...}}; or pruner {{name: none}}", ("pruner",))
    epochs = evaluator.get("epochs")
    if name == "hyperband":
        cfg.setdefault("max_resource", epochs if epochs is not None else "auto")
        if isinstance(cfg["max_resource"], int) and cfg["max_resource"] < cfg.get("min_resource",
                                                                                 1):
            raise SpecError(f"must be >= min_resource ({cfg.get('min_resource', 1)}), got "
                            f"{cfg['max_resource']}", ("pruner.max_resource",))
    first = cfg.get("min_resource", 1)
    if name == "successive_halving" and isinstance(first, int):  # its first rung
        first *= cfg.get("reduction_factor", 4) ** cfg.get("min_early_stopping_rate", 0)
    if name != "median" and isinstance(epochs, int) and isinstance(first, int) \
            and first >= epochs:
        raise SpecError(f"the first rung is at epoch {first}, not before evaluator.epochs "
                        f"{epochs}: no trial would be stopped early (a trial is never stopped "
                        f"after its last epoch); use a smaller min_resource (or "
                        f"min_early_stopping_rate) or more epochs", ("pruner.min_resource",))
    return cfg


def study_from_data(data: Any, path: str = "") -> StudySpec:
    """The typed study of a study file's data; every bad field is a ``SpecError`` naming it.
    Sections are read in a fixed order, so a file with several mistakes reports the same one
    first every time."""
    data = check_keys(data, STUDY_KEYS, "", required=("name", "objectives", "evaluator"))
    coefficients = _coefficients(data)
    objectives = _objectives(data)
    evaluator = _evaluator(data, path)
    reward = _reward(data, objectives)
    constraints = _constraints(data)
    latency = _latency(data)
    budget_resolution = _budget_resolution(data, evaluator, latency)
    sampler = _sampler(data)
    max_memory_gb = _max_memory(data)
    trials, timeout = _limits(data, coefficients, sampler)
    references, storage = _references(data), _storage(data)
    _evaluator_numbers(evaluator)
    pruner = pruner_from_data(data.get("pruner"), objectives, evaluator)
    name = check_study_name(data["name"])
    seed = check_int(data.get("seed", 0), "seed", 0, MAX_SEED)
    return StudySpec(
        name=name, space=str(data["space"]) if "space" in data else None,
        coefficients=coefficients,
        objectives=tuple(objectives.items()), evaluator=dict(evaluator),
        constraints=tuple(constraints), budget_resolution=budget_resolution, reward=reward,
        latency=latency, sampler=sampler,
        pruner=pruner,
        trials=trials, timeout=timeout, seed=seed,
        storage=storage, references=tuple(map(str, references)),
        max_memory_gb=float(max_memory_gb),
        description=str(data.get("description", "")), path=path)


def _coefficients(data: dict) -> dict | None:
    if ("space" in data) == ("coefficients" in data):
        raise SpecError("give either space (an architecture search) or coefficients (a "
                        "compound-scaling coefficient grid)", ("space",))
    if "coefficients" not in data:
        return None
    from nasscale.search.coefficients import coefficient_space_from_data

    coefficient_space_from_data(data["coefficients"])  # validate now, with its field names
    return dict(data["coefficients"])


def _objectives(data: dict) -> dict:
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
    return objectives


def _evaluator(data: dict, path: str) -> dict:
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
    if kind == "train":
        check_train_settings({k: v for k, v in evaluator.items() if k != "signal"})
        if evaluator.get("signal", "accuracy") not in TRAIN_SIGNALS:
            raise SpecError(f"must be one of {', '.join(TRAIN_SIGNALS)} (held-out top-1, or "
                            f"minus the training loss: SoTL), got {evaluator['signal']!r}",
                            ("evaluator.signal",))
    if kind in TRAINED_KINDS and "threads" in evaluator:
        _threads(evaluator["threads"])
    if kind == "inherit":  # the parent must contain the whole space; the weights must exist
        from nasscale.search.inherit_config import check_config

        check_config(evaluator, data.get("space"), path)
    elif evaluator.get("data") is not None and kind != "python":
        from nasscale.search.study_data import resolve_data

        resolve_data(evaluator["data"], path)  # a name, or a path that exists
    return evaluator


def _threads(value: Any) -> int:
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may run on
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cores:
        raise SpecError(f"must be an integer from 1 to {cores} (this machine's cores: CPU "
                        f"threads for training), got {value!r}", ("evaluator.threads",))
    return value


def _budget_resolution(data: dict, evaluator: dict, latency: dict) -> str:
    """``budget_resolution``: deploy (each candidate's own) or train (the evaluator's)."""
    value = data.get("budget_resolution", "deploy")
    if value not in BUDGET_RESOLUTIONS:
        raise SpecError(f"must be deploy (each candidate's own resolution, the space's) or "
                        f"train (the resolution the evaluator trains at), got {value!r}",
                        ("budget_resolution",))
    if value == "train" and evaluator["kind"] not in TRAINED_KINDS:
        raise SpecError(f"train needs an evaluator that trains (kind train or inherit); this "
                        f"one is kind {evaluator['kind']}", ("budget_resolution",))
    if value == "train" and latency.get("source") == "lut":
        raise SpecError("train cannot use latency.source lut (the table holds the space's "
                        "deploy resolutions); measure latency (source: measure) or use deploy",
                        ("budget_resolution",))
    return value


def _evaluator_numbers(evaluator: dict) -> None:
    for key in EVALUATOR_INTS:
        _int_key(evaluator, key, "evaluator", EVALUATOR_INTS)
    if "resolution" in evaluator:
        parse_eval_resolution(evaluator["resolution"], "evaluator.resolution")


def _reward(data: dict, objectives: dict) -> dict | None:
    if "reward" in objectives and data.get("reward") is None:
        raise SpecError("the 'reward' objective needs a reward: {target: ..., exponent: ...} "
                        "section", ("objectives.reward",))
    reward = data.get("reward")
    if reward is None:
        return None
    reward = dict(check_keys(reward, ("target", "exponent"), "reward", required=("target",)))
    exponent = reward.setdefault("exponent", -0.07)
    if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) \
            or not math.isfinite(exponent) or exponent > 0:
        raise SpecError(f"must be a number <= 0 (MnasNet uses -0.07), got {exponent!r}",
                        ("reward.exponent",))
    return reward


def _constraints(data: dict) -> list:
    constraints = data.get("constraints") or []
    if not isinstance(constraints, list) or not all(isinstance(c, str) for c in constraints):
        raise SpecError("must be a list of budget strings such as 'flops <= 300M' or "
                        "'latency <= 0.8x mobilenet_v3_large'", ("constraints",))
    return constraints


def _latency(data: dict) -> dict:
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
        _build_counts(build)
    _latency_numbers(latency)
    return latency


def _build_counts(build: list) -> None:
    """Each ``space:NAME:N`` source of ``latency.build`` samples a bounded number of networks."""
    from nasscale.search.sources import sample_count

    for i, source in enumerate(build):
        if source.startswith("space:"):
            try:
                sample_count(source)
            except NasscaleError as err:
                raise SpecError(str(err), (f"latency.build[{i}]",)) from None


def _latency_numbers(latency: dict) -> None:
    """``threads`` and ``batch`` are integers in range (the cores of the machine that measures
    are checked when it measures), the switches true or false."""
    from nasscale.latency.key import MAX_BATCH

    _int_key(latency, "threads", "latency", {"threads": (1, MAX_THREADS)})
    _int_key(latency, "batch", "latency", {"batch": (1, MAX_BATCH)})
    for key in ("channels_last", "compile"):
        if key in latency and not isinstance(latency[key], bool):
            raise SpecError(f"must be true or false, got {latency[key]!r}", (f"latency.{key}",))


def _sampler(data: dict) -> dict:
    sampler = dict(check_keys(data.get("sampler") or {}, SAMPLER_KEYS, "sampler"))
    sampler.setdefault("name", "tpe")
    if sampler["name"] not in SAMPLERS:
        raise SpecError(f"unknown sampler{suggest(str(sampler['name']), SAMPLERS)}; allowed: "
                        f"{', '.join(SAMPLERS)}", ("sampler.name",))
    _int_key(sampler, "n_startup_trials", "sampler", {"n_startup_trials": (0, MAX_TRIALS)})
    _int_key(sampler, "population_size", "sampler", {"population_size": (2, 100_000)})
    if "multivariate" in sampler and not isinstance(sampler["multivariate"], bool):
        raise SpecError(f"must be true or false, got {sampler['multivariate']!r}",
                        ("sampler.multivariate",))
    return sampler


def _max_memory(data: dict) -> float:
    max_memory_gb = data.get("max_memory_gb", 8.0)
    if isinstance(max_memory_gb, bool) or not isinstance(max_memory_gb, (int, float)) \
            or not math.isfinite(max_memory_gb) or max_memory_gb <= 0:
        raise SpecError(f"must be a number of gigabytes > 0 (candidates estimated to need more "
                        f"fail without being built), got {max_memory_gb!r}", ("max_memory_gb",))
    return max_memory_gb


def _limits(data: dict, coefficients, sampler: dict) -> tuple:
    trials = data.get("trials")
    timeout = data.get("timeout")
    if trials is None and timeout is None and coefficients is None:
        raise SpecError("give trials and/or timeout", ("trials",))
    if sampler["name"] == "grid" and coefficients is None:
        raise SpecError("grid samples coefficient studies only (an architecture space is far "
                        "too large to enumerate); use tpe, nsga2, gp or random",
                        ("sampler.name",))
    if trials is not None:
        check_int(trials, "trials", 1, MAX_TRIALS)
    if timeout is not None:
        check_seconds(timeout, "timeout")
    return trials, timeout


def _references(data: dict) -> list:
    references = data.get("references") or []
    if not isinstance(references, list):
        raise SpecError("must be a list of architecture names", ("references",))
    return references


def _storage(data: dict) -> str | None:
    storage = data.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise SpecError("must be a storage URL string or null", ("storage",))
    return storage


def load_study(path: str | os.PathLike) -> StudySpec:
    path = Path(path)
    if not path.exists():
        raise NasscaleError(f"{path}: no such study file")
    data, text = read_yaml(path)
    try:
        return study_from_data(data, str(path))
    except SpecError as err:
        raise in_file(err, path, text) from None

