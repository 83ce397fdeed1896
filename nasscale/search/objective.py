"""The per-trial objective: sample → analytic costs → budgets → latency → score.

Order matters for cost: FLOPs and params are known without building anything, so a candidate
over a FLOPs or params budget is rejected before any module exists; latency comes next
(predicted from the lookup table without building, or measured), then the evaluator, the only
expensive step.  A rejected candidate becomes a PRUNED trial whose constraint values are set
with ``trial.set_constraint`` (Optuna 5's TPE ranks infeasible trials by how far they violate)
and whose ``reason`` says what it broke; it is never reported as best.  A candidate that fails
to build, runs out of memory or scores NaN becomes a FAILED trial with its reason, and the study
goes on.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from nasscale.search.space import SearchSpace
from nasscale.search.storage import worker_tag
from nasscale.specs import NetworkSpec


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
            score = float(self.evaluator.score(spec, arch_seed(self.seed, spec)))
            if not math.isfinite(score):
                reason = f"{self.evaluator.name} is {score} (undefined for this network)"
                trial.set_user_attr("reason", reason)
                raise CandidateFailed(reason)
            values["score"] = score
            trial.set_user_attr("score", score)
        if self.reward is not None:
            target, exponent = self.reward
            values["reward"] = values["score"] * (values["latency"] / target) ** exponent
            trial.set_user_attr("reward", values["reward"])
        return values


def _fmt(metric: str, value: float) -> str:
    if metric == "latency":
        return f"{value:.2f}ms"
    from nasscale.reports.text import si

    return si(value)
