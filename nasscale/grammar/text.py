"""The one-line text form of blocks and stages.

A block string is a kind code followed by ``_``-separated tokens, e.g.::

    mbconv_k5_s2_e6_c40_silu_se0.25-in-sigmoid-silu-d1     EfficientNet-B0, stage 3
    bneck_k5_s2_m72_c40_relu_se                            MobileNetV3-Large, row 4
    convnext_k7_e4_c96_gelu_ls1e-06                        ConvNeXt-T, stage 1
    mobilevit_k3_p2_d64_l2_h4_m128_c48_silu                MobileViT-XXS, layer 3
    vit_h12_m3072_c768_gelu                                ViT-B, encoder layer
    swin_w7_h3_e4_c96_gelu                                 Swin-T, stage 1

A stage string adds ``r<repeats>`` after the code (``mbconv_r2_k3_s2_e6_c24_...``).  Tokens:

=============== ================================== =============================================
token           field                              meaning
=============== ================================== =============================================
``k<int>``      kernel_size                        odd kernel of the (depthwise) conv
``s<int>``      stride                             stride of the first repeat (1 or 2)
``c<int>``      out_channels                       output width
``e<float>``    expand_ratio                       mid = make_divisible(in · e, 8) (MobileViT:
                                                   d · e; the MLP width of attention blocks)
``m<int>``      mid_channels                       explicit expanded width (exclusive with e)
``p<int>``      patch_size                         kernel = stride of a patchify/embedding conv;
                                                   MobileViT: side of the unfolded patches
``ls<float>``   layer_scale                        ConvNeXt, FastViT layer-scale init (0: none)
``h<int>``      num_heads                          attention heads (divide the attention width)
``w<int>``      window_size                        Swin attention window (w×w tokens)
``d<int>``      transformer_dim                    MobileViT transformer width
``l<int>``      transformer_depth                  MobileViT transformer layers per block
``a<int>``      start_kernel                       UIB: start depthwise kernel (0: none; its
                                                   ``k`` is the mid one, where 0 is none too)
``v<int>``      kv_stride                          Mobile MQA: key/value downsampling stride
``d<int>``      key_dim                            Mobile MQA: channels per head (q, k and v)
``shift``       shifted=True                       Swin: shifted windows on the first repeat
``b<int>``      branches                           re-parameterisable blocks: parallel k×k conv
                                                   branches it trains with
``dw``          depthwise=True                     repconv: every conv depthwise
``grouped``     grouped=True                       repconv: one group per input channel, a wider
                                                   output (gcd(in, out) groups)
``deploy``      deploy=True                        re-parameterisable blocks: the fused form
``alt``         se_alternate=True                  RepViT: the stage's repeats alternate with
                                                   and without the SE, starting with it
``sk<int>``     small_kernel                       replk: kernel of the small parallel conv
activation      activation                         relu, relu6, hswish, silu, gelu, ...
``se<r>-<base>-<gate>-<act>-d<div>``  se          squeeze-excite: ratio, base (in|mid), gate
                                                   (sigmoid|hsigmoid), its activation, divisor
``se``          se (bneck)                         MobileNetV3's SE (the kind fixes its shape)
``noskip``      skip=False                         no residual even where shapes allow one
``skip``        skip=True                          residual for a ds block
``bias``        bias=True                          conv with bias
``nonorm``      norm="none"                        conv without BatchNorm
=============== ================================== =============================================

Every string has one meaning: there is no model-level flag that changes what a token means.
``format_block`` writes the canonical form (the shape-defining tokens always, the others only when
they differ from the kind's default) and ``parse_block(format_block(s)) == s`` for every spec.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Callable

from nasscale.errors import SpecError, suggest
from nasscale.specs import BLOCK_KINDS, BlockSpec, SESpec, StageSpec
from nasscale.specs.common import ACTIVATIONS, SE_GATES, check_int, limit


def format_float(value: float) -> str:
    """Shortest exact text of a float: ``6`` for 6.0, ``0.25``, ``1e-06``."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


_FLOAT = r"([0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?)"


@dataclass(frozen=True)
class Token:
    """One token kind of a block's text form.

    ``pattern`` is a full-match regex whose groups ``parse`` turns into the field value;
    ``format`` returns the token text for a value, or ``None`` to leave the token out.
    """

    field: str
    pattern: str
    parse: Callable[[re.Match], object]
    format: Callable[[object], str | None]
    help: str

    def match(self, text: str):
        return re.fullmatch(self.pattern, text)


#: Digits an integer token may have: every field's bound (``specs.common.LIMITS``) has fewer,
#: and Python refuses to read integers of more than 4,300 digits.
MAX_DIGITS = 18


def _int(field: str, digits: str) -> int:
    """The integer of a token's digits; a ``SpecError`` for more than ``MAX_DIGITS`` (the
    field's own check states its bounds for shorter ones)."""
    if len(digits) > MAX_DIGITS:
        bound = limit(field)
        allowed = f"at most {bound:,}" if bound is not None else f"at most {MAX_DIGITS} digits"
        raise SpecError(f"must be {allowed}, got a number of {len(digits):,} digits", (field,))
    return int(digits)


def int_token(prefix: str, field: str) -> Token:
    return Token(field, re.escape(prefix) + r"([0-9]+)", lambda m: _int(field, m.group(1)),
                 lambda v: None if v is None else f"{prefix}{v}", f"{prefix}<int> ({field})")


def float_token(prefix: str, field: str, default: float | None = None) -> Token:
    def fmt(v):
        return None if v is None or v == default else f"{prefix}{format_float(v)}"
    return Token(field, re.escape(prefix) + _FLOAT, lambda m: float(m.group(1)), fmt,
                 f"{prefix}<number> ({field})")


def word_token(field: str, words: tuple[str, ...]) -> Token:
    """The value itself is the token (activation names)."""
    return Token(field, "(" + "|".join(map(re.escape, words)) + ")", lambda m: m.group(1),
                 lambda v: v, f"{'|'.join(words)} ({field})")


def flag_token(word: str, field: str, value: object) -> Token:
    """A bare word that sets ``field`` to ``value``; written only when the field has it."""
    return Token(field, re.escape(word), lambda m: value,
                 lambda v: word if v == value else None, f"{word} ({field}={value!r})")


def _format_se(se: SESpec | None) -> str | None:
    if se is None:
        return None
    return (f"se{format_float(se.ratio)}-{se.base}-{se.gate}-{se.activation}-d{se.divisor}")


SE_TOKEN = Token(
    "se",
    "se" + _FLOAT + r"-(in|mid)-(" + "|".join(SE_GATES) + r")-(" + "|".join(ACTIVATIONS)
    + r")-d([0-9]+)",
    lambda m: SESpec(ratio=float(m.group(1)), base=m.group(2), gate=m.group(3),
                     activation=m.group(4), divisor=_int("se.divisor", m.group(5))),
    _format_se,
    "se<ratio>-<in|mid>-<sigmoid|hsigmoid>-<activation>-d<divisor> (se)")

ACT = word_token("activation", ACTIVATIONS)
K, S, C = int_token("k", "kernel_size"), int_token("s", "stride"), int_token("c", "out_channels")
E, M = float_token("e", "expand_ratio"), int_token("m", "mid_channels")
P = int_token("p", "patch_size")
NOSKIP = flag_token("noskip", "skip", False)
H, W = int_token("h", "num_heads"), int_token("w", "window_size")
D, L = int_token("d", "transformer_dim"), int_token("l", "transformer_depth")

#: Every text token by the name a kind's rule uses (``KindRule.text``).
TOKENS: dict[str, Token] = {
    "k": K, "s": S, "c": C, "e": E, "m": M, "fc": int_token("fc", "expand_in"), "p": P, "h": H,
    "w": W, "d": D, "l": L,
    "act": ACT, "se": SE_TOKEN, "se_flag": flag_token("se", "se", True), "noskip": NOSKIP,
    "skip": flag_token("skip", "skip", True), "nonorm": flag_token("nonorm", "norm", "none"),
    "bias": flag_token("bias", "bias", True), "ls": float_token("ls", "layer_scale"),
    "shift": flag_token("shift", "shifted", True), "grn": flag_token("grn", "grn", True),
    "a": int_token("a", "start_kernel"),
    "kv_stride": int_token("v", "kv_stride"), "key_dim": int_token("d", "key_dim"),
    "b": int_token("b", "branches"), "dw": flag_token("dw", "depthwise", True),
    "deploy": flag_token("deploy", "deploy", True),
    "alt": flag_token("alt", "se_alternate", True),
    "small_kernel": int_token("sk", "small_kernel"),
    "grouped": flag_token("grouped", "grouped", True),
}


def _form(code: str) -> tuple[Token, ...]:
    rule = BLOCK_KINDS[code].rule
    unknown = [t for t in (rule.text if rule else ()) if t not in TOKENS]
    if rule is None or not rule.text or unknown:
        raise SpecError(f"block kind {code!r} declares no text form (KindRule.text) or unknown "
                        f"tokens {unknown}; known tokens: {', '.join(TOKENS)}")
    return tuple(TOKENS[t] for t in rule.text)


#: The text form of every block kind: its tokens in canonical order, from the kind's rule.
FORMS: dict[str, tuple[Token, ...]] = {code: _form(code) for code in BLOCK_KINDS}

REPEATS = int_token("r", "repeats")


def _allowed(code: str) -> str:
    return ", ".join(t.help for t in FORMS[code])


#: Characters of a block string quoted in an error; a longer one is shortened with "...".
QUOTE_CHARS = 80


def _quoted(text: str) -> str:
    """``repr`` of a block string or token for an error, shortened past ``QUOTE_CHARS``."""
    return repr(text if len(text) <= QUOTE_CHARS else text[:QUOTE_CHARS - 3] + "...")


def _parse(text: str, allow_repeats: bool) -> tuple[BlockSpec, int]:
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"a block must be a non-empty string, got {text!r}")
    tokens = text.strip().split("_")
    code = tokens[0]
    if code not in FORMS:
        raise SpecError(f"unknown block code {_quoted(code)} in {_quoted(text)}"
                        f"{suggest(code, FORMS)}; known codes: {', '.join(FORMS)}")
    cls = BLOCK_KINDS[code]
    values: dict[str, object] = {}
    repeats = None
    for tok in tokens[1:]:
        if allow_repeats and (m := REPEATS.match(tok)):
            if repeats is not None:
                raise SpecError(f"token {_quoted(tok)} repeats field 'repeats' in "
                                f"{_quoted(text)}")
            try:
                repeats = REPEATS.parse(m)
                check_int("repeats", repeats)
            except SpecError as err:
                raise err.with_context(f"block {_quoted(text)}") from None
            continue
        for form in FORMS[code]:
            if m := form.match(tok):
                if form.field in values:
                    raise SpecError(f"token {_quoted(tok)} repeats field {form.field!r} in "
                                    f"{_quoted(text)}")
                try:
                    values[form.field] = form.parse(m)
                except SpecError as err:
                    raise err.with_context(f"block {_quoted(text)}") from None
                break
        else:
            extra = ", r<int> (repeats)" if allow_repeats else ""
            raise SpecError(f"unknown token {_quoted(tok)} in {_quoted(text)}; a {code} block "
                            f"takes {_allowed(code)}{extra}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [name for name in required if name not in values]
    if missing:
        helps = [t.help for name in missing for t in FORMS[code] if t.field == name]
        raise SpecError(f"{_quoted(text)} lacks {', '.join(helps)}")
    try:
        spec = cls(**values)
    except SpecError as err:
        raise err.with_context(f"block {_quoted(text)}") from None
    return spec, 1 if repeats is None else repeats


def parse_block(text: str) -> BlockSpec:
    """Block string → spec.  Raises ``SpecError`` naming the token and what is allowed."""
    return _parse(text, allow_repeats=False)[0]


def parse_stage(text: str) -> StageSpec:
    """Stage string (a block string with ``r<repeats>``; r1 when absent) → ``StageSpec``."""
    block, repeats = _parse(text, allow_repeats=True)
    return StageSpec(block=block, repeats=repeats)


def _format(spec: BlockSpec, repeats: int | None) -> str:
    try:
        forms = FORMS[spec.kind]
    except KeyError:
        raise SpecError(f"block kind {spec.kind!r} has no text form") from None
    parts = [spec.kind]
    if repeats is not None:
        parts.append(f"r{repeats}")
    for form in forms:
        token = form.format(getattr(spec, form.field))
        if token is not None:
            parts.append(token)
    return "_".join(parts)


def format_block(spec: BlockSpec) -> str:
    """Spec → canonical block string."""
    return _format(spec, None)


def format_stage(stage: StageSpec) -> str:
    """Stage → canonical stage string (always with ``r<repeats>``)."""
    return _format(stage.block, stage.repeats)
