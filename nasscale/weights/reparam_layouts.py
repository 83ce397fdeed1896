"""Weights layouts of the re-parameterisable families (timm's MobileOne, RepViT, FastViT), in
both forms: the train form's names, and the names timm's ``reparameterize_model`` gives the
fused modules (``nasscale.reparameterize``'s deploy form)."""
from __future__ import annotations

from nasscale.weights.layout_base import Layout, LayoutError, Table, join


def timm_rep_conv(ours: str, ref: str, branches: int) -> Table:
    """timm's ``MobileOneBlock`` (``ref``) for a nasscale ``RepConv`` (``ours``), in either
    form: conv branches, scale branch, identity BN, SE (``attn``), fused ``reparam_conv``."""
    parts = [(f"branches.{i}.0", f"conv_kxk.{i}.conv") for i in range(branches)]
    parts += [(f"branches.{i}.1", f"conv_kxk.{i}.bn") for i in range(branches)]
    parts += [("scale.0", "conv_scale.conv"), ("scale.1", "conv_scale.bn"),
              ("identity", "identity"), ("se.fc1", "attn.fc1"), ("se.fc2", "attn.fc2"),
              ("conv", "reparam_conv")]
    return tuple((join(ours, a), join(ref, b)) for a, b in parts)


class TimmMobileOne(Layout):
    """timm's MobileOne (``ByobNet``): the stem is one ``MobileOneBlock``; each nasscale
    ``mobileone`` block is two of timm's, depthwise then pointwise, in one stage per width.
    The same names serve both forms (timm's deploy form keeps ``reparam_conv`` in place)."""

    source, name = "timm", "MobileOne (byobnet)"
    bn = (1e-5, 0.1)

    def stem(self, rb):
        return "stem", timm_rep_conv("", "", rb.spec.branches)

    def block(self, rb, place):
        if rb.kind != "mobileone":
            raise LayoutError(f"timm's MobileOne has only MobileOne blocks; {rb.where} is a "
                              f"{rb.kind} block")
        b, p = rb.spec.branches, 2 * place.pos
        return f"stages.{place.group}", (*timm_rep_conv("dw", f"{p}", b),
                                         *timm_rep_conv("pw", f"{p + 1}", b))

    def head(self):
        return (("classifier", "head.fc"),)


def _conv_bn(parts: tuple[str, ...], deploy: bool) -> Table:
    """timm's ``ConvNorm`` (``c``, ``bn``) for nasscale's conv → BN (``0``, ``1``) at each
    part; fused (deploy), timm's part itself is the conv: ``X.0`` is timm's ``X``."""
    if deploy:
        return tuple((f"{p}.0", p) for p in parts)
    return tuple(pair for p in parts for pair in ((f"{p}.0", f"{p}.c"), (f"{p}.1", f"{p}.bn")))


def _repvit_core(prefix: str, deploy: bool) -> Table:
    pre = f"{prefix}." if prefix else ""
    mixer = () if deploy else _conv_bn((f"{pre}token_mixer.conv",), False)
    return ((f"{pre}token_mixer", f"{pre}token_mixer"), *mixer, (f"{pre}se", f"{pre}se"),
            *_conv_bn((f"{pre}channel_mixer.conv1", f"{pre}channel_mixer.conv2"), deploy))


class TimmRepViT(Layout):
    """timm's RepViT (``RepVit``): the stem's two ``ConvNorm``s, per stage a ``downsample``
    (after the first: its ``pre_block`` is the ``repvit`` block before nasscale's
    ``repvitdown``) and ``blocks``, and the ``RepVitClassifier`` with its distillation twin.
    nasscale's names are timm's in the train form; in the deploy form timm replaces each
    ``ConvNorm`` by its fused conv (``conv1.c`` is ``conv1``) and the classifier by one
    ``head`` linear."""

    source, name = "timm", "RepViT"
    bn = (1e-5, 0.1)

    def stem(self, rb):
        if rb.kind != "repvitstem":
            raise LayoutError(f"timm's RepViT starts with its stem; {rb.where} is a {rb.kind}")
        return "stem", _conv_bn(("conv1", "conv2"), rb.spec.deploy)

    def block(self, rb, place):
        deploy = rb.spec.deploy
        following = self.rn.blocks[rb.index + 1] if rb.index + 1 < len(self.rn.blocks) else None
        if rb.kind == "repvit" and following is not None and following.kind == "repvitdown":
            # the block before a downsampling layer is that layer's pre-block in timm
            group = self.places[following.index].group
            return f"stages.{group}.downsample.pre_block", _repvit_core("", deploy)
        if rb.kind == "repvit":
            return f"stages.{place.group}.blocks.{place.body}", _repvit_core("", deploy)
        if rb.kind == "repvitdown":
            return f"stages.{place.group}.downsample", _conv_bn(
                ("spatial_downsample", "channel_downsample", "ffn.conv1", "ffn.conv2"), deploy)
        raise LayoutError(f"timm's RepViT has no {rb.kind} block like {rb.where}")

    def head(self):
        if self.rn.head.deploy:
            return (("classifier", "head"),)
        return (("norm", "head.head.bn"), ("classifier", "head.head.l"),
                ("norm_dist", "head.head_dist.bn"), ("classifier_dist", "head.head_dist.l"))


def _fastvit_rep_conv(ours: str, ref: str) -> Table:
    """timm's FastViT ``MobileOneBlock`` (one conv branch; its SE is ``se``, not ``attn``)."""
    return tuple((a, join(ref, "se" + b[len(join(ref, "attn")):])
                  if b.startswith(join(ref, "attn.")) else b)
                 for a, b in timm_rep_conv(ours, ref, 1))


def _fastvit_mlp() -> Table:
    return (("mlp.conv.0", "mlp.conv.conv"), ("mlp.conv.1", "mlp.conv.bn"),
            ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2"))


class TimmFastViT(Layout):
    """timm's FastViT (``FastVit``): a stem of three ``MobileOneBlock``s (nasscale's ``repconv``
    and the two halves of its ``mobileone``), stages of ``downsample.proj`` (the ``replk`` and
    the 1×1 ``repconv``), ``pos_emb`` (``repcpe``) and ``blocks``, the ``final_conv`` (the head
    block) and ``head.fc``.  Layer scales are timm's ``gamma`` of shape (C, 1, 1).  In the
    deploy form every fused part is timm's ``reparam_conv``."""

    source, name = "timm", "FastViT"
    bn = (1e-5, 0.1)

    def __init__(self, rn, options=None):
        super().__init__(rn, options)
        # timm's stage and block index of each stage block: a stage opens at a replk
        self.at: dict[int, tuple[int, int]] = {}
        stage, body = -1, 0
        for rb in rn.section("stage"):
            if stage < 0 or rb.kind == "replk":
                stage, body = stage + 1, 0
            self.at[rb.index] = (stage, body)
            body += rb.kind in ("repmixer", "fvattn")

    def stem(self, rb):
        first = sum(2 if b.kind == "mobileone" else 1 for b in self.rn.section("stem")
                    if b.index < rb.index)
        if rb.kind == "repconv":
            return "stem", _fastvit_rep_conv("", str(first))
        if rb.kind == "mobileone":
            return "stem", (*_fastvit_rep_conv("dw", str(first)),
                            *_fastvit_rep_conv("pw", str(first + 1)))
        raise LayoutError(f"timm's FastViT stem has MobileOne convs only; {rb.where} is a "
                          f"{rb.kind}")

    def block(self, rb, place):
        stage, body = self.at[rb.index]
        prefix = f"stages.{stage}"
        if rb.kind == "replk":
            return f"{prefix}.downsample.proj.0", (
                ("large.0", "large_conv.conv"), ("large.1", "large_conv.bn"),
                ("small.0", "small_conv.conv"), ("small.1", "small_conv.bn"),
                ("conv", "reparam_conv"))
        if rb.kind == "repconv":
            return f"{prefix}.downsample.proj.1", _fastvit_rep_conv("", "")
        if rb.kind == "repcpe":
            return f"{prefix}.pos_emb", (("pos_enc", "pos_enc"), ("conv", "reparam_conv"))
        if rb.kind == "repmixer":
            return f"{prefix}.blocks.{body}", (
                ("token_mixer.norm", "token_mixer.norm.identity"),
                *_fastvit_rep_conv("token_mixer.mixer", "token_mixer.mixer"),
                ("token_mixer.layer_scale", "token_mixer.layer_scale.gamma"),
                ("token_mixer.conv", "token_mixer.reparam_conv"),
                *_fastvit_mlp(), ("layer_scale", "layer_scale.gamma"))
        if rb.kind == "fvattn":
            return f"{prefix}.blocks.{body}", (
                ("norm", "norm"), ("token_mixer", "token_mixer"),
                ("layer_scale_1", "layer_scale_1.gamma"), *_fastvit_mlp(),
                ("layer_scale_2", "layer_scale_2.gamma"))
        raise LayoutError(f"timm's FastViT has no {rb.kind} block like {rb.where}")

    def head_block(self, rb):
        if rb.kind != "repconv" or rb.repeat != 0:
            return super().head_block(rb)
        return "final_conv", _fastvit_rep_conv("", "")

    def head(self):
        return (("classifier", "head.fc"),)

    def ref_shape(self, ref_key, shape):
        return (*shape, 1, 1) if ref_key.endswith(".gamma") else shape
