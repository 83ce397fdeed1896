"""NetAdapt-style width pruning (Yang et al., ECCV 2018): spec in, smaller spec out.

``width_groups(spec)`` lists what can shrink, ``prune(spec, widths)`` shrinks it (pure),
``carry_weights`` copies the kept filters into the smaller module, and ``netadapt`` runs the
iterative search for a latency, FLOPs or parameter target.
"""
from nasscale.pruning.groups import (
    Group,
    Member,
    compact,
    flatten,
    prunable,
    prune,
    structure,
    width_groups,
)

__all__ = ["Group", "Member", "compact", "flatten", "prunable", "prune", "structure",
           "width_groups"]
