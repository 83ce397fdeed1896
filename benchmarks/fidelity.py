"""Can the testbed rank networks, and which cheap evaluator ranks them like full training?

    python benchmarks/fidelity.py --space mobilenet_v3_like --n 30 --seeds 3 --workers 2 \
        --out benchmarks/results/fidelity.json [--reference-only] [--report]
        [--epochs E --lr LR --batch-size B]   (a reference other than the testbed's recipe)

N networks are drawn uniformly from the space (``--arch-seed``; the recipe was tuned on
networks drawn with another seed).  Every unit of work is one training run or one score:

1. **the reference**: the data's recipe (``recipe_for``: a testbed version's own, what
   ``nasscale train`` does on it by default), from scratch, held-out top-1; every
   network ``--seeds`` times (seed k: initialisation, batch order and augmentation).  Seeds 0
   and 1 of each network first (so that a partial run already pairs seeds), then seed 2 of
   every network, and so on;
2. the cheap evaluators, each with seed 100 (sharing nothing with the reference's seeds):
   NASWOT and synflow (one real batch), FLOPs, params; a run of the recipe cut to 1/10 and
   3/10 of its steps (its own cosine schedule), scored by held-out top-1, and the 1/10 run by
   minus its training loss ("SoTL", free); 3/10 with progressive learning; inheritance from the
   space's largest member trained once with the recipe, fine-tuned ``--inherit-steps`` steps;
   with ``--supernet-epochs E``, a subnetwork of the space's supernet trained E epochs by the
   sandwich rule (``nasscale.supernet``), BatchNorm recalibrated, no training (its cost per
   network counts the supernet's training divided by the networks scored); with
   ``--supernet-finetune N`` also after N fine-tuning steps at ``--finetune-lr``.

Each finished unit is appended as one JSON line to ``OUT.runs.jsonl`` (kept in git: a long
benchmark accumulates over sessions, and a re-run skips what is there; lines made with another
recipe are ignored).  ``--workers M`` runs M one-thread processes at once, unit j on worker
j mod M (on 2 cores, two one-thread trainings give 1.5x the images/s of one two-thread one).

The report is made from whatever is finished: the reference's reliability (over the networks
with every seed): mean pairwise seed-vs-seed Kendall τ, the pooled within-network sd against
the sd of the networks' means, the top-1 spread, seconds per run; each evaluator's τ against
the mean reference with a bootstrap 95 % interval and its cost against one reference run; and
Optuna's pruners replayed on seed 0's recorded per-epoch accuracies.  Wall clock.
FLOPs: multiply-accumulates (1 MAC = 1 FLOP) of conv, linear and attention matmuls, batch 1.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import optuna
import torch

from nasscale.latency.key import cpu_model
from nasscale.scoring.data import load_dataset
from nasscale.scoring.evaluators import CostEvaluator, ProxyEvaluator, arch_seed, build_seeded
from nasscale.scoring.train import TrainSettings, recipe_for, train
from nasscale.search import load_space

CHEAP_SEED = 100
SHORT = (("short 1/10", 0.1, False), ("short 3/10", 0.3, False),
         ("progressive 3/10", 0.3, True))


def _tag(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]


class Runs:
    """The finished units of one configuration: ``OUT.runs.jsonl``, one JSON line a unit."""

    def __init__(self, path: Path, config: dict):
        self.path, self.config = path, config
        # the networks are a seeded sequence, so the first n of a larger draw are the same n:
        # the tag leaves n out, and lines tagged with the n they were made for stay valid
        self.tag = _tag({k: v for k, v in config.items() if k != "n"})
        self.tags = {self.tag} | {_tag({**config, "n": m}) for m in range(1, 501)}

    def load(self) -> dict[str, dict]:
        done = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a kill
                    continue
                if rec.get("config") in self.tags:
                    done[rec["key"]] = rec
        return done

    def add(self, key: str, **fields) -> dict:
        rec = {"key": key, "config": self.tag, **fields}
        with open(self.path, "a+b") as f:  # one write of one line: workers append side by side
            cut = False
            if f.seek(0, os.SEEK_END) > 0:  # a line cut by a kill: start on a line of our own
                f.seek(-1, os.SEEK_END)
                cut = f.read(1) != b"\n"
            f.write((("\n" if cut else "") + json.dumps(rec) + "\n").encode())
        return rec


def networks(space, n: int, seed: int, classes: int, resolution: int):
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    specs = []
    for i in range(n):
        trial = sampler.ask()
        specs.append(space.sample(trial, name=f"arch{i}").replace(num_classes=classes,
                                                                   resolution=resolution))
        sampler.tell(trial, 0.0)
    return specs


def units(args, specs) -> list[tuple[str, int, str, int]]:
    """(key, arch, what, seed) in the order they are run."""
    first = min(2, args.seeds)  # seeds 0 and 1 network by network: pairs from the start
    out = [(f"arch{i}/reference/seed{k}", i, "reference", k)
           for i in range(len(specs)) for k in range(first)]
    out += [(f"arch{i}/reference/seed{k}", i, "reference", k)
            for k in range(first, args.seeds) for i in range(len(specs))]
    if not args.reference_only:
        out += [(f"arch{i}/cheap", i, "cheap", CHEAP_SEED) for i in range(len(specs))]
    return out


def run_unit(what: str, spec, seed: int, base: TrainSettings, data, data_name: str) -> dict:
    """One training run (the reference) or every cheap score but inheritance (cheap)."""
    init = arch_seed(seed, spec)
    if what == "reference":
        curve: list[float] = []
        res = train(build_seeded(spec, init), data, replace(base, seed=seed),
                    on_epoch=lambda e, a: curve.append(a))
        return {"value": res.accuracy, "seconds": res.seconds, "curve": curve,
                "loss": res.history[-1]["loss"], "steps": res.steps,
                "images_per_s": float(np.mean([h["images_per_s"] for h in res.history]))}
    out: dict = {}
    for name, ev in (("naswot", ProxyEvaluator("naswot", 32, base.resolution, data_name)),
                     ("synflow", ProxyEvaluator("synflow", 32, base.resolution, data_name)),
                     ("flops", CostEvaluator("flops")), ("params", CostEvaluator("params"))):
        if isinstance(ev, ProxyEvaluator):
            ev.use_dataset(data)
        t0 = time.perf_counter()
        out[name] = {"value": ev.score(spec, init), "seconds": time.perf_counter() - t0}
    total = reference_steps(base, data)
    for name, fraction, progressive in SHORT:
        res = train(build_seeded(spec, init), data, replace(
            base, seed=seed, steps=max(1, round(fraction * total)), progressive=progressive))
        out[name] = {"value": res.accuracy, "seconds": res.seconds}
        if name == "short 1/10":
            out["SoTL 1/10"] = {"value": -res.history[-1]["loss"], "seconds": res.seconds}
    return out


def reference_steps(base: TrainSettings, data) -> int:
    n = len(data.y) if base.subset is None else min(base.subset, len(data.y))
    return base.epochs * max(1, n // base.batch_size)


def inherit_scores(args, space, specs, base, data, runs, done, out: Path, log) -> None:
    """Train the space's largest member once with the recipe, then carry and fine-tune."""
    from nasscale.scoring.inherit import InheritEvaluator
    from nasscale.transfer.containment import check_space

    parent_spec = space.largest(name=f"{space.name}_largest").replace(
        num_classes=data.num_classes, resolution=base.resolution)
    parent = check_space(space, parent_spec)
    path = out.with_name(out.stem + ".parent.pt")
    model = build_seeded(parent_spec, arch_seed(CHEAP_SEED, parent_spec))
    if "parent" not in done or not path.exists():
        log(f"training the parent {parent_spec.name}")
        res = train(model, data, replace(base, seed=CHEAP_SEED), progress=True, label="parent")
        torch.save(model.state_dict(), path)
        done["parent"] = runs.add("parent", value=res.accuracy, seconds=res.seconds)
    else:
        model.load_state_dict(torch.load(path, weights_only=True))
    ev = InheritEvaluator(parent=parent, parent_model=model, weights=str(path), data=args.data,
                          dataset=data, settings=replace(base, steps=args.inherit_steps,
                                                         lr=args.inherit_lr, ema=None,
                                                         warmup=0.0))
    for i, spec in enumerate(specs):
        key = f"arch{i}/inherit"
        if key not in done:
            t0 = time.perf_counter()
            value = ev.score(spec, arch_seed(CHEAP_SEED, spec))
            done[key] = runs.add(key, arch=i, value=value, seconds=time.perf_counter() - t0)
            log(f"arch {i}: inherit {value:.3f}")


def supernet_scores(args, space, specs, base, data, runs, done, out: Path, log) -> None:
    """Train the space's supernet once (``--supernet-epochs``, the recipe otherwise), then
    score every network as its subnetwork (BatchNorm recalibrated, no training)."""
    from nasscale.supernet import Supernet, SupernetSettings, train_supernet

    label = supernet_label(args)
    path = out.with_name(f"{out.stem}.{label.replace(' ', '_')}.pt")
    if label not in done or not path.exists():
        log(f"training the {label} supernet of {space.name}")
        settings = SupernetSettings(replace(base, seed=CHEAP_SEED, epochs=args.supernet_epochs,
                                            ema=None), args.subnets_per_step,
                                    distill=not args.no_distill)
        t0 = time.perf_counter()
        rec = train_supernet(space, data, settings, path, data_source=args.data,
                             resume=path.with_suffix(".ckpt").exists())
        done[label] = runs.add(label, seconds=time.perf_counter() - t0,
                               history=rec["history"])
    net = Supernet.open(str(path), space, args.data)
    for i, spec in enumerate(specs):
        key = f"arch{i}/{label}"
        if key not in done:
            t0 = time.perf_counter()
            value = net.score(spec)
            done[key] = runs.add(key, arch=i, value=value, seconds=time.perf_counter() - t0)
            log(f"arch {i}: {label} {value:.3f}")
    if args.supernet_finetune:
        finetune_scores(args, net, label, specs, base, data, runs, done, log)


def finetune_scores(args, net, label, specs, base, data, runs, done, log) -> None:
    """``--supernet-finetune N``: each network cut from the supernet (BatchNorm recalibrated),
    then N steps at ``--finetune-lr`` (cosine, no warm-up), held-out top-1; its
    cost counts the supernet's training like the plain supernet row."""
    from nasscale.scoring.train import train_and_evaluate

    tuned = f"{label} ft{args.supernet_finetune} lr{args.finetune_lr:g}"
    if tuned not in done:  # the shared training, counted as the plain row counts it
        done[tuned] = runs.add(tuned, seconds=done[label]["seconds"], shared_with=label)
    settings = replace(base, steps=args.supernet_finetune, lr=args.finetune_lr, seed=CHEAP_SEED,
                       ema=None, warmup=0.0)
    for i, spec in enumerate(specs):
        key = f"arch{i}/{tuned}"
        if key not in done:
            t0 = time.perf_counter()
            value = train_and_evaluate(net.extract(spec), data, settings)
            done[key] = runs.add(key, arch=i, value=value, seconds=time.perf_counter() - t0)
            log(f"arch {i}: {tuned} {value:.3f}")


def supernet_label(args) -> str:
    return f"supernet e{args.supernet_epochs} k{args.subnets_per_step}" + (
        " no-distill" if args.no_distill else "")


def work(args, specs, base, data, runs: Runs, log) -> None:
    done = runs.load()
    shard, shards = (int(v) for v in args.shard.split("/")) if args.shard else (0, 1)
    todo = [u for j, u in enumerate(units(args, specs)) if j % shards == shard]
    for key, i, what, seed in todo:
        if key in done:
            continue
        rec = run_unit(what, specs[i], seed, base, data, args.data)
        runs.add(key, arch=i, what=what, seed=seed, threads=torch.get_num_threads(),
                 workers=shards, **rec)
        shown = f"{rec['value']:.3f} in {rec['seconds']:.0f} s" if what == "reference" else \
            ", ".join(f"{k} {v['value']:.3g}" for k, v in rec.items())
        log(f"{key}: {shown}")


def spawn_workers(args, argv) -> None:
    """``--workers M``: M copies of this command, one thread each, on shards 0/M .. M-1/M."""
    base, skip = [], False
    for a in argv:  # this command without --workers N (or --workers=N) and --threads N
        if skip:
            skip = False
        elif a in ("--workers", "--threads"):
            skip = True
        elif not a.startswith(("--workers=", "--threads=")):
            base.append(a)
    procs = [subprocess.Popen([sys.executable, __file__, *base, "--shard", f"{k}/{args.workers}",
                               "--threads", "1"]) for k in range(args.workers)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a worker failed (exit codes {codes})")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenet_v3_like")
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--seeds", type=int, default=3, help="reference runs per network")
    p.add_argument("--arch-seed", type=int, default=0)
    p.add_argument("--data", default="testbed")
    p.add_argument("--epochs", type=int, help="reference epochs (default: the recipe's)")
    p.add_argument("--lr", type=float, help="default: the recipe's")
    p.add_argument("--batch-size", type=int, help="default: the recipe's")
    p.add_argument("--inherit-steps", type=int, default=100)
    p.add_argument("--inherit-lr", type=float, default=0.01)
    p.add_argument("--reference-only", action="store_true",
                   help="the reference runs only (reliability of the testbed)")
    p.add_argument("--no-inherit", action="store_true")
    p.add_argument("--supernet-epochs", type=int, default=0,
                   help="also score every network as a subnetwork of a supernet trained this "
                   "many epochs (0: not)")
    p.add_argument("--subnets-per-step", type=int, default=4)
    p.add_argument("--supernet-finetune", type=int, default=0, metavar="STEPS",
                   help="also score every subnetwork after STEPS fine-tuning steps")
    p.add_argument("--finetune-lr", type=float, default=0.05)
    p.add_argument("--no-distill", action="store_true", help="the supernet's subnetworks "
                   "learn the labels, not the largest's predictions")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--shard", metavar="K/M", help="(set by --workers) units j with j %% M == K")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (a GPU run is another "
                   "configuration: its units are kept apart)")
    p.add_argument("--report", action="store_true", help="only report what is finished")
    p.add_argument("--out", default="benchmarks/results/fidelity.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_start = time.time()
    data = load_dataset(args.data)
    base = recipe_for(args.data)
    base = replace(base, device=args.device, threads=args.threads, **{k: v for k, v in (
        ("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size))
        if v is not None})
    space = load_space(args.space)
    specs = networks(space, args.n, args.arch_seed, data.num_classes, base.resolution)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    config = {"space": args.space, "n": args.n, "arch_seed": args.arch_seed, "data": args.data,
              # threads are how, not what: runs on 1 and 2 threads are one configuration
              "settings": {k: v for k, v in asdict(base).items() if k != "threads"},
              "inherit": [args.inherit_steps, args.inherit_lr]}
    runs = Runs(out.with_name(out.stem + ".runs.jsonl"), config)
    tag = f"[{args.shard}]" if args.shard else ""

    def log(msg):
        print(f"[{time.time() - t_start:6.0f}s]{tag} {msg}", file=sys.stderr, flush=True)

    if not args.report:
        if args.workers > 1:
            spawn_workers(args, argv)
        else:
            work(args, specs, base, data, runs, log)
        if args.shard:
            return 0
        if not (args.reference_only or args.no_inherit):
            inherit_scores(args, space, specs, base, data, runs, runs.load(), out, log)
        if args.supernet_epochs and not args.reference_only:
            supernet_scores(args, space, specs, base, data, runs, runs.load(), out, log)
    from fidelity_report import report

    result = report(args, specs, base, data, runs.load())
    result.update({"machine": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
                   "config": config, "runs_file": runs.path.name, "config_tag": runs.tag,
                   "flops_convention": "multiply-accumulates of conv, linear and attention "
                                       "matmuls, batch 1"})
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
