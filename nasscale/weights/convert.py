"""Weights in and out: torchvision and timm state dicts to and from nasscale modules.

``load_weights(NETWORK, state_dict_or_path, source=...)`` returns the built module holding those
weights; ``export_weights(module, NETWORK, target=...)`` returns the state dict the reference
implementation loads with ``strict=True``.  Every tensor is used exactly once: a missing, extra
or mis-shaped tensor is an error that names it (and, for a file, the file).

The module computes the *source's* function: its BatchNorm constants are the source's (timm's
MobileNetV3 uses eps 1e-5 where torchvision's uses 1e-3), so the network is built with
``spec_for(spec, source)``, which callers that build more modules from it (the pruner) reuse.
"""
from __future__ import annotations

import math
import os
from typing import Any, Mapping

from nasscale.errors import NasscaleError
from nasscale.specs import NetworkSpec, NormPolicy, resolve
from nasscale.weights.layouts import SOURCES, LayoutError, layout

ALL_SOURCES = ("nasscale", *SOURCES)


class WeightsError(NasscaleError):
    """A state dict does not fit the network (names the tensor and the file)."""


def _spec(network) -> NetworkSpec:
    if isinstance(network, NetworkSpec):
        return network
    from nasscale.zoo import load

    return load(network)


def _check_source(source: str, what: str = "source") -> None:
    if source not in ALL_SOURCES:
        raise WeightsError(f"{what} must be one of {', '.join(ALL_SOURCES)}, got {source!r}")


def spec_for(network, source: str) -> NetworkSpec:
    """The network with the BatchNorm constants of ``source``'s implementation (unchanged for
    ``nasscale``, and where the source's networks differ: the YAML states the reference's)."""
    spec = _spec(network)
    _check_source(source)
    if source == "nasscale":
        return spec
    lay = layout(resolve(spec), source)
    if lay.bn is None:
        return spec
    eps, momentum = lay.bn
    norm = spec.norm
    if norm.bn == (eps, momentum):
        return spec
    return spec.replace(norm=NormPolicy(bn_eps=eps, bn_momentum=momentum, ln_eps=norm.ln_eps),
                        stages=tuple(st.replace(norm=None) for st in spec.stages))


def _keys_and_shapes(spec: NetworkSpec) -> dict[str, tuple[int, ...]]:
    """The nasscale module's state-dict keys and shapes, built without memory (meta device)."""
    import torch

    from nasscale.modules import build_network

    with torch.device("meta"):
        model = build_network(spec)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def reference_keys(network, source: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """nasscale key → (reference key, reference shape), in the nasscale module's order."""
    spec = spec_for(network, source)
    ours = _keys_and_shapes(spec)
    if source == "nasscale":
        return {k: (k, s) for k, s in ours.items()}
    lay = layout(resolve(spec), source)
    names = lay.mapping(list(ours))
    return {k: (names[k], lay.ref_shape(names[k], s)) for k, s in ours.items()}


def _read(weights, where: str) -> tuple[Mapping[str, Any], str]:
    """A state dict from a mapping or a file (``state_dict``/``model``/``state_dict_ema``
    wrappers unwrapped); ``label`` names it in errors."""
    if isinstance(weights, Mapping):
        state, label = weights, where or "the state dict"
    elif isinstance(weights, (str, os.PathLike)):
        from nasscale.modules.checkpoint import read_checkpoint

        ckpt = read_checkpoint(str(weights), where or "weights")
        state, label = ckpt.state_dict, f"{where + ' ' if where else ''}{weights}"
    else:
        raise WeightsError(f"weights must be a state dict or a file path, got "
                           f"{type(weights).__name__}")
    _check_names(state, label)
    return state, label


def _check_names(state: Mapping[str, Any], label: str) -> None:
    """Every key of a state dict is a tensor name (a string); a ``WeightsError`` naming the
    first other one and the file."""
    odd = next((k for k in state if not isinstance(k, str)), None)
    if odd is not None:
        shown = repr(odd)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise WeightsError(f"{label}: a state dict maps tensor names (strings) to tensors; "
                           f"this one has the key {shown} ({type(odd).__name__})")


def _some(names, n: int = 3) -> str:
    names = sorted(names)
    return ", ".join(repr(x) for x in names[:n]) + (f" and {len(names) - n} more"
                                                   if len(names) > n else "")


def _fit(spec: NetworkSpec, state: Mapping[str, Any], source: str
         ) -> tuple[dict[str, Any], list[str]]:
    """The state dict in nasscale names, or the list of problems (each naming a tensor)."""
    keys = reference_keys(spec, source)
    derived = {} if source == "nasscale" else layout(resolve(spec), source).derived()
    wanted = {ref: (ours, shape) for ours, (ref, shape) in keys.items()}
    problems: list[str] = []
    missing = [r for r in wanted if r not in state]
    extra = [k for k in state if k not in wanted and k not in derived]
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing: {_some(missing)}")
    if extra:
        problems.append(f"{len(extra)} unexpected tensor(s): {_some(extra)}")
    out: dict[str, Any] = {}
    for ref, (ours, shape) in wanted.items():
        if ref not in state:
            continue
        t = state[ref]
        got = tuple(getattr(t, "shape", ()))
        if not hasattr(t, "shape") or got != shape:
            problems.append(f"tensor {ref!r} has shape {list(got)}, the network needs "
                            f"{list(shape)}")
            continue
        out[ours] = t
    for ref, make in derived.items():
        if ref in state:
            import torch

            expect = make()
            if not torch.equal(state[ref].to(expect.dtype), expect):
                problems.append(f"tensor {ref!r} differs from the one this network derives "
                                f"(window size?)")
    return out, problems


def detect_source(network, state: Mapping[str, Any]) -> str:
    """The source whose names the state dict uses: the one that fits it exactly, else the one
    sharing the most names (so that the error of loading it is the useful one)."""
    spec = _spec(network)
    best, overlap = "nasscale", -1
    for source in ALL_SOURCES:
        try:
            names = {ref for ref, _ in reference_keys(spec, source).values()}
            derived = set(layout(resolve(spec), source).derived()) if source != "nasscale" \
                else set()
        except LayoutError:
            continue
        if names <= set(state) <= names | derived:
            return source
        shared = len(names & set(state))
        if shared > overlap:
            best, overlap = source, shared
    return best


def convert_to_nasscale(network, weights, source: str = "auto", where: str = ""
                        ) -> tuple[NetworkSpec, dict[str, Any]]:
    """``(spec, state_dict)``: the network with the source's normalisation and the weights in
    nasscale's names, or a ``WeightsError`` naming each bad tensor and the file."""
    state, label = _read(weights, where)
    spec = _spec(network)
    if source == "auto":
        source = detect_source(spec, state)
    _check_source(source)
    try:
        spec = spec_for(spec, source)
        out, problems = _fit(spec, state, source)
    except LayoutError as err:
        raise WeightsError(f"{label}: {spec.name} as {source} weights: {err}") from None
    if problems:
        guess = detect_source(spec, state)
        hint = f" (the names look like {guess} weights)" if guess != source else ""
        raise WeightsError(f"{label}: not {source} weights of {spec.name}: "
                           + "; ".join(problems[:3])
                           + (f"; and {len(problems) - 3} more problem(s)"
                              if len(problems) > 3 else "") + hint)
    return spec, out


def load_weights(network, weights, source: str = "nasscale", *, where: str = ""):
    """The module of ``network`` (a zoo name, a YAML path or a spec) holding ``weights`` (a
    state dict or a file) written by ``source`` (``nasscale``, ``torchvision``, ``timm`` or
    ``auto``), in eval mode.  The module's ``spec`` attribute is the network it computes (with
    the source's BatchNorm constants)."""
    from nasscale.modules import build_network

    if source != "auto":
        _check_source(source)
    spec, state = convert_to_nasscale(network, weights, source, where)
    model = build_network(spec)
    import torch

    with torch.no_grad():
        own = model.state_dict()
        for key, tensor in state.items():
            own[key].copy_(tensor.reshape(own[key].shape))
    model.spec = spec
    return model.eval()


def export_weights(module, network, target: str = "nasscale") -> dict[str, Any]:
    """A state dict of ``module`` (a nasscale module of ``network``) in ``target``'s names and
    shapes, which the reference implementation loads with ``strict=True``."""
    _check_source(target, "target")
    spec = _spec(network)
    state = module.state_dict()
    keys = reference_keys(spec, target)
    if set(keys) != set(state):
        missing, extra = set(keys) - set(state), set(state) - set(keys)
        raise WeightsError(f"the module is not a nasscale module of {spec.name}: "
                           f"{len(missing)} missing ({_some(missing)}), {len(extra)} unexpected "
                           f"({_some(extra)})")
    out: dict[str, Any] = {}
    for ours, (ref, shape) in keys.items():
        t = state[ours]
        if t.numel() != math.prod(shape):
            raise WeightsError(f"tensor {ours!r} has shape {list(t.shape)}, {spec.name} needs "
                               f"{list(shape)}")
        out[ref] = t.detach().clone().reshape(shape)
    if target != "nasscale":
        lay = layout(resolve(spec), target)
        for ref, make in lay.derived().items():
            out[ref] = make()
        if lay.metadata:
            from collections import OrderedDict

            out = OrderedDict(out)
            out._metadata = {k: dict(v) for k, v in lay.metadata.items()}  # type: ignore[attr-defined]
    return out


def save_weights(state: Mapping[str, Any], network, path, target: str = "nasscale") -> None:
    """Write ``state`` (from :func:`export_weights`) to ``path`` atomically (a partial file
    never takes the name): for ``nasscale``, with the network it belongs to, so that
    ``load_weights`` needs no network; for ``torchvision`` and ``timm``, the bare state dict
    their ``load_state_dict`` reads."""
    import torch

    from nasscale.grammar import network_to_data

    _check_source(target, "target")
    payload: Any = state  # a reference's state dict keeps its _metadata (module versions)
    if target == "nasscale":
        payload = {"state_dict": dict(state), "network": network_to_data(_spec(network))}
    _save_atomic(torch, payload, path)


def _save_atomic(torch, payload: Any, path) -> None:
    """``torch.save`` to a fresh temporary file beside ``path``, then rename it to ``path``:
    no other file is touched, and a failure leaves no partial file."""
    import contextlib
    import tempfile
    from pathlib import Path

    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise WeightsError(f"{path}: cannot write: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from others
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise WeightsError(f"{path}: cannot write: {err.strerror or err}") from None
        raise
