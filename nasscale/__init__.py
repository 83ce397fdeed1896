"""nasscale: image-classification networks as data — grammar, costs, scaling, pruning, search.

The public API::

    spec = nasscale.load("efficientnet_b0")         # zoo name or network YAML path
    cost = nasscale.count(spec, resolution=256)     # analytic params and FLOPs (MACs)
    model = nasscale.build(spec)                    # torch.nn.Module
    rec = nasscale.measure(spec, device="cpu")      # latency p50/p90/min/spread + key
    budget = nasscale.parse_budget("latency <= 0.8x mobilenet_v3_large")
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from nasscale.budgets import Budget, BudgetResolver, parse_budget
from nasscale.costs.analytic import NetworkCost, network_cost
from nasscale.errors import NasscaleError, SpecError
from nasscale.grammar import dump_network, format_block, format_stage, parse_block, parse_stage
from nasscale.latency.measure import LatencyRecord, measure
from nasscale.specs import NetworkSpec, ResolvedNetwork, resolve
from nasscale.zoo import load, names

if TYPE_CHECKING:  # torch is imported only when a module is built
    from torch import nn

__version__ = "0.1.0"


def count(spec_or_name: "NetworkSpec | str", resolution: int | None = None) -> NetworkCost:
    """Params and FLOPs (multiply-accumulates of conv, linear and attention matmuls, batch 1),
    computed from the resolved spec without building torch modules.  ``.params``, ``.flops``,
    ``.total`` (by op kind) and ``.blocks`` (per resolved block)."""
    return network_cost(resolve(load(spec_or_name), resolution))


def build(spec_or_name: "NetworkSpec | str", resolution: int | None = None) -> "nn.Module":
    """The ``torch.nn.Module`` of a network; forward takes (N, 3, R, R) and gives (N, classes)."""
    from nasscale.modules import build_network

    return build_network(load(spec_or_name), resolution)


__all__ = [
    "Budget", "BudgetResolver", "LatencyRecord", "measure", "parse_budget",
    "NasscaleError", "NetworkCost", "NetworkSpec", "ResolvedNetwork", "SpecError", "build",
    "count", "dump_network", "format_block", "format_stage", "load", "names", "parse_block",
    "parse_stage", "resolve",
]
