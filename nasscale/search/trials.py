"""Trial bookkeeping: what became of a trial (``STATUSES``), why (``trial_reason``), which
trials count towards a study's total (``counts``, ``counted``; re-queued, interrupted and
surplus trials do not) and each trial's sampler seed (``trial_seed``).  Read by the runner,
the outputs, the plot and the progress line alike."""
from __future__ import annotations

import hashlib

#: What became of a trial, as trials.csv, the plot, the summary and the progress line say it
STATUSES = ("feasible", "over budget", "stopped early", "failed", "running", "waiting",
            "interrupted", "surplus")


class Surplus(Exception):
    """The study already had its trials when this one started (another worker took the last
    slot in the same instant): it is failed with reason ``surplus`` and not counted."""


#: Reasons of FAIL trials that do not count towards the study's total
UNCOUNTED_REASONS = ("interrupted", "surplus")


def requeued(trials) -> set[int]:
    """Numbers of trials that were queued again: by nasscale (``retry_of``) or by Optuna's
    heartbeat callback for a worker that stopped answering (``failed_trial``)."""
    out = set()
    for t in trials:
        for n in (t.user_attrs.get("retry_of"), t.system_attrs.get("failed_trial")):
            if isinstance(n, int):
                out.add(n)
    return out


def counts(trial, retried: set[int] | frozenset = frozenset()) -> bool:
    """A finished trial that counts towards ``trials``: complete, pruned (over budget or
    stopped early) or failed — except interrupted, re-queued (``retried``: see ``requeued``)
    and surplus trials."""
    state = trial.state.name
    if state in ("COMPLETE", "PRUNED"):
        return True
    return state == "FAIL" and trial.number not in retried and not str(
        trial.user_attrs.get("reason", "")).startswith(UNCOUNTED_REASONS)


def counted(trials) -> list:
    """The trials of ``trials`` that count (see ``counts``)."""
    trials = list(trials)
    retried = requeued(trials)
    return [t for t in trials if counts(t, retried)]


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number``: a resumed study, a second worker or a second
    machine draws new points instead of replaying the first trials' random draws."""
    digest = hashlib.sha256(f"nasscale-trial:{seed}:{number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def trial_reason(trial, retried: set[int] | frozenset = frozenset()) -> str:
    """Why a trial was rejected, stopped or failed (trials.csv's ``reason``).  A failed trial
    without one was failed by Optuna itself: re-queued (``retried``), its worker stopped
    answering (it died, or lost the storage: the heartbeat of a database storage)."""
    reason = trial.user_attrs.get("reason") or trial.system_attrs.get("fail_reason") or ""
    if reason or trial.state.name != "FAIL":
        return str(reason)
    if trial.number in retried:
        return ("interrupted: its worker stopped answering (it died or lost the storage); "
                "re-queued")
    return "failed by Optuna with no reason stored (its worker may have died or lost the storage)"


def trial_status(trial, retried: set[int] | frozenset = frozenset()) -> str:
    """One of ``STATUSES`` for an Optuna trial: over-budget and early-stopped trials are
    both PRUNED in Optuna; ``stopped_early`` tells them apart.  A failed trial that was
    queued again (``retried``) is ``interrupted``."""
    state = trial.state.name
    if state == "COMPLETE":
        return "feasible" if all(v <= 0 for v in trial.constraints.values()) else "over budget"
    if state == "PRUNED":
        return "stopped early" if trial.user_attrs.get("stopped_early") else "over budget"
    if state == "FAIL":
        reason = str(trial.user_attrs.get("reason", ""))
        if trial.number in retried:
            return "interrupted"
        return next((r for r in UNCOUNTED_REASONS if reason.startswith(r)), "failed")
    return state.lower()  # running, waiting
