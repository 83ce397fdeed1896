"""How torchvision and timm name the tensors of the networks nasscale builds.

A *layout* maps every key of a nasscale module's ``state_dict`` to the key the reference
implementation uses for the same tensor.  It works on the resolved network, block by block:
each block has a prefix in the reference (``features.3``, ``blocks.2.1``, ...) and a table that
renames the block's own sub-modules (``expand.0`` → ``conv_pw``); the leaf names (``weight``,
``bias``, ``running_mean``, ...) carry over.  Where the reference stores a tensor in another
shape (torchvision's ConvNeXt layer scale is (C, 1, 1), timm's MobileNetV3 head is a 1×1 conv),
``ref_shape`` gives it; where the reference stores a tensor nasscale derives (torchvision's Swin
``relative_position_index``), ``derived`` does.

Reference stages are recovered from the blocks: timm and torchvision start a new stage where the
output width changes or a block has a stride (one stage of nasscale's MobileNetV3 may be one of
several rows of the reference's stage), so a layout needs no stage table.

**Which layout a network takes is data.**  ``LAYOUTS`` names every layout; a network states
its own per source in the ``weights:`` key of its YAML (``NetworkSpec.weights``), usually once
for a whole family file::

    weights: {torchvision: tv_efficientnet, timm: timm_efficientnet}
    weights: {timm: {layout: timm_convnext, conv_mlp: true}}   # a layout with an option

A network's own ``weights:`` replaces its family's; a variant takes its base network's; a
network that states none (a search-space member, a network file written without the key) takes
the family-level ``weights:`` of the family file named by its ``family`` (``nasscale.zoo``).
``layout(rn, source)`` looks the layout up and makes it; nothing is guessed from the blocks.  A
source the network does not state is a ``LayoutError`` naming the network, the source and the
sources it has.  A layout's ``options`` are the switches the network's data sets where one
reference class builds members of a family differently (timm's ConvNeXt: ``conv_mlp``, the
1×1-conv MLPs of ConvNeXt-V2 atto to nano).

Each layout also states the BatchNorm convention of its source (``bn``): what a module loading
those weights must use to compute the reference's function.  ``None`` means the reference's
networks differ from one another (torchvision's EfficientNet B0-B4 vs B5-B7): the network's
own ``norm`` (its YAML) is the reference's.
"""
from __future__ import annotations

from typing import Mapping

from nasscale.errors import NasscaleError, SpecError, suggest
from nasscale.specs import NetworkSpec, ResolvedBlock, ResolvedNetwork, WeightsLayout
from nasscale.weights.layout_base import (  # noqa: F401  (part of this module's API)
    CNA,
    SE_TIMM,
    SOURCES,
    Layout,
    LayoutError,
    Place,
    Table,
    join,
    places,
    rename,
)
from nasscale.weights.reparam_layouts import TimmFastViT, TimmMobileOne, TimmRepViT

# --- torchvision --------------------------------------------------------------------------------

def _sequential_parts(rb: ResolvedBlock, prefix: str = "block") -> Table:
    """torchvision's MBConv/bneck: ``block.j`` numbers the present parts in order."""
    table, j = [], 0
    for part in ("expand", "dw", "se", "project"):
        if part == "expand" and not rb.has_expand:
            continue
        if part == "se" and not getattr(rb.spec, "se", None):
            continue
        if part == "se":
            table += [("se.fc1", f"{prefix}.{j}.fc1"), ("se.fc2", f"{prefix}.{j}.fc2")]
        else:
            table.append((part, f"{prefix}.{j}"))
        j += 1
    return table


class TvMobileNetV2(Layout):
    source, name = "torchvision", "MobileNetV2"
    bn = (1e-5, 0.1)

    def stem(self, rb):
        return "features.0", CNA

    def block(self, rb, place):
        if rb.kind != "mbconv":
            raise LayoutError(f"torchvision's MobileNetV2 has only inverted residuals; "
                              f"{rb.where} is a {rb.kind} block")
        e = 1 if rb.has_expand else 0
        table = [("dw.0", f"conv.{e}.0"), ("dw.1", f"conv.{e}.1"),
                 ("project.0", f"conv.{e + 1}"), ("project.1", f"conv.{e + 2}")]
        if e:
            table += [("expand.0", "conv.0.0"), ("expand.1", "conv.0.1")]
        return f"features.{1 + place.flat}", table

    def head_block(self, rb):
        return f"features.{1 + len(self.places)}", CNA

    def head(self):
        return (("classifier", "classifier.1"),)


class TvMNASNet(Layout):
    """torchvision's MNASNet: one flat ``layers`` Sequential — stem conv/BN (0, 1), the
    separable conv (dw 3, 4; project 6, 7), one Sequential of inverted residuals per stage
    (8 ... 13, each ``layers.{conv, BN, ReLU, dw conv, BN, ReLU, conv, BN}``), the head conv/BN
    (14, 15) — and ``classifier.1``."""

    source, name = "torchvision", "MNASNet"
    bn = (1e-5, 1 - 0.9997)
    metadata = {"": {"version": 2}}  # MNASNet refuses a state dict without it (v1: old stem)

    def stem(self, rb):
        return "layers", CNA

    def block(self, rb, place):
        if rb.kind != "mbconv" or getattr(rb.spec, "se", None):
            raise LayoutError(f"torchvision's MNASNet has only inverted residuals without SE; "
                              f"{rb.where} is not one")
        if place.flat == 0:
            if rb.has_expand:
                raise LayoutError("torchvision's MNASNet starts with a separable conv "
                                  "(an MBConv of expansion 1)")
            return "layers", (("dw.0", "3"), ("dw.1", "4"), ("project.0", "6"),
                              ("project.1", "7"))
        if place.group == 0:
            raise LayoutError(f"torchvision's MNASNet has one separable conv; {rb.where} is "
                              f"a second block of its width")
        table = (("expand.0", "layers.0"), ("expand.1", "layers.1"), ("dw.0", "layers.3"),
                 ("dw.1", "layers.4"), ("project.0", "layers.6"), ("project.1", "layers.7"))
        return f"layers.{7 + place.group}.{place.pos}", table

    def head_block(self, rb):
        return "layers", (("0", str(7 + self.groups)), ("1", str(8 + self.groups)))

    def head(self):
        return (("classifier", "classifier.1"),)


class TvMobileNetV3(TvMobileNetV2):
    name = "MobileNetV3"
    bn = (1e-3, 0.01)

    def block(self, rb, place):
        return f"features.{1 + place.flat}", _sequential_parts(rb)

    def head(self):
        return (("hidden.0", "classifier.0"), ("classifier", "classifier.3"))


class TvEfficientNet(Layout):
    source, name = "torchvision", "EfficientNet"
    bn = None  # B0-B4: 1e-5 and 0.1, B5-B7: 1e-3 and 0.01 (the network's YAML says which)

    def stem(self, rb):
        return "features.0", CNA

    def block(self, rb, place):
        prefix = f"features.{1 + place.group}.{place.pos}"
        if rb.kind == "fused":
            table = (("expand", "block.0"), ("project", "block.1")) if rb.has_expand else \
                (("expand", "block.0"),)
            if getattr(rb.spec, "se", None):
                raise LayoutError("torchvision's FusedMBConv has no squeeze-and-excitation "
                                  f"({rb.where})")
            return prefix, table
        return prefix, _sequential_parts(rb)

    def head_block(self, rb):
        return f"features.{1 + self.groups}", CNA

    def head(self):
        return (("classifier", "classifier.1"),)


class TvEfficientNetV2(TvEfficientNet):
    name = "EfficientNetV2"
    bn = (1e-3, 0.1)


class TvConvNeXt(Layout):
    source, name = "torchvision", "ConvNeXt"
    bn = None

    def stem(self, rb):
        return "features.0", CNA

    def block(self, rb, place):
        if rb.kind == "lndown":
            return f"features.{2 * place.group}", CNA
        if getattr(rb.spec, "grn", False):
            raise LayoutError("torchvision has no ConvNeXt-V2 (GRN); use source='timm'")
        return (f"features.{2 * place.group + 1}.{place.body}",
                (("layer_scale", "layer_scale"), ("dwconv", "block.0"), ("norm", "block.2"),
                 ("pwconv1", "block.3"), ("pwconv2", "block.5")))

    def head(self):
        return (("norm", "classifier.0"), ("classifier", "classifier.2"))

    def ref_shape(self, ref_key, shape):
        return (*shape, 1, 1) if ref_key.endswith(".layer_scale") else shape


class TvViT(Layout):
    source, name = "torchvision", "VisionTransformer"
    bn = None

    def stem(self, rb):
        return "", (("class_token", "class_token"), ("pos_embedding", "encoder.pos_embedding"),
                    ("conv_proj", "conv_proj"))

    def block(self, rb, place):
        return (f"encoder.layers.encoder_layer_{place.flat}",
                (("norm1", "ln_1"), ("attn.qkv.weight", "self_attention.in_proj_weight"),
                 ("attn.qkv.bias", "self_attention.in_proj_bias"),
                 ("attn.proj", "self_attention.out_proj"), ("norm2", "ln_2"),
                 ("mlp.fc1", "mlp.0"), ("mlp.fc2", "mlp.3")))

    def head(self):
        return (("norm", "encoder.ln"), ("classifier", "heads.head"))


class TvSwin(Layout):
    source, name = "torchvision", "SwinTransformer"
    bn = None

    def stem(self, rb):
        return "features.0", (("conv", "0"), ("norm", "2"))

    def block(self, rb, place):
        if rb.kind == "patchmerge":
            return f"features.{2 * place.group}", (("norm", "norm"), ("reduction", "reduction"))
        return (f"features.{2 * place.group + 1}.{place.body}",
                (("norm1", "norm1"), ("norm2", "norm2"),
                 ("attn.relative_position_bias_table", "attn.relative_position_bias_table"),
                 ("attn.attn.qkv", "attn.qkv"), ("attn.attn.proj", "attn.proj"),
                 ("mlp.fc1", "mlp.0"), ("mlp.fc2", "mlp.3")))

    def head(self):
        return (("norm", "norm"), ("classifier", "head"))

    def derived(self):
        from nasscale.modules.attention import relative_position_index

        out = {}
        for rb in self.rn.section("stage"):
            if rb.kind == "swin":
                p = self.places[rb.index]
                win = rb.spec.window_size
                out[f"features.{2 * p.group + 1}.{p.body}.attn.relative_position_index"] = (
                    lambda win=win: relative_position_index(win).flatten())
        return out


# --- timm ---------------------------------------------------------------------------------------

class TimmEfficientNet(Layout):
    """timm's ``EfficientNet`` and ``MobileNetV3`` classes (MobileNetV1/V2/V3, EfficientNet,
    EfficientNetV2): ``conv_stem``/``bn1``, ``blocks.{stage}.{i}``, ``conv_head``."""

    source, name = "timm", "EfficientNet/MobileNetV3"
    bn = (1e-5, 0.1)
    split_on_kernel = True

    def stem(self, rb):
        return "", (("0", "conv_stem"), ("1", "bn1"))

    def block(self, rb, place):
        prefix = f"blocks.{place.group}.{place.pos}"
        kind = rb.kind
        if kind == "ds":
            return prefix, (("dw.0", "conv_dw"), ("dw.1", "bn1"), *SE_TIMM, ("pw.0", "conv_pw"),
                            ("pw.1", "bn2"))
        if kind in ("mbconv", "bneck"):
            if rb.has_expand:
                return prefix, (("expand.0", "conv_pw"), ("expand.1", "bn1"), ("dw.0", "conv_dw"),
                                ("dw.1", "bn2"), *SE_TIMM, ("project.0", "conv_pwl"),
                                ("project.1", "bn3"))
            return prefix, (("dw.0", "conv_dw"), ("dw.1", "bn1"), *SE_TIMM,
                            ("project.0", "conv_pw"), ("project.1", "bn2"))
        if kind == "fused":
            if rb.has_expand:
                return prefix, (("expand.0", "conv_exp"), ("expand.1", "bn1"), *SE_TIMM,
                                ("project.0", "conv_pwl"), ("project.1", "bn2"))
            return prefix, (("expand.0", "conv"), ("expand.1", "bn1"))
        if kind == "conv":
            return prefix, (("0", "conv"), ("1", "bn1"))
        if kind == "uib":
            return prefix, (("dw_start.0", "dw_start.conv"), ("dw_start.1", "dw_start.bn"),
                            ("expand.0", "pw_exp.conv"), ("expand.1", "pw_exp.bn"),
                            ("dw_mid.0", "dw_mid.conv"), ("dw_mid.1", "dw_mid.bn"),
                            ("project.0", "pw_proj.conv"), ("project.1", "pw_proj.bn"),
                            ("layer_scale", "layer_scale.gamma"))
        if kind == "mqa":
            return prefix, (("norm", "norm"), ("query", "attn.query.proj"),
                            ("key_down.0", "attn.key.down_conv"), ("key_down.1", "attn.key.norm"),
                            ("key", "attn.key.proj"),
                            ("value_down.0", "attn.value.down_conv"),
                            ("value_down.1", "attn.value.norm"), ("value", "attn.value.proj"),
                            ("output", "attn.output.proj"), ("layer_scale", "layer_scale.gamma"))
        raise LayoutError(f"timm's EfficientNet has no {kind} block ({rb.where})")

    @property
    def _mobilenet_v3(self) -> bool:  # the 1x1 conv before pooling is a block, then conv_head
        return bool(self.rn.head.hidden)

    def head_block(self, rb):
        if self._mobilenet_v3:
            return f"blocks.{self.groups}.0", (("0", "conv"), ("1", "bn1"))
        return "", (("0", "conv_head"), ("1", "bn2"))

    def head(self):
        if self._mobilenet_v3:
            if len(self.rn.head.hidden) != 1:
                raise LayoutError("timm's MobileNetV3 has one hidden layer after pooling")
            return (("hidden.0", "conv_head"), ("hidden_norm.0", "norm_head"),
                    ("classifier", "classifier"))
        return (("classifier", "classifier"),)

    def ref_shape(self, ref_key, shape):
        return (*shape, 1, 1) if ref_key == "conv_head.weight" and len(shape) == 2 else shape


class TimmLCNet(TimmEfficientNet):
    """timm's PP-LCNet (its ``MobileNetV3`` class): the stages of ``TimmEfficientNet`` except
    that the 256-wide run (one strided 3×3 block, then 5×5 blocks) is two timm stages: the
    strided block with the first 5×5 one, then the other 5×5 blocks (timm's architecture rows
    ``dsa_r1_k3_s2_c256, dsa_r1_k5_s1_c256`` and ``dsa_r4_k5_s1_c256``)."""

    name = "LCNet"
    split_on_kernel = False

    def __init__(self, rn: ResolvedNetwork, options: Mapping[str, object] | None = None):
        super().__init__(rn, options)
        stage = rn.section("stage")
        kernels = {rb.index: getattr(rb.spec, "kernel_size", None) for rb in stage}
        shift, out = 0, {}
        for rb in stage:
            p = self.places[rb.index]
            first = next(b for b in stage if self.places[b.index].group == p.group)
            mixed = any(kernels[b.index] != kernels[first.index] for b in stage
                        if self.places[b.index].group == p.group)
            if mixed and p.pos == 2:
                shift += 1
            pos = p.pos - 2 if mixed and p.pos >= 2 else p.pos
            out[rb.index] = Place(p.group + shift, pos, pos, p.flat)
        self.places = out
        self.groups = 1 + max((p.group for p in out.values()), default=-1)


class TimmMobileNetV4(TimmEfficientNet):
    """timm's MobileNetV4 (its ``MobileNetV3`` class): a stage per stride, each mixing widths
    and kernels; the post-pooling ``conv_head`` has a ``norm_head`` BatchNorm."""

    name = "MobileNetV4"
    split_on_kernel = False
    split_on_stride_only = True


class TimmConvNeXt(Layout):
    """timm's ConvNeXt (V1 and V2).  ``conv_mlp``: the MLPs are 1×1 convs (timm builds
    ConvNeXt-V2 atto, femto, pico and nano so): their ``mlp.fc`` weights gain two unit axes."""

    source, name = "timm", "ConvNeXt"
    bn = None
    options = {"conv_mlp": False}

    def stem(self, rb):
        return "stem", CNA

    def block(self, rb, place):
        if rb.kind == "lndown":
            return f"stages.{place.group}.downsample", CNA
        return (f"stages.{place.group}.blocks.{place.body}",
                (("layer_scale", "gamma"), ("dwconv", "conv_dw"), ("norm", "norm"),
                 ("pwconv1", "mlp.fc1"), ("grn", "mlp.grn"), ("pwconv2", "mlp.fc2")))

    def head(self):
        return (("norm", "head.norm"), ("classifier", "head.fc"))

    def ref_shape(self, ref_key, shape):
        if self.settings["conv_mlp"] and ref_key.endswith(("mlp.fc1.weight", "mlp.fc2.weight")):
            return (*shape, 1, 1)
        return shape


class TimmViT(Layout):
    source, name = "timm", "VisionTransformer"
    bn = None

    def stem(self, rb):
        return "", (("class_token", "cls_token"), ("pos_embedding", "pos_embed"),
                    ("conv_proj", "patch_embed.proj"))

    def block(self, rb, place):
        return f"blocks.{place.flat}", (("norm1", "norm1"), ("attn", "attn"), ("norm2", "norm2"),
                                        ("mlp", "mlp"))

    def head(self):
        return (("norm", "norm"), ("classifier", "head"))


class TimmSwin(Layout):
    source, name = "timm", "SwinTransformer"
    bn = None

    def stem(self, rb):
        return "patch_embed", (("conv", "proj"), ("norm", "norm"))

    def block(self, rb, place):
        if rb.kind == "patchmerge":
            return f"layers.{place.group}.downsample", (("norm", "norm"),
                                                        ("reduction", "reduction"))
        return (f"layers.{place.group}.blocks.{place.body}",
                (("norm1", "norm1"), ("norm2", "norm2"),
                 ("attn.relative_position_bias_table", "attn.relative_position_bias_table"),
                 ("attn.attn", "attn"), ("mlp", "mlp")))

    def head(self):
        return (("norm", "norm"), ("classifier", "head.fc"))


class TimmMobileViT(Layout):
    source, name = "timm", "MobileVit / MobileVitV2 (byobnet)"
    bn = (1e-5, 0.1)

    def stem(self, rb):
        return "stem", (("0", "conv"), ("1", "bn"))

    def block(self, rb, place):
        prefix = f"stages.{place.group}.{place.pos}"
        if rb.kind == "mbconv" and rb.has_expand:
            return prefix, (("expand.0", "conv1_1x1.conv"), ("expand.1", "conv1_1x1.bn"),
                            ("dw.0", "conv2_kxk.conv"), ("dw.1", "conv2_kxk.bn"),
                            ("project.0", "conv3_1x1.conv"), ("project.1", "conv3_1x1.bn"))
        if rb.kind == "mobilevit":
            return prefix, (("conv_kxk.0", "conv_kxk.conv"), ("conv_kxk.1", "conv_kxk.bn"),
                            ("conv_1x1", "conv_1x1"), ("transformer", "transformer"),
                            ("norm", "norm"), ("conv_proj.0", "conv_proj.conv"),
                            ("conv_proj.1", "conv_proj.bn"), ("conv_fusion.0", "conv_fusion.conv"),
                            ("conv_fusion.1", "conv_fusion.bn"))
        if rb.kind == "mobilevit2":  # MobileVitV2Block: the same names, no fusion conv
            return prefix, (("conv_kxk.0", "conv_kxk.conv"), ("conv_kxk.1", "conv_kxk.bn"),
                            ("conv_1x1", "conv_1x1"), ("transformer", "transformer"),
                            ("norm", "norm"), ("conv_proj.0", "conv_proj.conv"),
                            ("conv_proj.1", "conv_proj.bn"))
        raise LayoutError(f"timm's MobileViT has no {rb.kind} block like {rb.where}")

    def head_block(self, rb):
        return "final_conv", (("0", "conv"), ("1", "bn"))

    def head(self):
        return (("classifier", "head.fc"),)


#: Every layout by the name a network's ``weights:`` gives it (``NetworkSpec.weights``).  A
#: name is unique across the sources; its class's ``source`` is the one it serves.  Adding one:
#: its class above (or in ``reparam_layouts``), its entry here, ``weights:`` in the family files
#: that use it, and its case in tests/test_layout_contract.py (a test fails for a name no
#: network uses).
LAYOUTS: dict[str, type[Layout]] = {
    "tv_mobilenet_v2": TvMobileNetV2,
    "tv_mobilenet_v3": TvMobileNetV3,
    "tv_mnasnet": TvMNASNet,
    "tv_efficientnet": TvEfficientNet,
    "tv_efficientnet_v2": TvEfficientNetV2,
    "tv_convnext": TvConvNeXt,
    "tv_vit": TvViT,
    "tv_swin": TvSwin,
    "timm_efficientnet": TimmEfficientNet,
    "timm_lcnet": TimmLCNet,
    "timm_mobilenet_v4": TimmMobileNetV4,
    "timm_convnext": TimmConvNeXt,
    "timm_vit": TimmViT,
    "timm_swin": TimmSwin,
    "timm_mobilevit": TimmMobileViT,
    "timm_mobileone": TimmMobileOne,
    "timm_repvit": TimmRepViT,
    "timm_fastvit": TimmFastViT,
}


def check_layout(ref: WeightsLayout) -> type[Layout]:
    """The class of a stated layout; a ``SpecError`` naming the field (``layout`` or the
    option) for an unknown source, name or option, a layout of another source, or an option
    value of the wrong type."""
    if ref.source not in SOURCES:
        raise SpecError(f"unknown weights source{suggest(ref.source, SOURCES)}; known: "
                        f"{', '.join(SOURCES)}", (ref.source,))
    cls = LAYOUTS.get(ref.layout)
    mine = [name for name, c in LAYOUTS.items() if c.source == ref.source]
    if cls is None:
        raise SpecError(f"unknown {ref.source} layout {ref.layout!r}"
                        f"{suggest(ref.layout, mine)}; known: {', '.join(mine)}", ("layout",))
    if cls.source != ref.source:
        raise SpecError(f"{ref.layout!r} is a {cls.source} layout, not {ref.source}'s; "
                        f"{ref.source}'s: {', '.join(mine)}", ("layout",))
    for name, value in ref.options:
        if name not in cls.options:
            allowed = ", ".join(cls.options) or "none"
            raise SpecError(f"unknown option of layout {ref.layout}{suggest(name, cls.options)}; "
                            f"its options: {allowed}", (name,))
        default = cls.options[name]
        if type(value) is not type(default) and not (
                isinstance(default, float) and type(value) is int):
            raise SpecError(f"must be a {type(default).__name__} (like the default "
                            f"{default!r}), got {value!r}", (name,))
    return cls


def declared(spec: NetworkSpec) -> tuple[WeightsLayout, ...]:
    """The layouts a network takes: its own ``weights``, else its family file's
    (``nasscale.zoo.family_weights``: a search-space member carries the space's ``family``)."""
    if spec.weights:
        return spec.weights
    from nasscale.zoo import family_weights

    return family_weights(spec.family)


def layout(rn: ResolvedNetwork, source: str) -> Layout:
    """The layout of ``source`` that the network states (``declared``), made for it."""
    if source not in SOURCES:
        raise NasscaleError(f"unknown weights source {source!r}; known: nasscale, "
                            f"{', '.join(SOURCES)}")
    spec = rn.spec
    stated = declared(spec)
    ref = next((w for w in stated if w.source == source), None)
    if ref is None:
        if not stated:
            mine = ", ".join(n for n, c in LAYOUTS.items() if c.source == source)
            raise LayoutError(
                f"{spec.name} states no weights layout, so it has no {source} counterpart (no "
                f"weights: in its YAML, and no family file of family {spec.family!r} gives "
                f"one); add weights: {{{source}: LAYOUT}} (one of {mine})")
        have = [w.source for w in stated]
        raise LayoutError(f"{source} has no counterpart of {spec.name} (its weights: lists "
                          f"{', '.join(have)} only); use source={have[0]!r}")
    try:
        cls = check_layout(ref)
    except SpecError as err:
        raise LayoutError(f"{spec.name}: weights.{source}: {err}") from None
    return cls(rn, dict(ref.options))
