"""``nasscale scale``: compound, explicit or budget-fitted scaling, and the coefficient search."""
from __future__ import annotations

import sys

import nasscale
from nasscale.cli.base import Command, _number, add_format, print_json
from nasscale.errors import NasscaleError
from nasscale.specs import MAX_RESOLUTION

#: The largest explicit width, depth or resolution multiplier: EfficientNet-B7 scales B0's
#: width by 2.0 and its depth by 3.1; past 100x every published network exceeds the specs'
#: bounds on channels, repeats or resolution anyway.
MAX_MULTIPLIER = 100.0


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
        from nasscale.scaling import scaling_record, scaling_text

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

        from nasscale.search import (
            RunOptions,
            load_study,
            run_search,
            summary_text,
            trial_user_attrs,
        )

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
            attrs = trial_user_attrs(study.name, out, best[0]["number"])
            a, b, g = (attrs[k] for k in ("alpha", "beta", "gamma"))
            print(f"best coefficients for {base.name}: alpha={a:g}, beta={b:g}, gamma={g:g} "
                  f"(alpha*beta^2*gamma^2 = {a * b * b * g * g:.3f}); the EfficientNet paper "
                  "found alpha=1.2, beta=1.1, gamma=1.15 for B0 with ImageNet training")
        return 130 if summary.get("interrupted") else 0

    def _scaling(self, args):
        """Check the options (one mode, numbers in range), then scale: a reports.Scaling."""
        from nasscale import scaling
        from nasscale.scaling import Scaling, largest_phi, parse_amount

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
        width = _number("--width", args.width, maximum=MAX_MULTIPLIER)
        depth = _number("--depth", args.depth, maximum=MAX_MULTIPLIER)
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
        message = ("--resolution: must be an input size in pixels (an integer >= 1 and <= "
                   f"{MAX_RESOLUTION}, e.g. 260) or a multiplier ending in x (at most "
                   f"{MAX_MULTIPLIER:g}x, e.g. 1.15x), got {text[:40]!r}")
        if text.strip().lower().endswith("x"):
            try:
                factor = _number("--resolution", text.strip()[:-1], maximum=MAX_MULTIPLIER)
            except NasscaleError:
                raise NasscaleError(message) from None
            return round_resolution(base.resolution * factor, base.rounding, base.resolution)
        digits = text.strip()
        if not digits.isdigit() or len(digits) > 9 or not 1 <= int(digits) <= MAX_RESOLUTION:
            raise NasscaleError(message)
        return int(digits)

    @staticmethod
    def _write(path, text):
        try:
            with open(path, "w") as out:
                out.write(text)
        except OSError as err:
            raise NasscaleError(f"{path}: cannot write: {err.strerror or err}") from None


# --- latency: cost, lut ---------------------------------------------------------------------
