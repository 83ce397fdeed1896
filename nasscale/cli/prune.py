"""``nasscale prune``: NetAdapt width pruning to a target."""
from __future__ import annotations

import sys

import nasscale
from nasscale.cli.base import Command, add_format, print_json


class PruneCommand(Command):
    name = "prune"
    help = ("NetAdapt: prune a network's widths to a latency, FLOPs or params target, "
            "optionally carrying trained weights")

    def add_arguments(self, parser):
        from nasscale.latency import DEVICES, QUANTIZATIONS, RUNTIME_CHOICES
        from nasscale.pruning import EVALUATOR_HELP, TARGET_HELP

        parser.add_argument("network", help="architecture name or a network .yaml file")
        parser.add_argument("--target", required=True, metavar="METRIC=BOUND",
                            help="what to reach: " + TARGET_HELP.replace("%", "%%"))
        parser.add_argument("--device", choices=DEVICES, default="cpu",
                            help="where latency is measured (default: cpu)")
        parser.add_argument("--threads", type=int, default=1,
                            help="CPU threads for latency (default 1)")
        parser.add_argument("--runtime", choices=RUNTIME_CHOICES, default="eager",
                            help="what runs the network for latency: eager (default), compile, "
                            "or the exported file in onnxruntime, openvino or executorch")
        parser.add_argument("--quantize", choices=QUANTIZATIONS, default="none",
                            help="int8: time the statically quantised form (deployment "
                            "runtimes)")
        parser.add_argument("--lut", metavar="FILE",
                            help="latency lookup table to use and extend (default: "
                            "OUT/latency_table.json, built as pruning goes)")
        parser.add_argument("--evaluator", metavar="SPEC",
                            help=f"how proposals are scored: {EVALUATOR_HELP} (default: "
                            "proxy:naswot,resolution=0.5x,batch=16). train: NetAdapt's "
                            "short-term fine-tuning of every proposal (steps, default 50) and, "
                            "with --weights, long-term fine-tuning of the final network "
                            "(final_epochs, default 5) on device (default auto)"
                            .replace("%", "%%"))
        parser.add_argument("--weights", metavar="CKPT",
                            help="a `nasscale train -o` file or a state_dict of the network's "
                            "nasscale module: kept filters carry their weights, and "
                            "OUT/pruned.pt is written")
        parser.add_argument("--out", metavar="DIR",
                            help="output folder (default: runs/prune_<network>_<metric>)")
        parser.add_argument("--step", type=float, default=0.025,
                            help="first iteration's resource reduction, a fraction of the "
                            "start's (default 0.025)")
        parser.add_argument("--decay", type=float, default=0.96,
                            help="the step is multiplied by this every iteration (default 0.96)")
        parser.add_argument("--max-iterations", type=int, default=200)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--resume", action="store_true",
                            help="go on from the last finished iteration of an interrupted run "
                            "in --out (same command otherwise)")
        parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
        add_format(parser, ("table", "json", "yaml"))

    def run(self, args):
        from nasscale.cli.base import _integer
        from nasscale.latency import available_cores
        from nasscale.pruning import Options, PruneRequest, result_record, result_text, run_prune

        _integer("--threads", args.threads, 1, available_cores(), "this machine's cores")
        _integer("--max-iterations", args.max_iterations, 1, 100_000)
        _integer("--seed", args.seed, 0, 2 ** 32 - 1)
        req = PruneRequest(network=args.network, target=args.target, device=args.device,
                           threads=args.threads, lut=args.lut, runtime=args.runtime,
                           quantize=args.quantize, evaluator=args.evaluator,
                           weights=args.weights, out=args.out, seed=args.seed,
                           options=Options(args.step, args.decay, args.max_iterations),
                           verbose=not args.quiet, resume=args.resume)
        result, out = run_prune(req)
        if args.format == "json":
            print_json(result_record(result, out))
        elif args.format == "yaml":
            sys.stdout.write(nasscale.dump_network(result.final))
        else:
            print(result_text(result, out))
        return 0
