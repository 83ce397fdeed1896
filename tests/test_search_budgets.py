"""Budgets in searches: analytic rejection before building, latency (measured or predicted),
the MnasNet reward, and infeasible trials never reported as best."""
import json

import optuna
import pandas as pd
import pytest
import yaml

import nasscale
from nasscale.cli import main
from nasscale.search.storage import open_storage

pytestmark = pytest.mark.usefixtures("support_on_path")


def run_study(tmp_path, capsys, **fields):
    data = {"name": "b", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
            "evaluator": {"kind": "python", "target": "evalfns:width_score"},
            "trials": 12, "seed": 1, "references": []}
    data.update(fields)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    code = main(["search", str(path), "--out", str(out), "--no-progress"])
    output = capsys.readouterr()
    assert code == 0, output.err
    study = optuna.load_study(study_name=data["name"], storage=open_storage(None, out))
    return study, out, output.out


def test_flops_budget_rejects_before_building_and_best_is_feasible(tmp_path, capsys):
    study, out, text = run_study(tmp_path, capsys, constraints=["flops <= 0.5x mobilenet_v3_large"])
    limit = nasscale.count("mobilenet_v3_large").flops * 0.5
    states = {t.state.name for t in study.trials}
    assert states <= {"COMPLETE", "PRUNED"} and "PRUNED" in states
    for t in study.trials:
        violation = t.constraints["flops <= 0.5x mobilenet_v3_large"]
        assert violation == pytest.approx(t.user_attrs["flops"] / limit - 1)
        if t.state.name == "PRUNED":
            assert violation > 0 and "rejected before building" in t.user_attrs["reason"]
            assert "score" not in t.user_attrs  # never evaluated
        else:
            assert violation <= 0
    best = nasscale.load(str(out / "best.yaml"))
    assert nasscale.count(best).flops <= limit
    frame = pd.read_csv(out / "trials.csv")
    assert (frame["feasible"] == (frame["state"] == "COMPLETE")).all()
    assert "budgets: flops <= 0.5x mobilenet_v3_large (= 108.29M)" in text


def test_measured_latency_budget_and_mnasnet_reward(tmp_path, capsys):
    study, out, _ = run_study(
        tmp_path, capsys, trials=4, objectives={"reward": "maximize"},
        constraints=["latency <= 1000ms"], reward={"target": "20ms", "exponent": -0.07})
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert done
    for t in done:
        ua = t.user_attrs
        assert 0 < ua["latency_ms"] < 1000
        assert ua["reward"] == pytest.approx(ua["score"] * (ua["latency_ms"] / 20) ** -0.07)
        assert t.value == pytest.approx(ua["reward"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["latency_key"]["device"] == "cpu" and summary["latency_key"]["threads"] == 1


def test_predicted_latency_rejects_before_building(tmp_path, capsys):
    lut = tmp_path / "lut.json"
    # the table of one network; the search extrapolates the blocks it lacks
    assert main(["lut", "build", "mobilenet_v3_small", "--out", str(lut), "--quiet"]) == 0
    capsys.readouterr()
    study, out, text = run_study(
        tmp_path, capsys, constraints=["latency <= 1.0x mobilenet_v3_small"],
        latency={"source": "lut", "lut": str(lut)}, trials=10)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned
    assert all("prediction, before building" in t.user_attrs["reason"]
               or "rejected before building" in t.user_attrs["reason"] for t in pruned)
    limit = study.user_attrs["nasscale.shared"]["constraints"][0][2]
    for t in study.trials:
        if t.state.name == "COMPLETE":
            assert t.user_attrs["latency_ms"] <= limit


def test_malformed_budget_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({
        "name": "b", "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
        "evaluator": {"kind": "python", "target": "evalfns:width_score"}, "trials": 2,
        "constraints": ["latency <= 8 furlongs"]}))
    assert main(["search", str(path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "constraints[0]" in err and "latency" in err and err.count("\n") == 1


def test_relative_latency_budget_times_candidates_against_its_reference(tmp_path, capsys):
    study, out, _ = run_study(tmp_path, capsys, trials=3,
                              constraints=["latency <= 4x mobilenet_v3_small"])
    ref = study.user_attrs["nasscale.shared"]["latency_reference"]
    assert ref["name"] == "mobilenet_v3_small" and ref["ms"] > 0
    measured = [t for t in study.trials if "latency_ms" in t.user_attrs]
    assert measured
    for t in measured:  # the latency is the interleaved ratio times the reference's latency
        ua = t.user_attrs
        assert ua["latency_ms"] == pytest.approx(ua["latency_ratio"] * ref["ms"])
        assert 0.2 < ua["latency_ratio"] < 20


def test_a_table_stated_at_another_speed_is_said_when_budgets_are_absolute():
    """An absolute budget is compared with predictions at the table's speed: a machine whose
    probe now runs 30 % slower is said in one line; within 10 % nothing is said; a table made
    on other hardware is not timed at all."""
    import dataclasses
    from types import SimpleNamespace

    from nasscale.latency import LatencyTable, Settings
    from nasscale.search.latency_source import table_speed_warning

    settings = Settings(clock="wall")
    table = LatencyTable(key=settings.key())
    table.add_probe(nasscale.load("mobilenet_v3_small"), 4.0, 0.0)
    calls = []

    def fake(ms):
        def measure(spec, settings, policy):
            calls.append(spec.name)
            return SimpleNamespace(latency_ms=ms)
        return measure

    line = table_speed_warning(table, fake(5.2))
    assert "x1.30" in line and "+30 %" in line and "mobilenet_v3_small" in line
    assert table_speed_warning(table, fake(4.2)) is None
    other = LatencyTable(key=dataclasses.replace(settings.key(), device_name="Other CPU"),
                         probe=table.probe)
    assert table_speed_warning(other, fake(9.0)) is None
    assert table_speed_warning(LatencyTable(key=settings.key()), fake(9.0)) is None
    assert calls == ["mobilenet_v3_small", "mobilenet_v3_small"]


def test_a_study_building_its_table_times_its_budget_reference_into_it(tmp_path, capsys):
    """A relative budget's network joins the study's `latency.build` sources, so its ratio is
    predicted from its own entries, not extrapolated; the probe stays the first source's."""
    from nasscale.latency import LatencyTable
    from nasscale.latency.table import unit_key, units_of
    from nasscale.specs import resolve

    lut = tmp_path / "lut.json"
    run_study(tmp_path, capsys, constraints=["latency <= 1.0x mobilenet_v3_large"],
              latency={"source": "lut", "lut": str(lut), "build": ["mobilenet_v3_small"]},
              trials=2)
    table = LatencyTable.load(lut)
    for name in ("mobilenet_v3_small", "mobilenet_v3_large"):
        units = units_of(resolve(nasscale.load(name)))
        assert all(unit_key(u) in table for u in units), name
        assert not table.predict(name).extrapolated
    assert table.probe_spec().name == "mobilenet_v3_small"
    assert "mobilenet_v3_large" in table.sources
