"""How well do zero-cost proxies rank architectures?  Spearman ρ between each proxy (and the
FLOPs/params baselines) and the top-1 accuracy after short training on digits.

    python benchmarks/proxy_quality.py [--space mobilenet_v3_like] [--n 30] [--epochs 3]
        [--subset 1000] [--resolution 32] [--seed 0] [--out benchmarks/results/proxy_quality.json]

Architectures are sampled uniformly from the space (seeded), trained on scikit-learn's bundled
digits (1,797 8x8 images upsampled to --resolution, 20 % held out) and scored by every proxy on
the same real-data batch, with the same seeded initialisation.  Prints a table, writes JSON.
FLOPs: multiply-accumulates of conv and linear layers at the training resolution, batch 1.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import optuna
import torch

from nasscale.reports.stats import kendall_tau, spearman
from nasscale.reports.text import table
from nasscale.scoring.evaluators import CostEvaluator, ProxyEvaluator, TrainEvaluator, arch_seed
from nasscale.scoring.train import TrainSettings
from nasscale.search import load_space


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenet_v3_like")
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--subset", type=int, default=1000)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch", type=int, default=32, help="proxy batch size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/proxy_quality.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(args.space)
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
    trainer = TrainEvaluator("digits", TrainSettings(epochs=args.epochs, subset=args.subset,
                                                     resolution=args.resolution))
    proxies = {"naswot": ProxyEvaluator("naswot", args.batch, args.resolution, "digits"),
               "synflow": ProxyEvaluator("synflow", args.batch, args.resolution, "digits"),
               "flops": CostEvaluator("flops"), "params": CostEvaluator("params")}
    rows = []
    t_start = time.time()
    for i in range(args.n):
        trial = sampler.ask()
        spec = space.sample(trial, name=f"arch{i}").replace(num_classes=10,
                                                            resolution=args.resolution)
        sampler.tell(trial, 0.0)
        seed = arch_seed(args.seed, spec)
        row = {"arch": i}
        for name, ev in proxies.items():
            t0 = time.perf_counter()
            row[name] = ev.score(spec, seed)
            row[f"{name}_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        row["accuracy"] = trainer.score(spec, seed)
        row["train_s"] = time.perf_counter() - t0
        rows.append(row)
        print(f"  [{i + 1}/{args.n}] acc {row['accuracy']:.3f} naswot {row['naswot']:.1f} "
              f"synflow {row['synflow']:.1f} ({row['train_s']:.0f}s)", file=sys.stderr)
    acc = [r["accuracy"] for r in rows]
    result_rows = []
    for name in proxies:
        vals = [r[name] for r in rows]
        result_rows.append({"proxy": name, "spearman": spearman(vals, acc),
                            "kendall": kendall_tau(vals, acc),
                            "seconds_per_arch": sum(r[f"{name}_s"] for r in rows) / len(rows)})
    print(table(("proxy", "Spearman rho", "Kendall tau", "s/arch"),
                [(r["proxy"], f"{r['spearman']:+.3f}", f"{r['kendall']:+.3f}",
                  f"{r['seconds_per_arch']:.3f}") for r in result_rows],
                right="Spearman rho Kendall tau s/arch"))
    print(f"\n{args.n} architectures of {args.space}; accuracy after {args.epochs} epochs on "
          f"{args.subset} digits at {args.resolution}px: min {min(acc):.3f}, median "
          f"{sorted(acc)[len(acc) // 2]:.3f}, max {max(acc):.3f}; training "
          f"{sum(r['train_s'] for r in rows) / len(rows):.1f} s/arch.")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "proxy_quality", "space": args.space, "n": args.n, "epochs": args.epochs,
        "subset": args.subset, "resolution": args.resolution, "seed": args.seed,
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "threads": args.threads, "correlations": result_rows, "archs": rows,
        "wall_s": time.time() - t_start}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
