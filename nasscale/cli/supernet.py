"""``nasscale supernet train|extract``: train a weight-sharing supernet of a search space, and
cut a subnetwork's weights out of it."""
from __future__ import annotations

import argparse

from nasscale.cli.base import Command, _integer, add_format, print_json
from nasscale.errors import NasscaleError


class SupernetCommand(Command):
    name = "supernet"
    help = ("train a search space's supernet once (every subnetwork good at once), then "
            "extract any subnetwork's weights")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        train = sub.add_parser("train", help="train the supernet of SPACE (torchrun runs it "
                               "on several processes or GPUs)")
        self._train_arguments(train)
        extract = sub.add_parser("extract", help="a subnetwork's weights, BatchNorm "
                                 "recalibrated, as a file nasscale train/prune/export read")
        extract.add_argument("supernet", metavar="SUPERNET.pt")
        extract.add_argument("network", metavar="NETWORK.yaml",
                             help="a network of the supernet's space (a search's best.yaml)")
        extract.add_argument("-o", "--out", required=True, metavar="OUT.pt")
        extract.add_argument("--data", help="the data the supernet trained on, when its "
                             "recorded path has moved")
        extract.add_argument("--calibration-batches", type=int, default=20)
        extract.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
        add_format(extract, ("table", "json"))

    @staticmethod
    def _train_arguments(p):
        from nasscale.scoring import AMP, DEVICES

        p.add_argument("space", help="a search space name or .yaml (no MobileViT "
                       "attention tails)")
        p.add_argument("--data", default="testbed",
                       help="testbed (default), digits, an .npz file or an image folder")
        p.add_argument("-o", "--out", metavar="OUT.pt", help="the supernet file (default "
                       "runs/supernet_<space>/supernet.pt); OUT.json the record, OUT.ckpt the "
                       "resumable checkpoint")
        p.add_argument("--epochs", type=int, help="default: the data's recipe (testbed 2)")
        p.add_argument("--batch-size", type=int, help="global batch (default: the recipe's)")
        p.add_argument("--lr", type=float, help="default: the recipe's")
        p.add_argument("--weight-decay", type=float)
        p.add_argument("--warmup", type=float, help="warm-up fraction of the steps")
        p.add_argument("--resolution", type=int, help="pixels (default: the data's image "
                       "size, at least 32)")
        p.add_argument("--subnets-per-step", type=int, default=4, metavar="K",
                       help="sandwich rule: largest, smallest and K-2 random (default 4)")
        p.add_argument("--distill", action=argparse.BooleanOptionalAction, default=True,
                       help="in-place distillation from the largest (default on)")
        p.add_argument("--probes", type=int, default=3,
                       help="random subnetworks scored every epoch (default 3)")
        p.add_argument("--calibration-batches", type=int, default=20)
        p.add_argument("--accumulate", type=int, default=1,
                       help="micro-batches per step (reproduces N ranks in one process)")
        p.add_argument("--init", metavar="WEIGHTS", help="start from trained weights of a "
                       "network the space contains (nasscale, torchvision or timm)")
        p.add_argument("--init-network", metavar="NAME",
                       help="the network of torchvision/timm --init weights (default: the "
                       "space's published network they fit)")
        p.add_argument("--device", default="auto", metavar="|".join(DEVICES))
        p.add_argument("--amp", choices=AMP, default="none")
        p.add_argument("--channels-last", action=argparse.BooleanOptionalAction)
        p.add_argument("--val-fraction", type=float, default=0.2)
        p.add_argument("--subset", type=int, help="cap on training images")
        p.add_argument("--threads", type=int)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--resume", action="store_true",
                       help="continue OUT.ckpt of an interrupted run with the same settings")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        add_format(p, ("table", "json"))

    def run(self, args):
        return self._train(args) if args.action == "train" else self._extract(args)

    def _train(self, args):
        from dataclasses import replace

        from nasscale.scoring import recipe_for
        from nasscale.search import load_space
        from nasscale.supernet import SupernetSettings, TrainJob, run_train_job, train_text

        _integer("--resolution", args.resolution, 8, 4096)
        _integer("--subset", args.subset, 2, 10 ** 9)
        space = load_space(args.space)
        given = {k: v for k, v in (
            ("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
            ("weight_decay", args.weight_decay), ("threads", args.threads),
            ("channels_last", args.channels_last), ("warmup", args.warmup)) if v is not None}
        train = replace(recipe_for(args.data), **given, subset=args.subset, ema=None,
                        val_fraction=args.val_fraction, seed=args.seed, device=args.device,
                        amp=args.amp)
        settings = SupernetSettings(train, args.subnets_per_step, args.distill, args.probes,
                                    args.calibration_batches, args.accumulate)
        try:
            settings.check()
        except NasscaleError as err:
            raise NasscaleError(f"--{str(err).replace('_', '-')}") from None
        record = run_train_job(TrainJob(space, args.data, settings, args.out, args.init,
                                        args.init_network, args.resume, not args.quiet,
                                        args.resolution, args.space))
        print_json(record) if args.format == "json" else print(train_text(record))
        return 0

    def _extract(self, args):
        from nasscale.search import load_space
        from nasscale.supernet import extract_job, extract_text, space_of

        _integer("--calibration-batches", args.calibration_batches, 1, 10_000)
        space = load_space(space_of(args.supernet))
        record = extract_job(args.supernet, space, args.network, args.out, args.data,
                             args.calibration_batches, args.device)
        print_json(record) if args.format == "json" else print(extract_text(record))
        return 0
