"""Latency and budgets for a study: the bridge from ``nasscale.latency`` to the search.

- ``make_latency_source(study, key)``: the study's :class:`nasscale.latency.source.LatencySource`:
  measured (builds and times each candidate under the study's measurement settings, with a
  shorter schedule than ``nasscale cost`` uses) or predicted (the study's lookup table;
  nothing is built).
- ``resolve_budgets(study)``: the constraints with every relative budget ("latency <= 0.8x
  mobilenet_v3_large") turned into an absolute limit by measuring — or predicting, with a
  table — the named network in this process, under the same key.  Done once per study; the
  result is stored on the study so that workers and resumed runs share it.
- ``evaluate_references(...)``: the named networks drawn on the Pareto plot, evaluated like a
  candidate.
"""
from __future__ import annotations

import sys

from nasscale import zoo
from nasscale.budgets import BudgetResolver, parse_budget
from nasscale.costs.analytic import deployed_cost
from nasscale.errors import NasscaleError
from nasscale.latency import LatencyTable, Settings, build_table, measure
from nasscale.latency.source import Measured, Predicted, quick_policy
from nasscale.reports.paths import resolve_path
from nasscale.reports.progress import Progress
from nasscale.scoring.evaluators import arch_seed
from nasscale.search.objective import Constraint
from nasscale.search.sources import parse_source


def latency_settings(study):
    cfg = study.latency
    return Settings.from_options(
        device=cfg.device, threads=cfg.threads, batch=cfg.batch, dtype=cfg.dtype,
        channels_last=cfg.channels_last, compile=cfg.compile, cuda_graphs=False,
        clock=cfg.clock, runtime=cfg.runtime, quantize=cfg.quantize)


def ensure_table(study) -> None:
    """Complete the study's lookup table from its ``latency.build`` sources (only what is
    missing is measured; the table is saved as it grows, so an interrupted build resumes).
    The networks of relative latency budgets are sources too: a predicted ratio inherits its
    reference's prediction error (mobilenet_v3_small, 3 of 14 units extrapolated, came out
    15 % high in a table of the shipped spaces), so the reference is timed into the table."""
    cfg = study.latency
    if cfg.source != "lut" or not cfg.build:
        return

    path = cfg.lut
    sources = [parse_source(s) for s in cfg.build]
    sources += [parse_source(name) for name in budget_references(study)
                if name not in cfg.build]
    bar = Progress(1, "lut build")

    def progress(done: int, total: int, note: str) -> None:
        bar.total = max(total, 1)
        bar.update(done, note)

    try:
        report = build_table(sources, path, latency_settings(study), progress=progress)
    finally:
        bar.close()
    if report.new_entries:
        print(f"nasscale: {path}: measured {report.new_entries} new blocks in "
              f"{report.seconds:.0f} s ({report.entries} in the table)", file=sys.stderr)


def budget_references(study) -> list[str]:
    """The networks named by the study's relative latency budgets (and reward target), in
    order, each once; budgets that do not parse are left to ``resolve_budgets`` to report."""
    texts = list(study.constraints)
    if study.reward is not None:
        texts.append(f"latency <= {study.reward.target}")
    names: list[str] = []
    for text in texts:
        try:
            budget = parse_budget(text)
        except NasscaleError:
            continue
        if budget.metric == "latency" and budget.relative and budget.reference not in names:
            names.append(budget.reference)
    return names


def make_latency_source(study, key: dict | None = None, reference: dict | None = None):
    """Measured or predicted, as the study's ``latency`` section says.  ``key``: the stored
    measurement key (workers and resumed runs keep the study's); ``reference``
    (``{"name", "ms"}``): time candidates against that network (``Measured.ratio_to``)."""
    cfg = study.latency
    if cfg.source == "lut":
        return Predicted(LatencyTable.load(resolve_path(cfg.lut, study.path)))
    return Measured(settings=latency_settings(study), key=key, ratio_to=reference)


def resolve_budgets(study, at: int | float | None = None
                    ) -> tuple[tuple[Constraint, ...], tuple[float, float] | None, dict,
                               dict | None]:
    """``(constraints, (reward target ms, exponent) | None, latency key, latency reference)``:
    every budget made absolute by ``nasscale.budgets.BudgetResolver`` under the study's
    measurement key (with a lookup table, reference latencies are predicted from it, under the
    table's key).  The latency reference (``{"name", "ms"}``) is the network of the first
    relative latency budget when latency is measured: candidates are then timed against it
    (see ``nasscale.latency.source.Measured``).  ``at``: the networks of relative budgets are
    measured at that resolution (pixels, or a fraction of their own), as the candidates are
    (``budget_resolution: train``); ``None``: at their own."""
    source = make_latency_source(study) if study.needs_latency else None
    key = source.key if source else {}
    resolver = BudgetResolver(source=source, resolution=at)
    constraints = []
    reference = None
    for i, text in enumerate(study.constraints):
        try:
            resolved = resolver.resolve(parse_budget(text))
        except NasscaleError as err:
            raise NasscaleError(f"{study.path or 'study'}: constraints[{i}]: {err}") from None
        b = resolved.budget
        if reference is None and source is not None and source.builds_module() \
                and b.metric == "latency" \
                and b.relative and resolved.reference_value:
            reference = {"name": b.reference, "ms": float(resolved.reference_value)}
            if at is not None:
                reference["resolution"] = resolver.spec(b.reference).resolution
        constraints.append(Constraint(text=text, metric=resolved.budget.metric,
                                      limit=resolved.limit, op=resolved.budget.op))
    reward = None
    if study.reward is not None:
        try:
            target = resolver.resolve(parse_budget(f"latency <= {study.reward.target}"))
        except NasscaleError as err:
            raise NasscaleError(f"{study.path or 'study'}: reward.target: {err}") from None
        reward = (target.limit, study.reward.exponent)
    absolute = any(c.metric == "latency" and not parse_budget(c.text).relative
                   for c in constraints) or (study.reward is not None and not parse_budget(
                       f"latency <= {study.reward.target}").relative)
    if absolute and source is not None and not source.builds_module():
        line = table_speed_warning(source.table)
        if line:
            print(f"nasscale: warning: {line}", file=sys.stderr)
    return tuple(constraints), reward, key, reference


#: how far (a fraction) the machine's speed now may differ from a table's before a study with
#: absolute latency budgets says so
SPEED_TOLERANCE = 0.10


def table_speed_warning(table, measure_fn=None) -> str | None:
    """A table's predictions are stated at the speed its probe network ran when the table was
    built; an absolute budget ("latency <= 8ms") is compared with them as they are.  On the
    table's own machine and key, time the probe once now and return a warning when it runs
    more than ``SPEED_TOLERANCE`` off that speed (relative budgets need none: the reference is
    predicted from the same table).  ``None`` when the table has no probe, was made on other
    hardware or under another key, or the speed agrees."""
    if not table.probe_ms:
        return None
    settings = Settings.of_key(table.key)
    try:
        if settings.key() != table.key:
            return None
        spec = table.probe_spec()
        now = (measure_fn or measure)(spec, settings=settings,
                                      policy=quick_policy()).latency_ms
    except NasscaleError:
        return None
    factor = now / table.probe_ms
    if abs(factor - 1) <= SPEED_TOLERANCE:
        return None
    return (f"the latency table's probe network {spec.name} runs {now:.2f} ms here now against "
            f"{table.probe_ms:.2f} ms when the table was stated (x{factor:.2f}): absolute "
            "latency budgets are compared with predictions at the table's speed, so candidates "
            f"measured now would run about {100 * (factor - 1):+.0f} % off them")


def evaluate_references(setup, names, objective) -> dict[str, dict]:
    """FLOPs, params, latency and score of named networks, measured like a candidate."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(names):  # unique, in order
        spec = zoo.load(name)
        if spec.num_classes != objective.space.num_classes:
            spec = spec.replace(num_classes=objective.space.num_classes)
        measured = objective.budget_spec(spec)  # at the resolution budgets are measured at
        cost = deployed_cost(measured)
        ref: dict = {"flops": cost.flops, "params": cost.params,
                     "resolution": measured.resolution}
        try:
            if objective.latency is not None:
                ref["latency_ms"] = float(objective.latency.latency_ms(measured,
                                                                       thorough=True))
            if "score" in objective.metrics or "reward" in objective.metrics:
                ref["score"] = float(objective.evaluator.score(spec, arch_seed(setup.study.seed,
                                                                              spec)))
        except Exception as err:  # a reference that cannot be evaluated is left off the plot
            print(f"nasscale: warning: reference {name}: {err}", file=sys.stderr)
        out[name] = ref
    for line in order_warnings(out):
        print(f"nasscale: warning: {line}", file=sys.stderr)
    return out


def order_warnings(refs: dict[str, dict], margin: float = 2.0) -> list[str]:
    """References whose measured latencies contradict their FLOPs by far (one with at least
    ``margin`` x the FLOPs of another measured faster than it): the sign of a busy machine."""
    timed = [(n, r) for n, r in refs.items() if r.get("latency_ms") and r.get("flops")]
    out = []
    for a, ra in timed:
        for b, rb in timed:
            if ra["flops"] >= margin * rb["flops"] and ra["latency_ms"] < rb["latency_ms"]:
                out.append(f"reference {a} ({ra['flops'] / rb['flops']:.1f}x the FLOPs of {b}) "
                           f"measured faster than it ({ra['latency_ms']:.2f} vs "
                           f"{rb['latency_ms']:.2f} ms): the machine was probably busy; "
                           "latency budgets and references measured now are unreliable")
    return out
