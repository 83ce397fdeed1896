"""Weights equivalence: every covered network, reference -> nasscale -> reference.

Run in a separate virtual environment with torchvision, timm and fvcore installed ($REF_ENV:
torchvision and timm do not import next to the project's CPU torch):

    $REF_ENV/bin/python benchmarks/weights_equivalence.py [--repeats 3] [--only NAME ...]
        [--resume]   # keep the rows OUT has (same versions and repeats), measure the rest

For each zoo network that torchvision or timm implements (benchmarks/reference/models.py):
build the reference model, fill every tensor with seeded stand-ins (perturbed weights and random
BatchNorm statistics, a different draw per repeat: nasscale.weights.seeded), load it into
nasscale with ``load_weights(..., source=...)`` ("in"), export it back with ``export_weights``
into a fresh reference model loaded with ``strict=True`` ("out"), and compare outputs on a
random batch of 2 in eval mode.  The error is max |a - b| / max |b| over the logits; the table
gives the worst over the repeats.  Target: < 1e-5 both ways.  A network above it in float32 is
checked again in float64 (the same weights and input): below 1e-9 there means the mapping and
the function are exact and float32 rounding is amplified by the seeded weights (attention over
large random logits does that), which the row says; above it, the row fails.  Input sizes: the
network's own for ViT and Swin (fixed patch grids), else min(own, 160) to keep the run short on
a CPU.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "reference"))
import models  # noqa: E402

import nasscale  # noqa: E402
from nasscale.weights import export_weights, load_weights  # noqa: E402
from nasscale.weights.seeded import seeded_state_dict  # noqa: E402


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def check(source: str, net: str, repeats: int) -> dict:
    spec = nasscale.zoo.get(net)
    size = spec.resolution if spec.family in ("vit", "swin") else min(spec.resolution, 160)
    ins, outs, f64, t0 = [], [], [], time.perf_counter()
    ref = models.create(source, net).eval()
    for r in range(repeats):
        ref.load_state_dict(seeded_state_dict(ref.state_dict(), salt=f"repeat{r}/"))
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(r))
        ours = load_weights(net, ref.state_dict(), source=source)
        back = models.create(source, net).eval()
        back.load_state_dict(export_weights(ours, net, source), strict=True)
        with torch.no_grad():
            a, b, c = ref(x), ours(x), back(x)
        ins.append(rel(b, a))
        outs.append(rel(c, b))
        if max(ins[-1], outs[-1]) >= 1e-5:
            with torch.no_grad():
                a64, b64, c64 = ref.double()(x.double()), ours.double()(x.double()), \
                    back.double()(x.double())
            ref.float()
            f64.append(max(rel(b64, a64), rel(c64, b64)))
        del ours, back
    return {"source": source, "network": net, "model": models.SOURCES[source][net],
            "size": size, "repeats": repeats, "in_max": max(ins), "out_max": max(outs),
            "in": ins, "out": outs, **({"float64_max": max(f64)} if f64 else {}),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="network names")
    ap.add_argument("--out", default=str(HERE / "results" / "weights_equivalence.json"))
    ap.add_argument("--resume", action="store_true",
                    help="keep OUT's rows measured with these versions and repeats")
    args = ap.parse_args()
    rows: list[dict] = []
    if args.resume and Path(args.out).exists():
        old = json.loads(Path(args.out).read_text(encoding="utf-8"))
        if old.get("versions") == versions():
            rows = [r for r in old["rows"] if r["repeats"] == args.repeats]
    done = {(r["source"], r["network"]) for r in rows}
    print(f"{'source':<12} {'network':<24} {'size':>4}  {'in (max rel)':>12}  "
          f"{'out (max rel)':>13}  {'s':>6}")
    todo = [(s, n) for s, table in models.SOURCES.items() for n in table
            if not args.only or n in args.only]
    for source, net in todo:
        if (source, net) in done:
            continue
        row = check(source, net, args.repeats)
        rows.append(row)
        ok = "" if max(row["in_max"], row["out_max"]) < 1e-5 else (
            f"  float32 rounding (float64: {row['float64_max']:.1e})"
            if row.get("float64_max", 1.0) < 1e-9 else "  ABOVE 1e-5")
        print(f"{source:<12} {net:<24} {row['size']:>4}  {row['in_max']:>12.2e}  "
              f"{row['out_max']:>13.2e}  {row['seconds']:>6.1f}{ok}", flush=True)
        write(args.out, rows, complete=all(t in {(r["source"], r["network"]) for r in rows}
                                           for t in todo))  # after each row: a long run
    print(f"worst: {max(max(r['in_max'], r['out_max']) for r in rows):.2e} over {len(rows)} "
          f"networks -> {args.out}")
    f64 = [r for r in rows if "float64_max" in r]
    if f64:
        print("above 1e-5 in float32, checked in float64: " + ", ".join(
            f"{r['network']} {max(r['in_max'], r['out_max']):.1e} -> {r['float64_max']:.1e}"
            for r in f64))


def versions() -> dict:
    import timm
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "timm": timm.__version__}


def write(path: str, rows: list[dict], complete: bool) -> None:
    result = {"benchmark": "weights_equivalence",
              "target": "max relative error < 1e-5 in float32, or < 1e-9 in float64 where "
                        "float32 rounding is amplified (float64_max)",
              "machine": f"{platform.processor() or platform.machine()}, "
                         f"{torch.get_num_threads()} threads, CPU, float32",
              "versions": versions(),
              "complete": complete, "rows": rows,
              "worst": max((max(r["in_max"], r["out_max"]) for r in rows), default=None),
              "worst_float32_within_1e-5": max((max(r["in_max"], r["out_max"]) for r in rows
                                                if "float64_max" not in r), default=None),
              "worst_float64": max((r["float64_max"] for r in rows if "float64_max" in r),
                                   default=None)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    main()
