"""Count FLOPs of a built module with fvcore, under nasscale's convention.

fvcore's ``FlopCountAnalysis`` by default also counts BatchNorm, LayerNorm, GroupNorm, pooling and
upsampling.  The convention (see ``nasscale.costs.analytic``) counts only convolutions, linear
layers and matmuls, so this analysis registers exactly those handles and lists everything else
it saw in ``not_counted`` — nothing is dropped silently.  ``extra_handles`` lets attention
modules register a handle for ops fvcore does not know (e.g. scaled-dot-product attention).
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from fvcore.nn import jit_handles
from fvcore.nn.jit_analysis import JitModelAnalysis

#: The ops that count, by fvcore's handles (one multiply-accumulate = one FLOP).
COUNTED_OPS: dict[str, Callable] = {
    "aten::_convolution": jit_handles.conv_flop_jit,
    "aten::addmm": jit_handles.addmm_flop_jit,
    "aten::linear": jit_handles.linear_flop_jit,
    "aten::mm": jit_handles.matmul_flop_jit,
    "aten::matmul": jit_handles.matmul_flop_jit,
    "aten::bmm": jit_handles.bmm_flop_jit,
    "aten::einsum": jit_handles.einsum_flop_jit,
}


@dataclass(frozen=True)
class FvcoreCount:
    flops: int
    by_operator: Mapping[str, int]
    not_counted: Mapping[str, int]  # op name -> times seen


def fvcore_count(module: torch.nn.Module, inputs: torch.Tensor | tuple,
                 extra_handles: Mapping[str, Callable] | None = None) -> FvcoreCount:
    """fvcore's count of conv, linear and matmul multiply-accumulates for one forward."""
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    was_training = module.training
    module.eval()
    try:
        analysis = JitModelAnalysis(module, inputs)
        analysis.set_op_handle(**COUNTED_OPS, **(extra_handles or {}))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about data-dependent shapes
            total = int(analysis.total())
            by_op = dict(analysis.by_operator())
            skipped = Counter(analysis.unsupported_ops())
    finally:
        module.train(was_training)
    return FvcoreCount(flops=total, by_operator=by_op, not_counted=dict(skipped))
