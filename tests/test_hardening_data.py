"""Bad data and weights files get one line naming the file and what is wrong, exit 2: never a
traceback, a MemoryError, or a message that blames the learning rate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nasscale.cli import main
from nasscale.errors import NasscaleError
from nasscale.scoring.data import load_dataset

TINY = str(Path(__file__).parent / "support" / "tiny_net.yaml")
GOOD_X = np.zeros((6, 8, 8), np.uint8)
GOOD_Y = np.arange(6) % 3


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.array([object()] * 6, dtype=object), "y": GOOD_Y},
     "array 'x' cannot be read without executing code"),
    ({"x": np.zeros((0, 8, 8)), "y": np.zeros(0, np.int64)}, "array 'x' is empty"),
    ({"x": GOOD_X, "y": np.arange(5)}, "6 images in x but 5 labels in y"),
    ({"x": np.array(["a"] * 6), "y": GOOD_Y}, "array 'x' must hold numbers"),
    ({"x": GOOD_X, "y": np.array([0, 1, 2, 0, 1, 10 ** 9])},
     "labels must be class numbers 0 .. K-1 with K at most 100,000"),
    ({"x": np.full((6, 8, 8), np.nan, np.float32), "y": GOOD_Y},
     "array 'x': 384 value(s) are NaN or infinite"),
    ({"x_train": GOOD_X, "y_train": GOOD_Y, "x_test": np.zeros((3, 9, 9), np.uint8),
      "y_test": np.arange(3)}, "x_train images are (3, 8, 8) but x_test images (3, 9, 9)"),
    ({"x_train": GOOD_X, "y_train": GOOD_Y, "x_test": GOOD_X[:3], "y_test": np.arange(4)},
     "3 images in x_test but 4 labels in y_test"),
    ({"images": GOOD_X}, "needs arrays x and y"),
])
def test_bad_npz_files(tmp_path, arrays, message):
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(NasscaleError) as err:
        load_dataset(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, capsys):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "photos" / name / "0.png")
    Image.new("1", (12_000, 12_000)).save(tmp_path / "photos" / "a" / "bomb.png")  # 18 kB
    assert main(["train", TINY, "--data", str(tmp_path / "photos"), "--quiet", "-o",
                 str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "bomb.png: too many pixels to be a training image" in err
    assert len(err.strip().splitlines()) == 1


def test_weights_with_odd_keys_or_nan_are_refused(tmp_path, capsys):
    import nasscale

    spec = nasscale.load(TINY)
    state = nasscale.build(spec).state_dict()
    odd = tmp_path / "odd.pt"
    torch.save({1: torch.zeros(2), **state}, odd)
    nan = tmp_path / "nan.pt"
    first = next(k for k, v in state.items() if v.is_floating_point())
    torch.save({**state, first: torch.full_like(state[first], float("nan"))}, nan)
    npz = tmp_path / "d.npz"
    np.savez(npz, x=np.zeros((6, 16, 16), np.uint8), y=GOOD_Y)
    for path, message in ((odd, "has the key 1 (int)"), (nan, f"tensor {first} holds NaN")):
        assert main(["train", TINY, "--data", str(npz), "--weights", str(path), "--quiet",
                     "-o", str(tmp_path / "m.pt")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_the_python_evaluator_imports_from_the_current_folder(tmp_path, monkeypatch):
    from nasscale.scoring.evaluators import load_callable

    (tmp_path / "my_score_mod.py").write_text("def score(model, spec):\n    return 1.0\n")
    (tmp_path / "broken_mod.py").write_text("raise KeyError('oops')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", ".")])
    assert load_callable("python:my_score_mod:score")(None, None) == 1.0
    with pytest.raises(NasscaleError, match=r"importing 'broken_mod' failed: KeyError: 'oops'"):
        load_callable("broken_mod:score")
