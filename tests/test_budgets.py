"""Budgets: parsing absolute and relative bounds, one-line errors, resolution against a key."""
import pytest

import nasscale
from nasscale.budgets import Budget, BudgetResolver, parse_budget, parse_quantity
from nasscale.errors import SpecError
from nasscale.latency import LatencyStats, Settings
from nasscale.latency.measure import LatencyRecord


@pytest.mark.parametrize("text, budget", [
    ("flops<=300M", Budget("flops", "<=", value=300e6)),
    ("flops <= 2G", Budget("flops", "<=", value=2e9)),
    ("FLOPs <= 2.5GFLOPs", Budget("flops", "<=", value=2.5e9)),
    ("macs < 300 MMACs", Budget("flops", "<", value=300e6)),
    ("flops <= 123456789", Budget("flops", "<=", value=123456789)),
    ("params <= 5M", Budget("params", "<=", value=5e6)),
    ("params < 5M params", Budget("params", "<", value=5e6)),
    ("params >= 800K", Budget("params", ">=", value=800e3)),
    ("latency <= 8ms", Budget("latency", "<=", value=8.0)),
    ("latency<=8 ms", Budget("latency", "<=", value=8.0)),
    ("latency <= 500us", Budget("latency", "<=", value=0.5)),
    ("latency ≤ 0.02s", Budget("latency", "<=", value=20.0)),
    ("latency <= 0.8x mobilenet_v3_large",
     Budget("latency", "<=", factor=0.8, reference="mobilenet_v3_large")),
    ("latency <= 0.8 x mobilenet_v3_large",
     Budget("latency", "<=", factor=0.8, reference="mobilenet_v3_large")),
    ("flops <= 0.7x efficientnet_b0",
     Budget("flops", "<=", factor=0.7, reference="efficientnet_b0")),
    ("params <= 80% of mobilenet_v2", Budget("params", "<=", factor=0.8, reference="mobilenet_v2")),
    ("params <= 80%mobilenet_v2", Budget("params", "<=", factor=0.8, reference="mobilenet_v2")),
])
def test_parse(text, budget):
    assert parse_budget(text) == budget


def test_canonical_text_parses_back():
    for text in ("flops <= 300M", "latency < 8ms", "latency <= 0.8x mobilenet_v3_large",
                 "params >= 1.5M"):
        budget = parse_budget(text)
        assert str(budget) == text and parse_budget(str(budget)) == budget


@pytest.mark.parametrize("text, message", [
    ("speed <= 3ms", "unknown metric 'speed'; allowed: latency, flops, params"),
    ("latency <= 8", "latency needs a unit; allowed: ms, us or s"),
    ("latency <= 8 parsecs", "unit 'parsecs' is not a time unit; allowed: ms, us or s"),
    ("flops <= 3ms", "unit 'ms' is not a flops unit; allowed: none or K, M, G, T"),
    ("params <= 2T", "unit 'T' is not a params unit"),
    ("latency = 3ms", "operator '=' is not allowed; allowed: <=, <, >=, >"),
    ("latency 3ms", "must read '<metric> <operator> <bound>'"),
    ("latency <=", "lacks a bound after '<='"),
    ("flops <= 0x efficientnet_b0", "factor must be > 0"),
    ("flops <= 0M", "bound must be > 0"),
    ("latency <= 0.8x mobilenet_v3_larg",
     "reference network: unknown architecture 'mobilenet_v3_larg' (did you mean "
     "'mobilenet_v3_large'?)"),
    ("latency <= 0.8x missing.yaml", "missing.yaml: no such file"),
    ("", "a budget must be a non-empty string"),
])
def test_malformed_budgets_give_one_line_errors_naming_what_is_allowed(text, message):
    with pytest.raises(SpecError) as err:
        parse_budget(text)
    assert message in str(err.value) and "\n" not in str(err.value)
    if text:
        assert str(err.value).startswith(f"budget {text!r}")


def test_quantities():
    assert parse_quantity("300M", "flops") == 300e6
    assert parse_quantity("1.5 ms", "latency") == 1.5
    assert parse_quantity("250µs", "latency") == 0.25
    assert parse_quantity("3.2K", "params") == 3200


def fake_record(spec, settings):
    key = settings.key()
    return LatencyRecord(name=spec.name, resolution=spec.resolution, params=0, flops=0,
                         stats=LatencyStats.of([0.010] * 5), key=key, diagnostics={})


def test_relative_budgets_resolve_against_the_reference_once():
    calls = []

    def measure(spec, settings):
        calls.append(spec.name)
        return fake_record(spec, settings)

    resolver = BudgetResolver(settings=Settings(clock="cpu"), measure=measure)
    lat = resolver.resolve("latency <= 0.8x mobilenet_v3_large")
    again = resolver.resolve("latency < 1.5x mobilenet_v3_large")
    assert calls == ["mobilenet_v3_large"]  # measured once, in this process
    assert lat.limit == pytest.approx(8.0) and again.limit == pytest.approx(15.0)
    assert lat.key == Settings(clock="cpu").key() and lat.reference_value == pytest.approx(10.0)
    assert "mobilenet_v3_large measured here" in lat.source
    assert lat.satisfied(7.9) and not lat.satisfied(8.1) and lat.margin(4.0) == pytest.approx(-0.5)
    flops = resolver.resolve("flops <= 0.7x efficientnet_b0")
    assert flops.limit == pytest.approx(0.7 * nasscale.count("efficientnet_b0").flops)
    params = resolver.resolve("params >= 50% of mobilenet_v2")
    assert params.limit == pytest.approx(0.5 * 3_504_872) and params.satisfied(2e6)
    absolute = resolver.resolve(parse_budget("flops <= 300M"))
    assert absolute.limit == 300e6 and absolute.source == "absolute"


def test_relative_latency_from_a_table_is_predicted_under_the_tables_key():
    from nasscale.latency import LatencyTable
    from nasscale.latency.key import current_key
    from nasscale.latency.table import units_of

    table = LatencyTable(key=current_key(clock="cpu"), overhead_samples_ms=[0.1])
    for unit in units_of(nasscale.resolve(nasscale.load("mobilenet_v3_large"))):
        table.add(unit, 1.0)
    resolver = BudgetResolver(table=table, measure=lambda *a, **k: pytest.fail("measured"))
    resolved = resolver.resolve("latency <= 0.5x mobilenet_v3_large")
    assert resolved.limit == pytest.approx(0.5 * table.predict("mobilenet_v3_large").total_ms)
    assert resolved.key == table.key and "predicted from the latency table" in resolved.source
    assert resolved.as_dict()["unit"] == "ms"


@pytest.mark.parametrize("text, value", [
    ("flops <= 0.39B", 0.39e9), ("flops <= 1,000,000", 1e6), ("params <= 5_000_000", 5e6)])
def test_one_amount_grammar_for_constraints_scale_and_prune(text, value):
    from nasscale.pruning.resource import parse_target
    from nasscale.scaling.budget import parse_amount

    assert parse_budget(text).value == pytest.approx(value)
    metric, amount = text.split(" <= ")
    assert parse_amount(amount, metric=metric) == pytest.approx(value)  # scale --target-*
    assert parse_target(f"{metric}={amount}").value == pytest.approx(value)  # prune --target
