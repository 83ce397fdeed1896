"""Count FLOPs of a built module with fvcore, under nasscale's convention.

fvcore's ``FlopCountAnalysis`` by default also counts BatchNorm, LayerNorm, GroupNorm, pooling and
upsampling.  The convention (see ``nasscale.costs.analytic``) counts only convolutions, linear
layers and matmuls, so this analysis registers exactly those handles and lists everything else
it saw in ``not_counted`` — nothing is dropped silently.  ``extra_handles`` registers more.

fvcore has no handle for attention kernels and would count them as zero; the two below count
what the analytic model counts — Q·Kᵀ and A·V, one multiply-accumulate per FLOP, softmax, scaling,
masks and bias adds not counted:

- ``aten::scaled_dot_product_attention`` (what every nasscale attention module calls): with
  query (..., L, E), key (..., S, E), value (..., S, Ev): ``prod(...) · L · S · (E + Ev)``.
- ``aten::_native_multi_head_attention``: the fused fast path ``nn.MultiheadAttention`` takes in
  eval mode without gradients (torchvision's ViT traced for counting).  One op stands for the
  q/k/v projections, the attention and the output projection, none of which appears separately
  in the trace, so the handle counts all of them and nothing is counted twice.  With gradients
  enabled the module instead traces to ``aten::linear`` + ``aten::scaled_dot_product_attention``;
  both paths give the same count (tested).

Element-wise ``aten::mul`` and reductions (``aten::sum``) are never counted, also where they
form a weighted sum: MobileViTv2's separable self-attention builds its context vector that way
(timm's and nasscale's modules alike), and the analytic model does not count it either.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from fvcore.nn import jit_handles
from fvcore.nn.jit_analysis import JitModelAnalysis
from fvcore.nn.jit_handles import get_shape


def _prod(dims) -> int:
    out = 1
    for d in dims:
        out *= d
    return out


def sdpa_flop_jit(inputs: list, outputs: list) -> int:
    """Q·Kᵀ + A·V of ``aten::scaled_dot_product_attention``."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    return _prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def native_mha_flop_jit(inputs: list, outputs: list) -> int:
    """Projections + Q·Kᵀ + A·V of ``aten::_native_multi_head_attention`` (batch-first inputs
    (B, L, E), key/value (B, S, E); the heads add up to E)."""
    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    batch, length, width = _prod(q[:-2]), q[-2], q[-1]
    source = k[-2]
    projections = batch * (2 * length + 2 * source) * width * width  # q, k, v, output
    return projections + 2 * batch * length * source * width

#: The ops that count, by fvcore's handles (one multiply-accumulate = one FLOP).
COUNTED_OPS: dict[str, Callable] = {
    "aten::_convolution": jit_handles.conv_flop_jit,
    "aten::addmm": jit_handles.addmm_flop_jit,
    "aten::linear": jit_handles.linear_flop_jit,
    "aten::mm": jit_handles.matmul_flop_jit,
    "aten::matmul": jit_handles.matmul_flop_jit,
    "aten::bmm": jit_handles.bmm_flop_jit,
    "aten::einsum": jit_handles.einsum_flop_jit,
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
    "aten::_native_multi_head_attention": native_mha_flop_jit,
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
