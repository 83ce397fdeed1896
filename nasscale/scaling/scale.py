"""Width, depth and resolution scaling of a network spec (pure: spec in, new spec out).

``scale(spec, width=, depth=, resolution=)`` multiplies every channel count by ``width`` and
every stage's repeats by ``depth``, sets the input size, and rounds by the network's
``RoundingPolicy``.  ``compound(spec, phi, alpha, beta, gamma)`` is EfficientNet's compound
scaling: depth α^φ, width β^φ, resolution γ^φ (Tan & Le, ICML 2019, Eq. 3).

What scales in each block kind is the registry in ``nasscale.scaling.rules``.  Derived widths
(an ``e`` ratio's expanded width, every SE width) are not touched: they follow from the scaled
widths when the new network is resolved, by the block's own rule.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping

from nasscale.errors import SpecError, field_error
from nasscale.scaling.rules import (
    KIND_RULES,
    KindRule,
    attention_heads,
    attention_unit,
    head_width,
    kind_rule,
    round_resolution,
    round_width,
)
from nasscale.specs import (
    BlockSpec,
    NetworkSpec,
    RoundingPolicy,
    StageSpec,
    make_divisible,
    resolve,
    round_repeats,
)
from nasscale.specs.common import check_number

#: EfficientNet's coefficients (Tan & Le 2019, Sec. 3.3): a grid search on B0 under
#: α·β²·γ² ≈ 2, so each unit of φ roughly doubles the FLOPs.
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
#: compound scaling beyond this FLOPs multiple (φ ≈ 20 with EfficientNet's coefficients)
#: describes no network anyone can build
MAX_FLOPS_GROWTH = 1e6


@dataclass(frozen=True)
class Compound:
    """Compound-scaling coefficients for one φ: depth α^φ, width β^φ, resolution γ^φ."""

    phi: float
    alpha: float = ALPHA
    beta: float = BETA
    gamma: float = GAMMA

    def __post_init__(self) -> None:
        check_number("phi", self.phi, strict=False)
        for name in ("alpha", "beta", "gamma"):
            check_number(name, getattr(self, name), minimum=1, strict=False)
        per_phi = math.log(flops_factor(self.alpha, self.beta, self.gamma))
        if per_phi > 0 and self.phi * per_phi > math.log(MAX_FLOPS_GROWTH):
            most = math.log(MAX_FLOPS_GROWTH) / per_phi
            raise field_error("phi", f"at most {most:.3g} with alpha {self.alpha:g}, beta "
                              f"{self.beta:g}, gamma {self.gamma:g} (beyond that the network "
                              f"would need over {MAX_FLOPS_GROWTH:.0e} x the base's FLOPs)",
                              self.phi)

    @property
    def depth(self) -> float:
        return self.alpha ** self.phi

    @property
    def width(self) -> float:
        return self.beta ** self.phi

    @property
    def resolution(self) -> float:
        """The resolution multiplier γ^φ (before rounding to the policy's grid)."""
        return self.gamma ** self.phi

    @property
    def flops_factor(self) -> float:
        """(α·β²·γ²)^φ: the FLOPs multiplier compound scaling aims at."""
        return flops_factor(self.alpha, self.beta, self.gamma) ** self.phi


def flops_factor(alpha: float, beta: float, gamma: float) -> float:
    """α·β²·γ², the FLOPs growth per unit of φ (EfficientNet chose ≈ 2)."""
    return alpha * beta ** 2 * gamma ** 2


def _check_coefficients(width: float, depth: float, resolution: object) -> None:
    check_number("width", width)
    check_number("depth", depth)
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)
                                   or resolution < 1):
        raise field_error("resolution", "an input size in pixels (an integer >= 1)", resolution)


def _scale_block(spec: BlockSpec, rule: KindRule, width: float, depth: float,
                 policy: RoundingPolicy, in_base: int, in_scaled: int, out_divisor: int,
                 head_rule: bool = False) -> BlockSpec:
    """One block with its widths (and inner depths) scaled.  ``out_divisor`` rounds
    ``out_channels`` (see ``_out_divisors``); ``head_rule``: it is the last feature layer."""
    changes: dict[str, object] = {
        f: round_width(getattr(spec, f), width, policy,
                       out_divisor if f == "out_channels" else None)
        for f in rule.widths if getattr(spec, f) is not None}  # (an optional width: unset)
    if depth != 1:
        changes.update({f: round_repeats(getattr(spec, f) * depth, policy.depth)
                        for f in rule.depths})
    if head_rule:
        changes["out_channels"] = head_width(spec.out_channels, width, policy)
    if rule.keeps_input_width:
        changes["out_channels"] = in_scaled
    if rule.attention:
        dim_field, heads_field = rule.attention
        if dim_field in changes:  # a width-keeping block: its producer rounded it (see below)
            dim = changes[dim_field]
        else:  # an inner width (MobileViT's transformer dim)
            dim = round_width(getattr(spec, dim_field), width, policy,
                              attention_unit(spec, rule, policy))
        changes.update({dim_field: dim,
                        heads_field: attention_heads(spec, rule, policy, dim)})  # type: ignore
    if rule.mid and getattr(spec, rule.mid) is not None and width != 1:
        mid = getattr(spec, rule.mid)
        base, scaled = in_base, in_scaled
        if rule.mid_base:  # the MLP of an attention block follows its own width
            base = getattr(spec, rule.mid_base)
            scaled = changes.get(rule.mid_base, base)  # type: ignore[assignment]
        changes[rule.mid] = (make_divisible(scaled * mid / base, policy.divisor,
                                            policy.min_ratio)
                             if policy.mid == "ratio" else round_width(mid, width, policy))
    return dataclasses.replace(spec, **changes)


def _out_divisors(blocks: list[BlockSpec], rules, policy: RoundingPolicy) -> list[int]:
    """The divisor of each block's output width.  A width that flows unchanged through
    width-keeping blocks is rounded once, by the block that produces it, with every constraint
    on it: a ViT's patch embedding gives a width its attention heads divide."""
    out = [policy.divisor] * len(blocks)
    for i in range(len(blocks) - 2, -1, -1):
        following = blocks[i + 1]
        rule = kind_rule(following, rules)
        if rule.keeps_input_width:
            out[i] = out[i + 1]
            if rule.attention:
                out[i] = math.lcm(out[i], attention_unit(following, rule, policy))
    return out


def scale(spec: NetworkSpec, width: float = 1.0, depth: float = 1.0,
          resolution: int | None = None, *, dropout: float | None = None,
          name: str | None = None,
          rules: Mapping[type[BlockSpec], KindRule] = KIND_RULES) -> NetworkSpec:
    """``spec`` with channels × ``width``, repeats × ``depth`` and input size ``resolution``
    (pixels; default: the base's), rounded by ``spec.rounding``.

    A coefficient of exactly 1 leaves its dimension as it is.  ``dropout`` sets the head's
    dropout (the EfficientNet table raises it with size).  ``rules`` (default ``KIND_RULES``)
    says what scales in each block kind.  The result is a new spec without published
    expectations (``expected=None``); the argument is never modified.
    """
    _check_coefficients(width, depth, resolution)
    policy, base_net = spec.rounding, resolve(spec)
    stem, stages, head = spec.stem, spec.stages, spec.head
    # every block spec in order, with its input width in the base network
    order = ([("stem", b, base_net.section("stem")[i].in_channels) for i, b in enumerate(stem)]
             + [("stage", st.block, base_net.stage(s)[0].in_channels)
                for s, st in enumerate(stages)]
             + [("head", b, base_net.section("head")[i].in_channels)
                for i, b in enumerate(head.blocks)])
    divisors = _out_divisors([b for _, b, _ in order], rules, policy)
    last_head = len(order) - 1 if head.blocks and not head.hidden else None
    channels, scaled = spec.in_channels, []  # channels: the scaled width flowing in
    for i, (section, block, in_base) in enumerate(order):
        factor = 1.0 if section == "stem" and policy.stem == "fixed" else width
        block = _scale_block(block, kind_rule(block, rules), factor, depth, policy, in_base,
                             channels, divisors[i], head_rule=i == last_head)
        scaled.append(block)
        channels = block.out_channels
    new_stages = []
    fixed = {0, len(stages) - 1} if policy.fixed_depth == "first_last" else set()
    for s, (stage, block) in enumerate(zip(stages, scaled[len(stem):len(stem) + len(stages)])):
        repeats = stage.repeats
        if kind_rule(block, rules).repeatable and depth != 1 and s not in fixed:
            repeats = round_repeats(stage.repeats * depth, policy.depth)
        new_stages.append(StageSpec(block=block, repeats=repeats, norm=stage.norm))
    hidden = tuple(head_width(w, width, policy) if i == len(head.hidden) - 1
                   else round_width(w, width, policy) for i, w in enumerate(head.hidden))
    new_head = head.replace(blocks=tuple(scaled[len(stem) + len(stages):]), hidden=hidden,
                            **({} if dropout is None else {"dropout": dropout}))
    res = spec.resolution if resolution is None else resolution
    try:
        out = spec.replace(
            name=name or f"{spec.name}_w{width:.4g}_d{depth:.4g}_r{res}",
            stem=tuple(scaled[:len(stem)]), stages=tuple(new_stages), head=new_head,
            resolution=res, expected=None, reference="",
            paper=f"{spec.name} scaled: width x{width:.4g}, depth x{depth:.4g}, "
                  f"resolution {spec.resolution} -> {res}")
        resolve(out)
    except SpecError as err:  # e.g. a resolution so small that a feature map vanishes
        raise SpecError(f"{err.message} (scaling {spec.name} by width {width:.4g}, depth "
                        f"{depth:.4g}, resolution {res})", err.where) from None
    return out


def compound_resolution(spec: NetworkSpec, coefficients: Compound) -> int:
    """The base resolution × γ^φ on the policy's grid (see ``round_resolution``)."""
    if coefficients.phi == 0:
        return spec.resolution
    return round_resolution(spec.resolution * coefficients.resolution, spec.rounding,
                            spec.resolution)


def compound(spec: NetworkSpec, phi: float, alpha: float = ALPHA, beta: float = BETA,
             gamma: float = GAMMA, *, dropout: float | None = None,
             name: str | None = None) -> NetworkSpec:
    """EfficientNet compound scaling: depth × α^φ, width × β^φ, resolution × γ^φ.

    ``phi`` may be fractional; φ = 0 returns the base network (renamed).  α, β, γ must be >= 1
    (the coefficient search calls this with each candidate α, β, γ).  The resolution is
    rounded to the family's grid (``rounding.resolution_divisor``, ``max_resolution``).
    """
    c = Compound(phi, alpha, beta, gamma)
    return scale(spec, width=c.width, depth=c.depth, resolution=compound_resolution(spec, c),
                 dropout=dropout, name=name or f"{spec.name}_phi{phi:g}").replace(
        paper=f"{spec.name} compound-scaled: phi={phi:g}, alpha={alpha:g}, beta={beta:g}, "
              f"gamma={gamma:g} (Tan & Le, EfficientNet, ICML 2019, Eq. 3)")
