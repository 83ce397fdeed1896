"""The ``nasscale`` command line: one small class per command, calling the public API only.

Bad input (unknown name, malformed YAML, invalid field) prints one line naming the file, field and
what is allowed, and exits with status 2 — never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import nasscale
from nasscale.cli.base import EXIT_BAD_INPUT, Command
from nasscale.cli.latency import CostCommand, LutCommand
from nasscale.cli.networks import ExportCommand, ListCommand, ShowCommand
from nasscale.cli.prune import PruneCommand
from nasscale.cli.scale import ScaleCommand
from nasscale.cli.search import SearchCommand
from nasscale.cli.supernet import SupernetCommand
from nasscale.cli.train import TrainCommand
from nasscale.cli.weights import WeightsCommand
from nasscale.errors import NasscaleError

COMMANDS: tuple[Command, ...] = (ListCommand(), ShowCommand(), ScaleCommand(), PruneCommand(),
                                 TrainCommand(), SupernetCommand(), CostCommand(), LutCommand(),
                                 SearchCommand(), ExportCommand(), WeightsCommand())


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
