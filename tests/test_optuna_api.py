"""The Optuna private API nasscale relies on (``nasscale.search.optuna_api``): these fail
when an Optuna release renames or changes it, before a study misbehaves."""
from __future__ import annotations

import optuna
from optuna.trial import TrialState

from nasscale.search.optuna_api import fail_trial, reseed_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def draws(sampler, n: int = 5) -> list[float]:
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(trial.suggest_float("x", 0, 1))
        study.tell(trial, 0.0)
    return out


def test_reseeding_makes_every_sampler_state_draw_the_same_values():
    for make in (lambda: optuna.samplers.RandomSampler(seed=1),
                 lambda: optuna.samplers.TPESampler(seed=1, n_startup_trials=2),
                 lambda: optuna.samplers.NSGAIISampler(seed=1)):
        a, b = make(), make()
        draws(a, 3)  # a has drawn: its state moved on
        reseed_sampler(a, 7)
        reseed_sampler(b, 7)
        assert draws(a) == draws(b)
        reseed_sampler(a, 8)
        assert draws(a) != draws(b)


def test_the_private_names_exist():
    from optuna.samplers._lazy_random_state import LazyRandomState

    assert hasattr(LazyRandomState(0), "rng")
    study = optuna.create_study()
    trial = study.ask()
    frozen = study.get_trials(deepcopy=False)[0]
    assert isinstance(frozen._trial_id, int) and trial.number == frozen.number
    for name in ("set_trial_user_attr", "set_trial_system_attr", "set_trial_state_values"):
        assert callable(getattr(study._storage, name))


def test_a_running_trial_of_another_process_is_failed_with_its_reason():
    study = optuna.create_study()
    study.ask()
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))[0]
    fail_trial(study, running, "interrupted: worker x died; re-queued", status="interrupted",
               system_reason="interrupted: worker x died")
    done = study.get_trials(deepcopy=False)[0]
    assert done.state == TrialState.FAIL
    assert done.user_attrs == {"reason": "interrupted: worker x died; re-queued",
                               "status": "interrupted"}
    assert done.system_attrs["fail_reason"] == "interrupted: worker x died"
