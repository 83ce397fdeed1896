"""Zero-cost proxies: scores of an untrained network that are meant to rank architectures.

- **NASWOT** (Mellor et al., "Neural Architecture Search without Training", ICML 2021): for a
  batch of N inputs, every ReLU-like unit gives each input a binary code (active or not);
  ``K[i, j]`` counts the units on which inputs i and j agree; the score is ``log |det K|``.
  Networks whose units separate the inputs well score high.  Units are the outputs of every
  ReLU, ReLU6, h-swish, SiLU and GELU (active = output > 0, the sign of the pre-activation);
  sigmoid-like SE gates are not units.  Computed in training mode (batch statistics), no grad.
- **synflow** (Tanaka et al., NeurIPS 2020; as a NAS proxy: Abdelfattah et al., ICLR 2021):
  with every parameter replaced by its absolute value and an all-ones input, the score is
  ``Σ |θ · ∂R/∂θ|`` where ``R`` is the sum of the outputs — data-free, in float64, with
  BatchNorm in eval mode (identity at initialisation).  Reported as ``log10`` of the sum,
  because the raw sum spans hundreds of orders of magnitude.

Both are deterministic for a seed: the caller seeds the weight initialisation and the batch.
Whether a proxy is worth anything must be measured on the user's data (``benchmarks/
proxy_quality.py``); it is never assumed.
"""
from __future__ import annotations

import math

import torch
from torch import nn

#: Modules whose outputs are NASWOT's units (ReLU-like: positive iff the input is positive).
UNIT_TYPES = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.GELU)


def naswot(model: nn.Module, batch: torch.Tensor) -> float:
    """``log |det K_H|`` of the activation-pattern kernel over ``batch`` (N inputs)."""
    n = batch.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_module, _inputs, output):
        codes = (output.detach().reshape(n, -1) > 0).to(torch.float64)
        # agreements: both active + both inactive  ==  N_A - Hamming distance
        kernel.add_(codes @ codes.T).add_((1 - codes) @ (1 - codes).T)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, UNIT_TYPES)]
    was_training = model.training
    try:
        model.train()
        with torch.no_grad():
            model(batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not handles:
        raise ValueError("NASWOT needs ReLU-like activations; this network has none")
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if sign > 0 else float("-inf")


def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """``log10 Σ |θ ⊙ ∂R/∂θ|`` with |θ| and an all-ones input (one sample), in float64."""
    model = _double_copy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    model.eval()  # BatchNorm with its initial running stats: an identity
    model.zero_grad()
    x = torch.ones((1, *input_shape[1:]), dtype=torch.float64)
    model(x).sum().backward()
    with torch.no_grad():
        total = sum(float((p * p.grad).abs().sum()) for p in model.parameters()
                    if p.grad is not None)
    return math.log10(total) if total > 0 else float("-inf")


def _double_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).double()


PROXIES = {"naswot": naswot, "synflow": synflow}
