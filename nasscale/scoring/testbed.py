"""``testbed``: a real-photograph classification set that needs no download and does not saturate.

Each class is one photograph that scikit-image ships inside its wheel (``skimage.data``:
the astronaut, a brick wall, the cameraman, a microscope image of cells, a cat, coffee, coins, grass, gravel,
the Hubble deep field, an immunohistochemistry slide, the moon, a retina, a rocket, a
motorcycle and a text photograph).  A sample is a square crop of random position and size
(6–16 % of the photograph's shorter side), converted to grey (so colour is no shortcut),
resized to 32×32.  Nearly flat crops (grey-level std < 6) are redrawn.

The split is by region, interleaved: each photograph is cut into square tiles (a fifth of its
shorter side), about one tile in four is held out (every other tile of every other row), and a
crop lies inside one tile (see ``tiles``).  So no held-out crop shares a pixel with a training
crop (the held-out split tests recognition of unseen parts of the scene, not memorised
pixels), yet held-out tiles are spread over the whole scene.  Version 1 held out the right
quarter of each photograph instead: a shift of scene content that made a network's held-out
accuracy swing by 5 points (up to 9) between two training seeds, more than half the spread
between networks, so nothing could be ranked against it; the interleaved split brings that to
about 1 point (``benchmarks/fidelity.py`` measures it).

Default size: 16 classes × (120 training + 100 held-out) images.  Everything is drawn from a
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
TEST_PER_CLASS = 100
CROP = (0.06, 0.16)  # crop side, as a fraction of the photograph's shorter side
TILE = 0.2  # tile side, as a fraction of the shorter side (>= the largest crop)
MIN_STD = 6.0  # grey levels: flatter crops (sky, black borders) carry no class
VERSION = 2  # of the images: bumped whenever a change makes other arrays


def _photo(name: str) -> np.ndarray:
    from skimage import data

    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    img = np.asarray(img)
    if img.ndim == 3:  # RGB(A) -> grey, ITU-R 601 luma
        img = img[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return img.astype(np.float64)


def tiles(shape: tuple[int, int]) -> tuple[list, list]:
    """``(training, held_out)`` tiles ``(y0, x0, side)`` of a photograph: a grid of squares of
    ``TILE`` × its shorter side; tile (row r, column c) is held out when (r + 2c) % 4 == 0:
    every other tile of every other row, shifted by one from one such row to the next — about
    a quarter of them, spread over the whole scene."""
    h, w = shape
    side = int(TILE * min(h, w))
    train, held = [], []
    for r in range(h // side):
        for c in range(w // side):
            (held if (r + 2 * c) % 4 == 0 else train).append((r * side, c * side, side))
    return train, held


def _crops(img: np.ndarray, n: int, where: list, rng: np.random.Generator):
    """``n`` textured crops, each inside one tile of ``where`` (drawn uniformly)."""
    from PIL import Image

    short = min(img.shape)
    out, tries = [], 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n:  # a region with no texture: fail loudly, never loop for ever
            raise RuntimeError(f"testbed: too few textured crops in tiles {where[:3]}...")
        ty, tx, tile = where[int(rng.integers(len(where)))]
        side = max(16, min(int(round(rng.uniform(*CROP) * short)), tile))
        x0 = int(rng.integers(tx, tx + tile - side + 1))
        y0 = int(rng.integers(ty, ty + tile - side + 1))
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
        train_tiles, held_tiles = tiles(img.shape)
        xs += _crops(img, train_per_class, train_tiles, rng)
        txs += _crops(img, test_per_class, held_tiles, rng)
        ys += [label] * train_per_class
        tys += [label] * test_per_class
    return (np.stack(xs), np.array(ys, dtype=np.int64), np.stack(txs),
            np.array(tys, dtype=np.int64))
