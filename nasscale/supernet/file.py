"""A supernet file, and starting a supernet from trained weights.

A supernet file is a nasscale weights file of the space's largest member (``nasscale train
--weights``, ``nasscale prune --weights`` and ``torch.load`` read it as that network's
weights) with its alternate blocks (``alternates``: ``nasscale.transfer.variants``) and a
``supernet`` record beside: the space it was trained for (its name and a fingerprint of its
choices), the data and held-out split it trained on, its settings and the per-epoch top-1 of
its probe subnetworks.  Scoring reads that record to refuse a file made for another space and
to hold out the same images.

Weights are shared per layer and block kind: a slot that mixes kinds keeps one alternate block
per other kind at each layer (and per input, where a skipped non-residual layer changes what
the next block reads).  Mobile MQA tails are shared (first heads, first channels per head);
MobileViT tails are refused at load, with the slot named.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError
from nasscale.specs import NetworkSpec
from nasscale.transfer.containment import NotContained, Parent, check_space

FORMAT = "nasscale-supernet-1"
WEIGHTS_FORMAT = "nasscale-weights-1"


def space_fingerprint(space: Any) -> str:
    """A digest of a space's choices (not its name, description or examples)."""
    bare = dataclasses.replace(space, description="", contains=())
    return hashlib.sha256(repr(bare).encode()).hexdigest()[:16]


def supernet_spec(space: Any, resolution: int, num_classes: int) -> NetworkSpec:
    """The supernet: the space's largest member at the training resolution and classes."""
    return space.largest(name=f"{space.name}_supernet").replace(
        resolution=resolution, num_classes=num_classes,
        paper=f"the supernet of search space {space.name} (its largest member)")


def aligned(space: Any, spec: NetworkSpec, where: str = "space") -> Parent:
    """The supernet aligned with its space (a per-kind ``Parent``, with its alternate
    blocks), or an error naming the slots it cannot share."""
    try:
        return check_space(space, spec, per_kind=True)
    except NotContained as err:
        raise NasscaleError(f"{where} {space.name}: cannot be trained as a supernet: "
                            f"{'; '.join(err.problems)} (a supernet shares weights per layer "
                            "and block kind, and Mobile MQA tails)") from None


def alternates(parent: Parent, space: Any = None, state: dict | None = None, seed: int = 0):
    """The supernet's alternate blocks (``parent.variants``) as modules: key -> (module,
    resolved block); ``state`` (``alternates_state``) fills them.  (``space``: unused, the
    parent knows its space.)"""
    import torch

    from nasscale.modules.network import build_block

    torch.manual_seed(seed + 1)
    out = {key: (build_block(v.rb), v.rb) for key, v in parent.variants.items()}
    if state is not None:
        for key, (module, _) in out.items():
            own = {k[len(f"{key}."):]: v for k, v in state.items() if k.startswith(f"{key}.")}
            try:
                module.load_state_dict(own)
            except RuntimeError as err:
                raise NasscaleError(f"the supernet file's alternate block {key} does not fit "
                                    f"(the space has changed?): {str(err)[:120]}") from None
    return out


def alternates_state(alts: dict) -> dict:
    """The alternates' tensors by ``KEY.NAME``, as a supernet file holds them."""
    return {f"{key}.{k}": v.detach().cpu() for key, (m, _) in alts.items()
            for k, v in m.state_dict().items()}


def write(path: Path, model, spec: NetworkSpec, data, record: dict, alts: dict) -> None:
    """Write the supernet file (atomically: a kill leaves the previous one)."""
    import torch

    from nasscale.grammar import network_to_data

    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": WEIGHTS_FORMAT, "state_dict": {
        k: v.detach().cpu() for k, v in model.state_dict().items()},
        "alternates": alternates_state(alts),
        "network": network_to_data(spec), "classes": list(data.classes),
        "accuracy": record["history"][-1]["top1"]["largest"] if record["history"] else None,
        "data": data.name, "normalisation": data.normalisation,
        "supernet": {"format": FORMAT, **record}}, tmp)
    tmp.replace(path)


def read(path: str, space: Any, where: str):
    """The checkpoint of a supernet file made for ``space``, or an error naming ``where``."""
    from nasscale.modules.checkpoint import read_checkpoint

    ckpt = read_checkpoint(path, where)
    meta = ckpt.meta.get("supernet")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise NasscaleError(f"{where} {path}: not a supernet file (no supernet record); make "
                            f"one with: nasscale supernet train {space.name} --data DATA -o "
                            f"{path}")
    if meta.get("space") != space.name:
        raise NasscaleError(f"{where} {path}: a supernet of space {meta.get('space')!r}, not "
                            f"of {space.name!r}")
    if meta.get("space_fingerprint") != space_fingerprint(space):
        raise NasscaleError(f"{where} {path}: made for another version of space "
                            f"{space.name} (its choices have changed since); train it again")
    return ckpt


# --- starting from trained weights ------------------------------------------------------------

def init_weights(parent: Parent, model, path: str, network: str | None = None,
                 space: Any = None, alts: dict | None = None) -> str:
    """Write a trained network's weights into the supernet ``model`` where its subnetwork
    takes them from (``View.write_back``) and return what stayed fresh, in a line.  ``path``:
    a nasscale weights file (which names its network), or torchvision / timm weights of
    ``network`` (default: the published network of the space that they fit)."""
    from nasscale.modules.checkpoint import read_checkpoint
    from nasscale.transfer.views import View

    where = "--init"
    ckpt = read_checkpoint(path, where)
    spec, state, source = _init_network(ckpt, network, space, path)
    target = parent.spec
    spec = spec.replace(resolution=target.resolution)
    classes = state.get("head.classifier.weight")
    if classes is not None and classes.shape[0] != target.num_classes:
        state = {k: v for k, v in state.items() if not k.startswith("head.classifier.")}
        dropped = f"the classifier ({target.num_classes} classes, the file's has " \
                  f"{classes.shape[0]})"
    else:
        dropped = ""
    spec = spec.replace(num_classes=target.num_classes)
    try:
        view = View(parent, model, spec, first=True, alternates=alts)
    except NotContained as err:
        raise NasscaleError(f"{where} {path}: {spec.name} is not a subnetwork of the supernet: "
                            f"{'; '.join(err.problems[:4])}") from None
    fresh = view.write_back(state)
    sizes = {**{k: v.numel() for k, v in model.state_dict().items()},
             **{f"alt.{key}.{k}": v.numel() for key, (m, _) in (alts or {}).items()
                for k, v in m.state_dict().items()}}
    return f"{where} {path}: {source} weights of {spec.name}; " + _fresh_line(
        parent, model, sizes, fresh, dropped)


def _init_network(ckpt, network: str | None, space: Any, path: str):
    """(spec, state in nasscale names, source) of an init file."""
    from nasscale import zoo
    from nasscale.grammar import network_from_data
    from nasscale.weights import convert_to_nasscale, detect_source

    data = ckpt.meta.get("network")
    if network is None and isinstance(data, dict):
        return network_from_data(data, "network"), ckpt.state_dict, "nasscale"
    names = [network] if network else list(getattr(space, "contains", ()))
    if not names:
        raise NasscaleError(f"--init {path}: the file does not name its network; give "
                            "--init-network NAME")
    tried = []
    for name in names:
        spec = zoo.load(name)
        source = detect_source(spec, ckpt.state_dict)
        try:
            if source == "nasscale":
                from nasscale.modules.checkpoint import load_weights

                load_weights(ckpt, spec, where="--init")
                return spec, ckpt.state_dict, source
            spec, state = convert_to_nasscale(spec, ckpt.state_dict, source, f"--init {path}")
            return spec, state, source
        except NasscaleError as err:
            tried.append(f"{name}: {str(err)[:160]}")
    raise NasscaleError(f"--init {path}: these weights fit none of "
                        f"{', '.join(names)} ({'; '.join(tried)}); give --init-network NAME")


def _fresh_line(parent: Parent, model, sizes: dict[str, int], fresh: dict[str, float],
                dropped: str) -> str:
    """``fresh``: per tensor (``sizes``: its elements), the fraction left as initialised; a
    summary by block, named by slot and layer."""
    from nasscale.transfer.views import block_prefixes

    label = {prefix: parent.label(p) for p, prefix in enumerate(block_prefixes(model))}
    label.update({v.prefix: v.label for v in parent.variants.values()})
    label["head"] = "the head"
    blocks: dict[str, list[float]] = {}
    for name, f in fresh.items():
        if not name.endswith(("weight", "bias")):
            continue
        where = next((label[k] for k in sorted(label, key=len, reverse=True)
                      if name.startswith(k + ".")), name)
        got = blocks.setdefault(where, [0.0, 0.0])
        got[0] += sizes[name] * f
        got[1] += sizes[name]
    total = sum(t for _, t in blocks.values())
    left = sum(f for f, _ in blocks.values())
    whole = [b for b, (f, t) in blocks.items() if t and f == t]
    part = [b for b, (f, t) in blocks.items() if t and 0 < f < t]

    def some(names: list[str]) -> str:
        return ", ".join(names[:5]) + (f" (+{len(names) - 5} more)" if len(names) > 5 else "")

    parts = [f"{100 * (1 - left / max(total, 1)):.1f} % of the supernet's weights come from "
             "it"]
    if whole:
        parts.append(f"fresh: {some(whole)}")
    if part:
        parts.append(f"partly fresh (wider channels, larger kernels): {some(part)}")
    if dropped:
        parts.append(f"new: {dropped}")
    return "; ".join(parts)


__all__ = ["FORMAT", "aligned", "alternates", "alternates_state", "init_weights", "read",
           "space_fingerprint", "supernet_spec", "write"]
