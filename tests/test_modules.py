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


def test_residual_sum_is_in_place_only_where_autograd_records_nothing():
    from nasscale.modules.layers import DropPath, add_residual

    x, y = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    x0, expected = x.clone(), x + y
    with torch.no_grad():
        out = add_residual(x, y.clone(), DropPath(0.0))
    assert torch.equal(out, expected) and torch.equal(x, x0)  # x is never written to
    branch = y.clone()
    with torch.inference_mode():
        assert add_residual(x, branch, DropPath(0.0)) is branch  # the sum went into y
    # recording autograd, a view, or a layout differing from x's: a new tensor
    leaf = y.clone().requires_grad_()
    assert add_residual(x, leaf, DropPath(0.0)) is not leaf
    with torch.no_grad():
        for other in (y.clone().transpose(2, 3), y.clone().contiguous(
                memory_format=torch.channels_last), y.clone()[:, :, :3]):
            before = other.clone()
            assert torch.equal(add_residual(x, other, DropPath(0.0)), x + before)
            assert torch.equal(other, before)


@pytest.mark.parametrize("kind", sorted(TINY))
def test_blocks_give_the_same_logits_with_and_without_autograd_and_train(kind):
    """The inference paths (in-place residual sums, lean BatchNorm, skipped Identity and
    DropPath calls) compute what the training path does (bit for bit but for the attention
    kinds: with autograd on, SDPA may pick another kernel); training still back-propagates
    (drop path on), also through torch.func.functional_call."""
    spec = NetworkSpec(name=f"tiny_{kind}", stem=(parse_block("conv_k3_s1_c8_relu"),),
                       stages=tuple(parse_stage(s) for s in TINY[kind]),
                       head=HeadSpec(), resolution=16, num_classes=5, drop_path_rate=0.2)
    model = nasscale.build(spec).eval()
    x = torch.randn(2, 3, 16, 16)
    x0 = x.clone()
    with torch.inference_mode():
        inference = model(x)
    with torch.no_grad():
        no_grad = model(x)
    recorded = model(x)
    exact = not any(a in kind for a in ("vit", "swin", "mobilevit", "mqa"))
    for out in (inference, no_grad):
        torch.testing.assert_close(out, recorded, rtol=0 if exact else 1e-5,
                                   atol=0 if exact else 1e-6)
    assert torch.equal(x, x0)
    model.train()
    torch.manual_seed(0)
    model(x).square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    out = torch.func.functional_call(model, params, (x,))
    out.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in params.values())


def test_lean_batchnorm_matches_nn_batchnorm():
    from nasscale.modules.layers import BatchNorm2d

    ours, ref = BatchNorm2d(6, eps=1e-3), torch.nn.BatchNorm2d(6, eps=1e-3)
    with torch.no_grad():
        for t in (ours, ref):
            t.weight.copy_(torch.linspace(0.5, 2, 6))
            t.bias.copy_(torch.linspace(-1, 1, 6))
            t.running_mean.copy_(torch.linspace(-0.3, 0.3, 6))
            t.running_var.copy_(torch.linspace(0.5, 1.5, 6))
    x = torch.randn(3, 6, 5, 5)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for mode in (True, False):
        ours.train(mode), ref.train(mode)
        assert torch.equal(ours(x), ref(x))
    assert torch.equal(ours.running_mean, ref.running_mean)  # training updated both alike
    with pytest.raises(ValueError, match="4D"):
        ours.eval()(torch.randn(3, 6, 5))
