"""The choices a search space is made of: widths, layers (kind, kernel, expansion, SE,
activation), an optional attention tail, stage slots and the head (``search/space.py`` puts
them together).  ``sample`` asks any object with Optuna's ``suggest_categorical``/
``suggest_int``; ``params_for`` inverts it or raises ``NotInSpace``.  No optuna import.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

from nasscale.errors import SpecError
from nasscale.specs import (
    BLOCK_KINDS,
    BlockSpec,
    ConvSpec,
    HeadSpec,
    MobileMQASpec,
    MobileViTSpec,
    MobileViTv2Spec,
    SESpec,
    make_divisible,
)
from nasscale.specs.common import ACTIVATIONS
from nasscale.specs.kind import NotALayer


class Suggester(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int: ...


class NotInSpace(Exception):
    """Raised by ``params_for`` with the reason a network is not a point of the space."""


# --- choice lists -----------------------------------------------------------------------------

def _choices(name: str, values: Sequence[Any], allowed: Sequence[Any] | None = None,
             kind: type | tuple = object) -> tuple:
    values = tuple(values)
    if not values:
        raise SpecError("must list at least one choice, got an empty list", (name,))
    if len(set(map(repr, values))) != len(values):
        raise SpecError(f"lists a choice twice: {list(values)}", (name,))
    for v in values:
        if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
            raise SpecError(f"choice {v!r} has the wrong type", (name,))
        if allowed is not None and v not in allowed:
            raise SpecError(f"choice {v!r} is not allowed; allowed: "
                            f"{', '.join(map(str, allowed))}", (name,))
    return values


@dataclass(frozen=True)
class WidthChoice:
    """Widths ``min..max`` in steps of ``step`` (a multiple of 8)."""

    min: int
    max: int
    step: int = 8

    def __post_init__(self) -> None:
        for field in ("min", "max", "step"):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, int) or v < 8 or v % 8:
                raise SpecError(f"must be a multiple of 8 (8, 16, 24, ...), got {v!r}",
                                (f"width.{field}",))
        if self.max < self.min:
            raise SpecError(f"max {self.max} is below min {self.min}", ("width",))
        if (self.max - self.min) % self.step:
            raise SpecError(f"max - min must be a multiple of step {self.step}", ("width",))

    def values(self) -> range:
        return range(self.min, self.max + 1, self.step)

    def sample(self, trial: Suggester, name: str) -> int:
        if self.min == self.max:
            return self.min
        return trial.suggest_int(name, self.min, self.max, step=self.step)




def layer_kinds() -> tuple[str, ...]:
    """The kinds a layer choice may offer: those whose spec defines ``from_layer``."""
    return tuple(code for code, cls in BLOCK_KINDS.items() if cls.searchable())


@dataclass(frozen=True)
class LayerChoice:
    """Choices for one layer (or for all layers of a slot when not ``per_layer``)."""

    kinds: tuple[str, ...]
    kernel_size: tuple[int, ...] = (3,)
    expand_ratio: tuple[float, ...] = (6.0,)
    se: tuple[bool, ...] = (False,)
    activation: tuple[str, ...] = ("relu",)
    #: the SE of mbconv/fused layers when ``se`` is on (bneck has its own fixed SE)
    se_form: SESpec = SESpec()
    #: UIB's start depthwise kernel (0: none); its ``kernel_size`` is the mid one, where 0
    #: (no mid depthwise conv) is allowed when every kind of the choice allows it
    start_kernel: tuple[int, ...] = (0,)
    #: the conv branches a re-parameterisable layer trains with (MobileOne); its deploy form,
    #: hence its latency and FLOPs, is the same for every choice
    branches: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        _choices("kinds", self.kinds, layer_kinds(), str)
        _choices("kernel_size", self.kernel_size, kind=int)
        optional = all(BLOCK_KINDS[kind].layer_kernel_optional for kind in self.kinds
                       if kind in BLOCK_KINDS)
        for k in self.kernel_size:
            if (k < 1 or k % 2 == 0) and not (optional and k == 0):
                raise SpecError(f"choice {k} is not an odd kernel (1, 3, 5, 7, ...)"
                                + ("" if optional else "; 0 (none) only for uib layers"),
                                ("kernel_size",))
        _choices("start_kernel", self.start_kernel, kind=int)
        for k in self.start_kernel:
            if k < 0 or (k and k % 2 == 0):
                raise SpecError(f"choice {k} is not 0 (none) or an odd kernel",
                                ("start_kernel",))
        _choices("branches", self.branches, kind=int)
        if any(b < 1 for b in self.branches):
            raise SpecError("choices must be >= 1", ("branches",))
        _choices("expand_ratio", self.expand_ratio, kind=(int, float))
        if any(e <= 0 for e in self.expand_ratio):
            raise SpecError("choices must be > 0", ("expand_ratio",))
        _choices("se", self.se, (False, True), bool)
        _choices("activation", self.activation, ACTIVATIONS, str)
        for kind in self.kinds:
            if BLOCK_KINDS[kind].layer_activations is not None:
                _choices("activation", self.activation, BLOCK_KINDS[kind].layer_activations, str)

    def sample(self, trial: Suggester, name, in_channels: int, out_channels: int,
               stride: int) -> BlockSpec:
        """``name(field)`` gives the Optuna parameter name of a field for this layer."""
        def pick(field: str, values: tuple) -> Any:
            return values[0] if len(values) == 1 else \
                trial.suggest_categorical(name(field), list(values))

        kind = pick("kind", self.kinds)
        k = pick("kernel_size", self.kernel_size)
        act = pick("activation", self.activation)
        cls = BLOCK_KINDS[kind]
        values: dict[str, Any] = {}
        if "expand_ratio" in cls.layer_fields:
            values["expand_ratio"] = float(pick("expand_ratio", self.expand_ratio))
        if "se" in cls.layer_fields:
            values["se"] = bool(pick("se", self.se))
        if "start_kernel" in cls.layer_fields:
            values["start_kernel"] = int(pick("start_kernel", self.start_kernel))
        if "branches" in cls.layer_fields:
            values["branches"] = int(pick("branches", self.branches))
        return cls.from_layer(in_channels=in_channels, out_channels=out_channels, kernel_size=k,
                              stride=stride, activation=act, se_form=self.se_form, **values)

    def params_for(self, block: BlockSpec, name, in_channels: int) -> dict[str, Any]:
        """The choices that sample ``block`` after ``in_channels`` inputs (or NotInSpace)."""
        out: dict[str, Any] = {}
        prefix = name("")

        def put(field: str, values: tuple, value: Any) -> None:
            _put(out, name(field), values, value)

        put("kind", self.kinds, block.kind)
        put("kernel_size", self.kernel_size, block.kernel_size)
        put("activation", self.activation, block.activation)
        try:
            values = block.layer_values(in_channels, self.expand_ratio, self.se_form)
        except NotALayer as err:
            raise NotInSpace(f"{prefix}{err.field}: {err.reason}") from None
        for field in ("expand_ratio", "se", "start_kernel", "branches"):
            if field in values:
                put(field, getattr(self, field), values[field])
        return out


LAYER_FIELDS = ("kind", "kernel_size", "expand_ratio", "se", "activation", "start_kernel",
                "branches")


def _pick(trial: Suggester, name: str, values: tuple) -> Any:
    """One of ``values``: the trial's choice, or the only value (not a parameter then)."""
    return values[0] if len(values) == 1 else trial.suggest_categorical(name, list(values))


def _put(out: dict[str, Any], name: str, values: Sequence[Any], value: Any) -> None:
    """Record ``value`` as parameter ``name`` (if there is a choice) or say it is not one."""
    if value not in values:
        raise NotInSpace(f"{name}: {value!r} not among {list(values)}")
    if len(values) > 1:
        out[name] = value


@dataclass(frozen=True)
class AttentionTail:
    """An optional MobileViT block after a slot's convolutional layers (the MobileViT layout:
    an MV2 layer that downsamples, then a MobileViT block at the same width).  Its MLP width is
    ``make_divisible(transformer_dim · mlp_ratio, 8)``, written explicitly (``m``) like the
    paper's tables.  ``kind: mobilevit2`` makes it a MobileViTv2 block (separable
    self-attention, one query: ``num_heads`` is 1)."""

    transformer_dim: WidthChoice
    present: tuple[bool, ...] = (True,)
    transformer_depth: tuple[int, ...] = (2,)
    mlp_ratio: tuple[float, ...] = (2.0,)
    num_heads: tuple[int, ...] = (4,)
    patch_size: tuple[int, ...] = (2,)
    kernel_size: tuple[int, ...] = (3,)
    activation: str = "silu"
    kind: str = "mobilevit"

    def __post_init__(self) -> None:
        if self.kind not in ("mobilevit", "mobilevit2"):
            raise SpecError(f"must be mobilevit, mobilevit2 or mqa, got {self.kind!r}",
                            ("attention.kind",))
        if self.kind == "mobilevit2" and self.num_heads != (1,):
            raise SpecError("must be [1] for mobilevit2 (separable self-attention has one "
                            f"query), got {list(self.num_heads)}", ("attention.num_heads",))
        _choices("attention.present", self.present, (False, True), bool)
        for name in ("transformer_depth", "num_heads", "patch_size", "kernel_size"):
            values = _choices(f"attention.{name}", getattr(self, name), kind=int)
            if any(v < 1 for v in values):
                raise SpecError("choices must be >= 1", (f"attention.{name}",))
        _choices("attention.mlp_ratio", self.mlp_ratio, kind=(int, float))
        for d in self.transformer_dim.values():
            for h in self.num_heads:
                if d % h:
                    raise SpecError(f"transformer width {d} is not divisible by {h} heads",
                                    ("attention.num_heads",))
        if self.activation not in ACTIVATIONS:
            raise SpecError(f"must be one of {', '.join(ACTIVATIONS)}", ("attention.activation",))


    def sample(self, trial: Suggester, i: int, width: int) -> BlockSpec | None:
        if not _pick(trial, f"s{i}.attn", self.present):
            return None
        dim = self.transformer_dim.sample(trial, f"s{i}.attn.dim")
        ratio = float(_pick(trial, f"s{i}.attn.mlp_ratio", self.mlp_ratio))
        return self._spec_class()(
            out_channels=width, transformer_dim=dim,
            transformer_depth=_pick(trial, f"s{i}.attn.depth", self.transformer_depth),
            num_heads=_pick(trial, f"s{i}.attn.heads", self.num_heads),
            patch_size=_pick(trial, f"s{i}.attn.patch", self.patch_size),
            kernel_size=_pick(trial, f"s{i}.attn.kernel_size", self.kernel_size),
            mid_channels=make_divisible(dim * ratio, 8), activation=self.activation)

    def _spec_class(self) -> type:
        return MobileViTv2Spec if self.kind == "mobilevit2" else MobileViTSpec

    def params_for(self, block: BlockSpec | None, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        put = functools.partial(_put, out)
        put(f"s{i}.attn", self.present, block is not None)
        if block is None:
            return out
        if type(block) is not self._spec_class() or block.activation != self.activation:
            raise NotInSpace(f"s{i}: the attention layer must be a {self.activation} "
                             f"{self.kind}")
        put(f"s{i}.attn.dim", list(self.transformer_dim.values()), block.transformer_dim)
        ratios = [r for r in self.mlp_ratio if make_divisible(block.transformer_dim * r, 8)
                  == block.mid_channels]
        if block.mid_channels is None or not ratios:
            raise NotInSpace(f"s{i}.attn.mlp_ratio: no choice gives MLP width "
                             f"{block.mid_channels}")
        put(f"s{i}.attn.mlp_ratio", self.mlp_ratio, ratios[0])
        put(f"s{i}.attn.depth", self.transformer_depth, block.transformer_depth)
        put(f"s{i}.attn.heads", self.num_heads, block.num_heads)
        put(f"s{i}.attn.patch", self.patch_size, block.patch_size)
        put(f"s{i}.attn.kernel_size", self.kernel_size, block.kernel_size)
        return out


@dataclass(frozen=True)
class MQATail:
    """An optional Mobile MQA block after a slot's layers, at the slot's width (MobileNetV4's
    hybrid networks put them in their last two stages): heads, channels per head, key/value
    stride and the depthwise kernel that downsamples, each a choice."""

    present: tuple[bool, ...] = (False, True)
    num_heads: tuple[int, ...] = (4,)
    key_dim: tuple[int, ...] = (64,)
    kv_stride: tuple[int, ...] = (1,)
    kernel_size: tuple[int, ...] = (3,)
    layer_scale: float | None = None

    def __post_init__(self) -> None:
        _choices("attention.present", self.present, (False, True), bool)
        for name in ("num_heads", "key_dim", "kernel_size"):
            if any(v < 1 for v in _choices(f"attention.{name}", getattr(self, name), kind=int)):
                raise SpecError("choices must be >= 1", (f"attention.{name}",))
        _choices("attention.kv_stride", self.kv_stride, (1, 2, 4), int)


    def sample(self, trial: Suggester, i: int, width: int) -> BlockSpec | None:
        if not _pick(trial, f"s{i}.attn", self.present):
            return None
        return MobileMQASpec(
            out_channels=width, num_heads=_pick(trial, f"s{i}.attn.heads", self.num_heads),
            key_dim=_pick(trial, f"s{i}.attn.key_dim", self.key_dim),
            kv_stride=_pick(trial, f"s{i}.attn.kv_stride", self.kv_stride),
            kernel_size=_pick(trial, f"s{i}.attn.kernel_size", self.kernel_size),
            layer_scale=self.layer_scale)

    def params_for(self, block: BlockSpec | None, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        put = functools.partial(_put, out)
        put(f"s{i}.attn", self.present, block is not None)
        if block is None:
            return out
        if not isinstance(block, MobileMQASpec) or block.layer_scale != self.layer_scale \
                or not block.skip:
            raise NotInSpace(f"s{i}: the attention layer must be an mqa block with layer "
                             f"scale {self.layer_scale}")
        put(f"s{i}.attn.heads", self.num_heads, block.num_heads)
        put(f"s{i}.attn.key_dim", self.key_dim, block.key_dim)
        put(f"s{i}.attn.kv_stride", self.kv_stride, block.kv_stride)
        put(f"s{i}.attn.kernel_size", self.kernel_size, block.kernel_size)
        return out


@dataclass(frozen=True)
class StageChoice:
    """A stage slot.  ``per_layer`` names the layer fields that every layer samples on its own;
    the other fields are shared by the slot's layers (one Optuna parameter each)."""

    stride: int
    depth: tuple[int, ...]
    width: WidthChoice
    layer: LayerChoice
    per_layer: tuple[str, ...] = ()
    attention: "AttentionTail | MQATail | None" = None

    def __post_init__(self) -> None:
        if self.stride not in (1, 2):
            raise SpecError(f"must be 1 or 2, got {self.stride!r}", ("stride",))
        _choices("depth", self.depth, kind=int)
        if any(d < 0 for d in self.depth):
            raise SpecError("choices must be >= 0", ("depth",))
        for field in self.per_layer:
            if field not in LAYER_FIELDS:
                raise SpecError(f"unknown layer field {field!r}; allowed: "
                                f"{', '.join(LAYER_FIELDS)}", ("per_layer",))

    @property
    def layerwise(self) -> bool:
        """Whether each layer becomes its own stage string: some field is sampled per layer,
        or a layer can be a bneck (whose expanded width is explicit, so it cannot follow each
        repeat's input the way ``e<ratio>`` does)."""
        return bool(self.per_layer) or "bneck" in self.layer.kinds

    def name(self, i: int, j: int, field: str) -> str:
        return f"s{i}.l{j}.{field}" if field in self.per_layer else f"s{i}.{field}"


@dataclass(frozen=True)
class HeadChoice:
    """Head: optional 1×1 conv (width = ``conv_ratio`` × last stage width, rounded to 8, or a
    fixed ``conv_width``), then hidden linears (one choice of the lists in ``hidden``)."""

    conv_width: tuple[int, ...] = ()
    conv_ratio: tuple[float, ...] = ()
    conv_activation: str = "relu"
    hidden: tuple[tuple[int, ...], ...] = ((),)
    hidden_activation: str = "hswish"
    dropout: float = 0.2
    hidden_norm: str = "none"  # "bn": bias-free hidden linears with BatchNorm (MobileNetV4)

    def __post_init__(self) -> None:
        if self.hidden_norm not in ("none", "bn"):
            raise SpecError(f"must be none or bn, got {self.hidden_norm!r}",
                            ("head.hidden_norm",))
        if self.conv_width and self.conv_ratio:
            raise SpecError("give conv_width or conv_ratio, not both", ("head",))
        for w in self.conv_width:
            if w % 8:
                raise SpecError(f"must be multiples of 8, got {w}", ("head.conv_width",))
        _choices("head.hidden", self.hidden, kind=tuple)
        if self.conv_activation not in ACTIVATIONS or self.hidden_activation not in ACTIVATIONS:
            raise SpecError(f"activations must be among {', '.join(ACTIVATIONS)}", ("head",))

    def conv_widths(self, last: int) -> tuple[int, ...]:
        if self.conv_ratio:
            return tuple(make_divisible(last * r, 8) for r in self.conv_ratio)
        return self.conv_width

    def sample(self, trial: Suggester, last: int) -> HeadSpec:
        blocks: tuple[BlockSpec, ...] = ()
        widths = self.conv_widths(last)
        if widths:
            if self.conv_ratio and len(self.conv_ratio) > 1:
                ratio = trial.suggest_categorical("head.conv_ratio", list(self.conv_ratio))
                width = make_divisible(last * ratio, 8)
            elif len(widths) > 1:
                width = trial.suggest_categorical("head.conv_width", list(widths))
            else:
                width = widths[0]
            blocks = (ConvSpec(out_channels=width, kernel_size=1,
                               activation=self.conv_activation),)
        if len(self.hidden) > 1:
            labels = [hidden_label(h) for h in self.hidden]
            hidden = self.hidden[labels.index(trial.suggest_categorical("head.hidden", labels))]
        else:
            hidden = self.hidden[0]
        return HeadSpec(blocks=blocks, hidden=hidden, hidden_activation=self.hidden_activation,
                        dropout=self.dropout, hidden_norm=self.hidden_norm)


def hidden_label(hidden: tuple[int, ...]) -> str:
    return "none" if not hidden else "x".join(map(str, hidden))
