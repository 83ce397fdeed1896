"""How well does the latency table predict measured latency?  N random networks from a space,
each measured end to end and predicted from the table.

    python benchmarks/latency_predictor.py --space around:mobilenet_v3_large \\
        --space around:efficientnet_b0 --n 100 --device cpu --out result.json
    python benchmarks/latency_predictor.py --space space:mobilenet_v3_like --n 50 \\
        --runtime onnxruntime --quantize int8 --out benchmarks/results/lut_onnxruntime_int8.json

The table (``--table``, built first when it lacks units of the spaces) covers every block the
spaces can contain, timed in carrier networks sampled with a seed different from the test
networks'.  Reports the fraction of predictions within ±5 % and ±10 % of the measurement, the
mean absolute percentage error, Spearman's ρ between predicted and measured latency, Kendall's τ
between FLOPs and measured latency (what a FLOPs budget would rank), the time to predict vs the
time to measure, and the same accuracy with a fifth of the table's entries held out (extrapolated).

Each network is measured in ``--passes`` separate passes over the sample (default 2, the second
in reverse order); the reference is the mean of the passes, and the pass-to-pass difference is
reported as the noise of the reference itself, with the accuracy against each pass and against
the faster one.

``--measure ratio`` (the default) measures what the table's entries are stated in: each network
is timed interleaved with a reference network (``measure_ratio``, ``--pairs`` pairs of
alternating rounds) — its space's own (``--reference space``: of a search space's
``contains`` the one nearest in FLOPs, a neighbourhood's base), whose ratio to the table's probe
network is timed before every pass, or the probe itself (``--reference probe``) — and its latency is
ratio × its reference's latency.  With the probe, that is the probe's reference ms, and the
accuracy is of the table's absolute scale at the speed it was stated at.  With a space's
reference, it is the reference's *prediction* (its end-to-end time when it is the table's probe,
which the table predicts as timed whole), and the accuracy is of predicted ratios
(candidate / reference), which is exactly what a relative budget ("latency <= 1.0x
mobilenet_v3_large") compares; the same measurement chained through the probe (× reference /
probe × the probe's ms) is reported as ``chained_to_probe``.  A reference like the network it
times is slowed alike by a busy machine, so its ratio repeats better than the probe's (on the
development VM 1.8 % against 2.8 % at the median) — but on that VM the ratio of two unlike
networks moves by 5-8 % when the machine slows down, so the chain through the probe is no more
accurate than the probe alone.  The same rounds give
the absolute ms (reported as ``absolute``) and the probe's speed now (``speed_factors``).
``--measure absolute`` times each network alone (p50) and re-times the probe once a minute.
The probe is also timed after the measurements, to show how much the machine's speed drifted.
``--rescore RESULT`` recomputes the metrics of a saved result without measuring; with
``--repredict OUT`` it first predicts the references again from the same table file (refused
when the file has been rebuilt since), restates the relative figures with them and writes OUT:
how a saved result reads under a change to the predictor, with the same measurements.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

from nasscale.costs.analytic import network_cost
from nasscale.latency import measure
from nasscale.latency.build import build_table
from nasscale.latency.key import MeasurementKey
from nasscale.latency.measure import PreparedCache, Settings, measure_ratio
from nasscale.latency.table import LatencyTable
from nasscale.latency.timing import TimingPolicy
from nasscale.reports.progress import Progress
from nasscale.reports.stats import kendall_tau, spearman
from nasscale.reports.text import FLOPS_CONVENTION, si, table
from nasscale.search.sources import parse_source
from nasscale.specs import resolve


def accuracy(pred: np.ndarray, meas: np.ndarray) -> dict:
    err = pred / meas - 1
    return {"within_5pct": float(np.mean(np.abs(err) <= 0.05)),
            "within_10pct": float(np.mean(np.abs(err) <= 0.10)),
            "mape": float(np.mean(np.abs(err)) * 100),
            "median_error_pct": float(np.median(err) * 100),
            "max_abs_error_pct": float(np.max(np.abs(err)) * 100),
            "spearman": spearman(pred, meas)}


def holdout(tbl: LatencyTable, fraction: float, seed: int) -> LatencyTable:
    keys = sorted(tbl.entries)
    drop = set(random.Random(seed).sample(keys, int(len(keys) * fraction)))
    return LatencyTable(key=tbl.key, entries={k: e for k, e in tbl.entries.items()
                                              if k not in drop},
                        overhead_samples_ms=tbl.overhead_samples_ms)


def nearest_reference(space, spec, default):
    """The reference network a network of ``space`` is timed against: of the space's own
    networks (a search space's ``contains``, a neighbourhood's base), the one nearest in FLOPs;
    else ``default``.  A network like the candidate slows down like it on a busy machine: on
    the development VM the candidates nearer their reference in FLOPs repeated at about half the
    pass-to-pass difference of the farther half, in every shipped space."""
    from nasscale import zoo

    inner = getattr(space, "space", None)
    names = list(getattr(inner, "contains", None) or ())
    if not names:
        return getattr(space, "base", None) or default
    flops = network_cost(resolve(spec)).flops
    return min((zoo.load(n) for n in names),
               key=lambda r: abs(np.log(network_cost(resolve(r)).flops / flops)))


def by_space(result: dict, preds: np.ndarray, reference: np.ndarray, passes: np.ndarray) -> dict:
    """The accuracy and the pass-to-pass noise per space (networks are dealt round-robin)."""
    spaces, out = result["spaces"], {}
    for k, name in enumerate(spaces):
        idx = np.arange(k, len(preds), len(spaces))
        noise = (np.abs(passes[0, idx] / passes[1, idx] - 1) * 100) if len(passes) >= 2 \
            else np.zeros(1)
        out[name] = {"n": int(len(idx)), **accuracy(preds[idx], reference[idx]),
                     "noise_median_pct": float(np.median(noise)),
                     "noise_p90_pct": float(np.percentile(noise, 90))}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rescore", metavar="RESULT",
                        help="recompute the metrics of a saved result (measures nothing)")
    parser.add_argument("--repredict", metavar="OUT", help="with --rescore: predict the "
                        "references again from the same table, write the result to OUT")
    parser.add_argument("--space", action="append",
                        help="around:NAME (repeat for several; the sample is split evenly)")
    parser.add_argument("--n", type=int, default=100, help="networks to sample (default 100)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtime", default="eager",
                        choices=("eager", "onnxruntime", "openvino", "executorch"),
                        help="what runs the networks (deployment runtimes need their extra)")
    parser.add_argument("--quantize", default="none", choices=("none", "int8"))
    parser.add_argument("--clock", default=None, choices=("wall", "cpu"),
                        help="default: cpu (thread CPU time) on the CPU with 1 thread, else wall")
    parser.add_argument("--table", help="latency table (default: next to --out)")
    parser.add_argument("--contexts", type=int, default=1, help="carriers per unit in the table")
    parser.add_argument("--passes", type=int, default=2, help="measurement passes per network")
    parser.add_argument("--measure", default="ratio", choices=("ratio", "absolute"),
                        help="ratio: interleaved with the table's probe (default); absolute: alone")
    parser.add_argument("--pairs", type=int, default=10,
                        help="pairs of alternating rounds per ratio measurement (default 10)")
    parser.add_argument("--reference", default="space", choices=("space", "probe"),
                        help="with --measure ratio, time each network against its space's "
                             "reference network (default; chained to the probe) or the probe")
    parser.add_argument("--round-s", type=float, default=0.25, help="seconds per timed round")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/latency_predictor.json")
    args = parser.parse_args(argv)
    if args.rescore:
        result = json.loads(Path(args.rescore).read_text())
        if args.repredict:
            repredict(result)
        summarize(result, Path(args.repredict or args.rescore))
        return 0
    if not args.space:
        parser.error("--space is required (around:NAME)")
    clock = args.clock or ("cpu" if args.device == "cpu" and args.threads == 1 else "wall")
    settings = Settings.from_options(device=args.device, threads=args.threads, clock=clock,
                                     runtime=args.runtime, quantize=args.quantize)
    key = settings.key()
    out = Path(args.out)
    table_path = Path(args.table) if args.table else out.with_name(out.stem + "_table.json")
    spaces = [parse_source(s) for s in args.space]
    load0 = os.getloadavg()

    # 1. the table (only what is missing is measured)
    bar = Progress(1, "table")

    def progress(done, total, note):
        bar.total = max(total, 1)
        bar.update(done, note)

    report = build_table(spaces, table_path, settings, contexts=args.contexts, seed=args.seed,
                         progress=progress)
    bar.close()
    tbl = LatencyTable.load(table_path)
    print(f"table {table_path}: {len(tbl)} entries ({report.new_entries} new, "
          f"{report.carriers} carriers, {report.seconds:.0f} s)", file=sys.stderr)

    # 2. the test networks: another seed than the carriers'
    rng = random.Random(10_000 + args.seed)
    nets = [spaces[i % len(spaces)].sample(rng, f"test{i}") for i in range(args.n)]
    policy = dataclasses.replace(TimingPolicy().scaled(args.round_s / TimingPolicy().round_s),
                                 max_other_load=0.5, quiet_retries=1, quiet_wait_s=1.0)
    if args.measure == "ratio":  # a round is a quarter second or 8 runs, whichever is longer
        policy = dataclasses.replace(policy, min_runs=8)
    if args.measure == "ratio" and not tbl.probe_ms:
        raise SystemExit(f"{table_path}: the table has no probe network; use --measure absolute")
    measured = np.full((args.passes, args.n), np.nan)
    absolute = np.full((args.passes, args.n), np.nan)
    loads = np.full((args.passes, args.n), np.nan)
    cache = PreparedCache(settings, policy)
    # the machine's speed now against the table's reference speed, re-timed on the table's probe
    # network once a minute: a prediction times this factor is the latency at today's speed
    speed = np.ones((args.passes, args.n))
    probe_spec, probe_ref = tbl.probe_spec(), tbl.probe_ms
    last = {"at": -1e9, "factor": 1.0}
    measure_s = np.zeros(args.n)
    # each network's reference: its space's own network (a network like it slows down like it
    # when the machine is busy, so the ratio repeats better), whose ratio to the probe is timed
    # thoroughly before every pass; or the probe itself
    net_refs = [nearest_reference(spaces[i % len(spaces)], net, probe_spec)
                if args.reference == "space" else probe_spec for i, net in enumerate(nets)]
    refs = list({r.name: r for r in net_refs}.values())
    to_ref = np.full((args.passes, args.n), np.nan)  # network / its reference, per pass
    ref_to_probe: dict[str, list[float]] = {r.name: [] for r in refs}
    bar = Progress(args.passes * args.n, "measure")
    for p in range(args.passes):
        for ref in refs if args.measure == "ratio" else ():
            ref_to_probe[ref.name].append(1.0 if ref is probe_spec else measure_ratio(
                ref, probe_spec, settings=settings, policy=policy, pairs=args.pairs,
                cache=cache).ratio)
        order = list(range(args.n)) if p % 2 == 0 else list(reversed(range(args.n)))
        for j, i in enumerate(order):
            t0 = time.perf_counter()
            if args.measure == "ratio":  # interleaved with a reference: drift cancels
                ref = net_refs[i]
                rr = measure_ratio(nets[i], ref, settings=settings, policy=policy,
                                   pairs=args.pairs, cache=cache)
                to_ref[p, i] = rr.ratio
                absolute[p, i] = rr.candidate_ms
                speed[p, i] = rr.reference_ms / (np.mean(ref_to_probe[ref.name]) * probe_ref)
                loads[p, i] = rr.other_load or 0.0
            else:
                if probe_ref and time.perf_counter() - last["at"] > 60:
                    now = measure(probe_spec, settings=settings, policy=policy).latency_ms
                    last.update(at=time.perf_counter(), factor=now / probe_ref)
                speed[p, i] = last["factor"]
                rec = measure(nets[i], settings=settings, policy=policy)
                measured[p, i] = absolute[p, i] = rec.latency_ms
                loads[p, i] = rec.diagnostics.get("other_load") or 0.0
            measure_s[i] += time.perf_counter() - t0
            bar.update(p * args.n + j + 1, nets[i].name)
    bar.close()
    chained = np.full((args.passes, args.n), np.nan)
    # a reference the table timed whole (its probe) is predicted as that time (LatencyTable)
    ref_preds = {r.name: tbl.predict(r) for r in refs} if args.measure == "ratio" else {}
    ref_pred = {name: p.total_ms for name, p in ref_preds.items()}
    if args.measure == "ratio":
        for i in range(args.n):
            ref = net_refs[i]
            # at the table's speed through the probe: x (reference / probe) x probe's ms
            chained[:, i] = to_ref[:, i] * np.mean(ref_to_probe[ref.name]) * probe_ref
            # relative to the space's reference, as a relative budget compares: the measured
            # ratio x the reference's prediction (the probe: the same as chained)
            measured[:, i] = chained[:, i] if ref is probe_spec \
                else to_ref[:, i] * ref_pred[ref.name]
    rows, predict_s = [], []
    held = holdout(tbl, 0.2, args.seed)
    for i, spec in enumerate(nets):
        rn = resolve(spec)
        t0 = time.perf_counter()
        pred = tbl.predict(rn)
        predict_s.append(time.perf_counter() - t0)
        hp = held.predict(rn)
        cost = network_cost(rn)
        rows.append({"name": spec.name, "resolution": rn.resolution, "flops": cost.flops,
                     "params": cost.params, "passes_ms": [float(v) for v in measured[:, i]],
                     "passes_absolute_ms": [float(v) for v in absolute[:, i]],
                     **({"reference_network": net_refs[i].name,
                         "passes_ratio": [float(v) for v in to_ref[:, i]],
                         "passes_chained_ms": [float(v) for v in chained[:, i]]}
                        if args.measure == "ratio" else {}),
                     "passes_other_load": [float(v) for v in loads[:, i]],
                     "predicted_ms": pred.total_ms, "extrapolated": len(pred.extrapolated),
                     "speed_factors": [float(v) for v in speed[:, i]],
                     "predicted_now_ms": pred.total_ms * float(speed[:, i].mean()),
                     "holdout_predicted_ms": hp.total_ms,
                     "holdout_extrapolated": len(hp.extrapolated) / len(hp.units)})
    probe_now = None
    if tbl.probe_ms:  # the machine's speed at the end vs when the table was built
        probe_now = measure(tbl.probe_spec(), settings=settings, policy=policy).latency_ms
    result = {
        "benchmark": "latency_predictor", "n": args.n, "spaces": [str(s) for s in args.space],
        "predict_ms_per_network": float(np.mean(predict_s) * 1e3),
        "measure_s_per_network": float(np.mean(measure_s) / args.passes),
        "table": {"path": str(table_path), "entries": len(tbl), "carriers": tbl.carriers,
                  "overhead_ms": tbl.overhead_ms, "build_s": report.seconds,
                  "new_entries": report.new_entries,
                  "other_load_median": float(np.median(tbl.other_loads))
                  if tbl.other_loads else None,
                  "probe_ms": [p["ms"] for p in tbl.probe["samples"]] if tbl.probe else None},
        "probe_ms_after_measuring": probe_now,
        "key": key.as_dict(), "passes": args.passes, "round_s": args.round_s,
        "measure": args.measure, "pairs": args.pairs if args.measure == "ratio" else None,
        "reference_mode": args.reference if args.measure == "ratio" else None,
        "references": {r.name: {"predicted_ms": ref_pred[r.name],
                                "timed_whole": ref_preds[r.name].timed_whole,
                                "ratio_to_probe_per_pass": ref_to_probe[r.name],
                                "networks": sum(n is r for n in net_refs)}
                       for r in refs} if args.measure == "ratio" else None,
        "machine": platform.processor() or platform.machine(),
        "loadavg_start": load0, "loadavg_end": os.getloadavg(),
        "flops_convention": FLOPS_CONVENTION, "rows": rows,
    }
    summarize(result, out)
    return 0


def repredict(result: dict) -> None:
    """Predict a saved ratio result's references again from its table file (the same build:
    same first probe) and restate every row's relative latencies (measured ratio x the new
    reference prediction); the candidates keep their saved predictions."""
    import nasscale

    if result.get("measure") != "ratio" or result.get("reference_mode") != "space":
        raise SystemExit("--repredict: only a result measured as ratios to a space's reference")
    tbl = LatencyTable.load(result["table"]["path"])
    first = result["table"]["probe_ms"][0]
    if tbl.probe_ms is None or abs(tbl.probe_ms - first) > 1e-9 or \
            len(tbl) != result["table"]["entries"]:
        raise SystemExit(f"--repredict: {result['table']['path']} is not the table this result "
                         f"was made with (first probe {first} ms, {result['table']['entries']} "
                         "entries)")
    for name, ref in result["references"].items():
        pred = tbl.predict(resolve(nasscale.load(name)))
        ref.update(predicted_ms_before=ref["predicted_ms"], predicted_ms=pred.total_ms,
                   timed_whole=pred.timed_whole)
    for row in result["rows"]:
        ref_ms = result["references"][row["reference_network"]]["predicted_ms"]
        row["passes_ms"] = [r * ref_ms for r in row["passes_ratio"]]
    result["repredicted"] = "references predicted again from the same table (measure nothing)"


def summarize(result: dict, out: Path) -> None:
    """Accuracy metrics from the rows (the measured passes and the predictions), printed and
    written; ``--rescore`` reruns this on a saved result without measuring anything."""
    rows = result["rows"]
    passes = np.array([r["passes_ms"] for r in rows]).T  # (passes, n)
    loads = np.array([r["passes_other_load"] for r in rows]).T
    # the reference is the mean of the passes: this machine's speed drifts up and down by a few
    # percent over minutes (see the probe), and the table itself averages over its build
    reference = passes.mean(axis=0)
    preds = np.array([r["predicted_ms"] for r in rows])
    flops = np.array([r["flops"] for r in rows], dtype=float)
    for r, ref in zip(rows, reference):
        r["measured_ms"] = float(ref)
        r["error_pct"] = 100 * (r["predicted_ms"] / ref - 1)
    acc = accuracy(preds, reference)
    ratio = result.get("measure") == "ratio"
    relative = ratio and result.get("reference_mode") == "space"
    # absolute ms: measured alone (--measure absolute), or the same rounds' candidate p50
    absolute = np.array([r.get("passes_absolute_ms", r["passes_ms"]) for r in rows]).T
    now = None
    if all("predicted_now_ms" in r for r in rows):  # the table times the probe's speed factor
        now = accuracy(np.array([r["predicted_now_ms"] for r in rows]), absolute.mean(axis=0))
        result["at_current_speed"] = {
            **now, "speed_factor": {"min": min(min(r["speed_factors"]) for r in rows),
                                    "max": max(max(r["speed_factors"]) for r in rows)}}
    held_acc = accuracy(np.array([r["holdout_predicted_ms"] for r in rows]), reference)
    noise = (np.abs(passes[0] / passes[1] - 1) * 100) if len(passes) >= 2 else np.zeros(1)
    abs_noise = (np.abs(absolute[0] / absolute[1] - 1) * 100) if len(passes) >= 2 \
        else np.zeros(1)
    quiet = loads.max(axis=0) <= 0.25
    quiet_acc = accuracy(preds[quiet], reference[quiet]) if quiet.sum() >= 5 else None
    result.update({
        **acc, "reference": (
            "mean of the passes' ratio to the space's reference network x that network's "
            "prediction: the accuracy of predicted ratios, what a relative budget compares"
            if relative else "mean of the passes' ratio to the probe x the probe's reference ms"
            if ratio else "mean of the passes' p50"),
        **({"chained_to_probe": accuracy(preds, np.array(
            [r["passes_chained_ms"] for r in rows]).mean(axis=1))} if relative else {}),
        "raw_sum": accuracy(preds, absolute.mean(axis=0)),
        "within_10pct_by_reference": {
            **{f"pass {i + 1}": accuracy(preds, p)["within_10pct"] for i, p in enumerate(passes)},
            "min of passes": accuracy(preds, passes.min(axis=0))["within_10pct"],
            "mean of passes": acc["within_10pct"]},
        "kendall_tau_flops_vs_measured": kendall_tau(flops, reference),
        "kendall_tau_predicted_vs_measured": kendall_tau(preds, reference),
        "spearman_flops_vs_measured": spearman(flops, reference),
        "holdout_fraction": 0.2,
        "holdout_extrapolated_units": float(np.mean([r["holdout_extrapolated"] for r in rows])),
        "holdout": held_acc,
        "quiet": {"n": int(quiet.sum()), **(quiet_acc or {})},
        "other_load_reference": {"median": float(np.median(loads)), "max": float(loads.max())},
        "reference_noise_pct": {"median": float(np.median(noise)),
                                "p90": float(np.percentile(noise, 90)),
                                "over_10pct": int(np.sum(noise > 10))},
        "absolute_noise_pct": {"median": float(np.median(abs_noise)),
                               "p90": float(np.percentile(abs_noise, 90)),
                               "over_10pct": int(np.sum(abs_noise > 10))},
        "by_space": by_space(result, preds, reference, passes),
    })
    worst = sorted(rows, key=lambda r: -abs(r["error_pct"]))[:8]
    print(table(("network", "res", "FLOPs", "passes ms", "predicted ms", "error"),
                [(r["name"], r["resolution"], si(r["flops"]),
                  " / ".join(f"{v:.2f}" for v in r["passes_ms"]),
                  f"{r['predicted_ms']:.2f}", f"{r['error_pct']:+.1f}%") for r in worst],
                right="res FLOPs passes ms predicted ms error"))
    print(f"\n(the {len(worst)} largest errors of {result['n']})\n")
    by_ref = result["within_10pct_by_reference"]
    tbl = result["table"]
    probe = ""
    if tbl.get("probe_ms"):
        probe = " -> ".join(f"{v:.2f}" for v in tbl["probe_ms"])
        if result.get("probe_ms_after_measuring"):
            probe += f" -> {result['probe_ms_after_measuring']:.2f} ms"
    summary = [
        ("networks", result["n"]),
        ("within ±10 %", f"{100 * acc['within_10pct']:.0f} %"),
        ("within ±5 %", f"{100 * acc['within_5pct']:.0f} %"),
        ("MAPE", f"{acc['mape']:.2f} %"),
        ("median error", f"{acc['median_error_pct']:+.2f} %"),
        ("max |error|", f"{acc['max_abs_error_pct']:.1f} %"),
        ("Spearman ρ (predicted, measured)", f"{acc['spearman']:.3f}"),
        ("× probe's speed now: within ±10 % / ±5 % / MAPE / median error",
         f"{100 * now['within_10pct']:.0f} % / {100 * now['within_5pct']:.0f} % / "
         f"{now['mape']:.2f} % / {now['median_error_pct']:+.2f} % (speed x"
         f"{result['at_current_speed']['speed_factor']['min']:.2f}-"
         f"{result['at_current_speed']['speed_factor']['max']:.2f})" if now else "-"),
        ("Kendall τ (predicted, measured)", f"{result['kendall_tau_predicted_vs_measured']:.3f}"),
        ("Kendall τ (FLOPs, measured)", f"{result['kendall_tau_flops_vs_measured']:.3f}"),
        ("time to predict / network", f"{result['predict_ms_per_network']:.2f} ms"),
        ("time to measure / network", f"{result['measure_s_per_network']:.2f} s"),
        ("within ±10 % of each pass / of the faster pass",
         " / ".join(f"{100 * v:.0f} %" for k, v in by_ref.items() if k.startswith("pass"))
         + f" / {100 * by_ref['min of passes']:.0f} %"),
        ("reference noise (pass 1 vs 2): median / p90 / over 10 %",
         f"{result['reference_noise_pct']['median']:.1f} % / "
         f"{result['reference_noise_pct']['p90']:.1f} % / "
         f"{result['reference_noise_pct']['over_10pct']} networks"),
        ("absolute ms noise (pass 1 vs 2): median / p90",
         f"{result['absolute_noise_pct']['median']:.1f} % / "
         f"{result['absolute_noise_pct']['p90']:.1f} %" if ratio else "(= the line above)"),
        ("chained to the probe (reference / probe timed per pass): within ±10 % / median error",
         f"{100 * result['chained_to_probe']['within_10pct']:.0f} % / "
         f"{result['chained_to_probe']['median_error_pct']:+.2f} %" if relative else "-"),
        ("raw sum vs absolute ms: within ±10 % / median error",
         f"{100 * result['raw_sum']['within_10pct']:.0f} % / "
         f"{result['raw_sum']['median_error_pct']:+.2f} %"),
        ("probe: table start -> end -> after measuring", probe or "-"),
        ("other processes during reference / table (median cores)",
         f"{result['other_load_reference']['median']:.2f} / "
         f"{tbl.get('other_load_median') or 0:.2f}"),
        ("within ±10 % where every pass was quiet (< 0.25 cores)",
         f"{100 * quiet_acc['within_10pct']:.0f} % of {int(quiet.sum())}" if quiet_acc else "-"),
        ("with 20 % of entries held out: within ±10 %",
         f"{100 * held_acc['within_10pct']:.0f} % (MAPE {held_acc['mape']:.2f} %, "
         f"{100 * result['holdout_extrapolated_units']:.0f} % of units extrapolated)"),
    ]
    print(table(("metric", "value"), summary))
    print()
    print(table(("space", "n", "within ±10 %", "within ±5 %", "MAPE", "median error",
                 "noise median"),
                [(k, v["n"], f"{100 * v['within_10pct']:.0f} %", f"{100 * v['within_5pct']:.0f} %",
                  f"{v['mape']:.2f} %", f"{v['median_error_pct']:+.2f} %",
                  f"{v['noise_median_pct']:.1f} %") for k, v in result["by_space"].items()],
                right="n within ±10 % within ±5 % MAPE median error noise median"))
    print(f"measured: {result['reference']}")
    key = MeasurementKey.from_dict(result["key"])
    print(f"\nkey: {key.describe()}\n{FLOPS_CONVENTION}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
