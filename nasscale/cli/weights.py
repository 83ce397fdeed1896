"""``nasscale weights convert``: torchvision / timm / nasscale state dicts, one to another."""
from __future__ import annotations

import nasscale
from nasscale.cli.base import Command
from nasscale.errors import NasscaleError

SOURCES = ("auto", "nasscale", "torchvision", "timm")


class WeightsCommand(Command):
    name = "weights"
    help = "convert weights between torchvision, timm and nasscale (every tensor checked)"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        p = sub.add_parser("convert", help="convert a weights file of a network",
                           description="Read FILE (a state dict, or a checkpoint with "
                           "state_dict/model) written by --from, check every tensor against "
                           "NETWORK, and write it in --to's names and shapes.")
        p.add_argument("network", help="a zoo name or a network YAML")
        p.add_argument("file", help="the weights file (torch.save of a state dict)")
        p.add_argument("--from", dest="source", choices=SOURCES, default="auto",
                       help="who wrote FILE (default: auto, from its tensor names)")
        p.add_argument("--to", dest="target", choices=SOURCES[1:], default="nasscale",
                       help="whose names to write (default: nasscale)")
        p.add_argument("-o", "--output", required=True, help="the file to write (.pt)")

    def run(self, args):
        from nasscale.reports import output_file
        from nasscale.weights import save_weights

        out = output_file(args.output, "-o")
        model = nasscale.load_weights(args.network, args.file, source=args.source,
                                      where="FILE")
        spec = model.spec
        state = nasscale.export_weights(model, spec, target=args.target)
        save_weights(state, spec, out, target=args.target)
        n = sum(int(t.numel()) for t in state.values() if t.is_floating_point())
        print(f"{args.file} -> {out}: {len(state)} tensors ({n:,} numbers) of {spec.name} in "
              f"{args.target} names")
        base = nasscale.load(args.network)
        if args.target == "nasscale" and spec.norm != base.norm:
            yaml_out = output_file(out.with_suffix(".yaml"), "-o")
            _write_text(yaml_out, nasscale.dump_network(spec))
            print(f"note: these weights compute their source's function with BatchNorm eps "
                  f"{spec.norm.bn[0]:g}, momentum {spec.norm.bn[1]:g} (the network's YAML says "
                  f"{base.norm.bn[0]:g}, {base.norm.bn[1]:g}): use {yaml_out} as the network")
        elif args.target != "nasscale":
            theirs = nasscale.weights.spec_for(spec, args.target).norm.bn
            if theirs != spec.norm.bn:
                print(f"note: {args.target}'s model uses BatchNorm eps {theirs[0]:g}, not the "
                      f"source's {spec.norm.bn[0]:g}: its outputs differ slightly from the "
                      "source's")
        return 0


def _write_text(path, text: str) -> None:
    """Write a text file, or a one-line error naming it."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise NasscaleError(f"-o {path}: cannot write: {err.strerror or err}") from None
