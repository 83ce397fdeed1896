"""How fast does ``nasscale train`` train, against a bare PyTorch loop on the same machine?

    python benchmarks/training_speed.py --out benchmarks/results/training_speed.json \
        [--networks mobilenet_v3_small,mobilenet_v3_large,largest] [--repeats 3] [--images 2048]

Three networks of ``mobilenet_v3_like`` (MobileNetV3-Small and -Large, which the space
contains, and the space's largest member) at the testbed's resolution (32 px, 19 classes), on
the testbed's training images.  For every option tried, two loops train the same seeded module
on the same data:

- **bare**: forward, cross-entropy, backward, SGD step over batches of the data (a random
  permutation), nothing else: the limit of this machine for that option;
- **nasscale**: ``nasscale.scoring.train.train`` (its augmentation on the device, label
  smoothing, the schedule, the loss check), timed by its own per-epoch ``images_per_s``
  (training only, not the held-out evaluation) of the second of two epochs: the first warms
  up, as the bare loop's first three steps do.

Options, in order (each row changes one thing from a previous row): the previous default (batch
32, NCHW, 2 threads, fp32); channels-last; batch 128; batch 256; bf16 autocast; ``torch.compile``
(bare loop only: the default loop does not compile); one thread; two one-thread processes at
once (their images/s added: the machine's throughput when a benchmark runs two trainings in
parallel).  Each figure is the median of ``--repeats`` timed windows of ``--images`` images,
bare and nasscale interleaved; the spread (max/min - 1) is given.  Wall clock.  Prints a table,
writes JSON.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import nasscale
from nasscale.latency.key import cpu_model
from nasscale.reports.text import table
from nasscale.scoring.data import load_dataset
from nasscale.scoring.evaluators import build_seeded
from nasscale.scoring.train import TrainSettings, train
from nasscale.search import load_space

OPTIONS = (  # name, batch, channels_last, threads, amp, compile, processes
    ("before: batch 32, NCHW, 2 threads", 32, False, 2, "none", False, 1),
    ("channels-last", 32, True, 2, "none", False, 1),
    ("channels-last, batch 128", 128, True, 2, "none", False, 1),
    ("channels-last, batch 256", 256, True, 2, "none", False, 1),
    ("channels-last, batch 128, bf16", 128, True, 2, "bf16", False, 1),
    ("channels-last, batch 128, torch.compile", 128, True, 2, "none", True, 1),
    ("channels-last, batch 128, 1 thread", 128, True, 1, "none", False, 1),
    ("channels-last, batch 128, two 1-thread processes", 128, True, 1, "none", False, 2),
)


def network(name: str, classes: int):
    space = load_space("mobilenet_v3_like")
    spec = space.largest() if name == "largest" else nasscale.load(name)
    return spec.replace(num_classes=classes, resolution=32)


def bare_loop(spec, x, y, batch, channels_last, amp, compiled, images) -> float:
    """Images/s of forward + loss + backward + SGD step over ``images`` images."""
    model = build_seeded(spec, 0)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory).train()
    run = torch.compile(model) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=5e-5)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    dtype = torch.bfloat16 if amp == "bf16" else None

    def step(i):
        idx = order[(i * batch) % (len(y) - batch):][:batch]
        xb = x[idx].contiguous(memory_format=memory)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(run(xb).float(), y[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(3):  # warm-up (and compilation)
        step(i)
    steps = max(2, images // batch)
    t0 = time.perf_counter()
    for i in range(steps):
        step(3 + i)
    return steps * batch / (time.perf_counter() - t0)


def nasscale_loop(spec, data, batch, channels_last, amp, images, threads) -> float:
    """Images/s of the second of two epochs over ``images`` images (the first warms up, as
    the bare loop's first steps do)."""
    settings = TrainSettings(epochs=2, batch_size=batch, lr=0.05, resolution=32, device="cpu",
                             channels_last=channels_last, amp=amp, threads=threads,
                             subset=max(2, images // batch) * batch)
    seen: list[float] = []
    train(build_seeded(spec, 0), data, settings, on_record=lambda h: seen.append(
        h["images_per_s"]))
    return seen[-1]


def measure(job: tuple) -> dict:
    """One option on one network: ``repeats`` windows of the bare and the nasscale loop."""
    name, option, images, repeats, barrier = job
    _, batch, cl, threads, amp, compiled, _ = option
    torch.set_num_threads(threads)
    data = load_dataset("testbed")
    spec = network(name, data.num_classes)
    x, y = data.x, data.y
    if barrier is not None:
        barrier.wait()
    bare, ours = [], []
    for _ in range(repeats):
        bare.append(bare_loop(spec, x, y, batch, cl, amp, compiled, images))
        if not compiled:
            ours.append(nasscale_loop(spec, data, batch, cl, amp, images, threads))
    return {"bare": bare, "nasscale": ours}


def run_option(name, option, images, repeats) -> dict:
    processes = option[-1]
    if processes == 1:
        got = [measure((name, option, images, repeats, None))]
    else:
        ctx = mp.get_context("spawn")
        barrier = ctx.Manager().Barrier(processes)
        with ctx.Pool(processes) as pool:
            got = pool.map(measure, [(name, option, images, repeats, barrier)] * processes)
    # images/s of the machine: the processes' figures added, repeat by repeat
    bare = [sum(g["bare"][r] for g in got) for r in range(repeats)]
    ours = [sum(g["nasscale"][r] for g in got) for r in range(repeats)] if got[0]["nasscale"] \
        else []
    return {"bare": bare, "nasscale": ours}


def summary(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "spread": max(values) / min(values) - 1,
            "runs": values}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--networks", default="mobilenet_v3_small,mobilenet_v3_large,largest")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--images", type=int, default=2048, help="images per timed window")
    p.add_argument("--out", default="benchmarks/results/training_speed.json")
    args = p.parse_args(argv)
    rows, records = [], []
    for name in args.networks.split(","):
        spec = network(name, 19)
        cost = nasscale.count(spec)
        for option in OPTIONS:
            t0 = time.perf_counter()
            got = run_option(name, option, args.images, args.repeats)
            bare, ours = summary(got["bare"]), summary(got["nasscale"])
            ratio = ours["median"] / bare["median"] if ours else None
            records.append({"network": name, "flops": cost.flops, "params": cost.params,
                            "option": option[0], "batch": option[1], "channels_last": option[2],
                            "threads": option[3], "amp": option[4], "compile": option[5],
                            "processes": option[6], "bare": bare, "nasscale": ours,
                            "nasscale_vs_bare": ratio})
            rows.append((name, option[0], f"{bare['median']:.0f} ±{100 * bare['spread']:.0f}%",
                         f"{ours['median']:.0f} ±{100 * ours['spread']:.0f}%" if ours else "-",
                         f"{ratio:.2f}" if ratio else "-"))
            print(f"{name}: {option[0]}: bare {bare['median']:.0f} img/s, nasscale "
                  f"{ours['median'] if ours else float('nan'):.0f} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(table(("network", "option", "bare img/s", "nasscale img/s", "ratio"), rows,
                right="bare img/s nasscale img/s ratio"))
    print("\nimages/s: median of the repeats (± spread max/min - 1); training at 32 px, "
          "forward + backward + SGD step; wall clock")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "training_speed", "space": "mobilenet_v3_like", "resolution": 32,
        "data": "testbed", "images_per_window": args.images, "repeats": args.repeats,
        "machine": cpu_model(), "cores": mp.cpu_count(), "torch": torch.__version__,
        "clock": "wall", "rows": records,
        "flops_convention": "multiply-accumulates of conv, linear and attention matmuls, batch 1"},
        indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
