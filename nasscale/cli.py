"""The ``nasscale`` command line: one small class per command, calling the public API only.

Bad input (unknown name, malformed YAML, invalid field) prints one line naming the file, field and
what is allowed, and exits with status 2 — never a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Sequence

import nasscale
from nasscale.errors import NasscaleError
from nasscale.reports.text import FLOPS_CONVENTION, si, table

EXIT_BAD_INPUT = 2


class Command:
    """A subcommand: ``name`` and ``help``, its arguments, and ``run`` returning an exit status."""

    name = ""
    help = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


def add_format(parser: argparse.ArgumentParser, choices: Sequence[str]) -> None:
    parser.add_argument("--format", choices=choices, default=choices[0],
                        help=f"output format (default: {choices[0]})")


def print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


def _expected_check(spec, cost) -> list[str]:
    exp = spec.expected
    if exp is None:
        return []
    lines = []
    for label, ours, ref in (("params", cost.params, exp.params), ("FLOPs", cost.flops, exp.flops)):
        if ref is not None:
            mark = "matches" if ours == ref else f"DIFFERS by {ours - ref:+,}"
            lines.append(f"published {label}: {ref:,} ({mark})")
    for label, ours, ref in (("params", cost.params, exp.paper_params),
                             ("FLOPs", cost.flops, exp.paper_flops)):
        if ref is not None:
            lines.append(f"paper {label}: {si(ref)} (ours {si(ours)}, {100 * (ours / ref - 1):+.1f}%)")
    return lines


class ListCommand(Command):
    name = "list"
    help = "list the named architectures with their params and FLOPs"

    def add_arguments(self, parser):
        add_format(parser, ("table", "json"))

    def run(self, args):
        records = []
        for name in nasscale.names():
            spec = nasscale.load(name)
            cost = nasscale.count(spec)
            records.append({"name": name, "family": spec.family, "resolution": spec.resolution,
                            "params": cost.params, "flops": cost.flops, "paper": spec.paper})
        if args.format == "json":
            print_json(records)
            return 0
        print(table(("name", "family", "resolution", "params", "FLOPs"),
                    [(r["name"], r["family"], r["resolution"], si(r["params"]), si(r["flops"]))
                     for r in records], right="resolution params FLOPs"))
        print(f"\n{len(records)} architectures. {FLOPS_CONVENTION}.")
        return 0


class ShowCommand(Command):
    name = "show"
    help = "show a network's stages, params and FLOPs (or its full spec as YAML)"

    def add_arguments(self, parser):
        parser.add_argument("network", help="architecture name (see `nasscale list`) or a .yaml file")
        parser.add_argument("--resolution", type=int, help="input size (default: the network's)")
        add_format(parser, ("table", "json", "yaml"))

    def run(self, args):
        spec = nasscale.load(args.network)
        if args.resolution is not None and args.resolution != spec.resolution:
            # published figures hold at the published resolution only
            spec = spec.replace(resolution=args.resolution, expected=None)
        cost = nasscale.count(spec)  # resolves: a bad resolution fails here, before any output
        if args.format == "yaml":
            sys.stdout.write(nasscale.dump_network(spec))
            return 0
        from nasscale.costs.summary import stage_rows

        rows = stage_rows(cost)
        if args.format == "json":
            total = cost.total
            print_json({
                "name": spec.name, "family": spec.family, "resolution": cost.network.resolution,
                "params": cost.params, "flops": cost.flops,
                "flops_by_kind": {"conv": total.conv, "linear": total.linear,
                                  "attention": total.attention},
                "flops_convention": FLOPS_CONVENTION, "paper": spec.paper,
                "reference": spec.reference, "stages": [r.as_dict() for r in rows]})
            return 0
        attention = cost.total.attention > 0
        headers = ["stage", "block", "n", "channels", "stride", "out HxW", "params", "FLOPs"]
        if attention:
            headers.append("attn FLOPs")
        body = []
        for r in rows:
            line = [r.label, r.block, r.repeats, f"{r.in_channels}->{r.out_channels}", r.stride,
                    f"{r.out_hw[0]}x{r.out_hw[1]}", si(r.cost.params), si(r.cost.flops)]
            if attention:
                line.append(si(r.cost.attention))
            body.append(line)
        print(f"{spec.name} at {cost.network.resolution}x{cost.network.resolution}"
              + (f"  ({spec.paper})" if spec.paper else ""))
        print(table(headers, body, right="n stride params FLOPs attn FLOPs"))
        print(f"\ntotal: {cost.params:,} params, {cost.flops:,} FLOPs ({si(cost.flops)})")
        for line in _expected_check(spec, cost):
            print(line)
        print(FLOPS_CONVENTION + ".")
        return 0


class SearchCommand(Command):
    name = "search"
    help = "run an architecture search study (studies/*.yaml); re-running resumes it"

    def add_arguments(self, parser):
        parser.add_argument("study", help="study file, e.g. studies/quickstart.yaml")
        parser.add_argument("--n-trials", type=int, help="finished trials the study should "
                            "have (default: the study's 'trials'); a resumed study runs the rest")
        parser.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
        parser.add_argument("--storage", help="Optuna storage URL, e.g. postgresql://user:pw@host"
                            "/db (default: a journal file in the output folder)")
        parser.add_argument("--study-name", help="Optuna study name (default: the study's name)")
        parser.add_argument("--out", help="output folder (default: runs/<study name>)")
        parser.add_argument("--workers", type=int, default=1,
                            help="worker processes on this machine sharing the storage")
        parser.add_argument("--own-budgets", action="store_true",
                            help="join a study whose relative latency budgets were measured on "
                            "other hardware by measuring them again here (this worker's "
                            "limits are its own); without it such a worker is refused")
        parser.add_argument("--storage-retry", type=float, default=300.0, metavar="S",
                            help="keep retrying a storage that does not answer for S seconds "
                            "before stopping (default 300)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(self, args):
        from pathlib import Path

        from nasscale.search.outputs import summary_text
        from nasscale.search.runner import RunOptions, run_search
        from nasscale.search.study import load_study

        study = load_study(args.study)
        if args.n_trials is not None and args.n_trials < 1:
            raise NasscaleError(f"--n-trials: must be an integer >= 1, got {args.n_trials}")
        if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
            raise NasscaleError(f"--timeout: must be a number of seconds > 0, "
                                f"got {args.timeout:g}")
        if not (math.isfinite(args.storage_retry) and args.storage_retry >= 0):
            raise NasscaleError(f"--storage-retry: must be a number of seconds >= 0, "
                                f"got {args.storage_retry:g}")
        out = Path(args.out or Path("runs") / (args.study_name or study.name))
        summary = run_search(study, RunOptions(
            out=out, n_trials=args.n_trials, timeout=args.timeout, storage=args.storage,
            study_name=args.study_name, workers=args.workers, progress=not args.no_progress,
            own_budgets=args.own_budgets, storage_retry=args.storage_retry))
        print(summary_text(summary, out))
        if summary.get("interrupted"):
            print("nasscale: interrupted; finished trials are kept, re-run the same command "
                  "to resume", file=sys.stderr)
            return 130
        return 0


class ExportCommand(Command):
    name = "export"
    help = "export a network (name or YAML, e.g. a search's best.yaml) to ONNX"

    def add_arguments(self, parser):
        parser.add_argument("network", help="architecture name or network .yaml")
        parser.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx file")
        parser.add_argument("--resolution", type=int, help="input size (default: the network's)")
        parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")

    def run(self, args):
        from nasscale.export import export_onnx

        path = export_onnx(args.network, args.onnx, resolution=args.resolution,
                           opset=args.opset)
        print(f"wrote {path} (checked with onnx.checker; random weights, dynamic batch)")
        return 0


def _number(option: str, text: str | None, minimum: float = 0.0, strict: bool = True,
            ) -> float | None:
    """A float from a command-line string, or a one-line error naming the option."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > minimum if strict else value >= minimum):  # also rejects nan and inf
        raise NasscaleError(f"{option}: must be a number {'>' if strict else '>='} {minimum:g}, "
                            f"got {text!r}")
    if value == float("inf"):
        raise NasscaleError(f"{option}: must be finite, got {text!r}")
    return value


class ScaleCommand(Command):
    name = "scale"
    help = ("scale a network: compound (--phi), explicit coefficients, or the largest that fits "
            "a FLOPs or params budget")

    def add_arguments(self, parser):
        parser.add_argument("network", help="base architecture name or a network .yaml file")
        mode = parser.add_argument_group("how to scale (give one)")
        mode.add_argument("--phi", metavar="N",
                          help="compound coefficient (>= 0, fractional allowed)")
        mode.add_argument("--width", metavar="W", help="explicit width multiplier (e.g. 1.1)")
        mode.add_argument("--depth", metavar="D", help="explicit depth multiplier (e.g. 1.2)")
        mode.add_argument("--resolution", metavar="R",
                          help="explicit input size in pixels (260), or a multiplier with x "
                          "(1.15x), rounded to the family's grid")
        mode.add_argument("--target-flops", metavar="FLOPS",
                          help="the largest phi whose network needs at most this many FLOPs "
                          "(2G, 500M; 1 MAC = 1 FLOP)")
        mode.add_argument("--target-params", metavar="PARAMS",
                          help="the largest phi whose network has at most this many "
                          "parameters (5M)")
        mode.add_argument("--search-coefficients", action="store_true",
                          help="EfficientNet's step 1: grid-search alpha, beta, gamma at phi=1 "
                          "with alpha*beta^2*gamma^2 ~ 2 (runs --study on this base)")
        search = parser.add_argument_group("coefficient search (with --search-coefficients)")
        search.add_argument("--study", default="studies/efficientnet_coefficients.yaml",
                            help="coefficient study file (default: %(default)s)")
        search.add_argument("--out", help="output folder (default: runs/<study>_<base>)")
        coeff = parser.add_argument_group("compound coefficients (with --phi or --target-*)")
        coeff.add_argument("--alpha", metavar="A", help="depth base (default 1.2, >= 1)")
        coeff.add_argument("--beta", metavar="B", help="width base (default 1.1, >= 1)")
        coeff.add_argument("--gamma", metavar="G", help="resolution base (default 1.15, >= 1)")
        parser.add_argument("--dropout", metavar="P",
                            help="head dropout of the scaled network (default: the base's)")
        parser.add_argument("--name", help="name of the scaled network")
        parser.add_argument("-o", "--output", metavar="FILE",
                            help="write the scaled network to this .yaml file")
        add_format(parser, ("table", "json", "yaml"))

    def run(self, args):
        from nasscale.reports.scaling import scaling_record, scaling_text

        if args.search_coefficients:
            return self._search(args)
        summary = self._scaling(args)
        if args.output:
            self._write(args.output, nasscale.dump_network(summary.scaled))
        if args.format == "yaml":
            sys.stdout.write(nasscale.dump_network(summary.scaled))
        elif args.format == "json":
            print_json({**scaling_record(summary), "output": args.output})
        else:
            print(scaling_text(summary))
            if args.output:
                print(f"wrote {args.output} (nasscale show {args.output})")
        return 0

    def _search(self, args) -> int:
        """Run the coefficient study on ``args.network`` and report the best (α, β, γ)."""
        from pathlib import Path

        from nasscale.search.outputs import summary_text
        from nasscale.search.runner import RunOptions, run_search
        from nasscale.search.study import load_study

        other = [o for o in ("phi", "width", "depth", "resolution", "target_flops",
                             "target_params", "alpha", "beta", "gamma") if getattr(args, o)]
        if other:
            raise NasscaleError(f"--search-coefficients searches alpha, beta and gamma itself; "
                                f"drop --{other[0].replace('_', '-')}")
        study = load_study(args.study)
        if study.coefficients is None:
            raise NasscaleError(f"{args.study}: not a coefficient study (it has no "
                                "'coefficients' section)")
        base = nasscale.load(args.network)
        study = study.replace(coefficients={**study.coefficients, "base": args.network},
                              name=f"{study.name}_{base.name}")
        out = Path(args.out or Path("runs") / study.name)
        summary = run_search(study, RunOptions(out=out))
        print(summary_text(summary, out))
        best = summary["best"]
        if best:
            from nasscale.search.runner import open_storage

            import optuna
            trial = optuna.load_study(study_name=study.name, storage=open_storage(None, out)
                                      ).trials[best[0]["number"]]
            a, b, g = (trial.user_attrs[k] for k in ("alpha", "beta", "gamma"))
            print(f"best coefficients for {base.name}: alpha={a:g}, beta={b:g}, gamma={g:g} "
                  f"(alpha*beta^2*gamma^2 = {a * b * b * g * g:.3f}); the EfficientNet paper "
                  "found alpha=1.2, beta=1.1, gamma=1.15 for B0 with ImageNet training")
        return 130 if summary.get("interrupted") else 0

    def _scaling(self, args):
        """Check the options (one mode, numbers in range), then scale: a reports.Scaling."""
        from nasscale import scaling
        from nasscale.reports.scaling import Scaling
        from nasscale.scaling.budget import largest_phi, parse_amount

        explicit = any(getattr(args, o) is not None for o in ("width", "depth", "resolution"))
        modes = [m for m, given in (
            ("--phi", args.phi is not None), ("--width/--depth/--resolution", explicit),
            ("--target-flops", args.target_flops is not None),
            ("--target-params", args.target_params is not None)) if given]
        if len(modes) != 1:
            raise NasscaleError("give exactly one of --phi, --width/--depth/--resolution, "
                                "--target-flops or --target-params "
                                f"(got {', '.join(modes) or 'none'})")
        given = {k: _number(f"--{k}", getattr(args, k), 1.0, strict=False)
                 for k in ("alpha", "beta", "gamma")}
        if explicit and any(v is not None for v in given.values()):
            raise NasscaleError("--alpha/--beta/--gamma apply to --phi and --target-*, not to "
                                "explicit --width/--depth/--resolution")
        bases = {k: getattr(scaling, k.upper()) if v is None else v for k, v in given.items()}
        dropout = _number("--dropout", args.dropout, 0.0, strict=False)
        phi = _number("--phi", args.phi, 0.0, strict=False)
        width, depth = _number("--width", args.width), _number("--depth", args.depth)
        base = nasscale.load(args.network)
        if explicit:
            scaled = scaling.scale(base, width or 1.0, depth or 1.0,
                                   self._resolution(base, args.resolution), dropout=dropout,
                                   name=args.name)
            return Scaling(base, scaled, width or 1.0, depth or 1.0)
        fit = None
        if phi is None:
            metric = "flops" if args.target_flops is not None else "params"
            budget = parse_amount(args.target_flops or args.target_params, f"--target-{metric}",
                                  metric=metric)
            fit = largest_phi(base, metric, budget, **bases)
            phi = fit.phi
        c = scaling.Compound(phi, **bases)
        scaled = scaling.compound(base, phi, **bases, dropout=dropout, name=args.name)
        return Scaling(base, scaled, c.width, c.depth, c, fit)

    @staticmethod
    def _resolution(base, text):
        from nasscale.scaling import round_resolution

        if text is None:
            return None
        message = ("--resolution: must be an input size in pixels (an integer >= 1, e.g. 260) "
                   f"or a multiplier ending in x (e.g. 1.15x), got {text!r}")
        if text.strip().lower().endswith("x"):
            try:
                factor = _number("--resolution", text.strip()[:-1])
            except NasscaleError:
                raise NasscaleError(message) from None
            return round_resolution(base.resolution * factor, base.rounding, base.resolution)
        if not text.strip().isdigit() or int(text) < 1:
            raise NasscaleError(message)
        return int(text)

    @staticmethod
    def _write(path, text):
        try:
            with open(path, "w") as out:
                out.write(text)
        except OSError as err:
            raise NasscaleError(f"{path}: cannot write: {err.strerror or err}") from None


# --- latency: cost, lut ---------------------------------------------------------------------

def add_measurement_arguments(parser: argparse.ArgumentParser, table_mode: bool = False) -> None:
    """Options that make up a measurement key.  Unset options stay None so that a latency table
    given with --predict can supply them."""
    from nasscale.latency.key import ALLOCATORS, CLOCKS, DEVICES, DTYPES

    g = parser.add_argument_group("measurement key")
    g.add_argument("--device", choices=DEVICES, help="cpu (default) or cuda")
    g.add_argument("--threads", type=int, help="intra-op CPU threads, at most the cores "
                   "(default 1)")
    g.add_argument("--batch", type=int, help="batch size (default 1)")
    g.add_argument("--dtype", choices=DTYPES, help="default float32")
    g.add_argument("--channels-last", action="store_true", default=None,
                   help="NHWC memory format")
    if not table_mode:
        g.add_argument("--compile", action="store_true", default=None, help="torch.compile")
        g.add_argument("--cuda-graphs", action="store_true", default=None,
                       help="replay the network as one CUDA graph (with --device cuda)")
    g.add_argument("--clock", choices=CLOCKS, help="wall (default), or the thread's CPU time "
                   "(CPU, 1 thread: immune to preemption by other processes)")
    g.add_argument("--allocator", choices=ALLOCATORS, help="steady (default: glibc tuned not to "
                   "return memory between forwards) or default")


def settings_from_args(args: argparse.Namespace, base=None):
    from nasscale.latency.measure import Settings, mode_of

    base = base or Settings()
    compile_, graphs = getattr(args, "compile", None), getattr(args, "cuda_graphs", None)
    given = {"device": args.device, "threads": args.threads, "dtype": args.dtype,
             "batch": args.batch, "clock": args.clock, "allocator": args.allocator,
             "memory_format": "channels_last" if args.channels_last else None,
             "mode": mode_of(compile_, graphs) if (compile_ or graphs) else None}
    return base.replace(**{k: v for k, v in given.items() if v is not None})


class CostCommand(Command):
    name = "cost"
    help = "measure a network's latency (p50, p90, min, spread) with its params and FLOPs"

    def add_arguments(self, parser):
        parser.add_argument("network",
                            help="architecture name (see `nasscale list`) or a .yaml file")
        parser.add_argument("--resolution", type=int, help="input size (default: the network's)")
        add_measurement_arguments(parser)
        parser.add_argument("--predict", metavar="LUT_FILE",
                            help="also predict from this latency table (its key supplies the "
                            "measurement options not given)")
        parser.add_argument("--budget", action="append", default=[], metavar="BUDGET",
                            help="check a budget, e.g. 'latency <= 0.8x mobilenet_v3_large' or "
                            "'flops <= 300M' (repeatable; references are measured here, same key)")
        parser.add_argument("--round-seconds", type=float, default=0.3,
                            help="length of a timed round (default 0.3; 3 rounds or more)")
        add_format(parser, ("table", "json"))

    def run(self, args):
        from nasscale.budgets import BudgetResolver, parse_budget
        from nasscale.latency import LatencyTable, TimingPolicy, measure
        from nasscale.latency.report import prediction_rows, record_lines, warnings_for

        budgets = [parse_budget(b) for b in args.budget]  # bad budgets fail before measuring
        spec = nasscale.load(args.network)
        table_ = LatencyTable.load(args.predict) if args.predict else None
        from nasscale.latency.measure import Settings

        settings = settings_from_args(args, Settings.of_key(table_.key) if table_ else None)
        key = settings.key()
        if table_ is not None and table_.key != key:
            diff = "; ".join(table_.key.differences(key))
            raise NasscaleError(f"{args.predict}: the table was measured under another key "
                                f"({diff}; table vs this measurement)")
        if not (math.isfinite(args.round_seconds) and args.round_seconds > 0):
            raise NasscaleError(f"--round-seconds: must be a number of seconds > 0, "
                                f"got {args.round_seconds:g}")
        policy = TimingPolicy().scaled(args.round_seconds / TimingPolicy().round_s)
        rec = measure(spec, resolution=args.resolution, settings=settings, policy=policy)
        prediction = table_.predict(spec, args.resolution) if table_ is not None else None
        probe = None
        if table_ is not None and table_.probe_ms:
            # the machine's speed now vs when the table was built, on the table's probe network
            probe_spec = table_.probe_spec()
            now = rec if probe_spec == spec and rec.resolution == probe_spec.resolution \
                else measure(probe_spec, settings=settings, policy=policy)
            probe = {"network": probe_spec.name, "now_ms": now.latency_ms,
                     "table_ms": table_.probe_ms, "ratio": now.latency_ms / table_.probe_ms}
        resolver = BudgetResolver(settings=settings,
                                  measure=lambda s, settings: measure(s, settings=settings,
                                                                      policy=policy))
        checks = []
        for budget in budgets:
            resolved = resolver.resolve(budget)
            value = {"latency": rec.latency_ms, "flops": rec.flops,
                     "params": rec.params}[budget.metric]
            checks.append((resolved, value))
        for line in warnings_for(rec):
            print(line, file=sys.stderr)
        if args.format == "json":
            data = rec.as_dict()
            if prediction is not None:
                data["predicted_ms"] = prediction.total_ms
                data["prediction"] = prediction.as_dict()
                data["probe"] = probe
            data["budgets"] = [{**r.as_dict(), "value": v, "satisfied": r.satisfied(v)}
                               for r, v in checks]
            print_json(data)
            return 0
        for line in record_lines(rec, prediction, probe):
            print(line)
        for resolved, value in checks:
            shown = f"{value:.3f} ms" if resolved.budget.metric == "latency" else si(value)
            verdict = "met" if resolved.satisfied(value) else "NOT met"
            margin = 100 * resolved.margin(value)
            print(f"budget    {resolved}: {shown}, {verdict} ({margin:+.1f} %)")
        if prediction is not None:
            from nasscale.latency.build import time_carrier

            # each unit timed inside this network, next to its predicted latency
            units = time_carrier(spec.replace(resolution=rec.resolution), settings, policy)
            print()
            print(prediction_rows(prediction, units.units_ms, units.overhead_ms))
        print(FLOPS_CONVENTION + ".")
        return 0


class LutCommand(Command):
    name = "lut"
    help = "build or show a per-block latency lookup table"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="lut_command", required=True, metavar="ACTION")
        build = sub.add_parser("build", help="measure every block the sources can contain",
                               description="Measure every distinct block (kind, fields, input "
                               "shape) the sources can contain, each timed inside carrier "
                               "networks, into a JSON table keyed by the measurement key. "
                               "Resumable; only missing blocks are measured.")
        build.add_argument("sources", nargs="+", metavar="SPACE_OR_NAME",
                           help="around:NAME (the space around a network), space:NAME[:N] "
                           "(a search space, covered by N sampled networks, default 200), a "
                           "network name or a network .yaml")
        add_measurement_arguments(build, table_mode=True)
        build.add_argument("--out", help="table file (default: lut_<device>_<threads>t_<dtype>_"
                           "b<batch>.json); an existing one is completed")
        build.add_argument("--contexts", type=int, default=1,
                           help="carrier networks per block (default 1; more averages contexts)")
        build.add_argument("--seed", type=int, default=0, help="seed of the carrier sampling")
        build.add_argument("--quiet", action="store_true", help="no progress bar")
        show = sub.add_parser("show", help="summarise a latency table")
        show.add_argument("file")
        add_format(show, ("table", "json"))

    def run(self, args):
        from nasscale.latency import LatencyTable
        from nasscale.latency.report import table_summary

        if args.lut_command == "show":
            tbl = LatencyTable.load(args.file)
            if args.format == "json":
                print_json(tbl.as_dict())
            else:
                print("\n".join(table_summary(tbl, args.file)))
            return 0
        return self.build(args)

    def build(self, args):
        from nasscale.latency.build import build_table, parse_source
        from nasscale.reports.progress import Progress

        settings = settings_from_args(args)
        sources = [parse_source(s) for s in args.sources]
        out = args.out or (f"lut_{settings.device}_{settings.threads}t_{settings.dtype}_"
                           f"b{settings.batch}.json")
        bar = Progress(1, "lut build", enabled=not args.quiet)

        def progress(done, total, note):
            bar.total = max(total, 1)
            bar.update(done, note)

        try:
            report = build_table(sources, out, settings, contexts=args.contexts, seed=args.seed,
                                 progress=progress)
        except KeyboardInterrupt:
            bar.close()
            print(f"nasscale: interrupted; what was measured is saved in {out}: run the same "
                  "command again to resume", file=sys.stderr)
            return 130
        bar.close()
        carriers = f"{report.carriers} carrier network" + ("s" if report.carriers != 1 else "")
        print(f"{out}: {report.new_entries} new entries ({report.measured_units} unit timings in "
              f"{carriers}, {report.seconds:.0f} s); {report.entries} entries in all; the "
              f"sources need {report.required}")
        print(f"key: {settings.key().describe()}")
        return 0


class PruneCommand(Command):
    name = "prune"
    help = ("NetAdapt: prune a network's widths to a latency, FLOPs or params target, "
            "optionally carrying trained weights")

    def add_arguments(self, parser):
        from nasscale.latency.key import DEVICES
        from nasscale.pruning.evaluate import EVALUATOR_HELP
        from nasscale.pruning.resource import TARGET_HELP

        parser.add_argument("network", help="architecture name or a network .yaml file")
        parser.add_argument("--target", required=True, metavar="METRIC=BOUND",
                            help="what to reach: " + TARGET_HELP.replace("%", "%%"))
        parser.add_argument("--device", choices=DEVICES, default="cpu",
                            help="where latency is measured (default: cpu)")
        parser.add_argument("--threads", type=int, default=1,
                            help="CPU threads for latency (default 1)")
        parser.add_argument("--lut", metavar="FILE",
                            help="latency lookup table to use and extend (default: "
                            "OUT/latency_table.json, built as pruning goes)")
        parser.add_argument("--evaluator", metavar="SPEC",
                            help=f"how proposals are scored: {EVALUATOR_HELP} (default: "
                            "proxy:naswot,resolution=0.5x,batch=16). train: NetAdapt's "
                            "short-term fine-tuning of every proposal (steps, default 50) and, "
                            "with --weights, long-term fine-tuning of the final network "
                            "(final_epochs, default 5) on device (default auto)"
                            .replace("%", "%%"))
        parser.add_argument("--weights", metavar="CKPT",
                            help="a `nasscale train -o` file or a state_dict of the network's "
                            "nasscale module: kept filters carry their weights, and "
                            "OUT/pruned.pt is written")
        parser.add_argument("--out", metavar="DIR",
                            help="output folder (default: runs/prune_<network>_<metric>)")
        parser.add_argument("--step", type=float, default=0.025,
                            help="first iteration's resource reduction, a fraction of the "
                            "start's (default 0.025)")
        parser.add_argument("--decay", type=float, default=0.96,
                            help="the step is multiplied by this every iteration (default 0.96)")
        parser.add_argument("--max-iterations", type=int, default=200)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
        add_format(parser, ("table", "json", "yaml"))

    def run(self, args):
        from nasscale.pruning.netadapt import Options
        from nasscale.pruning.run import PruneRequest, run_prune
        from nasscale.reports.pruning import result_record, result_text

        if args.threads < 1:
            raise NasscaleError(f"--threads: must be >= 1, got {args.threads}")
        req = PruneRequest(network=args.network, target=args.target, device=args.device,
                           threads=args.threads, lut=args.lut, evaluator=args.evaluator,
                           weights=args.weights, out=args.out, seed=args.seed,
                           options=Options(args.step, args.decay, args.max_iterations),
                           verbose=not args.quiet)
        result, out = run_prune(req)
        if args.format == "json":
            print_json(result_record(result, out))
        elif args.format == "yaml":
            sys.stdout.write(nasscale.dump_network(result.final))
        else:
            print(result_text(result, out))
        return 0


class TrainCommand(Command):
    name = "train"
    help = ("train a network (zoo name or YAML) on a dataset on this machine's CPU or GPU; "
            "prints and writes held-out top-1")

    def add_arguments(self, parser):
        from nasscale.search.train import AMP, DEVICES

        parser.add_argument("network", help="architecture name or a network .yaml file "
                            "(e.g. a search's best.yaml)")
        parser.add_argument("--data", default="testbed",
                            help="testbed (default), digits, an .npz file or an image folder "
                            "with one subfolder per class")
        parser.add_argument("--epochs", type=int, default=10)
        parser.add_argument("--device", default="auto", metavar="|".join(DEVICES),
                            help="auto (default) takes CUDA when present; cuda:N for one GPU")
        parser.add_argument("--amp", choices=AMP, default="none",
                            help="mixed precision (fp16 needs CUDA; default none)")
        parser.add_argument("--channels-last", action="store_true")
        parser.add_argument("--batch-size", type=int, default=32,
                            help="default 32 (the fidelity benchmark's recipe)")
        parser.add_argument("--lr", type=float, default=0.1, help="default 0.1")
        parser.add_argument("--weight-decay", type=float, default=5e-5)
        parser.add_argument("--resolution", type=int, default=32,
                            help="training and evaluation size in pixels (default 32)")
        parser.add_argument("--progressive", action="store_true",
                            help="EfficientNetV2 progressive learning: the image size and "
                            "regularisation grow over up to 4 stages")
        parser.add_argument("--no-augment", action="store_true",
                            help="no random resized crop, flip or centre crop")
        parser.add_argument("--subset", type=int, help="cap on training images")
        parser.add_argument("--val-fraction", type=float, default=0.2,
                            help="held-out share when the data has no test split (default 0.2)")
        parser.add_argument("--image-size", type=int,
                            help="resize an image folder's images to this size on load")
        parser.add_argument("--weights", metavar="FILE",
                            help="start from these weights (a nasscale weights file or "
                            "state_dict) instead of a seeded initialisation")
        parser.add_argument("--threads", type=int, help="CPU threads (default: torch's)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("-o", "--out", metavar="OUT.pt",
                            help="weights file (default runs/train_<network>_<data>/model.pt); "
                            "OUT.json gets the result, OUT.ckpt the resumable checkpoint")
        parser.add_argument("--resume", action="store_true",
                            help="continue OUT.ckpt of an interrupted run with the same settings")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
        add_format(parser, ("table", "json"))

    def run(self, args):
        import torch

        from nasscale.search.train import TrainSettings
        from nasscale.search.train_job import TrainJob, record_text, run_train_job

        for option, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size),
                              ("--resolution", args.resolution), ("--threads", args.threads),
                              ("--subset", args.subset), ("--image-size", args.image_size)):
            if value is not None and value < 1:
                raise NasscaleError(f"{option}: must be an integer >= 1, got {value}")
        if args.threads:
            torch.set_num_threads(args.threads)
        settings = TrainSettings(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            weight_decay=args.weight_decay, subset=args.subset, val_fraction=args.val_fraction,
            resolution=args.resolution, seed=args.seed, device=args.device, amp=args.amp,
            channels_last=args.channels_last, augment=not args.no_augment,
            progressive=args.progressive)
        try:
            settings.check()
        except NasscaleError as err:
            raise NasscaleError(f"--{str(err).replace('_', '-')}") from None
        record = run_train_job(TrainJob(network=args.network, data=args.data, settings=settings,
                                        out=args.out, resume=args.resume, weights=args.weights,
                                        image_size=args.image_size, progress=not args.quiet))
        print_json(record) if args.format == "json" else print(record_text(record))
        return 0


COMMANDS: tuple[Command, ...] = (ListCommand(), ShowCommand(), ScaleCommand(), PruneCommand(),
                                 TrainCommand(), CostCommand(), LutCommand(), SearchCommand(),
                                 ExportCommand())


def make_parser(commands: Sequence[Command] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasscale", description="Image-classification networks as data: grammar, "
        "published networks, costs, scaling, pruning and hardware-aware search.")
    parser.add_argument("--version", action="version", version=f"nasscale {nasscale.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands:
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(p)
        p.set_defaults(handler=command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        return args.handler.run(args)
    except NasscaleError as err:
        print(f"nasscale: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("nasscale: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `nasscale list | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
