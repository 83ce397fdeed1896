"""Training: devices, determinism, checkpoint and resume, progressive learning, augmentation,
the testbed, data errors and ``nasscale train``."""
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import nasscale
from nasscale.cli import main
from nasscale.scoring.data import Dataset, load_dataset
from nasscale.scoring.train import (
    TrainSettings,
    augment_batch,
    centre_crop,
    plan_stages,
    resolve_device,
    train,
)

TINY = str(Path(__file__).parent / "support" / "tiny_net.yaml")


def blobs(n_per_class=24, classes=3, size=12, seed=0) -> Dataset:
    """Three learnable classes of noisy images: horizontal stripes, vertical stripes, plain
    (a texture cue that global pooling, flips and crops all keep)."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c in range(classes):
        x = torch.randn(n_per_class, 3, size, size, generator=g) * 0.5
        stripes = (torch.arange(size) // 2 % 2).float() * 2 - 1
        if c == 0:
            x += stripes[:, None]
        elif c == 1:
            x += stripes[None, :]
        xs.append(x)
        ys += [c] * n_per_class
    return Dataset(x=torch.cat(xs), y=torch.tensor(ys), classes=("a", "b", "c"), name="blobs")


def tiny_model(seed=0):
    spec = nasscale.load(TINY)
    torch.manual_seed(seed)
    return nasscale.build(spec)


FAST = TrainSettings(epochs=2, batch_size=16, lr=0.05, resolution=16, device="cpu")


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()
                      if p.dtype.is_floating_point])


def test_training_is_deterministic_and_reports_every_epoch():
    seen = []
    a = train(tiny_model(), blobs(), FAST, on_epoch=lambda e, acc: seen.append((e, acc)))
    b = train(tiny_model(), blobs(), FAST)
    assert [e for e, _ in seen] == [1, 2] and seen[-1][1] == a.accuracy
    assert a.accuracy == b.accuracy and a.epochs == 2 and a.steps == 2 * (57 // 16)
    assert a.device == "cpu" and len(a.history) == 2


def test_training_learns_a_separable_task():
    result = train(tiny_model(), blobs(32), TrainSettings(epochs=12, batch_size=16, lr=0.1,
                                                          resolution=16, device="cpu"))
    assert result.accuracy > 0.45  # chance is 1/3; 48 steps of a 5K-param net reach ~0.53


def test_stop_in_on_epoch_propagates():
    class Stop(Exception):
        pass

    def stop(epoch, acc):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train(tiny_model(), blobs(), FAST, on_epoch=stop)


@pytest.mark.parametrize("ema", [None, 0.9])
def test_resume_continues_exactly(tmp_path, ema):
    ckpt = tmp_path / "run.ckpt"
    full_model = tiny_model()
    full = train(full_model, blobs(), replace_settings(epochs=3, ema=ema),
                 checkpoint=tmp_path / "a.ckpt")

    class Killed(Exception):
        pass

    def kill(epoch, acc):
        if epoch == 2:
            raise Killed

    with pytest.raises(Killed):
        train(tiny_model(), blobs(), replace_settings(epochs=3, ema=ema), checkpoint=ckpt,
              on_epoch=kill)
    resumed_model = tiny_model(seed=99)  # different start: everything comes from the checkpoint
    resumed = train(resumed_model, blobs(), replace_settings(epochs=3, ema=ema), checkpoint=ckpt,
                    resume=True)
    assert resumed.accuracy == full.accuracy and len(resumed.history) == 3
    assert torch.equal(_weights(resumed_model), _weights(full_model))
    with pytest.raises(nasscale.NasscaleError, match="other settings .*lr"):
        train(tiny_model(), blobs(), replace_settings(epochs=3, lr=0.2), checkpoint=ckpt,
              resume=True)


def test_weight_average_is_what_is_evaluated_and_kept():
    from nasscale.scoring.train import WeightAverage, evaluate

    data = blobs()
    plain_model, avg_model = tiny_model(), tiny_model()
    plain = train(plain_model, data, replace_settings(epochs=3))
    averaged = train(avg_model, data, replace_settings(epochs=3, ema=0.9))
    assert not torch.equal(_weights(plain_model), _weights(avg_model))
    # the kept weights are the evaluated ones: evaluating them again gives the reported top-1
    _, _, vx, vy = data.split(FAST.val_fraction, FAST.seed)
    assert evaluate(avg_model, vx, vy, FAST.resolution) == averaged.accuracy
    assert 0 <= plain.accuracy <= 1
    # the average: decay ramps as (1 + t) / (10 + t); applied() puts the live weights back
    model = tiny_model()
    avg = WeightAverage(model, 0.99)
    first = {k: v.clone() for k, v in avg.shadow.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    avg.update(model)
    name = next(n for n, _ in model.named_parameters())
    expected = first[name] + (1 - 2 / 11) * 1.0  # moved 1 - min(0.99, 2/11) of the way
    assert torch.allclose(avg.shadow[name], expected)
    live = _weights(model)
    with avg.applied(model):
        assert not torch.equal(_weights(model), live)
    assert torch.equal(_weights(model), live)


def test_learning_rate_warms_up_then_decays_to_zero():
    from nasscale.scoring.train import lr_factor

    f = lr_factor(100, 0.1)
    assert [f(s) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    after = [f(s) for s in range(10, 101)]
    assert after[0] == 1.0 and after[-1] == 0.0
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert lr_factor(10, 0.0)(0) == 1.0


def test_each_testbed_version_brings_its_recipe():
    from nasscale.scoring.testbed import VERSIONS
    from nasscale.scoring.train import recipe_for

    v3 = recipe_for("testbed")
    assert v3 == recipe_for("testbed-v3:train=10") == TrainSettings(**dict(VERSIONS[3].recipe))
    assert (v3.batch_size, v3.lr, v3.epochs, v3.ema, v3.channels_last) == (128, 0.05, 8, 0.995,
                                                                           True)
    v2 = recipe_for("testbed-v2")
    assert (v2.epochs, v2.batch_size, v2.lr) == (10, 32, 0.1)
    assert recipe_for("digits") == recipe_for("some/folder") == TrainSettings()
    for settings in (v2, v3):
        settings.check()


@pytest.mark.parametrize("field, value, message", [
    ("ema", 1.0, "ema: must be a decay in (0, 1) or null"),
    ("ema", True, "ema: must be a decay"),
    ("warmup", 1.5, "warmup: must be a fraction of the run in [0, 1)"),
    ("warmup", "x", "warmup: must be a fraction"),
])
def test_averaging_and_warmup_settings_are_checked(field, value, message):
    with pytest.raises(nasscale.NasscaleError, match=re.escape(message)):
        replace_settings(**{field: value}).check()


def replace_settings(**changes):
    from dataclasses import replace

    return replace(FAST, **changes)


def test_steps_mode_stops_after_n_steps():
    result = train(tiny_model(), blobs(), replace_settings(steps=5))
    assert result.steps == 5 and result.epochs == 2  # 58 images, 3 batches of 16 an epoch


def test_progressive_stages_grow_size_and_regularisation():
    stages = plan_stages(TrainSettings(epochs=8, resolution=64, progressive=True), 0.2)
    assert [s.size for s in stages] == [32, 40, 56, 64]
    assert [s.epochs for s in stages] == [2, 2, 2, 2]
    for key in ("dropout", "mixup", "magnitude"):
        values = [getattr(s, key) for s in stages]
        assert values == sorted(values) and values[0] < values[-1]
    assert stages[0].mixup == 0 and stages[-1].mixup == pytest.approx(0.2)
    assert plan_stages(TrainSettings(epochs=8, resolution=64), 0.2)[0].size == 64
    # training with it runs, ends at the target size, restores the network's dropout
    model = tiny_model()
    result = train(model, blobs(), replace_settings(epochs=4, progressive=True),
                   on_epoch=lambda epoch, acc: None)
    assert [h["size"] for h in result.history] == [8, 8, 16, 16]
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.2]


def test_augmentation_and_centre_crop():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, 16, 1.0, g)
    assert out.shape == (2, 3, 16, 16)
    same = augment_batch(x, 16, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)
    assert centre_crop(x, 8, fraction=0.5).shape == (2, 3, 8, 8)
    assert torch.equal(centre_crop(x, 4, fraction=0.5), x[..., 2:6, 2:6])


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(nasscale.NasscaleError, match="device: must be auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(nasscale.NasscaleError, match="CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(nasscale.NasscaleError, match="fp16 needs CUDA"):
            TrainSettings(amp="fp16", device="auto").check()


def test_bf16_autocast_on_cpu_trains():
    result = train(tiny_model(), blobs(), replace_settings(epochs=1, amp="bf16",
                                                            channels_last=True))
    assert 0 <= result.accuracy <= 1


def test_testbed_v2_is_fixed_and_sized():
    d = load_dataset("testbed-v2")
    assert d.num_classes == 16 and d.x.shape == (1920, 3, 32, 32) and d.name == "testbed-v2"
    assert d.test_x.shape == (1600, 3, 32, 32)
    assert torch.bincount(d.y).tolist() == [120] * 16
    assert torch.bincount(d.test_y).tolist() == [100] * 16
    from nasscale.scoring.testbed import testbed_arrays

    x, y, tx, ty = testbed_arrays()
    digest = hashlib.sha256(x.tobytes() + tx.tobytes()).hexdigest()[:16]
    assert digest == TESTBED_DIGESTS[2]  # every machine makes the same images


def test_testbed_v3_is_the_default_fixed_and_sized():
    from nasscale.scoring.testbed import DEFAULT_VERSION, VERSIONS

    assert DEFAULT_VERSION == max(VERSIONS) == 3
    d = load_dataset("testbed")
    assert d.name == "testbed-v3" and d.num_classes == 19
    assert d.x.shape == (28500, 3, 32, 32) and d.test_x.shape == (9500, 3, 32, 32)
    assert torch.bincount(d.y).tolist() == [1500] * 19
    assert torch.bincount(d.test_y).tolist() == [500] * 19
    x, y, tx, ty = VERSIONS[3].arrays()
    digest = hashlib.sha256(x.tobytes() + tx.tobytes()).hexdigest()[:16]
    assert digest == TESTBED_DIGESTS[3]  # every machine makes the same images
    # the held-out split is big enough for its binomial noise to stay under 0.6 points
    assert 100 * (0.25 / len(ty)) ** 0.5 <= 0.6
    # a class is its own stream: fewer crops are a prefix of the same draw
    small = VERSIONS[3].arrays(40, 10)
    assert np.array_equal(small[2][:10], tx[:10])


def test_every_testbed_version_has_a_checksum():
    from nasscale.scoring.testbed import VERSIONS

    assert set(TESTBED_DIGESTS) == set(VERSIONS)


def test_testbed_sizes_are_options():
    d = load_dataset("testbed-v3:train=20,test=5")
    assert d.x.shape[0] == 20 * 19 and d.test_x.shape[0] == 5 * 19
    assert d.name == "testbed-v3:train=20,test=5"


@pytest.mark.parametrize("source, message", [
    ("testbed-v9", "testbed version '9' does not exist; choose testbed (testbed-v3) or one of "
                   "testbed-v2, testbed-v3"),
    ("testbed-vx", "testbed version 'x' does not exist"),
    ("testbed:train=0", "data testbed-v3: train must be an integer >= 1 (crops per class), got 0"),
    ("testbed-v2:test=-3", "data testbed-v2: test must be an integer >= 1"),
    ("testbed:train=ten", "train must be an integer >= 1 (crops per class), got 'ten'"),
    ("testbed:train=10000000", "train must be at most 20,000 crops per class"),
    ("testbed:size=3", "unknown testbed option 'size'; allowed: train=N, test=N"),
])
def test_testbed_bad_input(source, message):
    with pytest.raises(nasscale.NasscaleError, match=re.escape(message)):
        load_dataset(source)


def test_cli_testbed_bad_version_is_one_line(capsys, tmp_path):
    assert main(["train", TINY, "--data", "testbed-v7", "--quiet", "-o",
                 str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "testbed version '7' does not exist" in err and len(err.splitlines()) == 1


TESTBED_DIGESTS = {2: "208894459445d89b", 3: "fc32f1defce76726"}


def test_testbed_tiles_split_the_scene_without_overlap():
    from nasscale.scoring.testbed import CROP, TILE, tiles

    for shape in ((512, 512), (172, 448), (1411, 1411), (300, 451)):
        train_tiles, held = tiles(shape)
        cells = {(y, x) for y, x, _ in train_tiles} | {(y, x) for y, x, _ in held}
        assert len(cells) == len(train_tiles) + len(held)  # disjoint squares of one grid
        assert 0.2 <= len(held) / len(cells) <= 1 / 3
        # spread over the scene: every column, and rows from the top to (next to) the bottom
        assert {x for _, x, _ in held} == {x for _, x in cells}
        rows = sorted({y for y, _ in cells})
        assert min(y for y, _, _ in held) == rows[0] and max(y for y, _, _ in held) >= rows[-2]
        side = train_tiles[0][2]
        assert all(y + side <= shape[0] and x + side <= shape[1] for y, x in cells)
        assert CROP[1] < TILE  # a crop fits inside one tile


# --- data errors -------------------------------------------------------------------------------

def _folder(root: Path, spec: dict):
    from PIL import Image

    for label, sizes in spec.items():
        (root / label).mkdir(parents=True)
        for i, size in enumerate(sizes):
            Image.new("RGB", size, (40 * i, 80, 120)).save(root / label / f"{i}.png")


def test_image_folder_keeps_size_and_names_errors(tmp_path):
    _folder(tmp_path / "ok", {"cat": [(20, 16)] * 3, "dog": [(20, 16)] * 2})
    d = load_dataset(str(tmp_path / "ok"))
    assert d.classes == ("cat", "dog") and d.x.shape == (5, 3, 16, 20)
    assert load_dataset(str(tmp_path / "ok"), size=12).x.shape == (5, 3, 12, 12)
    _folder(tmp_path / "mixed", {"cat": [(20, 16), (20, 16)], "dog": [(32, 32)]})
    with pytest.raises(nasscale.NasscaleError, match=r"mixed sizes .*dog/0.png"):
        load_dataset(str(tmp_path / "mixed"))
    _folder(tmp_path / "one", {"cat": [(8, 8)] * 2})
    with pytest.raises(nasscale.NasscaleError, match="at least 2.*found 1: cat"):
        load_dataset(str(tmp_path / "one"))
    _folder(tmp_path / "empty", {"cat": [(8, 8)], "dog": []})
    with pytest.raises(nasscale.NasscaleError, match="'dog' has no images"):
        load_dataset(str(tmp_path / "empty"))
    (tmp_path / "ok" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(nasscale.NasscaleError, match="broken.png: cannot read"):
        load_dataset(str(tmp_path / "ok"))


def test_npz_with_one_class(tmp_path):
    np.savez(tmp_path / "one.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.zeros(4, int))
    with pytest.raises(nasscale.NasscaleError, match="at least 2 classes, found 1"):
        load_dataset(str(tmp_path / "one.npz"))


# --- nasscale train ----------------------------------------------------------------------------

@pytest.fixture
def npz(tmp_path):
    d = blobs(16)
    x = (d.x[:, 0] * 40 + 128).clamp(0, 255).to(torch.uint8).numpy()
    np.savez(tmp_path / "blobs.npz", x=x, y=d.y.numpy())
    return str(tmp_path / "blobs.npz")


def test_cli_train_writes_weights_and_json(tmp_path, npz, capsys):
    out = tmp_path / "w" / "model.pt"
    code = main(["train", TINY, "--data", npz, "--epochs", "2", "--batch-size", "8",
                 "--resolution", "16", "--device", "cpu", "-o", str(out), "--format", "json",
                 "--quiet"])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["epochs"] == 2 and 0 <= record["accuracy"] <= 1
    assert record["classes"] == ["0", "1", "2"] and len(record["history"]) == 2
    assert json.loads(out.with_suffix(".json").read_text())["accuracy"] == record["accuracy"]
    assert not out.with_suffix(".ckpt").exists()
    saved = torch.load(out, weights_only=True)
    assert saved["format"] == "nasscale-weights-1" and saved["classes"] == ["0", "1", "2"]
    from nasscale.pruning.run import load_weights

    spec = nasscale.load(TINY).replace(resolution=16)
    model = load_weights(str(out), spec)  # prune --weights and inherit read the same file
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved["state_dict"][name])
    # and training can start from them
    assert main(["train", TINY, "--data", npz, "--epochs", "1", "--batch-size", "8",
                 "--resolution", "16", "--device", "cpu", "--weights", str(out), "-o",
                 str(tmp_path / "again.pt"), "--quiet"]) == 0
    assert "held-out top-1" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--data", "no/such/folder"], "data: 'no/such/folder' is not testbed, testbed-v2"),
    (["--epochs", "0"], "--epochs: must be an integer from 1 to 100,000"),
    (["--device", "tpu"], "--device: must be auto, cpu, cuda"),
    (["--lr", "nan"], "--lr: must be a number > 0"),
    (["--val-fraction", "1.5"], "--val-fraction: must be in"),
    (["--resume", "-o", "{tmp}/x.pt", "--weights", "{tmp}/none.pt"], "no such file"),
])
def test_cli_train_bad_input(tmp_path, npz, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    base = ["train", TINY, "--data", npz, "--quiet", "-o", str(tmp_path / "m.pt")]
    assert main(base + args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cli_train_cuda_without_cuda(npz, capsys):
    assert main(["train", TINY, "--data", npz, "--device", "cuda", "--quiet"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_resume_refuses_a_checkpoint_made_for_another_network_or_data(tmp_path):
    ckpt = tmp_path / "run.ckpt"

    class Killed(Exception):
        pass

    def kill(epoch, acc):
        raise Killed

    mine = {"network": {"name": "tiny", "stages": ["bneck_relu"]},
            "data": {"name": "blobs", "classes": ["a", "b", "c"], "images": 72}}
    with pytest.raises(Killed):
        train(tiny_model(), blobs(), replace_settings(epochs=3), checkpoint=ckpt,
              on_epoch=kill, made_for=mine)
    other_net = {**mine, "network": {"name": "tiny", "stages": ["bneck_hswish"]}}
    with pytest.raises(nasscale.NasscaleError, match=r"made for another network \('tiny' "
                       r"with another stages: \['bneck_relu'\] != \['bneck_hswish'\]\)"):
        train(tiny_model(), blobs(), replace_settings(epochs=3), checkpoint=ckpt,
              resume=True, made_for=other_net)
    other_data = {**mine, "data": {**mine["data"], "name": "photos"}}
    with pytest.raises(nasscale.NasscaleError, match=r"another data \('blobs', not 'photos'\)"):
        train(tiny_model(), blobs(), replace_settings(epochs=3), checkpoint=ckpt,
              resume=True, made_for=other_data)
    train(tiny_model(), blobs(), replace_settings(epochs=3), checkpoint=ckpt, resume=True,
          made_for=mine)


@pytest.mark.parametrize("name", ["m.ckpt", "m.json", "m"])
def test_cli_train_output_must_be_a_weights_file(tmp_path, npz, capsys, name):
    victim = tmp_path / name
    victim.write_text("precious")
    assert main(["train", TINY, "--data", npz, "--quiet", "-o", str(victim)]) == 2
    err = capsys.readouterr().err
    assert "name the weights file NAME.pt" in err and len(err.strip().splitlines()) == 1
    assert victim.read_text() == "precious"


def test_cli_resume_without_a_checkpoint_is_an_error(tmp_path, npz, capsys):
    assert main(["train", TINY, "--data", npz, "--quiet", "--resume", "-o",
                 str(tmp_path / "m.pt")]) == 2
    assert "--resume: no checkpoint" in capsys.readouterr().err
