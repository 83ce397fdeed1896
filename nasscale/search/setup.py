"""A study's set-up, done once in the main process: the Optuna study opened or created under
a lock, the fingerprint of its settings checked, relative budgets resolved and stored on the
study (user attributes) with the latency key and the reference networks' scores, so that
every worker and every resumed run reads them instead of measuring again.  Also the
options of a run and the Optuna sampler and pruner a study names (``search/runner.py`` runs
the trials)."""
from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from nasscale import zoo
from nasscale.errors import NasscaleError
from nasscale.latency import available_cores
from nasscale.latency.key import MeasurementKey
from nasscale.search.latency_source import (
    ensure_table,
    evaluate_references,
    latency_settings,
    make_latency_source,
    resolve_budgets,
)
from nasscale.search.limits import MAX_TRIALS, check_int, check_seconds, check_study_name
from nasscale.search.locate import make_space
from nasscale.search.objective import Constraint, Objective
from nasscale.search.storage import (
    normalise_url,
    open_storage,
    recover_stale_trials,
    redact,
    setup_lock,
    with_retry,
)
from nasscale.search.study import StudySpec
from nasscale.search.study_data import budget_line, budget_scale, chance_info, evaluator_label


@dataclass
class RunOptions:
    out: Path
    n_trials: int | None = None
    timeout: float | None = None
    storage: str | None = None
    study_name: str | None = None
    workers: int = 1
    progress: bool = True
    own_budgets: bool = False  # resolve relative budgets on this machine, not the study's
    storage_retry: float = 300.0  # seconds a storage outage is retried before giving up


@dataclass
class Setup:
    """Everything a worker needs, picklable: the study, resolved budgets and references."""

    study: StudySpec
    study_name: str
    storage: str | None
    out: str
    constraints: tuple[Constraint, ...]
    reward: tuple[float, float] | None
    latency_key: dict = field(default_factory=dict)
    latency_reference: dict | None = None  # timed against it (latency.source.Measured)
    references: dict = field(default_factory=dict)
    score_name: str = "score"
    evaluator_label: str = "score"
    target: int | None = None  # the study's total trials
    storage_retry: float = 300.0
    chance: dict | None = None  # trained accuracy: classes, held-out size, chance and its limit


def make_sampler(study: StudySpec, worker: int = 0, grid: dict | None = None):
    cfg = study.sampler
    seed = (study.seed + worker) % 2 ** 32  # the range numpy's random states take
    name = cfg.name
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed,
                                             population_size=cfg.population_size)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed,
                                         n_startup_trials=cfg.n_startup_trials)
    if name == "grid":
        return optuna.samplers.GridSampler(grid or make_space(study).grid(), seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.n_startup_trials,
                                      multivariate=cfg.multivariate,
                                      constant_liar=True)


def make_pruner(study: StudySpec):
    """The study's Optuna pruner (``NopPruner`` for none: Optuna's own default would be a
    median pruner).  Only single-objective train studies have one (see study.py)."""
    cls = {"successive_halving": optuna.pruners.SuccessiveHalvingPruner,
           "hyperband": optuna.pruners.HyperbandPruner,
           "median": optuna.pruners.MedianPruner}.get(study.pruner.name)
    return optuna.pruners.NopPruner() if cls is None else cls(**study.pruner.options)


def make_objective(setup: Setup) -> Objective:
    """The trial objective of a set-up study (in whichever process runs trials).  Training
    sets its own threads (``evaluator.threads``, else the cores other processes leave idle:
    ``nasscale.scoring.threads``); proxies run at ``latency.threads``, and latency is
    measured at them (the measuring code sets them and puts them back)."""
    import torch  # heavy: torch (only the process that runs trials needs it)

    study = setup.study
    torch.set_num_threads(study.latency.threads)
    evaluator = study.make_evaluator()
    return Objective(
        space=make_space(study), metrics=study.metrics,
        evaluator=evaluator, constraints=setup.constraints,
        latency=make_latency_source(study, setup.latency_key, setup.latency_reference)
        if study.needs_latency else None,
        reward=setup.reward, seed=study.seed, max_memory_gb=study.max_memory_gb,
        study_name=setup.study_name, pruner=study.pruner.name, target=setup.target,
        budget_at=budget_scale(study, evaluator))


def target_trials(study: StudySpec, options: RunOptions) -> int | None:
    if options.n_trials is not None:
        return options.n_trials
    if study.trials is None and study.coefficients is not None:
        return len(make_space(study).triples())  # the whole grid
    return study.trials


def run_timeout(study: StudySpec, options: RunOptions) -> float | None:
    """Seconds after which no trial starts: ``--timeout`` (``options.timeout``), else the
    study file's ``timeout``; ``None``: no limit."""
    return options.timeout if options.timeout is not None else study.timeout


def check_options(options: RunOptions) -> None:
    """The run's own limits, in the ranges a study file's take (one-line errors naming the
    command-line option)."""
    if options.n_trials is not None:
        check_int(options.n_trials, "--n-trials", 1, MAX_TRIALS)
    if options.timeout is not None:
        check_seconds(options.timeout, "--timeout")
    if options.study_name is not None:
        check_study_name(options.study_name, "--study-name")
    check_workers(options.workers)


def describe_storage(url: str | None, out: Path) -> str:
    return redact(url) if url else str(out / "study.journal")


#: worker processes per core at most: each imports torch (hundreds of MB); more than a few a
#: core only share the CPU, and thousands exhaust memory before the first trial
WORKERS_PER_CORE = 4


def check_workers(workers: int) -> int:
    cores = available_cores()
    most = WORKERS_PER_CORE * cores
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= most:
        raise NasscaleError(f"--workers: must be an integer from 1 to {most} ({WORKERS_PER_CORE}"
                            f" per core of this machine's {cores}), got {workers!r}")
    if workers > cores:
        print(f"nasscale: warning: {workers} workers on {cores} cores share the CPU",
              file=sys.stderr)
    return workers


def _fingerprint(study: StudySpec) -> dict:
    """What must not change between runs of one Optuna study.  The pruner is in it only when
    there is one, so studies stored before pruners existed still resume."""
    evaluator = {k: v for k, v in study.evaluator.as_written().items()
                 if k != "threads"}  # speed only
    out = {"space": study.space or study.coefficients,
           "objectives": [list(o) for o in study.objectives],
           "evaluator": evaluator, "constraints": list(study.constraints),
           "reward": study.reward.as_dict() if study.reward else None, "seed": study.seed,
           "latency": {k: v for k, v in study.latency.items() if k != "lut"}}
    if study.pruner.name != "none":
        out["pruner"] = study.pruner.as_dict()
    if study.budget_resolution != "deploy":
        out["budget_resolution"] = study.budget_resolution
    return out


def _in_study(study: StudySpec, section: str, fn):
    """``fn()``; a ``NasscaleError`` it raises names the study file and the field:
    ``study.yaml: latency.threads: ...``."""
    try:
        return fn()
    except NasscaleError as err:
        where = study.path or "study"
        msg = str(err)
        if msg.startswith(where):
            raise
        head = re.match(r"([A-Za-z_][\w.\[\]]*): ", msg)
        if head and head.group(1).split(".")[0] == section:
            text = msg
        elif head and " " not in head.group(1):
            text = f"{section}.{msg}"
        else:
            text = f"{section}: {msg}"
        raise NasscaleError(f"{where}: {text}") from None


def check_references(study: StudySpec) -> None:
    """Every ``references`` name loads (before anything is measured)."""
    for i, name in enumerate(study.references or ()):
        try:
            zoo.load(name)
        except NasscaleError as err:
            raise NasscaleError(f"{study.path or 'study'}: references[{i}]: {err}") from None


def _check_key(study: StudySpec, shared: dict, name: str, options: RunOptions, at=None):
    """A worker measuring latency must measure like the study's first process did; else it is
    refused, or with ``--own-budgets`` it resolves the relative budgets on this machine."""
    if not study.needs_latency or study.latency.source == "lut":
        return None
    here = make_latency_source(study).key
    stored = shared.get("latency_key") or {}
    if here == stored:
        return None
    try:
        diffs = MeasurementKey.from_dict(here).differences(MeasurementKey.from_dict(stored))
    except NasscaleError:
        diffs = ["the stored key is not a measurement key"]
    if not options.own_budgets:
        raise NasscaleError(
            f"study {name!r}: this machine measures latency under another key than the study "
            f"({'; '.join(diffs)}), so its latencies would not compare with the stored budgets; "
            "run this worker on a machine like the first one, or pass --own-budgets to resolve "
            "the relative budgets on this machine")
    constraints, reward, key, reference = resolve_budgets(study, at)
    print(f"nasscale: --own-budgets: this worker measures on its own hardware "
          f"({'; '.join(diffs)}): " + "; ".join(f"{c.text} = {c.limit:.4g}" for c in constraints),
          file=sys.stderr)
    return {"constraints": [[c.text, c.metric, c.limit, c.op] for c in constraints],
            "reward": list(reward) if reward else None, "latency_key": key,
            "latency_reference": reference}


def prepare(study: StudySpec, options: RunOptions):
    """Open or create the Optuna study and resolve what every worker shares.  Returns
    ``(setup, optuna_study)``.  Done under ``setup_lock``: processes that start together wait
    for the first one's set-up and then read it, so a study has one set of resolved budgets."""
    # failed and interrupted trials are recorded with their reason (trials.csv, the summary,
    # the progress bar): Optuna's per-trial tracebacks would only bury them
    optuna.logging.set_verbosity(optuna.logging.CRITICAL)
    name = options.study_name or study.name
    url = normalise_url(options.storage or study.storage)
    space, evaluator = _check_before_opening(study)
    fingerprint = _fingerprint(study)
    at = budget_scale(study, evaluator)  # None: budgets at each candidate's own resolution
    with setup_lock(url, options.out):
        ostudy = _open_study(study, name, url, options)
        stored = ostudy.user_attrs.get("nasscale.fingerprint")
        attrs = _check_fingerprint(ostudy, stored, fingerprint, name, url, options)
        recovered = recover_stale_trials(ostudy)
        if recovered:
            print(f"nasscale: re-queued {len(recovered)} trial(s) of a worker that died: "
                  f"{recovered}", file=sys.stderr)
        ensure_table(study)  # a lookup table the study builds is completed before any trial
        shared = _shared_budgets(study, ostudy, attrs, name, options, at)
        setup = Setup(study=study, study_name=name, storage=url, out=str(options.out),
                      constraints=tuple(Constraint(*c) for c in shared["constraints"]),
                      reward=tuple(shared["reward"]) if shared["reward"] else None,
                      latency_key=shared["latency_key"],
                      latency_reference=shared.get("latency_reference"),
                      score_name=evaluator.name,
                      evaluator_label=evaluator_label(study, evaluator),
                      target=target_trials(study, options),
                      storage_retry=options.storage_retry,
                      chance=chance_info(study, evaluator))
        setup.references = _references(setup, ostudy, attrs, space)
        if stored != fingerprint:  # only once the set-up has succeeded
            ostudy.set_user_attr("nasscale.fingerprint", fingerprint)
        _name_metrics(ostudy, setup)
    if study.has_budgets:
        print(f"nasscale: {budget_line(study, evaluator, space)}", file=sys.stderr)
    return setup, ostudy


def _check_before_opening(study: StudySpec):
    """The space, the evaluator (data sets, user functions), the measurement settings and
    the references, each failing with the study file and field before anything is stored.
    Returns ``(space, evaluator)``."""
    space = _in_study(study, "space", lambda: make_space(study))
    evaluator = _in_study(study, "evaluator", study.make_evaluator)
    if study.needs_latency and study.latency.source != "lut":
        _in_study(study, "latency", lambda: latency_settings(study).key())
    check_references(study)
    return space, evaluator


def _open_study(study: StudySpec, name: str, url: str | None, options: RunOptions):
    """The Optuna study, created or loaded (storage outages retried), with the file's
    directions."""
    directions = [d for _, d in study.objectives]
    ostudy = with_retry(lambda: optuna.create_study(
        study_name=name, storage=open_storage(url, options.out), directions=directions,
        sampler=make_sampler(study), pruner=make_pruner(study), load_if_exists=True),
        "opening the study", options.storage_retry, url)
    if [d.name.lower() for d in ostudy.directions] != directions:
        raise NasscaleError(f"study {name!r} in {describe_storage(url, options.out)} has "
                            f"directions {[d.name.lower() for d in ostudy.directions]}, "
                            f"not {directions}; use --study-name or another --out")
    return ostudy


def _check_fingerprint(ostudy, stored, fingerprint: dict, name: str, url, options) -> dict:
    """The study's stored attributes; a study created with other settings is refused once it
    has trials (one whose set-up failed before any trial is set up again: ``{}``)."""
    if stored is None or stored == fingerprint:
        return ostudy.user_attrs
    if ostudy.get_trials(deepcopy=False):
        changed = sorted(k for k in {**stored, **fingerprint}
                         if stored.get(k) != fingerprint.get(k))
        raise NasscaleError(f"study {name!r} in {describe_storage(url, options.out)} "
                            f"was created with other settings ({', '.join(changed)} "
                            "differ); use --study-name or another --out")
    return {}


def _shared_budgets(study: StudySpec, ostudy, attrs: dict, name: str, options: RunOptions,
                    at) -> dict:
    """The resolved budgets every worker shares: measured once by the first run and stored;
    a later run checks that it measures under the same key (``_check_key``)."""
    shared = attrs.get("nasscale.shared")
    if shared is None:  # first run: resolve relative budgets by measuring, once
        constraints, reward, key, reference = resolve_budgets(study, at)
        shared = {"constraints": [[c.text, c.metric, c.limit, c.op] for c in constraints],
                  "reward": list(reward) if reward else None, "latency_key": key,
                  "latency_reference": reference}
        ostudy.set_user_attr("nasscale.shared", shared)
        return shared
    return _check_key(study, shared, name, options, at) or shared


def _references(setup: Setup, ostudy, attrs: dict, space) -> dict:
    """The reference networks' scores and costs: evaluated once, stored on the study."""
    references = attrs.get("nasscale.references")
    if references is None:
        names = setup.study.references or space.contains
        references = evaluate_references(setup, names, make_objective(setup))
        ostudy.set_user_attr("nasscale.references", references)
    return references


def _name_metrics(ostudy, setup: Setup) -> None:
    """optuna-dashboard's axis labels ("experimental" in Optuna since 3.2)."""
    if ostudy.metric_names:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ostudy.set_metric_names([setup.score_name if m == "score" else
                                 {"latency": "latency_ms"}.get(m, m)
                                 for m in setup.study.metrics])
