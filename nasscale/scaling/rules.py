"""What scales in each block kind, and how widths and resolutions are rounded.

Scaling never guesses from field names: every block kind declares a
:class:`~nasscale.specs.kind.KindRule` (its spec class's ``rule``) that sorts *each* of its
fields into "scales with width", "explicit expanded width", "attention width" or "fixed".
``KIND_RULES`` collects them.  The registry test fails when a kind has no rule, or when a kind
gains a field its rule does not mention, so adding a kind (or a field) forces a decision about
how it scales.

Rounding is the network's :class:`~nasscale.specs.RoundingPolicy`; the helpers here apply it.
A coefficient of exactly 1 leaves its dimension untouched, so scaling by (1, 1, base resolution)
returns the base network, whatever its widths.
"""
from __future__ import annotations

import math
from dataclasses import fields

from nasscale.errors import SpecError
from nasscale.specs import BLOCK_KINDS, BlockSpec, RoundingPolicy, make_divisible
from nasscale.specs.kind import KindRule, attention_heads, attention_unit

#: Every kind's rule, read from the kinds (see docs/DESIGN.md, "Scaling").  ``scale(rules=...)``
#: takes another mapping for kinds that are not registered (tests).
KIND_RULES: dict[type[BlockSpec], KindRule] = {
    cls: cls.rule for cls in BLOCK_KINDS.values() if cls.rule is not None}


def kind_rule(spec: BlockSpec, rules: dict[type[BlockSpec], KindRule] = KIND_RULES) -> KindRule:
    try:
        return rules[type(spec)]
    except KeyError:
        raise SpecError(f"block kind {spec.kind!r} has no scaling rule "
                        "(nasscale.scaling.rules.KIND_RULES)") from None


def missing_rules(rules: dict[type[BlockSpec], KindRule] = KIND_RULES) -> list[str]:
    """Problems with the registry: kinds without a rule, fields a rule does not sort."""
    problems = []
    for code, cls in BLOCK_KINDS.items():
        if cls not in rules:
            problems.append(f"{code}: no rule")
            continue
        names = {f.name for f in fields(cls)}
        mentioned = rules[cls].named_fields()
        problems += [f"{code}: rule names unknown field {n!r}" for n in mentioned if n not in names]
        problems += [f"{code}: field {n!r} is neither scaled nor fixed" for n in sorted(names)
                     if n not in mentioned]
    return problems


# --- rounding -------------------------------------------------------------------------------

def round_width(channels: int, width: float, policy: RoundingPolicy, divisor: int | None = None,
                ) -> int:
    """``channels · width`` rounded by the policy (nearest multiple of the divisor, never below
    ``min_ratio`` of the unrounded value); ``width == 1`` returns ``channels`` unchanged."""
    if width == 1:
        return channels
    return make_divisible(channels * width, divisor or policy.divisor, policy.min_ratio)


def head_width(channels: int, width: float, policy: RoundingPolicy) -> int:
    """The last feature width before the classifier, by the policy's ``head`` rule."""
    factor = {"scale": width, "grow": max(1.0, width), "fixed": 1.0}[policy.head]
    return round_width(channels, factor, policy)


def round_resolution(value: float, policy: RoundingPolicy, base: int) -> int:
    """A scaled input size: the nearest multiple of ``resolution_divisor`` (at least one), capped
    at ``max_resolution`` unless the base is already larger (a scaled network never shrinks)."""
    d = policy.resolution_divisor
    res = max(d, int(math.floor(value / d + 0.5)) * d)
    if policy.max_resolution is not None:
        res = min(res, max(policy.max_resolution, base))
    return res


__all__ = ["KIND_RULES", "KindRule", "attention_heads", "attention_unit", "head_width",
           "kind_rule", "missing_rules", "round_resolution", "round_width"]
