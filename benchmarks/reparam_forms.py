"""Train form against deploy form of the re-parameterisable families: params, FLOPs and CPU
latency of each network as it trains (every branch) and as it ships (fused by
``nasscale.reparameterize``).

    python benchmarks/reparam_forms.py [--networks mobileone_s0 repvit_m0_9 fastvit_t8]
        [--passes 3] [--threads 1] [--out benchmarks/results/reparam_forms.json]

Params and FLOPs are nasscale's analytic counts of both forms, which the golden tests hold
equal to timm's module before and after its own ``reparameterize_model`` (FLOPs: one
multiply-accumulate = one FLOP; conv, linear and attention matmuls; BN, activations, pooling
and element-wise ops not counted; batch 1).  Latency: ``nasscale.measure`` with the measurement
key's ``form`` set to ``train`` or ``deploy`` (CPU, ``--threads`` threads, batch 1, float32,
eager, BatchNorm after a conv folded in both forms as for every network nasscale times), the
two forms alternating train, deploy, deploy, train, ... over ``--passes`` passes; each pass
gives each form's p50 and the train/deploy ratio.  Reported: the median p50 over the passes,
its spread (max - min over the passes, the pass-to-pass noise) and the median ratio.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import nasscale  # noqa: E402
from nasscale.latency import Settings  # noqa: E402
from nasscale.reports import FLOPS_CONVENTION  # noqa: E402

DEFAULT = ["mobileone_s0", "repvit_m0_9", "fastvit_t8"]


def row(name: str, passes: int, threads: int) -> dict:
    spec = nasscale.load(name)
    train, deploy = nasscale.count(spec.train_form()), nasscale.count(spec.deploy_form())
    ms: dict[str, list[float]] = {"train": [], "deploy": []}
    ratios = []
    for p in range(passes):
        order = ("train", "deploy") if p % 2 == 0 else ("deploy", "train")
        got = {}
        for form in order:
            rec = nasscale.measure(spec, settings=Settings(threads=threads, form=form))
            got[form] = rec.latency_ms
            ms[form].append(rec.latency_ms)
            key = rec.key
        ratios.append(got["train"] / got["deploy"])
        print(f"  {name} pass {p + 1}: train {got['train']:.2f} ms, deploy "
              f"{got['deploy']:.2f} ms", flush=True)
    return {"network": name, "resolution": spec.resolution,
            "train": {"params": train.params, "flops": train.flops,
                      "latency_ms": statistics.median(ms["train"]),
                      "latency_spread_ms": max(ms["train"]) - min(ms["train"]),
                      "passes_ms": ms["train"]},
            "deploy": {"params": deploy.params, "flops": deploy.flops,
                       "latency_ms": statistics.median(ms["deploy"]),
                       "latency_spread_ms": max(ms["deploy"]) - min(ms["deploy"]),
                       "passes_ms": ms["deploy"]},
            "latency_ratio": statistics.median(ratios), "ratios": ratios,
            "key": key.describe()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", nargs="*", default=None)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "reparam_forms.json"))
    args = ap.parse_args()
    names = args.networks or [n for n in DEFAULT if n in nasscale.names()]
    rows = [row(n, args.passes, args.threads) for n in names]
    print(f"\n{'network':<14} {'form':<7} {'params':>11} {'FLOPs':>15} {'latency ms':>11} "
          f"{'spread':>7}")
    for r in rows:
        for form in ("train", "deploy"):
            f = r[form]
            print(f"{r['network']:<14} {form:<7} {f['params']:>11,} {f['flops']:>15,} "
                  f"{f['latency_ms']:>11.2f} {f['latency_spread_ms']:>7.2f}")
        print(f"{'':<14} train/deploy latency x{r['latency_ratio']:.2f}")
    print(FLOPS_CONVENTION + ".")
    try:
        load = open("/proc/loadavg").read().split()[0]
    except OSError:
        load = "?"
    result = {"benchmark": "reparam_forms", "passes": args.passes, "threads": args.threads,
              "machine": f"{platform.machine()}, load {load} at the end",
              "flops_convention": FLOPS_CONVENTION, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
