"""How many threads should training use when other processes share the CPU?

    python benchmarks/training_threads.py --out benchmarks/results/training_threads.json \
        [--repeats 3] [--network mobilenet_v3_small]

``nasscale train``'s loop on the testbed (32 px, batch 128, channels-last) trains the network
for two short epochs; the images/s of the second (training only) is the figure.  Three thread
settings — one thread, every core, and the default (``threads: null``: the cores other
processes leave idle, ``nasscale.scoring.threads``) — on the machine idle and with 1 .. cores
busy-looping processes beside it (pure Python ``while True``: one core each).  Each cell is the
median of ``--repeats`` runs, interleaved, with the spread (max/min - 1).  Wall clock.  Prints
a table, writes JSON.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

import nasscale
from nasscale.latency.key import cpu_model
from nasscale.reports.text import table
from nasscale.scoring import threads as th
from nasscale.scoring.data import load_dataset
from nasscale.scoring.evaluators import build_seeded
from nasscale.scoring.train import TrainSettings, train

DATA = "testbed-v3:train=100,test=20"  # 1,900 training images: ~15 steps of 128


def hog() -> None:  # one busy core
    while True:
        pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="mobilenet_v3_small")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/training_threads.json")
    args = p.parse_args(argv)
    data = load_dataset(DATA)
    spec = nasscale.load(args.network).replace(num_classes=data.num_classes, resolution=32)
    base = TrainSettings(epochs=2, batch_size=128, lr=0.05, resolution=32, device="cpu",
                         channels_last=True)
    n = th.cores()
    settings = {"1 thread": 1, f"{n} threads (every core)": n, "default (idle cores)": None}
    rows, cells = [], []
    for busy in range(0, n + 1):
        hogs = [mp.Process(target=hog, daemon=True) for _ in range(busy)]
        for h in hogs:
            h.start()
        time.sleep(1.0)
        runs: dict[str, list[float]] = {k: [] for k in settings}
        chosen: dict[str, int] = {}
        for _ in range(args.repeats):
            for label, threads in settings.items():
                th._last.clear()
                if threads is None:
                    chosen[label] = th.choose_threads(None)[0]
                    th._last.clear()
                speed = _speed(spec, data, replace(base, threads=threads))
                runs[label].append(speed)
        for h in hogs:
            h.terminate()
            h.join()
        for label, values in runs.items():
            med = statistics.median(values)
            cell = {"busy_processes": busy, "setting": label, "images_per_s": values,
                    "median": med, "spread": max(values) / min(values) - 1,
                    "threads": chosen.get(label, settings[label])}
            cells.append(cell)
            rows.append((busy, label, cell["threads"], f"{med:.0f}",
                         f"{100 * cell['spread']:.0f}%"))
        print(f"[{busy} busy] done", file=sys.stderr, flush=True)
    print(table(("busy processes", "threads", "used", "images/s (median)", "spread"), rows,
                right="busy processes used images/s (median) spread"))
    result = {"machine": cpu_model(), "cores": n, "torch": torch.__version__,
              "network": args.network, "data": DATA, "resolution": 32, "batch": 128,
              "repeats": args.repeats, "clock": "wall", "cells": cells}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


def _speed(spec, data, settings: TrainSettings) -> float:
    seen: list[float] = []
    train(build_seeded(spec, 0), data, settings,
          on_record=lambda h: seen.append(h["images_per_s"]))
    return seen[-1]


if __name__ == "__main__":
    sys.exit(main())
