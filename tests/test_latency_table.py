"""The latency table: unit keys, the space's blocks, building (resume, only what is missing),
the predictor (sum + overhead, extrapolated units reported) and the file."""
import json
import random

import pytest

import nasscale
from nasscale.errors import NasscaleError
from nasscale.grammar import parse_block, parse_stage
from nasscale.latency import LatencyTable, Settings, around, build as build_mod
from nasscale.latency.build import build_table, lone_carrier
from nasscale.latency.source import Predicted
from nasscale.latency.table import block_key, head_key, unit_key, units_of
from nasscale.latency.timing import QUICK
from nasscale.specs import HeadSpec, NetworkSpec, make_divisible, resolve

SETTINGS = Settings(clock="cpu")


@pytest.fixture(scope="module")
def tiny_base():
    return NetworkSpec(
        name="tiny", stem=(parse_block("conv_k3_s2_c8_relu"),),
        stages=(parse_stage("mbconv_r1_k3_s1_e1_c8_relu"),
                parse_stage("bneck_r2_k3_s2_m32_c16_hswish_se"),
                parse_stage("mbconv_r1_k5_s2_e4_c24_silu_se0.25-in-sigmoid-silu-d1")),
        head=HeadSpec(blocks=(parse_block("conv_k1_c64_hswish"),)), resolution=32,
        num_classes=10)


@pytest.fixture(scope="module")
def tiny_space(tiny_base):
    return around(tiny_base, kernels=(3, 5), width_factors=(1.0, 1.5), depth_deltas=(0, 1))


def test_unit_keys_name_the_block_and_its_input():
    rn = resolve(nasscale.load("mobilenet_v3_large"))
    assert block_key(rn.blocks[4]) == "bneck_k5_s2_m72_c40_relu_se@24x56x56"
    assert head_key(rn.head) == "head_avgpool_fc1280-hswish_fc1000@960x7x7"
    b0 = resolve(nasscale.load("efficientnet_b0"))
    # drop-path rates differ between repeats; the key (and the latency) do not
    assert b0.blocks[7].drop_path != b0.blocks[8].drop_path
    assert unit_key(b0.blocks[7]) == unit_key(b0.blocks[8])
    assert len(units_of(rn)) == len(rn.blocks) + 1


def test_the_space_contains_its_base_and_lists_every_unit_it_can_hold(tiny_space, tiny_base):
    blocks, heads = tiny_space.blocks()
    keys = {unit_key(u) for u in [*blocks, *heads]}
    assert len(keys) == len(blocks) + len(heads)  # distinct
    assert {unit_key(u) for u in units_of(resolve(tiny_base))} <= keys
    rng = random.Random(0)
    for _ in range(40):
        assert {unit_key(u) for u in units_of(resolve(tiny_space.sample(rng)))} <= keys
    big = around("mobilenet_v3_large")
    big_keys = {unit_key(u) for u in [*big.blocks()[0], *big.blocks()[1]]}
    for _ in range(10):
        assert {unit_key(u) for u in units_of(resolve(big.sample(rng)))} <= big_keys


@pytest.mark.parametrize("base", ["convnext_tiny", "mobilevit_xxs", "mobilevit_v2_050",
                                  "vit_b_16", "swin_t", "mobilenet_v1", "efficientnet_v2_s",
                                  "mobilenet_v4_hybrid_medium"])
def test_the_space_around_any_kind_covers_its_samples(base):
    """Every kind's rule says what may vary, so the neighbourhood works for every family: each
    sampled network is valid and made only of blocks ``blocks()`` lists."""
    space = around(base, kernels=(3, 5), width_factors=(0.75, 1.0), expand_ratios=(3.0, 4.0),
                   depth_deltas=(0,))
    blocks, heads = space.blocks()
    keys = {unit_key(u) for u in [*blocks, *heads]}
    rng = random.Random(0)
    varied = False
    for _ in range(4):
        net = space.sample(rng)
        rn = resolve(net)
        assert {unit_key(u) for u in units_of(rn)} <= keys
        varied |= net.stages != space.base.stages
    assert varied


def test_a_kind_that_keeps_its_width_follows_its_input():
    space = around("convnext_tiny", width_factors=(0.75,), kernels=(7,), depth_deltas=(0,))
    net = space.sample(random.Random(1))
    resolve(net)  # every ConvNeXt block's width equals its input width, or this raises
    assert net.stages[0].block.out_channels == net.stem[0].out_channels == 96  # stem stays
    assert net.stages[1].block.out_channels == net.stages[2].block.out_channels \
        == make_divisible(192 * 0.75, 8)


@pytest.fixture
def counting(monkeypatch):
    """Count carrier timings (and optionally stop after a few)."""
    calls = {"n": 0, "stop_after": None}
    real = build_mod.time_carrier

    def fake(spec, settings, policy=build_mod.CARRIER_POLICY):
        if calls["stop_after"] is not None and calls["n"] >= calls["stop_after"]:
            raise KeyboardInterrupt
        calls["n"] += 1
        return real(spec, settings, QUICK)

    monkeypatch.setattr(build_mod, "time_carrier", fake)
    monkeypatch.setattr(build_mod, "PROBE_POLICY", QUICK)
    return calls


def test_build_covers_the_space_resumes_and_measures_only_what_is_missing(
        tmp_path, tiny_space, tiny_base, counting):
    out = tmp_path / "lut.json"
    blocks, heads = tiny_space.blocks()
    required = {unit_key(u) for u in [*blocks, *heads]}
    counting["stop_after"] = 2
    with pytest.raises(KeyboardInterrupt):
        build_table([tiny_space], out, SETTINGS)
    partial = LatencyTable.load(out)  # the interrupted build left a complete, smaller table
    assert 0 < len(partial) < len(required) and partial.carriers == 2
    assert not list(tmp_path.glob("*.tmp"))
    counting["stop_after"] = None
    report = build_table([tiny_space], out, SETTINGS)
    table = LatencyTable.load(out)
    assert set(table.entries) == required and report.entries == len(required)
    assert report.new_entries == len(required) - len(partial)
    assert table.sources == ["around:tiny"] and table.key == SETTINGS.key()
    assert all(e.ms > 0 for e in table.entries.values())
    # the probe (the space's base) was timed at the start and end of both builds
    assert table.probe_spec() == tiny_base and len(table.probe["samples"]) == 3
    assert table.probe_ms > 0
    # the probe is predicted as timed whole; every other network (another resolution of it
    # too) is the sum of its units
    whole = table.predict(resolve(tiny_base))
    assert whole.timed_whole and whole.total_ms == table.probe_ms
    for other in (tiny_base.replace(name="renamed"), tiny_base.replace(resolution=64),
                  tiny_space.sample(random.Random(3), "member")):
        pred = table.predict(resolve(other))
        summed = sum(u.ms for u in pred.units) + pred.overhead_ms
        assert pred.timed_whole == (other.name == "renamed")
        assert pred.total_ms == (table.probe_ms if pred.timed_whole else summed)
    assert "timed whole" in Predicted(table).reference(tiny_base)[1]
    n = counting["n"]
    again = build_table([tiny_space, tiny_base], out, SETTINGS)  # base is in the space
    assert counting["n"] == n and again.new_entries == 0 and again.carriers == 0
    assert len(LatencyTable.load(out).probe["samples"]) == 3  # nothing measured: no probe
    other = tiny_base.replace(name="other", num_classes=7)
    added = build_table([other], out, SETTINGS)
    assert counting["n"] == n + 1 and added.new_entries == 1  # only its classifier is new


def test_build_refuses_a_table_of_another_key(tmp_path, tiny_base, counting):
    out = tmp_path / "lut.json"
    build_table([tiny_base], out, SETTINGS)
    with pytest.raises(NasscaleError, match="another key \\(clock: 'cpu' vs 'wall'"):
        build_table([tiny_base], out, Settings(clock="wall"))
    with pytest.raises(NasscaleError, match="eager mode"):
        build_table([tiny_base], tmp_path / "x.json", Settings(mode="compile"))


def test_two_builds_of_one_table_do_not_run_at_once(tmp_path, tiny_base, counting):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "lut.json"
    with open(tmp_path / "lut.json.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(NasscaleError, match="another `lut build` is writing this table"):
            build_table([tiny_base], out, SETTINGS)
    assert counting["n"] == 0
    build_table([tiny_base], out, SETTINGS)
    assert out.exists() and not (tmp_path / "lut.json.lock").exists()


def test_contexts_measure_each_unit_in_several_carriers(tmp_path, tiny_space, counting):
    out = tmp_path / "lut.json"
    build_table([tiny_space], out, SETTINGS, contexts=2, candidates=20)
    table = LatencyTable.load(out)
    assert min(len(e.samples_ms) for e in table.entries.values()) >= 2
    for e in table.entries.values():
        assert e.ms == pytest.approx(sum(e.samples_ms) / len(e.samples_ms))


def test_lone_carrier_runs_exactly_the_unit(tiny_base):
    rn = resolve(tiny_base)
    for unit in units_of(rn):
        keys = [unit_key(u) for u in units_of(resolve(lone_carrier(unit)))]
        assert unit_key(unit) in keys


def make_table(network, ms=1.0, overhead=0.25):
    from nasscale.latency.key import current_key

    table = LatencyTable(key=current_key(clock="cpu"), overhead_samples_ms=[overhead])
    for i, unit in enumerate(units_of(resolve(nasscale.load(network)))):
        if unit_key(unit) not in table:
            table.add(unit, ms * (1 + i / 10))
    return table


def test_prediction_is_the_sum_of_units_plus_overhead():
    table = make_table("mobilenet_v3_large")
    rn = resolve(nasscale.load("mobilenet_v3_large"))
    pred = table.predict(rn)
    expected = sum(table.entries[unit_key(u)].ms for u in units_of(rn)) + 0.25
    assert pred.total_ms == pytest.approx(expected) and pred.overhead_ms == 0.25
    assert pred.extrapolated == [] and len(pred.units) == len(units_of(rn))
    assert [u.label for u in pred.units][:3] == ["stem 1", "stage 1.1", "stage 2.1"]
    assert pred.units[-1].label == "classifier"
    assert table.predict("mobilenet_v3_large").total_ms == pred.total_ms


def test_missing_units_are_extrapolated_and_reported():
    table = make_table("mobilenet_v3_large")
    spec = nasscale.load("mobilenet_v3_large")
    stages = list(spec.stages)
    stages[3] = parse_stage("bneck_r1_k7_s2_m96_c40_relu_se")  # not in the table
    pred = table.predict(spec.replace(stages=tuple(stages)))
    missing = [u.key for u in pred.extrapolated]
    assert missing == ["bneck_k7_s2_m96_c40_relu_se@24x56x56"]
    (unit,) = pred.extrapolated
    assert unit.label == "stage 4.1" and unit.ms > 0 and "nearest bneck entries" in unit.basis
    assert pred.as_dict()["extrapolated"] == missing
    # a bigger block of the same shape is predicted slower than the entry it was scaled from
    near = table.entries["bneck_k5_s2_m72_c40_relu_se@24x56x56"]
    assert unit.ms > near.ms * 0.9


def test_a_missing_unit_follows_the_law_its_neighbours_follow():
    """Entries whose latency is an exact linear law of MACs, activations and params: every one
    left out is extrapolated back from the others to within 1 %."""
    from nasscale.latency.key import current_key
    from nasscale.latency.table import unit_features

    table = LatencyTable(key=current_key(clock="cpu"))

    def law(unit):
        _, flops, params, acts = unit_features(unit)
        return 0.02 + flops / 4e8 + acts / 2e7 + params / 1e7

    units = {}
    for name in ("mobilenet_v3_large", "mobilenet_v3_small"):
        for res in (160, 192, 224, 256):
            for unit in units_of(resolve(nasscale.load(name), res)):
                units.setdefault(unit_key(unit), unit)
    blocks = {k: u for k, u in units.items() if unit_features(u)[0] == "bneck"}
    for unit in units.values():
        table.add(unit, law(unit))
    assert len(blocks) > 60
    errors = []
    for key, unit in blocks.items():
        entry = table.entries.pop(key)
        table._models.clear()
        ms, basis = table._extrapolate(unit)
        table.entries[key] = entry
        errors.append(abs(ms / law(unit) - 1))
        assert "nearest bneck entries" in basis
    table._models.clear()
    assert max(errors) < 0.01, max(errors)


def test_file_round_trip_is_readable_json_with_the_key(tmp_path):
    table = make_table("efficientnet_b0")
    path = tmp_path / "t.json"
    table.save(path)
    data = json.loads(path.read_text())
    assert data["format"] == "nasscale-latency-table" and data["key"] == table.key.as_dict()
    assert "mbconv_k3_s1_e1_c16_silu_se0.25-in-sigmoid-silu-d1@32x112x112" in data["entries"]
    loaded = LatencyTable.load(path)
    assert loaded.key == table.key and loaded.entries.keys() == table.entries.keys()
    assert loaded.predict("efficientnet_b0").total_ms == pytest.approx(
        table.predict("efficientnet_b0").total_ms, rel=1e-6)


@pytest.mark.parametrize("body, message", [
    ("{not json", "not a readable latency table"),
    ('{"format": "something else"}', "not a latency table"),
    ('{"format": "nasscale-latency-table", "version": 9}', "version 9 is not supported"),
    ('{"format": "nasscale-latency-table", "version": 1, "key": {"device": "cpu"}}',
     "key: must be a mapping with exactly the fields"),
])
def test_bad_table_files_give_one_line_errors(tmp_path, body, message):
    path = tmp_path / "bad.json"
    path.write_text(body)
    with pytest.raises(NasscaleError, match=message) as err:
        LatencyTable.load(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_search_space_path_is_a_source_like_space_name():
    from pathlib import Path

    from nasscale.search.sources import parse_source

    path = Path(__file__).parents[1] / "spaces" / "search" / "efficientnet_like.yaml"
    by_path, by_name = parse_source(str(path)), parse_source("space:efficientnet_like")
    assert by_path.space == by_name.space and by_path.n == by_name.n == 200


def test_a_machine_that_slows_down_mid_build_leaves_every_entry_on_one_scale(
        tmp_path, tiny_space, monkeypatch):
    """The probe is re-timed during the build and each carrier is restated at the speed of the
    table's first probe: a machine twice as slow after the first carrier gives the same
    entries as a steady one (and without the re-timing, later entries would double)."""
    from nasscale.latency.build import CarrierTiming

    def fake_build(every):
        slowness = {"x": 1.0}

        def fake_carrier(spec, settings, policy=None):
            n = len(units_of(resolve(spec)))
            x = slowness["x"]
            slowness["x"] = 2.0  # the machine halves its speed after the first carrier
            return CarrierTiming(units_ms=[1.0 * x] * n, overhead_ms=0.1 * x,
                                 end_to_end_ms=(n + 0.1) * x, other_load=0.0)

        def fake_probe(table, sources, settings, out):
            table.add_probe(tiny_space.base, 10.0 * slowness["x"], 0.0)
            return 10.0 * slowness["x"]

        monkeypatch.setattr(build_mod, "time_carrier", fake_carrier)
        monkeypatch.setattr(build_mod, "_probe", fake_probe)
        out = tmp_path / f"lut{every}.json"
        build_table([tiny_space], out, SETTINGS, probe_every_s=every)
        return LatencyTable.load(out)

    steady = fake_build(1e-9)  # a probe before every carrier
    assert steady.carriers > 2 and steady.probe_ms == 10.0
    assert {round(e.ms, 9) for e in steady.entries.values()} == {1.0}
    assert steady.overhead_ms == pytest.approx(0.1)
    unscaled = fake_build(0)
    values = {round(e.ms, 9) for e in unscaled.entries.values()}
    assert min(values) == 1.0 and max(values) == 2.0  # the first carrier's, the later ones
