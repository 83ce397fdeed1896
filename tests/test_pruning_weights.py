"""Weights carried into a pruned network: the kept filters are the largest, and removing only
all-zero filters leaves the network's function unchanged."""
from __future__ import annotations

import random

import pytest
import torch

import nasscale
from nasscale.modules import build_network
from nasscale.pruning import prunable, prune, width_groups
from nasscale.specs import resolve
from nasscale.transfer.carry import (
    _segments,
    bindings,
    block_axes,
    block_modules,
    carry_weights,
    check_covered,
    head_axes,
)


def _zero_rows(tensor, axis0, sizes, names, group, rows):
    offset = 0
    for seg in _segments(axis0):
        seg = seg.lstrip(".")
        if names.get(seg) == group:
            tensor[offset + rows] = 0
        offset += sizes[seg]


def zero_channels(model, rn, groups, widths, rng):
    """Make the channels pruning will remove exactly zero: their producing filters, biases and
    BatchNorm affine parameters (so the BN output is 0), and the SE squeeze channels a smaller
    expanded width drops.  Returns the removed channel indices of each group."""
    from nasscale.transfer.carry import _sizes

    removed = {g.name: torch.tensor(sorted(rng.sample(range(g.width), g.width - widths[g.name])))
               for g in groups if g.name in widths}
    new_rn = resolve(prune(rn.spec, widths, groups))
    with torch.no_grad():
        for module, rb, new_rb, names in zip(block_modules(model), rn.blocks, new_rn.blocks,
                                             bindings(rn, groups)):
            sizes = _sizes(rb)
            axes = block_axes(module, rb)
            drop_se = None
            if sizes.get("se") and sizes["se"] != new_rb.widths.get("se"):
                drop_se = torch.tensor(rng.sample(range(sizes["se"]),
                                                  sizes["se"] - new_rb.widths["se"]))
            for name, t in [*module.named_parameters(), *module.named_buffers()]:
                ax = axes.get(name)
                if ax is None or ax[0] is None or name.endswith(("running_mean", "running_var")):
                    continue
                for group, rows in removed.items():
                    _zero_rows(t, ax[0], sizes, names, group, rows)
                if drop_se is not None and ax[0] == "se":
                    t[drop_se] = 0
        head = dict(model.head.named_parameters())
        for k in range(len(rn.head.hidden)):
            rows = removed.get(f"head.hidden[{k}]")
            if rows is not None:
                head[f"hidden.{2 * k}.weight"][rows] = 0
                head[f"hidden.{2 * k}.bias"][rows] = 0
    return removed


def random_widths(groups, rng, n=6):
    widths = {}
    for g in rng.sample(groups, min(n, len(groups))):
        below = g.widths_below()
        if below:
            widths[g.name] = rng.choice(below[:4])
    return widths


def _pruned_pair(name, widths_fn, resolution=64, seed=0):
    spec = prunable(nasscale.load(name)).replace(resolution=resolution)
    groups = width_groups(spec)
    rn = resolve(spec)
    torch.manual_seed(seed)
    model = build_network(spec).eval()
    rng = random.Random(seed)
    for _ in range(20):  # some width draws change the structure; prune() refuses those
        widths = widths_fn(groups, rng)
        try:
            new = prune(spec, widths, groups)
            break
        except nasscale.SpecError:
            continue
    return spec, groups, rn, model, new, widths, rng


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "efficientnet_b0", "mobilenet_v2",
                                  "mobilenet_v1", "efficientnet_v2_s", "mobilenet_v3_small",
                                  "mnasnet0_5", "mnasnet_a1", "efficientnet_lite0",
                                  "efficientnet_edgetpu_s", "lcnet_050"])
def test_removing_zero_filters_keeps_outputs(name):
    spec, groups, rn, model, new, widths, rng = _pruned_pair(name, random_widths)
    assert widths
    zero_channels(model, rn, groups, widths, rng)
    small = build_network(new).eval()
    carry_weights(model, rn, small, resolve(new), groups, widths)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = model(x), small(x)
    assert nasscale.count(new).params < nasscale.count(spec).params
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_every_group_of_mobilenet_v3_pruned_at_once_keeps_outputs():
    def all_groups(groups, rng):
        return {g.name: g.widths_below()[0] for g in groups if g.widths_below()}

    spec, groups, rn, model, new, widths, rng = _pruned_pair("mobilenet_v3_large", all_groups)
    assert len(widths) == len(groups)
    zero_channels(model, rn, groups, widths, rng)
    small = build_network(new).eval()
    carry_weights(model, rn, small, resolve(new), groups, widths)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(small(x), model(x), rtol=1e-4, atol=1e-5)


def test_kept_filters_are_the_largest():
    spec = prunable(nasscale.load("mobilenet_v1")).replace(resolution=32)
    groups = width_groups(spec)
    rn = resolve(spec)
    torch.manual_seed(0)
    model = build_network(spec).eval()
    group = groups[1]  # stages[0].out: a plain pointwise conv's 64 filters
    pw = block_modules(model)[1].pw[0].weight
    norms = pw.detach().reshape(pw.shape[0], -1).norm(dim=1)
    new = prune(spec, {group.name: 40}, groups)
    small = build_network(new)
    carry_weights(model, rn, small, resolve(new), groups, {group.name: 40})
    kept = torch.sort(torch.topk(norms, 40).indices).values
    torch.testing.assert_close(block_modules(small)[1].pw[0].weight, pw[kept])
    # the next block's depthwise conv reads the same channels
    torch.testing.assert_close(block_modules(small)[2].dw[0].weight,
                               block_modules(model)[2].dw[0].weight[kept])


@pytest.mark.parametrize("name,resolution", [("convnext_tiny", 64), ("mobilevit_xxs", 64),
                                             ("swin_t", 224), ("vit_b_32", 64),
                                             ("convnext_v2_atto", 64),
                                             ("mobilevit_v2_050", 64)])
def test_layer_norm_and_attention_networks_carry_weights(name, resolution):
    """LayerNorm mixes channels, so zero filters do change these outputs; check instead that
    every tensor is a slice of the original and the pruned network runs."""
    spec, groups, rn, model, new, widths, _ = _pruned_pair(name, random_widths, resolution)
    small = build_network(new).eval()
    carry_weights(model, rn, small, resolve(new), groups, widths)
    old = dict(model.named_parameters())
    for pname, p in small.named_parameters():
        src = old[pname]
        assert p.dim() == src.dim()
        assert all(a <= b for a, b in zip(p.shape, src.shape)), pname
        if p.shape == src.shape:
            torch.testing.assert_close(p, src)
    with torch.no_grad():
        assert small(torch.randn(1, 3, resolution, resolution)).shape == (1, 1000)


def test_attention_widths_keep_head_structure():
    spec = prunable(nasscale.load("swin_t"))
    groups = width_groups(spec)
    att = [g for g in groups if g.role == "attention"]
    assert att and all(g.unit == 32 for g in att)  # Swin keeps its head dimension, 32
    new = prune(spec, {att[0].name: 64}, groups)
    assert resolve(new).blocks[1].spec.num_heads == 2
    vit = width_groups(prunable(nasscale.load("mobilevit_xxs")))
    mv = [g for g in vit if g.role == "attention"]
    assert mv and all(g.unit == 8 for g in mv)  # MobileViT keeps its 4 heads: lcm(8, 4)


@pytest.mark.parametrize("name", ["mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
                                  "mobilevit_xs", "swin_t", "vit_b_16", "efficientnet_v2_s",
                                  "mobilenet_v1", "mobilenet_v2", "mobilevit_v2_100"])
def test_axes_registry_covers_every_tensor(name):
    spec = prunable(nasscale.load(name))
    if nasscale.count(spec).params > 100e6:
        pytest.skip("big")
    torch.manual_seed(0)
    with torch.device("meta"):
        model = build_network(spec)
    assert check_covered(model, resolve(spec)) == []
    assert head_axes(model, resolve(spec))
