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


COMMANDS: tuple[Command, ...] = (ListCommand(), ShowCommand())


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
