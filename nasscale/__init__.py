"""nasscale: image-classification networks as data — grammar, costs, scaling, pruning, search.

The public API::

    spec = nasscale.load("efficientnet_b0")         # zoo name or network YAML path
    cost = nasscale.count(spec, resolution=256)     # analytic params and FLOPs (MACs)
    model = nasscale.build(spec)                    # torch.nn.Module
    rec = nasscale.measure(spec, device="cpu")      # latency p50/p90/min/spread + key
    deployed = nasscale.reparameterize(model)       # MobileOne/RepViT/FastViT: fused branches
    budget = nasscale.parse_budget("latency <= 0.8x mobilenet_v3_large")
"""
from __future__ import annotations

from nasscale.budgets import Budget, BudgetResolver, parse_budget
from nasscale.costs.analytic import NetworkCost
from nasscale.errors import NasscaleError, SpecError
from nasscale.grammar import dump_network, format_block, format_stage, parse_block, parse_stage
from nasscale.latency.measure import LatencyRecord, measure
from nasscale.specs import NetworkSpec, ResolvedNetwork, resolve
from nasscale.weights import WeightsError, export_weights, load_weights
from nasscale.zoo import build, count, load, names, reparameterize

__version__ = "0.1.0"


__all__ = [
    "Budget", "BudgetResolver", "LatencyRecord", "measure", "parse_budget",
    "NasscaleError", "NetworkCost", "NetworkSpec", "ResolvedNetwork", "SpecError", "build",
    "count", "dump_network", "format_block", "format_stage", "load", "names", "parse_block",
    "parse_stage", "reparameterize", "resolve", "WeightsError", "export_weights", "load_weights",
]
