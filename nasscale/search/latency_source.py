"""Latency and budgets for a study: the bridge from ``nasscale.latency`` to the search.

- ``make_latency_source(study, key)``: measured latency (builds and times each candidate under
  the study's measurement settings) or predicted latency (the study's lookup table; nothing is
  built).  Candidates are measured with a shorter schedule than ``nasscale cost`` uses.
- ``resolve_budgets(study)``: the constraints with every relative budget ("latency <= 0.8x
  mobilenet_v3_large") turned into an absolute limit by measuring — or predicting, with a
  table — the named network in this process, under the same key.  Done once per study; the
  result is stored on the study so that workers and resumed runs share it.
- ``evaluate_references(...)``: the named networks drawn on the Pareto plot, evaluated like a
  candidate.
"""
from __future__ import annotations

from dataclasses import dataclass

from nasscale.errors import NasscaleError
from nasscale.search.objective import Constraint
from nasscale.specs import NetworkSpec


@dataclass
class MeasuredLatency:
    settings: object  # nasscale.latency.Settings
    key: dict

    def latency_ms(self, spec: NetworkSpec) -> float:
        from nasscale.latency import measure_quick

        return measure_quick(spec, self.settings)

    def builds_module(self) -> bool:
        return True


@dataclass
class PredictedLatency:
    table: object  # nasscale.latency.LatencyTable
    key: dict

    def latency_ms(self, spec: NetworkSpec) -> float:
        return float(self.table.predict(spec).total_ms)

    def builds_module(self) -> bool:
        return False


def _settings(study):
    from nasscale.latency import Settings

    cfg = study.latency
    return Settings(device=cfg.get("device", "cpu"), threads=int(cfg.get("threads", 1)),
                    batch=int(cfg.get("batch", 1)), dtype=cfg.get("dtype", "float32"),
                    channels_last=bool(cfg.get("channels_last", False)),
                    compile=bool(cfg.get("compile", False)))


def make_latency_source(study, key: dict | None = None):
    from nasscale.search.runner import resolve_path

    cfg = study.latency
    if cfg.get("source") == "lut":
        from nasscale.latency import LatencyTable

        table = LatencyTable.load(resolve_path(cfg["lut"], study.path))
        return PredictedLatency(table=table, key=table.key.as_dict())
    settings = _settings(study)
    return MeasuredLatency(settings=settings, key=key or settings.key().as_dict())


def resolve_budgets(study) -> tuple[tuple[Constraint, ...], tuple[float, float] | None, dict]:
    """``(constraints, (reward target ms, exponent) | None, latency key)``."""
    source = make_latency_source(study) if study.needs_latency else None
    key = source.key if source else {}
    if not study.constraints and study.reward is None:
        return (), None, key
    from nasscale.latency import parse_budget

    def latency_of(name: str) -> float:
        import nasscale

        return source.latency_ms(nasscale.load(name))

    constraints = []
    for i, text in enumerate(study.constraints):
        try:
            budget = parse_budget(text)
        except NasscaleError as err:
            raise NasscaleError(f"{study.path or 'study'}: constraints[{i}]: {err}") from None
        constraints.append(Constraint(text=text, metric=budget.metric,
                                      limit=budget.resolve(latency_of)))
    reward = None
    if study.reward is not None:
        target = parse_budget(f"latency <= {study.reward['target']}")
        reward = (target.resolve(latency_of), float(study.reward["exponent"]))
    return tuple(constraints), reward, key


def evaluate_references(setup, names, objective) -> dict[str, dict]:
    """FLOPs, params, latency and score of named networks, measured like a candidate."""
    import sys

    import nasscale
    from nasscale.search.evaluators import arch_seed

    out: dict[str, dict] = {}
    for name in dict.fromkeys(names):  # unique, in order
        spec = nasscale.load(name)
        if spec.num_classes != objective.space.num_classes:
            spec = spec.replace(num_classes=objective.space.num_classes)
        cost = nasscale.count(spec)
        ref: dict = {"flops": cost.flops, "params": cost.params, "resolution": spec.resolution}
        try:
            if objective.latency is not None:
                ref["latency_ms"] = float(objective.latency.latency_ms(spec))
            if "score" in objective.metrics or "reward" in objective.metrics:
                ref["score"] = float(objective.evaluator.score(spec, arch_seed(setup.study.seed,
                                                                              spec)))
        except Exception as err:  # a reference that cannot be evaluated is left off the plot
            print(f"nasscale: warning: reference {name}: {err}", file=sys.stderr)
        out[name] = ref
    return out
