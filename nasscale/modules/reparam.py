"""Modules of the re-parameterisable kinds, and the fusion that turns their train form into
their deploy form.

**The protocol.**  The module of a re-parameterisable kind has ``reparameterizable`` (true in
its train form: its spec has ``deploy`` false) and ``reparameterize() -> nn.Module``: a new
module, the deploy form built from the same resolved block, whose output equals this module's
output in eval mode (BatchNorm with its running statistics) to float rounding.  The module
itself is left as it was.  The network's ``Head`` keeps the same protocol (a BatchNorm or
distillation head fuses to one linear layer).  ``reparameterize_model`` applies it to every
such module of a network (``nasscale.reparameterize``); the contract tests
(tests/test_reparam.py) check every kind.

The algebra (RepVGG, Ding et al. CVPR 2021, Sec. 3.3): a conv → BN is the conv with weight
``W·γ/σ`` and bias ``β − μ·γ/σ``; a 1×1 kernel is a k×k kernel zero outside its centre (same
stride, 'same' padding: the same taps); a BN identity is a conv whose kernel is 1 at the centre
of each channel's own input; parallel convs of one shape sum into one.
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from nasscale.modules.layers import BatchNorm2d, ConvNormAct, DropPath, SqueezeExcite, activation
from nasscale.modules.registry import BUILDERS, builds, cna_axes, se_axes, weight_axes
from nasscale.specs import MobileOneSpec, RepConvSpec, ResolvedBlock


def fuse_bn(weight: torch.Tensor, bias: torch.Tensor | None,
            bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The conv (``weight``, ``bias``) followed by ``bn`` (running statistics) as one conv."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    if bias is not None:
        shift = shift + bias * scale
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), shift


def pad_kernel(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """A (…, k', k') kernel as (…, k, k), zero outside its centre (k − k' even)."""
    pad = (kernel - weight.shape[-1]) // 2
    return nn.functional.pad(weight, [pad] * 4) if pad else weight


def identity_kernel(channels: int, in_per_group: int, kernel: int,
                    like: torch.Tensor) -> torch.Tensor:
    """The k×k kernel of a conv with ``channels`` outputs that copies its input."""
    weight = like.new_zeros(channels, in_per_group, kernel, kernel)
    index = torch.arange(channels)
    weight[index, index % in_per_group, kernel // 2, kernel // 2] = 1.0
    return weight


class RepConv(nn.Module):
    """A re-parameterisable conv (the ``repconv`` kind, and each half of ``mobileone``).

    Train form: ``branches`` (k×k conv → BN each), ``scale`` (1×1 conv → BN, k > 1 only),
    ``identity`` (BN, where the input can be added), summed → [SE] → act.  Deploy form:
    ``conv`` (k×k with bias) → [SE] → act.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, groups: int,
                 branches: int, identity: bool, act: str, se: tuple[int, str, str] | None,
                 deploy: bool, bn: tuple[float, float], drop_path: float = 0.0):
        super().__init__()
        self.deploy = deploy
        if deploy:
            self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups)
        else:
            self.branches = nn.ModuleList(
                ConvNormAct(cin, cout, kernel, stride, groups, act="none", bn=bn)
                for _ in range(branches))
            self.scale = (ConvNormAct(cin, cout, 1, stride, groups, act="none", bn=bn)
                          if kernel > 1 else None)
            self.identity = BatchNorm2d(cout, eps=bn[0], momentum=bn[1]) if identity else None
            self.drop_path = DropPath(drop_path) if identity and drop_path > 0 else None
        self.se = SqueezeExcite(cout, se[0], se[1], se[2]) if se else None
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            y = self.conv(x)
        else:
            y = self.branches[0](x)
            for branch in self.branches[1:]:
                y = y + branch(x)
            if self.scale is not None:
                y = y + self.scale(x)
            if self.drop_path is not None:
                y = self.drop_path(y)
            if self.identity is not None:
                y = y + self.identity(x)
        if self.se is not None:
            y = self.se(y)
        return self.act(y)

    @torch.no_grad()
    def fused(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (weight, bias) of the one conv this train form computes (eval mode)."""
        first = self.branches[0][0]
        kernel, groups = first.kernel_size[0], first.groups
        weight, bias = torch.zeros_like(first.weight), first.weight.new_zeros(first.out_channels)
        parts = [(b[0].weight, b[1]) for b in self.branches]
        if self.scale is not None:
            parts.append((pad_kernel(self.scale[0].weight, kernel), self.scale[1]))
        if self.identity is not None:
            parts.append((identity_kernel(first.out_channels, first.in_channels // groups,
                                          kernel, first.weight), self.identity))
        for w, bn in parts:
            w, b = fuse_bn(w, None, bn)
            weight += w
            bias += b
        return weight, bias

    def deploy_state(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """This train form's tensors under the deploy form's names."""
        weight, bias = self.fused()
        state = {f"{prefix}conv.weight": weight, f"{prefix}conv.bias": bias}
        if self.se is not None:
            state.update({f"{prefix}se.{k}": v for k, v in self.se.state_dict().items()})
        return state


def rep_axes(m: RepConv, prefix: str, out: str, inp, depthwise: bool, se: str) -> dict:
    """Axes of a ``RepConv`` at ``prefix``: every branch cut like the others (pruning removes
    the same channels from each)."""
    inp = None if depthwise else inp
    if m.deploy:
        axes = {f"{prefix}conv.weight": (out, inp), f"{prefix}conv.bias": (out,)}
    else:
        axes = {}
        for i in range(len(m.branches)):
            axes.update(cna_axes(f"{prefix}branches.{i}.", out, inp))
        if m.scale is not None:
            axes.update(cna_axes(f"{prefix}scale.", out, inp))
        if m.identity is not None:
            axes.update({f"{prefix}identity.{n}": (out,)
                         for n in ("weight", "bias", "running_mean", "running_var")})
    if m.se is not None:
        for name, names in se_axes(f"{prefix}se.", out).items():
            axes[name] = tuple(se if a == "se" else a for a in names)
    return axes


class _Shared:
    """A reference kept as is by ``copy.deepcopy`` (a resolved block is immutable, and its
    read-only mappings cannot be copied)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __deepcopy__(self, memo) -> "_Shared":
        return self


class _KeepsBlock:
    """Mixin of a re-parameterisable block's module: the resolved block it was built from
    (``rb``), ``reparameterizable`` (whether it is in its train form) and ``reparameterize``:
    the deploy twin holding ``deploy_state()``, the module's tensors fused and named as the
    deploy form names them (each block gives that)."""

    @property
    def rb(self) -> ResolvedBlock:
        return self._rb.value

    @property
    def reparameterizable(self) -> bool:
        return not self.rb.spec.deploy

    @torch.no_grad()
    def reparameterize(self) -> nn.Module:
        if not self.reparameterizable:
            raise ValueError(f"this {self.rb.kind} block is already in its deploy form")
        return _deploy_twin(self, self.rb, self.deploy_state())


def _se(spec, width: int) -> tuple[int, str, str] | None:
    return (width, spec.se.activation, spec.se.gate) if spec.se else None


def _deploy_twin(module: nn.Module, rb: ResolvedBlock, state: dict) -> nn.Module:
    """The deploy-form module of ``rb`` holding ``state`` (the train form's fused tensors)."""
    twin = BUILDERS[type(rb.spec)](dataclasses.replace(rb, spec=rb.spec.deploy_form()))
    like = next(module.parameters())  # the train form's device and dtype
    twin.to(device=like.device, dtype=like.dtype).load_state_dict(state)
    return twin.train(module.training)


@builds(RepConvSpec)
class RepConvBlock(_KeepsBlock, RepConv):
    def __init__(self, rb: ResolvedBlock):
        s = rb.spec
        super().__init__(rb.in_channels, rb.out_channels, s.kernel_size, s.stride,
                         s.groups(rb.in_channels), s.branches, rb.residual,
                         s.activation, _se(s, rb.widths["se"]), s.deploy, rb.norm.bn,
                         rb.drop_path)
        self._rb = _Shared(rb)


@weight_axes(RepConvBlock)
def repconv_axes(m: RepConvBlock, rb) -> dict:
    return rep_axes(m, "", "out", "in", rb.spec.depthwise or rb.spec.grouped, "se")


@builds(MobileOneSpec)
class MobileOneBlock(_KeepsBlock, nn.Module):
    """A depthwise ``RepConv`` (``dw``, the stride) then a pointwise one (``pw``)."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, cin = rb.spec, rb.in_channels
        self.dw = RepConv(cin, cin, s.kernel_size, s.stride, cin, s.branches, s.stride == 1,
                          s.activation, _se(s, rb.widths["se_dw"]), s.deploy, rb.norm.bn,
                          rb.drop_path)
        self.pw = RepConv(cin, rb.out_channels, 1, 1, 1, s.branches, rb.residual,
                          s.activation, _se(s, rb.widths["se"]), s.deploy, rb.norm.bn,
                          rb.drop_path)
        self._rb = _Shared(rb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))

    def deploy_state(self) -> dict[str, torch.Tensor]:
        return {**self.dw.deploy_state("dw."), **self.pw.deploy_state("pw.")}


@weight_axes(MobileOneBlock)
def mobileone_axes(m: MobileOneBlock, rb) -> dict:
    return {**rep_axes(m.dw, "dw.", "in", "in", True, "se_dw"),
            **rep_axes(m.pw, "pw.", "out", "in", False, "se")}


def reparameterize_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every train-form module of a re-parameterisable kind replaced by
    its deploy form (the protocol above); the copy is in ``model``'s train/eval mode, and
    ``model`` is unchanged.  A model without such modules comes back as an equal copy."""
    model = copy.deepcopy(model)
    _swap(model)
    spec = getattr(model, "spec", None)  # what load_weights records: now its deploy form
    if spec is not None and hasattr(spec, "deploy_form"):
        model.spec = spec.deploy_form()
    return model


def _swap(module: nn.Module) -> None:
    for name, child in module.named_children():
        if callable(getattr(child, "reparameterize", None)) and child.reparameterizable:
            setattr(module, name, child.reparameterize())
        else:
            _swap(child)
