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
               #     parent that contains every candidate, fine-tuned N steps
               #     (transfer/containment.py)
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

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError, SpecError, suggest
from nasscale.grammar.yaml_io import check_keys, in_file, read_yaml
from nasscale.reports.paths import resolve_path
from nasscale.scoring.data_source import resolve_data
from nasscale.scoring.evaluator_spec import BuildContext, EvaluatorSpec
from nasscale.scoring.kinds import EVALUATORS, evaluator_from_data
from nasscale.search.coefficients import coefficient_space_from_data
from nasscale.search.limits import (  # noqa: F401  (the limits: API of study files)
    MAX_SEED,
    MAX_THREADS,
    MAX_TIMEOUT_S,
    MAX_TRIALS,
    check_int,
    check_seconds,
    check_study_name,
)
from nasscale.search.locate import make_space
from nasscale.search.sections import (  # noqa: F401  (the sections' registries, re-exported)
    PRUNER_INTS,
    PRUNERS,
    SAMPLERS,
    LatencySection,
    PrunerSection,
    RewardSection,
    SamplerSection,
)
from nasscale.search.space_io import load_space

STUDY_KEYS = ("name", "description", "space", "coefficients", "objectives", "evaluator",
              "reward",
              "constraints", "budget_resolution", "latency", "sampler", "pruner", "trials",
              "timeout", "seed", "storage", "references", "max_memory_gb")
METRICS = ("score", "reward", "latency", "flops", "params")
DIRECTIONS = ("maximize", "minimize")
#: where budgets are measured: each candidate's deploy resolution, or the trained one
BUDGET_RESOLUTIONS = ("deploy", "train")
#: field of ``StudySpec`` -> its typed section
SECTIONS = {"latency": LatencySection, "sampler": SamplerSection, "pruner": PrunerSection,
            "reward": RewardSection}


@dataclass(frozen=True)
class StudySpec:
    name: str
    space: str | None  # a search space name or path; or None with ``coefficients``
    objectives: tuple[tuple[str, str], ...]  # (metric, direction)
    evaluator: EvaluatorSpec  # one of nasscale.scoring.kinds.EVALUATORS
    constraints: tuple[str, ...] = ()
    budget_resolution: str = "deploy"  # or train: see BUDGET_RESOLUTIONS and the module doc
    reward: RewardSection | None = None
    latency: LatencySection = field(default_factory=LatencySection.from_data)
    sampler: SamplerSection = field(default_factory=SamplerSection.from_data)
    pruner: PrunerSection = field(default_factory=PrunerSection.from_data)
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
        if not isinstance(self.evaluator, EvaluatorSpec):  # a plain mapping becomes a spec
            object.__setattr__(self, "evaluator", evaluator_from_data(self.evaluator))
        for name, cls in SECTIONS.items():  # a plain mapping (tests, callers) becomes typed
            value = getattr(self, name)
            if value is not None and not isinstance(value, cls):
                object.__setattr__(self, name, cls.from_data(value, name))

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
        data = getattr(self.evaluator, "data", None)
        return None if data is None else resolve_data(data, self.path)

    def make_evaluator(self):
        """The evaluator this study describes (``EvaluatorSpec.build``): data sets and user
        functions load here, so a bad path fails once, before any trial."""
        return self.evaluator.build(self.build_context())

    def build_context(self) -> BuildContext:
        """Where the evaluator is checked and built: this file, its seed and its space."""
        return BuildContext(seed=self.seed, path=self.path, context="study",
                            space=(lambda: make_space(self)) if self.space else None)

    def replace(self, **changes: Any) -> "StudySpec":
        return dataclasses.replace(self, **changes)


def pruner_from_data(value: Any, objectives: dict, evaluator: EvaluatorSpec) -> PrunerSection:
    """The ``pruner:`` section, checked (``PrunerSection``: a known name or a bare one,
    ``pruner: median``, that pruner's keys, values in range), and nasscale's rule that
    stopping trials early needs one objective (score or reward) and an evaluator that
    reports per-epoch values (train)."""
    section = PrunerSection.from_data(value)
    cfg, name = dict(section.written), section.name
    if name == "none":
        return section
    metrics = list(objectives)
    if len(metrics) != 1 or metrics[0] not in ("score", "reward") \
            or not evaluator.reports_epochs:
        raise SpecError(
            f"{name} needs a single objective, score or reward, and evaluator.kind: train "
            f"(Optuna's pruners compare the per-epoch values of one objective, and only "
            f"training reports them); this study has objectives {', '.join(metrics)} and "
            f"evaluator.kind {evaluator.kind}.  Use objectives {{score: maximize}} with the "
            f"budgets as constraints, or {{reward: maximize}}, with evaluator {{kind: train, "
            f"...}}; or pruner {{name: none}}", ("pruner",))
    epochs = getattr(evaluator, "epochs", None)
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
    return PrunerSection(name=name, written=cfg)


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
    pruner = pruner_from_data(data.get("pruner"), objectives, evaluator)
    name = check_study_name(data["name"])
    seed = check_int(data.get("seed", 0), "seed", 0, MAX_SEED)
    return StudySpec(
        name=name, space=str(data["space"]) if "space" in data else None,
        coefficients=coefficients,
        objectives=tuple(objectives.items()), evaluator=evaluator,
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


def _evaluator(data: dict, path: str) -> EvaluatorSpec:
    """The evaluator's spec (its keys checked by its kind), then what needs files: the data
    exists; an inherit parent contains the space and its weights exist."""
    spec = evaluator_from_data(data["evaluator"], "study")
    space = data.get("space")
    spec.check(BuildContext(path=path, space=(lambda: load_space(resolve_path(str(space), path)))
                            if space is not None else None))
    return spec


def _budget_resolution(data: dict, evaluator: EvaluatorSpec, latency: LatencySection) -> str:
    """``budget_resolution``: deploy (each candidate's own) or train (the evaluator's)."""
    value = data.get("budget_resolution", "deploy")
    if value not in BUDGET_RESOLUTIONS:
        raise SpecError(f"must be deploy (each candidate's own resolution, the space's) or "
                        f"train (the resolution the evaluator trains at), got {value!r}",
                        ("budget_resolution",))
    if value == "train" and not evaluator.trains:
        trains = " or ".join(k for k, cls in EVALUATORS.items() if cls.trains)
        raise SpecError(f"train needs an evaluator that trains (kind {trains}); this one is "
                        f"kind {evaluator.kind}", ("budget_resolution",))
    if value == "train" and latency.source == "lut":
        raise SpecError("train cannot use latency.source lut (the table holds the space's "
                        "deploy resolutions); measure latency (source: measure) or use deploy",
                        ("budget_resolution",))
    return value


def _reward(data: dict, objectives: dict) -> RewardSection | None:
    if "reward" in objectives and data.get("reward") is None:
        raise SpecError("the 'reward' objective needs a reward: {target: ..., exponent: ...} "
                        "section", ("objectives.reward",))
    reward = data.get("reward")
    return None if reward is None else RewardSection.from_data(reward)


def _constraints(data: dict) -> list:
    constraints = data.get("constraints") or []
    if not isinstance(constraints, list) or not all(isinstance(c, str) for c in constraints):
        raise SpecError("must be a list of budget strings such as 'flops <= 300M' or "
                        "'latency <= 0.8x mobilenet_v3_large'", ("constraints",))
    return constraints


def _latency(data: dict) -> LatencySection:
    return LatencySection.from_data(data.get("latency"))


def _sampler(data: dict) -> SamplerSection:
    return SamplerSection.from_data(data.get("sampler"))


def _max_memory(data: dict) -> float:
    max_memory_gb = data.get("max_memory_gb", 8.0)
    if isinstance(max_memory_gb, bool) or not isinstance(max_memory_gb, (int, float)) \
            or not math.isfinite(max_memory_gb) or max_memory_gb <= 0:
        raise SpecError(f"must be a number of gigabytes > 0 (candidates estimated to need more "
                        f"fail without being built), got {max_memory_gb!r}", ("max_memory_gb",))
    return max_memory_gb


def _limits(data: dict, coefficients, sampler: SamplerSection) -> tuple:
    trials = data.get("trials")
    timeout = data.get("timeout")
    if trials is None and timeout is None and coefficients is None:
        raise SpecError("give trials and/or timeout", ("trials",))
    if sampler.name == "grid" and coefficients is None:
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

