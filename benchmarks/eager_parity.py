"""Eager parity: nasscale's built networks against torchvision's and timm's, same weights,
same input, timed interleaved on the CPU.

Run in the reference virtual environment (torchvision and timm do not import next to the
project's CPU torch; see docs/WEIGHTS.md), ideally on a quiet machine:

    $REF_ENV/bin/python benchmarks/eager_parity.py [--networks NAME ...] [--source torchvision]
        [--pairs 24] [--runs 6] [--round-s 0.15] [--processes 3] [--repeats 1] [--threads 1]
        [--variants unfused folded]
        [--allocator steady] [--clock wall] [--out benchmarks/results/eager_parity.json]
        [--merge]   # keep OUT's rows of the networks not measured now (a run in parts)

For each network (default: one or more per family that torchvision or timm implements, see
DEFAULT; the source is torchvision where it has the network, else timm, or ``--source``): build
the reference model (benchmarks/reference/models.py), fill it with seeded stand-in weights
(nasscale.weights.seeded), load the same tensors into nasscale's module with
``nasscale.load_weights`` and check that the two give the same logits (max relative error
< 1e-5, or in float64 < 1e-9 -- < 1e-6 folded -- where attention over the seeded weights
amplifies float32 rounding, as in benchmarks/weights_equivalence.py).  Both in eval mode, batch
1 at the network's own resolution, float32, contiguous, ``torch.inference_mode``, ``--threads``
intra-op threads (default 1).

Variants: ``unfused`` -- both as built (BatchNorm as modules); ``folded`` -- every conv -> BN
pair folded into the conv in both: nasscale's with ``nasscale.latency.measure.fold_batchnorm``
(what ``nasscale latency``/``measure()`` times), the reference's by a generic pass that pairs
each BatchNorm with the conv whose output it reads (the logits are checked again after it).

Timing, as ``nasscale.latency.measure.measure_ratio`` does it: rounds of ``--runs`` forward
passes (fewer, at least 2, where a round would last over ``--round-s``; each round is
``nasscale.latency.timing.time_runs`` with one round: one warm-up run, wall clock, a run
preempted by another process dropped and run again), alternating nasscale, reference,
reference, nasscale, ... (ABBA: a linear drift cancels); each neighbouring pair of rounds gives
one ratio of medians (nasscale / reference), ``--pairs`` pairs per pass.  The passes are
repeated in ``--processes`` separate processes, one after the other (each builds, checks and
warms the models anew: on the 2-core development VM a ratio moved by up to 1.5 % from process
to process -- where the tensors land in memory -- more than the pairs vary within one),
``--repeats`` passes in each; the network order is reversed, and the other side starts the
pairs, every other pass.  The malloc setup is nasscale's measurement allocator (``--allocator
steady``: glibc with raised mmap/trim thresholds, no page faults in the steady state;
``default`` leaves glibc as it is).

Reported per network and variant: nasscale and reference ms (medians over all kept runs), the
ratio (median of all pair ratios), its 95 % interval (distribution-free, order statistics of
the pooled pair ratios), the interquartile range of the pair ratios, each pass's median ratio
and their spread (max - min: the process-to-process noise), and the ratio of the two sides'
10th-percentile run times (the fast end, which other processes disturb least; median over the
passes).  Parity: ratio <= 1.00.  Prints a table, writes JSON with the machine (CPU model,
capability, clock MHz, versions, threads, load).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "reference"))
import models  # noqa: E402

import nasscale  # noqa: E402
from nasscale.latency.key import cpu_model, current_key  # noqa: E402
from nasscale.latency.measure import fold_batchnorm  # noqa: E402
from nasscale.latency.timing import CpuStopwatch, TimingPolicy, time_runs  # noqa: E402
from nasscale.reports.text import table  # noqa: E402
from nasscale.weights import load_weights  # noqa: E402
from nasscale.weights.seeded import seeded_state_dict  # noqa: E402

#: One or more networks per family with a torchvision or timm implementation (heavier ones:
#: --networks vit_b_16 swin_t ...).
DEFAULT = ("mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "efficientnet_b0",
           "efficientnet_v2_s", "convnext_tiny", "mobilevit_xxs", "mobilenet_v4_conv_small",
           "mobilenet_v4_hybrid_medium", "mobilevit_v2_050", "mnasnet1_0", "mobilenet_v1",
           "lcnet_100", "efficientnet_lite0", "convnext_v2_atto")
VARIANTS = ("unfused", "folded")


# --- the models -------------------------------------------------------------------------------

def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def fold_reference(model: nn.Module, x: torch.Tensor) -> int:
    """Fold each BatchNorm2d that reads a Conv2d's output straight into that conv (eval); a
    timm BatchNormAct2d keeps its dropout and activation.  Returns the pairs folded."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    outputs: dict[int, str] = {}
    keep: list[torch.Tensor] = []  # the outputs stay alive, so their ids stay unique
    pairs: list[tuple[str, str]] = []
    names = {m: n for n, m in model.named_modules()}

    def conv_hook(m, args, out):
        outputs[id(out)] = names[m]
        keep.append(out)

    def bn_hook(m, args):
        conv = outputs.pop(id(args[0]), None)
        if conv is not None:
            pairs.append((conv, names[m]))

    handles = []
    for m in model.modules():
        if type(m) is nn.Conv2d:
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.BatchNorm2d):
            handles.append(m.register_forward_pre_hook(bn_hook))
    with torch.inference_mode():
        model(x)
    for h in handles:
        h.remove()
    done = 0
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        if type(bn) is nn.BatchNorm2d:
            rest: nn.Module = nn.Identity()
        elif hasattr(bn, "act") and hasattr(bn, "drop"):  # timm BatchNormAct2d
            rest = nn.Sequential(bn.drop, bn.act)
        else:
            continue
        _set(model, conv_name, fuse_conv_bn_eval(conv, bn))
        _set(model, bn_name, rest)
        done += 1
    return done


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def source_of(net: str, wanted: str | None) -> str:
    if wanted:
        if net not in models.SOURCES[wanted]:
            raise SystemExit(f"{wanted} has no {net}")
        return wanted
    return "torchvision" if net in models.TORCHVISION else "timm"


def build_pair(net: str, source: str, variant: str) -> dict:
    """Reference and nasscale modules of ``net`` with the same (seeded) weights, checked."""
    spec = nasscale.zoo.get(net)
    ref = models.create(source, net).eval()
    with torch.no_grad():
        ref.load_state_dict(seeded_state_dict(ref.state_dict(), salt="eager_parity/"))
    ours = load_weights(net, ref.state_dict(), source=source).eval()
    x = torch.randn(1, 3, spec.resolution, spec.resolution,
                    generator=torch.Generator().manual_seed(0))
    folded = None
    if variant == "folded":
        fold_batchnorm(ours)
        folded = fold_reference(ref, x)
    with torch.inference_mode():
        err = rel(ours(x), ref(x))
    err64 = None
    if err >= 1e-5:  # attention over large random logits amplifies float32 rounding: float64
        with torch.inference_mode():
            err64 = rel(copy.deepcopy(ours).double()(x.double()),
                        copy.deepcopy(ref).double()(x.double()))
        if err64 >= (1e-6 if variant == "folded" else 1e-9):  # folding rounds in float32
            raise SystemExit(f"{net} ({variant}): nasscale and {source} differ by {err:.1e} "
                             f"(float64: {err64:.1e})")
    return {"net": net, "source": source, "variant": variant, "ours": ours, "ref": ref, "x": x,
            "resolution": spec.resolution, "max_rel_err": err, "max_rel_err_float64": err64,
            "ref_bn_folded": folded}


# --- timing -------------------------------------------------------------------------------------

def round_policy(runs: int) -> TimingPolicy:
    """One round of ``runs`` runs after one warm-up run (measure_ratio's round)."""
    return TimingPolicy(warmup_min=1, warmup_max_s=0.0, rounds=1, max_rounds=1, round_s=0.0,
                        min_runs=runs)


def timed_round(model: nn.Module, x: torch.Tensor, policy: TimingPolicy, threads: int,
                clock: str = "wall"):
    def run(sw):
        model(x)
        sw.lap()

    return time_runs(run, CpuStopwatch(clock, threads, policy.preempt_ratio), policy)


def warm(pair: dict, threads: int, seconds: float, clock: str) -> float:
    """Both models alternately until ``seconds`` have passed (oneDNN primitives, allocator);
    returns the reference's median seconds per run."""
    policy = round_policy(3)
    t_end = time.perf_counter() + seconds
    while True:
        timed_round(pair["ours"], pair["x"], policy, threads, clock)
        last = timed_round(pair["ref"], pair["x"], policy, threads, clock).totals
        if time.perf_counter() > t_end:
            return float(np.median(last))


def interleaved(pair: dict, pairs: int, runs: int, threads: int, flip: bool,
                clock: str) -> dict:
    """``pairs`` ABBA pairs of rounds: ratios of round medians, nasscale / reference."""
    policy = round_policy(runs)
    ratios, ta, tb, loads, preempted = [], [], [], [], 0
    for i in range(pairs):
        ours_first = (i % 2 == 0) != flip
        order = ("ours", "ref") if ours_first else ("ref", "ours")
        got = {}
        for who in order:
            r = timed_round(pair[who], pair["x"], policy, threads, clock)
            got[who] = r.totals
            preempted += r.preempted
            if r.other_load is not None:
                loads.append(r.other_load)
        ratios.append(float(np.median(got["ours"]) / np.median(got["ref"])))
        ta += got["ours"]
        tb += got["ref"]
    return {"ratios": ratios, "ours_ms": float(np.median(ta)) * 1e3,
            "ref_ms": float(np.median(tb)) * 1e3, "ours_p10_ms": float(np.percentile(ta, 10)) * 1e3,
            "ref_p10_ms": float(np.percentile(tb, 10)) * 1e3,
            "other_load_max": max(loads, default=None), "preempted_runs": preempted}


def median_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median: order statistics of the binomial(n, 1/2)."""
    v = sorted(values)
    n = len(v)
    if n < 6:
        return v[0], v[-1]
    z = 1.959964 if level == 0.95 else 2.575829
    k = max(0, int(math.floor(n / 2 - z * math.sqrt(n) / 2)))
    return v[k], v[min(n - 1, n - 1 - k)]


def summarise(passes: list[dict]) -> dict:
    pooled = [r for p in passes for r in p["ratios"]]
    per_pass = [float(np.median(p["ratios"])) for p in passes]
    lo, hi = median_interval(pooled)
    return {"ratio": float(np.median(pooled)), "ratio_ci95": [lo, hi],
            "ratio_iqr": [float(np.percentile(pooled, 25)), float(np.percentile(pooled, 75))],
            "pass_ratios": per_pass, "pass_spread": max(per_pass) - min(per_pass),
            "ours_ms": float(np.median([p["ours_ms"] for p in passes])),
            "ref_ms": float(np.median([p["ref_ms"] for p in passes])),
            # the fast end of each side's runs: less sensitive to other processes' load
            "ratio_of_p10": float(np.median([p["ours_p10_ms"] / p["ref_p10_ms"] for p in passes])),
            "pairs": len(pooled), "other_load_max": max(
                (p["other_load_max"] for p in passes if p["other_load_max"] is not None),
                default=None),
            "preempted_runs": sum(p["preempted_runs"] for p in passes)}


# --- the run --------------------------------------------------------------------------------

def machine(threads: int, allocator: str, clock: str) -> dict:
    key = current_key("cpu", threads, allocator=allocator)  # also sets the allocator up
    mhz = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
    except OSError:
        pass
    import timm
    import torchvision

    return {"cpu": cpu_model(), "capability": torch.backends.cpu.get_cpu_capability(),
            "cores": os.cpu_count(), "cpu_mhz": sorted(mhz), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "threads": threads,
            "clock": ("wall (time.perf_counter), preempted runs dropped" if clock == "wall" else
                      "cpu (the thread's CPU time)"),
            "allocator": key.allocator, "mkldnn": torch.backends.mkldnn.is_available(),
            "env": {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                "OMP_NUM_THREADS", "LD_PRELOAD")
                    if k in os.environ}}


def git_state() -> dict:
    """The commit of the working tree and whether nasscale/modules differs from it."""
    import subprocess

    def git(*cmd):
        return subprocess.run(["git", *cmd], cwd=HERE.parent, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"),
                "modules_modified": bool(git("status", "--porcelain", "nasscale/modules"))}
    except (OSError, subprocess.SubprocessError):
        return {}


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", nargs="*", default=None, help=f"default: {' '.join(DEFAULT)}")
    ap.add_argument("--source", choices=tuple(models.SOURCES), default=None,
                    help="default: torchvision where it has the network, else timm")
    ap.add_argument("--variants", nargs="*", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--pairs", type=int, default=24, help="ABBA pairs of rounds per pass")
    ap.add_argument("--runs", type=int, default=6, help="forward passes per round (at most)")
    ap.add_argument("--round-s", type=float, default=0.15,
                    help="fewer runs per round (at least 2) where --runs would take longer")
    ap.add_argument("--processes", type=int, default=3,
                    help="separate processes, each building the models anew")
    ap.add_argument("--repeats", type=int, default=1, help="passes per process")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup-s", type=float, default=1.0)
    ap.add_argument("--allocator", choices=("steady", "default"), default="steady")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the thread's CPU time (immune to preemption on a busy machine)")
    ap.add_argument("--out", default=str(HERE / "results" / "eager_parity.json"))
    ap.add_argument("--merge", action="store_true",
                    help="keep OUT's rows of other networks/variants measured on this machine "
                         "with these versions and settings (a long run in parts)")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def measure(args: argparse.Namespace, process: int) -> dict:
    """This process's part: build and check every pair, warm it, ``args.repeats`` passes
    (overall pass ``process * repeats + k`` sets the network order and which side starts)."""
    torch.set_num_threads(args.threads)
    out = {"machine": machine(args.threads, args.allocator, args.clock),
           "loadavg_start": list(os.getloadavg()), "rows": []}
    t_start = time.time()
    built = []
    for net in args.networks or DEFAULT:
        source = source_of(net, args.source)
        for variant in args.variants:
            built.append(build_pair(net, source, variant))
    with torch.inference_mode():
        for p in built:  # runs per round: --runs, fewer where a round would pass --round-s
            seconds = warm(p, args.threads, args.warmup_s, args.clock)
            p["runs"] = max(2, min(args.runs, round(args.round_s / seconds)))
        passes: dict[int, list[dict]] = {i: [] for i in range(len(built))}
        for k in range(args.repeats):
            odd = (process * args.repeats + k) % 2 == 1
            for i in (reversed(range(len(built))) if odd else range(len(built))):
                timed = interleaved(built[i], args.pairs, built[i]["runs"], args.threads, odd,
                                    args.clock)
                passes[i].append({"process": process, **timed})
            print(f"[{time.time() - t_start:6.0f}s] process {process + 1}, pass {k + 1}/"
                  f"{args.repeats} done", file=sys.stderr, flush=True)
    for i, p in enumerate(built):
        out["rows"].append({
            "network": p["net"], "source": p["source"],
            "model": models.SOURCES[p["source"]][p["net"]], "variant": p["variant"],
            "resolution": p["resolution"], "max_rel_err": p["max_rel_err"],
            "max_rel_err_float64": p["max_rel_err_float64"],
            "reference_bn_pairs_folded": p["ref_bn_folded"], "runs_per_round": p["runs"],
            "passes": passes[i]})
    out["loadavg_end"] = list(os.getloadavg())
    return out


def in_processes(args: argparse.Namespace, argv: list[str]) -> list[dict]:
    """``measure`` in ``args.processes`` fresh interpreters, one after the other."""
    import subprocess
    import tempfile

    parts = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.processes):
            path = Path(tmp) / f"part{k}.json"
            subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv, "--child",
                            str(k), "--out", str(path)], check=True)
            parts.append(json.loads(path.read_text(encoding="utf-8")))
    return parts


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.child is not None:  # one process's part, for the parent to pool
        Path(args.out).write_text(json.dumps(measure(args, args.child)), encoding="utf-8")
        return 0
    t_start = time.time()
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t_start))
    parts = (in_processes(args, argv) if args.processes > 1 else [measure(args, 0)])
    result = {"benchmark": "eager_parity", "target": "ratio (nasscale / reference) <= 1.00",
              "machine": parts[0]["machine"],
              "settings": {"batch": 1, "dtype": "float32", "memory_format": "contiguous",
                           "mode": "eager, torch.inference_mode", "pairs": args.pairs,
                           "runs_per_round_max": args.runs, "round_s": args.round_s,
                           "processes": args.processes, "repeats_per_process": args.repeats,
                           "warmup_s": args.warmup_s},
              "nasscale_git": git_state(), "loadavg_start": parts[0]["loadavg_start"],
              "loadavg_end": parts[-1]["loadavg_end"], "rows": []}
    rows = []
    for i, row in enumerate(parts[0]["rows"]):
        passes = [p for part in parts for p in part["rows"][i]["passes"]]
        s = summarise(passes)
        result["rows"].append({
            **{k: v for k, v in row.items() if k != "passes"}, **s, "passes": passes,
            "run": {"started": started, "loadavg_start": result["loadavg_start"],
                    "loadavg_end": result["loadavg_end"], "pairs": args.pairs,
                    "processes": args.processes, "repeats_per_process": args.repeats,
                    "nasscale_git": result["nasscale_git"]}})
        rows.append((row["network"], row["source"], row["variant"], row["resolution"],
                     f"{s['ours_ms']:.2f}", f"{s['ref_ms']:.2f}", f"{s['ratio']:.3f}",
                     f"{s['ratio_ci95'][0]:.3f}-{s['ratio_ci95'][1]:.3f}",
                     " ".join(f"{r:.3f}" for r in s["pass_ratios"]), f"{s['pass_spread']:.3f}",
                     f"{s['ratio_of_p10']:.3f}", "yes" if s["ratio"] <= 1.0 else "NO"))
    result["seconds"] = round(time.time() - t_start, 1)
    print(table(("network", "source", "variant", "res", "nasscale ms", "ref ms", "ratio",
                 "95% CI", "per pass", "spread", "p10 ratio", "<=1.00"), rows,
                right="res nasscale ms ref ms ratio spread p10 ratio"))
    m = result["machine"]
    print(f"{m['cpu']} ({m['capability']}), torch {m['torch']}, {args.threads} thread(s), "
          f"{args.clock} clock, {m['allocator']} allocator; {args.pairs} pairs x <= {args.runs} "
          f"runs, {args.processes} process(es) x {args.repeats} pass(es); load "
          f"{result['loadavg_start'][0]:.2f} -> {result['loadavg_end'][0]:.2f}; "
          f"{result['seconds']:.0f} s")
    out = Path(args.out)
    if args.merge and out.exists():
        old = json.loads(out.read_text(encoding="utf-8"))
        same = ("cpu", "capability", "torch", "torchvision", "timm", "threads", "clock",
                "allocator")
        if all(old["machine"].get(k) == result["machine"][k] for k in same):
            done = {(r["network"], r["source"], r["variant"]) for r in result["rows"]}
            kept = [r for r in old["rows"] if (r["network"], r["source"], r["variant"])
                    not in done]
            result["rows"] = kept + result["rows"]
            print(f"kept {len(kept)} rows of {out}")
        else:
            print(f"{out} was measured on another machine or versions: replaced")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
