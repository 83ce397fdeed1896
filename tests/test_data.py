"""Datasets for short training and proxies: npz, image folders, digits; clear errors."""
import numpy as np
import pytest
import torch

import nasscale
from nasscale.scoring.data import load_dataset
from nasscale.scoring.train import TrainSettings, train_and_evaluate


def test_npz_with_and_without_test_split(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(40, 12, 12), dtype=np.uint8)
    y = np.arange(40) % 4
    np.savez(tmp_path / "a.npz", x=x, y=y)
    d = load_dataset(str(tmp_path / "a.npz"))
    assert d.x.shape == (40, 3, 12, 12) and d.num_classes == 4
    assert abs(float(d.x.mean())) < 1e-4  # normalised
    tx, ty, vx, vy = d.split(0.25, seed=0)
    assert len(ty) == 30 and len(vy) == 10
    np.savez(tmp_path / "b.npz", x_train=x[:30, ..., None], y_train=y[:30],
             x_test=x[30:, ..., None], y_test=y[30:])
    d = load_dataset(str(tmp_path / "b.npz"))
    assert len(d.split(0.5, seed=0, subset=10)[1]) == 10 and len(d.test_y) == 10


def test_image_folder(tmp_path):
    from PIL import Image

    for label, color in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / label).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 16), color).save(tmp_path / label / f"{i}.png")
    d = load_dataset(str(tmp_path))
    assert d.classes == ("cat", "dog") and d.x.shape == (6, 3, 16, 20)
    assert d.y.tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("make, message", [
    (lambda p: np.savez(p / "bad.npz", images=np.zeros((2, 4, 4))), "needs arrays x and y"),
    (lambda p: np.savez(p / "bad.npz", x=np.zeros((2, 4)), y=np.zeros(2, int)), "images must be"),
    (lambda p: np.savez(p / "bad.npz", x=np.zeros((2, 4, 4)), y=np.zeros(3, int)),
     "2 images in x but 3 labels in y"),
])
def test_bad_npz(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(nasscale.NasscaleError, match=message):
        load_dataset(str(tmp_path / "bad.npz"))


def test_unknown_source():
    with pytest.raises(nasscale.NasscaleError,
                       match="not testbed, testbed-v2, testbed-v3, digits, an existing .npz"):
        load_dataset("nowhere/at/all")


def test_short_training_on_digits_learns():
    data = load_dataset("digits")
    assert data.x.shape == (1797, 3, 8, 8) and data.num_classes == 10
    spec = nasscale.load("mobilenet_v3_small").replace(num_classes=10, resolution=32)
    torch.manual_seed(0)
    acc = train_and_evaluate(nasscale.build(spec), data,
                             TrainSettings(epochs=3, subset=1000, resolution=32, seed=0,
                                           augment=False))  # flips and crops break digits
    assert acc > 0.6  # chance is 0.1; 3 short epochs reach about 0.94 here
