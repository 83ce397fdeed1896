"""Deterministic stand-in weights, derived from each tensor's name: what the equivalence checks
fill a reference model with (no weight file is needed: the names and shapes suffice).

Each floating-point tensor draws from a CPU generator seeded by the CRC-32 of its name, scaled
so that activations stay of order one: norm weights and layer scales about 1, biases and BN
running means about 0.1, running variances in [0.5, 1.5), other tensors N(0, 1/fan-in).
Integer tensors (``num_batches_tracked``, index buffers) are left as they are.
"""
from __future__ import annotations

import math
import zlib
from typing import Mapping


def seeded_tensor(name: str, shape, like=None):
    import torch

    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    shape = tuple(shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=g)
    if len(shape) <= 1 and leaf in ("weight", "gamma", "layer_scale"):
        return 1 + 0.2 * torch.randn(shape, generator=g)
    if len(shape) <= 1:
        return 0.1 * torch.randn(shape, generator=g)
    fan_in = max(1, math.prod(shape) // max(1, shape[0]))
    return torch.randn(shape, generator=g) / math.sqrt(fan_in)


def seeded_state_dict(state: Mapping[str, object], salt: str = "") -> dict:
    """``state`` with every floating-point tensor replaced by its seeded stand-in (``salt``
    varies the draw: repeats of a check use different weights)."""
    out = {}
    for key, t in state.items():
        if t.is_floating_point():
            out[key] = seeded_tensor(salt + key, t.shape).to(t.dtype)
        else:
            out[key] = t.clone()
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:  # module versions some references check on load
        from collections import OrderedDict

        out = OrderedDict(out)
        out._metadata = metadata  # type: ignore[attr-defined]
    return out
