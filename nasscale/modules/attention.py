"""Torch modules of the attention block kinds (MobileViT v1 and v2, ViT, Swin), built from
resolved blocks.

Self-attention is one small module, ``SelfAttention``: a qkv linear,
``F.scaled_dot_product_attention`` and an output linear, all visible to tracers.
``nn.MultiheadAttention`` is not used: in eval mode without gradients it takes a fused fast
path (``aten::_native_multi_head_attention``) that hides its projections and matmuls from FLOP
counters, and it cannot take Swin's per-window bias.

Layouts (see ``nasscale.specs.attention``): the ViT modules take and give (N, 1 + h·w, C) token
sequences, the Swin modules (N, H, W, C) grids, the MobileViT block (N, C, H, W) maps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nasscale.modules.layers import (
    BatchNorm2d,
    ConvNormAct,
    DropPath,
    activation,
    add_residual,
    apply_optional,
    layer_scale,
)
from nasscale.modules.registry import builds, cna_axes, transformer_axes, weight_axes
from nasscale.specs import (
    MobileMQASpec,
    MobileViTSpec,
    MobileViTv2Spec,
    PatchMergeSpec,
    ResolvedBlock,
    SwinEmbedSpec,
    SwinSpec,
    ViTEmbedSpec,
    ViTSpec,
)


class SelfAttention(nn.Module):
    """Multi-head self-attention over the last-but-one axis: (..., L, C) → (..., L, C).

    ``bias`` is added to the attention logits (Swin's relative position bias and shift mask); it
    broadcasts against (..., heads, L, L).
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        *lead, length, width = x.shape
        # The leading axes (Swin: batch and windows) in one: SDPA's fused CPU kernel takes 4-D
        # inputs only, and 5-D ones fall back to its unfused math path, 2-3x slower on Swin's
        # windows (benchmarks/eager_parity.py).
        x = x.flatten(0, -3)  # (B, L, C)
        qkv = self.qkv(x).reshape(x.shape[0], length, 3, self.heads, width // self.heads)
        # each (B, heads, L, C/heads); the permutation is written with positive axes: torch's
        # ONNX exporter writes negative ones into Transpose's perm, which ONNX Runtime and
        # OpenVINO refuse
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if bias is not None and bias.dim() > 3:  # e.g. per window (windows, heads, L, L)
            bias = bias.expand(*lead, *bias.shape[-3:]).flatten(0, -4)
        elif bias is not None and bias.dim() == 3:  # (heads, L, L): the kernel wants 4-D
            bias = bias.unsqueeze(0)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(y.transpose(1, 2).reshape(*lead, length, width))


class Mlp(nn.Sequential):
    def __init__(self, width: int, mid: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(width, mid)
        self.act = activation(act)
        self.fc2 = nn.Linear(mid, width)


class TransformerLayer(nn.Module):
    """Pre-norm encoder layer on (..., L, C): x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, width: int, heads: int, mid: int, act: str, drop_path: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = SelfAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = Mlp(width, mid, act)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = add_residual(x, self.attn(self.norm1(x)), self.drop_path)
        return add_residual(x, self.mlp(self.norm2(x)), self.drop_path)


@weight_axes(TransformerLayer)
def vit_axes(m, rb) -> dict:
    return transformer_axes("", "in", "out")


# --- MobileViT --------------------------------------------------------------------------------

def unfold(x: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, gh·p, gw·p) → (N·p·p, gh·gw, C): sequence i of a sample holds pixel i (row-major
    inside the p×p patch) of every patch, patches in raster order."""
    n, c, h, w = x.shape
    gh, gw = h // p, w // p
    return x.reshape(n, c, gh, p, gw, p).permute(0, 3, 5, 2, 4, 1).reshape(n * p * p, gh * gw, c)


def fold(x: torch.Tensor, p: int, gh: int, gw: int) -> torch.Tensor:
    """The inverse of ``unfold``: (N·p·p, gh·gw, C) → (N, C, gh·p, gw·p)."""
    c = x.shape[-1]
    x = x.reshape(-1, p, p, gh, gw, c).permute(0, 5, 3, 1, 4, 2)  # (N, C, gh, p, gw, p)
    return x.reshape(-1, c, gh * p, gw * p)


@builds(MobileViTSpec)
class MobileViTBlock(nn.Module):
    """Local k×k conv → 1×1 to d → unfold → transformer → fold → 1×1 back → concat → fusion."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, cin, cout, d = rb.spec, rb.in_channels, rb.out_channels, rb.spec.transformer_dim
        self.patch_size = s.patch_size
        self.conv_kxk = ConvNormAct(cin, cin, s.kernel_size, act=s.activation, bn=rb.norm.bn)
        self.conv_1x1 = nn.Conv2d(cin, d, 1, bias=False)
        self.transformer = nn.Sequential(*[
            TransformerLayer(d, s.num_heads, rb.widths["mid"], s.activation, rb.drop_path,
                             rb.norm.ln(1e-5))
            for _ in range(s.transformer_depth)])
        self.norm = nn.LayerNorm(d, eps=rb.norm.ln(1e-5))
        self.conv_proj = ConvNormAct(d, cout, 1, act=s.activation, bn=rb.norm.bn)
        self.conv_fusion = ConvNormAct(cin + cout, cout, s.kernel_size, act=s.activation,
                                       bn=rb.norm.bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_1x1(self.conv_kxk(x))
        h, w = y.shape[-2:]
        p = self.patch_size
        gh, gw = math.ceil(h / p), math.ceil(w / p)  # patches per side
        resized = (gh * p, gw * p) != (h, w)
        if resized:  # up to whole patches, as timm and ml-cvnets do
            y = F.interpolate(y, size=(gh * p, gw * p), mode="bilinear", align_corners=False)
        y = fold(self.norm(self.transformer(unfold(y, p))), p, gh, gw)
        if resized:
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return self.conv_fusion(torch.cat((x, self.conv_proj(y)), dim=1))


@weight_axes(MobileViTBlock)
def mobilevit_axes(m: MobileViTBlock, rb) -> dict:
    d = "attention"
    axes = {**cna_axes("conv_kxk.", "in", "in"), "conv_1x1.weight": (d, "in"),
            "norm.weight": (d,), "norm.bias": (d,), **cna_axes("conv_proj.", ".out", d),
            **cna_axes("conv_fusion.", "out", ("in", "out"))}
    for i in range(len(m.transformer)):
        axes.update(transformer_axes(f"transformer.{i}.", d, d))
    return axes


# --- MobileViTv2 ------------------------------------------------------------------------------

def unfold_cpn(x: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, gh·p, gw·p) → (N, C, p·p, gh·gw): channels first, pixel i of every patch along the
    last axis (the layout MobileViTv2 attends in, without transposes)."""
    n, c, h, w = x.shape
    gh, gw = h // p, w // p
    return x.reshape(n, c, gh, p, gw, p).permute(0, 1, 3, 5, 2, 4).reshape(n, c, p * p, gh * gw)


def fold_cpn(x: torch.Tensor, p: int, gh: int, gw: int) -> torch.Tensor:
    """The inverse of ``unfold_cpn``: (N, C, p·p, gh·gw) → (N, C, gh·p, gw·p)."""
    n, c = x.shape[:2]
    x = x.reshape(n, c, p, p, gh, gw).permute(0, 1, 4, 2, 5, 3)  # (N, C, gh, p, gw, p)
    return x.reshape(n, c, gh * p, gw * p)


class SeparableSelfAttention(nn.Module):
    """Separable self-attention on (N, d, P, T): per pixel position P, linear in the T patches.

    A 1×1 conv gives a one-channel query, keys and values (1 + 2d); softmax of the query over
    the patches gives context scores; the context vector (N, d, P, 1) is the score-weighted sum
    of the keys; ReLU(values) × context vector → 1×1 out conv.  The weighting and the product
    are element-wise (``mul``/``sum``), so FLOP counters see only the two convs.
    """

    def __init__(self, width: int):
        super().__init__()
        self.width = width
        self.qkv_proj = nn.Conv2d(width, 1 + 2 * width, 1)
        self.out_proj = nn.Conv2d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query, key, value = self.qkv_proj(x).split([1, self.width, self.width], dim=1)
        scores = F.softmax(query, dim=-1)
        context = (key * scores).sum(dim=-1, keepdim=True)
        return self.out_proj(F.relu(value) * context)


class ConvMlp(nn.Sequential):
    def __init__(self, width: int, mid: int, act: str):
        super().__init__()
        self.fc1 = nn.Conv2d(width, mid, 1)
        self.act = activation(act)
        self.fc2 = nn.Conv2d(mid, width, 1)


class SeparableTransformerLayer(nn.Module):
    """Pre-norm on (N, d, P, T): x + attn(GN(x)), then x + MLP(GN(x)); GroupNorm of one group."""

    def __init__(self, width: int, mid: int, act: str, drop_path: float, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, width, eps=eps)
        self.attn = SeparableSelfAttention(width)
        self.norm2 = nn.GroupNorm(1, width, eps=eps)
        self.mlp = ConvMlp(width, mid, act)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = add_residual(x, self.attn(self.norm1(x)), self.drop_path)
        return add_residual(x, self.mlp(self.norm2(x)), self.drop_path)


@builds(MobileViTv2Spec)
class MobileViTv2Block(nn.Module):
    """Resize to whole patches → local dw k×k + 1×1 to d → unfold → separable transformer → GN
    → fold → 1×1 conv-BN to the output (no concat, no fusion)."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, cin, cout, d = rb.spec, rb.in_channels, rb.out_channels, rb.spec.transformer_dim
        eps = rb.norm.ln(1e-5)  # GroupNorm(1): a LayerNorm over channels and positions
        self.patch_size = s.patch_size
        self.conv_kxk = ConvNormAct(cin, cin, s.kernel_size, groups=cin, act=s.activation,
                                    bn=rb.norm.bn)
        self.conv_1x1 = nn.Conv2d(cin, d, 1, bias=False)
        self.transformer = nn.Sequential(*[
            SeparableTransformerLayer(d, rb.widths["mid"], s.activation, rb.drop_path, eps)
            for _ in range(s.transformer_depth)])
        self.norm = nn.GroupNorm(1, d, eps=eps)
        self.conv_proj = ConvNormAct(d, cout, 1, act="none", bn=rb.norm.bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        p = self.patch_size
        gh, gw = math.ceil(h / p), math.ceil(w / p)
        if (gh * p, gw * p) != (h, w):  # up to whole patches, and stays so (timm)
            x = F.interpolate(x, size=(gh * p, gw * p), mode="bilinear", align_corners=True)
        y = unfold_cpn(self.conv_1x1(self.conv_kxk(x)), p)
        y = fold_cpn(self.norm(self.transformer(y)), p, gh, gw)
        return self.conv_proj(y)


@weight_axes(MobileViTv2Block)
def mobilevit2_axes(m: MobileViTv2Block, rb) -> dict:
    d = "attention"
    axes = {**cna_axes("conv_kxk.", "in", "in", depthwise=True), "conv_1x1.weight": (d, "in"),
            "norm.weight": (d,), "norm.bias": (d,), **cna_axes("conv_proj.", "out", d)}
    qkv = ("heads", "." + d, "." + d)  # the query: one row per head (one head); keys, values
    for i in range(len(m.transformer)):
        t = f"transformer.{i}."
        axes.update({
            f"{t}norm1.weight": (d,), f"{t}norm1.bias": (d,),
            f"{t}attn.qkv_proj.weight": (qkv, d), f"{t}attn.qkv_proj.bias": (qkv,),
            f"{t}attn.out_proj.weight": (d, "." + d), f"{t}attn.out_proj.bias": (d,),
            f"{t}norm2.weight": (d,), f"{t}norm2.bias": (d,),
            f"{t}mlp.fc1.weight": ("mid", d), f"{t}mlp.fc1.bias": ("mid",),
            f"{t}mlp.fc2.weight": (d, "mid"), f"{t}mlp.fc2.bias": (d,)})
    return axes


# --- ViT ----------------------------------------------------------------------------------------

@builds(ViTEmbedSpec)
class ViTEmbed(nn.Module):
    """(N, C_in, H, W) → p×p conv, stride p → (N, 1 + h·w, C) with class token and positions."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, c = rb.spec, rb.out_channels
        self.conv_proj = nn.Conv2d(rb.in_channels, c, s.patch_size, s.patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, c))
        self.grid = s.out_hw(rb.trained_hw or rb.in_hw)  # the trained patch grid
        self.pos_embedding = nn.Parameter(
            torch.empty(1, 1 + self.grid[0] * self.grid[1], c).normal_(std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x)
        n, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (N, C, h, w) -> (N, h·w, C)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        return x + self.position_embedding((h, w))

    def position_embedding(self, grid: tuple[int, int]) -> torch.Tensor:
        """The position embedding for a patch grid: the learned one on the trained grid, else its
        grid part resized bicubically (align_corners, as torchvision's interpolate_embeddings),
        with the class-token row kept."""
        if tuple(grid) == tuple(self.grid):
            return self.pos_embedding
        c = self.pos_embedding.shape[-1]
        token, patches = self.pos_embedding[:, :1], self.pos_embedding[:, 1:]
        patches = patches.reshape(1, *self.grid, c).permute(0, 3, 1, 2)  # (1, C, gh, gw)
        patches = F.interpolate(patches, size=tuple(grid), mode="bicubic", align_corners=True)
        return torch.cat([token, patches.flatten(2).transpose(1, 2)], dim=1)


@weight_axes(ViTEmbed)
def vitembed_axes(m, rb) -> dict:
    return {"conv_proj.weight": ("out", "in"), "conv_proj.bias": ("out",),
            "class_token": (None, None, "out"), "pos_embedding": (None, None, "out")}


@builds(ViTSpec)
def build_vit(rb: ResolvedBlock) -> nn.Module:
    s, c = rb.spec, rb.in_channels
    return TransformerLayer(c, s.num_heads, rb.widths["mid"], s.activation, rb.drop_path,
                            rb.norm.ln(1e-6))


# --- Swin ---------------------------------------------------------------------------------------

@builds(SwinEmbedSpec)
class SwinEmbed(nn.Module):
    """(N, C_in, H, W) → p×p conv, stride p (bias) → (N, h, w, C) → LayerNorm."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        p = rb.spec.patch_size
        self.conv = nn.Conv2d(rb.in_channels, rb.out_channels, p, p)
        self.norm = nn.LayerNorm(rb.out_channels, eps=rb.norm.ln(1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x).permute(0, 2, 3, 1))  # (N, C, h, w) -> (N, h, w, C)


@weight_axes(SwinEmbed)
def swinembed_axes(m, rb) -> dict:
    return {"conv.weight": ("out", "in"), "conv.bias": ("out",), "norm.weight": ("out",),
            "norm.bias": ("out",)}


@builds(PatchMergeSpec)
class PatchMerge(nn.Module):
    """(N, H, W, C) → 2×2 neighbours concatenated (N, ⌈H/2⌉, ⌈W/2⌉, 4C) → LN → Linear (no bias)."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        self.norm = nn.LayerNorm(4 * rb.in_channels, eps=rb.norm.ln(1e-5))
        self.reduction = nn.Linear(4 * rb.in_channels, rb.out_channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))  # an odd side gets a zero row/column
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]],
                      dim=-1)
        return self.reduction(self.norm(x))


@weight_axes(PatchMerge)
def patchmerge_axes(m, rb) -> dict:
    four = ("in", "in", "in", "in")
    return {"norm.weight": (four,), "norm.bias": (four,), "reduction.weight": ("out", four)}


def relative_position_index(window: int) -> torch.Tensor:
    """(w², w²) index into the ((2w−1)², heads) bias table of the offset between two tokens."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window),
                                        indexing="ij")).flatten(1)  # (2, w²)
    offset = (coords[:, :, None] - coords[:, None, :]) + (window - 1)  # (2, w², w²), >= 0
    return offset[0] * (2 * window - 1) + offset[1]


def _regions(size: int, window: int, shift: int) -> torch.Tensor:
    """1-D region labels of a grid rolled by ``shift``: tokens whose labels differ were not
    neighbours before the roll and must not attend to each other."""
    labels = torch.zeros(size, dtype=torch.long)
    if shift:
        labels[size - window:size - shift] = 1
        labels[size - shift:] = 2
    return labels


class WindowAttention(nn.Module):
    """(S)W-MSA on an (N, H, W, C) grid: pad to whole windows → cyclic shift → attention inside
    each window with relative position bias (and the shift mask) → reverse shift → unpad."""

    def __init__(self, width: int, heads: int, window: int, shifted: bool):
        super().__init__()
        self.window, self.shifted, self.heads = window, shifted, heads
        self.attn = SelfAttention(width, heads)
        self.relative_position_bias_table = nn.Parameter(
            nn.init.trunc_normal_(torch.zeros((2 * window - 1) ** 2, heads), std=0.02))
        self.register_buffer("relative_position_index",
                             relative_position_index(window).flatten(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, c = x.shape
        win = self.window
        x = F.pad(x, (0, 0, 0, (-w) % win, 0, (-h) % win))  # zero rows/columns at bottom/right
        hp, wp = x.shape[1:3]
        # no shift along a side one window covers whole (torchvision)
        shift = tuple(win // 2 if self.shifted and win < size else 0 for size in (hp, wp))
        if any(shift):
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        gh, gw = hp // win, wp // win
        # (N, hp, wp, C) -> (N, windows, w², C)
        x = x.reshape(n, gh, win, gw, win, c).transpose(2, 3).reshape(n, gh * gw, win * win, c)
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.reshape(win * win, win * win, self.heads).permute(2, 0, 1)  # (heads, w², w²)
        if any(shift):
            bias = bias + self.shift_mask(hp, wp, shift, x.device).unsqueeze(1)  # (nW, h, .., ..)
        x = self.attn(x, bias.to(x.dtype))
        x = x.reshape(n, gh, gw, win, win, c).transpose(2, 3).reshape(n, hp, wp, c)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x[:, :h, :w]

    def shift_mask(self, hp: int, wp: int, shift: tuple[int, int],
                   device: torch.device) -> torch.Tensor:
        """(windows, w², w²): 0 between tokens of one region of the rolled grid, −100 across."""
        win = self.window
        labels = (_regions(hp, win, shift[0])[:, None] * 3
                  + _regions(wp, win, shift[1])[None, :]).to(device)
        labels = labels.reshape(hp // win, win, wp // win, win).transpose(1, 2)
        labels = labels.reshape(-1, win * win)
        different = labels[:, :, None] != labels[:, None, :]
        return different.float() * -100.0


@builds(SwinSpec)
class SwinBlock(nn.Module):
    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, c = rb.spec, rb.in_channels
        self.norm1 = nn.LayerNorm(c, eps=rb.norm.ln(1e-5))
        self.attn = WindowAttention(c, s.num_heads, s.window_size, s.shifted)
        self.norm2 = nn.LayerNorm(c, eps=rb.norm.ln(1e-5))
        self.mlp = Mlp(c, rb.widths["mid"], s.activation)
        self.drop_path = DropPath(rb.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = add_residual(x, self.attn(self.norm1(x)), self.drop_path)
        return add_residual(x, self.mlp(self.norm2(x)), self.drop_path)


@weight_axes(SwinBlock)
def swin_axes(m, rb) -> dict:
    axes = transformer_axes("", "in", "out")
    for name in [k for k in axes if k.startswith("attn.")]:
        axes["attn." + name] = axes.pop(name)
    axes["attn.relative_position_bias_table"] = (None, "heads")
    return axes


@builds(MobileMQASpec)
class MobileMQA(nn.Module):
    """MobileNetV4's Mobile MQA block on (N, C, H, W) maps (see ``MobileMQASpec``): BN →
    multi-query attention (``num_heads`` query heads, one key and one value shared by all,
    from a ``kv_stride``-downsampled input) → layer scale → + input.  The attention is
    ``F.scaled_dot_product_attention`` with the key and value broadcast over the heads."""

    def __init__(self, rb: ResolvedBlock):
        super().__init__()
        s, cin, cout = rb.spec, rb.in_channels, rb.out_channels
        eps, momentum = rb.norm.bn
        self.heads, self.key_dim = s.num_heads, s.key_dim
        self.norm = BatchNorm2d(cin, eps=eps, momentum=momentum)
        self.query = nn.Conv2d(cin, s.num_heads * s.key_dim, 1, bias=False)

        def down() -> nn.Module:
            if s.kv_stride == 1:
                return nn.Identity()
            return ConvNormAct(cin, cin, s.kernel_size, s.kv_stride, groups=cin, act="none",
                               bn=rb.norm.bn)

        self.key_down, self.value_down = down(), down()
        self.key = nn.Conv2d(cin, s.key_dim, 1, bias=False)
        self.value = nn.Conv2d(cin, s.key_dim, 1, bias=False)
        self.output = nn.Conv2d(s.num_heads * s.key_dim, cout, 1, bias=False)
        self.layer_scale = layer_scale(cout, s.layer_scale)
        self.residual = rb.residual
        self.drop_path = DropPath(rb.drop_path) if self.residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        y = self.norm(x)
        # SDPA's fused CPU kernel wants each head's rows contiguous and as many key/value heads
        # as query heads; otherwise it falls back to its unfused math path (~20 % slower here)
        q = self.query(y).reshape(n, self.heads, self.key_dim, h * w).transpose(-1, -2)
        k = self.key(apply_optional(self.key_down, y)).flatten(2).transpose(1, 2).unsqueeze(1)
        v = self.value(apply_optional(self.value_down, y)).flatten(2).transpose(1, 2).unsqueeze(1)
        shape = (n, self.heads, k.shape[2], self.key_dim)  # the one key and value, every head
        o = F.scaled_dot_product_attention(q.contiguous(), k.contiguous().expand(shape),
                                           v.contiguous().expand(shape))  # (N, heads, h·w, d)
        o = o.transpose(1, 2).reshape(n, h, w, self.heads * self.key_dim).permute(0, 3, 1, 2)
        y = self.output(o)
        if self.layer_scale is not None:
            y = y * self.layer_scale.view(1, -1, 1, 1)
        return add_residual(x, y, self.drop_path) if self.residual else y


@weight_axes(MobileMQA)
def mqa_axes(m: MobileMQA, rb) -> dict:
    axes = {"norm.weight": (".in",), "norm.bias": (".in",), "norm.running_mean": (".in",),
            "norm.running_var": (".in",), "query.weight": (None, "in"),
            "key.weight": (None, "in"), "value.weight": (None, "in"),
            "output.weight": ("out", None)}
    for name in ("key_down", "value_down"):
        if not isinstance(getattr(m, name), nn.Identity):
            axes.update(cna_axes(f"{name}.", ".in", "in", depthwise=True))
    if m.layer_scale is not None:
        axes["layer_scale"] = ("out",)
    return axes
