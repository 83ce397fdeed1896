"""How much does the runtime change the answer?  The same networks timed in eager PyTorch,
ONNX Runtime, OpenVINO and ExecuTorch (XNNPACK), fp32 and int8.

    python benchmarks/runtimes.py --out benchmarks/results/runtimes.json \\
        [--space mobilenet_v3_like --space efficientnet_like] [--n 30] [--seed 7]
        [--config eager --config onnxruntime ...] [--rounds 5] [--round-s 0.15]

For N networks sampled from each search space (``RandomSuggester``, ``--seed``; the default 7
was not used to tune anything here), plus the reference network of the budget
(``--reference``, default mobilenet_v3_large), every configuration (``--config``, default all:
eager, onnxruntime, onnxruntime-int8, openvino, openvino-int8, executorch, executorch-int8) is
prepared exactly as ``nasscale cost --runtime R [--quantize int8]`` prepares it (what
``nasscale export`` writes; int8 calibrated on seeded noise, which sets the speed but not the
accuracy) and timed at 1 thread, batch 1, in ``--rounds`` interleaved rounds: every round times
each configuration once, in alternating order, so a drift of the machine's speed touches all
configurations alike.  A network's latency in a configuration is the median of its rounds'
medians; its noise the (max - min) / median of those round medians.  A configuration that
cannot run a network is recorded with its one-line reason.

Reports per configuration the median latency and its speed against eager (timed in the same
pass: ``--anchor``, default eager, is re-timed in a later pass beside its new configurations);
Kendall's τ between
every pair of configurations' rankings, per space (how much the runtime changes which network
is faster); and the *eager winner check*: under the budget ``latency <= --budget x reference``
measured in eager PyTorch, the network a capacity-maximising search picks (the most FLOPs among
those within the budget), and whether it still meets the same relative budget in each runtime.

The results are saved after every network; a rerun resumes, measuring only the (network,
configuration) pairs missing, so ``--config`` may add runtimes in a later pass (then those are
interleaved only with each other).  ``--summary RESULT`` prints the tables of a saved result.
FLOPs: one multiply-accumulate = one FLOP (conv, linear and attention matmuls).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from nasscale.errors import NasscaleError
from nasscale.latency import Settings, TimingPolicy
from nasscale.latency.key import cpu_model
from nasscale.latency.measure import prepare, run_guarded, torch_threads
from nasscale.latency.timing import time_runs
from nasscale.reports.progress import Progress
from nasscale.reports.stats import kendall_tau
from nasscale.reports.text import FLOPS_CONVENTION, table

CONFIGS = {"eager": ("eager", "none"), "onnxruntime": ("onnxruntime", "none"),
           "onnxruntime-int8": ("onnxruntime", "int8"), "openvino": ("openvino", "none"),
           "openvino-int8": ("openvino", "int8"), "executorch": ("executorch", "none"),
           "executorch-int8": ("executorch", "int8")}
SPACES = ("mobilenet_v3_like", "efficientnet_like")


def settings_of(config: str) -> Settings:
    runtime, quantize = CONFIGS[config]
    return Settings.from_options(runtime=runtime, quantize=quantize, clock="wall")


def networks(spaces, n: int, seed: int, reference: str):
    import random

    import nasscale
    from nasscale.search import load_space
    from nasscale.specs.random import RandomSuggester

    per_space = []
    for name in spaces:
        space = load_space(name)
        rng = random.Random(seed)
        per_space.append([(name, space.sample(RandomSuggester(rng), name=f"{name}_{i}"))
                          for i in range(n)])
    # the spaces alternate, so a pass cut short still has the first networks of each
    return [("reference", nasscale.load(reference))] + [net for group in zip(*per_space)
                                                         for net in group]


def time_network(spec, configs: list[str], rounds: int, policy: TimingPolicy,
                 pass_id: str = "", names: dict | None = None) -> dict:
    """{name: {ms, spread, rounds_ms, prepare_s, pass} or {error}} for one network; ``names``
    maps a configuration to the name it is stored under (an anchor re-timed in a later pass)."""
    names = names or {}
    import torch

    prepared, out = {}, {}
    for config in configs:
        s = settings_of(config)
        t0 = time.perf_counter()
        try:
            with torch_threads(1), torch.inference_mode():
                prepared[config] = run_guarded(lambda s=s: prepare(spec, s, policy=policy),
                                               f"{config} {spec.name}")
        except NasscaleError as err:
            out[config] = {"error": str(err)[:300]}
            continue
        out[config] = {"prepare_s": round(time.perf_counter() - t0, 2), "rounds_ms": []}
    order = list(prepared)
    for r in range(rounds):
        for config in (order if r % 2 == 0 else order[::-1]):
            p = prepared[config]

            def run(sw, p=p):
                p.forward()
                sw.lap()

            with torch_threads(1), torch.inference_mode():
                runs = time_runs(run, p.stopwatch(), policy)
            out[config]["rounds_ms"].append(float(np.median(runs.totals)) * 1e3)
    for config in order:
        ms = out[config]["rounds_ms"]
        out[config]["ms"] = float(np.median(ms))
        out[config]["spread"] = float((max(ms) - min(ms)) / np.median(ms))
    for config in out:
        out[config]["pass"] = pass_id
    prepared.clear()
    gc.collect()
    return {names.get(c, c): v for c, v in out.items()}


def machine() -> dict:
    import torch

    versions = {}
    for name in ("onnxruntime", "openvino", "executorch"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:  # not installed
            versions[name] = None
    return {"cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "platform": platform.platform(),
            "torch": torch.__version__, **versions, "threads": 1, "batch": 1,
            "clock": "wall (time.perf_counter)"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", action="append")
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--config", action="append", choices=tuple(CONFIGS))
    p.add_argument("--anchor", default="eager", choices=tuple(CONFIGS),
                   help="re-timed in a later pass beside its new configurations, so that their "
                   "speed against it is measured interleaved (default eager)")
    p.add_argument("--reference", default="mobilenet_v3_large")
    p.add_argument("--budget", type=float, default=0.8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--round-s", type=float, default=0.15)
    p.add_argument("--out", default="benchmarks/results/runtimes.json")
    p.add_argument("--summary", metavar="RESULT")
    args = p.parse_args(argv)
    if args.summary:
        summarize(json.loads(Path(args.summary).read_text()))
        return 0
    from nasscale.costs.analytic import network_cost
    from nasscale.grammar import dump_network
    from nasscale.specs import resolve

    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {
        "benchmark": "runtimes", "flops_convention": FLOPS_CONVENTION, "seed": args.seed,
        "reference": args.reference, "budget": args.budget, "networks": {}}
    configs = args.config or list(CONFIGS)
    policy = TimingPolicy(warmup_min=3, warmup_max_s=2.0, rounds=1, max_rounds=1,
                          round_s=args.round_s, min_runs=5)
    nets = networks(args.space or SPACES, args.n, args.seed, args.reference)
    bar = Progress(len(nets), "runtimes")
    t0 = time.perf_counter()
    pass_id = "+".join(configs)
    for i, (space, spec) in enumerate(nets):
        rec = data["networks"].setdefault(spec.name, {"space": space})
        if "yaml" not in rec:
            cost = network_cost(resolve(spec))
            rec.update(yaml=dump_network(spec), flops=cost.flops, params=cost.params,
                       resolution=spec.resolution)
        results = rec.setdefault("results", {})
        todo = [c for c in configs if c not in results]
        names = {}
        if todo and args.anchor not in configs and args.anchor in results:
            todo.append(args.anchor)  # re-timed beside the new ones
            names[args.anchor] = f"{args.anchor}#{pass_id}"
        if todo:
            results.update(time_network(spec, todo, args.rounds, policy, pass_id, names))
            data["machine"] = machine()
            data.setdefault("passes", []).append({"network": spec.name, "configs": todo,
                                                  "at": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                  "load": os.getloadavg()[0]})
            tmp = out.with_name(out.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(out)
        bar.update(i + 1, spec.name)
    bar.close()
    print(f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)
    summarize(data)
    return 0


# --- the summary -------------------------------------------------------------------------------

def _ms(rec: dict, config: str) -> float | None:
    r = rec.get("results", {}).get(config, {})
    return r.get("ms")


def _eager_beside(rec: dict, config: str) -> float | None:
    """Eager's latency timed in the same pass as ``config`` (its anchor re-timing, if any)."""
    results = rec.get("results", {})
    pass_id = results.get(config, {}).get("pass")
    for name, r in results.items():
        if name.split("#")[0] == "eager" and r.get("pass") == pass_id and "ms" in r:
            return r["ms"]
    return _ms(rec, "eager")


def summarize(data: dict) -> dict:
    nets = data["networks"]
    configs = [c for c in CONFIGS if any(c in r.get("results", {}) for r in nets.values())]
    spaces = sorted({r["space"] for r in nets.values() if r["space"] != "reference"})
    rows, summary = [], {"configs": {}, "tau": {}, "winner": {}}
    for c in configs:
        ms = [_ms(r, c) for r in nets.values() if _ms(r, c) is not None]
        vs = [_ms(r, c) / _eager_beside(r, c) for r in nets.values()
              if _ms(r, c) is not None and _eager_beside(r, c)]
        spread = [r["results"][c]["spread"] for r in nets.values() if _ms(r, c) is not None]
        failed = sum(1 for r in nets.values() if "error" in r.get("results", {}).get(c, {}))
        summary["configs"][c] = {"n": len(ms), "median_ms": float(np.median(ms)),
                                 "median_vs_eager": float(np.median(vs)) if vs else None,
                                 "median_spread": float(np.median(spread)), "failed": failed}
        rows.append([c, len(ms), f"{np.median(ms):.2f}",
                     f"{np.median(vs):.2f}x" if vs else "-", f"{100 * np.median(spread):.1f}%",
                     failed])
    print(table(["runtime", "networks", "median ms", "vs eager", "round spread", "failed"],
                rows, right="networks median vs round failed"))
    for space in spaces:
        members = [r for r in nets.values() if r["space"] == space]
        head, body = ["τ"] + configs, []
        for a in configs:
            line = [a]
            for b in configs:
                pairs = [(_ms(r, a), _ms(r, b)) for r in members
                         if _ms(r, a) is not None and _ms(r, b) is not None]
                tau = kendall_tau(*zip(*pairs)) if len(pairs) > 2 else float("nan")
                summary["tau"].setdefault(space, {}).setdefault(a, {})[b] = tau
                line.append(f"{tau:+.2f}")
            body.append(line)
        halves = []
        for c in configs:  # the noise floor: odd rounds against even rounds, same runtime
            pairs = [(np.median(r["results"][c]["rounds_ms"][0::2]),
                      np.median(r["results"][c]["rounds_ms"][1::2])) for r in members
                     if len(r.get("results", {}).get(c, {}).get("rounds_ms", [])) > 1]
            tau = kendall_tau(*zip(*pairs)) if len(pairs) > 2 else float("nan")
            summary.setdefault("split_half_tau", {}).setdefault(space, {})[c] = tau
            halves.append(f"{tau:+.2f}")
        body.append(["(odd vs even rounds)"] + halves)
        print(f"\nKendall τ between runtimes' rankings, {space} ({len(members)} networks; the "
              "last row: the same runtime's odd rounds against its even rounds, the noise floor)")
        print(table(head, body))
        summary["winner"][space] = winner_check(data, members, configs)
    print("\n" + FLOPS_CONVENTION + ".")
    return summary


def winner_check(data: dict, members: list, configs: list) -> dict:
    """The eager budget's winner (most FLOPs within it) and its ratio in each runtime."""
    ref = next(r for r in data["networks"].values() if r["space"] == "reference")
    budget = data["budget"]
    if _ms(ref, "eager") is None:
        return {}
    within = [r for r in members if _ms(r, "eager") is not None
              and _ms(r, "eager") / _ms(ref, "eager") <= budget]
    if not within:
        print(f"no network within latency <= {budget}x {data['reference']} in eager")
        return {"winner": None}
    best = max(within, key=lambda r: r["flops"])
    name = next(k for k, v in data["networks"].items() if v is best)
    out = {"winner": name, "flops": best["flops"], "ratios": {}}
    line = []
    for c in configs:
        if _ms(best, c) is not None and _ms(ref, c):
            ratio = _ms(best, c) / _ms(ref, c)
            out["ratios"][c] = {"ratio": ratio, "meets": ratio <= budget}
            line.append(f"{c} {ratio:.2f}x {'meets' if ratio <= budget else 'MISSES'}")
    print(f"eager winner under latency <= {budget}x {data['reference']}: {name} "
          f"({best['flops'] / 1e6:.0f}M FLOPs): " + "; ".join(line))
    return out


if __name__ == "__main__":
    sys.exit(main())
