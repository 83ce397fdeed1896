"""The reference implementation of each zoo network, by source (torchvision or timm).

Read by the fixture generator and the weights-equivalence benchmark, which run in the separate
reference venv (see docs/WEIGHTS.md); nothing in the package or the tests imports this.
"""
from __future__ import annotations

TORCHVISION = {
    "mobilenet_v2": "mobilenet_v2", "mobilenet_v3_large": "mobilenet_v3_large",
    "mobilenet_v3_small": "mobilenet_v3_small",
    **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
    "efficientnet_v2_s": "efficientnet_v2_s", "efficientnet_v2_m": "efficientnet_v2_m",
    "efficientnet_v2_l": "efficientnet_v2_l",
    "convnext_tiny": "convnext_tiny", "convnext_small": "convnext_small",
    "convnext_base": "convnext_base", "convnext_large": "convnext_large",
    "vit_b_16": "vit_b_16", "vit_b_32": "vit_b_32", "vit_l_16": "vit_l_16",
    "vit_l_32": "vit_l_32", "vit_h_14": "vit_h_14",
    "swin_t": "swin_t", "swin_s": "swin_s", "swin_b": "swin_b",
    "mnasnet0_5": "mnasnet0_5", "mnasnet0_75": "mnasnet0_75", "mnasnet1_0": "mnasnet1_0",
    "mnasnet1_3": "mnasnet1_3",
}

TIMM = {
    "mobilenet_v1": "mobilenetv1_100",
    "mobilenet_v2": "mobilenetv2_100", "mobilenet_v2_035": "mobilenetv2_035",
    "mobilenet_v2_050": "mobilenetv2_050", "mobilenet_v2_075": "mobilenetv2_075",
    "mobilenet_v2_140": "mobilenetv2_140",
    "mobilenet_v3_large": "mobilenetv3_large_100", "mobilenet_v3_small": "mobilenetv3_small_100",
    "mobilenet_v3_large_075": "mobilenetv3_large_075",
    "mobilenet_v3_small_075": "mobilenetv3_small_075",
    **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
    "efficientnet_l2": "efficientnet_l2",
    "efficientnet_v2_s": "efficientnetv2_s", "efficientnet_v2_m": "efficientnetv2_m",
    "efficientnet_v2_l": "efficientnetv2_l", "efficientnet_v2_xl": "efficientnetv2_xl",
    "convnext_tiny": "convnext_tiny", "convnext_small": "convnext_small",
    "convnext_base": "convnext_base", "convnext_large": "convnext_large",
    "convnext_xlarge": "convnext_xlarge",
    "mobilevit_xxs": "mobilevit_xxs", "mobilevit_xs": "mobilevit_xs", "mobilevit_s": "mobilevit_s",
    "vit_b_16": "vit_base_patch16_224", "vit_b_32": "vit_base_patch32_224",
    "vit_l_16": "vit_large_patch16_224", "vit_l_32": "vit_large_patch32_224",
    "vit_h_14": "vit_huge_patch14_224",
    "swin_t": "swin_tiny_patch4_window7_224", "swin_s": "swin_small_patch4_window7_224",
    "swin_b": "swin_base_patch4_window7_224", "swin_l": "swin_large_patch4_window7_224",
    "mnasnet1_0": "mnasnet_100", "mnasnet_a1": "semnasnet_100", "mnasnet_small": "mnasnet_small",
    **{f"efficientnet_lite{i}": f"efficientnet_lite{i}" for i in range(5)},
    "efficientnet_edgetpu_s": "efficientnet_es", "efficientnet_edgetpu_m": "efficientnet_em",
    "efficientnet_edgetpu_l": "efficientnet_el",
    **{f"convnext_v2_{n}": f"convnextv2_{n}"
       for n in ("atto", "femto", "pico", "nano", "tiny", "base", "large", "huge")},
    **{f"lcnet_{n}": f"lcnet_{n}" for n in ("050", "075", "100", "150")},
    **{f"mobilenet_v4_conv_{n}": f"mobilenetv4_conv_{n}" for n in ("small", "medium", "large")},
    "mobilenet_v4_hybrid_medium": "mobilenetv4_hybrid_medium",
    "mobilenet_v4_hybrid_large": "mobilenetv4_hybrid_large",
    **{f"mobileone_s{i}": f"mobileone_s{i}" for i in range(5)},
    **{f"repvit_{m}": f"repvit_{m}" for m in ("m0_9", "m1_0", "m1_1", "m1_5", "m2_3")},
    **{f"mobilevit_v2_{m}": f"mobilevitv2_{m}" for m in ("050", "075", "100", "125", "150",
                                                          "175", "200")},
    **{f"fastvit_{m}": f"fastvit_{m}" for m in ("t8", "t12", "s12", "sa12", "sa24", "sa36",
                                                  "ma36")},
}

SOURCES = {"torchvision": TORCHVISION, "timm": TIMM}


def create(source: str, network: str, meta: bool = False, deploy: bool = False):
    """The reference module (random init; on the meta device when ``meta``).  ``deploy``: the
    reference's own deploy form of a re-parameterisable network (timm's
    ``reparameterize_model``), whose nasscale counterpart is ``nasscale.reparameterize``."""
    import torch

    name = SOURCES[source][network]
    with torch.device("meta") if meta else torch.device("cpu"):
        if source == "torchvision":
            import torchvision.models as tvm
            return getattr(tvm, name)()
        import timm
        model = timm.create_model(name, pretrained=False, num_classes=1000)
        if deploy:
            from timm.utils.model import reparameterize_model
            model = reparameterize_model(model.eval())
        return model


def reparameterizable(network: str) -> bool:
    """Whether the zoo network trains in another form than it deploys (both are references)."""
    import nasscale

    return nasscale.load(network).reparameterizable
