"""The ``nasscale`` command line: one small class per command, calling the public API only.

Bad input (unknown name, malformed YAML, invalid field) prints one line naming the file, field and
what is allowed, and exits with status 2 — never a traceback.
"""
from __future__ import annotations

import argparse
import json
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
        if args.round_seconds <= 0:
            raise NasscaleError(f"--round-seconds: must be > 0, got {args.round_seconds}")
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
                           help="around:NAME (the space around a network), a network name or "
                           "a network .yaml")
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


COMMANDS: tuple[Command, ...] = (ListCommand(), ShowCommand(), CostCommand(), LutCommand())


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
