"""Reports of a NetAdapt run: the iteration table (text, CSV), the JSON record, the YAML files."""
from __future__ import annotations

import json
from pathlib import Path

from nasscale.reports.text import FLOPS_CONVENTION, si, table


def _amount(metric: str, value: float) -> str:
    return f"{value:.3f} ms" if metric == "latency" else si(value)


def iteration_line(it, metric: str) -> str:
    return (f"iteration {it.index}: {it.group} {it.old_width}->{it.width}, {metric} "
            f"{_amount(metric, it.resource)} (limit {_amount(metric, it.limit)}), score "
            f"{it.score:.4g} ({it.delta_score:+.4g}), {it.proposals} proposals, "
            f"{it.seconds:.1f} s")


def write_iteration(out: Path, index: int, spec) -> Path:
    from nasscale.grammar import dump_network

    folder = Path(out) / "iterations"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{index:03d}.yaml" if index else "000_start.yaml")
    path.write_text(dump_network(spec), encoding="utf-8")
    return path


def result_record(result, out: Path | None = None) -> dict:
    """The ``--format json`` object (also ``summary.json``)."""
    from nasscale.costs.analytic import deployed_cost

    start, final = (deployed_cost(result.start),  # what runs
                    deployed_cost(result.final))
    record = {
        "network": result.start.name,
        "target": str(result.target),
        "metric": result.metric,
        "limit": result.limit,
        "met": result.met,
        "start": {result.metric: result.start_resource, "flops": start.flops,
                  "params": start.params, "score": result.start_score},
        "flops": final.flops,
        "params": final.params,
        "iterations": [it.row() for it in result.iterations],
        "resource": result.resource_note,
        "evaluator": result.evaluator_note,
        "flops_convention": FLOPS_CONVENTION,
        "seconds": round(result.seconds, 1),
        **result.extra,
    }
    if result.long_term is not None:  # NetAdapt's long-term fine-tuning of the final network
        record["long_term"] = result.long_term
    if result.metric == "latency":
        record["latency_ms"] = result.measured_ms
        record["latency_predicted_ms"] = result.final_resource
        record["start"]["latency_measured_ms"] = result.start_measured_ms
    if out is not None:
        record["outputs"] = {"final": str(Path(out) / "final.yaml"),
                             "iterations": str(Path(out) / "iterations.csv"),
                             **({"weights": str(Path(out) / "pruned.pt")}
                                if result.model is not None else {})}
    return record


def iterations_frame(result):
    import pandas as pd

    return pd.DataFrame([it.row() for it in result.iterations],
                        columns=["iteration", "group", "width_from", "width", "limit",
                                 "resource", "score", "score_change", "saved", "proposals",
                                 "flops", "params", "seconds"])


def write_outputs(result, out: Path) -> None:
    from nasscale.grammar import dump_network

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "final.yaml").write_text(dump_network(result.final), encoding="utf-8")
    frame = iterations_frame(result)
    if result.metric == "latency":
        frame = frame.rename(columns={"resource": "latency_predicted_ms",
                                      "limit": "limit_ms"})
    else:  # the resource is the flops or params column
        frame = frame.drop(columns="resource").rename(columns={"limit": "limit_" + result.metric})
    frame.to_csv(out / "iterations.csv", index=False)
    if result.model is not None:
        import torch

        from nasscale.grammar import network_to_data

        accuracy = (result.long_term or {}).get("accuracy_after")
        tmp = out / "pruned.pt.tmp"
        torch.save({"format": "nasscale-weights-1", "state_dict": result.model.state_dict(),
                    "network": network_to_data(result.final), **result.weights_meta,
                    **({"accuracy": accuracy} if accuracy is not None else {})}, tmp)
        tmp.replace(out / "pruned.pt")
    (out / "summary.json").write_text(json.dumps(result_record(result, out), indent=2) + "\n",
                                      encoding="utf-8")


def result_text(result, out: Path | None = None) -> str:
    """The iteration table and the before/after summary."""
    from nasscale.costs.analytic import deployed_cost

    m = result.metric
    rows = [(0, "(start)", "", _amount(m, result.start_resource), "",
             f"{result.start_score:.4g}", "")]
    for it in result.iterations:
        rows.append((it.index, it.group, f"{it.old_width}->{it.width}",
                     _amount(m, it.resource), _amount(m, it.limit), f"{it.score:.4g}",
                     f"{it.delta_score:+.4g}"))
    head = ("iter", "layer group pruned", "width", m + (" (pred.)" if m == "latency" else ""),
            "limit", "score", "change")
    start, final = (deployed_cost(result.start),  # what runs
                    deployed_cost(result.final))
    lines = [table(head, rows, right="iter width limit score change " + m), ""]
    lines.append(f"{result.start.name} -> {result.final.name}: target {result.target} "
                 f"(limit {_amount(m, result.limit)}), {len(result.iterations)} iterations, "
                 f"{result.seconds:.0f} s")
    lines.append(f"  params {start.params:,} -> {final.params:,} "
                 f"({100 * (final.params / start.params - 1):+.1f} %)")
    lines.append(f"  FLOPs  {start.flops:,} -> {final.flops:,} "
                 f"({100 * (final.flops / start.flops - 1):+.1f} %)")
    if m == "latency" and result.measured_ms is not None:
        lines.append(f"  latency measured at the start {result.start_measured_ms:.3f} ms (median "
                     f"of 3; the limit is set from it)")
        meas = result.extra.get("measured")
        if meas:
            ok = "meets" if result.extra.get("measured_meets_target") else "MISSES"
            lines.append(f"  measured alternately, {meas['rounds']} rounds: "
                         f"{meas['start_ms']:.3f} ms -> {meas['pruned_ms']:.3f} ms, median "
                         f"ratio {meas['ratio']:.3f} ({ok} the target {result.target}; "
                         f"predicted {result.final_resource:.3f} ms)")
    lines.append(f"  resource: {result.resource_note}")
    lines.append(f"  score: {result.evaluator_note}")
    lt = result.long_term
    if lt is not None:
        lines.append(f"  long-term fine-tuning: {lt['epochs']} epoch(s) at lr {lt['lr']:g} "
                     f"({lt['steps']} steps, {lt['device']}, {lt['seconds']:.0f} s): held-out "
                     f"top-1 {100 * lt['accuracy_before']:.2f}% -> "
                     f"{100 * lt['accuracy_after']:.2f}%")
    if out is not None:
        lines.append(f"  wrote {Path(out) / 'final.yaml'}, {Path(out) / 'iterations.csv'}, "
                     f"{Path(out) / 'iterations'}/"
                     + (f", {Path(out) / 'pruned.pt'}" if result.model is not None else ""))
    lines.append(f"  {FLOPS_CONVENTION}.")
    return "\n".join(lines)
