"""The per-trial objective: sample → analytic costs → budgets → latency → score.

Budgets (FLOPs, latency) are measured at each candidate's own (deploy) resolution, or with
``budget_resolution: train`` at the resolution its evaluator trains at (``budget_at``).  Each
trial records ``resolution`` (the one its score was measured at) and ``deploy_resolution``.

Order matters for cost: FLOPs and params are known without building anything, so a candidate
over a FLOPs or params budget is rejected before any module exists; latency comes next
(predicted from the lookup table without building, or measured), then the evaluator, the only
expensive step.  A rejected candidate becomes a PRUNED trial whose constraint values are set
with ``trial.set_constraint`` (Optuna 5's TPE ranks infeasible trials by how far they violate)
and whose ``reason`` says what it broke; it is never reported as best.  A candidate that fails
to build, runs out of memory or scores NaN becomes a FAILED trial with its reason, and the study
goes on.

Multi-fidelity: the train evaluator reports held-out accuracy after every epoch.  In a
single-objective study the objective passes it on with ``trial.report`` (as the objective's own
value: the accuracy, or the reward at that accuracy), and when the study's pruner says so
(``trial.should_prune()``, never after the last epoch) the trial stops: it is PRUNED too, but
with ``stopped_early: True``, its ``epochs`` and a reason naming the pruner, the epoch and the
accuracy, so it is told apart from an over-budget trial (``trial_status``).  Every trained
trial records ``epochs``.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import optuna

from nasscale.costs.analytic import deployed_cost
from nasscale.grammar import network_to_data
from nasscale.latency.source import LatencySource
from nasscale.reports.text import si
from nasscale.scoring.evaluators import arch_seed, eval_resolution
from nasscale.search.optuna_api import reseed_sampler
from nasscale.search.space import SearchSpace
from nasscale.search.storage import is_storage_error, storage_error_text, worker_tag
from nasscale.search.study_data import trained_resolution
from nasscale.search.trials import (  # noqa: F401  (trial bookkeeping, re-exported)
    STATUSES,
    UNCOUNTED_REASONS,
    Surplus,
    counted,
    counts,
    requeued,
    trial_reason,
    trial_seed,
    trial_status,
)
from nasscale.specs import NetworkSpec


class CandidateFailed(Exception):
    """A candidate could not be evaluated (build error, out of memory, undefined score)."""


@dataclass(frozen=True)
class Constraint:
    """A resolved budget: ``metric op limit`` (in ms, FLOPs or params).

    The constraint value given to Optuna is the relative excess (``value / limit - 1`` for an
    upper bound, feasible when <= 0), so budgets in different units weigh alike in the
    sampler's infeasibility score.
    """

    text: str  # as written in the study file
    metric: str  # flops | params | latency
    limit: float
    op: str = "<="  # <=, <, >= or >

    def violation(self, value: float) -> float:
        excess = value / self.limit - 1.0
        if self.op in ("<", ">") and excess == 0:
            return 1e-9  # on the bound of a strict inequality: (barely) infeasible
        return excess if self.op in ("<=", "<") else -excess


def estimate_memory_gb(cost, batch: int = 16) -> float:
    """A coarse upper bound of what building and running a candidate needs: fp32 weights with
    gradients and optimizer state (x4), plus the largest activation maps of a training batch."""
    rn = cost.network
    biggest = max((b.out_channels * b.out_hw[0] * b.out_hw[1] for b in rn.blocks), default=0)
    activations = sum(b.out_channels * b.out_hw[0] * b.out_hw[1] for b in rn.blocks)
    return (16 * cost.params + 4 * batch * (activations + 4 * biggest)) / 1e9


@dataclass
class Objective:
    space: SearchSpace
    metrics: tuple[str, ...]  # the study's objectives, in order
    evaluator: object  # an Evaluator
    constraints: tuple[Constraint, ...] = ()
    latency: LatencySource | None = None
    reward: tuple[float, float] | None = None  # (target latency ms, exponent)
    seed: int = 0
    max_memory_gb: float = 8.0
    study_name: str = "study"
    pruner: str = "none"  # the study's pruner name (none: trials always run to the end)
    target: int | None = None  # the study's total trials (None: no limit)
    #: where budgets are measured: None at each candidate's own (deploy) resolution, else the
    #: trained one, pixels or a fraction of the network's own (``study_data.budget_scale``)
    budget_at: int | float | None = None
    on_trial: Callable | None = field(default=None, repr=False)
    current: int | None = field(default=None, repr=False)  # the trial being evaluated

    def __call__(self, trial) -> float | list[float]:
        try:
            return self._run(trial)
        except Exception as err:
            if is_storage_error(err):  # the storage, not the candidate: re-queued by the runner
                _note_storage_loss(trial, err)
            raise

    def _run(self, trial) -> float | list[float]:
        t0 = time.perf_counter()
        self.current = trial.number
        trial.set_user_attr("worker", worker_tag())
        if self.target is not None:
            trials = trial.study.get_trials(deepcopy=False)
            retried = requeued(trials)
            ahead = sum(1 for t in trials if t.number < trial.number
                        and (counts(t, retried) or t.state.name == "RUNNING"))
            if ahead >= self.target:
                trial.set_user_attr("reason", f"surplus: the study had its {self.target} "
                                    "trials when this one started; not counted")
                raise Surplus()
        reseed_sampler(trial.study.sampler, trial_seed(self.seed, trial.number))
        try:
            values = self._evaluate(trial)
        except KeyboardInterrupt:  # Ctrl-C, or the parent process died: redone on resume
            with contextlib.suppress(Exception):
                trial.set_user_attr("reason", "interrupted: Ctrl-C; re-queued")
                trial.set_user_attr("status", "interrupted")
            raise
        except optuna.TrialPruned:
            trial.set_user_attr("status", "stopped early" if trial.user_attrs.get(
                "stopped_early") else "over budget")
            raise
        except CandidateFailed:
            trial.set_user_attr("status", "failed")
            raise
        except Exception as err:  # build failures, out of memory, unresolvable candidates
            if is_storage_error(err):  # the database, not the candidate: retried by the runner
                raise
            text = str(err).splitlines()[0][:300] if str(err) else ""
            reason = f"{type(err).__name__}: {text}"
            trial.set_user_attr("reason", reason)
            trial.set_user_attr("status", "failed")
            raise CandidateFailed(reason) from err
        finally:
            with contextlib.suppress(Exception):
                trial.set_user_attr("seconds", time.perf_counter() - t0)
        # what trials.csv will say, for optuna-dashboard (which shows user attributes)
        trial.set_user_attr("status", "feasible" if trial.user_attrs.get("within_budget", True)
                            else "over budget")
        out = [values[m] for m in self.metrics]
        return out[0] if len(out) == 1 else out

    def _evaluate(self, trial) -> dict[str, float]:
        spec = self.space.sample(trial, name=f"{self.study_name}_trial{trial.number}")
        same = self._finished_twin(trial)
        if same is not None:
            return self._copy(trial, same)
        measured = self.budget_spec(spec)
        cost = deployed_cost(measured)  # budgets count what runs (re-parameterised)
        values = {"flops": float(cost.flops), "params": float(cost.params)}
        trial.set_user_attr("network", network_to_data(spec))
        trial.set_user_attr("flops", cost.flops)
        trial.set_user_attr("params", cost.params)
        self._set_resolutions(trial, spec)

        def check(stage: str) -> None:
            broken = [c for c in self.constraints
                      if c.metric in values and c.violation(values[c.metric]) > 0]
            if not broken:
                return
            self._set_constraints(trial, values)
            reason = "; ".join(f"{c.metric} {_fmt(c.metric, values[c.metric])} breaks "
                               f"{c.op} {_fmt(c.metric, c.limit)} ({c.text})" for c in broken)
            trial.set_user_attr("reason", f"{reason} [{stage}]")
            raise optuna.TrialPruned(reason)

        check("rejected before building")
        need_gb = estimate_memory_gb(cost)
        if need_gb > self.max_memory_gb:
            reason = f"needs ~{need_gb:.1f} GB > max_memory_gb {self.max_memory_gb:g}"
            trial.set_user_attr("reason", reason)
            raise CandidateFailed(reason)
        if self.latency is not None:
            values["latency"] = float(self.latency.latency_ms(measured))
            trial.set_user_attr("latency_ms", values["latency"])
            ratio = getattr(self.latency, "last_ratio", None)
            if ratio is not None:  # timed against the budget's reference network
                trial.set_user_attr("latency_ratio", ratio)
            check("after latency " + ("measurement" if self.latency.builds_module()
                                      else "prediction, before building"))
        self._set_constraints(trial, values)
        if "score" in self.metrics or "reward" in self.metrics:
            trained = {"epochs": 0}
            try:
                score = float(self.evaluator.score(spec, arch_seed(self.seed, spec),
                                                   report=self._reporter(trial, values, trained)))
            finally:
                if trained["epochs"]:
                    trial.set_user_attr("epochs", trained["epochs"])
            if not math.isfinite(score):
                reason = f"{self.evaluator.name} is {score} (undefined for this network)"
                trial.set_user_attr("reason", reason)
                raise CandidateFailed(reason)
            values["score"] = score
            trial.set_user_attr("score", score)
        if self.reward is not None:
            values["reward"] = self._reward(values["score"], values)
            trial.set_user_attr("reward", values["reward"])
        return values

    def budget_spec(self, spec: NetworkSpec) -> NetworkSpec:
        """``spec`` at the resolution its budgets are measured at (``budget_at``)."""
        if self.budget_at is None:
            return spec

        return spec.replace(resolution=eval_resolution(self.budget_at, spec.resolution),
                            expected=None)

    def _set_resolutions(self, trial, spec: NetworkSpec) -> None:
        """``resolution``: the one the score is measured at, which best.yaml carries (a
        trained evaluator's; else the candidate's own); ``deploy_resolution``: the
        candidate's own, from the space."""
        trained = trained_resolution(self.evaluator, spec)
        trial.set_user_attr("resolution", trained or spec.resolution)
        trial.set_user_attr("deploy_resolution", spec.resolution)

    def _set_constraints(self, trial, values: dict[str, float]) -> None:
        """Optuna 5's constraints (what the sampler sees), and the same as a user attribute
        ``constraints`` (``{budget: relative excess}``, within budget when <= 0) and
        ``within_budget``:
        what optuna-dashboard shows, as trials.csv does."""
        known = {c.text: c.violation(values[c.metric]) for c in self.constraints
                 if c.metric in values}
        for text, value in known.items():
            trial.set_constraint(text, value)
        if known:
            trial.set_user_attr("constraints", known)
            trial.set_user_attr("within_budget", all(v <= 0 for v in known.values()))

    @staticmethod
    def _finished_twin(trial):
        """An earlier finished trial with exactly these parameters (a sampler can propose a
        point again): its result is reused instead of evaluating the network twice."""
        params = trial.params
        for t in trial.study.get_trials(deepcopy=False):
            if t.number != trial.number and t.params == params and t.state.name in (
                    "COMPLETE", "PRUNED"):
                return t
        return None

    def _copy(self, trial, twin) -> dict[str, float]:
        for k, v in twin.user_attrs.items():
            if k not in ("worker", "seconds", "retry_of"):
                trial.set_user_attr(k, v)
        trial.set_user_attr("duplicate_of", twin.number)
        for name, value in (twin.constraints or {}).items():
            trial.set_constraint(name, value)
        if twin.state.name == "PRUNED":
            reason = f"duplicate of trial {twin.number}: {twin.user_attrs.get('reason', '')}"
            trial.set_user_attr("reason", reason)
            raise optuna.TrialPruned(reason)
        values = {m: v for m, v in zip(self.metrics, twin.values)}
        return values

    def _reward(self, score: float, values: dict[str, float]) -> float:
        """MnasNet's reward: ``score · (latency / target) ^ exponent``."""
        target, exponent = self.reward
        return score * (values["latency"] / target) ** exponent

    def _reporter(self, trial, values: dict[str, float], trained: dict) -> Callable:
        """``report(epoch, accuracy)`` for the evaluator: counts the epochs trained, reports
        the objective's value at this epoch to Optuna (single-objective studies only: Optuna
        has no intermediate values for several objectives) and stops the trial when the pruner
        says so, never after its last epoch (its result is then complete)."""
        last = getattr(self.evaluator, "epochs", None)
        single = len(self.metrics) == 1

        def report(epoch: int, accuracy: float) -> None:
            trained["epochs"] = epoch
            if not single:
                return
            value = accuracy if self.metrics[0] == "score" else self._reward(accuracy, values)
            trial.report(value, epoch)
            if self.pruner == "none" or (last is not None and epoch >= last) \
                    or not trial.should_prune():
                return
            trial.set_user_attr("stopped_early", True)
            trial.set_user_attr("epochs", epoch)
            trial.set_user_attr("score", accuracy)  # the last reported accuracy (the plot's y)
            if self.metrics[0] == "reward":
                trial.set_user_attr("reward", value)
            reason = (f"stopped early by {self.pruner} after epoch {epoch} "
                      f"({self.evaluator.name} {accuracy:.3f})")
            trial.set_user_attr("reason", reason)
            raise optuna.TrialPruned(reason)

        return report



def _note_storage_loss(trial, err: BaseException) -> None:
    """Give a trial that a storage error interrupted its reason (``interrupted: storage
    unavailable: ...``) while Optuna can still store it; if the storage is down, the runner
    does it once the storage is back (``runner.requeue_lost``)."""
    with contextlib.suppress(Exception):
        trial.set_user_attr("reason", f"interrupted: storage unavailable: "
                            f"{storage_error_text(err)}; re-queued")
        trial.set_user_attr("status", "interrupted")


def _fmt(metric: str, value: float) -> str:
    if metric == "latency":
        return f"{value:.2f}ms"
    return si(value)
