"""Cost models: analytic params/FLOPs; fvcore cross-check (imports torch lazily)."""
from nasscale.costs.analytic import COSTS, Cost, NetworkCost, block_cost, head_cost, network_cost
from nasscale.costs.summary import stage_rows

__all__ = ["COSTS", "Cost", "NetworkCost", "block_cost", "head_cost", "network_cost",
           "stage_rows"]
