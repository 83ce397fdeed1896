"""Analytic costs against the built module: params == numel(), FLOPs == fvcore, exactly."""
import pytest
import torch

import nasscale
from nasscale import zoo
from nasscale.costs import Cost, network_cost
from nasscale.costs.analytic import COSTS
from nasscale.costs.fvcore_count import fvcore_count
from nasscale.specs import BLOCK_KINDS, resolve
from nasscale.specs.random import random_network

from conftest import affordable

# the networks of the family files; their scaled variants (B1-B7, L2, width multipliers) are
# built and checked on the meta device in tests/test_variants.py
NETWORKS = [n for n, e in zoo.entries().items() if e.section == "networks"]


def built_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", NETWORKS)
def test_named_architecture_analytic_equals_built_module_and_fvcore(name):
    full = nasscale.load(name)
    with torch.device("meta"):  # every parameter of the full network, without initialising it
        assert nasscale.count(full).params == built_params(nasscale.build(full))
    spec = affordable(full)  # networks over 100M params: traced at full resolution, <= 2 repeats
    cost = nasscale.count(spec)
    model = nasscale.build(spec)
    assert cost.params == built_params(model)
    counted = fvcore_count(model, torch.zeros(1, 3, spec.resolution, spec.resolution))
    assert cost.flops == counted.flops
    # what fvcore saw but the convention does not count is reported, never silently dropped
    assert not set(counted.not_counted) & {"aten::_convolution", "aten::linear", "aten::addmm"}


@pytest.mark.parametrize("seed", range(40))
def test_random_networks_analytic_equals_built_module_and_fvcore(seed):
    spec = random_network(seed)
    cost = nasscale.count(spec)
    model = nasscale.build(spec)
    assert cost.params == built_params(model)
    assert cost.flops == fvcore_count(model, torch.zeros(1, 3, spec.resolution,
                                                         spec.resolution)).flops


@pytest.mark.parametrize("resolution", [96, 160, 231])
def test_flops_at_other_resolutions(resolution):
    spec = nasscale.load("mobilenet_v3_large")
    model = nasscale.build(spec)
    expected = fvcore_count(model, torch.zeros(1, 3, resolution, resolution)).flops
    assert nasscale.count(spec, resolution).flops == expected
    assert nasscale.count(spec, resolution).params == nasscale.count(spec).params


def test_cost_breakdown_adds_up():
    cost = nasscale.count("convnext_tiny")
    total = cost.total
    assert total.conv + total.linear + total.attention == cost.flops
    assert Cost.total(cost.blocks) + cost.head == total
    assert total.linear > 0 and total.attention == 0


def test_count_accepts_names_specs_and_paths(tmp_path):
    spec = nasscale.load("mobilenet_v2")
    path = tmp_path / "m.yaml"
    path.write_text(nasscale.dump_network(spec))
    assert (nasscale.count("mobilenet_v2").flops == nasscale.count(spec).flops
            == nasscale.count(str(path)).flops)


def test_count_does_not_import_torch_modules():
    import subprocess
    import sys

    code = ("import sys, nasscale; nasscale.count('efficientnet_b0'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_kind_has_a_cost_formula():
    assert set(COSTS) == set(BLOCK_KINDS.values())


def test_unknown_kind_is_an_error_not_zero():
    from dataclasses import dataclass

    from nasscale.errors import SpecError
    from nasscale.specs import BlockSpec, HeadSpec, NetworkSpec, StageSpec

    @dataclass(frozen=True)
    class Mystery(BlockSpec):
        kind = "mystery"
        out_channels: int = 8
        kernel_size: int = 3

    net = NetworkSpec(name="m", stem=(), stages=(StageSpec(Mystery()),), head=HeadSpec())
    with pytest.raises(SpecError, match="no cost formula"):
        network_cost(resolve(net))
