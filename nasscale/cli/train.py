"""``nasscale train``: train a network on a dataset."""
from __future__ import annotations

import argparse

from nasscale.cli.base import Command, add_format, print_json
from nasscale.errors import NasscaleError


class TrainCommand(Command):
    name = "train"
    help = ("train a network (zoo name or YAML) on a dataset on this machine's CPU or GPU; "
            "prints and writes held-out top-1")

    def add_arguments(self, parser):
        from nasscale.scoring import AMP, DEVICES

        parser.add_argument("network", help="architecture name or a network .yaml file "
                            "(e.g. a search's best.yaml)")
        parser.add_argument("--data", default="testbed",
                            help="testbed (default; testbed-v2, testbed-v3), digits, an .npz "
                            "file or an image folder with one subfolder per class")
        parser.add_argument("--epochs", type=int,
                            help="default: the testbed's recipe (8), else 3")
        parser.add_argument("--device", default="auto", metavar="|".join(DEVICES),
                            help="auto (default) takes CUDA when present; cuda:N for one GPU")
        parser.add_argument("--amp", choices=AMP, default="none",
                            help="mixed precision (fp16 needs CUDA; default none)")
        parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                            help="channels-last memory format (default on: twice the images/s "
                            "on a CPU)")
        parser.add_argument("--batch-size", type=int,
                            help="default: the testbed's recipe (128), else 32")
        parser.add_argument("--lr", type=float, help="default: the testbed's recipe (0.05), "
                            "else 0.05")
        parser.add_argument("--weight-decay", type=float)
        parser.add_argument("--warmup", type=float,
                            help="linear warm-up over this fraction of the steps (testbed: 0.05)")
        parser.add_argument("--ema", type=float, metavar="DECAY",
                            help="evaluate and keep an exponential moving average of the "
                            "weights with this decay per step (testbed: 0.995)")
        parser.add_argument("--no-ema", action="store_true", help="evaluate the last weights")
        parser.add_argument("--resolution", type=int,
                            help="training and evaluation size in pixels (default: the "
                            "network's own; a search's best.yaml carries the resolution it "
                            "was scored at; a warning says when the data's images differ)")
        parser.add_argument("--progressive", action="store_true",
                            help="EfficientNetV2 progressive learning: the image size and "
                            "regularisation grow over up to 4 stages")
        parser.add_argument("--no-augment", action="store_true",
                            help="no random resized crop, flip or centre crop")
        parser.add_argument("--subset", type=int, help="cap on training images")
        parser.add_argument("--val-fraction", type=float, default=0.2,
                            help="held-out share when the data has no test split (default 0.2)")
        parser.add_argument("--image-size", type=int,
                            help="resize an image folder's images to this size on load")
        parser.add_argument("--weights", metavar="FILE",
                            help="start from these weights (a nasscale weights file or "
                            "state_dict) instead of a seeded initialisation")
        parser.add_argument("--threads", type=int, help="CPU threads (default: the cores other "
                            "processes leave idle, said on stderr when fewer than all)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("-o", "--out", metavar="OUT.pt",
                            help="weights file (default runs/train_<network>_<data>/model.pt); "
                            "OUT.json gets the result, OUT.ckpt the resumable checkpoint")
        parser.add_argument("--resume", action="store_true",
                            help="continue OUT.ckpt of an interrupted run with the same settings")
        parser.add_argument("--quiet", action="store_true", help="no progress bar")
        add_format(parser, ("table", "json"))

    def run(self, args):
        from nasscale.cli.base import _integer
        from nasscale.scoring import MAX_TRAIN_RESOLUTION, TrainJob, record_text, run_train_job

        _integer("--resolution", args.resolution, 8, MAX_TRAIN_RESOLUTION)
        _integer("--image-size", args.image_size, 8, MAX_TRAIN_RESOLUTION)
        _integer("--subset", args.subset, 1, 10 ** 9)
        from pathlib import Path

        if args.image_size is not None and not Path(args.data).is_dir():
            raise NasscaleError(f"--image-size: resizes an image folder's images on load; "
                                f"--data {args.data} is not a folder (use --resolution)")
        from dataclasses import replace

        from nasscale.scoring import recipe_for

        given = {k: v for k, v in (
            ("epochs", args.epochs), ("batch_size", args.batch_size), ("lr", args.lr),
            ("weight_decay", args.weight_decay), ("threads", args.threads),
            ("channels_last", args.channels_last), ("warmup", args.warmup),
            ("ema", args.ema)) if v is not None}
        if args.no_ema:
            given["ema"] = None
        settings = replace(recipe_for(args.data), **given, subset=args.subset,
                           val_fraction=args.val_fraction, seed=args.seed, device=args.device,
                           amp=args.amp, augment=not args.no_augment,
                           progressive=args.progressive)
        try:
            settings.check()
        except NasscaleError as err:
            raise NasscaleError(f"--{str(err).replace('_', '-')}") from None
        record = run_train_job(TrainJob(network=args.network, data=args.data, settings=settings,
                                        out=args.out, resume=args.resume, weights=args.weights,
                                        image_size=args.image_size, progress=not args.quiet,
                                        resolution=args.resolution))
        print_json(record) if args.format == "json" else print(record_text(record))
        return 0
