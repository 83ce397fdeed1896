"""Where a data source is and what it is called: ``resolve_data`` (``testbed``,
``testbed-v2``, ``testbed-v3:train=N,test=M`` and ``digits`` are names; anything else is a
path, relative to the file that names it, so a bare folder name beside a study file is that
folder), ``data_label`` (the short name outputs show) and ``image_size`` (the side of its
images, read without loading it all).  No torch: studies are checked with these at load."""
from __future__ import annotations

import os
import re
from pathlib import Path

from nasscale.errors import SpecError

#: the image files an image folder holds
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: a testbed name: ``testbed``, ``testbed-vN``, with ``:train=N,test=M`` options
TESTBED = re.compile(r"testbed(?:-v(?P<version>[^:]*))?(?::(?P<options>.*))?")
#: the data sources that are names, not paths (as error messages list them)
DATA_NAMES = "testbed, testbed-v2, testbed-v3[:train=N,test=M], digits"


def is_data_name(text: str) -> bool:
    """``digits`` or a testbed name (``testbed``, ``testbed-vN``, with options)."""
    return text == "digits" or TESTBED.fullmatch(text) is not None


def resolve_data(value, study_path: str, where: str = "evaluator.data") -> str:
    """The data source of a study file: a name as written, else the path beside the study
    file (or, when only that one exists, from the working folder).  ``SpecError`` naming the
    path tried and the folder it was resolved against when it exists nowhere."""
    text = str(value)
    if is_data_name(text) or (os.path.isabs(text) and Path(text).exists()):
        return text
    if os.path.isabs(text):
        raise SpecError(f"{text}: no such file or folder; data is {DATA_NAMES}, an .npz "
                        "file or an image folder", (where,))
    folder = Path(study_path).parent if study_path else Path(".")
    beside = Path(os.path.normpath(folder / text))
    if beside.exists():
        return str(beside)
    if Path(text).exists():
        return text
    what = "the study file's folder" if study_path else "the working folder"
    raise SpecError(f"{text}: no such file or folder: tried {beside} (relative to "
                    f"{os.path.abspath(folder)}, {what}); data is {DATA_NAMES}, an .npz "
                    "file or an image folder", (where,))


def data_label(source: str) -> str:
    """What outputs call a data source: a name as it is, a path by its last part."""
    text = str(source)
    return text if is_data_name(text) else (Path(text.rstrip("/\\")).name or text)


def image_size(source: str) -> int | None:
    """The side of a data source's images (the larger side), read without loading it all;
    ``None`` when it cannot be read (loading it says why)."""
    text = str(source)
    if is_data_name(text):
        from nasscale.scoring.testbed import SIZE

        return 8 if text == "digits" else SIZE
    path = Path(text)
    try:
        if path.suffix == ".npz":
            import numpy as np

            with np.load(path, allow_pickle=False) as arrays:
                key = "x" if "x" in arrays.files else "x_train"
                return _side(arrays[key].shape)
        return _folder_image_size(path)
    except (OSError, ValueError, KeyError):
        return None


def _side(shape: tuple) -> int | None:
    """The larger side of images (N, H, W), (N, H, W, C) or (N, C, H, W)."""
    if len(shape) == 3:
        return max(shape[1:])
    if len(shape) == 4:
        return max(shape[2:]) if shape[1] in (1, 3) else max(shape[1:3])
    return None


def _folder_image_size(root: Path) -> int | None:
    from PIL import Image

    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(f) as im:
                    return max(im.size)
    return None


#: the smallest resolution trained at by default: the spaces' networks downsample 32 times, so
#: below 32 px their last stages see a single padded pixel (digits' 8 px images train at 32)
MIN_DEFAULT_RESOLUTION = 32


def default_resolution(image_size: int | None) -> int:
    """What a trained evaluator trains at when not told: the data's own image size, at least
    ``MIN_DEFAULT_RESOLUTION``."""
    return max(MIN_DEFAULT_RESOLUTION, int(image_size or 0))
