"""The machinery every weights layout shares (``nasscale.weights.layouts`` explains layouts):
renaming tables, each stage block's place in the reference, and the ``Layout`` base class."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Mapping, Sequence

from nasscale.errors import NasscaleError
from nasscale.specs import WEIGHT_SOURCES, ResolvedBlock, ResolvedNetwork

SOURCES = WEIGHT_SOURCES

Table = Sequence[tuple[str, str]]


class LayoutError(NasscaleError):
    """The network has no counterpart in the source's model code."""


def rename(suffix: str, table: Table) -> str:
    """``suffix`` with its longest matching sub-module prefix renamed by ``table``."""
    best = None
    for ours, ref in table:
        if suffix == ours or suffix.startswith(ours + "."):
            if best is None or len(ours) > len(best[0]):
                best = (ours, ref)
    if best is None:
        raise KeyError(suffix)
    ours, ref = best
    return ref + suffix[len(ours):]


def join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


CNA = (("0", "0"), ("1", "1"))  # a conv → norm pair named as in torchvision's Conv2dNormActivation
SE_TIMM = (("se.fc1", "se.conv_reduce"), ("se.fc2", "se.conv_expand"))


@dataclass(frozen=True)
class Place:
    """Where a stage block sits in the reference: its stage (``group``) and its position in it
    (``pos``; ``body`` counts only the blocks after a stage's downsampling layer)."""

    group: int
    pos: int
    body: int
    flat: int  # among all stage blocks


def places(rn: ResolvedNetwork, split_on_kernel: bool = False,
           split_on_stride_only: bool = False) -> dict[int, Place]:
    """Each stage block's reference place: a new reference stage where the width changes or a
    block has a stride (and, with ``split_on_kernel``, where the kernel size changes: timm's
    stages are the rows of an architecture string, each with one kernel; MnasNet-Small has
    two stride-1 rows of one width, k5 then k3).  ``split_on_stride_only``: a new stage only
    at a stride (timm's MobileNetV4, whose stages mix widths and kernels)."""
    out: dict[int, Place] = {}
    group, pos, body, flat, width, kernel = -1, 0, 0, 0, None, None
    for rb in rn.section("stage"):
        k = getattr(rb.spec, "kernel_size", None)
        if split_on_stride_only:
            new = rb.stride > 1 or width is None
        else:
            new = (rb.out_channels != width or rb.stride > 1
                   or (split_on_kernel and k != kernel))
        if new:
            group, pos, body, width = group + 1, 0, 0, rb.out_channels
        kernel = k
        out[rb.index] = Place(group, pos, body, flat)
        pos += 1
        body += 0 if rb.kind in ("lndown", "patchmerge", "repvitdown") else 1
        flat += 1
    return out


class Layout:
    """One source's names for one kind of network.  Subclasses give ``stem``, ``block`` and
    ``head``: each returns ``(prefix, table)`` for a module of the nasscale network, and each
    declares ``bn``: the BatchNorm ``(eps, momentum)`` of its source's networks, or ``None``
    where they differ and the network's own ``norm`` is the reference's."""

    source = ""
    name = ""
    bn: ClassVar[tuple[float, float] | None]  # every layout declares it (no default)
    split_on_kernel = False
    split_on_stride_only = False
    #: ``state_dict()._metadata`` the reference's ``load_state_dict`` needs (module versions)
    metadata: dict | None = None
    #: the options a network's ``weights:`` may set, with their defaults
    options: ClassVar[Mapping[str, bool | int | float | str]] = {}

    def __init__(self, rn: ResolvedNetwork, options: Mapping[str, object] | None = None):
        self.rn = rn
        unknown = set(options or {}) - set(self.options)
        if unknown:
            raise LayoutError(f"{self.source}'s {self.name} layout has no option "
                              f"{sorted(unknown)[0]!r}")
        self.settings = {**self.options, **(options or {})}
        self.places = places(rn, self.split_on_kernel, self.split_on_stride_only)
        self.groups = 1 + max((p.group for p in self.places.values()), default=-1)

    def stem(self, rb: ResolvedBlock) -> tuple[str, Table]:
        raise NotImplementedError

    def block(self, rb: ResolvedBlock, place: Place) -> tuple[str, Table]:
        raise NotImplementedError

    def head_block(self, rb: ResolvedBlock) -> tuple[str, Table]:
        raise LayoutError(f"{self.source}'s {self.name} has no head block like "
                          f"{rb.where} ({rb.kind})")

    def head(self) -> Table:
        """Renames of the ``head.`` keys (norm, hidden, classifier)."""
        raise NotImplementedError

    def ref_shape(self, ref_key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape

    def derived(self) -> dict[str, Callable[[], object]]:
        """Reference tensors nasscale derives instead of storing: key → a function making it."""
        return {}

    # --- the whole mapping ----------------------------------------------------------------
    def mapping(self, keys: Sequence[str]) -> dict[str, str]:
        """Every nasscale ``state_dict`` key → its reference key."""
        blocks = {("stem", b.repeat): b for b in self.rn.section("stem")}
        blocks.update({("head", b.repeat): b for b in self.rn.section("head")})
        stage = {(b.stage, b.repeat): b for b in self.rn.section("stage")}
        cache: dict[tuple, tuple[str, Table]] = {}
        out: dict[str, str] = {}
        for key in keys:
            parts = key.split(".")
            try:
                if parts[0] == "head":
                    out[key] = rename(".".join(parts[1:]), self.head())
                    continue
                if parts[0] == "stages":
                    where, rest = ("stage", int(parts[1]), int(parts[2])), parts[3:]
                    rb = stage[where[1:]]
                else:  # stem.i / head_blocks.i
                    section = "stem" if parts[0] == "stem" else "head"
                    where, rest = (section, int(parts[1])), parts[2:]
                    rb = blocks[where]
                if where not in cache:
                    cache[where] = (self.block(rb, self.places[rb.index]) if where[0] == "stage"
                                    else self.stem(rb) if where[0] == "stem"
                                    else self.head_block(rb))
                prefix, table = cache[where]
                out[key] = join(prefix, rename(".".join(rest), table))
            except KeyError:
                raise LayoutError(f"{self.source}'s {self.name} has no counterpart of "
                                  f"nasscale's {key!r}") from None
        return out
