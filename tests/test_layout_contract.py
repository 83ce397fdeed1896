"""The contract of a weights layout (nasscale.weights.layouts), checked once per entry of
``LAYOUTS`` on a network whose YAML states it, and the ``weights:`` data that selects them.

``LayoutContract`` holds the checks every layout must pass; each layout has one subclass naming
it and its representative network (``test_every_layout_has_a_contract`` fails for one without).
Where the reference fixtures (tests/fixtures/weights/, written from torchvision and timm by
benchmarks/reference/make_fixtures.py) record that network, its keys and shapes must be the
reference's exactly.  Nothing here needs torchvision or timm."""
from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

import pytest
import torch
import yaml

import nasscale
from nasscale.errors import NasscaleError, SpecError
from nasscale.grammar.yaml_io import dump_network, network_from_data, network_to_data
from nasscale.specs import NetworkSpec, WeightsLayout, resolve
from nasscale.weights import export_weights, load_weights, reference_keys, spec_for
from nasscale.weights.layouts import LAYOUTS, SOURCES, Layout, LayoutError, declared, layout
from nasscale.weights.seeded import seeded_tensor

FIXTURES = Path(__file__).parent / "fixtures" / "weights"


@functools.cache
def _reference(source: str) -> dict:
    with gzip.open(FIXTURES / f"{source}.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)["networks"]


@functools.cache
def _deploy_reference(source: str) -> dict:
    """The reference's deploy form of each re-parameterisable network (after its own
    re-parameterisation)."""
    with gzip.open(FIXTURES / f"{source}.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f).get("deploy", {})


@functools.cache
def _ours(network: str, source: str) -> dict[str, tuple[int, ...]]:
    """The module's state-dict keys and shapes as ``source`` builds the network (meta device)."""
    with torch.device("meta"):
        model = nasscale.build(spec_for(network, source))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@functools.cache
def _keys(network: str, source: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    return reference_keys(network, source)


def _seeded_module(network: str, source: str):
    """The network as ``source`` builds it, every floating-point tensor seeded from its name."""
    model = nasscale.build(spec_for(network, source))
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(seeded_tensor(key, t.shape))
    return model.eval()


class LayoutContract:
    """The checks every layout passes.  A subclass sets ``name`` (a key of ``LAYOUTS``) and
    ``network`` (a zoo network whose ``weights:`` states that layout; a small one: the round
    trip builds it twice)."""

    name: str = ""
    network: str = ""

    @property
    def cls(self) -> type[Layout]:
        return LAYOUTS[self.name]

    @property
    def source(self) -> str:
        return self.cls.source

    def made(self) -> Layout:
        return layout(resolve(spec_for(self.network, self.source)), self.source)

    # --- selection --------------------------------------------------------------------------
    def test_the_network_states_this_layout(self):
        spec = nasscale.zoo.get(self.network)
        stated = {w.source: w.layout for w in declared(spec)}
        assert stated.get(self.source) == self.name
        assert type(self.made()) is self.cls  # exactly this class, not a relative

    def test_the_layout_serves_one_known_source(self):
        assert self.source in SOURCES
        assert self.name.startswith({"torchvision": "tv_", "timm": "timm_"}[self.source])

    # --- normalisation ----------------------------------------------------------------------
    def test_the_bn_convention_is_declared(self):
        declaring = [c for c in self.cls.__mro__ if c is not Layout and "bn" in vars(c)]
        assert declaring, f"{self.cls.__name__} states no bn"
        bn = self.cls.bn
        if bn is not None:
            eps, momentum = bn
            assert 0 < eps < 1 and 0 < momentum <= 1

    def test_the_network_built_for_the_source_has_its_bn(self):
        spec = nasscale.zoo.get(self.network)
        built = spec_for(spec, self.source)
        with torch.device("meta"):
            model = nasscale.build(built)
        bns = {(m.eps, m.momentum) for m in model.modules()
               if isinstance(m, torch.nn.BatchNorm2d)}
        if self.cls.bn is None:  # the network's own norm is the reference's
            assert built == spec
        else:
            assert bns <= {tuple(self.cls.bn)}

    # --- the mapping ------------------------------------------------------------------------
    def test_the_mapping_covers_every_state_dict_key(self):
        ours = _ours(self.network, self.source)
        mapping = self.made().mapping(list(ours))
        assert list(mapping) == list(ours)

    def test_the_mapping_is_injective(self):
        names = [ref for ref, _ in _keys(self.network, self.source).values()]
        assert len(names) == len(set(names))

    def test_derived_tensors_are_not_mapped_ones(self):
        names = {ref for ref, _ in _keys(self.network, self.source).values()}
        assert not names & set(self.made().derived())

    def test_reference_shapes_only_add_or_drop_unit_axes(self):
        """A reference shape holds the same elements in the same order: a reshape both ways
        is lossless."""
        ours = _ours(self.network, self.source)
        for key, (ref, shape) in _keys(self.network, self.source).items():
            mine = ours[key]
            assert [d for d in shape if d != 1] == [d for d in mine if d != 1], (key, ref)
            if shape != mine:
                t = torch.arange(torch.Size(mine).numel(), dtype=torch.float32).reshape(mine)
                assert torch.equal(t.reshape(shape).reshape(mine), t)

    def test_keys_and_shapes_are_the_references(self):
        """Where the fixtures record the network: the reference's names and shapes exactly,
        and the derived tensors are the rest of the reference's state dict."""
        fixture = _reference(self.source).get(self.network)
        if fixture is None:
            pytest.skip(f"no {self.source} fixture of {self.network}")
        ref = {k: tuple(s) for k, s in fixture["tensors"]}
        mapped = {r: s for r, s in _keys(self.network, self.source).values()}
        derived = set(self.made().derived())
        assert set(mapped) | derived == set(ref)
        assert not set(mapped) & derived
        assert mapped == {k: ref[k] for k in mapped}

    # --- round trip -------------------------------------------------------------------------
    def test_export_then_load_gives_identical_tensors(self):
        model = _seeded_module(self.network, self.source)
        exported = export_weights(model, self.network, target=self.source)
        assert set(exported) == ({r for r, _ in _keys(self.network, self.source).values()}
                                 | set(self.made().derived()))
        if self.cls.metadata:  # module versions the reference's load_state_dict reads
            assert exported._metadata == self.cls.metadata
        again = load_weights(self.network, exported, source=self.source)
        a, b = model.state_dict(), again.state_dict()
        assert list(a) == list(b)
        assert all(torch.equal(a[k], b[k]) for k in a)
        twice = export_weights(again, self.network, target=self.source)
        assert list(twice) == list(exported)
        assert all(torch.equal(twice[k], exported[k]) for k in exported)


    # --- the deploy form of a re-parameterisable network -------------------------------------
    def test_the_deploy_form_maps_to_the_references_deploy_form(self):
        """Fused with ``nasscale.reparameterize``, the network's tensors take the names and
        shapes of the reference's own deploy form, and export then load gives them back."""
        if not nasscale.zoo.get(self.network).reparameterizable:
            pytest.skip(f"{self.network} trains and deploys in one form")
        deploy = spec_for(self.network, self.source).deploy_form()
        mapped = {r: s for r, s in reference_keys(deploy, self.source).values()}
        fixture = _deploy_reference(self.source).get(self.network)
        if fixture is not None:
            assert mapped == {k: tuple(s) for k, s in fixture["tensors"]}
        model = nasscale.reparameterize(_seeded_module(self.network, self.source))
        exported = export_weights(model, deploy, target=self.source)
        assert set(exported) == set(mapped)
        again = load_weights(deploy, exported, source=self.source)
        a, b = model.state_dict(), again.state_dict()
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)


# --- one contract per layout ------------------------------------------------------------------

class TestTvMobileNetV2(LayoutContract):
    name, network = "tv_mobilenet_v2", "mobilenet_v2"


class TestTvMobileNetV3(LayoutContract):
    name, network = "tv_mobilenet_v3", "mobilenet_v3_small"


class TestTvMNASNet(LayoutContract):
    name, network = "tv_mnasnet", "mnasnet0_5"


class TestTvEfficientNet(LayoutContract):
    name, network = "tv_efficientnet", "efficientnet_b0"


class TestTvEfficientNetV2(LayoutContract):
    name, network = "tv_efficientnet_v2", "efficientnet_v2_s"


class TestTvConvNeXt(LayoutContract):
    name, network = "tv_convnext", "convnext_tiny"


class TestTvViT(LayoutContract):
    name, network = "tv_vit", "vit_b_32"


class TestTvSwin(LayoutContract):
    name, network = "tv_swin", "swin_t"


class TestTimmEfficientNet(LayoutContract):  # its MobileNetV3 head: conv_head as a 1x1 conv
    name, network = "timm_efficientnet", "mobilenet_v3_small"


class TestTimmLCNet(LayoutContract):
    name, network = "timm_lcnet", "lcnet_050"


class TestTimmMobileNetV4(LayoutContract):  # UIB, Fused-IB, conv and Mobile MQA blocks
    name, network = "timm_mobilenet_v4", "mobilenet_v4_hybrid_medium"


class TestTimmConvNeXt(LayoutContract):  # conv_mlp: its fc weights gain two unit axes
    name, network = "timm_convnext", "convnext_v2_atto"


class TestTimmViT(LayoutContract):
    name, network = "timm_vit", "vit_b_32"


class TestTimmSwin(LayoutContract):
    name, network = "timm_swin", "swin_t"


class TestTimmMobileViT(LayoutContract):
    name, network = "timm_mobilevit", "mobilevit_xxs"


class TestTimmMobileOne(LayoutContract):  # re-parameterisable: both forms
    name, network = "timm_mobileone", "mobileone_s0"


class TestTimmRepViT(LayoutContract):  # re-parameterisable blocks and head: both forms
    name, network = "timm_repvit", "repvit_m0_9"


class TestTimmFastViT(LayoutContract):  # re-parameterisable blocks, attention: both forms
    name, network = "timm_fastvit", "fastvit_sa12"


CONTRACTS = LayoutContract.__subclasses__()


# --- the registry and the data that selects from it -------------------------------------------

def _stated_in_yaml():
    """Every ``weights:`` of the family files as written: (file, where, source, layout)."""
    out = []
    for path in sorted((nasscale.zoo.spaces_dir() / "archs").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        places = [("", data)] + [(f"{section}.{n}", body)
                                 for section in ("networks", "variants")
                                 for n, body in (data.get(section) or {}).items()]
        for where, body in places:
            for source, value in (body.get("weights") or {}).items():
                name = value["layout"] if isinstance(value, dict) else value
                out.append((path.name, where, source, name))
    return out


def test_every_layout_has_a_contract():
    assert sorted(c.name for c in CONTRACTS) == sorted(LAYOUTS)


def test_every_layout_name_in_the_yaml_is_registered_for_its_source():
    stated = _stated_in_yaml()
    assert stated
    for file, where, source, name in stated:
        assert name in LAYOUTS, (file, where, name)
        assert LAYOUTS[name].source == source, (file, where, source, name)


def test_every_registered_layout_is_used_by_a_network():
    used = {w.layout for name in nasscale.names() for w in declared(nasscale.zoo.get(name))}
    assert used == set(LAYOUTS), f"no network states {set(LAYOUTS) - used}"


def test_every_named_network_states_its_layouts_and_they_map():
    """Every zoo network states at least one source, and each stated layout maps it."""
    for name in nasscale.names():
        spec = nasscale.zoo.get(name)
        assert spec.weights, name
        for w in spec.weights:
            names = [r for r, _ in _keys(name, w.source).values()]
            assert len(names) == len(set(names)), (name, w.source)


def test_networks_override_their_family_and_variants_take_their_base():
    weights = {n: {w.source: (w.layout, w.options) for w in nasscale.zoo.get(n).weights}
               for n in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v2_050", "mobilenet_v3_large",
                         "mobilenet_v3_small_075", "convnext_v2_atto", "convnext_v2_femto",
                         "convnext_v2_tiny", "convnext_v2_large", "mnasnet1_0", "mnasnet0_5",
                         "mnasnet_a1", "efficientnet_b7")}
    assert weights["mobilenet_v1"] == {"timm": ("timm_efficientnet", ())}
    assert weights["mobilenet_v2"]["torchvision"] == ("tv_mobilenet_v2", ())
    assert weights["mobilenet_v2_050"] == weights["mobilenet_v2"]  # a variant: its base's
    assert weights["mobilenet_v3_large"]["torchvision"] == ("tv_mobilenet_v3", ())
    assert weights["mobilenet_v3_small_075"] == weights["mobilenet_v3_large"]
    mlp = {"timm": ("timm_convnext", (("conv_mlp", True),))}
    assert weights["convnext_v2_atto"] == weights["convnext_v2_femto"] == mlp
    assert weights["convnext_v2_tiny"] == weights["convnext_v2_large"] == {
        "timm": ("timm_convnext", ())}
    assert weights["mnasnet1_0"] == weights["mnasnet0_5"] == {
        "torchvision": ("tv_mnasnet", ()), "timm": ("timm_efficientnet", ())}
    assert weights["mnasnet_a1"] == {"timm": ("timm_efficientnet", ())}
    assert weights["efficientnet_b7"]["torchvision"] == ("tv_efficientnet", ())


def test_a_search_space_member_takes_its_familys_layouts():
    """A sampled network states no weights; its ``family`` (the space's) names the family file
    whose family-level ``weights:`` it takes."""
    import random

    from nasscale.search.space import RandomSuggester
    from nasscale.search.space_io import load_space

    for space, expect in (("mobilenet_v3_like", ("tv_mobilenet_v3", "timm_efficientnet")),
                          ("efficientnet_like", ("tv_efficientnet", "timm_efficientnet")),
                          ("mobilenet_v4_like", (None, "timm_mobilenet_v4")),
                          ("mobilevit_hybrid", (None, "timm_mobilevit"))):
        spec = load_space(space).sample(RandomSuggester(random.Random(0)))
        assert not spec.weights
        got = {w.source: w.layout for w in declared(spec)}
        assert (got.get("torchvision"), got.get("timm")) == expect, space
        for source in got:
            assert type(layout(resolve(spec), source)) is LAYOUTS[got[source]]


def test_scaled_networks_keep_their_layouts():
    from nasscale.scaling import scale

    spec = scale(nasscale.zoo.get("convnext_v2_atto"), width=3.0, name="big_atto")
    assert spec.weights == nasscale.zoo.get("convnext_v2_atto").weights
    assert layout(resolve(spec), "timm").settings == {"conv_mlp": True}


def test_a_missing_source_names_the_network_the_source_and_what_it_has():
    with pytest.raises(LayoutError, match=r"torchvision has no counterpart of lcnet_050 \(its "
                                          r"weights: lists timm only\); use source='timm'"):
        reference_keys("lcnet_050", "torchvision")
    bare = nasscale.zoo.get("mobilenet_v2").replace(weights=(), family="", name="mine")
    with pytest.raises(LayoutError, match=r"mine states no weights layout.*add weights: "
                                          r"\{timm: LAYOUT\} \(one of timm_efficientnet"):
        reference_keys(bare, "timm")


# --- the YAML field ---------------------------------------------------------------------------

def test_weights_round_trip_losslessly_with_options():
    for name in ("convnext_v2_atto", "mobilenet_v2", "mnasnet_a1", "swin_t"):
        spec = nasscale.zoo.get(name)
        assert network_from_data(network_to_data(spec)) == spec
        assert network_from_data(yaml.safe_load(dump_network(spec))) == spec
    text = dump_network(nasscale.zoo.get("convnext_v2_atto"))
    assert "weights: {timm: {layout: timm_convnext, conv_mlp: true}}\n" in text
    spec = nasscale.zoo.get("swin_t").replace(weights=(WeightsLayout("timm", "timm_swin"),))
    assert network_from_data(network_to_data(spec)).weights == spec.weights
    bare = spec.replace(weights=())
    assert "weights" not in network_to_data(bare)
    assert network_from_data(network_to_data(bare)) == bare


@pytest.mark.parametrize("weights, message", [
    ({"keras": "tv_vit"}, r"weights.keras: unknown field.*allowed: torchvision, timm"),
    ({"timm": {"conv_mlp": True}}, r"weights.timm: missing field 'layout'"),
    ({"timm": ["timm_vit"]}, r"weights.timm: must be a layout name or a mapping"),
    ("timm_vit", r"weights: must be a mapping"),
])
def test_bad_weights_name_the_field(weights, message):
    data = {**network_to_data(nasscale.zoo.get("vit_b_32")), "weights": weights}
    with pytest.raises(SpecError, match=message):
        network_from_data(data)


@pytest.mark.parametrize("weights,message", [
    ({"timm": "timm_vitt"}, r"vit_b_32: weights.timm: layout: unknown timm layout 'timm_vitt' "
                            r"\(did you mean 'timm_vit'\?\)"),
    ({"timm": "tv_vit"}, r"weights.timm: layout: 'tv_vit' is a torchvision layout, not timm's"),
    ({"timm": {"layout": "timm_convnext", "conv_mlpp": True}},
     r"weights.timm: conv_mlpp: unknown option of layout timm_convnext .*its options: conv_mlp"),
    ({"timm": {"layout": "timm_convnext", "conv_mlp": 1}},
     r"weights.timm: conv_mlp: must be a bool .*got 1"),
    ({"timm": {"layout": "timm_vit", "conv_mlp": True}},
     r"weights.timm: conv_mlp: unknown option of layout timm_vit; its options: none"),
])
def test_a_layout_name_or_option_is_checked_when_weights_are_used(weights, message):
    """The grammar reads the form; the weights layer (above it) checks names and options."""
    from nasscale.specs import resolve
    from nasscale.weights.layouts import layout

    spec = network_from_data({**network_to_data(nasscale.zoo.get("vit_b_32")),
                              "weights": weights})
    with pytest.raises(LayoutError, match=message):
        layout(resolve(spec), "timm")


def test_a_bad_layout_in_a_network_file_names_the_network_and_field(tmp_path):
    text = dump_network(nasscale.zoo.get("mobilenet_v3_small")).replace(
        "weights: {torchvision: tv_mobilenet_v3", "weights: {torchvision: tv_mobilenet_v4")
    path = tmp_path / "net.yaml"
    path.write_text(text)
    line = 1 + text.splitlines().index(next(x for x in text.splitlines()
                                            if x.startswith("weights:")))
    assert line > 1
    from nasscale.specs import resolve
    from nasscale.weights.layouts import layout

    with pytest.raises(NasscaleError, match=r"weights.torchvision: layout: unknown torchvision "
                                            r"layout 'tv_mobilenet_v4'"):
        layout(resolve(nasscale.load(str(path))), "torchvision")


def test_a_spec_made_in_code_with_an_unknown_layout_is_a_layout_error():
    spec = nasscale.zoo.get("vit_b_32").replace(weights=(WeightsLayout("timm", "timm_vt"),))
    assert isinstance(spec, NetworkSpec)
    with pytest.raises(LayoutError, match=r"vit_b_32: weights.timm: layout: unknown timm "
                                          r"layout 'timm_vt'"):
        layout(resolve(spec), "timm")
    with pytest.raises(SpecError, match="one layout per source"):
        spec.replace(weights=(WeightsLayout("timm", "timm_vit"), WeightsLayout("timm", "timm_vit")))
