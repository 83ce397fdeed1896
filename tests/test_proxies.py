"""Zero-cost proxies: the formulas on hand-checkable networks, determinism, evaluators."""
import math

import pytest
import torch
from torch import nn

import nasscale
from nasscale.scoring.evaluators import CostEvaluator, ProxyEvaluator, arch_seed, load_callable
from nasscale.scoring.proxies import naswot, synflow


def test_naswot_kernel_matches_hamming_definition():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 7), nn.ReLU())
    x = torch.randn(6, 5)
    codes = []
    h = model[1](model[0](x))
    codes.append(h > 0)
    codes.append(model[3](model[2](h)) > 0)
    c = torch.cat(codes, 1).double()
    units = c.shape[1]
    hamming = (c[:, None, :] != c[None, :, :]).sum(-1).double()
    expected = torch.linalg.slogdet(units - hamming)[1]
    assert naswot(model, x) == pytest.approx(float(expected))


def test_naswot_of_identical_inputs_is_minus_infinity():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    x = torch.ones(3, 4)
    assert naswot(model, x) == float("-inf")


def test_synflow_of_a_positive_two_layer_net_is_twice_its_output():
    # R(θ) is homogeneous of degree 2 in the parameters, so Σ θ ∂R/∂θ = 2 R
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(12.0).reshape(4, 3) - 5)
        model[2].weight.copy_(torch.arange(8.0).reshape(2, 4) - 3)
    w1, w2 = (model[i].weight.detach().abs().double() for i in (0, 2))
    r = float((w2 @ (w1 @ torch.ones(3, dtype=torch.float64))).sum())
    assert synflow(model, (1, 3)) == pytest.approx(math.log10(2 * r))
    assert model[0].weight.min() < 0  # the caller's model is not modified


@pytest.mark.parametrize("proxy", ["naswot", "synflow"])
def test_proxy_scores_are_deterministic_for_a_seed(proxy):
    spec = nasscale.load("mobilenet_v3_small")
    ev = ProxyEvaluator(proxy=proxy, batch_size=8, resolution=64)
    seed = arch_seed(0, spec)
    assert ev.score(spec, seed) == ev.score(spec, seed)
    assert math.isfinite(ev.score(spec, seed))


def test_arch_seed_depends_on_architecture_and_study_seed_only():
    a, b = nasscale.load("mobilenet_v3_small"), nasscale.load("mobilenet_v3_large")
    assert arch_seed(0, a) == arch_seed(0, a.replace(name="other"))
    assert arch_seed(0, a) != arch_seed(0, b)
    assert arch_seed(0, a) != arch_seed(1, a)


def test_cost_evaluator_baselines():
    spec = nasscale.load("mobilenet_v2")
    assert CostEvaluator("flops").score(spec, 0) == 300_774_272
    assert CostEvaluator("params").score(spec, 0) == 3_504_872
    with pytest.raises(nasscale.NasscaleError, match="'flops' or 'params'"):
        CostEvaluator("latency")


def test_user_evaluator_loading_errors():
    assert load_callable("python:math:sqrt")(4) == 2
    for bad, msg in [("math.sqrt", "must look like"), ("python:nope_mod:f", "cannot import"),
                     ("python:math:nothing", "no callable 'nothing'")]:
        with pytest.raises(nasscale.NasscaleError, match=msg):
            load_callable(bad)
