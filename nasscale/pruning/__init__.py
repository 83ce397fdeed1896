"""NetAdapt-style width pruning (Yang et al., ECCV 2018): spec in, smaller spec out.

``width_groups(spec)`` lists what can shrink, ``prune(spec, widths)`` shrinks it (pure),
``nasscale.pruning.weights.carry_weights`` copies the kept filters into the smaller module
(it imports torch, so it is not imported here), and ``netadapt`` runs the iterative search for
a latency, FLOPs or parameter target (``parse_target``).
"""
from nasscale.pruning.groups import (
    Group,
    Member,
    block_names,
    compact,
    flatten,
    prunable,
    prune,
    structure,
    width_groups,
)
from nasscale.pruning.netadapt import Options, Result, netadapt
from nasscale.pruning.resource import Target, parse_target

__all__ = ["Group", "Member", "Options", "Result", "Target", "block_names", "compact",
           "flatten", "netadapt", "parse_target", "prunable", "prune", "structure",
           "width_groups"]
