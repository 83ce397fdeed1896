"""One prepared run on a machine with a CUDA GPU (about 5 minutes): CPU and GPU latency of a few
named networks in several modes, and a small check of the latency table on the GPU.

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check.json] [--budget-s 280]

1. CPU: each network at 1 thread and at all cores (eager, float32, batch 1).
2. GPU, batch 1: eager; one CUDA graph; float16; channels_last; torch.compile (MobileNetV3-Large
   only: compiling takes most of a minute); batch 32 eager.
3. GPU latency table: every block of ``around:mobilenet_v3_large`` timed in carrier networks,
   then ``--n`` networks of that space measured end to end and predicted: fraction within ±10 %,
   MAPE, Spearman; Kendall τ of FLOPs vs GPU latency on the same sample.

Steps that would overrun ``--budget-s`` are skipped and listed.  Prints tables, writes JSON (and a
copy under $OUT when that is set, for the device tool).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

import nasscale
from nasscale.latency import LatencyTable, Settings, TimingPolicy, around, measure
from nasscale.latency.build import build_table
from nasscale.latency.key import available_cores
from nasscale.reports.stats import kendall_tau, spearman
from nasscale.reports.text import FLOPS_CONVENTION, si, table

NETWORKS = ("mobilenet_v3_large", "efficientnet_b0", "mobilenet_v3_small", "convnext_tiny")
POLICY = TimingPolicy(round_s=0.15, min_runs=30, warmup_max_s=2.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/gpu_check.json")
    parser.add_argument("--budget-s", type=float, default=280.0)
    parser.add_argument("--n", type=int, default=24, help="networks in the predictor check")
    args = parser.parse_args(argv)
    import torch

    t0 = time.perf_counter()
    left = lambda: args.budget_s - (time.perf_counter() - t0)  # noqa: E731
    result: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
                    "cpu_cores": available_cores(), "rows": [], "skipped": []}
    rows = result["rows"]

    def run(label, name, min_left=10.0, **options):
        if left() < min_left:
            result["skipped"].append(f"{label} {name}")
            return None
        try:
            rec = measure(name, policy=POLICY, **options)
        except nasscale.NasscaleError as err:
            rows.append({"setting": label, "network": name, "error": str(err)})
            print(f"  {label} {name}: {err}", file=sys.stderr)
            return None
        rows.append({"setting": label, "network": name, "latency_ms": rec.latency_ms,
                     "p90_ms": rec.stats.p90, "spread": rec.stats.spread, "runs": rec.stats.n,
                     "flops": rec.flops, "compile_s": rec.compile_s, "key": rec.key.as_dict()})
        print(f"  {label:28s} {name:20s} {rec.latency_ms:9.3f} ms", file=sys.stderr)
        return rec

    cores = available_cores()
    for name in NETWORKS[:2]:
        run("cpu 1 thread", name, threads=1)
        run(f"cpu {cores} threads", name, threads=cores)
    if not torch.cuda.is_available():
        print("no CUDA device: GPU steps skipped", file=sys.stderr)
        result["skipped"].append("every GPU step (no CUDA)")
    else:
        result["gpu"] = torch.cuda.get_device_name()
        for name in NETWORKS:
            run("cuda eager fp32", name, device="cuda")
            run("cuda graph fp32", name, device="cuda", cuda_graphs=True)
            run("cuda eager fp16", name, device="cuda", dtype="float16")
            run("cuda eager fp32 channels_last", name, device="cuda", channels_last=True)
            run("cuda eager fp32 batch 32", name, device="cuda", batch=32)
        run("cuda compile fp32", "mobilenet_v3_large", min_left=150, device="cuda", compile=True)
        predictor_check(args, result, left)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], out.name).write_text(out.read_text())
    ok = [r for r in rows if "latency_ms" in r]
    print(table(("setting", "network", "FLOPs", "p50 ms", "p90 ms", "spread"),
                [(r["setting"], r["network"], si(r["flops"]), f"{r['latency_ms']:.3f}",
                  f"{r['p90_ms']:.3f}", f"{100 * r['spread']:.1f}%") for r in ok],
                right="FLOPs p50 ms p90 ms spread"))
    if "predictor" in result:
        p = result["predictor"]
        print(f"\nGPU table ({p['entries']} entries, built in {p['build_s']:.0f} s): "
              f"{p['n']} networks, within ±10 % {100 * p['within_10pct']:.0f} %, within ±5 % "
              f"{100 * p['within_5pct']:.0f} %, MAPE {p['mape']:.1f} %, Spearman "
              f"{p['spearman']:.3f}; Kendall τ FLOPs vs latency {p['kendall_tau_flops']:.3f}")
    if result["skipped"]:
        print("skipped: " + "; ".join(result["skipped"]))
    print(f"{FLOPS_CONVENTION}.\nwrote {out} in {time.perf_counter() - t0:.0f} s")
    return 0


def predictor_check(args, result, left) -> None:
    if left() < 90:
        result["skipped"].append("GPU predictor check")
        return
    settings = Settings(device="cuda")
    space = around("mobilenet_v3_large")
    path = Path(args.out).with_name("gpu_check_table.json")
    t0 = time.perf_counter()
    build_table([space], path, settings, policy=TimingPolicy(rounds=3, round_s=0.05,
                                                             min_runs=15, warmup_max_s=1.0))
    build_s = time.perf_counter() - t0
    tbl = LatencyTable.load(path)
    rng = random.Random(12345)
    meas, pred, flops = [], [], []
    for i in range(args.n):
        if left() < 5:
            result["skipped"].append(f"predictor networks {i}..{args.n - 1}")
            break
        spec = space.sample(rng, f"gpu{i}")
        rec = measure(spec, settings=settings, policy=POLICY)
        meas.append(rec.latency_ms)
        pred.append(tbl.predict(spec).total_ms)
        flops.append(rec.flops)
    if len(meas) < 3:
        return
    m, p = np.array(meas), np.array(pred)
    err = np.abs(p / m - 1)
    result["predictor"] = {
        "n": len(m), "entries": len(tbl), "build_s": build_s,
        "within_10pct": float(np.mean(err <= 0.10)), "within_5pct": float(np.mean(err <= 0.05)),
        "mape": float(100 * err.mean()), "spearman": spearman(p, m),
        "kendall_tau_flops": kendall_tau(flops, m), "measured_ms": meas, "predicted_ms": pred,
        "key": tbl.key.as_dict()}


if __name__ == "__main__":
    sys.exit(main())
