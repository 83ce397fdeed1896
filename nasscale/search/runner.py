"""Run a study: set up (once, in the main process), run trials (in K worker processes), write
outputs.

Set-up resolves everything that must be the same for every worker and every resumed run —
budgets relative to named networks, the latency measurement key, the reference networks'
scores — and stores it on the Optuna study (user attributes), so workers and later runs read
it instead of measuring again.  Trials run through Optuna's own storage: several processes
on one machine share the journal file, many machines share a PostgreSQL database; nasscale
never schedules trials itself.

``trials`` is the number of finished trials the study should have, whatever the number of
processes or machines: each worker runs trials one at a time (Optuna's ``optimize``) until
the study holds that many finished or running trials, so two commands started at once on
one storage finish the study's total between them, not twice it.  Re-running the same
command resumes and runs only what is missing (a ``kill -9`` or a Ctrl-C loses only the
trial that was running; it is failed and re-queued).  Each trial's random draws are seeded
from the study's seed and the trial's number, so a resumed run or a second worker draws new
points instead of replaying the first ones; a point drawn again reuses the earlier result.

A storage that stops answering (a database restarted mid-run) is retried with backoff for
``--storage-retry`` seconds; after that the run stops with one line, writes the outputs of
what had finished, and the same command resumes.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from nasscale.errors import NasscaleError
from nasscale.search.objective import (
    CandidateFailed,
    Constraint,
    Objective,
    Surplus,
    counted,
    requeued,
)
from nasscale.search.storage import (
    normalise_url,
    open_storage,
    recover_stale_trials,
    redact,
    setup_lock,
)
from nasscale.search.locate import make_space, resolve_path  # noqa: F401  (resolve_path: API)
from nasscale.search.study import StudySpec


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
    latency_reference: dict | None = None  # timed against it (see MeasuredLatency)
    references: dict = field(default_factory=dict)
    score_name: str = "score"
    evaluator_label: str = "score"
    target: int | None = None  # the study's total trials
    storage_retry: float = 300.0



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
    and failed ones, except failures of interrupted workers (re-queued) and surplus ones."""
    return len(counted(study.get_trials(deepcopy=False)))


def claimed_count(study) -> int:
    """Finished trials that count, plus running ones (each will count when it ends)."""
    trials = study.get_trials(deepcopy=False)
    return len(counted(trials)) + sum(1 for t in trials if t.state.name == "RUNNING")


class StorageDown(NasscaleError):
    """The storage did not answer for the whole retry period."""


def is_storage_error(err: BaseException) -> bool:
    """A database or journal that does not answer (not a problem of the candidate)."""
    from nasscale.search.objective import _is_storage_error

    return _is_storage_error(err)


def with_retry(fn, what: str, retry_for: float, storage: str | None = None):
    """``fn()``, retried with backoff (1, 2, 4 ... 30 s) while the storage does not answer,
    for ``retry_for`` seconds in all; then ``StorageDown``."""
    first = None
    delay = 1.0
    while True:
        try:
            return fn()
        except Exception as err:
            if not is_storage_error(err):
                raise
            now = time.monotonic()
            first = first or now
            text = redact(str(err).splitlines()[0] if str(err) else type(err).__name__)
            if now - first >= retry_for:
                raise StorageDown(
                    f"storage {redact(storage) or 'journal'}: no answer for {now - first:.0f} s "
                    f"while {what} ({text[:200]}); finished trials are kept, re-run the same "
                    "command to resume") from None
            print(f"nasscale: storage {redact(storage) or 'journal'} not answering while {what}"
                  f" ({text[:120]}); retrying in {delay:.0f} s", file=sys.stderr)
            time.sleep(delay)
            delay = min(30.0, delay * 2)


def quiet_storage_threads() -> None:
    """Optuna records heartbeats in a thread; when the database goes away that thread dies
    with a traceback on stderr.  The trial loop reports the outage (and retries) itself, so
    such a thread's storage error is dropped; any other thread error is shown as usual."""
    previous = threading.excepthook
    if getattr(previous, "_nasscale", False):
        return

    def hook(args) -> None:
        if not is_storage_error(args.exc_value):
            previous(args)

    hook._nasscale = True  # type: ignore[attr-defined]
    threading.excepthook = hook


def requeue_interrupted(ostudy, number: int | None, why: str) -> None:
    """Enqueue again the parameters of trial ``number``, stopped by ``why`` (it was failed
    with reason ``interrupted``, which does not count): a resumed run redoes it."""
    if number is None:
        return
    from optuna.trial import TrialState

    for t in ostudy.get_trials(deepcopy=False):
        if t.number != number:
            continue
        if t.state == TrialState.RUNNING:  # interrupted before Optuna could tell it
            ostudy._storage.set_trial_user_attr(t._trial_id, "reason",
                                                f"interrupted: {why}; re-queued")
            ostudy._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if str(t.user_attrs.get("reason", "interrupted")).startswith("interrupted") and \
                t.number not in requeued(ostudy.get_trials(deepcopy=False)):
            ostudy.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        return


def optimize(ostudy, objective: Objective, target: int | None, timeout: float | None,
             retry_for: float, storage: str | None = None, on_trial=None) -> None:
    """Run trials one at a time until the study holds ``target`` finished (or running)
    trials, or ``timeout`` seconds have passed.  Ctrl-C re-queues the running trial.
    ``on_trial(frozen_trial)`` is called after each trial is stored."""
    deadline = None if timeout is None else time.monotonic() + timeout
    objective.target = target
    quiet_storage_threads()
    while True:
        if target is not None and with_retry(lambda: claimed_count(ostudy), "counting trials",
                                             retry_for, storage) >= target:
            return
        if deadline is not None and time.monotonic() >= deadline:
            return
        objective.current = None
        try:
            with_retry(lambda: ostudy.optimize(
                objective, n_trials=1, catch=(CandidateFailed, Surplus), gc_after_trial=True,
                callbacks=[lambda s, t: on_trial(t)] if on_trial is not None else None),
                       "running a trial", retry_for, storage)
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                requeue_interrupted(ostudy, objective.current, "Ctrl-C")
            raise


def make_objective(setup: Setup) -> Objective:
    """The trial objective of a set-up study (in whichever process runs trials)."""
    import torch

    from nasscale.search.evaluation import make_evaluator
    from nasscale.search.latency_source import make_latency_source

    study = setup.study
    torch.set_num_threads(int(study.latency.get("threads") or 1))
    return Objective(
        space=make_space(study), metrics=study.metrics,
        evaluator=make_evaluator(study), constraints=setup.constraints,
        latency=make_latency_source(study, setup.latency_key, setup.latency_reference)
        if study.needs_latency else None,
        reward=setup.reward, seed=study.seed, max_memory_gb=study.max_memory_gb,
        study_name=setup.study_name, pruner=study.pruner["name"], target=setup.target)


def _watch_parent() -> None:
    """A worker whose parent ``nasscale search`` died (``kill -9``) stops like on Ctrl-C: its
    running trial is re-queued, and it never lingers as an orphan."""
    import _thread

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        _thread.interrupt_main()

    threading.Thread(target=watch, daemon=True, name="nasscale-parent-watch").start()


def worker_main(setup: Setup, timeout: float | None, worker: int) -> None:
    """One worker process: open the shared storage and run trials until the study has its
    total (or ``timeout``)."""
    import optuna

    # failed and interrupted trials are recorded with their reason (trials.csv, the summary,
    # the progress bar): Optuna's per-trial tracebacks would only bury them
    optuna.logging.set_verbosity(optuna.logging.CRITICAL)
    _watch_parent()
    try:
        storage = open_storage(setup.storage, Path(setup.out))
        ostudy = optuna.load_study(study_name=setup.study_name, storage=storage,
                                   sampler=make_sampler(setup.study, worker),
                                   pruner=make_pruner(setup.study))
        optimize(ostudy, make_objective(setup), setup.target, timeout, setup.storage_retry,
                 setup.storage)
    except KeyboardInterrupt:
        sys.exit(130)
    except NasscaleError as err:
        print(f"nasscale: error: worker {worker}: {err}", file=sys.stderr)
        sys.exit(2)


def _spawn(setup: Setup, workers: int, timeout: float | None) -> list[mp.Process]:
    ctx = mp.get_context("spawn")
    procs = []
    for i in range(workers):
        p = ctx.Process(target=worker_main, args=(setup, timeout, i), daemon=False,
                        name=f"nasscale-worker-{i}")
        p.start()
        procs.append(p)
    return procs


def run_trials(setup: Setup, ostudy, options: RunOptions, snapshot: list) -> None:
    """Run trials in ``options.workers`` processes (1: in this process) until the study has
    its total, showing progress on stderr.  ``snapshot`` keeps the last trials read, for the
    outputs if the storage goes away."""
    from nasscale.search.progress import Progress

    progress = Progress(ostudy, setup.target, enabled=options.progress,
                        score=setup.study.metrics[0],
                        stopping=setup.study.pruner["name"] != "none")

    def update(finished=None) -> None:
        try:
            snapshot[:] = ostudy.get_trials(deepcopy=False)
        except Exception:  # a storage outage: keep the last snapshot, with this trial in it
            if finished is not None:
                snapshot[:] = [t for t in snapshot if t.number != finished.number] + [finished]
                snapshot.sort(key=lambda t: t.number)
        progress.update(snapshot)

    if options.workers <= 1:
        try:
            optimize(ostudy, make_objective(setup), setup.target, options.timeout,
                     setup.storage_retry, setup.storage, on_trial=update)
        finally:
            update()
            progress.close()
        return
    procs = _spawn(setup, options.workers, options.timeout)
    try:
        while any(p.is_alive() for p in procs):
            update()
            time.sleep(0.5)
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=30)  # the terminal sent them SIGINT too: they re-queue their trial
        raise
    finally:
        update()
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


def _in_study(study: StudySpec, section: str, fn):
    """``fn()``; a ``NasscaleError`` it raises names the study file and the field:
    ``study.yaml: latency.threads: ...``."""
    import re

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
    from nasscale import zoo

    for i, name in enumerate(study.references or ()):
        try:
            zoo.load(name)
        except NasscaleError as err:
            raise NasscaleError(f"{study.path or 'study'}: references[{i}]: {err}") from None


def _check_key(study: StudySpec, shared: dict, name: str, options: RunOptions):
    """A worker measuring latency must measure like the study's first process did; else it is
    refused, or with ``--own-budgets`` it resolves the relative budgets on this machine."""
    if not study.needs_latency or study.latency.get("source") == "lut":
        return None
    from nasscale.latency.key import MeasurementKey
    from nasscale.search.latency_source import make_latency_source, resolve_budgets

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
    constraints, reward, key, reference = resolve_budgets(study)
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
    import optuna

    from nasscale.search.evaluation import make_evaluator
    from nasscale.search.latency_source import (
        ensure_table,
        evaluate_references,
        resolve_budgets,
    )

    # failed and interrupted trials are recorded with their reason (trials.csv, the summary,
    # the progress bar): Optuna's per-trial tracebacks would only bury them
    optuna.logging.set_verbosity(optuna.logging.CRITICAL)
    name = options.study_name or study.name
    url = normalise_url(options.storage or study.storage)
    space = _in_study(study, "space", lambda: make_space(study))  # fail early on a bad space
    # ... and on a bad dataset or user function, and on bad measurement settings
    evaluator = _in_study(study, "evaluator", lambda: make_evaluator(study))
    if study.needs_latency and study.latency.get("source") != "lut":
        from nasscale.search.latency_source import _settings

        _in_study(study, "latency", lambda: _settings(study).key())
    check_references(study)
    fingerprint = _fingerprint(study)
    with setup_lock(url, options.out):
        storage = open_storage(url, options.out)
        directions = [d for _, d in study.objectives]
        ostudy = with_retry(lambda: optuna.create_study(
            study_name=name, storage=storage, directions=directions, sampler=make_sampler(study),
            pruner=make_pruner(study), load_if_exists=True), "opening the study",
            options.storage_retry, url)
        if [d.name.lower() for d in ostudy.directions] != directions:
            raise NasscaleError(f"study {name!r} in {describe_storage(url, options.out)} has "
                                f"directions {[d.name.lower() for d in ostudy.directions]}, "
                                f"not {directions}; use --study-name or another --out")
        attrs = ostudy.user_attrs
        stored = attrs.get("nasscale.fingerprint")
        if stored is not None and stored != fingerprint:
            if ostudy.get_trials(deepcopy=False):
                changed = sorted(k for k in {**stored, **fingerprint}
                                 if stored.get(k) != fingerprint.get(k))
                raise NasscaleError(f"study {name!r} in {describe_storage(url, options.out)} "
                                    f"was created with other settings ({', '.join(changed)} "
                                    "differ); use --study-name or another --out")
            attrs = {}  # no trial ever ran (a set-up that failed): set it up again
        recovered = recover_stale_trials(ostudy)
        if recovered:
            print(f"nasscale: re-queued {len(recovered)} trial(s) of a worker that died: "
                  f"{recovered}", file=sys.stderr)
        ensure_table(study)  # a lookup table the study builds is completed before any trial
        shared = attrs.get("nasscale.shared")
        if shared is None:  # first run: resolve relative budgets by measuring, once
            constraints, reward, key, reference = resolve_budgets(study)
            shared = {"constraints": [[c.text, c.metric, c.limit, c.op] for c in constraints],
                      "reward": list(reward) if reward else None, "latency_key": key,
                      "latency_reference": reference}
            ostudy.set_user_attr("nasscale.shared", shared)
        else:
            shared = _check_key(study, shared, name, options) or shared
        setup = Setup(study=study, study_name=name, storage=url, out=str(options.out),
                      constraints=tuple(Constraint(*c) for c in shared["constraints"]),
                      reward=tuple(shared["reward"]) if shared["reward"] else None,
                      latency_key=shared["latency_key"],
                      latency_reference=shared.get("latency_reference"),
                      score_name=evaluator.name, evaluator_label=evaluator.describe(),
                      target=target_trials(study, options),
                      storage_retry=options.storage_retry)
        references = attrs.get("nasscale.references")
        if references is None:
            names = study.references or space.contains
            references = evaluate_references(setup, names, make_objective(setup))
            ostudy.set_user_attr("nasscale.references", references)
        setup.references = references
        if stored != fingerprint:  # only once the set-up has succeeded
            ostudy.set_user_attr("nasscale.fingerprint", fingerprint)
        if not ostudy.metric_names:  # optuna-dashboard's axis labels
            import warnings

            with warnings.catch_warnings():  # "experimental" since Optuna 3.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ostudy.set_metric_names([setup.score_name if m == "score" else
                                         {"latency": "latency_ms"}.get(m, m)
                                         for m in study.metrics])
    return setup, ostudy


def run_search(study: StudySpec, options: RunOptions) -> dict:
    """Set up, run the missing trials, write the outputs; returns the summary.  A storage
    that stays down past ``storage_retry`` stops the run after the outputs are written."""
    from nasscale.search.outputs import write_outputs

    check_workers(options.workers)
    if options.out.exists() and not options.out.is_dir():
        raise NasscaleError(f"--out {options.out}: is a file, not a folder")
    try:
        options.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NasscaleError(f"--out {options.out}: cannot create it: "
                            f"{err.strerror or err}") from None
    setup, ostudy = prepare(study, options)
    snapshot: list = []
    interrupted, down = False, None
    try:
        run_trials(setup, ostudy, options, snapshot)
    except KeyboardInterrupt:
        interrupted = True
    except StorageDown as err:
        down = err
    try:
        trials = ostudy.get_trials(deepcopy=False)
    except Exception as err:
        if not is_storage_error(err):
            raise
        trials = snapshot  # the storage is gone: what was last read
    summary = write_outputs(setup, ostudy, options.out, trials=trials)
    summary["interrupted"] = interrupted
    if down is not None:
        raise down
    return summary
