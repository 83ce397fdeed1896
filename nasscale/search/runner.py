"""Run a study: set up (once, in the main process), run trials (in K worker processes), write
outputs.

Set-up resolves everything that must be the same for every worker and every resumed run —
budgets relative to named networks, the latency measurement key, the reference networks'
scores — and stores it on the Optuna study (user attributes), so workers and later runs read
it instead of measuring again.  Trials run through Optuna's own storage: several processes
on one machine share the journal file, many machines share a PostgreSQL database; nasscale
never schedules trials itself.

``trials`` is the number of finished trials the study should have: re-running the same
command resumes and runs only what is missing (a ``kill -9`` loses only the trial that was
running; it is failed and re-queued on resume).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError
from nasscale.search.objective import CandidateFailed, Constraint, Objective
from nasscale.search.storage import open_storage, recover_stale_trials, redact
from nasscale.search.study import StudySpec

COUNTED_STATES = ("COMPLETE", "PRUNED", "FAIL")


@dataclass
class RunOptions:
    out: Path
    n_trials: int | None = None
    timeout: float | None = None
    storage: str | None = None
    study_name: str | None = None
    workers: int = 1
    progress: bool = True


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
    references: dict = field(default_factory=dict)
    score_name: str = "score"
    evaluator_label: str = "score"


def make_space(study: StudySpec):
    """The study's search space: a grammar space, or a coefficient grid."""
    if study.coefficients is not None:
        from nasscale.search.coefficients import coefficient_space_from_data

        return coefficient_space_from_data(study.coefficients)
    from nasscale.search.space_io import load_space

    return load_space(resolve_path(study.space, study.path))


def make_sampler(study: StudySpec, worker: int = 0, grid: dict | None = None):
    import optuna

    cfg = study.sampler
    seed = study.seed + worker
    name = cfg["name"]
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed,
                                             population_size=cfg.get("population_size", 50))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed,
                                         n_startup_trials=cfg.get("n_startup_trials", 10))
    if name == "grid":
        return optuna.samplers.GridSampler(grid or make_space(study).grid(), seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.get("n_startup_trials",
                                                                           10),
                                      multivariate=cfg.get("multivariate", True),
                                      constant_liar=True)


def make_pruner(study: StudySpec):
    """The study's Optuna pruner (``NopPruner`` for none: Optuna's own default would be a
    median pruner).  Only single-objective train studies have one (see study.py)."""
    import optuna

    cfg = dict(study.pruner)
    name = cfg.pop("name")
    cls = {"successive_halving": optuna.pruners.SuccessiveHalvingPruner,
           "hyperband": optuna.pruners.HyperbandPruner,
           "median": optuna.pruners.MedianPruner}.get(name)
    return optuna.pruners.NopPruner() if cls is None else cls(**cfg)


def finished_count(study) -> int:
    """Trials that count towards ``trials``: complete, pruned (over budget or stopped early)
    and failed ones, except failures of interrupted workers, which are re-queued."""
    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state.name in COUNTED_STATES and not str(
                t.user_attrs.get("reason", "")).startswith("interrupted"):
            n += 1
    return n


def split_quota(remaining: int, workers: int) -> list[int]:
    base, extra = divmod(max(0, remaining), workers)
    return [base + (1 if i < extra else 0) for i in range(workers)]


def make_objective(setup: Setup) -> Objective:
    """The trial objective of a set-up study (in whichever process runs trials)."""
    import torch

    from nasscale.search.evaluators import make_evaluator
    from nasscale.search.latency_source import make_latency_source

    study = setup.study
    torch.set_num_threads(int(study.latency.get("threads") or 1))
    return Objective(
        space=make_space(study), metrics=study.metrics,
        evaluator=make_evaluator(study), constraints=setup.constraints,
        latency=make_latency_source(study, setup.latency_key) if study.needs_latency else None,
        reward=setup.reward, seed=study.seed, max_memory_gb=study.max_memory_gb,
        study_name=setup.study_name, pruner=study.pruner["name"])


def worker_main(setup: Setup, quota: int | None, timeout: float | None, worker: int) -> None:
    """One worker process: open the shared storage, run ``quota`` trials (or until
    ``timeout``).  Its sampler is seeded with ``seed + worker``."""
    import optuna

    # failed and interrupted trials are recorded with their reason (trials.csv, the summary,
    # the progress bar): Optuna's per-trial tracebacks would only bury them
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if quota == 0:
        return
    storage = open_storage(setup.storage, Path(setup.out))
    ostudy = optuna.load_study(study_name=setup.study_name, storage=storage,
                               sampler=make_sampler(setup.study, worker),
                               pruner=make_pruner(setup.study))
    ostudy.optimize(make_objective(setup), n_trials=quota, timeout=timeout,
                    catch=(CandidateFailed,), gc_after_trial=True)


def resolve_path(value: str, study_path: str) -> str:
    """A path in a study file is relative to that file; a bare name is a name."""
    if (value.endswith((".yaml", ".yml", ".json")) or os.sep in value) and study_path \
            and not os.path.isabs(value):
        candidate = Path(study_path).parent / value
        if candidate.exists():
            return str(candidate)
    return value


def _spawn(setup: Setup, quotas: list[int], timeout: float | None) -> list[mp.Process]:
    ctx = mp.get_context("spawn")
    procs = []
    for i, quota in enumerate(quotas):
        p = ctx.Process(target=worker_main, args=(setup, quota, timeout, i), daemon=False,
                        name=f"nasscale-worker-{i}")
        p.start()
        procs.append(p)
    return procs


def run_trials(setup: Setup, ostudy, remaining: int | None, options: RunOptions) -> None:
    """Run the missing trials in ``options.workers`` processes (1: in this process), showing
    progress on stderr."""
    from nasscale.search.progress import Progress

    target = None if remaining is None else finished_count(ostudy) + remaining
    progress = Progress(ostudy, target, enabled=options.progress,
                        score=setup.study.metrics[0],
                        stopping=setup.study.pruner["name"] != "none")
    if options.workers <= 1:
        try:
            ostudy.optimize(make_objective(setup), n_trials=remaining, timeout=options.timeout,
                            catch=(CandidateFailed,), gc_after_trial=True,
                            callbacks=[lambda s, t: progress.update()])
        finally:
            progress.close()
        return
    quotas = split_quota(remaining, options.workers) if remaining is not None \
        else [None] * options.workers
    procs = _spawn(setup, quotas, options.timeout)
    try:
        while any(p.is_alive() for p in procs):
            progress.update()
            time.sleep(0.5)
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=30)  # the terminal sent them SIGINT too: Optuna fails their trial
        raise
    finally:
        progress.update()
        progress.close()
    bad = [p for p in procs if p.exitcode not in (0, None)]
    if bad:
        raise NasscaleError(f"{len(bad)} of {len(procs)} workers exited with an error "
                            f"(exit codes {[p.exitcode for p in bad]}); finished trials are "
                            "kept, re-run the command to resume")


def target_trials(study: StudySpec, options: RunOptions) -> int | None:
    if options.n_trials is not None:
        return options.n_trials
    if study.trials is None and study.coefficients is not None:
        return len(make_space(study).triples())  # the whole grid
    return study.trials


def remaining_trials(ostudy, target: int | None) -> int | None:
    if target is None:
        return None
    return max(0, target - finished_count(ostudy))


def describe_storage(url: str | None, out: Path) -> str:
    return redact(url) if url else str(out / "study.journal")


def check_workers(workers: int) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise NasscaleError(f"--workers: must be an integer >= 1, got {workers!r}")
    cores = os.cpu_count() or 1
    if workers > cores:
        print(f"nasscale: warning: {workers} workers on {cores} cores share the CPU",
              file=sys.stderr)
    return workers


def _fingerprint(study: StudySpec) -> dict:
    """What must not change between runs of one Optuna study.  The pruner is in it only when
    there is one, so studies stored before pruners existed still resume."""
    out = {"space": study.space or study.coefficients,
           "objectives": [list(o) for o in study.objectives],
           "evaluator": study.evaluator, "constraints": list(study.constraints),
           "reward": study.reward, "seed": study.seed,
           "latency": {k: v for k, v in study.latency.items() if k != "lut"}}
    if study.pruner["name"] != "none":
        out["pruner"] = study.pruner
    return out


def prepare(study: StudySpec, options: RunOptions):
    """Open or create the Optuna study and resolve what every worker shares.  Returns
    ``(setup, optuna_study)``."""
    import optuna

    from nasscale.search.evaluators import make_evaluator
    from nasscale.search.latency_source import (
        ensure_table,
        evaluate_references,
        resolve_budgets,
    )

    # failed and interrupted trials are recorded with their reason (trials.csv, the summary,
    # the progress bar): Optuna's per-trial tracebacks would only bury them
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    name = options.study_name or study.name
    url = options.storage or study.storage
    space = make_space(study)  # fail early on a bad space
    evaluator = make_evaluator(study)  # ... and on a bad dataset or user function
    storage = open_storage(url, options.out)
    directions = [d for _, d in study.objectives]
    ostudy = optuna.create_study(study_name=name, storage=storage, directions=directions,
                                 sampler=make_sampler(study), pruner=make_pruner(study),
                                 load_if_exists=True)
    if [d.name.lower() for d in ostudy.directions] != directions:
        raise NasscaleError(f"study {name!r} in {describe_storage(url, options.out)} has "
                            f"directions {[d.name.lower() for d in ostudy.directions]}, not "
                            f"{directions}; use --study-name or another --out")
    stored = ostudy.user_attrs.get("nasscale.fingerprint")
    if stored is None:
        ostudy.set_user_attr("nasscale.fingerprint", _fingerprint(study))
    elif stored != _fingerprint(study):
        now = _fingerprint(study)
        changed = sorted(k for k in {**stored, **now} if stored.get(k) != now.get(k))
        raise NasscaleError(f"study {name!r} in {describe_storage(url, options.out)} was "
                            f"created with other settings ({', '.join(changed)} differ); "
                            "use --study-name or another --out")
    recovered = recover_stale_trials(ostudy)
    if recovered:
        print(f"nasscale: re-queued {len(recovered)} trial(s) of a worker that died: "
              f"{recovered}", file=sys.stderr)
    shared = ostudy.user_attrs.get("nasscale.shared")
    ensure_table(study)  # a lookup table the study builds is completed before any trial
    if shared is None:  # first run: resolve relative budgets by measuring, once
        constraints, reward, key = resolve_budgets(study)
        shared = {"constraints": [[c.text, c.metric, c.limit, c.op] for c in constraints],
                  "reward": list(reward) if reward else None, "latency_key": key}
        ostudy.set_user_attr("nasscale.shared", shared)
    setup = Setup(study=study, study_name=name, storage=url, out=str(options.out),
                  constraints=tuple(Constraint(*c) for c in shared["constraints"]),
                  reward=tuple(shared["reward"]) if shared["reward"] else None,
                  latency_key=shared["latency_key"],
                  score_name=evaluator.name, evaluator_label=evaluator.describe())
    references = ostudy.user_attrs.get("nasscale.references")
    if references is None:
        names = study.references or space.contains
        references = evaluate_references(setup, names, make_objective(setup))
        ostudy.set_user_attr("nasscale.references", references)
    setup.references = references
    return setup, ostudy


def run_search(study: StudySpec, options: RunOptions) -> dict:
    """Set up, run the missing trials, write the outputs; returns the summary."""
    from nasscale.search.outputs import write_outputs

    check_workers(options.workers)
    options.out.mkdir(parents=True, exist_ok=True)
    setup, ostudy = prepare(study, options)
    remaining = remaining_trials(ostudy, target_trials(study, options))
    interrupted = False
    try:
        if remaining != 0:
            run_trials(setup, ostudy, remaining, options)
    except KeyboardInterrupt:
        interrupted = True
    summary = write_outputs(setup, ostudy, options.out)
    summary["interrupted"] = interrupted
    return summary
