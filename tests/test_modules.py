"""The builder: forward shapes, registries complete, behaviour of the blocks."""
import pytest
import torch

import nasscale
from nasscale import zoo
from nasscale.grammar import FORMS, parse_block, parse_stage
from nasscale.modules import BUILDERS
from nasscale.specs import BLOCK_KINDS, HeadSpec, NetworkSpec

from conftest import TINY, affordable

# the networks of the family files; their scaled variants (B1-B7, L2, width multipliers) are
# built and checked on the meta device in tests/test_variants.py
NETWORKS = [n for n, e in zoo.entries().items() if e.section == "networks"]


def test_every_block_kind_has_text_form_builder_and_cost():
    from nasscale.costs.analytic import COSTS

    for kind, cls in BLOCK_KINDS.items():
        assert kind in FORMS, f"{kind}: no text form in grammar.text.FORMS"
        assert cls in BUILDERS, f"{kind}: no builder in modules.BUILDERS"
        assert cls in COSTS, f"{kind}: no cost formula in costs.analytic.COSTS"


def test_every_kind_has_a_tiny_architecture():
    assert set(TINY) == set(BLOCK_KINDS)


@pytest.mark.parametrize("kind", sorted(BLOCK_KINDS))
def test_every_registry_knows_every_kind(kind):
    """One kind, every registry that reads it: a missing entry fails naming kind and registry."""
    from nasscale.costs.analytic import COSTS
    from nasscale.scaling.rules import KIND_RULES
    from nasscale.transfer.carry import check_covered

    cls = BLOCK_KINDS[kind]
    assert cls.rule is not None, f"{kind}: no KindRule (the spec class's `rule`, specs.kind)"
    assert cls.skip_rule, f"{kind}: no skip_rule on the spec class"
    assert cls in KIND_RULES, f"{kind}: no scaling rule in scaling.rules.KIND_RULES"
    assert kind in FORMS, f"{kind}: no text form (KindRule.text) in grammar.text.FORMS"
    assert cls in BUILDERS, f"{kind}: no builder (@builds) in modules.registry.BUILDERS"
    assert cls in COSTS, f"{kind}: no cost formula in costs.analytic.COSTS"
    spec = NetworkSpec(name=f"tiny_{kind}", stem=(parse_block("conv_k3_s1_c8_relu"),),
                       stages=tuple(parse_stage(s) for s in TINY[kind]),
                       head=HeadSpec(), resolution=16, num_classes=5)
    model = nasscale.build(spec)
    # a module without a @weight_axes entry raises, naming its class and the kind
    assert check_covered(model, nasscale.resolve(spec)) == [], \
        f"{kind}: tensors its weight axes do not describe"


@pytest.mark.parametrize("kind", sorted(TINY))
def test_tiny_architecture_per_kind_builds_runs_and_counts(kind):
    spec = NetworkSpec(name=f"tiny_{kind}", stem=(parse_block("conv_k3_s1_c8_relu"),),
                       stages=tuple(parse_stage(s) for s in TINY[kind]),
                       head=HeadSpec(), resolution=16, num_classes=5)
    model = nasscale.build(spec).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    assert nasscale.count(spec).params == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", NETWORKS)
def test_forward_batch_2_of_every_named_network(name):
    full = nasscale.load(name)
    if affordable(full) is not full:  # too big to build: shapes at full size on the meta device
        with torch.device("meta"):
            model = nasscale.build(full).eval()
            out = model(torch.zeros(2, 3, full.resolution, full.resolution))
        assert out.shape == (2, full.num_classes)
    spec = affordable(full)
    res = 64  # every stride allows 64; the full resolution is covered by the fvcore test
    model = nasscale.build(spec).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, res, res))
    assert out.shape == (2, spec.num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("res", [32, 57, 100])
def test_any_resolution_the_strides_allow(res):
    model = nasscale.build("mobilenet_v3_small").eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, res, res)).shape == (1, 1000)


def test_residuals_and_expand_convs_follow_the_spec():
    model = nasscale.build("mobilenet_v2")
    first, second = model.stages[0][0], model.stages[1][1]
    assert isinstance(first.expand, torch.nn.Identity)  # t = 1: no expand conv
    assert not first.residual  # 32 -> 16
    assert second.residual  # 24 -> 24, stride 1
    assert isinstance(model.stages[1][0].drop_path, torch.nn.Identity)


def test_stochastic_depth_schedule_reaches_the_rate():
    model = nasscale.build("convnext_tiny")
    rates = [m.p for m in model.modules() if type(m).__name__ == "DropPath"]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)
    assert rates == sorted(rates)


def test_drop_path_is_identity_in_eval_and_scales_in_training():
    from nasscale.modules.layers import DropPath

    dp = DropPath(0.5)
    x = torch.ones(1000, 4)
    dp.eval()
    assert torch.equal(dp(x), x)
    dp.train()
    torch.manual_seed(0)
    y = dp(x)
    assert set(y[:, 0].tolist()) <= {0.0, 2.0} and 0.4 < (y[:, 0] == 0).float().mean() < 0.6
