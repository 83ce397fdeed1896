"""Run a study: set up (once, in the main process), run trials (in K worker processes), write
outputs.

Set-up (``search/setup.py``) resolves everything that must be the same for every worker and
every resumed run — budgets relative to named networks, the latency measurement key, the
reference networks' scores — and stores it on the Optuna study (user attributes), so workers
and later runs read it instead of measuring again.  Trials run through Optuna's own storage:
several processes on one machine share the journal file, many machines share a PostgreSQL
database; nasscale never schedules trials itself.

``trials`` is the number of finished trials the study should have, whatever the number of
processes or machines: each worker runs trials one at a time (Optuna's ``optimize``) until
the study holds that many finished or running trials, so two commands started at once on
one storage finish the study's total between them, not twice it.  Re-running the same
command resumes and runs only what is missing (a ``kill -9`` or a Ctrl-C loses only the
trial that was running; it is failed and re-queued).  Each trial's random draws are seeded
from the study's seed and the trial's number, so a resumed run or a second worker draws new
points instead of replaying the first ones; a point drawn again reuses the earlier result.

``timeout`` (the study file's, or ``--timeout``, which wins) stops starting trials that many
seconds after the first one could start, for every worker together (``--workers``: one
deadline); a trial already running finishes.

A storage that stops answering (a database restarted mid-run) is retried with backoff for
``--storage-retry`` seconds; after that the run stops with one line, writes the outputs of
what had finished, and the same command resumes.  The trial the outage interrupted is failed
with reason ``interrupted: storage unavailable: <the driver's error>`` (not counted) and
queued again, as soon as the storage answers.

Outputs are read and written under a lock on the output folder: of two processes finishing
one study into one folder, the one that writes last read last.
"""
from __future__ import annotations

import _thread
import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nasscale.errors import NasscaleError
from nasscale.search import outputs  # the module: write_outputs is looked up when called
from nasscale.search.objective import CandidateFailed, Objective, Surplus, counted, requeued
from nasscale.search.optuna_api import fail_trial
from nasscale.search.progress import Progress
from nasscale.search.setup import (  # noqa: F401  (RunOptions, Setup, make_pruner...: API)
    RunOptions,
    Setup,
    check_options,
    check_workers,
    make_objective,
    make_pruner,
    make_sampler,
    prepare,
    run_timeout,
)
from nasscale.search.storage import (  # noqa: F401  (StorageDown, with_retry: API)
    StorageDown,
    is_storage_error,
    open_storage,
    outputs_lock,
    quiet_storage_threads,
    storage_error_text,
    with_retry,
)
from nasscale.search.study import StudySpec


def finished_count(study) -> int:
    """Trials that count towards ``trials``: complete, pruned (over budget or stopped early)
    and failed ones, except failures of interrupted workers (re-queued) and surplus ones."""
    return len(counted(study.get_trials(deepcopy=False)))


def claimed_count(study) -> int:
    """Finished trials that count, plus running ones (each will count when it ends)."""
    trials = study.get_trials(deepcopy=False)
    return len(counted(trials)) + sum(1 for t in trials if t.state.name == "RUNNING")


def requeue_interrupted(ostudy, number: int | None, why: str) -> None:
    """Enqueue again the parameters of trial ``number``, stopped by ``why`` (it was failed
    with reason ``interrupted: <why>``, which does not count): a resumed run redoes it.  A
    trial Optuna already failed keeps the reason it has (a finished trial cannot be changed)."""
    if number is None:
        return
    for t in ostudy.get_trials(deepcopy=False):
        if t.number != number:
            continue
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):  # it finished after all
            return
        if t.state == TrialState.RUNNING:  # interrupted before Optuna could tell it
            fail_trial(ostudy, t, f"interrupted: {why}; re-queued", status="interrupted")
        if str(t.user_attrs.get("reason", "interrupted")).startswith("interrupted") and \
                t.number not in requeued(ostudy.get_trials(deepcopy=False)):
            ostudy.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        return


def requeue_lost(ostudy, lost: dict[int, str]) -> None:
    """Fail and re-queue the trials a storage outage interrupted (``lost``: trial number ->
    the outage's error), once the storage answers again; each is removed from ``lost`` when
    done."""
    for number, error in list(lost.items()):
        requeue_interrupted(ostudy, number, f"storage unavailable: {error}")
        del lost[number]


#: set by the Ctrl-C handler: a KeyboardInterrupt raised while Python runs a finalizer (the
#: garbage collection after each trial frees torch modules) is printed and dropped, so the
#: trial loop also checks this flag between trials and a Ctrl-C is never lost
_INTERRUPTED = threading.Event()


def _on_sigint(signum, frame) -> None:
    _INTERRUPTED.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def ctrl_c_never_lost():
    """Within it, Ctrl-C (and ``_thread.interrupt_main``) raises ``KeyboardInterrupt`` as usual
    and is also remembered for the trial loop (see ``_INTERRUPTED``); main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _INTERRUPTED.clear()
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        lost = _INTERRUPTED.is_set()
        _INTERRUPTED.clear()
    if lost:  # the loop ended normally although a Ctrl-C came: it still counts
        raise KeyboardInterrupt


def _stop_if_interrupted() -> None:
    if _INTERRUPTED.is_set():
        raise KeyboardInterrupt


def optimize(ostudy, objective: Objective, target: int | None, timeout: float | None,
             retry_for: float, storage: str | None = None, on_trial=None) -> None:
    """Run trials one at a time until the study holds ``target`` finished (or running)
    trials, or ``timeout`` seconds have passed.  Ctrl-C re-queues the running trial; so does
    a storage outage, once the storage answers again (reason ``interrupted: storage
    unavailable: ...``).  ``on_trial(frozen_trial)`` is called after each trial is stored."""
    deadline = None if timeout is None else time.monotonic() + timeout
    objective.target = target
    quiet_storage_threads()
    lost: dict[int, str] = {}  # trials a storage outage interrupted, to fail and re-queue

    def claimed() -> int:
        requeue_lost(ostudy, lost)
        return claimed_count(ostudy)

    def one_trial() -> None:
        requeue_lost(ostudy, lost)
        objective.current = None
        try:
            ostudy.optimize(objective, n_trials=1, catch=(CandidateFailed, Surplus),
                            gc_after_trial=True, callbacks=[lambda s, t: on_trial(t)]
                            if on_trial is not None else None)
        except Exception as err:
            if objective.current is not None and is_storage_error(err):
                lost.setdefault(objective.current, storage_error_text(err))
            raise

    try:
        while True:
            _stop_if_interrupted()
            if target is not None and with_retry(claimed, "counting trials", retry_for,
                                                 storage) >= target:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            _run_one(ostudy, objective, one_trial, retry_for, storage)
    finally:
        if lost:  # stopped while the storage was away: re-queue now if it is back
            with contextlib.suppress(Exception):
                requeue_lost(ostudy, lost)


def _run_one(ostudy, objective: Objective, one_trial, retry_for: float,
             storage: str | None) -> None:
    """One trial through ``with_retry``; a Ctrl-C re-queues it."""
    try:
        with_retry(one_trial, "running a trial", retry_for, storage)
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            requeue_interrupted(ostudy, objective.current, "Ctrl-C")
        raise
    except Exception:
        if not _INTERRUPTED.is_set():
            raise
        # a Ctrl-C inside Optuna's storage code (its journal lock's clean-up) can surface
        # as another error (the lock file it was removing is gone): still a Ctrl-C
        with contextlib.suppress(Exception):
            requeue_interrupted(ostudy, objective.current, "Ctrl-C")
        raise KeyboardInterrupt from None


def _watch_parent() -> None:
    """A worker whose parent ``nasscale search`` died (``kill -9``) stops like on Ctrl-C: its
    running trial is re-queued, and it never lingers as an orphan."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        _thread.interrupt_main()

    threading.Thread(target=watch, daemon=True, name="nasscale-parent-watch").start()


def worker_main(setup: Setup, deadline: float | None, worker: int) -> None:
    """One worker process: open the shared storage and run trials until the study has its
    total, or until ``deadline`` (``time.time()``; shared by all workers of a run)."""
    # failed and interrupted trials are recorded with their reason (trials.csv, the summary,
    # the progress bar): Optuna's per-trial tracebacks would only bury them
    optuna.logging.set_verbosity(optuna.logging.CRITICAL)
    _watch_parent()
    try:
        storage = open_storage(setup.storage, Path(setup.out))
        ostudy = optuna.load_study(study_name=setup.study_name, storage=storage,
                                   sampler=make_sampler(setup.study, worker),
                                   pruner=make_pruner(setup.study))
        timeout = None if deadline is None else max(0.0, deadline - time.time())
        with ctrl_c_never_lost():
            optimize(ostudy, make_objective(setup), setup.target, timeout, setup.storage_retry,
                     setup.storage)
    except KeyboardInterrupt:
        sys.exit(130)
    except NasscaleError as err:
        print(f"nasscale: error: worker {worker}: {err}", file=sys.stderr)
        sys.exit(2)


def _spawn(setup: Setup, workers: int, timeout: float | None) -> list[mp.Process]:
    """Start the workers; ``timeout`` counts from now for all of them (their start-up too)."""
    ctx = mp.get_context("spawn")
    deadline = None if timeout is None else time.time() + timeout
    procs = []
    for i in range(workers):
        p = ctx.Process(target=worker_main, args=(setup, deadline, i), daemon=False,
                        name=f"nasscale-worker-{i}")
        p.start()
        procs.append(p)
    return procs


def run_trials(setup: Setup, ostudy, options: RunOptions, snapshot: list) -> None:
    """Run trials in ``options.workers`` processes (1: in this process) until the study has
    its total, showing progress on stderr.  ``snapshot`` keeps the last trials read, for the
    outputs if the storage goes away."""
    progress = Progress(ostudy, setup.target, enabled=options.progress,
                        score=setup.study.metrics[0],
                        stopping=setup.study.pruner.name != "none")

    def update(finished=None) -> None:
        try:
            snapshot[:] = ostudy.get_trials(deepcopy=False)
        except Exception:  # a storage outage: keep the last snapshot, with this trial in it
            if finished is not None:
                snapshot[:] = [t for t in snapshot if t.number != finished.number] + [finished]
                snapshot.sort(key=lambda t: t.number)
        progress.update(snapshot)

    timeout = run_timeout(setup.study, options)
    if options.workers <= 1:
        try:
            with ctrl_c_never_lost():
                optimize(ostudy, make_objective(setup), setup.target, timeout,
                         setup.storage_retry, setup.storage, on_trial=update)
        finally:
            update()
            progress.close()
        return
    procs = _spawn(setup, options.workers, timeout)
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


def run_search(study: StudySpec, options: RunOptions) -> dict:
    """Set up, run the missing trials, write the outputs; returns the summary.  A storage
    that stays down past ``storage_retry`` stops the run after the outputs are written."""
    check_options(options)
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
    # under a lock, from the trials as they are now: of two processes finishing one study
    # into one folder, the one that writes last has read last (its outputs are the newest)
    with outputs_lock(options.out):
        try:
            trials = ostudy.get_trials(deepcopy=False)
        except Exception as err:
            if not is_storage_error(err):
                raise
            trials = snapshot  # the storage is gone: what was last read
        summary = outputs.write_outputs(setup, ostudy, options.out, trials=trials)
        summary["weights"] = outputs.write_weights(setup, options.out)
    summary["interrupted"] = interrupted
    if down is not None:
        raise down
    return summary
