"""Image-classification data for short training and for proxies, with no download.

Sources (``load_dataset(source)``):

- ``testbed``: 32×32 grey crops of 19 real photographs that scikit-image and scikit-learn
  ship, one class per photograph (28,500 training and 9,500 held-out images; the ``testbed``
  extra installs both).  Does not saturate, and two training seeds rank networks alike (see
  ``nasscale.scoring.testbed``).  ``testbed-v2`` is the earlier 16-class version (1,920 and
  1,600 images); ``testbed-v3:train=N,test=M`` changes the crops per class.  No network access.
- ``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes; the
  ``demo`` extra installs scikit-learn).  It saturates (93–99 % after short training), so it
  cannot rank networks; it stays for quick demos.
- ``path/to/data.npz``: arrays ``x`` and ``y`` (or ``x_train``/``y_train`` and
  ``x_test``/``y_test``, used as the held-out split).  ``x`` is (N, H, W), (N, H, W, C) or
  (N, C, H, W), uint8 (0–255) or float.
- ``path/to/folder``: one subfolder per class holding images (png, jpg, bmp, ...), read with
  Pillow, as torchvision's ``ImageFolder`` lays them out.  All images must have one size
  (resize them first, or pass ``size`` to resize on load); a class without images, an
  unreadable file or a single class is an error naming it.

Images become float tensors (N, 3, H, W) normalised per channel; grey images are repeated to 3
channels.  ``Dataset.at(resolution)`` resizes (bilinear) to the training resolution.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nasscale.errors import NasscaleError
from nasscale.scoring.data_source import (  # noqa: F401  (part of this module's API)
    IMAGE_SUFFIXES,
    MIN_DEFAULT_RESOLUTION,
    TESTBED,
    default_resolution,
)


@dataclass(frozen=True)
class Dataset:
    x: torch.Tensor  # (N, 3, H, W) float32, normalised
    y: torch.Tensor  # (N,) int64
    classes: tuple[str, ...]
    name: str
    test_x: torch.Tensor | None = None  # a given held-out split, if the source has one
    test_y: torch.Tensor | None = None
    #: per-channel mean and std subtracted and divided on load, in pixel values scaled to
    #: [0, 1]: a deployed network applies the same to its input (``nasscale export``)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    scale: str = "pixels / 255"  # what the mean and std apply to

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the images as loaded."""
        return int(self.x.shape[-2]), int(self.x.shape[-1])

    @property
    def normalisation(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "scale": self.scale}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, val_fraction: float, seed: int, subset: int | None = None):
        """(train_x, train_y, val_x, val_y): the source's own test split if it has one, else a
        seeded stratified-by-shuffle split; ``subset`` caps the training examples."""
        g = torch.Generator().manual_seed(seed)
        if self.test_x is not None:
            tx, ty, vx, vy = self.x, self.y, self.test_x, self.test_y
        else:
            order = torch.randperm(len(self.y), generator=g)
            n_val = max(1, int(round(len(order) * val_fraction)))
            tx, ty = self.x[order[n_val:]], self.y[order[n_val:]]
            vx, vy = self.x[order[:n_val]], self.y[order[:n_val]]
        if subset is not None and subset < len(ty):
            keep = torch.randperm(len(ty), generator=g)[:subset]
            tx, ty = tx[keep], ty[keep]
        return tx, ty, vx, vy


def resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)


def _to_nchw(x: np.ndarray, where: str) -> torch.Tensor:
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise NasscaleError(f"{where}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W) "
                            f"with C in 1, 3; got shape {tuple(np.shape(x))}")
    t = torch.as_tensor(x.astype(np.float32))
    if np.issubdtype(np.asarray(x).dtype, np.integer):
        t = t / 255.0
    if t.shape[1] == 1:
        t = t.repeat(1, 3, 1, 1)
    return t


def _normalise(*tensors: torch.Tensor) -> tuple[list[torch.Tensor], dict]:
    """The tensors standardised by the first one's per-channel statistics, and those
    statistics (``Dataset`` fields ``mean`` and ``std``)."""
    ref = tensors[0]
    mean = ref.mean(dim=(0, 2, 3), keepdim=True)
    std = ref.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    stats = {"mean": tuple(float(v) for v in mean.flatten()),
             "std": tuple(float(v) for v in std.flatten())}
    return [(t - mean) / std for t in tensors], stats


def _labels(y: np.ndarray, where: str) -> torch.Tensor:
    y = np.asarray(y).reshape(-1)
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise NasscaleError(f"{where}: labels must be non-negative integers")
    if int(y.max()) >= MAX_CLASSES:
        raise NasscaleError(f"{where}: labels must be class numbers 0 .. K-1 with K at most "
                            f"{MAX_CLASSES:,}; the largest is {int(y.max()):,}")
    return torch.as_tensor(y.astype(np.int64))


def digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise NasscaleError("the 'digits' dataset needs scikit-learn: pip install "
                            "'nasscale[demo]'") from None
    d = load_digits()
    x = _to_nchw(d.images / 16.0, "digits")
    (x,), stats = _normalise(x)
    return Dataset(x=x, y=torch.as_tensor(d.target, dtype=torch.int64),
                   classes=tuple(str(c) for c in range(10)), name="digits", scale="pixels / 16",
                   **stats)


#: at most this many classes (a label of 10**9 would size a classifier of 10**9 rows)
MAX_CLASSES = 100_000
#: at most this many pixels an image (Pillow's decompression-bomb bound is twice this)
MAX_PIXELS = 89_478_485


def _array(arrays, key: str, path: Path) -> np.ndarray:
    """One array of an ``.npz`` file: numeric, not empty, or an error naming it."""
    try:
        a = arrays[key]
    except (ValueError, OSError) as err:  # object arrays (pickles) are refused, not loaded
        raise NasscaleError(f"{path}: array {key!r} cannot be read without executing code or "
                            f"is damaged ({str(err).splitlines()[0][:120]}); save numeric "
                            "arrays") from None
    if a.dtype.kind not in "biuf":
        raise NasscaleError(f"{path}: array {key!r} must hold numbers (integers or floats), "
                            f"has dtype {a.dtype}")
    if a.size == 0 or len(a) == 0:
        raise NasscaleError(f"{path}: array {key!r} is empty (shape {a.shape})")
    bad = int((~np.isfinite(a)).sum()) if a.dtype.kind == "f" else 0
    if bad:
        raise NasscaleError(f"{path}: array {key!r}: {bad} value(s) are NaN or infinite; "
                            "clean the data first")
    return a


def from_npz(path: Path) -> Dataset:
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise NasscaleError(f"{path}: cannot read as .npz: {err}") from None
    if not hasattr(arrays, "files"):
        raise NasscaleError(f"{path}: is a single .npy array, not an .npz archive of arrays "
                            "x and y")
    keys = set(arrays.files)
    if {"x", "y"} <= keys:
        pairs = (("x", "y"),)
    elif {"x_train", "y_train", "x_test", "y_test"} <= keys:
        pairs = (("x_train", "y_train"), ("x_test", "y_test"))
    else:
        raise NasscaleError(f"{path}: needs arrays x and y, or x_train, y_train, x_test, "
                            f"y_test; has {', '.join(sorted(keys)) or 'none'}")
    xs, ys = [], []
    for kx, ky in pairs:
        x, y = _array(arrays, kx, path), _array(arrays, ky, path)
        if len(x) != len(np.asarray(y).reshape(-1)):
            raise NasscaleError(f"{path}: {len(x)} images in {kx} but "
                                f"{np.asarray(y).size} labels in {ky}")
        xs.append(_to_nchw(x, f"{path}: {kx}"))
        ys.append(_labels(y, f"{path}: {ky}"))
    if len(xs) == 2 and xs[0].shape[1:] != xs[1].shape[1:]:
        raise NasscaleError(f"{path}: x_train images are {tuple(xs[0].shape[1:])} but x_test "
                            f"images {tuple(xs[1].shape[1:])}; give both one shape")
    normalised, stats = _normalise(*xs)
    n = int(max(int(y.max()) for y in ys)) + 1
    first = arrays[pairs[0][0]]
    stats["scale"] = "pixels / 255" if np.issubdtype(first.dtype, np.integer) else "as stored"
    tx, ty = (normalised[1], ys[1]) if len(xs) == 2 else (None, None)
    return Dataset(x=normalised[0], y=ys[0], classes=tuple(map(str, range(n))), name=path.name,
                   test_x=tx, test_y=ty, **stats)


def from_folder(root: Path, size: int | None = None) -> Dataset:
    """Class-per-subfolder images (Pillow), at their own size or resized to ``size``."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise NasscaleError("reading image folders needs Pillow: pip install pillow") from None
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise NasscaleError(f"data {root}: needs one subfolder per class (at least 2), found "
                            f"{len(classes)}{': ' + classes[0] if classes else ''}")
    xs, ys, sizes = [], [], {}
    for label, name in enumerate(classes):
        files = [f for f in sorted((root / name).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise NasscaleError(f"data {root}: class folder {name!r} has no images "
                                f"({', '.join(IMAGE_SUFFIXES)})")
        for f in files:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    im = Image.open(f)
                if im.width * im.height > MAX_PIXELS:
                    raise Image.DecompressionBombError(f"{im.width}x{im.height}")
                with im:
                    im = im.convert("RGB")
                    if size is not None:
                        im = im.resize((size, size), Image.BILINEAR)
                    xs.append(np.asarray(im, dtype=np.uint8))
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                raise NasscaleError(f"data {f}: too many pixels to be a training image (more "
                                    f"than {MAX_PIXELS:,}; a decompression bomb?): "
                                    f"{str(err)[:80]}") from None
            except (OSError, UnidentifiedImageError, ValueError) as err:
                raise NasscaleError(f"data {f}: cannot read as an image ({err})") from None
            sizes.setdefault(xs[-1].shape[:2], []).append(f)
            ys.append(label)
    if len(sizes) > 1:
        common = max(sizes, key=lambda k: len(sizes[k]))
        odd = next(f for k, fs in sizes.items() if k != common for f in fs)
        shapes = ", ".join(f"{w}x{h}: {len(fs)}" for (h, w), fs in sorted(sizes.items()))
        raise NasscaleError(f"data {root}: images have mixed sizes ({shapes}; e.g. "
                            f"{odd.relative_to(root)}); resize them to one size first, or give "
                            "an image size to resize on load (nasscale train --image-size N)")
    (x,), stats = _normalise(_to_nchw(np.stack(xs), str(root)))
    return Dataset(x=x, y=torch.as_tensor(ys, dtype=torch.int64), classes=tuple(classes),
                   name=root.name, **stats)




def testbed_version(source: str):
    """The ``TestbedVersion`` a data source names (``testbed`` is the newest), ``None`` when
    it names no testbed; an error naming the versions when the version does not exist."""
    from nasscale.scoring.testbed import DEFAULT_VERSION, VERSIONS

    m = TESTBED.fullmatch(str(source))
    if m is None:
        return None
    version = m["version"]
    if version is not None and (not version.isdigit() or int(version) not in VERSIONS):
        names = ", ".join(v.name for v in VERSIONS.values())
        raise NasscaleError(f"data {source}: testbed version {version!r} does not exist; "
                            f"choose testbed ({VERSIONS[DEFAULT_VERSION].name}) or one of {names}")
    return VERSIONS[int(version) if version is not None else DEFAULT_VERSION]


def testbed(source: str = "testbed") -> Dataset:
    """The bundled testbed: ``testbed`` (the newest version), ``testbed-vN``, and optionally
    ``:train=N,test=M`` crops per class (``nasscale.scoring.testbed``)."""
    bed = testbed_version(source)
    if bed is None:
        raise NasscaleError(f"data: {source!r} is not a testbed name (testbed, testbed-vN)")
    m = TESTBED.fullmatch(source)
    sizes: dict[str, int] = {}
    for item in filter(None, (m["options"] or "").split(",")):
        key, _, value = item.partition("=")
        key = key.strip()
        if key not in ("train", "test"):
            raise NasscaleError(f"data {source}: unknown testbed option {key!r}; allowed: "
                                "train=N, test=N (crops per class)")
        try:
            sizes[key] = int(value)
        except ValueError:
            raise NasscaleError(f"data {source}: {key} must be an integer >= 1 (crops per "
                                f"class), got {value.strip()!r}") from None
    x, y, tx, ty = bed.arrays(sizes.get("train"), sizes.get("test"))
    (x, tx), stats = _normalise(_to_nchw(x, bed.name), _to_nchw(tx, bed.name))
    label = bed.name + "".join(f"{':' if i == 0 else ','}{k}={v}"
                               for i, (k, v) in enumerate(sizes.items()))
    return Dataset(x=x, y=torch.as_tensor(y), classes=bed.photos, name=label,
                   test_x=tx, test_y=torch.as_tensor(ty), **stats)


SOURCES = ("testbed", "testbed-v2", "testbed-v3", "digits")


def _checked(d: Dataset) -> Dataset:
    present = torch.unique(d.y).numel()
    if present < 2:
        raise NasscaleError(f"data {d.name}: needs images of at least 2 classes, found {present}")
    return d


def load_dataset(source: str, size: int | None = None) -> Dataset:
    """A dataset by source: ``testbed``, ``digits``, an ``.npz`` file or an image folder
    (``size``: resize a folder's images on load)."""
    source = str(source)
    if source == "digits":
        return digits()
    if TESTBED.fullmatch(source):
        return testbed(source)
    path = Path(source)
    if path.suffix == ".npz":
        if not path.exists():
            raise NasscaleError(f"{path}: no such file")
        return _checked(from_npz(path))
    if path.is_dir():
        return _checked(from_folder(path, size))
    raise NasscaleError(f"data: {source!r} is not {', '.join(SOURCES)}, an existing .npz file or "
                        "a folder with one subfolder per class")
