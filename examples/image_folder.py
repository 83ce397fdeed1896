"""Write an image folder to try nasscale on "your own images": one subfolder per class, PNG files.

    python examples/image_folder.py my_photos [--classes 6] [--per-class 100] [--size 48]

The images are crops of the testbed's real photographs (scikit-image's and scikit-learn's, no
download; the ``testbed`` extra): class k is photograph k, grey, resized to ``--size`` pixels.
Any folder laid out the same way (torchvision's ``ImageFolder``) works the same.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from nasscale.scoring.testbed import PHOTOS_V3, v3_class


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--classes", type=int, default=6, help=f"1 .. {len(PHOTOS_V3)}")
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--size", type=int, default=48)
    args = p.parse_args(argv)
    if not 2 <= args.classes <= len(PHOTOS_V3) or args.per_class < 2 or args.size < 8:
        p.error(f"--classes 2..{len(PHOTOS_V3)}, --per-class >= 2 and --size >= 8")
    out = Path(args.out)
    for label in range(args.classes):
        crops, _ = v3_class(label, args.per_class, 1)
        folder = out / PHOTOS_V3[label]
        folder.mkdir(parents=True, exist_ok=True)
        for i, crop in enumerate(crops):
            img = Image.fromarray(np.asarray(crop, dtype=np.uint8)).convert("RGB")
            img.resize((args.size, args.size), Image.BILINEAR).save(folder / f"{i:04d}.png")
    print(f"wrote {args.classes * args.per_class} images of {args.size}x{args.size} px in "
          f"{args.classes} class folders under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
