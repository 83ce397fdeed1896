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


def _expected_check(spec, cost, deploy=None) -> list[str]:
    """Lines comparing a network's counts with its published figures; ``deploy``: the cost of
    its deploy form, compared with ``expected.deploy_*``."""
    exp = spec.expected
    if exp is None:
        return []
    lines = []
    pairs = [("params", cost.params, exp.params), ("FLOPs", cost.flops, exp.flops)]
    if deploy is not None:
        pairs += [("deploy params", deploy.params, exp.deploy_params),
                  ("deploy FLOPs", deploy.flops, exp.deploy_flops)]
    for label, ours, ref in pairs:
        if ref is not None:
            mark = "matches" if ours == ref else f"DIFFERS by {ours - ref:+,}"
            lines.append(f"published {label}: {ref:,} ({mark})")
    for label, ours, ref in (("params", cost.params, exp.paper_params),
                             ("FLOPs", cost.flops, exp.paper_flops)):
        if ref is not None:
            lines.append(f"paper {label}: {si(ref)} (ours {si(ours)}, "
                         f"{100 * (ours / ref - 1):+.1f}%)")
    return lines



def _number(option: str, text: str | None, minimum: float = 0.0, strict: bool = True,
            maximum: float | None = None, unit: str = "") -> float | None:
    """A finite float from a command-line string, above ``minimum`` (or equal when not
    ``strict``) and at most ``maximum``, or a one-line error naming the option (and the
    ``unit``, e.g. ``seconds``)."""
    if text is None:
        return None
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    upper = f" and <= {maximum:g}" if maximum is not None else ""
    if not (value > minimum if strict else value >= minimum) \
            or (maximum is not None and not value <= maximum):  # also rejects nan
        of = f" of {unit}" if unit else ""
        raise NasscaleError(f"{option}: must be a number{of} {'>' if strict else '>='} "
                            f"{minimum:g}{upper}, got {str(text)[:40]!r}")
    if value == float("inf"):
        raise NasscaleError(f"{option}: must be finite, got {text!r}")
    return value


def _integer(option: str, text: object, minimum: int = 1, maximum: int | None = None,
             why: str = "") -> int | None:
    """An integer from a command-line string in ``[minimum, maximum]``, or a one-line error
    naming the option and the range (``why`` says where ``maximum`` comes from)."""
    if text is None:
        return None
    try:
        value = int(str(text).strip())
    except ValueError:  # not an integer, or over Python's 4,300 digits
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum:,}" if maximum is not None else ""
        raise NasscaleError(f"{option}: must be an integer >= {minimum}{upper}"
                            f"{f' ({why})' if why else ''}, got {str(text)[:40]!r}")
    return value


def add_measurement_arguments(parser: argparse.ArgumentParser, table_mode: bool = False) -> None:
    """Options that make up a measurement key.  Unset options stay None so that a latency table
    given with --predict can supply them; ``settings_from_args`` checks the numbers."""
    from nasscale.latency import (
        ALLOCATORS,
        CLOCKS,
        DEVICES,
        DTYPES,
        MAX_BATCH,
        QUANTIZATIONS,
        RUNTIME_CHOICES,
    )

    g = parser.add_argument_group("measurement key")
    g.add_argument("--device", choices=DEVICES, help="cpu (default) or cuda")
    g.add_argument("--threads", metavar="N", help="intra-op CPU threads, at most the cores "
                   "(default 1)")
    g.add_argument("--batch", metavar="N", help=f"batch size (default 1, at most {MAX_BATCH})")
    g.add_argument("--dtype", choices=DTYPES, help="default float32")
    g.add_argument("--channels-last", action="store_true", default=None,
                   help="NHWC memory format")
    if not table_mode:
        g.add_argument("--compile", action="store_true", default=None, help="torch.compile")
        g.add_argument("--cuda-graphs", action="store_true", default=None,
                       help="replay the network as one CUDA graph (with --device cuda)")
    g.add_argument("--runtime", choices=RUNTIME_CHOICES, help="what runs the network: eager "
                   "(default) or compile (PyTorch), or the file nasscale export writes in "
                   "onnxruntime, openvino or executorch (each an extra: pip install "
                   "'nasscale[onnxruntime]')")
    g.add_argument("--quantize", choices=QUANTIZATIONS, help="int8: time the statically "
                   "quantised form (deployment runtimes; default none)")
    g.add_argument("--form", choices=("deploy", "train"), help="re-parameterisable networks "
                   "(MobileOne, RepViT, FastViT): time the fused form they deploy in (default) "
                   "or the branched form they train in")
    g.add_argument("--clock", choices=CLOCKS, help="wall (default), or the thread's CPU time "
                   "(CPU, 1 thread: immune to preemption by other processes)")
    g.add_argument("--allocator", choices=ALLOCATORS, help="steady (default: glibc tuned not to "
                   "return memory between forwards) or default")


def settings_from_args(args: argparse.Namespace, base=None):
    """The measurement settings of the options (``--threads`` at most the cores this process
    may use, ``--batch`` at most ``MAX_BATCH``), or a one-line error naming the option."""
    from nasscale.latency import MAX_BATCH, Settings, available_cores

    cores = available_cores()
    threads = _integer("--threads", args.threads, 1, cores,
                       f"the {cores} cores this process may use")
    batch = _integer("--batch", args.batch, 1, MAX_BATCH)
    return Settings.from_options(
        base, device=args.device, threads=threads, dtype=args.dtype, batch=batch,
        clock=args.clock, allocator=args.allocator, channels_last=args.channels_last or None,
        compile=getattr(args, "compile", None) or None,
        cuda_graphs=getattr(args, "cuda_graphs", None) or None,
        runtime=getattr(args, "runtime", None), quantize=getattr(args, "quantize", None),
        form=getattr(args, "form", None))
