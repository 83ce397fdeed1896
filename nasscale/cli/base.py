"""What every command shares: the ``Command`` base, output helpers, number parsing and the
latency-measurement options."""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from nasscale.errors import NasscaleError
from nasscale.reports import si


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



def add_measurement_arguments(parser: argparse.ArgumentParser, table_mode: bool = False) -> None:
    """Options that make up a measurement key.  Unset options stay None so that a latency table
    given with --predict can supply them."""
    from nasscale.latency import ALLOCATORS, CLOCKS, DEVICES, DTYPES

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
    from nasscale.latency import Settings

    return Settings.from_options(
        base, device=args.device, threads=args.threads, dtype=args.dtype, batch=args.batch,
        clock=args.clock, allocator=args.allocator, channels_last=args.channels_last or None,
        compile=getattr(args, "compile", None) or None,
        cuda_graphs=getattr(args, "cuda_graphs", None) or None)
