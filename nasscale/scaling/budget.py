"""The largest compound-scaled network that fits a FLOPs or parameter budget.

Every rounding step of scaling (make_divisible with the 90 % rule, ceil of repeats, the
resolution grid) is non-decreasing in its input, so a network's FLOPs and params are
non-decreasing step functions of φ.  ``largest_phi`` searches φ on a grid of ``tolerance``
(0.001): it brackets the budget by doubling φ, bisects, and returns the largest φ on the grid
whose network fits, with the next φ on the grid and its costs (how close the budget came).
"""
from __future__ import annotations

from dataclasses import dataclass

from nasscale.costs.analytic import NetworkCost, deployed_cost
from nasscale.errors import NasscaleError, field_error
from nasscale.scaling.scale import ALPHA, BETA, GAMMA, compound
from nasscale.specs import NetworkSpec

METRICS = ("flops", "params")
LABELS = {"flops": "FLOPs", "params": "params"}


def parse_amount(text: str, what: str = "budget", metric: str = "flops") -> float:
    """``2G`` → 2e9, ``500M``, ``5.3m``, ``2e9``, ``1,000,000``; K, M, G (or B), T suffixes:
    the budget grammar's amounts (``nasscale.budgets.parse_amount``)."""
    from nasscale.units import parse_amount as amount

    return amount(text, metric, what)


@dataclass(frozen=True)
class Fit:
    """The result of a budget search.

    ``phi``/``spec``/``cost``: the largest φ on the grid whose network fits the budget.
    ``above_phi``/``above_cost``: the next φ on the grid (its network does not fit), its costs.
    """

    metric: str
    budget: float
    phi: float
    spec: NetworkSpec
    cost: NetworkCost
    above_phi: float
    above_cost: NetworkCost

    @property
    def used(self) -> int:
        return getattr(self.cost, self.metric)

    @property
    def fraction(self) -> float:
        """How much of the budget the fitting network uses (1.0 = all of it)."""
        return self.used / self.budget


def largest_phi(spec: NetworkSpec, metric: str, budget: float, alpha: float = ALPHA,
                beta: float = BETA, gamma: float = GAMMA, *, tolerance: float = 1e-3,
                max_phi: float = 20.0) -> Fit:
    """The largest φ (to ``tolerance``) whose ``compound(spec, φ, α, β, γ)`` needs at most
    ``budget`` FLOPs or params (``metric``).  Raises if even the base does not fit."""
    if metric not in METRICS:
        raise field_error("metric", "one of 'flops', 'params'", metric)

    def evaluate(k: int) -> tuple[NetworkSpec, NetworkCost]:  # φ on a grid of ``tolerance``
        scaled = compound(spec, round(k * tolerance, 9), alpha, beta, gamma)
        return scaled, deployed_cost(scaled)  # what runs

    lo, (lo_spec, lo_cost) = 0, evaluate(0)
    if getattr(lo_cost, metric) > budget:
        raise NasscaleError(f"{spec.name} itself needs {getattr(lo_cost, metric):,} "
                            f"{LABELS[metric]}, more than the budget of {budget:,.0f}; compound "
                            "scaling only scales up (phi >= 0)")
    hi, top = max(1, round(1 / tolerance)), round(max_phi / tolerance)
    hi_spec, hi_cost = evaluate(hi)
    while getattr(hi_cost, metric) <= budget:  # bracket: double φ until the network is too big
        if hi >= top:
            raise NasscaleError(f"the budget of {budget:,.0f} {LABELS[metric]} is beyond phi = "
                                f"{max_phi:g} ({getattr(hi_cost, metric):,} {LABELS[metric]})")
        lo, lo_spec, lo_cost = hi, hi_spec, hi_cost
        hi = min(2 * hi, top)
        hi_spec, hi_cost = evaluate(hi)
    while hi - lo > 1:  # bisect on the grid: lo fits, hi does not
        mid = (lo + hi) // 2
        mid_spec, mid_cost = evaluate(mid)
        if getattr(mid_cost, metric) <= budget:
            lo, lo_spec, lo_cost = mid, mid_spec, mid_cost
        else:
            hi, hi_cost = mid, mid_cost
    return Fit(metric=metric, budget=budget, phi=round(lo * tolerance, 9), spec=lo_spec,
               cost=lo_cost, above_phi=round(hi * tolerance, 9), above_cost=hi_cost)
