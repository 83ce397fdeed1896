"""Compound scaling: pure functions from a network spec to a scaled spec.

    scaled = scale(spec, width=1.1, depth=1.2, resolution=260)
    b6ish = compound(spec, phi=6)                 # α=1.2, β=1.1, γ=1.15
    fit = largest_phi(spec, "flops", 2e9)         # the largest φ whose network fits a budget

What scales in each block kind is ``rules.KIND_RULES``; how it is rounded is the network's
``RoundingPolicy`` (its family file's ``rounding:``).  See docs/DESIGN.md, "Scaling".
"""
from nasscale.scaling.budget import Fit, largest_phi, parse_amount
from nasscale.scaling.report import Scaling, scaling_record, scaling_text
from nasscale.scaling.rules import KIND_RULES, KindRule, round_resolution, round_width
from nasscale.scaling.scale import (
    ALPHA,
    BETA,
    GAMMA,
    Compound,
    compound,
    compound_resolution,
    flops_factor,
    scale,
)

__all__ = [
    "ALPHA", "BETA", "GAMMA", "Compound", "Fit", "KIND_RULES", "KindRule", "compound",
    "compound_resolution", "flops_factor", "largest_phi", "parse_amount", "round_resolution",
    "round_width", "scale", "Scaling", "scaling_record", "scaling_text",
]
