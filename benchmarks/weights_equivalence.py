"""Weights equivalence: every covered network, reference -> nasscale -> reference.

A re-parameterisable network (MobileOne, RepViT) gets a second row, ``form`` deploy: the same
round trip with the reference's deploy form (timm's ``reparameterize_model``) and nasscale's
(``nasscale.reparameterize``), and ``fuse_max``: nasscale's fusion of the reference-trained
weights against the reference's own fusion of them.  Where that is above 1e-5, nasscale's
fusion is checked in float64 against the unfused network (``fuse_float64_max``; the
reference's own fusion differs from its unfused network by as much in float32).

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


def check(source: str, net: str, repeats: int, form: str = "train") -> dict:
    """One row.  ``form`` ``deploy``: the network's deploy form (``nasscale.reparameterize``)
    against the reference's (timm's ``reparameterize_model``), and ``fuse_max``: nasscale's
    re-parameterisation of the train form loaded from the reference against the reference's
    own re-parameterisation of the same weights."""
    spec = nasscale.zoo.get(net)
    size = spec.resolution if spec.family in ("vit", "swin") else min(spec.resolution, 160)
    deploy = form == "deploy"
    target = nasscale.reparameterize(spec) if deploy else spec
    ins, outs, f64, fuse, fuse64, t0 = [], [], [], [], [], time.perf_counter()
    ref = models.create(source, net, deploy=deploy).eval()
    for r in range(repeats):
        ref.load_state_dict(seeded_state_dict(ref.state_dict(), salt=f"repeat{r}/"))
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(r))
        if deploy:
            trained = models.create(source, net).eval()
            trained.load_state_dict(seeded_state_dict(trained.state_dict(), salt=f"repeat{r}/"))
            ours_fused = nasscale.reparameterize(load_weights(net, trained.state_dict(),
                                                              source=source))
            from timm.utils.model import reparameterize_model
            with torch.no_grad():
                fuse.append(rel(ours_fused(x), reparameterize_model(trained)(x)))
                if fuse[-1] >= 1e-5:  # float32 rounding, or a wrong fusion? float64 tells
                    ours64 = load_weights(net, trained.state_dict(), source=source).double()
                    fuse64.append(rel(nasscale.reparameterize(ours64)(x.double()),
                                      trained.double()(x.double())))
                    trained.float()
        ours = load_weights(target, ref.state_dict(), source=source)
        back = models.create(source, net, deploy=deploy).eval()
        back.load_state_dict(export_weights(ours, target, source), strict=True)
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
    return {"source": source, "network": net, "form": form,
            **({"fuse_max": max(fuse)} if fuse else {}),
            **({"fuse_float64_max": max(fuse64)} if fuse64 else {}),
            "model": models.SOURCES[source][net],
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
    done = {(r["source"], r["network"], r.get("form", "train")) for r in rows}
    print(f"{'source':<12} {'network':<24} {'form':<6} {'size':>4}  {'in (max rel)':>12}  "
          f"{'out (max rel)':>13}  {'fused vs ref':>12}  {'s':>6}")
    todo = [(s, n, f) for s, table in models.SOURCES.items() for n in table
            if not args.only or n in args.only
            for f in (("train", "deploy") if models.reparameterizable(n) else ("train",))]
    for source, net, form in todo:
        if (source, net, form) in done:
            continue
        row = check(source, net, args.repeats, form)
        rows.append(row)
        worst = max(row["in_max"], row["out_max"])
        ok = "" if worst < 1e-5 else (
            f"  float32 rounding (float64: {row['float64_max']:.1e})"
            if row.get("float64_max", 1.0) < 1e-9 else "  ABOVE 1e-5")
        if row.get("fuse_max", 0.0) >= 1e-5:  # nasscale's fusion in float64 against the truth
            ok += (f"  fusion exact in float64 ({row['fuse_float64_max']:.1e} from the "
                   "unfused network): float32 rounding"
                   if row.get("fuse_float64_max", 1.0) < 1e-9 else "  FUSION ABOVE 1e-5")
        fused = f"{row['fuse_max']:.2e}" if "fuse_max" in row else "-"
        print(f"{source:<12} {net:<24} {form:<6} {row['size']:>4}  {row['in_max']:>12.2e}  "
              f"{row['out_max']:>13.2e}  {fused:>12}  {row['seconds']:>6.1f}{ok}", flush=True)
        have = {(r["source"], r["network"], r.get("form", "train")) for r in rows}
        write(args.out, rows, complete=all(t in have for t in todo))  # after each row
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
