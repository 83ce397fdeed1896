"""Block specs of the convolutional families: frozen, typed, torch-free.

A block spec describes one block given its input: the input channel count and the feature-map
size come from the previous block when a network is resolved (``nasscale.specs.resolve``).  In a
stage of ``repeats`` blocks the spec's ``stride`` applies to the first repeat; the others use
stride 1 and take the stage's output width as input (the convention of every paper table here).

Each spec validates itself in ``__post_init__``: a bad value raises a ``SpecError`` naming the
field and the allowed values.  Every spec answers three questions the resolver asks:

``out_hw(hw)``
    the output feature-map size for an input of size ``hw``;
``widths(in_channels)``
    the derived inner widths (expanded ``mid`` channels, ``se`` channels, ...) as a dict;
``check_input(in_channels)``
    raise if this block cannot follow a block of ``in_channels`` outputs.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

from nasscale.errors import SpecError, field_error
from nasscale.specs.common import (
    ACTIVATIONS,
    MAX_EXPAND_RATIO,
    SE_GATES,
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_odd,
    make_divisible,
)
from nasscale.specs.kind import KindRule, NotALayer

STRIDES = (1, 2)

#: Tensor layouts between blocks: ``nchw`` feature maps (convolutions), ``nhwc`` channels-last
#: grids (Swin), and ``tokens``: (N, 1 + H·W, C) sequences with a class token first (ViT).
LAYOUTS = ("nchw", "nhwc", "tokens")


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis (PyTorch's floor formula)."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class SESpec:
    """Squeeze-and-excitation: global pool → 1×1 conv (bias) → act → 1×1 conv (bias) → gate.

    The squeeze width is ``make_divisible(floor(base · ratio), divisor)`` where ``base`` is the
    block's input channels (``"in"``, EfficientNet/EfficientNetV2) or its expanded channels
    (``"mid"``, MobileNetV3, whose divisor is 8).  ``divisor = 1`` means plain ``floor`` (min 1).
    """

    ratio: float = 0.25
    base: str = "in"
    gate: str = "sigmoid"
    activation: str = "relu"
    divisor: int = 1

    def __post_init__(self) -> None:
        check_number("se.ratio", self.ratio)
        if self.ratio > 1:
            raise field_error("se.ratio", "a number in (0, 1]", self.ratio)
        check_choice("se.base", self.base, ("in", "mid"))
        check_choice("se.gate", self.gate, SE_GATES)
        check_choice("se.activation", self.activation, ACTIVATIONS)
        check_int("se.divisor", self.divisor)

    def width(self, in_channels: int, mid_channels: int) -> int:
        base = in_channels if self.base == "in" else mid_channels
        return make_divisible(math.floor(base * self.ratio), self.divisor)


#: The SE of a MobileNetV3 bneck: on the expanded channels, ReLU, hard-sigmoid, rounded to 8.
MOBILENET_V3_SE = SESpec(ratio=0.25, base="mid", gate="hsigmoid", activation="relu", divisor=8)


SKIP_RULES = ("field", "always", "never", "widths")


@dataclass(frozen=True)
class BlockSpec:
    """Base of every block spec; subclasses are frozen dataclasses with a unique ``kind``."""

    kind: ClassVar[str] = ""
    #: one-line description for ``nasscale show`` and the docs
    title: ClassVar[str] = ""
    #: the tensor layout the block takes and gives (``LAYOUTS``); resolve checks they chain
    in_layout: ClassVar[str] = "nchw"
    out_layout: ClassVar[str] = "nchw"
    #: whether the parameter count depends on the input size (ViT's position embedding): such a
    #: block is sized for its input at the network's own resolution (``ResolvedBlock.trained_hw``)
    params_depend_on_size: ClassVar[bool] = False
    #: whether the block adds its input to its output (``SKIP_RULES``): ``"field"`` when its
    #: ``skip`` field says so, ``"always"`` for a kind that always does, ``"never"``; in these
    #: cases only at stride 1 with equal widths (``ResolvedBlock.residual``); ``"widths"``:
    #: whenever the widths are equal, at any stride (MobileOne's pointwise half runs at stride
    #: 1 after the strided depthwise one, and has an identity branch).  Every kind states it
    #: (a test checks), so modules and pruning read one rule.
    skip_rule: ClassVar[str] = ""
    #: everything the layers need to know about the kind's fields (``specs.kind.KindRule``):
    #: how each scales, its pruning roles, its text tokens; every kind declares one (a test
    #: checks it names every field)
    rule: ClassVar["KindRule | None"] = None
    #: the layer fields a search space's ``LayerChoice`` picks for this kind after kind, kernel
    #: and activation (``()``: none; only kinds that define ``from_layer`` are offered)
    layer_fields: ClassVar[tuple[str, ...]] = ()
    #: the activations a layer choice may give this kind (``None``: any)
    layer_activations: ClassVar["tuple[str, ...] | None"] = None
    #: whether a layer choice may give this kind kernel 0 (no such conv: UIB's mid dw)
    layer_kernel_optional: ClassVar[bool] = False
    #: whether the kind trains as parallel branches and deploys as fewer layers: its spec then
    #: has a ``deploy`` field (text ``deploy``) that says which form it is, and its module a
    #: ``reparameterize()`` giving the deploy form (``nasscale.reparameterize``)
    reparameterizable: ClassVar[bool] = False

    def ties_widths(self) -> bool:
        """Whether the block's convs are grouped by both its input and output widths (gcd
        groups: FastViT's grouped convs): pruning either width would make them denser, so
        pruning keeps both (``transfer.groups.width_groups``)."""
        return False

    def deploy_form(self) -> "BlockSpec":
        """This block as it is deployed: the fused form of a re-parameterisable kind, itself
        for every other kind (their train and deploy forms are one)."""
        return self.replace(deploy=True) if self.reparameterizable else self

    def train_form(self) -> "BlockSpec":
        """This block as it is trained: the branched form of a re-parameterisable kind."""
        return self.replace(deploy=False) if self.reparameterizable else self

    @classmethod
    def searchable(cls) -> bool:
        """Whether search spaces' layer choices offer this kind (it defines ``from_layer``)."""
        return "from_layer" in vars(cls)

    @classmethod
    def drawable(cls) -> bool:
        """Whether the random generator draws this kind (it defines ``random_layer``)."""
        return "random_layer" in vars(cls)

    @property
    def block_stride(self) -> int:
        return getattr(self, "stride", 1)

    def with_stride(self, stride: int) -> "BlockSpec":
        """This spec for a later repeat of its stage (stride 1); kinds without stride: itself."""
        if not hasattr(self, "stride") or self.stride == stride:  # type: ignore[attr-defined]
            return self
        return dataclasses.replace(self, stride=stride)

    def for_repeat(self, repeat: int) -> "BlockSpec":
        """The spec of repeat ``repeat`` (0-based) of a stage of this block: the stage's stride
        on the first repeat only.  Swin overrides it to alternate shifted windows."""
        return self if repeat == 0 else self.with_stride(1)

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        k, s = self.kernel_size, self.block_stride  # type: ignore[attr-defined]
        return (conv_out(hw[0], k, s, k // 2), conv_out(hw[1], k, s, k // 2))

    def widths(self, in_channels: int) -> dict[str, int]:
        return {}

    def check_input(self, in_channels: int) -> None:
        return None

    def replace(self, **changes: object) -> "BlockSpec":
        return dataclasses.replace(self, **changes)


def _check_common(spec: BlockSpec, odd_kernel: bool = True) -> None:
    check_int("out_channels", spec.out_channels)  # type: ignore[attr-defined]
    if odd_kernel:
        check_odd("kernel_size", spec.kernel_size)  # type: ignore[attr-defined]
    if hasattr(spec, "stride"):
        check_choice("stride", spec.stride, STRIDES)  # type: ignore[attr-defined]
    if hasattr(spec, "activation"):
        check_choice("activation", spec.activation, ACTIVATIONS)  # type: ignore[attr-defined]


def _check_expansion(spec: BlockSpec) -> None:
    e, m = spec.expand_ratio, spec.mid_channels  # type: ignore[attr-defined]
    if (e is None) == (m is None):
        raise SpecError(
            f"give exactly one of expand_ratio (e) or mid_channels (m), got e={e!r}, m={m!r}",
            ("expand_ratio",))
    if e is not None:
        check_number("expand_ratio", e, maximum=MAX_EXPAND_RATIO)
    else:
        check_int("mid_channels", m)


def _mid(spec: BlockSpec, in_channels: int) -> int:
    """Expanded width: explicit ``mid_channels``, or ``make_divisible(in · expand_ratio, 8)``."""
    if spec.mid_channels is not None:  # type: ignore[attr-defined]
        return spec.mid_channels  # type: ignore[attr-defined]
    base = getattr(spec, "expand_in", None) or in_channels  # fused's nominal input width
    return make_divisible(base * spec.expand_ratio, 8)  # type: ignore[attr-defined]


def _check_se(spec: BlockSpec) -> None:
    if spec.se is not None and not isinstance(spec.se, SESpec):  # type: ignore[attr-defined]
        raise field_error("se", "an SE spec or none", spec.se)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ConvSpec(BlockSpec):
    """Convolution → norm → activation: stems, heads, MobileNetV3's last 1×1 conv.

    ``norm`` is ``bn`` (BatchNorm; the conv then has no bias unless ``bias``) or ``none``.
    """

    kind: ClassVar[str] = "conv"
    skip_rule: ClassVar[str] = "never"
    title: ClassVar[str] = "conv-BN-act"
    rule: ClassVar[KindRule] = KindRule(
        fixed=("kernel_size", "stride", "activation", "norm", "bias"),
        text=("k", "s", "c", "act", "nonorm", "bias"), inherit=True)
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    activation: str = "relu"
    norm: str = "bn"
    bias: bool = False

    def __post_init__(self) -> None:
        _check_common(self)
        check_choice("norm", self.norm, ("bn", "none"))
        check_bool("bias", self.bias)

    @classmethod
    def from_layer(cls, *, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                   activation: str, expand_ratio: float = 1.0, se: bool = False,
                   se_form: SESpec | None = None) -> "ConvSpec":
        return cls(out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                   activation=activation)

    def layer_values(self, in_channels: int, expand_ratios, se_form) -> dict:
        if self.norm != "bn" or self.bias:
            raise NotALayer("", "conv layers in spaces are conv-BN-act without bias")
        return {}

    @classmethod
    def random_layer(cls, rng, out_channels: int, stride: int, k: int, act: str,
                     expansion: dict, se) -> "ConvSpec":
        return cls(out_channels=out_channels, kernel_size=k, stride=stride, activation=act,
                   bias=rng.random() < 0.2)


@dataclass(frozen=True)
class DepthwiseSeparableSpec(BlockSpec):
    """MobileNetV1: k×k depthwise conv → BN → act → 1×1 conv → BN → act.

    Optional SE after the depthwise conv; ``skip`` adds a residual when stride is 1 and the
    width is unchanged (MobileNetV1 itself has none).
    """

    kind: ClassVar[str] = "ds"
    skip_rule: ClassVar[str] = "field"
    title: ClassVar[str] = "depthwise-separable"
    rule: ClassVar[KindRule] = KindRule(
        fixed=("kernel_size", "stride", "activation", "se", "skip"),
        text=("k", "s", "c", "act", "se", "skip"), inherit=True)
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    activation: str = "relu"
    se: SESpec | None = None
    skip: bool = False

    def __post_init__(self) -> None:
        _check_common(self)
        _check_se(self)
        check_bool("skip", self.skip)

    def widths(self, in_channels: int) -> dict[str, int]:
        return {"se": self.se.width(in_channels, in_channels) if self.se else 0}

    @classmethod
    def from_layer(cls, *, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                   activation: str, expand_ratio: float = 1.0, se: bool = False,
                   se_form: SESpec | None = None) -> "DepthwiseSeparableSpec":
        return cls(out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                   activation=activation)

    def layer_values(self, in_channels: int, expand_ratios, se_form) -> dict:
        if self.se is not None or self.skip:
            raise NotALayer("", "ds blocks in spaces have no SE and no skip")
        return {}

    @classmethod
    def random_layer(cls, rng, out_channels: int, stride: int, k: int, act: str,
                     expansion: dict, se) -> "DepthwiseSeparableSpec":
        return cls(out_channels=out_channels, kernel_size=k, stride=stride, activation=act,
                   se=se, skip=rng.random() < 0.5)


@dataclass(frozen=True)
class MBConvSpec(BlockSpec):
    """Inverted residual / MBConv (MobileNetV2, EfficientNet).

    1×1 expand → BN → act (omitted when the expanded width equals the input) → k×k depthwise →
    BN → act → SE (optional) → 1×1 project → BN; residual (with stochastic depth) when ``skip``,
    stride 1 and input width == output width.
    """

    kind: ClassVar[str] = "mbconv"
    skip_rule: ClassVar[str] = "field"
    title: ClassVar[str] = "MBConv"
    rule: ClassVar[KindRule] = KindRule(
        mid="mid_channels", expands=True,
        fixed=("kernel_size", "stride", "expand_ratio", "activation", "se", "skip"),
        text=("k", "s", "e", "m", "c", "act", "se", "noskip"), inherit=True)
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "relu6"
    se: SESpec | None = None
    skip: bool = True

    def __post_init__(self) -> None:
        _check_common(self)
        _check_expansion(self)
        _check_se(self)
        check_bool("skip", self.skip)

    def widths(self, in_channels: int) -> dict[str, int]:
        mid = _mid(self, in_channels)
        return {"mid": mid, "se": self.se.width(in_channels, mid) if self.se else 0}

    layer_fields: ClassVar[tuple[str, ...]] = ("expand_ratio", "se")

    @classmethod
    def from_layer(cls, *, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                   activation: str, expand_ratio: float = 1.0, se: bool = False,
                   se_form: SESpec | None = None) -> "MBConvSpec":
        return cls(out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                   expand_ratio=expand_ratio, activation=activation,
                   se=se_form if se else None)

    def layer_values(self, in_channels: int, expand_ratios, se_form) -> dict:
        if self.mid_channels is not None or not self.skip:
            raise NotALayer("", "explicit mid_channels / noskip are not in the space")
        if self.se is not None and self.se != se_form:
            raise NotALayer("se", f"{self.se} differs from the space's se_form")
        return {"expand_ratio": self.expand_ratio, "se": self.se is not None}

    @classmethod
    def random_layer(cls, rng, out_channels: int, stride: int, k: int, act: str,
                     expansion: dict, se) -> "MBConvSpec":
        return cls(out_channels=out_channels, kernel_size=k, stride=stride, activation=act,
                   se=se, skip=rng.random() < 0.9, **expansion)


@dataclass(frozen=True)
class FusedMBConvSpec(BlockSpec):
    """Fused-MBConv (EfficientNetV2): k×k conv expand → BN → act → SE (optional) → 1×1 project → BN.

    With expansion 1 (expanded width == input width) there is no separate projection: a single
    k×k conv → BN → act, as in the EfficientNetV2 paper and torchvision.  That form has no
    expanded tensor to squeeze, so SE there is an error rather than a guess.

    ``expand_in`` (text ``fc<int>``): expand to ``e × expand_in`` instead of ``e × input``, a
    nominal input width that scales like any channel (EfficientNet-EdgeTPU's first block: TF's
    ``i24`` on a 32-wide stem, timm's ``force_in_chs``).
    """

    kind: ClassVar[str] = "fused"
    skip_rule: ClassVar[str] = "field"
    title: ClassVar[str] = "Fused-MBConv"
    rule: ClassVar[KindRule] = KindRule(
        mid="mid_channels", expands=True,
        widths=("out_channels", "expand_in"),
        fixed=("kernel_size", "stride", "expand_ratio", "activation", "se", "skip"),
        text=("k", "s", "e", "m", "c", "fc", "act", "se", "noskip"), inherit=True)
    out_channels: int
    kernel_size: int = 3
    stride: int = 1
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "silu"
    se: SESpec | None = None
    skip: bool = True
    expand_in: int | None = None

    def __post_init__(self) -> None:
        _check_common(self)
        _check_expansion(self)
        _check_se(self)
        check_bool("skip", self.skip)
        if self.expand_in is not None:
            check_int("expand_in", self.expand_in)
            if self.expand_ratio is None:
                raise SpecError("expand_in (fc) needs an expansion ratio (e), not an explicit "
                                "mid width (m)", ("expand_in",))

    def widths(self, in_channels: int) -> dict[str, int]:
        mid = _mid(self, in_channels)
        return {"mid": mid, "se": self.se.width(in_channels, mid) if self.se else 0}

    def check_input(self, in_channels: int) -> None:
        if self.se is not None and _mid(self, in_channels) == in_channels:
            raise SpecError(f"must be none when the expanded width equals the input width "
                            f"({in_channels}): that Fused-MBConv is a single conv", ("se",))

    layer_fields: ClassVar[tuple[str, ...]] = ("expand_ratio", "se")

    @classmethod
    def from_layer(cls, *, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                   activation: str, expand_ratio: float = 1.0, se: bool = False,
                   se_form: SESpec | None = None) -> "FusedMBConvSpec":
        # expansion 1 makes a single conv, which has no expanded tensor to squeeze
        se = se and make_divisible(in_channels * expand_ratio, 8) != in_channels
        return cls(out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                   expand_ratio=expand_ratio, activation=activation,
                   se=se_form if se else None)

    layer_values = MBConvSpec.layer_values

    @classmethod
    def random_layer(cls, rng, out_channels: int, stride: int, k: int, act: str,
                     expansion: dict, se) -> "FusedMBConvSpec":
        # Fused-MBConv with expansion 1 has no expanded tensor, hence no SE
        se = se if expansion.get("expand_ratio", 0) != 1.0 and "mid_channels" not in expansion \
            else None
        return cls(out_channels=out_channels, kernel_size=k, stride=stride, activation=act,
                   se=se, **expansion)


@dataclass(frozen=True)
class BneckSpec(BlockSpec):
    """MobileNetV3 bneck, one row of the paper's Table 1/2: exp size, #out, SE, NL, s.

    The same structure as MBConv with an explicit expanded width; its SE is fixed by the kind:
    squeeze to ``make_divisible(mid / 4, 8)`` of the expanded channels, ReLU, hard-sigmoid gate.
    """

    kind: ClassVar[str] = "bneck"
    skip_rule: ClassVar[str] = "always"
    title: ClassVar[str] = "MobileNetV3 bneck"
    rule: ClassVar[KindRule] = KindRule(
        mid="mid_channels", expands=True, fixed=("kernel_size", "stride", "activation", "se"),
        text=("k", "s", "m", "c", "act", "se_flag"), inherit=True)
    out_channels: int
    mid_channels: int
    kernel_size: int = 3
    stride: int = 1
    activation: str = "relu"
    se: bool = False

    def __post_init__(self) -> None:
        _check_common(self)
        check_int("mid_channels", self.mid_channels)
        check_choice("activation", self.activation, ("relu", "hswish"))
        check_bool("se", self.se)

    def as_mbconv(self) -> MBConvSpec:
        """The equivalent general MBConv (one module and one cost formula serve both)."""
        return MBConvSpec(out_channels=self.out_channels, kernel_size=self.kernel_size,
                          stride=self.stride, mid_channels=self.mid_channels,
                          activation=self.activation, se=MOBILENET_V3_SE if self.se else None)

    def widths(self, in_channels: int) -> dict[str, int]:
        return self.as_mbconv().widths(in_channels)

    layer_fields: ClassVar[tuple[str, ...]] = ("expand_ratio", "se")
    layer_activations: ClassVar["tuple[str, ...] | None"] = ("relu", "hswish")

    @classmethod
    def from_layer(cls, *, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                   activation: str, expand_ratio: float = 1.0, se: bool = False,
                   se_form: SESpec | None = None) -> "BneckSpec":
        return cls(out_channels=out_channels, kernel_size=kernel_size, stride=stride,
                   mid_channels=make_divisible(in_channels * expand_ratio, 8),
                   activation=activation, se=se)

    def layer_values(self, in_channels: int, expand_ratios, se_form) -> dict:
        ratios = [e for e in expand_ratios
                  if make_divisible(in_channels * e, 8) == self.mid_channels]
        if not ratios:
            raise NotALayer("expand_ratio", f"no choice gives mid {self.mid_channels} from "
                            f"{in_channels} inputs")
        return {"expand_ratio": ratios[0], "se": self.se}

    @classmethod
    def random_layer(cls, rng, out_channels: int, stride: int, k: int, act: str,
                     expansion: dict, se) -> "BneckSpec":
        return cls(out_channels=out_channels, mid_channels=8 * rng.randint(2, 60),
                   kernel_size=rng.choice((3, 5)), stride=stride,
                   activation=rng.choice(("relu", "hswish")), se=rng.random() < 0.5)


@dataclass(frozen=True)
class ConvNeXtSpec(BlockSpec):
    """ConvNeXt block: 7×7 depthwise conv (bias) → LayerNorm → Linear(C, e·C) → GELU →
    Linear(e·C, C) → layer scale → stochastic depth → + input.

    The width does not change: ``out_channels`` must equal the input width (it is stated so that
    a block string reads on its own and width transformations see it).  ``layer_scale`` is the
    initial value of the per-channel scale (1e-6 in the paper); 0 means no layer scale.
    ``grn`` (text ``grn``): ConvNeXt-V2's global response normalisation after the activation of
    the MLP (Woo et al., CVPR 2023, Eq. 1-3: each channel's L2 norm over the map, divided by
    the mean over channels, scales the channel; a learnt γ, β per expanded channel; V2 drops
    the layer scale: ``ls0``).
    """

    kind: ClassVar[str] = "convnext"
    skip_rule: ClassVar[str] = "always"
    title: ClassVar[str] = "ConvNeXt"
    rule: ClassVar[KindRule] = KindRule(
        mid="mid_channels", keeps_input_width=True,
        fixed=("kernel_size", "expand_ratio", "activation", "layer_scale", "grn"),
        text=("k", "e", "m", "c", "act", "ls", "grn"))
    out_channels: int
    kernel_size: int = 7
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "gelu"
    layer_scale: float = 1e-6
    grn: bool = False

    def __post_init__(self) -> None:
        _check_common(self)
        _check_expansion(self)
        check_number("layer_scale", self.layer_scale, strict=False)
        check_bool("grn", self.grn)

    def widths(self, in_channels: int) -> dict[str, int]:
        return {"mid": _mid(self, in_channels)}

    def check_input(self, in_channels: int) -> None:
        if in_channels != self.out_channels:
            raise field_error("out_channels",
                              f"equal to the input width {in_channels} (a ConvNeXt block keeps "
                              "its width; put an lndown block before it)", self.out_channels)


@dataclass(frozen=True)
class PatchifySpec(BlockSpec):
    """ConvNeXt stem: p×p conv with stride p (bias) → LayerNorm (non-overlapping patches)."""

    kind: ClassVar[str] = "patchify"
    skip_rule: ClassVar[str] = "never"
    title: ClassVar[str] = "patchify stem"
    rule: ClassVar[KindRule] = KindRule(repeatable=False, fixed=("patch_size",), text=("p", "c"))
    out_channels: int
    patch_size: int = 4

    def __post_init__(self) -> None:
        check_int("out_channels", self.out_channels)
        check_int("patch_size", self.patch_size)

    @property
    def block_stride(self) -> int:
        return self.patch_size

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        p = self.patch_size
        return (conv_out(hw[0], p, p, 0), conv_out(hw[1], p, p, 0))


@dataclass(frozen=True)
class LNDownsampleSpec(BlockSpec):
    """ConvNeXt downsampling layer: LayerNorm → p×p conv with stride p (bias)."""

    kind: ClassVar[str] = "lndown"
    skip_rule: ClassVar[str] = "never"
    title: ClassVar[str] = "LN + strided conv"
    rule: ClassVar[KindRule] = KindRule(repeatable=False, fixed=("patch_size",), text=("p", "c"))
    out_channels: int
    patch_size: int = 2

    def __post_init__(self) -> None:
        check_int("out_channels", self.out_channels)
        check_int("patch_size", self.patch_size)

    @property
    def block_stride(self) -> int:
        return self.patch_size

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        p = self.patch_size
        return (conv_out(hw[0], p, p, 0), conv_out(hw[1], p, p, 0))


@dataclass(frozen=True)
class UIBSpec(BlockSpec):
    """MobileNetV4's universal inverted bottleneck (Qin et al., ECCV 2024, Sec. 3.2, Fig. 4):
    [start k×k depthwise → BN] → 1×1 expand → BN → act → [mid k×k depthwise → BN → act] →
    1×1 project → BN → [layer scale] → + input (when ``skip``, stride 1, equal widths).

    ``start_kernel`` (text ``a<int>``, timm's ``a``) and ``kernel_size`` (``k<int>``) are the
    start and mid depthwise kernels, 0 for none: ExtraDW (both), IB (mid only), ConvNeXt-like
    (start only), FFN (neither).  The stride goes on the mid depthwise conv when there is one,
    else on the start one; the start conv has no activation.  The expansion is always a layer:
    mid = make_divisible(in · e, 8).  ``layer_scale``: the per-channel scale's initial value
    (timm's hybrid networks: 1e-5), ``None`` for none.
    """

    kind: ClassVar[str] = "uib"
    skip_rule: ClassVar[str] = "field"
    title: ClassVar[str] = "universal inverted bottleneck"
    rule: ClassVar[KindRule] = KindRule(
        mid="mid_channels",
        fixed=("start_kernel", "kernel_size", "stride", "expand_ratio", "activation",
               "layer_scale", "skip"),
        # not carried by the inherit evaluator yet (a supernet shares it: transfer.blockfit)
        text=("a", "k", "s", "e", "m", "c", "act", "ls", "noskip"))
    out_channels: int
    start_kernel: int = 0
    kernel_size: int = 3
    stride: int = 1
    expand_ratio: float | None = None
    mid_channels: int | None = None
    activation: str = "relu"
    layer_scale: float | None = None
    skip: bool = True

    def __post_init__(self) -> None:
        check_int("out_channels", self.out_channels)
        for name in ("start_kernel", "kernel_size"):
            value = getattr(self, name)
            if value != 0:
                check_odd(name, value)
        check_choice("stride", self.stride, STRIDES)
        check_choice("activation", self.activation, ACTIVATIONS)
        _check_expansion(self)
        if self.layer_scale is not None:
            check_number("layer_scale", self.layer_scale)
        check_bool("skip", self.skip)
        if self.stride > 1 and not (self.start_kernel or self.kernel_size):
            raise SpecError("a strided UIB needs a depthwise conv (a<k> or k<k>) to carry the "
                            "stride", ("stride",))

    @property
    def variant(self) -> str:
        """The paper's name of this instance: ExtraDW, IB, ConvNeXt or FFN."""
        return {(True, True): "ExtraDW", (False, True): "IB", (True, False): "ConvNeXt",
                (False, False): "FFN"}[(bool(self.start_kernel), bool(self.kernel_size))]

    def out_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        k = self.kernel_size or self.start_kernel or 1
        s = self.stride
        return (conv_out(hw[0], k, s, k // 2), conv_out(hw[1], k, s, k // 2))

    def widths(self, in_channels: int) -> dict[str, int]:
        return {"mid": _mid(self, in_channels)}

    #: a layer choice picks the UIB variant by its two kernels (the search space's ``kernels``
    #: choice gives the mid kernel; ``start_kernel`` is its own choice) and the expansion
    layer_fields: ClassVar[tuple[str, ...]] = ("expand_ratio", "start_kernel")
    layer_kernel_optional: ClassVar[bool] = True

    @classmethod
    def from_layer(cls, *, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                   activation: str, expand_ratio: float = 1.0, se: bool = False,
                   se_form: SESpec | None = None, start_kernel: int = 0) -> "UIBSpec":
        if stride > 1 and not (kernel_size or start_kernel):
            start_kernel = 3  # an FFN cannot stride: the smallest ConvNeXt-like one instead
        return cls(out_channels=out_channels, start_kernel=start_kernel,
                   kernel_size=kernel_size, stride=stride, expand_ratio=expand_ratio,
                   activation=activation)

    def layer_values(self, in_channels: int, expand_ratios, se_form) -> dict:
        if self.mid_channels is not None or not self.skip or self.layer_scale is not None:
            raise NotALayer("", "explicit mid_channels / noskip / layer scale are not in the "
                            "space")
        return {"expand_ratio": self.expand_ratio, "start_kernel": self.start_kernel}

    @classmethod
    def random_layer(cls, rng, out_channels: int, stride: int, k: int, act: str,
                     expansion: dict, se) -> "UIBSpec":
        start = rng.choice((0, 3, 5))
        mid = rng.choice((0, k))
        if stride > 1 and not (start or mid):
            mid = k
        return cls(out_channels=out_channels, start_kernel=start, kernel_size=mid,
                   stride=stride, activation=act, skip=rng.random() < 0.9,
                   layer_scale=1e-5 if rng.random() < 0.3 else None, **expansion)
