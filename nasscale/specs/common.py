"""Small shared vocabulary of the specs: activations, channel rounding, field checks."""
from __future__ import annotations

import math
from typing import Iterable

from nasscale.errors import field_error, one_of

#: Activation names the grammar knows, as written in block strings and YAML.  ``hswish`` and
#: ``hsigmoid`` are MobileNetV3's piecewise-linear approximations; ``silu`` is EfficientNet's swish.
ACTIVATIONS = ("relu", "relu6", "hswish", "silu", "gelu", "sigmoid", "hsigmoid", "none")

#: Gates of a squeeze-and-excitation module.
SE_GATES = ("sigmoid", "hsigmoid")


def make_divisible(value: float, divisor: int = 8, min_ratio: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``min_ratio · value``.

    The rule of the TensorFlow EfficientNet/MobileNet code and torchvision's ``_make_divisible``:
    round half up to a multiple of ``divisor`` (at least ``divisor``); if that lost more than 10 %
    of the value, add one more ``divisor``.  ``divisor == 1`` is plain rounding (at least 1).
    """
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < min_ratio * value:
        new += divisor
    return int(new)


def round_repeats(value: float, mode: str = "ceil") -> int:
    """Round a scaled depth: ``ceil`` (EfficientNet), ``round`` or ``floor``; at least 1."""
    if mode == "ceil":
        return max(1, int(math.ceil(value - 1e-9)))
    if mode == "round":
        return max(1, int(math.floor(value + 0.5)))
    if mode == "floor":
        return max(1, int(math.floor(value + 1e-9)))
    raise field_error("depth", one_of(("ceil", "round", "floor")), mode)


# --- upper bounds: far beyond every published network, low enough that no spec makes the
# analytic costs, the resolver or a module build run for minutes or exhaust memory ------------

#: Input side in pixels.  The largest published ImageNet input is 800 (EfficientNet-L2); one
#: float32 image of 3 x 8192 x 8192 is already 800 MB.
MAX_RESOLUTION = 8192
#: Any width (output, expanded, transformer, hidden, SE, head).  The widest published layer is
#: 11,264 (EfficientNet-L2's expanded width); a 1x1 conv of 65,536 to 65,536 channels alone
#: holds 4.3 G weights (17 GB in float32).
MAX_CHANNELS = 65536
#: Blocks in one stage, and a MobileViT block's transformer layers.  The deepest published
#: stage has 32 blocks; a stage of 1,000 small MBConvs takes 3 s to build on 2 cores (a text
#: block with ``r100000000`` ran for minutes and took 9 GB before it was refused).
MAX_REPEATS = 1000
#: Blocks in a whole network (stem, every stage's repeats, head): the largest published
#: network here has 102; the resolver and the modules make one object per block (counting
#: the costs of 9,000 blocks takes 0.3 s).
MAX_BLOCKS = 10000
#: Convolution kernels.  Published networks use up to 7, large-kernel research up to 51.
MAX_KERNEL = 63
#: Patch and window sides (patchify and downsampling convs, MobileViT patches, Swin windows):
#: published 2 to 32, and a patch larger than the largest input has no use.
MAX_PATCH = 1024
#: Classifier outputs.  The largest label sets in use (ImageNet-21k: 21,841, Google Landmarks
#: v2: 203,094) stay well below.
MAX_CLASSES = 1_000_000
#: Expansion ratios (``e``).  Published ratios are 1 to 8; the expanded width is bounded by
#: ``MAX_CHANNELS`` again when the network is resolved.
MAX_EXPAND_RATIO = 64.0

#: The upper bound of every integer field of the specs, by field name (a prefix such as
#: ``se.`` or ``rounding.`` and an index such as ``[2]`` are ignored).  ``check_int`` applies it,
#: so the text form, YAML, scaling, pruning and search spaces share one set of bounds.
LIMITS: dict[str, int] = {
    "resolution": MAX_RESOLUTION, "resolution_divisor": MAX_RESOLUTION,
    "max_resolution": MAX_RESOLUTION,
    "out_channels": MAX_CHANNELS, "mid_channels": MAX_CHANNELS, "expand_in": MAX_CHANNELS,
    "transformer_dim": MAX_CHANNELS, "in_channels": MAX_CHANNELS, "hidden": MAX_CHANNELS,
    "divisor": MAX_CHANNELS, "num_heads": MAX_CHANNELS, "key_dim": MAX_CHANNELS,
    "repeats": MAX_REPEATS, "transformer_depth": MAX_REPEATS,
    "kernel_size": MAX_KERNEL, "start_kernel": MAX_KERNEL,
    "patch_size": MAX_PATCH, "window_size": MAX_PATCH,
    "num_classes": MAX_CLASSES,
}


def limit(name: str) -> int | None:
    """The upper bound of the integer field ``name`` (``LIMITS``), ``None`` for an unbounded one."""
    return LIMITS.get(name.rsplit(".", 1)[-1].split("[", 1)[0])


def _int_range(minimum: int, maximum: int | None) -> str:
    return f"an integer >= {minimum}" + (f" and <= {maximum:,}" if maximum is not None else "")


# --- field checks: each raises a SpecError naming the field and what is allowed -----------------

def check_int(name: str, value: object, minimum: int = 1, maximum: int | None = None) -> None:
    """An integer (not a bool) in ``[minimum, maximum]``; ``maximum`` defaults to the field's
    bound in ``LIMITS``."""
    maximum = limit(name) if maximum is None else maximum
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum \
            or (maximum is not None and value > maximum):
        raise field_error(name, _int_range(minimum, maximum), value)


def check_number(name: str, value: object, minimum: float = 0.0, strict: bool = True,
                 maximum: float | None = None) -> None:
    """A finite number (not a bool) above ``minimum`` (or equal when not ``strict``) and at
    most ``maximum``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > minimum if strict else value >= minimum) \
            and (maximum is None or value <= maximum)
    if not ok:
        upper = f" and <= {maximum:g}" if maximum is not None else ""
        raise field_error(name, f"a number {'>' if strict else '>='} {minimum:g}{upper}", value)


def check_odd(name: str, value: object) -> None:
    check_int(name, value)
    if value % 2 == 0:  # type: ignore[operator]
        raise field_error(name, "an odd integer (1, 3, 5, 7, ...)", value)


def check_width(name: str, value: int) -> None:
    """A width derived when the network is resolved (an expanded or SE width from a ratio)
    stays within ``MAX_CHANNELS``."""
    if value > MAX_CHANNELS:
        raise field_error(f"{name} width", f"at most {MAX_CHANNELS:,} channels (lower the "
                          "expansion ratio or the input width)", value)


def check_choice(name: str, value: object, choices: Iterable[object]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise field_error(name, one_of(choices), value)


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise field_error(name, "true or false", value)
