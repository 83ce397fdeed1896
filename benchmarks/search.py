"""How fast is a search, and how good is what it finds?

    python benchmarks/search.py [--trials 200] [--flops-trials 100] [--lut-samples 150]
        [--lut runs/luts/mobilenet_v3_like_cpu_1t.json] [--out benchmarks/results/search.json]

1. FLOPs-budget proxy search: the MobileNetV3-like space under ``flops <= 1.0x
   mobilenet_v3_large``, NASWOT on digits at a quarter of each candidate's resolution; trials
   per minute.
2. Latency-budget proxy search: the same under ``latency <= 1.0x mobilenet_v3_large``, latency
   predicted from the per-block lookup table (built first if missing; its build time is
   reported apart); trials per minute, and the best NASWOT score found in --trials trials
   against mobilenet_v3_large's own score.  The best network's latency is then *measured*,
   to show it really is within budget.

CPU, 1 thread, batch 1.  FLOPs are multiply-accumulates of conv and linear layers (1 MAC =
1 FLOP).  Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nasscale
from nasscale.reports.text import FLOPS_CONVENTION, si, table
from nasscale.search.runner import RunOptions, run_search
from nasscale.search.study import study_from_data

BASE = {
    "space": "mobilenet_v3_like", "objectives": {"score": "maximize"},
    "evaluator": {"kind": "proxy", "proxy": "naswot", "batch_size": 16, "resolution": "0.25x",
                  "data": "digits"},
    "sampler": {"name": "tpe", "n_startup_trials": 20}, "seed": 0,
    "references": ["mobilenet_v3_large"],
}


def run(name: str, trials: int, work: Path, **fields) -> tuple[dict, float]:
    study = study_from_data({**BASE, "name": name, "trials": trials, **fields})
    t0 = time.perf_counter()
    summary = run_search(study, RunOptions(out=work / name, progress=True))
    return summary, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=200, help="trials of the latency search")
    p.add_argument("--flops-trials", type=int, default=100, help="trials of the FLOPs search")
    p.add_argument("--lut", default="runs/luts/mobilenet_v3_like_cpu_1t.json")
    p.add_argument("--lut-samples", type=int, default=150,
                   help="networks of the space whose blocks the table covers")
    p.add_argument("--out", default="benchmarks/results/search.json")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="nasscale-search-bench-"))
    try:
        flops_summary, flops_s = run("bench_flops", args.flops_trials, work,
                                     constraints=["flops <= 1.0x mobilenet_v3_large"])
        t0 = time.perf_counter()
        from nasscale.latency import build_table
        from nasscale.latency.measure import Settings
        from nasscale.search.sources import parse_source

        report = build_table([parse_source("mobilenet_v3_large"),
                              parse_source(f"space:mobilenet_v3_like:{args.lut_samples}")],
                             args.lut, Settings())
        lut_s = time.perf_counter() - t0
        lat_summary, lat_s = run("bench_latency", args.trials, work,
                                 constraints=["latency <= 1.0x mobilenet_v3_large"],
                                 latency={"source": "lut", "lut": args.lut})
        best = lat_summary["best"][0] if lat_summary["best"] else None
        ref = lat_summary["references"]["mobilenet_v3_large"]
        measured_best = None
        if best:
            network = nasscale.load(str(work / "bench_latency" / "best.yaml"))
            measured_best = nasscale.measure(network).latency_ms
        measured_ref = nasscale.measure("mobilenet_v3_large").latency_ms
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        {"search": "FLOPs budget (analytic)", "trials": flops_summary["trials"],
         "seconds": flops_s, "trials_per_min": 60 * flops_summary["trials"] / flops_s,
         "feasible": flops_summary["feasible"]},
        {"search": "latency budget (lookup table)", "trials": lat_summary["trials"],
         "seconds": lat_s, "trials_per_min": 60 * lat_summary["trials"] / lat_s,
         "feasible": lat_summary["feasible"]},
    ]
    print(table(("search", "trials", "seconds", "trials/min", "feasible"),
                [(r["search"], r["trials"], f"{r['seconds']:.0f}", f"{r['trials_per_min']:.1f}",
                  r["feasible"]) for r in rows], right="trials seconds trials/min feasible"))
    limit = lat_summary["constraints"][0]["limit"]
    print(f"\nlookup table: {report.entries} blocks ({report.new_entries} measured now in "
          f"{lut_s:.0f} s)")
    print(f"at the latency of mobilenet_v3_large (budget {limit:.2f} ms, predicted):")
    print(f"  mobilenet_v3_large: NASWOT {ref.get('score', float('nan')):.2f}, "
          f"{ref.get('latency_ms', float('nan')):.2f} ms predicted, {measured_ref:.2f} ms "
          f"measured, {si(ref['flops'])} FLOPs")
    if best:
        print(f"  best of {args.trials} trials: NASWOT {best['naswot']:.2f}, "
              f"{best['latency_ms']:.2f} ms predicted, {measured_best:.2f} ms measured, "
              f"{si(best['flops'])} FLOPs")
    print(FLOPS_CONVENTION + ".")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "search", "machine": platform.processor() or platform.machine(),
        "rows": rows, "lut": {"path": args.lut, "entries": report.entries,
                              "built_now": report.new_entries, "build_s": lut_s},
        "latency_budget_ms": limit, "reference": {**ref, "measured_ms": measured_ref},
        "best": {**best, "measured_ms": measured_best} if best else None,
        "flops_convention": FLOPS_CONVENTION}, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
