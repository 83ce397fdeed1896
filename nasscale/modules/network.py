"""Build a ``torch.nn.Module`` from a resolved network."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

import nasscale.modules.attention  # noqa: F401 (the block modules register their builders)
import nasscale.modules.blocks  # noqa: F401
import nasscale.modules.fastvit  # noqa: F401
import nasscale.modules.reparam  # noqa: F401
import nasscale.modules.repvit  # noqa: F401
from nasscale.errors import SpecError
from nasscale.modules.layers import activation, apply_optional
from nasscale.modules.registry import BUILDERS
from nasscale.specs import (
    NetworkSpec,
    ResolvedBlock,
    ResolvedHead,
    ResolvedNetwork,
    resolve,
)


def build_block(rb: ResolvedBlock) -> nn.Module:
    try:
        builder = BUILDERS[type(rb.spec)]
    except KeyError:
        raise SpecError(f"block kind {rb.spec.kind!r} has no module builder") from None
    return builder(rb)


class Head(nn.Module):
    """[LayerNorm of every position] → pool → [LayerNorm] → [hidden linears + act] → dropout →
    classifier.  Pooling follows the layout of the features: global average of a map (N, C, H, W)
    or a grid (N, H, W, C); the class token, or the average of the patch tokens, of tokens
    (N, 1 + H·W, C)."""

    def __init__(self, head: ResolvedHead):
        super().__init__()
        from nasscale.modules.reparam import _Shared

        self._head = _Shared(head)  # for the deploy twin
        c = head.in_channels
        self.layout, self.pool = head.layout, head.pool
        # LayerNorm acts on each token alone, so normalising only the class token gives the
        # same result as normalising every token first (ViT): do the cheaper one.
        self.norm_before_pool = head.norm == "ln_before_pool" and head.pool != "token"
        eps, momentum = head.norm_policy.bn
        self.deploy, self.distill = head.deploy, head.distill and not head.deploy
        if head.norm == "bn" and not head.deploy:  # RepViT: BatchNorm of the pooled vector
            self.norm = nn.BatchNorm1d(c, eps=eps, momentum=momentum)
        elif head.norm in ("ln", "ln_before_pool"):
            self.norm = nn.LayerNorm(c, eps=head.norm_policy.ln(1e-6))
        else:
            self.norm = nn.Identity()
        hidden: list[nn.Module] = []
        norms: list[nn.Module] = []
        bn = head.hidden_norm == "bn"
        for width in head.hidden:
            hidden += [nn.Linear(c, width, bias=not bn), activation(head.hidden_activation)]
            if bn:
                norms.append(nn.BatchNorm1d(width, eps=eps, momentum=momentum))
            c = width
        self.hidden = nn.Sequential(*hidden)
        self.hidden_norm = nn.ModuleList(norms) if bn else None
        self.dropout = nn.Dropout(head.dropout) if head.dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(c, head.num_classes)
        if self.distill:  # the distillation twin: its own norm and classifier, averaged
            self.norm_dist = (nn.BatchNorm1d(c, eps=eps, momentum=momentum)
                              if head.norm == "bn" else nn.Identity())
            self.classifier_dist = nn.Linear(c, head.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_before_pool:
            x = (self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) if self.layout == "nchw"
                 else self.norm(x))  # channels last for nhwc grids and tokens
        x = self.pooled(x)
        if self.distill:
            if self.dropout.training:
                x = self.dropout(x)
            return (self.classifier(apply_optional(self.norm, x))
                    + self.classifier_dist(apply_optional(self.norm_dist, x))) / 2
        if not self.norm_before_pool:
            x = apply_optional(self.norm, x)
        if self.hidden_norm is None:
            if len(self.hidden):
                x = self.hidden(x)
        else:  # linear → BatchNorm → act
            for k, norm in enumerate(self.hidden_norm):
                x = self.hidden[2 * k + 1](norm(self.hidden[2 * k](x)))
        if self.dropout.training:  # dropout is the identity in eval: no call
            x = self.dropout(x)
        return self.classifier(x)

    @property
    def reparameterizable(self) -> bool:
        """Whether this head has a fused form it is not yet in (a BatchNorm or distillation
        head in its train form)."""
        return not self.deploy and (isinstance(self.norm, nn.BatchNorm1d) or self.distill)

    def reparameterize(self) -> "Head":
        """The deploy form of a BatchNorm / distillation head: one linear layer computing the
        same logits in eval mode (each norm folded into its classifier, the two averaged)."""
        if not self.reparameterizable:
            raise ValueError("this head has no other deploy form")
        parts = [(self.norm, self.classifier)]
        if self.distill:
            parts.append((self.norm_dist, self.classifier_dist))
        with torch.no_grad():
            weight = bias = 0
            for norm, linear in parts:
                w, b = linear.weight, linear.bias
                if isinstance(norm, nn.BatchNorm1d):
                    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                    b = b + w @ (norm.bias - norm.running_mean * scale)
                    w = w * scale
                weight, bias = weight + w / len(parts), bias + b / len(parts)
            twin = Head(dataclasses.replace(self._head.value, deploy=True)).to(
                device=weight.device, dtype=weight.dtype)
            twin.classifier.weight.copy_(weight)
            twin.classifier.bias.copy_(bias)
        return twin.train(self.training)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "nchw":  # = flatten(adaptive_avg_pool2d(x, 1), 1), in one call
            return x.mean((2, 3))
        if self.layout == "nhwc":
            return x.mean(dim=(1, 2))
        return x[:, 0] if self.pool == "token" else x[:, 1:].mean(dim=1)  # tokens


class Network(nn.Module):
    """stem → stages → head blocks → head.  ``stages[i][r]`` is repeat ``r`` of stage ``i``."""

    def __init__(self, rn: ResolvedNetwork):
        super().__init__()
        self.stem = nn.Sequential(*[build_block(b) for b in rn.section("stem")])
        self.stages = nn.Sequential(*[
            nn.Sequential(*[build_block(b) for b in rn.stage(i)])
            for i in range(len(rn.spec.stages))])
        self.head_blocks = nn.Sequential(*[build_block(b) for b in rn.section("head")])
        self.head = Head(rn.head)
        init_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_blocks(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def init_weights(module: nn.Module) -> None:
    """The initialisation of the reference implementations: He (fan-out) for convs, unit norms,
    (truncated) normal with std 0.02 for linear layers, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            # trunc_normal_(std=0.02) truncates at ±2, i.e. ±100 std: the same distribution as
            # normal_, which is 3x faster on the 100M-parameter transformers
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_network(spec: NetworkSpec, resolution: int | None = None) -> Network:
    """The module of a network spec (the resolution only matters for validation here)."""
    return Network(resolve(spec, resolution))
