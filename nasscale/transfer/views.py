"""A contained network's tensors as slices of its parent's: one cut for carrying, training a
supernet, sorting its channels and writing a trained network back into it.

``View(parent, parent_model, candidate)`` pairs a candidate of a space with the module of a
parent that contains it (``Parent.plan``: which parent block each candidate block comes from,
which width groups shrink).  ``tensors()`` are the candidate's parameters and buffers, by the
names of the candidate's own module, cut from the parent's by ``nasscale.transfer.carry``:

- ``first=False`` (weight inheritance, ``carry``): a narrower width keeps the parent's filters
  of largest L2 norm, wherever they are;
- ``first=True`` (a supernet, once-for-all): it keeps the *first* channels of every group and
  SE squeeze, because the supernet keeps its channels sorted by importance (``sort_channels``).

The cuts are ``index_select``s and views, so autograd follows them back into the parent's
parameters: ``forward`` runs the candidate through ``torch.func.functional_call`` and a loss
on it trains the shared weights.  ``module()`` is a standalone copy (a real, smaller network).

A supernet's parent (``Parent(..., per_kind=True)``) also has *alternate* blocks where a
member's block is not a cut of the parent's: another kind, no expand conv, other input
channels (``nasscale.transfer.variants``).  Its plan names, per candidate block, the alternate
it is cut from, and a View given the alternates' modules (``alternates``: key -> (module,
resolved block), ``nasscale.supernet.file.alternates``) cuts those blocks from them, by the
alternate's own bindings (its expanded width is a group of its own).

``write_back`` is the inverse, for starting a supernet from a trained network it contains: the
same cut applied to maps of element indices says where each of the candidate's numbers lives in
the parent, and the result says which parent tensors the candidate did not fill.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch

from nasscale.errors import NasscaleError
from nasscale.modules.network import Network, build_network
from nasscale.specs import NetworkSpec, ResolvedBlock, resolve
from nasscale.transfer.carry import (
    block_axes,
    block_modules,
    block_tensors,
    head_tensors,
    own_tensors,
    select_channels,
    tensor_shapes,
)
from nasscale.transfer.containment import Parent, Plan


def block_prefixes(model: Network) -> list[str]:
    """The module names (``stages.2.1``) of ``block_modules(model)``, in flat order."""
    names = {id(m): n for n, m in model.named_modules()}
    return [names[id(m)] for m in block_modules(model)]


def _sub(tensors: dict, prefix: str) -> dict:
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


class View:
    """``candidate``'s tensors cut from ``parent_model`` (see module doc).  ``alternates``:
    key -> (module, resolved block) of the parent's alternate blocks (a supernet's; needed
    when the plan takes a block from one); ``template``: the module whose structure the cut
    fills (default: a new one of ``candidate``)."""

    def __init__(self, parent: Parent, parent_model: Network, candidate: NetworkSpec,
                 plan: Plan | None = None, first: bool = False,
                 kept: dict[str, torch.Tensor] | None = None,
                 se: dict[int, torch.Tensor] | None = None,
                 alternates: dict[str, tuple[Any, ResolvedBlock]] | None = None,
                 template: Network | None = None):
        self.parent, self.parent_model, self.spec = parent, parent_model, candidate
        self.plan = plan or parent.plan(candidate)
        self.alternates = alternates or {}
        self.first = first
        self.se = se or {}  # source prefix -> its SE channels in order (sort_channels)
        self.template = template if template is not None else build_network(candidate)
        self.rn = resolve(candidate)
        self._parent_prefix = block_prefixes(parent_model)
        self._prefix = block_prefixes(self.template)
        self._shapes = [tensor_shapes(m) for m in block_modules(self.template)]
        self._head_shapes = tensor_shapes(self.template.head)
        modules = block_modules(parent_model)
        #: per candidate block: (source module, its resolved block, bindings, name prefix)
        self._sources = []
        keys = self.plan.variant or (None,) * len(self.plan.source)
        for i, (p, key) in enumerate(zip(self.plan.source, keys)):
            if key is None:
                self._sources.append((modules[p], parent.rn.blocks[p], parent.binds[p],
                                      self._parent_prefix[p]))
                continue
            variant = parent.variants[key]
            if key not in self.alternates:
                raise NasscaleError(f"{candidate.name}: block {i} is cut from the supernet's "
                                    f"alternate block {key} ({variant.label}), which this "
                                    "view was not given")
            module, rb = self.alternates[key]
            self._sources.append((module, rb, variant.binds, variant.prefix))
        if kept is None:
            kept = {g: range(w) for g, w in self.plan.widths.items()} if first else \
                self._strongest(self.plan.widths)
        self.kept = kept

    def _strongest(self, widths: dict[str, int]) -> dict[str, torch.Tensor]:
        """The largest-norm channels of every group that shrinks (``first=False``): the
        parent's groups by ``select_channels``, an alternate's own by its own filters."""
        own = {g: w for g, w in widths.items() if g.startswith("alt.")}
        kept = select_channels(self.parent_model, self.parent.rn, self.parent.groups,
                               {g: w for g, w in widths.items() if g not in own})
        for v in self.parent.variants.values():
            if v.mid_group in own:
                order = own_order(*self.alternates[v.key], "mid")
                kept[v.mid_group] = torch.sort(order[:own[v.mid_group]]).values
        return kept

    def tensors(self, source: dict[str, torch.Tensor] | None = None,
                names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """The candidate's tensors by its module's names; ``source``: cut these instead of
        the parent's own (same names and shapes); ``names``: only these."""
        wanted = set(names) if names is not None else None
        out: dict[str, torch.Tensor] = {}
        parent = self.parent
        for i, (prefix, shapes) in enumerate(zip(self._prefix, self._shapes)):
            module, rb, binds, src_prefix = self._sources[i]
            shapes = {k: s for k, s in shapes.items()
                      if wanted is None or f"{prefix}.{k}" in wanted}
            if not shapes:
                continue
            sub = _sub(source, src_prefix) if source is not None else None
            cut = block_tensors(module, rb, shapes, self.rn.blocks[i], binds, self.kept,
                                parent.groups, crop_kernels=True, tensors=sub,
                                first=self.first, index=self._se_index(src_prefix))
            out.update({f"{prefix}.{k}": v for k, v in cut.items()})
        shapes = {k: s for k, s in self._head_shapes.items()
                  if wanted is None or f"head.{k}" in wanted}
        if shapes:
            features = parent.binds[self.plan.source[-1]]["out"] if self.plan.source else None
            sub = _sub(source, "head") if source is not None else None
            cut = head_tensors(self.parent_model, parent.rn, shapes, self.rn, features,
                               self.kept, tensors=sub)
            out.update({f"head.{k}": v for k, v in cut.items()})
        return out

    def _se_index(self, prefix: str) -> dict | None:
        return {"se": self.se[prefix]} if prefix in self.se else None

    def forward(self, x: torch.Tensor, memory=torch.contiguous_format) -> torch.Tensor:
        """The candidate's output, differentiable into the parent's parameters (in the
        parent module's training mode)."""
        self.template.train(self.parent_model.training)
        tensors = self.tensors()
        if memory is torch.channels_last:
            tensors = {k: v.contiguous(memory_format=memory) if v.dim() == 4 else v
                       for k, v in tensors.items()}
        return torch.func.functional_call(self.template, tensors, (x,))

    def module(self) -> Network:
        """A standalone module of the candidate holding copies of its tensors."""
        with torch.no_grad():
            own = own_tensors(self.template)
            for name, t in self.tensors().items():
                own[name].copy_(t)
        model, self.template = self.template, build_network(self.spec)
        return model

    def write_back(self, state: dict[str, torch.Tensor]) -> dict[str, float]:
        """Copy the candidate's ``state`` (its module's names) into the parent module where
        the cut takes them from; returns, for every parent tensor, the fraction of its
        elements left as they were (missing from ``state`` or outside the cut)."""
        own = {**own_tensors(self.parent_model),
               **{f"alt.{key}.{k}": t for key, (m, _) in self.alternates.items()
                  for k, t in own_tensors(m).items()}}
        maps = {k: torch.arange(t.numel()).reshape(t.shape) for k, t in own.items()}
        cut = self.tensors(source=maps, names=[k for k in state if k in self._all_names()])
        written = {k: torch.zeros(t.numel(), dtype=torch.bool) for k, t in own.items()}
        with torch.no_grad():
            for name, index in cut.items():
                parent_name = self._parent_name(name)
                value = state[name].to(own[parent_name].dtype).reshape(-1)
                flat = index.reshape(-1)
                own[parent_name].view(-1)[flat] = value
                written[parent_name][flat] = True
        return {k: 1.0 - float(w.float().mean()) if w.numel() else 0.0
                for k, w in written.items()}

    def _all_names(self) -> set[str]:
        return {*(f"{p}.{k}" for p, s in zip(self._prefix, self._shapes) for k in s),
                *(f"head.{k}" for k in self._head_shapes)}

    def _parent_name(self, name: str) -> str:
        if name.startswith("head."):
            return name
        for i, prefix in enumerate(self._prefix):
            if name.startswith(prefix + "."):
                return f"{self._sources[i][3]}.{name[len(prefix) + 1:]}"
        raise KeyError(name)


def own_order(module, rb, axis: str) -> torch.Tensor | None:
    """A block's channels of one of its own axes (``se``, an alternate's ``mid``), strongest
    first by the L2 norm of the filters that produce them (None: no such channels)."""
    if not rb.widths.get(axis, 0):
        return None
    axes, params = block_axes(module, rb), dict(module.named_parameters())
    score = sum(params[n].detach().float().reshape(params[n].shape[0], -1).pow(2).sum(1)
                for n, ax in axes.items()
                if ax and ax[0] == axis and n in params and params[n].dim() >= 2)
    return torch.argsort(score, descending=True, stable=True).cpu()


def channel_order(parent: Parent, parent_model: Network, alternates: dict | None = None
                  ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Every width group's channels strongest first (by the L2 norm of the filters that
    produce them, as ``select_channels`` scores them; an alternate's own expanded width by its
    own filters), and every block's SE squeeze by its module prefix (an alternate's is
    ``alt.KEY``)."""
    widths = {g.name: g.width for g in parent.groups if not g.heads}
    kept = select_channels(parent_model, parent.rn, parent.groups, widths, ordered=True)
    se: dict[str, torch.Tensor] = {}
    prefixes = block_prefixes(parent_model)
    for p, (module, rb) in enumerate(zip(block_modules(parent_model), parent.rn.blocks)):
        order = own_order(module, rb, "se")
        if order is not None:
            se[prefixes[p]] = order
    for key, (module, rb) in (alternates or {}).items():
        variant = parent.variants[key]
        order = own_order(module, rb, "se")
        if order is not None:
            se[variant.prefix] = order
        if variant.own_groups:
            kept[variant.mid_group] = own_order(module, rb, "mid")
    return kept, se


def sort_channels(parent: Parent, parent_model: Network,
                  states: Iterable[dict[str, torch.Tensor]] = (),
                  alternates: dict | None = None) -> None:
    """Permute ``parent_model``'s channels (and its alternates') in place so that every
    group's and SE's come strongest first; the functions they compute do not change.
    ``alternates``: every alternate block of ``parent`` (key -> (module, resolved block)),
    which read and write the same channels.  ``states`` (by parameter name, an alternate's as
    ``alt.KEY.NAME``: e.g. optimizer momentum) are permuted alike."""
    alternates = alternates or {}
    if set(alternates) != set(parent.variants):
        raise NasscaleError("sort_channels: give every alternate block of the supernet "
                            f"({', '.join(parent.variants)}), or they fall out of step")
    kept, se = channel_order(parent, parent_model, alternates)
    view = View(parent, parent_model, parent.spec, Plan(tuple(range(len(parent.rn.blocks)))),
                kept=kept, se=se, template=parent_model)  # the parent onto itself

    def cut(source=None, names=None) -> dict[str, torch.Tensor]:
        out = view.tensors(source=source, names=names)
        for key, (module, rb) in alternates.items():
            variant = parent.variants[key]
            prefix = variant.prefix
            sub = _sub(source, prefix) if source is not None else None
            shapes = {k: t.shape for k, t in own_tensors(module).items()
                      if names is None or f"{prefix}.{k}" in names}
            if shapes:
                got = block_tensors(module, rb, shapes, rb, variant.binds, kept, parent.groups,
                                    tensors=sub,
                                    index={"se": se[prefix]} if prefix in se else None)
                out.update({f"{prefix}.{k}": v for k, v in got.items()})
        return out

    own = {**own_tensors(parent_model), **{f"alt.{k}.{n}": t for k, (m, _) in alternates.items()
                                           for n, t in own_tensors(m).items()}}
    with torch.no_grad():
        for name, t in cut().items():
            own[name].copy_(t.clone())
        for state in states:
            for name, t in cut(source=state, names=list(state)).items():
                state[name].copy_(t.clone())


__all__ = ["View", "block_prefixes", "channel_order", "own_order", "sort_channels"]
