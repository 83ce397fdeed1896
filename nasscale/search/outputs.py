"""Write a study's outputs into its folder and build the end-of-run summary.

- ``trials.csv``: every trial (parameters, metrics, constraint values, state, status, epochs,
  reason);
- ``best.yaml`` (one objective) or ``pareto/trial_<n>.yaml`` (several; and
  ``pareto/best_<objective>.yaml``, the front's best in each objective): loadable networks
  (complete, feasible trials only: never an over-budget or early-stopped one) at the
  resolution their score was measured at (a trained evaluator's), with the candidate's
  deploy resolution in a comment when it differs;
- ``pareto.png``: the score against latency (or FLOPs), with feasible, over-budget and
  early-stopped trials, the front, the reference networks and the budget;
- ``summary.json``: counts (Optuna states, and statuses: early-stopped trials apart from
  over-budget ones), best trials, resolved budgets and the resolution they are measured at,
  the latency key, the storage (with any password redacted), and for trained accuracy
  whether the best score is within noise of chance (``chance_level``).

Every file is written beside its final name and renamed into place (``pareto/`` is built as a
new folder and swapped in), so a ``kill -9`` while writing leaves the previous outputs whole,
never a half-written ``trials.csv``.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from nasscale.grammar import dump_network, network_from_data
from nasscale.reports.text import FLOPS_CONVENTION, si, table
from nasscale.search.objective import counted as counted_trials
from nasscale.search.storage import redact


def _network_yaml(trial, study_name: str, metrics: dict, budgets_at: str = "deploy") -> str:
    """The trial's network at the resolution its score was measured at, its metrics in
    comments (``budgets_at``: deploy or train, where its latency and FLOPs were measured)."""
    ua = trial.user_attrs
    data = dict(ua["network"])
    data["name"] = f"{study_name}_trial{trial.number}"
    scored = ua.get("resolution") or data.get("resolution")
    deploy = ua.get("deploy_resolution") or data.get("resolution")
    data["resolution"] = scored
    spec = network_from_data(data)
    header = "".join(f"# {k}: {v}\n" for k, v in metrics.items() if v is not None)
    if scored != deploy:
        costs = deploy if budgets_at == "deploy" else scored
        header += (f"# resolution {scored}: the score's (trained at it); the candidate's "
                   f"deploy resolution is {deploy} (latency and FLOPs above at {costs} px)\n")
    return f"# found by nasscale search, study {study_name}, trial {trial.number}\n" + header \
        + dump_network(spec)


def pareto_2d(rows: list[dict], x: str, y: str) -> list[int]:
    """Numbers of the rows not dominated in (max y, min x)."""
    rows = sorted((r for r in rows if r.get(x) is not None and r.get(y) is not None),
                  key=lambda r: (r[x], -r[y]))
    front, best = [], float("-inf")
    for r in rows:
        if r[y] > best:
            front.append(r["number"])
            best = r[y]
    return front


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def write_atomic(path: Path, text: str) -> None:
    tmp = _tmp(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def best_numbers(trials, directions: list[str]) -> list[int]:
    """Complete, feasible trials: the best one (one objective) or the non-dominated ones."""
    ok = [t for t in trials if t.state.name == "COMPLETE" and t.values is not None
          and all(v <= 0 for v in t.constraints.values())]
    sign = [1.0 if d == "maximize" else -1.0 for d in directions]
    if len(directions) == 1:
        best = max(ok, key=lambda t: (sign[0] * t.values[0], -t.number), default=None)
        return [] if best is None else [best.number]

    def dominates(a, b) -> bool:
        pa = [s * v for s, v in zip(sign, a.values)]
        pb = [s * v for s, v in zip(sign, b.values)]
        return all(x >= y for x, y in zip(pa, pb)) and any(x > y for x, y in zip(pa, pb))

    return sorted(t.number for t in ok if not any(dominates(o, t) for o in ok))


def write_outputs(setup, ostudy, out: Path, trials=None) -> dict[str, Any]:
    """Write the outputs from ``trials`` (default: read from ``ostudy``)."""
    from nasscale.search.plots import pareto_plot, trials_frame  # heavy: pandas (0.2 s)

    study = setup.study
    score_name = setup.score_name
    if trials is None:
        trials = ostudy.get_trials(deepcopy=False)
    frame = trials_frame(trials, study.metrics, score_name)
    out.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(out / "trials.csv")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, out / "trials.csv")
    by_number = {t.number: t for t in trials}

    def metrics_of(t) -> dict:
        ua = t.user_attrs
        return {score_name: ua.get("score"), "latency_ms": ua.get("latency_ms"),
                "flops": ua.get("flops"), "params": ua.get("params"),
                "reward": ua.get("reward")}

    best = best_numbers(trials, [d for _, d in study.objectives])

    def network_yaml(n: int) -> str:
        return _network_yaml(by_number[n], setup.study_name, metrics_of(by_number[n]),
                             study.budget_resolution)

    if len(study.objectives) == 1:
        if not best:  # no feasible complete trial yet
            (out / "best.yaml").unlink(missing_ok=True)
        for n in best:
            write_atomic(out / "best.yaml", network_yaml(n))
    else:
        folder, new, old = out / "pareto", out / f".pareto.{os.getpid()}.new", \
            out / f".pareto.{os.getpid()}.old"
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        for n in best:
            (new / f"trial_{n}.yaml").write_text(network_yaml(n))
        for i, (metric, direction) in enumerate(study.objectives):  # names that do not move
            pick = max if direction == "maximize" else min
            if best:
                n = pick(best, key=lambda k: by_number[k].values[i])
                (new / f"best_{metric}.yaml").write_text(network_yaml(n))
        if folder.exists():
            os.replace(folder, old)
        os.replace(new, folder)
        shutil.rmtree(old, ignore_errors=True)

    x_metric = "latency" if frame.get("latency_ms") is not None and \
        frame["latency_ms"].notna().any() else "flops"
    xcol = "latency_ms" if x_metric == "latency" else "flops"
    feasible_rows = frame[frame["feasible"]].to_dict("records") if len(frame) else []
    front = pareto_2d(feasible_rows, xcol, score_name)
    budgets = {c.metric: c.limit for c in setup.constraints}
    refs = {name: {**r, "latency_ms": r.get("latency_ms")} for name, r in setup.references.items()}
    if len(frame):
        tmp = _tmp(out / "pareto.png")
        pareto_plot(frame, tmp, score_name, x_metric, front=front,
                    references=refs, budgets=budgets,
                    title=f"{setup.study_name}: {setup.evaluator_label} vs {x_metric}")
        os.replace(tmp, out / "pareto.png")
    counted = frame[~frame["status"].isin(("interrupted", "surplus"))] if len(frame) else frame
    counts = counted["state"].value_counts().to_dict() if len(counted) else {}
    statuses = counted["status"].value_counts().to_dict() if len(counted) else {}
    failures = (counted[counted["state"] == "FAIL"]["reason"].fillna("").str.slice(0, 120)
                .value_counts().head(3).to_dict() if len(frame) else {})
    summary = {
        "study": setup.study_name, "storage": redact(setup.storage) or str(out / "study.journal"),
        "objectives": dict(study.objectives), "score": setup.evaluator_label,
        "score_name": score_name,
        "constraints": [{"budget": c.text, "metric": c.metric, "limit": c.limit}
                        for c in setup.constraints],
        "budget_resolution": study.budget_resolution,
        "latency_key": setup.latency_key, "trials": len(counted_trials(trials)),
        "states": {str(k): int(v) for k, v in counts.items()},
        "statuses": {str(k): int(v) for k, v in statuses.items()},
        "stopped_early": int(statuses.get("stopped early", 0)),
        "pruner": study.pruner.as_dict(),
        "feasible": int(frame["feasible"].sum()) if len(frame) else 0,
        "failure_reasons": {str(k): int(v) for k, v in failures.items()},
        "best": [{"number": n, **metrics_of(by_number[n])} for n in best],
        "references": setup.references, "flops_convention": FLOPS_CONVENTION,
        "chance_level": chance_level(setup.chance, frame, score_name),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary


def write_weights(setup, out: Path) -> list[str]:
    """Beside every best / Pareto network's YAML, its weights (``NAME.pt``), when the study's
    evaluator can give them (``EvaluatorSpec.writes_weights``: a supernet's subnetwork); the
    files written.  Once, after the search: cutting and recalibrating takes a second each."""
    if not type(setup.study.evaluator).writes_weights:
        return []
    from nasscale.grammar import load_network_file

    yamls = [out / "best.yaml", *sorted((out / "pareto").glob("*.yaml"))]
    yamls = [y for y in yamls if y.exists()]
    if not yamls:
        return []
    evaluator = setup.study.make_evaluator()
    written = []
    for y in yamls:
        evaluator.write_weights(load_network_file(y), y.with_suffix(".pt"))
        written.append(str(y.with_suffix(".pt")))
    return written


def chance_level(chance: dict | None, frame, score_name: str) -> dict | None:
    """For a trained accuracy study: chance top-1, the noise limit above it (see
    ``study_data.chance_level``), the best score any trial reached, and ``at_chance``: whether
    that best is within noise of guessing."""
    if chance is None:
        return None
    scores = frame[score_name].dropna() if score_name in frame else []
    best = float(max(scores)) if len(scores) else None
    return {**chance, "best": best, "at_chance": best is not None and best <= chance["limit"]}


def chance_warning(summary: dict) -> str | None:
    """One line when every score of a trained study is within noise of chance."""
    c = summary.get("chance_level")
    if not c or not c.get("at_chance"):
        return None
    return (f"scores are at chance level: the best {summary.get('score_name', 'score')} "
            f"{c['best']:.3f} is within noise of guessing ({c['chance']:.3f} for "
            f"{c['classes']} classes, up to {c['limit']:.3f} on {c['held_out']} held-out "
            "images), so no network is better than another; train longer (more epochs or "
            "steps, a larger subset) or check the data and its labels")


def summary_text(summary: dict, out: Path) -> str:
    score = summary.get("score_name") or summary["score"]
    lines = [f"study {summary['study']}: {summary['trials']} trials "
             + ", ".join(f"{v} {k.lower()}" for k, v in sorted(summary["states"].items()))
             + f"; {summary['feasible']} feasible"
             + (f", {summary['stopped_early']} stopped early" if summary.get("stopped_early")
                else "")]
    if summary["score"] != score:
        lines.append(f"{score}: {summary['score']}")
    for reason, n in summary.get("failure_reasons", {}).items():
        lines.append(f"failed x{n}: {reason}")
    if summary["constraints"]:
        lines.append("budgets: " + "; ".join(
            f"{c['budget']} (= {c['limit']:.3f} ms)" if c["metric"] == "latency"
            else f"{c['budget']} (= {si(c['limit'])})" for c in summary["constraints"]))
    rows = [(f"trial {b['number']}", _num(b.get(_score_key(b))), _ms(b.get("latency_ms")),
             si(b["flops"]) if b.get("flops") else "", si(b["params"]) if b.get("params") else "")
            for b in summary["best"]]
    rows += [(f"{name} (reference)", _num(r.get("score")), _ms(r.get("latency_ms")),
              si(r["flops"]) if r.get("flops") else "", si(r["params"]) if r.get("params") else "")
             for name, r in summary["references"].items()]
    if rows:
        lines.append(table(("network", score, "latency", "FLOPs", "params"), rows,
                           right=f"{score} latency FLOPs params"))
    else:
        lines.append("no feasible trial yet")
    single = len(summary["objectives"]) == 1
    weights = (", best.pt" if single else ", pareto/*.pt") if summary.get("weights") else ""
    lines.append(f"outputs in {out}: trials.csv, "
                 + ("best.yaml" if single else "pareto/*.yaml") + weights
                 + ", pareto.png, summary.json")
    lines.append(FLOPS_CONVENTION + ".")
    return "\n".join(lines)


def _score_key(b: dict) -> str:
    return next((k for k in b if k not in ("number", "latency_ms", "flops", "params",
                                           "reward")), "score")


def _num(v) -> str:
    return "" if v is None else f"{v:.4g}"


def _ms(v) -> str:
    return "" if v is None else f"{v:.2f} ms"
