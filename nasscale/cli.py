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
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(self, args):
        from pathlib import Path

        from nasscale.search.outputs import summary_text
        from nasscale.search.runner import RunOptions, run_search
        from nasscale.search.study import load_study

        study = load_study(args.study)
        if args.n_trials is not None and args.n_trials < 1:
            raise NasscaleError(f"--n-trials: must be an integer >= 1, got {args.n_trials}")
        if args.timeout is not None and args.timeout <= 0:
            raise NasscaleError(f"--timeout: must be > 0 seconds, got {args.timeout:g}")
        out = Path(args.out or Path("runs") / (args.study_name or study.name))
        summary = run_search(study, RunOptions(
            out=out, n_trials=args.n_trials, timeout=args.timeout, storage=args.storage,
            study_name=args.study_name, workers=args.workers, progress=not args.no_progress))
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


COMMANDS: tuple[Command, ...] = (ListCommand(), ShowCommand(), SearchCommand(), ExportCommand())


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
