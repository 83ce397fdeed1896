"""Search outputs a person can open: trials.csv, best/pareto YAML, pareto.png, a summary.

Data extraction (``trials_frame``) is separate from plotting (``pareto_plot``), as in Optuna's
visualization module.  FLOPs in every output are multiply-accumulates (1 MAC = 1 FLOP) of conv,
linear and attention matmuls at batch 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from nasscale.search.objective import requeued, trial_status

STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def trials_frame(trials: Sequence[Any], metrics: Sequence[str],
                 score_name: str = "score") -> pd.DataFrame:
    """One row per trial: number, Optuna state, status (feasible, over budget, stopped early,
    failed, running: ``trial_status``), feasibility, reason, metrics (an early-stopped trial's
    score is its last reported one), epochs trained (train evaluator), constraint values
    (``constraint: <budget>``, feasible when <= 0), parameters (``param: <name>``), seconds,
    and the architecture as block strings joined by ``;``."""
    rows = []
    retried = requeued(trials)
    for t in trials:
        ua = t.user_attrs
        network = ua.get("network") or {}
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "status": trial_status(t, retried),
            "feasible": (t.state.name == "COMPLETE"
                         and all(v <= 0 for v in t.constraints.values())),
            "reason": ua.get("reason", t.system_attrs.get("fail_reason", "") or ""),
            score_name: ua.get("score"),
            "latency_ms": ua.get("latency_ms"),
            "flops": ua.get("flops"),
            "params": ua.get("params"),
            "resolution": ua.get("resolution"),
            "epochs": ua.get("epochs"),
        }
        if "reward" in metrics:
            row["reward"] = ua.get("reward")
        for name, value in t.constraints.items():
            row[f"constraint: {name}"] = value
        for name, value in t.params.items():
            row[f"param: {name}"] = value
        row["seconds"] = ua.get("seconds")
        row["architecture"] = ";".join(network.get("stem", []) + network.get("stages", []))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["number", "state", "status", "feasible", "reason",
                                     score_name])
    fixed = [c for c in rows[0] if not c.startswith(("constraint: ", "param: "))
             and c not in ("seconds", "architecture")]
    constraints = sorted(c for c in frame.columns if c.startswith("constraint: "))
    params = sorted((c for c in frame.columns if c.startswith("param: ")), key=_natural)
    frame = frame[fixed + constraints + params + ["seconds", "architecture"]]
    return frame.sort_values("number").reset_index(drop=True)


def _natural(name: str) -> list:
    """``s2.l10`` after ``s2.l9``: digits compare as numbers."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def pareto_plot(frame: pd.DataFrame, path: Path, score_name: str, x_metric: str,
                front: Sequence[int] = (), references: Mapping[str, Mapping] | None = None,
                budgets: Mapping[str, float] | None = None, title: str = "") -> Path:
    """Score vs latency (or FLOPs): feasible trials, the Pareto front joined by a line,
    infeasible (rejected) trials, trials stopped early at their last reported score, failed
    ones are left out, reference networks as labelled stars, and the budget as a dashed
    line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xcol = {"latency": "latency_ms", "flops": "flops", "params": "params"}[x_metric]
    xlabel = {"latency": "latency (ms)", "flops": "FLOPs (MACs, batch 1)",
              "params": "parameters"}[x_metric]
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    have_score = score_name in frame and frame[score_name].notna().any()
    ycol = score_name if have_score else None
    done = frame[frame[xcol].notna()] if xcol in frame else frame.iloc[0:0]
    feasible = done[done["feasible"]]
    infeasible = done[done["status"] == "over budget"]
    stopped = done[done["status"] == "stopped early"]
    if ycol:
        ax.scatter(feasible[xcol], feasible[ycol], s=18, c="tab:blue", label="feasible")
        shown = infeasible[infeasible[ycol].notna()]
        if len(shown):
            ax.scatter(shown[xcol], shown[ycol], s=18, c="tab:red", marker="x",
                       label="over budget")
        if len(infeasible) > len(shown):
            ax.scatter([], [], c="tab:red", marker="|",
                       label=f"over budget, not scored ({len(infeasible) - len(shown)})")
            for x in infeasible[infeasible[ycol].isna()][xcol]:
                ax.axvline(x, ymax=0.03, color="tab:red", alpha=0.5, lw=1)
        stopped = stopped[stopped[ycol].notna()]
        if len(stopped):
            ax.scatter(stopped[xcol], stopped[ycol], s=22, facecolors="none",
                       edgecolors="tab:orange", marker="v", label="stopped early")
        pf = feasible[feasible["number"].isin(list(front))].sort_values(xcol)
        if len(pf):
            ax.plot(pf[xcol], pf[ycol], "-o", c="tab:green", ms=6, label="Pareto front")
    for name, ref in (references or {}).items():
        if ref.get(xcol) is not None and ref.get("score") is not None:
            ax.scatter([ref[xcol]], [ref["score"]], marker="*", s=160, c="black", zorder=5)
            ax.annotate(name, (ref[xcol], ref["score"]), textcoords="offset points",
                        xytext=(6, 6), fontsize=8)
    limit = (budgets or {}).get(x_metric)
    if limit is not None:
        from nasscale.reports.text import si

        text = f"{limit:.2f} ms" if x_metric == "latency" else si(limit)
        ax.axvline(limit, ls="--", c="gray", lw=1, label=f"{x_metric} budget {text}")
    if x_metric in ("flops", "params"):
        from matplotlib.ticker import FuncFormatter

        from nasscale.reports.text import si

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(score_name)
    ax.set_title(title or "search")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
