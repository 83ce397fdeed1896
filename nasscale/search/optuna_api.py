"""The one place nasscale uses Optuna's private API, for what its public API does not offer:
re-seeding a sampler's random states for each trial (``reseed_sampler``) and failing a trial
another process left RUNNING (``fail_trial``).  ``tests/test_optuna_api.py`` fails when an
Optuna release changes what these rely on."""
from __future__ import annotations

import numpy as np
from optuna.samplers import BaseSampler
from optuna.samplers._lazy_random_state import LazyRandomState
from optuna.trial import TrialState


def reseed_sampler(sampler, seed: int) -> None:
    """Seed every random state of an Optuna sampler (and the samplers inside it)."""
    seen: set[int] = set()

    def visit(obj) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for value in vars(obj).values():
            if isinstance(value, LazyRandomState):
                value.rng.seed(seed)
            elif isinstance(value, np.random.RandomState):
                value.seed(seed)
            elif isinstance(value, BaseSampler):
                visit(value)

    visit(sampler)


def fail_trial(study, trial, reason: str, status: str | None = None,
               system_reason: str | None = None) -> None:
    """Mark ``trial`` (a FrozenTrial of ``study`` that is RUNNING in another, dead or
    interrupted process) FAIL with its ``reason`` (and ``status``, and Optuna's own
    ``fail_reason`` system attribute), through the study's storage."""
    storage, trial_id = study._storage, trial._trial_id
    if system_reason is not None:
        storage.set_trial_system_attr(trial_id, "fail_reason", system_reason)
    storage.set_trial_user_attr(trial_id, "reason", reason)
    if status is not None:
        storage.set_trial_user_attr(trial_id, "status", status)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)


__all__ = ["fail_trial", "reseed_sampler"]
