"""What a trained supernet gives: inherited weights against training from scratch, how fast
subnetworks are scored, and one supernet serving three latency budgets.

    python benchmarks/supernet.py --supernet SUPERNET.pt --section finetune|speed|budgets \
        [--epochs E] [--device cpu] [--out benchmarks/results/supernet.json]

The supernet is a ``nasscale supernet train`` file (``benchmarks/fidelity.py
--supernet-epochs`` writes one beside its results).  Sections, each written into OUT as it
finishes (a re-run replaces only its own section):

- ``finetune``: 5 subnetworks drawn with ``--arch-seed`` (not the fidelity networks): held-out
  top-1 inherited (cut, BatchNorm recalibrated), inherited + E epochs of fine-tuning (the
  data's recipe at ``--ft-lr``, no warm-up), and trained from scratch for the same E epochs
  (the recipe) — once-for-all's claim is that the second beats the third.
- ``speed``: subnetworks scored per minute (cut, recalibrate on 20 batches of 64, evaluate on
  all held-out images, and on 3,000) over ``--n`` random subnetworks, on this machine's cores.
- ``budgets``: ``studies/supernet_cpu.yaml``'s search under three latency budgets (fractions of
  MobileNetV3-Large's predicted latency), ``--trials`` each, all scored by the one supernet;
  each winner's inherited top-1 and its top-1 after E epochs of fine-tuning.

Wall clock; top-1 on the held-out split of the supernet's data.  FLOPs: multiply-accumulates
(1 MAC = 1 FLOP) of conv, linear and attention matmuls, batch 1.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import nasscale
from nasscale.latency.key import cpu_model
from nasscale.scoring.evaluators import build_seeded
from nasscale.scoring.settings import recipe_for
from nasscale.scoring.train import train
from nasscale.search import load_space
from nasscale.specs.random import RandomSuggester
from nasscale.supernet import Supernet

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fine_tune(net: Supernet, spec, args, seed: int = 0) -> dict:
    """Inherited, inherited + E epochs, scratch E epochs, for one subnetwork."""
    base = replace(recipe_for(net.meta["data_source"]), epochs=args.epochs, device=args.device,
                   resolution=net.resolution, seed=seed)
    spec = net.fit(spec)
    t0 = time.perf_counter()
    inherited = net.score(spec)
    score_s = time.perf_counter() - t0
    tuned = train(net.extract(spec).train(), net.data,
                  replace(base, lr=args.ft_lr, warmup=0.0))
    scratch = train(build_seeded(spec, seed), net.data, base)
    cost = nasscale.count(spec)
    return {"flops": cost.flops, "params": cost.params, "inherited": inherited,
            "inherited_seconds": score_s, "fine_tuned": tuned.accuracy,
            "fine_tune_seconds": tuned.seconds, "scratch": scratch.accuracy,
            "scratch_seconds": scratch.seconds}


def section_finetune(net: Supernet, space, args) -> dict:
    rng = random.Random(args.arch_seed)
    rows = []
    for i in range(5):
        spec = space.sample(RandomSuggester(rng), name=f"sub{i}")
        row = {"name": spec.name, **fine_tune(net, spec, args)}
        rows.append(row)
        log(f"{spec.name}: inherited {row['inherited']:.3f}, +{args.epochs} epochs "
            f"{row['fine_tuned']:.3f}, scratch {row['scratch']:.3f}")
    wins = sum(r["fine_tuned"] > r["scratch"] for r in rows)
    return {"epochs": args.epochs, "ft_lr": args.ft_lr, "arch_seed": args.arch_seed,
            "subnetworks": rows, "fine_tuned_beats_scratch": wins,
            "mean_gain_points": 100 * statistics.fmean(r["fine_tuned"] - r["scratch"]
                                                       for r in rows)}


def section_speed(space, args) -> dict:
    out = {}
    for held_out in (None, 3000):
        net = Supernet.open(args.supernet, space, held_out=held_out)
        rng = random.Random(args.arch_seed + 1)
        specs = [space.sample(RandomSuggester(rng)) for _ in range(args.n)]
        net.score(specs[0])  # warm-up
        seconds = []
        for spec in specs:
            t0 = time.perf_counter()
            net.score(spec)
            seconds.append(time.perf_counter() - t0)
        key = "all_held_out" if held_out is None else f"held_out_{held_out}"
        out[key] = {"images": len(net.val_y), "networks": len(seconds),
                    "seconds_mean": statistics.fmean(seconds),
                    "seconds_sd": statistics.stdev(seconds),
                    "per_minute": 60 / statistics.fmean(seconds)}
        log(f"{key}: {out[key]['per_minute']:.0f} subnetworks a minute "
            f"({out[key]['seconds_mean']:.2f} s +- {out[key]['seconds_sd']:.2f})")
    return {**out, "threads": torch.get_num_threads()}


def section_budgets(net: Supernet, space, args) -> dict:
    import yaml

    from nasscale.grammar import load_network_file
    from nasscale.search import RunOptions, load_study, run_search

    base = yaml.safe_load((ROOT / "studies" / "supernet_cpu.yaml").read_text())
    folder = Path(args.work) / "budgets"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for fraction in args.budgets:
        name = f"supernet_budget_{int(round(100 * fraction))}"
        study = {**{k: v for k, v in base.items() if k != "timeout"}, "name": name,
                 "trials": args.trials,
                 "constraints": [f"latency <= {fraction}x mobilenet_v3_large"],
                 "evaluator": {**base["evaluator"], "weights": str(Path(args.supernet)
                                                                   .resolve())},
                 "latency": {**base["latency"], "lut": str(Path(args.lut).resolve())}}
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(study, sort_keys=False))
        t0 = time.perf_counter()
        summary = run_search(load_study(str(path)), RunOptions(out=folder / name))
        seconds = time.perf_counter() - t0
        best = load_network_file(folder / name / "best.yaml")
        row = {"budget": study["constraints"][0], "trials": summary["trials"],
               "search_seconds": seconds, "winner": best.name,
               "latency_ms_predicted": summary["best"][0]["latency_ms"],
               "search_score": summary["best"][0][summary["score_name"]],
               **fine_tune(net, best, args)}
        rows.append(row)
        log(f"{row['budget']}: {row['trials']} trials in {seconds:.0f} s; winner "
            f"{row['latency_ms_predicted']:.2f} ms, inherited {row['inherited']:.3f}, "
            f"+{args.epochs} epochs {row['fine_tuned']:.3f}, scratch {row['scratch']:.3f}")
    return {"epochs": args.epochs, "ft_lr": args.ft_lr, "study": "studies/supernet_cpu.yaml",
            "winners": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--supernet", required=True)
    p.add_argument("--space", default="mobilenet_v3_like")
    p.add_argument("--section", choices=("finetune", "speed", "budgets"), required=True)
    p.add_argument("--epochs", type=int, default=1, help="fine-tuning and scratch epochs")
    p.add_argument("--ft-lr", type=float, default=0.01)
    p.add_argument("--arch-seed", type=int, default=7)
    p.add_argument("--n", type=int, default=20, help="subnetworks timed (speed)")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.4, 0.6, 0.8])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--lut", default="runs/luts/mobilenet_v3_like_cpu_1t.json")
    p.add_argument("--work", default="runs/supernet_benchmark")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/results/supernet.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = load_space(args.space)
    t0 = time.time()
    if args.section == "speed":
        result = section_speed(space, args)
    else:
        net = Supernet.open(args.supernet, space, device=args.device)
        result = (section_finetune if args.section == "finetune" else section_budgets)(
            net, space, args)
    result.update({"seconds": time.time() - t0, "machine": cpu_model(),
                   "cores": os.cpu_count(), "torch": torch.__version__,
                   "device": args.device, "supernet": Path(args.supernet).name})
    out = Path(args.out)
    whole = json.loads(out.read_text()) if out.exists() else {
        "benchmark": "supernet", "flops_convention": "multiply-accumulates of conv, linear "
        "and attention matmuls, batch 1"}
    whole[args.section] = result
    out.write_text(json.dumps(whole, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
