"""EfficientNet's step 1 as a study: a grid over the compound-scaling coefficients.

Tan & Le fix φ = 1 and search α (depth), β (width), γ (resolution) ≥ 1 under
α·β²·γ² ≈ 2 (FLOPs grow by about 2^φ), evaluating each candidate network; they found
α = 1.2, β = 1.1, γ = 1.15 for B0.  ``CoefficientSpace`` is the same experiment on any base
network of the grammar: its grid is every (α, β, γ) from the study's lists whose product is
within ``tolerance`` of ``target``, one Optuna categorical parameter ``coefficients`` ("α,β,γ")
sampled by Optuna's ``GridSampler``; ``sample(trial)`` returns ``compound(base, φ, α, β, γ)``.

Study file section::

    coefficients:
      base: efficientnet_b0
      phi: 1
      alpha: [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
      beta: [1.0, 1.05, 1.1, 1.15, 1.2, 1.25]
      gamma: [1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.3]
      target: 2.0        # alpha * beta^2 * gamma^2
      tolerance: 0.05    # relative
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from nasscale import zoo
from nasscale.errors import SpecError
from nasscale.grammar.yaml_io import check_keys
from nasscale.scaling import compound
from nasscale.specs import NetworkSpec

COEFFICIENT_KEYS = ("base", "phi", "alpha", "beta", "gamma", "target", "tolerance")


def triple_label(alpha: float, beta: float, gamma: float) -> str:
    return f"{alpha:g},{beta:g},{gamma:g}"


@dataclass(frozen=True)
class CoefficientSpace:
    base: NetworkSpec
    phi: float
    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    gammas: tuple[float, ...]
    target: float = 2.0
    tolerance: float = 0.05

    @property
    def name(self) -> str:
        return f"{self.base.name}_coefficients"

    @property
    def num_classes(self) -> int:
        return self.base.num_classes

    @property
    def contains(self) -> tuple[str, ...]:
        return (self.base.name,)

    def triples(self) -> list[tuple[float, float, float]]:
        """Every (α, β, γ) of the lists with |α·β²·γ² / target − 1| ≤ tolerance."""
        return [(a, b, g) for a, b, g in itertools.product(self.alphas, self.betas, self.gammas)
                if abs(a * b * b * g * g / self.target - 1) <= self.tolerance]

    def grid(self) -> dict[str, list[str]]:
        return {"coefficients": [triple_label(*t) for t in self.triples()]}

    def sample(self, trial, name: str = "candidate") -> NetworkSpec:
        labels = self.grid()["coefficients"]
        label = trial.suggest_categorical("coefficients", labels)
        alpha, beta, gamma = (float(x) for x in label.split(","))
        if hasattr(trial, "set_user_attr"):
            for key, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma),
                               ("flops_factor", alpha * beta ** 2 * gamma ** 2)):
                trial.set_user_attr(key, value)
        return compound(self.base, self.phi, alpha, beta, gamma, name=name)


def _floats(value: Any, where: str) -> tuple[float, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 1
                         for v in values):
        raise SpecError(f"must be a list of numbers >= 1, got {value!r}", (where,))
    return tuple(float(v) for v in values)


def coefficient_space_from_data(data: Any, base: str | None = None) -> CoefficientSpace:
    """The ``coefficients`` section of a study (``base`` overrides the file's base)."""
    data = check_keys(data, COEFFICIENT_KEYS, "coefficients", required=("alpha", "beta",
                                                                         "gamma"))
    name = base or data.get("base")
    if not name:
        raise SpecError("needs base: a network name or YAML path", ("coefficients.base",))
    phi = data.get("phi", 1)
    if isinstance(phi, bool) or not isinstance(phi, (int, float)) or phi <= 0:
        raise SpecError(f"must be a number > 0, got {phi!r}", ("coefficients.phi",))
    target = float(data.get("target", 2.0))
    tolerance = data.get("tolerance", 0.05)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise SpecError(f"must be a number >= 0, got {tolerance!r}", ("coefficients.tolerance",))
    space = CoefficientSpace(base=zoo.load(name), phi=float(phi),
                             alphas=_floats(data["alpha"], "coefficients.alpha"),
                             betas=_floats(data["beta"], "coefficients.beta"),
                             gammas=_floats(data["gamma"], "coefficients.gamma"),
                             target=target, tolerance=float(tolerance))
    if not space.triples():
        raise SpecError(f"no (alpha, beta, gamma) of the lists has alpha*beta^2*gamma^2 within "
                        f"{tolerance:g} of {target:g}", ("coefficients",))
    return space
