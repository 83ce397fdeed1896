"""``nasscale list``, ``show`` and ``export``: published networks and network files."""
from __future__ import annotations

import sys

import nasscale
from nasscale.cli.base import Command, _expected_check, add_format, print_json
from nasscale.reports import FLOPS_CONVENTION, si, table


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
        parser.add_argument("network",
                            help="architecture name (see `nasscale list`) or a .yaml file")
        parser.add_argument("--resolution", type=int, help="input size (default: the network's)")
        parser.add_argument("--form", choices=("train", "deploy"), help="for a network with "
                            "re-parameterisable blocks (MobileOne, RepViT, FastViT): show the "
                            "form it trains in (branches) or the fused one it deploys in "
                            "(default: as written; the table and JSON give both totals)")
        add_format(parser, ("table", "json", "yaml"))

    def run(self, args):
        spec = nasscale.load(args.network)
        if args.resolution is not None and args.resolution != spec.resolution:
            # published figures hold at the published resolution only
            spec = spec.replace(resolution=args.resolution, expected=None)
        if args.form is not None:
            spec = spec.deploy_form() if args.form == "deploy" else spec.train_form()
        cost = nasscale.count(spec)  # resolves: a bad resolution fails here, before any output
        forms = _forms(spec, cost)
        if args.format == "yaml":
            sys.stdout.write(nasscale.dump_network(spec))
            return 0
        from nasscale.costs import stage_rows

        rows = stage_rows(cost)
        if args.format == "json":
            total = cost.total
            print_json({
                "name": spec.name, "family": spec.family, "resolution": cost.network.resolution,
                "params": cost.params, "flops": cost.flops,
                "flops_by_kind": {"conv": total.conv, "linear": total.linear,
                                  "attention": total.attention},
                "flops_convention": FLOPS_CONVENTION, "paper": spec.paper,
                "reference": spec.reference, "stages": [r.as_dict() for r in rows],
                "forms": {form: {"params": c.params, "flops": c.flops}
                          for form, c in forms.items()}})
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
        for form, c in forms.items():
            if c is not cost:
                print(f"{form} form: {c.params:,} params, {c.flops:,} FLOPs ({si(c.flops)})"
                      + (" -- the form nasscale times and exports" if form == "deploy" else ""))
        for line in _expected_check(spec, forms.get("train", cost), forms.get("deploy")):
            print(line)
        print(FLOPS_CONVENTION + ".")
        return 0


def _forms(spec, cost) -> dict:
    """``{"train": cost, "deploy": cost}`` of a network with re-parameterisable blocks (the
    given ``cost`` for the form ``spec`` is in); empty for any other network."""
    if not spec.reparameterizable:
        return {}
    train, deploy = spec.train_form(), spec.deploy_form()
    return {"train": cost if train == spec else nasscale.count(train),
            "deploy": cost if deploy == spec else nasscale.count(deploy)}


class ExportCommand(Command):
    name = "export"
    help = ("export a network to ONNX or an ExecuTorch program, fp32 or int8: a trained weights "
            "file (nasscale train -o, prune's pruned.pt), or a name or YAML (with --weights, or "
            "random weights)")

    def add_arguments(self, parser):
        parser.add_argument("network", help="a trained weights file (MODEL.pt: network, "
                            "weights, classes and resolution), an architecture name or a "
                            "network .yaml")
        out = parser.add_mutually_exclusive_group(required=True)
        out.add_argument("--onnx", metavar="FILE", help="output .onnx file (ONNX Runtime, "
                         "OpenVINO)")
        out.add_argument("--pte", metavar="FILE", help="output .pte ExecuTorch program, "
                         "lowered to XNNPACK (the executorch extra)")
        parser.add_argument("--weights", metavar="FILE", help="weights for a name or YAML (a "
                            "nasscale train file or a state_dict); without them the weights "
                            "are random (shapes and latency only)")
        parser.add_argument("--quantize", choices=("none", "int8"), default="none",
                            help="int8: static post-training quantisation (ONNX: ONNX "
                            "Runtime's QDQ; .pte: XNNPACK's quantiser)")
        parser.add_argument("--calibration", metavar="DATA", help="data whose training images "
                            "calibrate int8, and whose held-out images score the network "
                            "before and after quantisation (default: seeded noise, no score)")
        parser.add_argument("--resolution", type=int, help="input size (default: the "
                            "network's, which a trained file records)")
        parser.add_argument("--no-normalise", action="store_true", help="leave out the "
                            "data's normalisation: the graph takes normalised inputs")
        parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")

    def run(self, args):
        if args.pte:
            from nasscale.export import export_pte

            out = export_pte(args.network, args.pte, resolution=args.resolution,
                             weights=args.weights, normalise=not args.no_normalise,
                             quantize=args.quantize, calibration=args.calibration)
        else:
            from nasscale.export import export_onnx

            out = export_onnx(args.network, args.onnx, resolution=args.resolution,
                              opset=args.opset, weights=args.weights,
                              normalise=not args.no_normalise, quantize=args.quantize,
                              calibration=args.calibration)
        classes = (f"{len(out.classes)} classes ({', '.join(out.classes[:6])}"
                   f"{', ...' if len(out.classes) > 6 else ''})" if out.classes
                   else "classes not recorded")
        if out.weights is None:
            what = "RANDOM weights (no --weights): for shapes and latency only"
        else:
            what = f"weights from {out.weights}, {classes}"
        accuracy = out.meta.get("nasscale.accuracy")
        if accuracy:
            what += f", held-out top-1 {100 * float(accuracy):.2f}%"
        print(f"wrote {out.path}: {out.network} at {out.resolution}x{out.resolution}, {what}")
        if out.normalisation:
            print(f"input: RGB pixels in [0, 1] ({out.normalisation['scale']}); the graph "
                  "subtracts the training data's mean and divides by its std")
        if "nasscale.quantization" in out.meta:
            print(f"quantised: {out.meta['nasscale.quantization']}")
        if "nasscale.portable_ops" in out.meta:
            print(f"lowered to XNNPACK; {out.meta['nasscale.portable_ops']} operators run in "
                  "ExecuTorch's portable kernels; fixed batch 1")
        if args.onnx:
            checked = "checked with onnx.checker; dynamic batch"
            if out.max_error is not None:
                checked += (f"; output equals PyTorch's within {out.max_error:.2g} "
                            f"({out.runtime}, batch of 2)")
            print(checked)
        elif out.max_error is not None:
            print(f"checked: output equals PyTorch's within {out.max_error:.2g} ({out.runtime}, "
                  "batch 1)")
        if args.quantize == "int8" and args.calibration and out.weights is not None:
            from nasscale.export import quantized_accuracy

            print(quantized_accuracy(out, args.network, args.weights, args.resolution,
                                     not args.no_normalise, bool(args.pte), args.calibration))
        return 0
