"""The report of ``benchmarks/fidelity.py``: figures from whatever units are finished."""
from __future__ import annotations

import statistics

import numpy as np
import optuna

import nasscale
from nasscale.reports.stats import bootstrap_tau, kendall_tau, reliability, spearman
from nasscale.reports.text import table

EVALUATORS = ("naswot", "synflow", "flops", "params", "short 1/10", "SoTL 1/10", "short 3/10",
              "progressive 3/10", "inherit")


def replay_pruner(curves: dict[int, list[float]], ref: dict[int, float],
                  pruner: optuna.pruners.BasePruner, name: str) -> dict:
    """An Optuna study whose trials report the recorded per-epoch accuracies in order
    (training is deterministic: a trial stopped after epoch e would have reported these)."""
    study = optuna.create_study(study_name=f"replay {name}", direction="maximize", pruner=pruner)
    epochs = len(next(iter(curves.values())))
    spent, kept = 0, []
    for arch, curve in curves.items():
        trial = study.ask()
        stopped = False
        for e in range(1, epochs + 1):
            trial.report(curve[e - 1], e)
            spent += 1
            if e < epochs and trial.should_prune():
                stopped = True
                break
        study.tell(trial, state=optuna.trial.TrialState.PRUNED) if stopped else \
            study.tell(trial, curve[-1])
        if not stopped:
            kept.append(arch)
    top3 = sorted(ref, key=lambda a: -ref[a])[:3]
    best = max(kept, key=lambda a: ref[a])
    return {"pruner": name, "cost_fraction": spent / (epochs * len(curves)),
            "completed": len(kept), "reference_top3": top3,
            "kept_top3": [a for a in top3 if a in kept], "best_found": best,
            "best_is_reference_best": best == top3[0]}


def report(args, specs, base, data, done: dict) -> dict:
    n, k = len(specs), args.seeds
    by_seed = {i: {s: done[f"arch{i}/reference/seed{s}"]
                   for s in range(k) if f"arch{i}/reference/seed{s}" in done} for i in range(n)}
    # the headline uses every seed where that loses no network, else seeds 0 and 1 (a
    # benchmark still accumulating its later seeds)
    paired = [i for i in range(n) if {0, 1} <= set(by_seed[i])]
    complete = [i for i in range(n) if len(by_seed[i]) == k]
    if len(complete) < len(paired):
        complete, k = paired, 2
    runs = [r for i in range(n) for r in by_seed[i].values()]
    seconds = [r["seconds"] for r in runs]
    progress = {"reference_runs": len(runs), "of": n * args.seeds, "networks_in_figures":
                len(complete), "cheap_networks": sum(f"arch{i}/cheap" in done for i in range(n)),
                "inherit_networks": sum(f"arch{i}/inherit" in done for i in range(n))}
    result = {"benchmark": "fidelity", "space": args.space, "data": args.data, "n": n,
              "seeds": args.seeds, "seeds_in_figures": k, "progress": progress,
              "reference": {"settings": vars_of(base), "seconds_per_run": {
                  "mean": float(np.mean(seconds)) if seconds else None,
                  "max": float(np.max(seconds)) if seconds else None,
                  "threads_and_workers": sorted({(r.get("threads"), r.get("workers"))
                                                 for r in runs if "threads" in r})}}}
    print(f"{args.space}: {len(runs)} of {n * args.seeds} reference runs; figures over "
          f"{len(complete)} networks x {k} seeds; {progress['cheap_networks']} networks with "
          f"cheap scores")
    if len(complete) < 3:
        print("too few networks with two seeds for reliability figures yet")
        return result
    matrix = [[by_seed[i][s]["value"] for s in range(k)] for i in complete]
    rel = reliability(matrix)
    means = {i: statistics.fmean(row) for i, row in zip(complete, matrix)}
    result["reference"].update({"reliability": rel, "top1_range": [min(means.values()),
                                                                    max(means.values())],
                                "top1_max_single_run": max(max(r) for r in matrix),
                                "networks": complete})
    print(f"reference: {len(complete)} networks x {k} seeds, {np.mean(seconds):.0f} s a run "
          f"(max {np.max(seconds):.0f}); mean top-1 {100 * min(means.values()):.1f}% .. "
          f"{100 * max(means.values()):.1f}%")
    print(f"  seed vs seed Kendall tau: mean {rel['pairwise_kendall']['mean']:+.3f} over "
          f"{rel['pairwise_kendall']['pairs']} pairs (min {rel['pairwise_kendall']['min']:+.3f}); "
          f"seed 0 vs 1 95% [{rel['seed0_vs_seed1_kendall_95'][0]:+.2f}, "
          f"{rel['seed0_vs_seed1_kendall_95'][1]:+.2f}]")
    print(f"  within-network sd {100 * rel['within_sd']:.2f} points, between-network sd "
          f"{100 * rel['between_sd']:.2f} (ratio {rel['ratio']:.2f}); reliability of the "
          f"{k}-seed mean {rel['reliability_of_mean']:.2f}, tau ceiling {rel['tau_ceiling']:.2f}")
    ref_s = float(np.mean(seconds))
    rows, evaluators = [], []
    cheap = {i: done[f"arch{i}/cheap"] for i in complete if f"arch{i}/cheap" in done}
    supernets = sorted({k.split("/", 1)[1] for k in done
                        if k.startswith("arch") and "/supernet" in k})
    for name in (*EVALUATORS, *supernets):
        own = name == "inherit" or name in supernets  # one unit per network, not "cheap"
        vals = {i: (done[f"arch{i}/{name}"] if own else cheap[i][name])
                for i in complete if (f"arch{i}/{name}" in done if own else i in cheap)}
        if len(vals) < 3:
            continue
        ids = sorted(vals)
        x, y = [vals[i]["value"] for i in ids], [means[i] for i in ids]
        secs = statistics.fmean(vals[i]["seconds"] for i in ids)
        if name == "inherit" and "parent" in done:
            secs += done["parent"]["seconds"] / len(ids)
        if name in supernets and name in done:  # its training, shared by the networks
            secs += done[name]["seconds"] / len(ids)
        e = {"name": name, "networks": len(ids), "kendall": kendall_tau(x, y),
             "kendall_95": bootstrap_tau(x, y), "spearman": spearman(x, y),
             "seconds_per_network": secs, "cost_vs_reference": secs / ref_s}
        if name in supernets and name in done:  # the training shared by 1,000 networks
            own = statistics.fmean(vals[i]["seconds"] for i in ids)
            e.update({"training_seconds": done[name]["seconds"],
                      "scoring_seconds_per_network": own,
                      "cost_vs_reference_1000": (own + done[name]["seconds"] / 1000) / ref_s,
                      "history": done[name].get("history")})
        evaluators.append(e)
        rows.append((name, len(ids), f"{e['kendall']:+.3f}",
                     f"[{e['kendall_95'][0]:+.2f}, {e['kendall_95'][1]:+.2f}]",
                     f"{e['spearman']:+.3f}", f"{secs:.1f}", f"{e['cost_vs_reference']:.3f}"))
    if rows:
        print(table(("evaluator", "networks", "Kendall tau", "95% interval", "Spearman rho",
                     "s/network", "cost vs one run"), rows,
                    right="networks Kendall tau Spearman rho s/network cost vs one run"))
    result["evaluators"] = evaluators
    curves = {i: by_seed[i][0]["curve"] for i in complete}
    if len(curves) >= 6 and len(next(iter(curves.values()))) >= 3:
        e = len(next(iter(curves.values())))
        result["pruners"] = [
            replay_pruner(curves, means, optuna.pruners.SuccessiveHalvingPruner(
                min_resource=1, reduction_factor=3), "successive_halving (min 1, factor 3)"),
            replay_pruner(curves, means, optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=e, reduction_factor=3), "hyperband"),
            replay_pruner(curves, means, optuna.pruners.MedianPruner(
                n_startup_trials=5, n_warmup_steps=1), "median (5 startup, 1 warm-up epoch)")]
        for pr in result["pruners"]:
            print(f"{pr['pruner']}: {100 * pr['cost_fraction']:.0f}% of the epochs, kept "
                  f"{len(pr['kept_top3'])}/3 of the reference top 3, best kept is the best: "
                  f"{pr['best_is_reference_best']}")
    result["archs"] = []
    for j, i in enumerate(complete):
        cost = nasscale.count(specs[i])
        result["archs"].append({
            "arch": i, "flops": cost.flops, "params": cost.params,
            "reference_by_seed": matrix[j], "reference": means[i],
            **{name: cheap[i][name]["value"] for name in EVALUATORS if i in cheap
               and name in cheap[i]},
            **{name: done[f"arch{i}/{name}"]["value"] for name in ("inherit", *supernets)
               if f"arch{i}/{name}" in done}})
    return result


def vars_of(settings) -> dict:
    from dataclasses import asdict

    return asdict(settings)
