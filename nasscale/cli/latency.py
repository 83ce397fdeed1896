"""``nasscale cost`` and ``nasscale lut``: measured and predicted latency."""
from __future__ import annotations

import sys

import nasscale
from nasscale.cli.base import (
    Command,
    _integer,
    _number,
    add_format,
    add_measurement_arguments,
    print_json,
    settings_from_args,
)
from nasscale.errors import NasscaleError
from nasscale.reports import FLOPS_CONVENTION, si
from nasscale.specs import MAX_RESOLUTION

#: Carrier networks per block in ``lut build`` (default 1): each context is one more carrier
#: network timed for every block, so 100 already makes a build a hundred times longer.
MAX_CONTEXTS = 100


class CostCommand(Command):
    name = "cost"
    help = "measure a network's latency (p50, p90, min, spread) with its params and FLOPs"

    def add_arguments(self, parser):
        parser.add_argument("network",
                            help="architecture name (see `nasscale list`) or a .yaml file")
        parser.add_argument("--resolution", metavar="R",
                            help=f"input size, 1 to {MAX_RESOLUTION} (default: the network's)")
        add_measurement_arguments(parser)
        parser.add_argument("--predict", metavar="LUT_FILE",
                            help="also predict from this latency table (its key supplies the "
                            "measurement options not given)")
        parser.add_argument("--budget", action="append", default=[], metavar="BUDGET",
                            help="check a budget, e.g. 'latency <= 0.8x mobilenet_v3_large' or "
                            "'flops <= 300M' (repeatable; references are measured here, same key)")
        parser.add_argument("--round-seconds", metavar="S", default="0.3",
                            help="length of a timed round (default 0.3, at most 60; 3 rounds "
                            "or more)")
        add_format(parser, ("table", "json"))

    def run(self, args):
        from nasscale.budgets import BudgetResolver, parse_budget
        from nasscale.latency import (
            MAX_ROUND_S,
            LatencyTable,
            Settings,
            TimingPolicy,
            measure,
            prediction_rows,
            record_lines,
            warnings_for,
        )

        budgets = [parse_budget(b) for b in args.budget]  # bad budgets fail before measuring
        resolution = _integer("--resolution", args.resolution, 1, MAX_RESOLUTION)
        round_s = _number("--round-seconds", args.round_seconds, maximum=MAX_ROUND_S,
                          unit="seconds")
        spec = nasscale.load(args.network)
        table_ = LatencyTable.load(args.predict) if args.predict else None
        settings = settings_from_args(args, Settings.of_key(table_.key) if table_ else None)
        key = settings.key()
        if table_ is not None and table_.key != key:
            diff = "; ".join(table_.key.differences(key))
            raise NasscaleError(f"{args.predict}: the table was measured under another key "
                                f"({diff}; table vs this measurement)")
        policy = TimingPolicy().scaled(round_s / TimingPolicy().round_s)
        rec = measure(spec, resolution=resolution, settings=settings, policy=policy)
        prediction = table_.predict(spec, resolution) if table_ is not None else None
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
            from nasscale.latency import time_carrier

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
        build.add_argument("--contexts", metavar="N", default="1",
                           help=f"carrier networks per block (default 1, at most {MAX_CONTEXTS}; "
                           "more averages contexts)")
        build.add_argument("--seed", metavar="N", default="0",
                           help="seed of the carrier sampling (an integer >= 0)")
        build.add_argument("--quiet", action="store_true", help="no progress bar")
        show = sub.add_parser("show", help="summarise a latency table")
        show.add_argument("file")
        add_format(show, ("table", "json"))

    def run(self, args):
        from nasscale.latency import LatencyTable, table_summary

        if args.lut_command == "show":
            tbl = LatencyTable.load(args.file)
            if args.format == "json":
                print_json(tbl.as_dict())
            else:
                print("\n".join(table_summary(tbl, args.file)))
            return 0
        return self.build(args)

    def build(self, args):
        """Check the options and the table path, then measure what the table lacks."""
        from nasscale.latency import build_table
        from nasscale.reports import Progress, output_file
        from nasscale.search import parse_source

        settings = settings_from_args(args)
        contexts = _integer("--contexts", args.contexts, 1, MAX_CONTEXTS)
        seed = _integer("--seed", args.seed, 0, 2 ** 32 - 1)
        sources = [parse_source(s) for s in args.sources]
        out = args.out or (f"lut_{settings.device}_{settings.threads}t_{settings.dtype}_"
                           f"b{settings.batch}.json")
        output_file(out, "--out" if args.out else "table")
        bar = Progress(1, "lut build", enabled=not args.quiet)

        def progress(done, total, note):
            bar.total = max(total, 1)
            bar.update(done, note)

        try:
            report = build_table(sources, out, settings, contexts=contexts, seed=seed,
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
