"""Weights in and out (nasscale.weights): the recorded torchvision/timm names and shapes, the
seeded outputs of their reference models, round trips, normalisation as data, bad files.

The fixtures (tests/fixtures/weights/) were written by benchmarks/reference/make_fixtures.py in
the reference venv; these tests need neither torchvision nor timm."""
import gzip
import json
from pathlib import Path

import pytest
import torch

import nasscale
from nasscale.errors import NasscaleError
from nasscale.grammar.yaml_io import network_from_data, network_to_data
from nasscale.specs import NormPolicy
from nasscale.weights import (
    WeightsError,
    detect_source,
    load_weights,
    reference_keys,
    spec_for,
)
from nasscale.weights.seeded import seeded_tensor

from conftest import assert_exports_back

FIXTURES = Path(__file__).parent / "fixtures" / "weights"


def _fixture(source):
    with gzip.open(FIXTURES / f"{source}.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)["networks"]


REFS = {s: _fixture(s) for s in ("torchvision", "timm")}
CASES = [(s, n) for s, nets in REFS.items() for n in nets]


def _ref_state(source, net, salt=""):
    """The reference model's state dict rebuilt from its names and shapes, seeded by name."""
    out = {}
    for key, shape in REFS[source][net]["tensors"]:
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(0)
        elif key.endswith("relative_position_index"):
            from nasscale.modules.attention import relative_position_index
            w = int(round(((shape[0]) ** 0.5) ** 0.5))
            out[key] = relative_position_index(w).flatten()
        else:
            out[key] = seeded_tensor(salt + key, shape)
    return out


@pytest.mark.parametrize("source,net", CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_every_reference_tensor_is_mapped_once_with_its_shape(source, net):
    ref = {k: tuple(s) for k, s in REFS[source][net]["tensors"]}
    mapped = reference_keys(net, source)
    names = [r for r, _ in mapped.values()]
    assert len(names) == len(set(names))  # each reference tensor used once
    derived = {k for k in ref if k.endswith("relative_position_index")}
    assert set(names) == set(ref) - derived
    assert {r: s for r, s in mapped.values()} == {k: ref[k] for k in names}
    assert REFS[source][net]["params"] == nasscale.count(net).params


@pytest.mark.parametrize("source,net", CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_the_network_built_for_a_source_has_its_normalisation(source, net):
    """spec_for(NAME, source) has the reference's BatchNorm and LayerNorm constants; for the
    zoo's own reference that is the YAML's norm (the network computes its function)."""
    fix = REFS[source][net]
    spec = spec_for(net, source)
    with torch.device("meta"):
        model = nasscale.build(spec)
    bn = sorted({(m.eps, m.momentum) for m in model.modules()
                 if isinstance(m, torch.nn.BatchNorm2d)})
    ln = sorted({m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)})
    assert [list(x) for x in bn] == fix["bn"]
    assert ln == fix["ln"]
    if nasscale.zoo.get(net).reference.startswith({"torchvision": "torchvision",
                                                   "timm": "timm " + fix["model"]}[source]):
        assert spec == nasscale.zoo.get(net)


OUTPUTS = json.loads((FIXTURES / "outputs.json").read_text())


@pytest.mark.parametrize("row", OUTPUTS, ids=[f"{r['source']}-{r['network']}" for r in OUTPUTS])
def test_converted_weights_compute_the_reference_output(row):
    """The reference's logits on a seeded input, with every tensor seeded from its name, are
    reproduced by the nasscale module holding the converted weights."""
    model = load_weights(row["network"], _ref_state(row["source"], row["network"]),
                         source=row["source"])
    x = torch.randn(2, 3, row["size"], row["size"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    want = torch.tensor(row["logits"])
    assert float((y - want).abs().max() / want.abs().max()) < 1e-4


@pytest.mark.parametrize("net", ["mobilenet_v3_large", "efficientnet_v2_s", "convnext_tiny",
                                 "swin_t", "vit_b_32"])
def test_round_trip_nasscale_torchvision_nasscale(net):
    state = _ref_state("torchvision", net)
    model = load_weights(net, state, source="torchvision")
    assert_exports_back(model, net, state, "torchvision")


def test_timm_weights_build_timms_batchnorm_and_detect_their_source():
    state = _ref_state("timm", "mobilenet_v3_large")
    assert detect_source("mobilenet_v3_large", state) == "timm"
    model = load_weights("mobilenet_v3_large", state, source="auto")
    assert model.spec.norm.bn == (1e-5, 0.1)  # timm's; the zoo (torchvision) says 1e-3, 0.01
    assert nasscale.zoo.get("mobilenet_v3_large").norm.bn == (1e-3, 0.01)


def test_missing_extra_and_misshaped_tensors_are_named(tmp_path):
    state = _ref_state("torchvision", "mobilenet_v3_small")
    bad = dict(state)
    del bad["features.1.block.0.0.weight"]
    with pytest.raises(WeightsError, match=r"missing: 'features.1.block.0.0.weight'"):
        load_weights("mobilenet_v3_small", bad, source="torchvision")
    bad = {**state, "features.99.weight": torch.zeros(1)}
    with pytest.raises(WeightsError, match=r"unexpected tensor\(s\): 'features.99.weight'"):
        load_weights("mobilenet_v3_small", bad, source="torchvision")
    bad = {**state, "classifier.3.weight": torch.zeros(10, 1024)}
    with pytest.raises(WeightsError, match=r"'classifier.3.weight' has shape \[10, 1024\], the "
                                           r"network needs \[1000, 1024\]"):
        load_weights("mobilenet_v3_small", bad, source="torchvision")
    path = tmp_path / "tv.pt"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"tv.pt: not timm weights of mobilenet_v3_small.*"
                                           r"look like torchvision"):
        load_weights("mobilenet_v3_small", str(path), source="timm")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(NasscaleError, match="junk.pt: cannot read a checkpoint"):
        load_weights("mobilenet_v3_small", str(tmp_path / "junk.pt"), source="torchvision")
    with pytest.raises(NasscaleError,
                       match="torchvision has no counterpart of mobilevit_xxs .*timm only"):
        load_weights("mobilevit_xxs", state, source="torchvision")
    with pytest.raises(WeightsError, match="source must be one of nasscale, torchvision, timm"):
        load_weights("mobilevit_xxs", state, source="keras")


def test_norm_is_data_lossless_with_stage_overrides():
    spec = nasscale.zoo.get("efficientnet_b0")
    stages = list(spec.stages)
    stages[2] = stages[2].replace(norm=NormPolicy(bn_eps=1e-2))
    spec = spec.replace(stages=tuple(stages), norm=NormPolicy(bn_eps=1e-3, bn_momentum=0.01))
    assert network_from_data(network_to_data(spec)) == spec
    import yaml

    from nasscale.grammar.yaml_io import dump_network

    assert network_from_data(yaml.safe_load(dump_network(spec))) == spec
    model = nasscale.build(spec)
    assert model.stages[2][0].dw[1].eps == 1e-2 and model.stages[2][0].dw[1].momentum == 0.01
    assert model.stages[1][0].dw[1].eps == 1e-3
    with pytest.raises(NasscaleError, match=r"norm.bn_eps: .*a number > 0"):
        network_from_data({**network_to_data(spec), "norm": {"bn_eps": -1}})
    with pytest.raises(NasscaleError, match=r"norm.bn_epsilon: unknown field"):
        network_from_data({**network_to_data(spec), "norm": {"bn_epsilon": 1e-3}})


def test_cli_converts_and_names_bad_files(tmp_path, capsys):
    from nasscale.cli import main

    src = tmp_path / "timm.pt"
    torch.save(_ref_state("timm", "mobilenet_v3_small"), src)
    out = tmp_path / "ours.pt"
    assert main(["weights", "convert", "mobilenet_v3_small", str(src), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "244 tensors" in text and "use " in text and (tmp_path / "ours.yaml").exists()
    spec = nasscale.load(str(tmp_path / "ours.yaml"))
    model = load_weights(spec, str(out), source="nasscale")
    assert model.spec.norm.bn == (1e-5, 0.1)
    tv = tmp_path / "tv.pt"
    assert main(["weights", "convert", "mobilenet_v3_small", str(src), "--to", "torchvision",
                 "-o", str(tv)]) == 0
    assert set(torch.load(tv)) == {k for k, _ in REFS["torchvision"]["mobilenet_v3_small"]
                                   ["tensors"]}
    assert main(["weights", "convert", "mobilenet_v3_large", str(src), "-o", str(out)]) == 2
    assert "not timm weights of mobilenet_v3_large" in capsys.readouterr().err


def test_prune_reads_torchvision_weights(tmp_path):
    """The pruner converts a torchvision checkpoint before it prunes (and the conversion is
    exact: the same module as load_weights)."""
    from nasscale.modules.checkpoint import read_checkpoint
    from nasscale.pruning.run import _from_reference

    path = tmp_path / "tv.pt"
    torch.save(_ref_state("torchvision", "mobilenet_v3_small"), path)
    spec, ckpt = _from_reference(nasscale.zoo.get("mobilenet_v3_small"),
                                 read_checkpoint(str(path)), "--weights", lambda *_: None)
    assert ckpt.num_classes == 1000 and "head.classifier.weight" in ckpt.state_dict
    assert spec == nasscale.zoo.get("mobilenet_v3_small")


def test_train_fine_tunes_from_timm_weights_with_a_new_classifier(tmp_path):
    from nasscale.scoring.train_job import _start_from

    path = tmp_path / "timm.pt"
    state = _ref_state("timm", "mobilenet_v3_small")
    torch.save(state, path)
    base = nasscale.zoo.get("mobilenet_v3_small")
    spec, model = _start_from(str(path), base.replace(num_classes=10, resolution=32), base)
    assert spec.num_classes == 10 and spec.norm.bn == (1e-5, 0.1)
    assert model.head.classifier.weight.shape == (10, 1024)
    assert torch.equal(model.stem[0][0].weight, state["conv_stem.weight"])
