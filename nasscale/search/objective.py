"""The per-trial objective: sample → analytic costs → budgets → latency → score.

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

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from nasscale.search.space import SearchSpace
from nasscale.search.storage import worker_tag
from nasscale.specs import NetworkSpec

#: What became of a trial, as trials.csv, the plot, the summary and the progress line say it
STATUSES = ("feasible", "over budget", "stopped early", "failed", "running", "waiting")


class CandidateFailed(Exception):
    """A candidate could not be evaluated (build error, out of memory, undefined score)."""


class LatencySource(Protocol):
    """Gives a candidate's latency in milliseconds (measured or predicted) under one key."""

    key: dict

    def latency_ms(self, spec: NetworkSpec) -> float: ...

    def builds_module(self) -> bool: ...


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
    on_trial: Callable | None = field(default=None, repr=False)

    def __call__(self, trial) -> float | list[float]:
        import optuna

        t0 = time.perf_counter()
        trial.set_user_attr("worker", worker_tag())
        try:
            values = self._evaluate(trial)
        except (optuna.TrialPruned, CandidateFailed, KeyboardInterrupt):
            raise
        except Exception as err:  # build failures, out of memory, unresolvable candidates
            text = str(err).splitlines()[0][:300] if str(err) else ""
            reason = f"{type(err).__name__}: {text}"
            trial.set_user_attr("reason", reason)
            raise CandidateFailed(reason) from err
        finally:
            trial.set_user_attr("seconds", time.perf_counter() - t0)
        out = [values[m] for m in self.metrics]
        return out[0] if len(out) == 1 else out

    def _evaluate(self, trial) -> dict[str, float]:
        import optuna

        from nasscale import count
        from nasscale.grammar import network_to_data
        from nasscale.search.evaluators import arch_seed

        spec = self.space.sample(trial, name=f"{self.study_name}_trial{trial.number}")
        cost = count(spec)
        values = {"flops": float(cost.flops), "params": float(cost.params)}
        trial.set_user_attr("network", network_to_data(spec))
        trial.set_user_attr("flops", cost.flops)
        trial.set_user_attr("params", cost.params)
        trial.set_user_attr("resolution", spec.resolution)

        def check(stage: str) -> None:
            broken = [c for c in self.constraints
                      if c.metric in values and c.violation(values[c.metric]) > 0]
            if not broken:
                return
            for c in self.constraints:
                if c.metric in values:
                    trial.set_constraint(c.text, c.violation(values[c.metric]))
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
            values["latency"] = float(self.latency.latency_ms(spec))
            trial.set_user_attr("latency_ms", values["latency"])
            check("after latency " + ("measurement" if self.latency.builds_module()
                                      else "prediction, before building"))
        for c in self.constraints:
            trial.set_constraint(c.text, c.violation(values[c.metric]))
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

    def _reward(self, score: float, values: dict[str, float]) -> float:
        """MnasNet's reward: ``score · (latency / target) ^ exponent``."""
        target, exponent = self.reward
        return score * (values["latency"] / target) ** exponent

    def _reporter(self, trial, values: dict[str, float], trained: dict) -> Callable:
        """``report(epoch, accuracy)`` for the evaluator: counts the epochs trained, reports
        the objective's value at this epoch to Optuna (single-objective studies only: Optuna
        has no intermediate values for several objectives) and stops the trial when the pruner
        says so, never after its last epoch (its result is then complete)."""
        import optuna

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


def trial_status(trial) -> str:
    """One of ``STATUSES`` for an Optuna trial: over-budget and early-stopped trials are
    both PRUNED in Optuna; ``stopped_early`` tells them apart."""
    state = trial.state.name
    if state == "COMPLETE":
        return "feasible" if all(v <= 0 for v in trial.constraints.values()) else "over budget"
    if state == "PRUNED":
        return "stopped early" if trial.user_attrs.get("stopped_early") else "over budget"
    if state == "FAIL":
        return "failed"
    return state.lower()  # running, waiting


def _fmt(metric: str, value: float) -> str:
    if metric == "latency":
        return f"{value:.2f}ms"
    from nasscale.reports.text import si

    return si(value)
