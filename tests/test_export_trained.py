"""Export what was trained: ``nasscale export MODEL.pt`` writes the trained network with its
classes, resolution, weights and the data's normalisation, and its ONNX output equals the
PyTorch module's on the data's own images fed as plain pixels."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import nasscale
from nasscale.cli import main
from nasscale.modules.checkpoint import load_weights
from nasscale.scoring.data import load_dataset

onnx = pytest.importorskip("onnx")
TINY = str(Path(__file__).parent / "support" / "tiny_net.yaml")


def image_folder(root: Path, classes=("cat", "dog", "owl"), per_class=8, size=20) -> Path:
    """Colour images of ``size`` px, one class per folder, each class a tint of its own."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 90, (size, size, 3))
            img[..., c] += 120
            Image.fromarray(img.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture()
def trained(tmp_path):
    data = image_folder(tmp_path / "photos")
    out = tmp_path / "model.pt"
    assert main(["train", TINY, "--data", str(data), "--epochs", "1", "--batch-size", "8",
                 "--resolution", "20", "--device", "cpu", "--threads", "1", "-o", str(out),
                 "--quiet"]) == 0
    return data, out


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    try:
        import onnxruntime as ort
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        return ReferenceEvaluator(str(path)).run(None, {"image": x})[0]
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": x})[0]


def test_training_records_the_normalisation(trained):
    data, out = trained
    saved = torch.load(out, weights_only=True)
    d = load_dataset(str(data))
    assert saved["normalisation"]["mean"] == pytest.approx(list(d.mean))
    assert saved["normalisation"]["std"] == pytest.approx(list(d.std))
    assert saved["normalisation"]["scale"] == "pixels / 255"
    assert saved["network"]["resolution"] == 20 and saved["classes"] == ["cat", "dog", "owl"]


def test_export_a_trained_file_takes_pixels_and_equals_the_module(trained, tmp_path, capsys):
    data, out = trained
    onnx_path = tmp_path / "net.onnx"
    assert main(["export", str(out), "--onnx", str(onnx_path)]) == 0
    printed = capsys.readouterr().out
    assert "3 classes (cat, dog, owl)" in printed and "at 20x20" in printed
    assert "RANDOM" not in printed and "RGB pixels in [0, 1]" in printed
    proto = onnx.load(str(onnx_path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["nasscale.classes"]) == ["cat", "dog", "owl"]
    assert meta["nasscale.resolution"] == "20" and meta["nasscale.weights"] == str(out)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [3, 20, 20]
    # the deployment path: plain pixels / 255 into ONNX == the module on the loaded data
    from PIL import Image

    files = sorted((data / "dog").glob("*.png"))[:2]
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255
                       for f in files]).transpose(0, 3, 1, 2)
    d = load_dataset(str(data))
    spec = nasscale.load(TINY).replace(resolution=20)
    model = load_weights(str(out), spec)
    first_dogs = [i for i, y in enumerate(d.y.tolist()) if y == 1][:2]
    with torch.inference_mode():
        want = model.eval()(d.x[first_dogs]).numpy()
    got = run_onnx(onnx_path, np.ascontiguousarray(pixels))
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def test_export_a_yaml_with_weights_and_without(trained, tmp_path, capsys):
    _, out = trained
    net = tmp_path / "net.yaml"
    net.write_text(nasscale.dump_network(nasscale.load(TINY).replace(resolution=20)))
    assert main(["export", str(net), "--weights", str(out), "--onnx",
                 str(tmp_path / "a.onnx")]) == 0
    assert "3 classes" in capsys.readouterr().out
    assert main(["export", str(net), "--onnx", str(tmp_path / "b.onnx")]) == 0
    assert "RANDOM weights (no --weights)" in capsys.readouterr().out
    # a bare state_dict holds no network: the error says what to give
    bare = tmp_path / "bare.pt"
    torch.save(torch.load(out, weights_only=True)["state_dict"], bare)
    assert main(["export", str(bare), "--onnx", str(tmp_path / "c.onnx")]) == 2
    err = capsys.readouterr().err
    assert "not the network they belong to" in err and f"--weights {bare}" in err
    assert main(["export", str(net), "--weights", str(bare), "--onnx",
                 str(tmp_path / "c.onnx")]) == 0
    assert main(["export", str(out), "--weights", str(out), "--onnx",
                 str(tmp_path / "d.onnx")]) == 2
    assert "already holds weights" in capsys.readouterr().err


def test_training_uses_the_networks_resolution_and_says_when_images_differ(tmp_path, capsys):
    data = image_folder(tmp_path / "photos", size=12)
    out = tmp_path / "m.pt"
    assert main(["train", TINY, "--data", str(data), "--epochs", "1", "--batch-size", "8",
                 "--device", "cpu", "--threads", "1", "-o", str(out), "--quiet",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["resolution"] == 16  # tiny_net.yaml's own
    assert "has 12x12 images; training tiny_net at 16 px (its own resolution) upsamples" \
        in captured.err and "--resolution 12" in captured.err
    assert main(["train", TINY, "--data", str(data), "--epochs", "1", "--batch-size", "8",
                 "--device", "cpu", "--resolution", "12", "-o", str(out), "--quiet"]) == 0
    assert "images" not in capsys.readouterr().err
