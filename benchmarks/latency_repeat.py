"""Do latency measurements repeat?  Absolute milliseconds against the ratio to a reference
network timed interleaved with it (what a relative budget needs), pass against pass.

    python benchmarks/latency_repeat.py --n 20 --out benchmarks/results/latency_repeat.json \
        [--space mobilenet_v3_like --space efficientnet_like --space mobilevit_hybrid]
        [--clock wall] [--threads 1] [--seed 7]

For N networks sampled from each search space (seeded), two passes over the sample (the second
in reverse order), each network measured the way a search measures a candidate
(``nasscale.latency.source.quick_policy()``):

- **absolute**: ``nasscale.latency.measure`` (p50 in ms);
- **ratio**: ``nasscale.latency.measure.measure_ratio`` against the space's first reference
  network (``contains``), 4 pairs of alternating rounds; its ms are ratio × the reference's
  latency measured once at the start (as a study's budget is).

Reports, per space and over all, the pass-to-pass difference |pass1 / pass2 - 1| (median, p90,
share over 10 %) of each, and the seconds per measurement.  Wall clock unless ``--clock cpu``.
Prints a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch

import nasscale
from nasscale.latency import Settings, TimingPolicy, measure
from nasscale.latency.measure import PreparedCache, measure_ratio
from nasscale.latency.source import quick_policy
from nasscale.reports.text import table
from nasscale.search import load_space

SEARCH_POLICY = quick_policy()  # a candidate's timing in a study

SPACES = ("mobilenet_v3_like", "efficientnet_like", "mobilevit_hybrid")


def noise(a, b) -> dict:
    d = np.abs(np.asarray(a) / np.asarray(b) - 1) * 100
    return {"median_pct": float(np.median(d)), "p90_pct": float(np.percentile(d, 90)),
            "over_10pct": int((d > 10).sum()), "n": int(len(d))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", action="append")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", default="benchmarks/results/latency_repeat.json")
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    settings = Settings(threads=args.threads, clock=args.clock)
    t_start = time.time()
    result = {"benchmark": "latency_repeat", "n_per_space": args.n, "clock": args.clock,
              "threads": args.threads, "pairs": args.pairs, "policy": "SEARCH_POLICY",
              "key": settings.key().as_dict(), "torch": torch.__version__,
              "machine": platform.machine(), "loadavg_start": list(__import__("os").getloadavg()),
              "spaces": {}}
    all_abs, all_ratio = [[], []], [[], []]
    rows = []
    for name in args.space or SPACES:
        space = load_space(name)
        ref = nasscale.load(space.contains[0])
        ref_ms = measure(ref, settings=settings, policy=TimingPolicy()).latency_ms
        sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
        specs = []
        for i in range(args.n):
            trial = sampler.ask()
            specs.append(space.sample(trial, name=f"{name}_{i}"))
            sampler.tell(trial, 0.0)
        cache = PreparedCache(settings, SEARCH_POLICY)
        passes = {"absolute": [{}, {}], "ratio": [{}, {}]}
        secs = {"absolute": [], "ratio": []}
        for k, order in enumerate((range(args.n), reversed(range(args.n)))):
            for i in order:
                t0 = time.perf_counter()
                passes["absolute"][k][i] = measure(specs[i], settings=settings,
                                                   policy=SEARCH_POLICY).latency_ms
                secs["absolute"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                rec = measure_ratio(specs[i], ref, settings=settings, policy=SEARCH_POLICY,
                                    pairs=args.pairs, cache=cache)
                passes["ratio"][k][i] = rec.ratio * ref_ms
                secs["ratio"].append(time.perf_counter() - t0)
            print(f"[{time.time() - t_start:6.0f}s] {name}: pass {k + 1} done", file=sys.stderr,
                  flush=True)
        entry = {"reference": ref.name, "reference_ms": ref_ms, "networks": []}
        for kind in ("absolute", "ratio"):
            a = [passes[kind][0][i] for i in range(args.n)]
            b = [passes[kind][1][i] for i in range(args.n)]
            entry[kind] = {**noise(a, b), "seconds_per_measurement": float(np.mean(secs[kind]))}
            (all_abs if kind == "absolute" else all_ratio)[0].extend(a)
            (all_abs if kind == "absolute" else all_ratio)[1].extend(b)
        entry["networks"] = [{"i": i, "flops": nasscale.count(specs[i]).flops,
                              "absolute_ms": [passes["absolute"][0][i], passes["absolute"][1][i]],
                              "ratio_ms": [passes["ratio"][0][i], passes["ratio"][1][i]]}
                             for i in range(args.n)]
        result["spaces"][name] = entry
        for kind in ("absolute", "ratio"):
            e = entry[kind]
            rows.append((name, kind, f"{e['median_pct']:.2f}", f"{e['p90_pct']:.2f}",
                         f"{e['over_10pct']}/{e['n']}", f"{e['seconds_per_measurement']:.2f}"))
    result["all"] = {"absolute": noise(*all_abs), "ratio": noise(*all_ratio)}
    for kind in ("absolute", "ratio"):
        e = result["all"][kind]
        rows.append(("all", kind, f"{e['median_pct']:.2f}", f"{e['p90_pct']:.2f}",
                     f"{e['over_10pct']}/{e['n']}", ""))
    result["loadavg_end"] = list(__import__("os").getloadavg())
    result["seconds"] = time.time() - t_start
    print(table(("space", "measure", "median %", "p90 %", ">10 %", "s/measurement"), rows,
                right="median % p90 % >10 % s/measurement"))
    print(f"pass-to-pass |pass1/pass2 - 1| over {args.n} networks per space; {args.clock} clock, "
          f"{args.threads} thread(s); {result['seconds']:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
