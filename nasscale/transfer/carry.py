"""Carry weights into a pruned network: keep the filters with the largest L2 norm.

Every parameter and buffer of a block's module has *axes*: for each dimension, the width it
runs over (``in``, ``out``, ``mid``, ``se``, ``attention``, ``heads``), a concatenation of
widths (Swin's patch merging: four copies of ``in``; MobileViT's fusion conv: ``in`` then
``out``; a qkv projection: three copies of its width), or ``None`` (kernel, positions, classes).
``AXES`` (``nasscale.modules.registry``, filled next to each module class) is that registry,
one entry per module class (a test fails when a module of any
named network has a tensor the registry does not describe).

The channels kept of a group are chosen once, by the L2 norm of the filters that *produce*
them (dimension 0 of every weight whose dimension 0 runs over the group, summed over the
group's blocks: a residual chain's channels are kept or dropped together), and every tensor
that touches the group is sliced with the same indices, so downstream input channels follow.
An attention width keeps its head structure: with the head count fixed (MobileViT) every head
keeps the same number of its own channels; with the head dimension fixed (ViT, Swin) whole
heads are kept, the ones with the largest norm.  Derived widths (SE squeezes) keep their own
largest filters.  BatchNorm statistics are sliced like the weights.

``carry_block``/``carry_head`` copy one block (the head) at a time, so weight inheritance
(``nasscale.transfer.containment``) reuses them for a candidate whose blocks are a subset of the
parent's; there a smaller kernel takes the centre of the parent's (``centre_crop``).
"""
from __future__ import annotations

import torch
from torch import nn

from nasscale.errors import NasscaleError
from nasscale.modules.network import Network
from nasscale.modules.registry import AXES
from nasscale.specs import ResolvedNetwork
from nasscale.transfer.groups import Group, has_expand

#: tensors that carry no channel axis (copied as they are)
_PLAIN = ("num_batches_tracked", "relative_position_index")


def block_modules(model: Network) -> list[nn.Module]:
    """The block modules in flat order: stem, every stage's repeats, head blocks."""
    return [*model.stem, *(b for stage in model.stages for b in stage), *model.head_blocks]


def block_axes(module: nn.Module, rb) -> dict:
    fn = AXES.get(type(module))
    if fn is None:
        raise NasscaleError(f"cannot carry weights of a {type(module).__name__} "
                            f"({rb.kind} block): no @weight_axes entry in "
                            "nasscale.modules.registry.AXES")
    axes = fn(module, rb)
    if rb.kind == "mqa":
        axes.update(_mqa_head_axes(axes))
    return axes


def _mqa_head_axes(axes: dict) -> dict:
    """A Mobile MQA block's head axes, which its registry entry leaves unnamed (pruning never
    cuts them; a supernet does): the query's rows and the output's columns run over ``qk``
    (head-major: head h's channel d is row h·key_dim + d), the shared key's and value's rows
    over ``kd`` (key_dim).  Cutting the first heads and the first channels of each keeps the
    form: a smaller MQA whose heads are the first heads, each cut to its first channels."""
    out = {"query.weight": ("qk", "in"), "key.weight": ("kd", "in"),
           "value.weight": ("kd", "in")}
    out["output.weight"] = (axes["output.weight"][0], "qk")
    return out


def head_axes(model: Network, rn: ResolvedNetwork) -> dict:
    """Axes of the head's tensors: ``in`` is the features' group, ``hidden{k}`` the hidden
    widths; the classifier's rows (classes) never change."""
    axes: dict = {}
    if isinstance(model.head.norm, nn.LayerNorm):
        axes.update({"norm.weight": ("in",), "norm.bias": ("in",)})
    bn = ("weight", "bias", "running_mean", "running_var")
    if isinstance(model.head.norm, nn.BatchNorm1d):  # RepViT's classifier norm
        axes.update({f"norm.{n}": ("in",) for n in bn})
    if getattr(model.head, "distill", False):  # its distillation twin
        axes.update({f"norm_dist.{n}": ("in",) for n in bn}
                    if isinstance(model.head.norm_dist, nn.BatchNorm1d) else {})
        axes.update({"classifier_dist.weight": (None, "in"), "classifier_dist.bias": (None,)})
    prev = "in"
    for k in range(len(rn.head.hidden)):
        axes[f"hidden.{2 * k}.weight"] = (f"hidden{k}", prev)
        if rn.head.hidden_norm == "bn":
            axes.update({f"hidden_norm.{k}.{n}": (f"hidden{k}",)
                         for n in ("weight", "bias", "running_mean", "running_var")})
        else:
            axes[f"hidden.{2 * k}.bias"] = (f"hidden{k}",)
        prev = f"hidden{k}"
    axes["classifier.weight"] = (None, prev)
    axes["classifier.bias"] = (None,)
    return axes


def check_covered(model: Network, rn: ResolvedNetwork) -> list[str]:
    """Tensors of ``model`` that the registry does not describe (empty when all are)."""
    missing = []
    for i, (module, rb) in enumerate(zip(block_modules(model), rn.blocks)):
        axes = block_axes(module, rb)
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            if name not in axes and not name.endswith(_PLAIN):
                missing.append(f"block {i} ({rb.kind}): {name} {tuple(t.shape)}")
            elif name in axes and len(axes[name]) > t.dim():
                missing.append(f"block {i} ({rb.kind}): {name} has {t.dim()} dims, axes "
                               f"{axes[name]}")
    axes = head_axes(model, rn)
    for name, t in [*model.head.named_parameters(), *model.head.named_buffers()]:
        if name not in axes:
            missing.append(f"head: {name} {tuple(t.shape)}")
    return missing


# --- choosing and slicing -------------------------------------------------------------------------

def _segments(axis) -> tuple[str, ...]:
    return axis if isinstance(axis, tuple) else (axis,)


def _sizes(rb) -> dict[str, int]:
    sizes = {"in": rb.in_channels, "out": rb.out_channels, **dict(rb.widths)}
    spec = rb.spec
    if hasattr(spec, "transformer_dim"):
        sizes["attention"] = spec.transformer_dim
    if hasattr(spec, "num_heads"):
        sizes["heads"] = spec.num_heads
    if hasattr(spec, "key_dim"):  # Mobile MQA: every head's channels, and one head's
        sizes.update(qk=spec.num_heads * spec.key_dim, kd=spec.key_dim)
    return sizes


def bindings(rn: ResolvedNetwork, groups: list[Group]) -> list[dict[str, str | None]]:
    """For every flat block, the group behind each of its axis names."""
    by_field: dict[tuple[int, str], str] = {}
    for g in groups:
        for m in g.members:
            if m.block is not None:
                by_field[(m.block, m.field)] = g.name
    out = []
    current = None  # group of the tensor flowing in
    for i, rb in enumerate(rn.blocks):
        names = {"in": current, "out": by_field.get((i, "out_channels"), current),
                 "mid": by_field.get((i, "mid_channels")),
                 "attention": by_field.get((i, "transformer_dim"))}
        if names["mid"] is None and not has_expand(rb):
            names["mid"] = current
        out.append(names)
        current = names["out"]
    return out


def select_channels(model: Network, rn: ResolvedNetwork, groups: list[Group],
                    widths: dict[str, int], ordered: bool = False) -> dict[str, torch.Tensor]:
    """The kept channel indices (sorted) of every group whose width changes; ``ordered``: the
    strongest first instead (with every channel kept, a permutation that sorts the group)."""
    binds = bindings(rn, groups)
    by_name = {g.name: g for g in groups}
    score: dict[str, torch.Tensor] = {}
    for module, rb, names in zip(block_modules(model), rn.blocks, binds):
        sizes = _sizes(rb)
        axes = block_axes(module, rb)
        for pname, param in module.named_parameters():
            ax = axes.get(pname)
            if ax is None or param.dim() < 2 or ax[0] is None:
                continue
            for g in {names.get(seg) for seg in _segments(ax[0]) if _is_producer(seg)}:
                if g in widths:
                    _accumulate(score, g, ax[0], param, sizes, names)
    head = dict(model.head.named_parameters())
    for k in range(len(rn.head.hidden)):
        g = f"head.hidden[{k}]"
        if g in widths:
            w = head[f"hidden.{2 * k}.weight"].detach().float()
            score[g] = w.pow(2).sum(1)
    kept = {}
    for g, width in widths.items():
        group = by_name[g]
        s = score.get(g)
        if s is None:
            raise NasscaleError(f"{g}: no filter produces this group's channels")
        if ordered and group.heads:
            raise NasscaleError(f"{g}: an attention width's channels are not sorted")
        kept[g] = torch.topk(s, width).indices if ordered else _top(s, width, group)
    return kept


def _is_producer(seg: str) -> bool:
    """Rows under ``seg`` are filters that write the group's tensor: not rows indexed by the
    block's input (a depthwise conv, q/k/v), nor rows marked ``.`` (same channels, other
    tensor: a depthwise conv after an expand conv, an SE gate)."""
    return seg != "in" and not seg.startswith(".")


def _accumulate(score, group, axis0, param, sizes, names) -> None:
    offset = 0
    for seg in _segments(axis0):
        n = sizes[seg.lstrip(".")]
        if _is_producer(seg) and names.get(seg) == group:
            rows = param[offset:offset + n].detach().float().reshape(n, -1)
            score[group] = score.get(group, 0) + rows.pow(2).sum(1).cpu()
        offset += n


def _top(score: torch.Tensor, width: int, group: Group) -> torch.Tensor:
    """The ``width`` best channels, keeping the head structure of an attention width."""
    n = score.numel()
    if not group.heads:
        return torch.sort(torch.topk(score, width).indices).values
    _, _, policy, head_dim = group.heads[0]
    heads = n // head_dim
    per_head = score.reshape(heads, head_dim)
    if policy == "head_dim":  # keep whole heads, the strongest
        keep = torch.sort(torch.topk(per_head.sum(1), width // head_dim).indices).values
        return (keep[:, None] * head_dim + torch.arange(head_dim)).reshape(-1)
    k = width // heads  # the head count stays: each head keeps its own best channels
    idx = torch.sort(torch.topk(per_head, k, dim=1).indices, dim=1).values
    return (idx + torch.arange(heads)[:, None] * head_dim).reshape(-1)


def _slice(tensor: torch.Tensor, axes, old: dict[str, int], new: dict[str, int],
           index: dict[str, torch.Tensor | range | None]) -> torch.Tensor:
    """``tensor`` cut along every axis to the kept channels (``index``: indices, or a
    ``range`` of first channels, cut as a view)."""
    out = tensor
    for dim, axis in enumerate(axes):
        if axis is None:
            continue
        segments = [seg.lstrip(".") for seg in _segments(axis)]
        if len(segments) == 1 and isinstance(index.get(segments[0]), range):
            kept = index[segments[0]]
            if len(kept) != out.shape[dim]:
                out = out.narrow(dim, kept.start, len(kept))
            continue
        parts, offset, changed = [], 0, False
        for seg in segments:
            idx = index.get(seg)
            if idx is None:
                parts.append(torch.arange(offset, offset + old[seg]))
            else:
                idx = torch.as_tensor(idx) if isinstance(idx, range) else idx
                parts.append(idx.cpu() + offset)
                changed = True
            offset += old[seg]
        if changed:
            out = out.index_select(dim, torch.cat(parts).to(out.device))
    return out


def carry_weights(old_model: Network, old_rn: ResolvedNetwork, new_model: Network,
                  new_rn: ResolvedNetwork, groups: list[Group], widths: dict[str, int]) -> None:
    """Copy ``old_model``'s weights into ``new_model`` (the network pruned to ``widths``),
    keeping the largest-norm filters of every pruned group (see module doc)."""
    kept = select_channels(old_model, old_rn, groups, widths)
    binds = bindings(old_rn, groups)
    with torch.no_grad():
        for old_m, new_m, rb_old, rb_new, names in zip(block_modules(old_model),
                                                      block_modules(new_model), old_rn.blocks,
                                                      new_rn.blocks, binds):
            carry_block(old_m, rb_old, new_m, rb_new, names, kept, groups)
        carry_head(old_model, old_rn, new_model, new_rn, binds[-1]["out"] if binds else None,
                   kept)


def carry_block(old_m: nn.Module, rb_old, new_m: nn.Module, rb_new, names: dict,
                kept: dict[str, torch.Tensor], groups: list[Group],
                crop_kernels: bool = False) -> None:
    """Copy one block's tensors into a smaller block of the same kind: ``names`` binds the
    old block's axis names to width groups (``bindings``), ``kept`` holds the channels kept of
    each group that shrinks (``select_channels``).  Tensors only the old block has (an SE the
    new block drops) are left out.  ``crop_kernels``: a smaller spatial kernel takes the
    centre of the old one (weight inheritance; pruning never changes kernels)."""
    shapes = tensor_shapes(new_m)
    _copy_into(new_m, block_tensors(old_m, rb_old, shapes, rb_new, names, kept, groups,
                                    crop_kernels))


def block_tensors(old_m: nn.Module, rb_old, shapes: dict[str, torch.Size], rb_new,
                  names: dict, kept: dict[str, torch.Tensor], groups: list[Group],
                  crop_kernels: bool = False, tensors: dict | None = None,
                  first: bool = False, index: dict | None = None) -> dict[str, torch.Tensor]:
    """The tensors of the smaller block (``shapes``: its tensor names and shapes) cut from
    ``old_m``'s by the rules of ``carry_block``, as views and ``index_select``s that autograd
    follows back into ``old_m``'s parameters (a supernet trains through them).  ``tensors``
    replaces ``old_m``'s own (same names and shapes: optimizer state, or index maps); the
    channels kept are still chosen from ``old_m``'s weights.  ``first``: a derived width (SE)
    keeps its first channels rather than its largest filters (a supernet's are sorted);
    ``index`` sets the channels of an axis directly (``{"se": order}``)."""
    old_sizes, new_sizes = _sizes(rb_old), _sizes(rb_new)
    given = index or {}
    index = {axis: kept.get(g) if g is not None else None for axis, g in names.items()}
    axes = block_axes(old_m, rb_old)
    if "se" in old_sizes and new_sizes.get("se") not in (None, 0, old_sizes["se"]):  # 0: none
        width = new_sizes["se"]
        index["se"] = range(width) if first else _derived(old_m, axes, "se", width)
    if "qk" in old_sizes:
        index.update(_mqa_index(old_sizes, new_sizes))
    elif "heads" in old_sizes and old_sizes["heads"] != new_sizes["heads"]:
        g = names.get("in")
        head_dim = next(x for x in groups if x.name == g).heads[0][3]
        index["heads"] = torch.unique(kept[g] // head_dim)
    index.update(given)
    source = tensors if tensors is not None else own_tensors(old_m)
    return _tensors(source, shapes, axes, old_sizes, new_sizes, index, crop_kernels)


def _mqa_index(old: dict[str, int], new: dict[str, int]) -> dict:
    """The first ``new["heads"]`` heads of a Mobile MQA block, each its first ``new["kd"]``
    channels (``_mqa_head_axes``); empty when nothing shrinks."""
    heads, dim = new["heads"], new["kd"]
    if (heads, dim) == (old["heads"], old["kd"]):
        return {}
    if dim == old["kd"]:
        return {"qk": range(heads * dim)}
    rows = torch.arange(heads)[:, None] * old["kd"] + torch.arange(dim)
    return {"qk": rows.reshape(-1), "kd": range(dim)}


def carry_head(old_model: Network, old_rn: ResolvedNetwork, new_model: Network,
               new_rn: ResolvedNetwork, features: str | None,
               kept: dict[str, torch.Tensor]) -> None:
    """Copy the head: ``features`` is the group of the tensor it pools (the last block's
    ``out`` binding); hidden widths keep ``kept["head.hidden[k]"]``; classes never change."""
    shapes = tensor_shapes(new_model.head)
    _copy_into(new_model.head, head_tensors(old_model, old_rn, shapes, new_rn, features, kept))


def head_tensors(old_model: Network, old_rn: ResolvedNetwork, shapes: dict, new_rn:
                 ResolvedNetwork, features: str | None, kept: dict[str, torch.Tensor],
                 tensors: dict | None = None) -> dict[str, torch.Tensor]:
    """The head's tensors cut from ``old_model``'s (``block_tensors`` for the head)."""
    head_index = {"in": kept.get(features) if features is not None else None}
    for k in range(len(new_rn.head.hidden)):
        head_index[f"hidden{k}"] = kept.get(f"head.hidden[{k}]")
    sizes_old = {"in": old_rn.head.in_channels,
                 **{f"hidden{k}": w for k, w in enumerate(old_rn.head.hidden)}}
    sizes_new = {"in": new_rn.head.in_channels,
                 **{f"hidden{k}": w for k, w in enumerate(new_rn.head.hidden)}}
    source = tensors if tensors is not None else own_tensors(old_model.head)
    return _tensors(source, shapes, head_axes(old_model, old_rn), sizes_old, sizes_new,
                    head_index)


def _derived(module: nn.Module, axes: dict, axis: str, width: int) -> torch.Tensor:
    """Kept channels of a derived width: its own largest producing filters."""
    params = dict(module.named_parameters())
    score = None
    for name, ax in axes.items():
        if ax and ax[0] == axis and params[name].dim() >= 2:
            s = params[name].detach().float().reshape(params[name].shape[0], -1).pow(2).sum(1)
            score = s if score is None else score + s
    return torch.sort(torch.topk(score, width).indices).values


def centre_crop(tensor: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The centre of a conv weight's spatial dims (a 3x3 kernel from a 5x5 one); the other
    dims must already match.  Odd kernels with padding k // 2 keep their centre aligned, so a
    cropped conv equals the old one whose outer ring of weights is zero."""
    if tensor.dim() != 4 or len(shape) != 4 or tensor.shape[:2] != shape[:2]:
        return tensor
    (h, w), (nh, nw) = tensor.shape[2:], shape[2:]
    if nh > h or nw > w or (h - nh) % 2 or (w - nw) % 2:
        return tensor
    top, left = (h - nh) // 2, (w - nw) // 2
    return tensor[:, :, top:top + nh, left:left + nw]


def own_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


def tensor_shapes(module: nn.Module) -> dict[str, torch.Size]:
    return {name: t.shape for name, t in own_tensors(module).items()}


def _tensors(source: dict, shapes: dict, axes: dict, old_sizes: dict, new_sizes: dict,
             index: dict, crop_kernels: bool = False) -> dict[str, torch.Tensor]:
    out = {}
    for name, shape in shapes.items():
        src = source.get(name)
        if src is None:
            raise NasscaleError(f"carrying weights: the smaller network has {name} "
                                f"{tuple(shape)}, which the source block lacks")
        if name in axes:
            src = _slice(src, axes[name], old_sizes, new_sizes, index)
        if crop_kernels and src.shape != shape:
            src = centre_crop(src, shape)
        if src.shape != shape:
            raise NasscaleError(f"carrying weights: {name} would be {tuple(src.shape)} but the "
                                f"smaller network needs {tuple(shape)}")
        out[name] = src
    return out


def _copy_into(module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    own = own_tensors(module)
    for name, t in tensors.items():
        own[name].copy_(t)
