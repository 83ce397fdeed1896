"""Does NetAdapt reach its targets, and how fast does the result really run?

    python benchmarks/prune.py [--cases quick|all] [--out benchmarks/results/prune.json]

For a few networks and targets: the target, the resource achieved (FLOPs and params counted;
latency *predicted* by the lookup table the run grows), whether it is met, and the *measured*
end-to-end latency of the start and the result (CPU, 1 thread, batch 1, p50 of ``nasscale
cost``'s protocol; the two measured alternately, 3 rounds, medians and the median ratio) --
measured for FLOPs and params targets too, to show what they buy.
Proposals are scored by the default evaluator (NASWOT on random inputs at half resolution;
structure only, no weights).  FLOPs are multiply-accumulates of conv, linear and attention
matmuls (1 MAC = 1 FLOP).  Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import nasscale
from nasscale.latency import TimingPolicy, measure
from nasscale.pruning.run import PruneRequest, run_prune
from nasscale.reports.text import FLOPS_CONVENTION, si, table


def alternate(a, b, rounds: int = 3) -> dict:
    """Medians of ``rounds`` alternating measurements of a and b, and of their ratios."""
    import statistics

    pairs = [(measure(a, policy=TimingPolicy()).latency_ms,
              measure(b, policy=TimingPolicy()).latency_ms) for _ in range(rounds)]
    return {"start_ms": statistics.median(p[0] for p in pairs),
            "pruned_ms": statistics.median(p[1] for p in pairs),
            "ratio": statistics.median(p[1] / p[0] for p in pairs)}


QUICK = [("mobilenet_v3_small", "latency=0.8x"), ("mobilenet_v2", "flops=0.7x"),
         ("efficientnet_b0", "params=0.8x")]
ALL = QUICK + [("mobilenet_v3_large", "latency=0.75x"), ("convnext_tiny", "flops=0.75x")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", choices=("quick", "all"), default="all")
    p.add_argument("--out", default="benchmarks/results/prune.json")
    p.add_argument("--lut-dir", default="runs/luts",
                   help="latency tables are kept here (named after the network) and reused")
    args = p.parse_args(argv)
    cases = QUICK if args.cases == "quick" else ALL
    work = Path(tempfile.mkdtemp(prefix="nasscale-prune-bench-"))
    rows, records = [], []
    for name, target in cases:
        t0 = time.perf_counter()
        lut = Path(args.lut_dir) / f"prune_{name}_cpu_1t.json"
        result, _ = run_prune(PruneRequest(
            network=name, target=target, out=str(work / name),
            lut=str(lut) if target.startswith("latency") else None))
        seconds = time.perf_counter() - t0
        meas = result.extra.get("measured") or alternate(nasscale.load(name), result.final)
        start_ms, final_ms = meas["start_ms"], meas["pruned_ms"]
        start_cost, final_cost = nasscale.count(name), nasscale.count(result.final)
        achieved = {"latency": result.final_resource, "flops": final_cost.flops,
                    "params": final_cost.params}[result.metric]
        rec = {"network": name, "target": target, "metric": result.metric,
               "limit": result.limit, "achieved": achieved, "met": result.met,
               "measured_latency_ms": {"start": round(start_ms, 4), "pruned": round(final_ms, 4),
                                       "ratio": round(meas["ratio"], 4)},
               "measured_meets_target": result.extra.get("measured_meets_target"),
               "flops": {"start": start_cost.flops, "pruned": final_cost.flops},
               "params": {"start": start_cost.params, "pruned": final_cost.params},
               "iterations": len(result.iterations), "seconds": round(seconds, 1),
               **({"carriers_timed": result.extra.get("carriers_timed")}
                  if result.metric == "latency" else {})}
        records.append(rec)
        fmt = (lambda v: f"{v:.2f} ms") if result.metric == "latency" else si
        rows.append((name, target, fmt(result.limit), fmt(achieved),
                     "yes" if result.met else "NO", f"{start_ms:.2f}", f"{final_ms:.2f}",
                     f"{meas['ratio']:.3f}", si(final_cost.flops),
                     si(final_cost.params), len(result.iterations), f"{seconds:.0f}"))
        print(f"{name} {target}: done in {seconds:.0f} s", file=sys.stderr, flush=True)
    print(table(("network", "target", "limit", "achieved", "met", "start ms", "pruned ms",
                 "ratio", "FLOPs", "params", "iters", "s"), rows,
                right="limit achieved start ms pruned ms ratio FLOPs params iters s"))
    print(f"\nlatency: measured, CPU, 1 thread, batch 1 ({platform.processor() or 'cpu'}); "
          "a latency target's 'achieved' is the table's prediction.  " + FLOPS_CONVENTION + ".")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cases": records, "flops_convention": FLOPS_CONVENTION,
                               "torch": __import__("torch").__version__,
                               "machine": platform.platform()}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
