"""``testbed``: a real-photograph classification set that needs no download and does not saturate.

Each class is one photograph that scikit-image ships inside its wheel (``skimage.data``:
the astronaut, a brick wall, the cameraman, a microscope image of cells, a cat, coffee, coins, grass, gravel,
the Hubble deep field, an immunohistochemistry slide, the moon, a retina, a rocket, a
motorcycle and a text photograph).  A sample is a square crop of random position and size
(6–16 % of the photograph's shorter side), converted to grey (so colour is no shortcut),
resized to 32×32.  Nearly flat crops (grey-level std < 6) are redrawn.  Training crops come
from the left 75 % of each photograph and held-out crops from the right 25 %, so the held-out
split tests recognition of unseen parts of the scene, not memorised pixels.

Default size: 16 classes × (120 training + 40 held-out) images.  Everything is drawn from a
fixed seed: every machine makes the same arrays (checked by a test against a checksum).

Good for: ranking architectures by trained accuracy in minutes on a CPU, tests, and checking
that a search or pruning run is sensible.  Not a stand-in for ImageNet: 16 texture-like
classes at 32 px reward different things than 1,000 object classes at 224 px, so absolute
accuracies (and to some extent rankings) do not transfer.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from nasscale.errors import NasscaleError

PHOTOS = ("astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass",
          "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket",
          "motorcycle", "text")
SIZE = 32
TRAIN_PER_CLASS = 120
TEST_PER_CLASS = 40
CROP = (0.06, 0.16)  # crop side, as a fraction of the photograph's shorter side
SPLIT = 0.75  # training crops from the left 75 % of the width, held-out from the rest
MIN_STD = 6.0  # grey levels: flatter crops (sky, black borders) carry no class


def _photo(name: str) -> np.ndarray:
    from skimage import data

    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    img = np.asarray(img)
    if img.ndim == 3:  # RGB(A) -> grey, ITU-R 601 luma
        img = img[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return img.astype(np.float64)


def _crops(img: np.ndarray, n: int, x_range: tuple[int, int], rng: np.random.Generator):
    from PIL import Image

    h, w = img.shape
    short = min(h, w)
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n:  # a region with no texture: fail loudly, never loop for ever
            raise RuntimeError(f"testbed: too few textured crops in columns {x_range}")
        side = int(round(rng.uniform(*CROP) * short))
        side = max(16, min(side, x_range[1] - x_range[0], h))
        x0 = int(rng.integers(x_range[0], x_range[1] - side + 1))
        y0 = int(rng.integers(0, h - side + 1))
        patch = img[y0:y0 + side, x0:x0 + side]
        if patch.std() < MIN_STD:
            continue
        im = Image.fromarray(np.clip(patch, 0, 255).astype(np.uint8))
        out.append(np.asarray(im.resize((SIZE, SIZE), Image.BILINEAR), dtype=np.uint8))
    return out


@lru_cache(maxsize=2)
def testbed_arrays(seed: int = 0, train_per_class: int = TRAIN_PER_CLASS,
                   test_per_class: int = TEST_PER_CLASS):
    """(x_train, y_train, x_test, y_test) as uint8 (N, 32, 32) and int64 arrays."""
    try:
        import skimage  # noqa: F401
    except ImportError:
        raise NasscaleError("the 'testbed' dataset is made from scikit-image's bundled "
                            "photographs: pip install 'nasscale[testbed]'") from None
    rng = np.random.default_rng(seed)
    xs, ys, txs, tys = [], [], [], []
    for label, name in enumerate(PHOTOS):
        img = _photo(name)
        cut = int(img.shape[1] * SPLIT)
        xs += _crops(img, train_per_class, (0, cut), rng)
        txs += _crops(img, test_per_class, (cut, img.shape[1]), rng)
        ys += [label] * train_per_class
        tys += [label] * test_per_class
    return (np.stack(xs), np.array(ys, dtype=np.int64), np.stack(txs),
            np.array(tys, dtype=np.int64))
