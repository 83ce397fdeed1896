"""Weights files: read a checkpoint, check it against a network, build the module holding it.

A weights file is a ``torch.save``d mapping: either a plain ``state_dict`` of the nasscale
module (``torch.save(nasscale.build(spec).state_dict(), FILE)``), or what ``nasscale train``
writes — ``{"state_dict": ..., "network": <network data>, "classes": [...], "accuracy": ...}``
(a ``model`` key is accepted for ``state_dict``).  Both ``nasscale prune --weights`` and the
search's ``inherit`` evaluator read them through here; ``where`` names the option or field the
path came from, so every error says which input was wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError
from nasscale.specs import NetworkSpec

CLASSIFIER = "head.classifier.weight"


@dataclass
class Checkpoint:
    """A weights file's tensors and what it says about them (empty for a bare state_dict)."""

    path: str
    state_dict: dict
    meta: dict = field(default_factory=dict)  # network, classes, accuracy, ... when present

    @property
    def num_classes(self) -> int | None:
        """Rows of the classifier (``None`` when the file has no nasscale classifier)."""
        w = self.state_dict.get(CLASSIFIER)
        return int(w.shape[0]) if w is not None and hasattr(w, "shape") else None

    @property
    def classes(self) -> list[str] | None:
        classes = self.meta.get("classes")
        return [str(c) for c in classes] if isinstance(classes, (list, tuple)) else None


def read_checkpoint(path: str, where: str = "--weights") -> Checkpoint:
    """The tensors of a weights file, or a clear error naming ``where`` and the file."""
    import torch

    p = Path(path)
    if not p.exists():
        raise NasscaleError(f"{where} {path}: no such file")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is bad input
        raise NasscaleError(f"{where} {path}: cannot read a checkpoint ({err})") from None
    meta: dict[str, Any] = {}
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                meta = {k: v for k, v in state.items() if k != key}
                state = state[key]
                break
    if not isinstance(state, dict):
        raise NasscaleError(f"{where} {path}: expected a state_dict, got {type(state).__name__}")
    import torch

    odd = next((k for k in state if not isinstance(k, str)), None)
    if odd is not None:
        raise NasscaleError(f"{where} {path}: a state_dict maps parameter names (strings) to "
                            f"tensors; this one has the key {odd!r} ({type(odd).__name__})")
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() \
                and not bool(torch.isfinite(value).all()):
            raise NasscaleError(f"{where} {path}: tensor {name} holds NaN or infinite values; "
                                "these weights cannot be used")
    return Checkpoint(str(path), state, meta)


def load_weights(path: str | Checkpoint, spec: NetworkSpec, where: str = "--weights"):
    """A module of ``spec`` with the checkpoint's weights (a ``state_dict``, or a mapping with
    ``state_dict``/``model``), in eval mode, or a clear error naming the file."""
    from nasscale.modules import build_network

    ckpt = path if isinstance(path, Checkpoint) else read_checkpoint(path, where)
    state, path = ckpt.state_dict, ckpt.path
    model = build_network(spec)
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(
        model.state_dict())
    if missing or unexpected:
        some = sorted(missing)[:2] + sorted(unexpected)[:2]
        raise NasscaleError(f"{where} {path}: not a state_dict of {spec.name}'s nasscale module "
                            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. "
                            f"{', '.join(some)}); save it with torch.save(nasscale.build(spec)"
                            ".state_dict(), FILE)")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip()
        raise NasscaleError(f"{where} {path}: shapes differ from {spec.name}: {first}") from None
    return model.eval()


def is_weights_file(path: str) -> bool:
    """Whether ``path`` is a file ``torch.save`` wrote (a zip archive or a legacy pickle),
    rather than a network's YAML."""
    p = Path(path)
    if p.suffix.lower() in (".pt", ".pth", ".ckpt", ".bin"):
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def trained_network(path: str, where: str = "network") -> tuple[NetworkSpec, Checkpoint]:
    """The network a weights file describes (``nasscale train``'s and ``nasscale prune``'s
    files hold it) and its checkpoint; an error saying what to give for a bare state_dict."""
    from nasscale.grammar import network_from_data

    ckpt = read_checkpoint(path, where)
    data = ckpt.meta.get("network")
    if not isinstance(data, dict):
        raise NasscaleError(f"{where} {path}: holds weights but not the network they belong to "
                            "(a bare state_dict); give the network's YAML with --weights "
                            f"{path}")
    try:
        spec = network_from_data(data, "network")
    except NasscaleError as err:
        raise NasscaleError(f"{where} {path}: its network does not load ({err})") from None
    return spec, ckpt
