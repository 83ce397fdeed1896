"""Analytic cost model vs building the module and counting with fvcore, for every named network.

    python benchmarks/costs.py [--names a,b] [--repeats 50] [--out benchmarks/results/costs.json]

Prints a table and writes JSON.  Both paths must agree exactly (params and FLOPs); the analytic
path should be at least 100x faster.  FLOPs: multiply-accumulates of conv, linear and attention
matmuls, batch 1, at each network's resolution.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import nasscale
from nasscale.costs.fvcore_count import fvcore_count
from nasscale.reports.text import FLOPS_CONVENTION, si, table


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", help="comma-separated names (default: every named network)")
    parser.add_argument("--repeats", type=int, default=50, help="analytic-path repeats")
    parser.add_argument("--out", default="benchmarks/results/costs.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    names = args.names.split(",") if args.names else nasscale.names()
    rows = []
    for name in names:
        spec = nasscale.load(name)
        analytic_s, cost = timed(lambda spec=spec: nasscale.count(spec), args.repeats)

        def slow(spec=spec):
            model = nasscale.build(spec)
            counted = fvcore_count(model, torch.zeros(1, 3, spec.resolution, spec.resolution))
            return sum(p.numel() for p in model.parameters()), counted.flops

        slow_s, (params, flops) = timed(slow, 1)
        rows.append({"name": name, "resolution": spec.resolution, "params": cost.params,
                     "flops": cost.flops, "agree": (params, flops) == (cost.params, cost.flops),
                     "analytic_ms": analytic_s * 1e3, "build_fvcore_ms": slow_s * 1e3,
                     "speedup": slow_s / analytic_s})
        print(f"  {name}: {analytic_s * 1e3:.2f} ms vs {slow_s:.1f} s", file=sys.stderr)
    print(table(("name", "res", "params", "FLOPs", "agree", "analytic ms", "build+fvcore ms",
                 "speedup"),
                [(r["name"], r["resolution"], si(r["params"]), si(r["flops"]), r["agree"],
                  f"{r['analytic_ms']:.2f}", f"{r['build_fvcore_ms']:.0f}",
                  f"{r['speedup']:,.0f}x") for r in rows],
                right="res params FLOPs analytic ms build+fvcore ms speedup"))
    speedups = [r["speedup"] for r in rows]
    summary = {"min_speedup": min(speedups), "median_speedup": statistics.median(speedups),
               "all_agree": all(r["agree"] for r in rows)}
    print(f"\nspeedup: min {summary['min_speedup']:,.0f}x, median "
          f"{summary['median_speedup']:,.0f}x; all agree: {summary['all_agree']}")
    print(FLOPS_CONVENTION + ".")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "costs", "machine": platform.processor() or
                               platform.machine(), "torch": torch.__version__,
                               "threads": torch.get_num_threads(), "rows": rows, **summary},
                              indent=2))
    print(f"wrote {out}")
    return 0 if summary["all_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
