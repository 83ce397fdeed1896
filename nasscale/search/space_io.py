"""Search spaces from YAML (``spaces/search/<name>.yaml``), with file/line/field errors.

Schema (every list is a list of choices)::

    name: mobilenet_v3_like
    description: ...
    contains: [mobilenet_v3_large, mobilenet_v3_small]   # checked by the tests
    num_classes: 1000
    resolution: [192, 224]
    stem: {width: 16, activation: [hswish]}
    stages:                       # one slot per entry, in order
      - stride: 2
        depth: [1, 2, 3]          # 0 skips the slot
        width: {min: 16, max: 32} # multiples of 8 (step 8 unless given); or one integer
        kinds: [bneck]            # mbconv, fused, bneck, ds
        kernel_size: [3, 5]
        expand_ratio: [3, 4, 6]
        se: [false, true]
        se_form: 0.25-in-sigmoid-silu-d1   # SE of mbconv/fused layers (bneck's is fixed)
        activation: [relu, hswish]
        per_layer: [expand_ratio] # fields each layer samples on its own
    head: {conv_ratio: [6], conv_activation: hswish, hidden: [[1024], [1280]], dropout: 0.2}
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from nasscale.errors import NasscaleError, SpecError, UnknownNameError, suggest
from nasscale.grammar.text import SE_TOKEN
from nasscale.grammar.yaml_io import check_keys, in_file, norm_from_data, read_yaml
from nasscale.search.choices import (
    AttentionTail,
    HeadChoice,
    LayerChoice,
    MQATail,
    StageChoice,
    WidthChoice,
)
from nasscale.search.space import SearchSpace
from nasscale.specs import NormPolicy
from nasscale.zoo import spaces_dir

SPACE_KEYS = ("name", "description", "family", "contains", "num_classes", "resolution", "norm",
              "stem", "stages", "head")
STAGE_KEYS = ("stride", "depth", "width", "kinds", "kernel_size", "expand_ratio", "se",
              "se_form", "activation", "per_layer", "attention", "start_kernel", "branches")
ATTENTION_KEYS = ("kind", "present", "transformer_dim", "transformer_depth", "mlp_ratio",
                  "num_heads", "patch_size", "kernel_size", "activation")
MQA_KEYS = ("kind", "present", "num_heads", "key_dim", "kv_stride", "kernel_size",
            "layer_scale")
#: a space's stem: a 3x3 stride-2 conv-BN-act, or a re-parameterisable one (MobileOne's)
STEM_KINDS = ("conv", "repconv")
HEAD_KEYS = ("conv_width", "conv_ratio", "conv_activation", "hidden", "hidden_activation",
             "dropout", "hidden_norm")


def _list(value: Any, where: str) -> tuple:
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(value, (int, float, str, bool)):
        return (value,)
    raise SpecError(f"must be a list of choices, got {value!r}", (where,))


def _width(value: Any, where: str) -> WidthChoice:
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"min": value, "max": value}
    data = check_keys(value, ("min", "max", "step"), where, required=("min", "max"))
    try:
        return WidthChoice(**data)
    except SpecError as err:
        raise SpecError(err.message, (where,)) from None


def _se_form(value: Any, where: str):
    m = SE_TOKEN.match("se" + str(value))
    if not m:
        raise SpecError(f"must look like 0.25-in-sigmoid-silu-d1 (ratio-base-gate-act-divisor), "
                        f"got {value!r}", (where,))
    return SE_TOKEN.parse(m)


def _stage(data: Any, where: str) -> StageChoice:
    data = check_keys(data, STAGE_KEYS, where, required=("stride", "depth", "width", "kinds"))
    layer_args: dict[str, Any] = {"kinds": _list(data["kinds"], f"{where}.kinds")}
    for key in ("kernel_size", "expand_ratio", "se", "activation", "start_kernel", "branches"):
        if key in data:
            layer_args[key] = _list(data[key], f"{where}.{key}")
    if "expand_ratio" in layer_args:
        layer_args["expand_ratio"] = tuple(float(e) if isinstance(e, (int, float))
                                           and not isinstance(e, bool) else e
                                           for e in layer_args["expand_ratio"])
    if "se_form" in data:
        layer_args["se_form"] = _se_form(data["se_form"], f"{where}.se_form")
    attention = _attention(data["attention"], f"{where}.attention") \
        if data.get("attention") else None
    try:
        layer = LayerChoice(**layer_args)
        return StageChoice(stride=data["stride"], depth=_list(data["depth"], f"{where}.depth"),
                           width=_width(data["width"], f"{where}.width"), layer=layer,
                           per_layer=_list(data.get("per_layer", ()), f"{where}.per_layer"),
                           attention=attention)
    except SpecError as err:
        raise err.with_context(where) from None


def _mqa(data: Any, where: str) -> MQATail:
    data = dict(check_keys(data, MQA_KEYS, where))
    data.pop("kind")
    args = {key: value if key == "layer_scale" else _list(value, f"{where}.{key}")
            for key, value in data.items()}
    try:
        return MQATail(**args)
    except SpecError as err:
        raise err.with_context(where) from None


def _attention(data: Any, where: str) -> "AttentionTail | MQATail":
    if isinstance(data, dict) and data.get("kind") == "mqa":
        return _mqa(data, where)
    data = dict(check_keys(data, ATTENTION_KEYS, where, required=("transformer_dim",)))
    kind = data.pop("kind", "mobilevit")
    if kind not in ("mobilevit", "mobilevit2"):
        raise SpecError(f"must be mobilevit, mobilevit2 or mqa (the attention blocks a stage "
                        f"slot can end with), got {kind!r}", (f"{where}.kind",))
    args: dict[str, Any] = {"transformer_dim": _width(data.pop("transformer_dim"),
                                                      f"{where}.transformer_dim"), "kind": kind}
    if kind == "mobilevit2" and "num_heads" not in data:
        args["num_heads"] = (1,)  # one query
    for key, value in data.items():
        args[key] = value if key == "activation" else _list(value, f"{where}.{key}")
    if "mlp_ratio" in args:
        args["mlp_ratio"] = tuple(float(r) for r in args["mlp_ratio"])
    try:
        return AttentionTail(**args)
    except SpecError as err:
        raise err.with_context(where) from None


def _head(data: Any, where: str) -> HeadChoice:
    data = dict(check_keys(data or {}, HEAD_KEYS, where))
    for key in ("conv_width", "conv_ratio"):
        if key in data:
            data[key] = _list(data[key], f"{where}.{key}")
    if "hidden" in data:
        hidden = data["hidden"]
        if not isinstance(hidden, list) or not all(isinstance(h, list) for h in hidden):
            raise SpecError("must be a list of choices, each a list of widths (e.g. [[], "
                            "[1280]])", (f"{where}.hidden",))
        data["hidden"] = tuple(tuple(h) for h in hidden)
    try:
        return HeadChoice(**data)
    except SpecError as err:
        raise SpecError(err.message, (where,)) from None


def space_from_data(data: Any) -> SearchSpace:
    data = check_keys(data, SPACE_KEYS, "", required=("name", "resolution", "stem", "stages"))
    stem = check_keys(data["stem"], ("width", "activation", "kind", "branches"), "stem",
                      required=("width",))
    if stem.get("kind", "conv") not in STEM_KINDS:
        raise SpecError(f"must be one of {', '.join(STEM_KINDS)}, got {stem['kind']!r}",
                        ("stem.kind",))
    stages = data["stages"]
    if not isinstance(stages, list) or not stages:
        raise SpecError("must be a non-empty list of stage slots", ("stages",))
    resolution = _list(data["resolution"], "resolution")
    if not resolution or any(isinstance(r, bool) or not isinstance(r, int) or r < 8
                             for r in resolution):
        raise SpecError(f"must be a list of integers >= 8, got {data['resolution']!r}",
                        ("resolution",))
    try:
        return SearchSpace(
            name=str(data["name"]), description=str(data.get("description", "")),
            family=str(data.get("family", "")),
            contains=tuple(_list(data.get("contains", ()), "contains")),
            num_classes=data.get("num_classes", 1000), resolution=resolution,
            stem_width=_width(stem["width"], "stem.width"),
            stem_activation=_list(stem.get("activation", "relu"), "stem.activation"),
            stem_kind=stem.get("kind", "conv"),
            stem_branches=_list(stem.get("branches", 1), "stem.branches"),
            stages=tuple(_stage(s, f"stages[{i}]") for i, s in enumerate(stages)),
            head=_head(data.get("head"), "head"),
            norm=norm_from_data(data.get("norm"), "norm") or NormPolicy())
    except SpecError:
        raise
    except (TypeError, ValueError) as err:
        raise SpecError(str(err)) from None


def space_names() -> list[str]:
    return sorted(p.stem for p in (spaces_dir() / "search").glob("*.yaml"))


def load_space(name_or_path: str | os.PathLike) -> SearchSpace:
    """A search space by name (``spaces/search/<name>.yaml``) or path."""
    text = os.fspath(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or os.sep in text):
        path = spaces_dir() / "search" / f"{text}.yaml"
        if not path.exists():
            known = space_names()
            raise UnknownNameError(f"unknown search space {text!r}{suggest(text, known)}; "
                                   f"known: {', '.join(known)} (or give a .yaml path)")
    if not path.exists():
        raise NasscaleError(f"{path}: no such file")
    data, source = read_yaml(path)
    try:
        return space_from_data(data)
    except SpecError as err:
        raise in_file(err, path, source) from None


def is_space_file(data: Mapping) -> bool:
    return isinstance(data, Mapping) and "stages" in data and isinstance(data.get("stem"),
                                                                         Mapping)
