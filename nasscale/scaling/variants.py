"""Published scaled variants as data: a family file's ``variants:`` section.

Each variant names a ``base`` network of the zoo and its coefficients, exactly as the family's
scaling table prints them, and regenerates the network with :func:`nasscale.scaling.scale`::

    variants:
      efficientnet_b7:
        base: efficientnet_b0
        width: 2.0          # channel multiplier
        depth: 3.1          # repeats multiplier
        resolution: 600     # input size in pixels (the table's value, not 224·γ^φ)
        dropout: 0.5        # head dropout (optional; default: the base's)
        expected: {params: 66347960, flops: 37745884192, source: "..."}

``family``, ``paper`` and ``reference`` are inherited from the family file like a network's and
may be overridden per variant; ``weights`` (the layouts of its reference tensor names),
``rounding`` and ``norm`` are the base's unless the variant gives them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from nasscale.errors import SpecError
from nasscale.grammar.yaml_io import check_keys, weights_from_data
from nasscale.scaling.scale import scale
from nasscale.specs import Expected, NetworkSpec, NormPolicy, RoundingPolicy

VARIANT_KEYS = ("name", "family", "paper", "reference", "weights", "rounding", "norm", "base",
                "width", "depth", "resolution", "dropout", "expected")


def _build(cls, where: str, data: object):
    keys = tuple(f.name for f in dataclasses.fields(cls))
    try:  # the specs' own messages already name "rounding.divisor", "expected.params", ...
        return cls(**check_keys(data, keys, where))
    except TypeError as err:
        raise SpecError(str(err), (where,)) from None


def variant_from_data(data: Mapping[str, Any], base: NetworkSpec) -> NetworkSpec:
    """The network a variant mapping describes, scaled from ``base``; errors name the field."""
    check_keys(data, VARIANT_KEYS, "", required=("name", "base"))
    if "rounding" in data:
        base = base.replace(rounding=_build(RoundingPolicy, "rounding", data["rounding"]))
    if "norm" in data:
        base = base.replace(norm=_build(NormPolicy, "norm", data["norm"]).over(base.norm))
    if data.get("weights") is not None:
        base = base.replace(weights=weights_from_data(data["weights"], "weights"))
    spec = scale(base, width=data.get("width", 1.0), depth=data.get("depth", 1.0),
                 resolution=data.get("resolution"), dropout=data.get("dropout"),
                 name=data["name"])
    expected = None if data.get("expected") is None else _build(Expected, "expected",
                                                                  data["expected"])
    for key in ("family", "paper", "reference"):
        if key in data and not isinstance(data[key], str):
            raise SpecError(f"must be a string, got {data[key]!r}", (key,))
    return spec.replace(family=data.get("family", base.family),
                        paper=data.get("paper", spec.paper),
                        reference=data.get("reference", ""), expected=expected)
