"""NetAdapt-style width pruning (Yang et al., ECCV 2018): spec in, smaller spec out.

``width_groups(spec)`` lists what can shrink, ``prune(spec, widths)`` shrinks it (pure),
``nasscale.transfer.carry.carry_weights`` copies the kept filters into the smaller module
(it imports torch, so it is not imported here), and ``netadapt`` runs the iterative search for
a latency, FLOPs or parameter target (``parse_target``).
"""
from nasscale.pruning.evaluate import EVALUATOR_HELP
from nasscale.pruning.netadapt import Options, Result, netadapt
from nasscale.pruning.report import result_record, result_text
from nasscale.pruning.resource import TARGET_HELP, Target, parse_target
from nasscale.pruning.run import PruneRequest, run_prune
from nasscale.transfer.groups import (
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

__all__ = ["EVALUATOR_HELP", "Group", "Member", "Options", "PruneRequest", "Result",
           "TARGET_HELP", "Target", "block_names", "compact", "flatten", "netadapt",
           "parse_target", "prunable", "prune", "result_record", "result_text", "run_prune",
           "structure", "width_groups"]
