"""Whether one block's weights fit another's: ``block_problems`` says why a parent block
cannot give a candidate block of a contained network its weights (kind, stride, kernels,
expansion, SE, Mobile MQA heads), one entry per field.  Specs only, no torch."""
from __future__ import annotations

from nasscale.specs import (
    BLOCK_KINDS,
    ConvSpec,
    FusedMBConvSpec,
    MobileMQASpec,
)
from nasscale.transfer.groups import has_expand


def carried_kinds() -> tuple[str, ...]:
    """The kinds whose weights inheritance carries: those whose rule says ``inherit``."""
    return tuple(code for code, cls in BLOCK_KINDS.items() if cls.rule and cls.rule.inherit)


#: the kinds a supernet also shares: its cut handles both UIB kernels and MQA's heads
SUPERNET_KINDS = ("uib", "mqa")


def shared_kinds() -> tuple[str, ...]:
    """The kinds whose weights a supernet shares: the carried ones and ``SUPERNET_KINDS``."""
    return carried_kinds() + SUPERNET_KINDS


def _has_se(rb) -> bool:
    return rb.widths.get("se", 0) > 0


def block_problems(where: str, c, p, q: str = "", width: bool = True,
                   kinds: tuple[str, ...] | None = None) -> list[str]:
    """Why parent block ``p`` cannot give candidate block ``c`` its weights (resolved blocks;
    ``q`` qualifies the candidate's values, e.g. ``"up to "`` for a whole space; ``width``:
    compare output widths here rather than per slot; ``kinds``: the kinds whose weights are
    shared, default ``carried_kinds()``)."""
    cs, ps = c.spec, p.spec
    if type(cs) is not type(ps):
        return [f"{where} is a {cs.kind} block but the parent's is a {ps.kind} block "
                "(weights carry only between blocks of one kind)"]
    if cs.kind not in (kinds if kinds is not None else carried_kinds()):
        return [f"{where}: {cs.kind} blocks are not carried (inherit carries "
                f"{', '.join(carried_kinds())})" if kinds is None else
                f"{where}: {cs.kind} blocks are not shared (a supernet shares "
                f"{', '.join(kinds)})"]
    out = []
    if cs.block_stride != ps.block_stride:
        out.append(f"{where} stride {cs.block_stride} but the parent's block has "
                   f"{ps.block_stride}")
    if width and c.out_channels > p.out_channels:
        out.append(f"{where} width {q}{c.out_channels} but the parent's block has "
                   f"{p.out_channels}")
    unused = isinstance(cs, MobileMQASpec) and cs.kv_stride == 1  # no downsampling conv
    if cs.kernel_size > ps.kernel_size and not unused:
        out.append(f"{where} kernel_size {q}{cs.kernel_size} but the parent's block has "
                   f"{ps.kernel_size}")
    if getattr(cs, "start_kernel", 0) > getattr(ps, "start_kernel", 0):
        out.append(f"{where} start_kernel {q}{cs.start_kernel} but the parent's block has "
                   f"{ps.start_kernel}")
    if isinstance(cs, MobileMQASpec):
        out += _mqa_problems(where, cs, ps, q)
    if getattr(cs, "layer_scale", None) is not None and getattr(ps, "layer_scale", None) is None:
        out.append(f"{where} has a layer scale but the parent's block has none")
    if isinstance(cs, ConvSpec) and (cs.norm != ps.norm or (cs.bias and not ps.bias)):
        out.append(f"{where} has norm {cs.norm}, bias {cs.bias} but the parent's block has "
                   f"norm {ps.norm}, bias {ps.bias}")
    if cs.rule.expands:
        mid, pmid = c.widths["mid"], p.widths["mid"]
        if has_expand(c) and not has_expand(p):
            out.append(f"{where} expanded width {q}{mid} needs an expand conv, which the "
                       "parent's block lacks")
        elif has_expand(p) and not has_expand(c) and isinstance(cs, FusedMBConvSpec):
            out.append(f"{where} has no expand conv (expansion 1) but the parent's fused "
                       "block has one: a fused block without expansion is another conv")
        elif mid > pmid:
            ratio = getattr(cs, "expand_ratio", None) or mid / c.in_channels
            out.append(f"{where} expanded width {q}{mid} (expand_ratio {ratio:.3g} of "
                       f"{c.in_channels}) but the parent's block has {pmid}")
    if _has_se(c) and not _has_se(p):
        out.append(f"{where} has SE but the parent's block has none")
    elif _has_se(c) and c.widths["se"] > p.widths["se"]:
        out.append(f"{where} SE width {q}{c.widths['se']} but the parent's block has "
                   f"{p.widths['se']}")
    return out


def _mqa_problems(where: str, cs, ps, q: str) -> list[str]:
    """A Mobile MQA block keeps the parent's first heads and first channels per head, and
    its key/value downsampling convs only if the parent's has them."""
    out = [f"{where} {name} {q}{getattr(cs, name)} but the parent's block has "
           f"{getattr(ps, name)}" for name in ("num_heads", "key_dim")
           if getattr(cs, name) > getattr(ps, name)]
    if cs.kv_stride > 1 and ps.kv_stride == 1:
        out.append(f"{where} kv_stride {q}{cs.kv_stride} needs key/value downsampling convs, "
                   "which the parent's block lacks (kv_stride 1)")
    return out


__all__ = ["SUPERNET_KINDS", "block_problems", "carried_kinds", "shared_kinds"]
