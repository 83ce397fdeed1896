"""Search outputs a person can open: trials.csv, best/pareto YAML, pareto.png, a summary.

Data extraction (``trials_frame``) is separate from plotting (``pareto_plot``), as in Optuna's
visualization module.  FLOPs in every output are multiply-accumulates (1 MAC = 1 FLOP) of conv,
linear and attention matmuls at batch 1.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from nasscale.reports.text import si
from nasscale.search.objective import requeued, trial_reason, trial_status

STATE_ORDER = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def trials_frame(trials: Sequence[Any], metrics: Sequence[str],
                 score_name: str = "score") -> pd.DataFrame:
    """One row per trial: number, Optuna state, status (feasible, over budget, stopped early,
    failed, running: ``trial_status``), feasibility, reason, metrics (an early-stopped trial's
    score is its last reported one), the resolution the score was measured at (a trained
    evaluator's) and the candidate's own (``deploy_resolution``, the space's), epochs trained
    (train evaluator), constraint values
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
            "reason": trial_reason(t, retried),
            score_name: ua.get("score"),
            "latency_ms": ua.get("latency_ms"),
            "flops": ua.get("flops"),
            "params": ua.get("params"),
            "resolution": ua.get("resolution"),  # the score's (a trained evaluator's)
            "deploy_resolution": ua.get("deploy_resolution", ua.get("resolution")),
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
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def pareto_plot(frame: pd.DataFrame, path: Path, score_name: str, x_metric: str,
                front: Sequence[int] = (), references: Mapping[str, Mapping] | None = None,
                budgets: Mapping[str, float] | None = None, title: str = "") -> Path:
    """Score vs latency (or FLOPs): feasible trials, the Pareto front joined by a line,
    over-budget trials, trials stopped early at their last reported score, reference networks
    as labelled stars, and the budget as a dashed line; failed trials are left out.

    Every over-budget trial is counted in the legend, as the summary counts them: those with a
    score among the others; those rejected before scoring in a strip below the plot, at their
    latency (or FLOPs); those without the x value at all (rejected by FLOPs before latency
    was measured) as a count, "not drawn"."""
    import matplotlib  # heavy: matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy: matplotlib

    xcol = {"latency": "latency_ms", "flops": "flops", "params": "params"}[x_metric]
    ycol = score_name if score_name in frame and frame[score_name].notna().any() else None
    done = frame[frame[xcol].notna()] if xcol in frame else frame.iloc[0:0]
    over = frame[frame["status"] == "over budget"] if "status" in frame else frame.iloc[0:0]
    unscored = done[(done["status"] == "over budget") & (done[ycol].isna() if ycol else True)]
    fig, ax, strip = _axes(plt, ycol is not None and len(unscored) > 0)
    if ycol:
        _trials(ax, done, ycol, xcol, front)
        _over_budget(ax, strip, over, done, unscored, ycol, xcol, x_metric)
    _references(ax, references, xcol)
    _budget(ax, strip, budgets, x_metric)
    for axis in (ax, strip):
        if axis is not None and x_metric in ("flops", "params"):
            from matplotlib.ticker import FuncFormatter  # heavy: matplotlib

            axis.xaxis.set_major_formatter(FuncFormatter(lambda v, _: si(v)))
    (strip or ax).set_xlabel({"latency": "latency (ms)", "flops": "FLOPs (MACs, batch 1)",
                              "params": "parameters"}[x_metric])
    ax.set_ylabel(score_name)
    ax.set_title(_wrap(title or "search"), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _wrap(title: str, width: int = 90) -> str:
    """A title in lines that fit the figure (a data path or a long evaluator label would be
    clipped on one line)."""
    return "\n".join(textwrap.wrap(title, width, break_long_words=True)) or title


def _axes(plt, with_strip: bool):
    """The plot's axes, and below them a strip for over-budget trials without a score."""
    if not with_strip:
        fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
        return fig, ax, None
    fig, (ax, strip) = plt.subplots(2, 1, sharex=True, figsize=(7.5, 5.6), dpi=110,
                                    gridspec_kw={"height_ratios": [7, 1]})
    strip.set_yticks([])
    strip.set_ylim(-1, 1)
    strip.set_ylabel("not\nscored", rotation=0, fontsize=8, ha="right", va="center")
    strip.grid(alpha=0.3, axis="x")
    return fig, ax, strip


def _trials(ax, done: pd.DataFrame, ycol: str, xcol: str, front: Sequence[int]) -> None:
    feasible = done[done["feasible"]]
    ax.scatter(feasible[xcol], feasible[ycol], s=18, c="tab:blue", label="feasible")
    stopped = done[(done["status"] == "stopped early") & done[ycol].notna()]
    if len(stopped):
        ax.scatter(stopped[xcol], stopped[ycol], s=22, facecolors="none",
                   edgecolors="tab:orange", marker="v", label="stopped early")
    pf = feasible[feasible["number"].isin(list(front))].sort_values(xcol)
    if len(pf):
        ax.plot(pf[xcol], pf[ycol], "-o", c="tab:green", ms=6, label="Pareto front")


def _over_budget(ax, strip, over, done, unscored, ycol: str, xcol: str, x_metric: str) -> None:
    """Over-budget trials: scored ones as red crosses, unscored ones in the strip, and the
    count of each (their sum is the summary's over-budget count)."""
    if not len(over):
        return
    scored = done[(done["status"] == "over budget") & done[ycol].notna()]
    ax.scatter(scored[xcol], scored[ycol], s=22, c="tab:red", marker="x",
               label=f"over budget: {len(over)}" + (f" ({len(scored)} scored)"
                                                     if len(scored) < len(over) else ""))
    if strip is not None:
        strip.scatter(unscored[xcol], [0] * len(unscored), s=22, c="tab:red", marker="x")
        ax.plot([], [], ls="", label=f"  {len(unscored)} rejected before scoring (below)")
    hidden = len(over) - len(scored) - len(unscored)
    if hidden:
        ax.plot([], [], ls="", label=f"  {hidden} not drawn (rejected by FLOPs before "
                                     f"{x_metric} was known)")


def _references(ax, references, xcol: str) -> None:
    for name, ref in (references or {}).items():
        if ref.get(xcol) is not None and ref.get("score") is not None:
            ax.scatter([ref[xcol]], [ref["score"]], marker="*", s=160, c="black", zorder=5)
            ax.annotate(name, (ref[xcol], ref["score"]), textcoords="offset points",
                        xytext=(6, 6), fontsize=8)


def _budget(ax, strip, budgets, x_metric: str) -> None:
    limit = (budgets or {}).get(x_metric)
    if limit is None:
        return
    text = f"{limit:.2f} ms" if x_metric == "latency" else si(limit)
    ax.axvline(limit, ls="--", c="gray", lw=1, label=f"{x_metric} budget {text}")
    if strip is not None:
        strip.axvline(limit, ls="--", c="gray", lw=1)
