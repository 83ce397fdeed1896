"""Plain-text tables for the command line (no pandas needed)."""
from __future__ import annotations

from typing import Sequence

FLOPS_CONVENTION = ("FLOPs = multiply-accumulates (1 MAC = 1 FLOP) of conv, linear and attention "
                    "matmuls, batch 1; BN, LayerNorm, activations, pooling and element-wise ops "
                    "not counted")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: str = "") -> str:
    """Columns padded to their widest cell; columns whose header is in ``right`` align right."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(c.rjust(w) if headers[i] in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def si(n: float) -> str:
    """``5.29M``, ``385.81M``, ``37.75G``."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:g}" if isinstance(n, float) else str(n)
