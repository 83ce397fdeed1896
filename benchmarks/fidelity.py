"""Which cheap evaluator ranks networks like full training does?  Kendall τ and Spearman ρ of
each against the reference (full training on the testbed), with their cost.

    python benchmarks/fidelity.py --space mobilenet_v3_like --n 30 \
        --out benchmarks/results/fidelity.json [--data testbed] [--epochs 10] [--device cpu]
        [--threads 2] [--inherit-steps 50] [--repeat-archs 4] [--progressive-archs 4]

For N networks sampled uniformly from the space (seeded), every evaluator scores the same
networks with the same seeded initialisation:

- the reference: ``--epochs`` epochs of training from scratch (the recipe of
  ``nasscale.scoring.train``), top-1 on the testbed's held-out split; its accuracy after every
  epoch is recorded as well.  Each network is trained ``--reference-seeds`` times (seeds and
  initialisations SEED, SEED+1, ...) and the reference is the mean top-1: one training run is
  noisy enough to cap every evaluator's τ, and seed 0 against seed 1 measures that cap (the
  reference's self-agreement).  Costs are against one run, what a user would otherwise pay;
- the zero-cost proxies (NASWOT, synflow on a real-data batch), FLOPs and params;
- 1 and 3 epochs from scratch (each its own run, with its own cosine schedule), scored by
  held-out top-1; and the 1-epoch run scored by its training loss instead ("SoTL": minus the
  mean training loss of the epoch, Ru et al., "Speedy Performance Estimation for Neural
  Architecture Search", NeurIPS 2021 — free: the same run);
- 3 epochs of progressive learning (EfficientNetV2: small images first);
- inherited + N steps: the space's largest member is trained once for ``--epochs`` epochs,
  each candidate carries its weights (``nasscale.search.inherit``) and is fine-tuned N steps.
  Its cost per network includes the parent's training divided by N.

Also: (1) a successive-halving study over the same trials, replayed on the recorded per-epoch
accuracies (training is deterministic, so a trial stopped after epoch e would have reported
exactly those values): the share of the full-fidelity cost it spent and whether it kept the
reference's top 3; (2) the noise of the reference: ``--repeat-archs`` networks trained again
with another seed; (3) progressive against fixed-size training at equal epochs on
``--progressive-archs`` networks (accuracy and time).  Bootstrap 95 % intervals (2,000
resamples of the networks) are given for every τ.

Rows are saved to ``OUT.partial.json`` after each network, and a re-run with the same options
continues from there.  ``--shard K/M`` splits the from-scratch part over M processes (on a
2-core machine, two processes of one thread each train small networks faster than one of two
threads); a last run without ``--shard`` merges them, trains the parent and finishes.  Prints a table, writes JSON.
FLOPs: multiply-accumulates (1 MAC = 1 FLOP) of conv, linear and attention matmuls, batch 1.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna
import torch

import nasscale
from nasscale.reports.stats import kendall_tau, spearman
from nasscale.reports.text import table
from nasscale.search import load_space
from nasscale.scoring.data import load_dataset
from nasscale.scoring.evaluators import CostEvaluator, ProxyEvaluator, arch_seed, build_seeded
from nasscale.search.inherit import InheritEvaluator, check_space
from nasscale.scoring.train import TrainSettings, train
from nasscale.specs import resolve

CHEAP = ("naswot", "synflow", "flops", "params", "1 epoch", "1 epoch SoTL", "3 epochs",
         "3 epochs progressive", "inherit")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bootstrap_tau(x, y, n=2000, seed=0) -> list[float]:
    rng = random.Random(seed)
    taus = []
    idx = range(len(x))
    for _ in range(n):
        s = [rng.choice(idx) for _ in idx]
        xs, ys = [x[i] for i in s], [y[i] for i in s]
        if len(set(ys)) > 1 and len(set(xs)) > 1:
            taus.append(kendall_tau(xs, ys))
    taus.sort()
    if not taus:  # every resample tied (a constant evaluator): no interval
        return [float("nan"), float("nan")]
    return [taus[int(0.025 * len(taus))], taus[int(0.975 * len(taus)) - 1]]


def _seeds_for(r1: float, tau: float) -> int | None:
    """Seeds per network whose mean lets a perfect evaluator reach Kendall ``tau``."""
    need = math.sin(tau * math.pi / 2) ** 2  # the reliability that ceiling needs
    if r1 <= 0 or need >= 1:
        return None
    return math.ceil(need * (1 - r1) / (r1 * (1 - need)))


def replay_pruner(rows, epochs: int, pruner: optuna.pruners.BasePruner, name: str) -> dict:
    """An Optuna study whose trials report the recorded per-epoch accuracies in order."""
    # a fixed name: Hyperband assigns brackets by a hash of the study name and trial number
    study = optuna.create_study(study_name=f"replay {name}", direction="maximize", pruner=pruner)
    spent, kept = 0, []
    for r in rows:
        trial = study.ask()
        curve = r["reference_curve"]
        stopped = False
        for e in range(1, epochs + 1):
            trial.report(curve[e - 1], e)
            spent += 1
            if e < epochs and trial.should_prune():
                stopped = True
                break
        if stopped:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, curve[-1])
            kept.append(r["arch"])
    ref = sorted(rows, key=lambda r: -r["reference"])
    top3 = [r["arch"] for r in ref[:3]]
    best = max((r for r in rows if r["arch"] in kept), key=lambda r: r["reference"])
    return {"pruner": name, "epochs_spent": spent, "epochs_full": epochs * len(rows),
            "cost_fraction": spent / (epochs * len(rows)), "completed": len(kept),
            "reference_top3": top3, "kept_top3": [a for a in top3 if a in kept],
            "kept_all_top3": all(a in kept for a in top3),
            "best_found": best["arch"], "best_is_reference_best": best["arch"] == top3[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="mobilenet_v3_like")
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--data", default="testbed")
    p.add_argument("--epochs", type=int, default=10, help="reference training epochs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--inherit-steps", type=int, default=50)
    p.add_argument("--inherit-lr", type=float, default=0.01)
    p.add_argument("--repeat-archs", type=int, default=3)
    p.add_argument("--reference-seeds", type=int, default=2, metavar="K",
                   help="train every network's reference K times (seeds SEED..SEED+K-1); the "
                   "reference is their mean top-1, and seed 0 against seed 1 measures how well "
                   "the reference agrees with itself (the ceiling of any evaluator)")
    p.add_argument("--no-inherit", action="store_true",
                   help="leave out weight inheritance (a space whose largest member cannot "
                        "contain it, e.g. one mixing MBConv and Fused-MBConv in a slot)")
    p.add_argument("--progressive-archs", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", default="none")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/fidelity.json")
    p.add_argument("--shard", metavar="K/M", help="measure only archs i with i %% M == K "
                   "(from scratch; run M of these at once with --threads 1, then once without "
                   "--shard to train the parent, add inheritance and write the result)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_start = time.time()
    space = load_space(args.space)
    data = load_dataset(args.data)
    base = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         resolution=args.resolution, device=args.device, amp=args.amp)
    config = {k: v for k, v in vars(args).items()
              if k not in ("out", "threads", "repeat_archs", "progressive_archs", "shard",
                           "no_inherit", "reference_seeds")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shard, shards = (int(v) for v in args.shard.split("/")) if args.shard else (0, 1)
    tag = f".shard{shard}" if args.shard else ""
    partial = out.with_name(out.stem + tag + ".partial.json")

    def load_state(path: Path) -> dict:
        state = json.loads(path.read_text()) if path.exists() else {}
        return state if state.get("config") == config else {}

    state = load_state(partial) or {"config": config, "rows": [], "parent": None, "extra": {}}
    rows_by_arch = {r["arch"]: r for r in state["rows"]}
    # merge what the other processes measured (shards, or the main run a shard continues)
    others = [*out.parent.glob(out.stem + ".shard*.partial.json"),
              out.with_name(out.stem + ".partial.json")]
    for other in others:
        if other != partial:
            other_state = load_state(other)
            for k, v in other_state.get("extra", {}).items():
                state["extra"].setdefault(k, v)
            for r in other_state.get("rows", []):
                mine = rows_by_arch.setdefault(r["arch"], r)
                for s_, acc in r.get("reference_seeds", {}).items():
                    mine.setdefault("reference_seeds", {}).setdefault(s_, acc)

    def save():
        state["rows"] = [rows_by_arch[k] for k in sorted(rows_by_arch)]
        partial.write_text(json.dumps(state, indent=1))

    def log(msg):
        print(f"[{time.time() - t_start:7.0f}s]{tag} {msg}", file=sys.stderr, flush=True)

    # the networks
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=args.seed))
    specs = []
    for i in range(args.n):
        trial = sampler.ask()
        specs.append(space.sample(trial, name=f"arch{i}").replace(
            num_classes=data.num_classes, resolution=args.resolution))
        sampler.tell(trial, 0.0)
    proxies = {"naswot": ProxyEvaluator("naswot", 32, args.resolution, args.data),
               "synflow": ProxyEvaluator("synflow", 32, args.resolution, args.data),
               "flops": CostEvaluator("flops"), "params": CostEvaluator("params")}
    for ev in proxies.values():
        if isinstance(ev, ProxyEvaluator):
            ev._dataset = data

    def timed(fn):
        t0 = time.perf_counter()
        value = fn()
        return value, time.perf_counter() - t0

    # from scratch: proxies, short training, the reference (shards split this part)
    for i, spec in enumerate(specs):
        if i in rows_by_arch or i % shards != shard:
            continue
        seed = arch_seed(args.seed, spec)
        row = {"arch": i, "blocks": ";".join(nasscale.format_block(b.spec)
                                             for b in resolve(spec).blocks),
               "params": nasscale.count(spec).params, "flops": nasscale.count(spec).flops}
        for name, ev in proxies.items():
            row[name], row[f"{name}_s"] = timed(lambda ev=ev: ev.score(spec, seed))
        for name, settings in (("1 epoch", replace(base, epochs=1)),
                               ("3 epochs", replace(base, epochs=3)),
                               ("3 epochs progressive", replace(base, epochs=3,
                                                                progressive=True))):
            res, secs = timed(lambda s=settings: train(build_seeded(spec, seed), data,
                                                       replace(s, seed=seed)))
            row[name], row[f"{name}_s"] = res.accuracy, secs
            if name == "1 epoch":
                row["1 epoch SoTL"], row["1 epoch SoTL_s"] = -res.history[-1]["loss"], secs
        curve: list[float] = []
        res, secs = timed(lambda: train(build_seeded(spec, seed), data, replace(base, seed=seed),
                                        on_epoch=lambda e, a: curve.append(a)))
        row["reference"], row["reference_s"], row["reference_curve"] = res.accuracy, secs, curve
        rows_by_arch[i] = row
        save()
        log(f"[{len(rows_by_arch)}/{args.n}] arch {i}: ref {row['reference']:.3f} ({secs:.0f}s)  "
            f"1ep {row['1 epoch']:.3f}  3ep {row['3 epochs']:.3f}  "
            f"prog {row['3 epochs progressive']:.3f}  naswot {row['naswot']:.0f}")
    # the reference again with other seeds (shards split this part too)
    for i, spec in enumerate(specs):
        if i % shards != shard or i not in rows_by_arch:
            continue
        row = rows_by_arch[i]
        seeds = row.setdefault("reference_seeds", {})
        for k in range(1, args.reference_seeds):
            if str(k) in seeds:
                continue
            if k == 1 and f"repeat{i}" in state["extra"]:  # the noise repeat is this same run
                seeds["1"] = state["extra"][f"repeat{i}"]
            else:
                res = train(build_seeded(spec, arch_seed(args.seed + k, spec)), data,
                            replace(base, seed=args.seed + k))
                seeds[str(k)] = res.accuracy
                log(f"arch {i}: reference seed {k}: {res.accuracy:.3f} "
                    f"(seed 0: {row['reference']:.3f}, {res.seconds:.0f}s)")
            save()
    if args.shard:
        log(f"shard {args.shard} done; run again without --shard to merge and finish")
        return 0
    missing = [i for i in range(args.n) if i not in rows_by_arch]
    if missing:
        raise SystemExit(f"archs {missing} have no rows (a shard did not finish?)")

    cheap = tuple(n for n in CHEAP if n != "inherit" or not args.no_inherit)
    parent_spec = None
    if not args.no_inherit:
        # the parent for weight inheritance: the space's largest member, trained once
        parent_spec = space.largest(name=f"{space.name}_largest").replace(
            num_classes=data.num_classes, resolution=args.resolution)
        parent = check_space(space, parent_spec)
        parent_path = out.with_name(out.stem + ".parent.pt")
        parent_model = build_seeded(parent_spec, arch_seed(args.seed, parent_spec))
        needed = any("inherit" not in r for r in rows_by_arch.values())
        if needed and (state["parent"] is None or not parent_path.exists()):
            log(f"training the parent {parent_spec.name} "
                f"({nasscale.count(parent_spec).params / 1e6:.2f}M params) for {args.epochs} epochs")
            r = train(parent_model, data, replace(base, seed=args.seed))
            torch.save(parent_model.state_dict(), parent_path)
            state["parent"] = {"accuracy": r.accuracy, "seconds": r.seconds,
                               "params": nasscale.count(parent_spec).params}
            save()
        elif needed:
            parent_model.load_state_dict(torch.load(parent_path, weights_only=True))
        log(f"parent: top-1 {state['parent']['accuracy']:.3f} in {state['parent']['seconds']:.0f} s")
        inherit = InheritEvaluator(parent=parent, parent_model=parent_model, weights=str(parent_path),
                                   data=args.data, dataset=data,
                                   settings=replace(base, steps=args.inherit_steps,
                                                    lr=args.inherit_lr))
        for i, spec in enumerate(specs):
            row = rows_by_arch[i]
            if "inherit" not in row:
                row["inherit"], row["inherit_s"] = timed(
                    lambda: inherit.score(spec, arch_seed(args.seed, spec)))
                save()
                log(f"arch {i}: inherit {row['inherit']:.3f} (ref {row['reference']:.3f})")

    for i, spec in enumerate(specs):  # rows measured before SoTL was recorded: the same run again
        row = rows_by_arch[i]
        if "1 epoch SoTL" not in row:
            seed = arch_seed(args.seed, spec)
            res = train(build_seeded(spec, seed), data, replace(base, epochs=1, seed=seed))
            if abs(res.accuracy - row["1 epoch"]) > 1e-9:
                raise SystemExit(f"arch {i}: the 1-epoch run did not repeat "
                                 f"({res.accuracy} vs {row['1 epoch']}); measure it again")
            # its cost is the 1-epoch run's: the score comes from the same run
            row["1 epoch SoTL"], row["1 epoch SoTL_s"] = -res.history[-1]["loss"], row["1 epoch_s"]
            save()
            log(f"arch {i}: 1 epoch SoTL {row['1 epoch SoTL']:.3f}")
    rows = [dict(rows_by_arch[i]) for i in range(args.n)]
    extra = state["extra"]
    # the reference's own noise: the same networks, another seed
    for i in range(min(args.repeat_archs, len(rows))):
        key = f"repeat{i}"
        if key not in extra:
            spec = specs[i]
            res = train(build_seeded(spec, arch_seed(args.seed + 1, spec)), data,
                        replace(base, seed=args.seed + 1))
            extra[key] = res.accuracy
            save()
            log(f"repeat {i}: {rows[i]['reference']:.3f} -> {res.accuracy:.3f}")
    # progressive vs fixed-size at equal epochs
    for i in range(min(args.progressive_archs, len(rows))):
        key = f"progressive{i}"
        if key not in extra:
            spec = specs[i]
            seed = arch_seed(args.seed, spec)
            res = train(build_seeded(spec, seed), data, replace(base, seed=seed,
                                                                progressive=True))
            extra[key] = {"accuracy": res.accuracy, "seconds": res.seconds}
            save()
            log(f"progressive {i}: fixed {rows[i]['reference']:.3f} "
                f"({rows[i]['reference_s']:.0f}s) vs progressive {res.accuracy:.3f} "
                f"({res.seconds:.0f}s)")

    # the reference: mean top-1 over the seeds; seed 0 against seed 1 is its self-agreement
    for r in rows:
        by_seed = [r["reference"]] + [r["reference_seeds"][str(k)]
                                      for k in range(1, args.reference_seeds)]
        r["reference_by_seed"], r["reference"] = by_seed, sum(by_seed) / len(by_seed)
        r.pop("reference_seeds", None)
    self_agreement = None
    if args.reference_seeds >= 2:
        s0 = [r["reference_by_seed"][0] for r in rows]
        s1 = [r["reference_by_seed"][1] for r in rows]
        seed_diffs = [abs(a - b) for a, b in zip(s0, s1)]
        self_agreement = {"kendall": kendall_tau(s0, s1), "spearman": spearman(s0, s1),
                          "kendall_95": bootstrap_tau(s0, s1),
                          "mean_abs_diff": sum(seed_diffs) / len(seed_diffs),
                          "max_abs_diff": max(seed_diffs)}
        pairs = [kendall_tau([r["reference_by_seed"][a] for r in rows],
                             [r["reference_by_seed"][b] for r in rows])
                 for a in range(args.reference_seeds) for b in range(a + 1, args.reference_seeds)]
        self_agreement["pairwise_kendall"] = {"mean": sum(pairs) / len(pairs),
                                              "min": min(pairs), "max": max(pairs),
                                              "pairs": len(pairs)}
        # how much of the mean's spread is the networks' and not the seeds': Spearman-Brown
        # from the mean pairwise Pearson r of single runs; the τ a perfect evaluator would
        # show against the mean follows from it (Greiner: τ = 2/π·asin(ρ), ρ = √reliability)
        k = args.reference_seeds
        r1 = statistics.fmean(statistics.correlation([x["reference_by_seed"][a] for x in rows],
                                                     [x["reference_by_seed"][b] for x in rows])
                              for a in range(k) for b in range(a + 1, k))
        reliability = k * r1 / (1 + (k - 1) * r1) if r1 > 0 else 0.0
        self_agreement.update({
            "pearson_single_run": r1, "reliability_of_mean": reliability,
            "tau_ceiling": 2 / math.pi * math.asin(math.sqrt(reliability)),
            "seeds_for_ceiling_0.6": _seeds_for(r1, 0.6)})
    ref = [r["reference"] for r in rows]
    ref0 = [r["reference_by_seed"][0] for r in rows]
    # convergence: what the reference's last two epochs still added (mean over networks)
    late_gain = sum(r["reference_curve"][-1] - r["reference_curve"][-3] for r in rows) / len(rows) \
        if args.epochs >= 3 else None
    ref_s = sum(r["reference_s"] for r in rows) / len(rows)
    evaluators = []
    for name in cheap:
        vals = [r[name] for r in rows]
        secs = sum(r[f"{name}_s"] for r in rows) / len(rows)
        entry = {"name": name, "kendall": kendall_tau(vals, ref), "spearman": spearman(vals, ref),
                 "kendall_95": bootstrap_tau(vals, ref), "kendall_vs_seed0": kendall_tau(vals, ref0),
                 "seconds_per_arch": secs}
        if args.reference_seeds >= 2:  # seed 0's runs share initialisation and batch order
            rest = [sum(r["reference_by_seed"][1:]) / (len(r["reference_by_seed"]) - 1)
                    for r in rows]
            entry["kendall_vs_other_seeds"] = kendall_tau(vals, rest)
        if name == "inherit":
            entry["seconds_per_arch"] = secs + state["parent"]["seconds"] / len(rows)
            entry["finetune_seconds_per_arch"] = secs
            entry["parent_seconds"] = state["parent"]["seconds"]
        entry["cost_vs_reference"] = entry["seconds_per_arch"] / ref_s
        evaluators.append(entry)
    repeats = [(rows[i]["reference_by_seed"][0], extra[f"repeat{i}"])
               for i in range(min(args.repeat_archs, len(rows)))]
    diffs = [abs(a - b) for a, b in repeats]
    progressive = [{"arch": i, "fixed": rows[i]["reference"], "fixed_s": rows[i]["reference_s"],
                    "progressive": extra[f"progressive{i}"]["accuracy"],
                    "progressive_s": extra[f"progressive{i}"]["seconds"]}
                   for i in range(min(args.progressive_archs, len(rows)))]
    pruners = [replay_pruner(rows, args.epochs, optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=3), "successive_halving (min 1, factor 3)"),
        replay_pruner(rows, args.epochs, optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=args.epochs, reduction_factor=3), "hyperband"),
        replay_pruner(rows, args.epochs, optuna.pruners.MedianPruner(
            n_startup_trials=5, n_warmup_steps=1), "median (5 startup, 1 warm-up epoch)")]

    desc = (f"{args.epochs} epochs from scratch on {args.data} ({data.num_classes} classes, "
            f"{len(data.y)} training images) at {args.resolution}px, batch {args.batch_size}, "
            f"SGD lr {args.lr} cosine")
    print(table(("evaluator", "Kendall tau", "95% interval", "vs seeds 1+", "Spearman rho",
                 "s/arch", "cost vs ref"),
                [(e["name"], f"{e['kendall']:+.3f}",
                  f"[{e['kendall_95'][0]:+.2f}, {e['kendall_95'][1]:+.2f}]",
                  f"{e['kendall_vs_other_seeds']:+.3f}" if "kendall_vs_other_seeds" in e else "",
                  f"{e['spearman']:+.3f}", f"{e['seconds_per_arch']:.2f}",
                  f"{e['cost_vs_reference']:.3f}") for e in evaluators],
                right="Kendall tau vs seeds 1+ Spearman rho s/arch cost vs ref"))
    print(f"\nreference: {desc}; {ref_s:.1f} s/arch per seed; top-1 from {min(ref):.3f} to "
          f"{max(ref):.3f}")
    if self_agreement:
        print(f"reference self-agreement (seed 0 vs seed 1, {len(rows)} networks): Kendall tau "
              f"{self_agreement['kendall']:+.3f} [{self_agreement['kendall_95'][0]:+.2f}, "
              f"{self_agreement['kendall_95'][1]:+.2f}], mean |diff| "
              f"{self_agreement['mean_abs_diff']:.3f} (max {self_agreement['max_abs_diff']:.3f}); "
              f"over all {self_agreement['pairwise_kendall']['pairs']} pairs of seeds: mean "
              f"{self_agreement['pairwise_kendall']['mean']:+.3f} (from "
              f"{self_agreement['pairwise_kendall']['min']:+.3f} to "
              f"{self_agreement['pairwise_kendall']['max']:+.3f})")
        print(f"reliability of the {args.reference_seeds}-seed mean: "
              f"{self_agreement['reliability_of_mean']:.2f} (single runs r = "
              f"{self_agreement['pearson_single_run']:.2f}): a perfect evaluator would show "
              f"tau ~{self_agreement['tau_ceiling']:.2f} against it; tau 0.6 needs "
              f"{self_agreement['seeds_for_ceiling_0.6']} seeds per network")
    if repeats:
        print(f"reference noise: {len(repeats)} networks trained again with another seed differ "
              f"by {sum(diffs) / len(diffs):.3f} on average (max {max(diffs):.3f})")
    for pr in pruners:
        print(f"{pr['pruner']}: {100 * pr['cost_fraction']:.1f}% of the full-fidelity epochs, "
              f"{pr['completed']} trials completed, kept {len(pr['kept_top3'])}/3 of the "
              f"reference top 3, best kept is the reference best: {pr['best_is_reference_best']}")
    for pg in progressive:
        print(f"progressive arch {pg['arch']}: fixed {pg['fixed']:.3f} in {pg['fixed_s']:.0f}s, "
              f"progressive {pg['progressive']:.3f} in {pg['progressive_s']:.0f}s")
    result = {
        "benchmark": "fidelity", "space": args.space, "data": args.data, "n": len(rows),
        "reference": {"description": desc, "seconds_per_arch": ref_s, "epochs": args.epochs,
                      "seeds": args.reference_seeds, "score": f"mean top-1 over "
                      f"{args.reference_seeds} seed(s)", "self_agreement": self_agreement,
                      "gain_in_last_two_epochs": late_gain},
        "accuracy_range": [min(ref), max(ref)],
        "reference_noise": {"repeats": repeats, "mean_abs_diff": (sum(diffs) / len(diffs))
                            if diffs else None, "max_abs_diff": max(diffs) if diffs else None},
        "evaluators": evaluators, "pruners": pruners, "progressive_vs_fixed": progressive,
        "parent": {"network": parent_spec.name, **state["parent"]} if parent_spec else None,
        "inherit": {"steps": args.inherit_steps, "lr": args.inherit_lr},
        "machine": _cpu_name(), "device": args.device, "torch": torch.__version__,
        "threads": args.threads, "seed": args.seed, "archs": rows,
        "wall_s": time.time() - t_start,
        "config": config,
        "flops_convention": "multiply-accumulates of conv, linear and attention matmuls, batch 1"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
