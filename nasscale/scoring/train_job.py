"""``nasscale train``: train one network (a zoo name or a network YAML) on a dataset.

Writes ``OUT.pt`` (the trained weights with the network, classes and result: a file that
``nasscale prune --weights``, the ``inherit`` evaluator and ``torch.load`` read), ``OUT.json``
(the result record) and, while it runs, ``OUT.ckpt`` (resumable after every epoch; removed when
the run finishes).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from nasscale.errors import NasscaleError
from nasscale.scoring.train import TrainSettings

WEIGHTS_FORMAT = "nasscale-weights-1"


@dataclass
class TrainJob:
    network: str
    data: str = "testbed"
    settings: TrainSettings = field(default_factory=TrainSettings)
    out: str | None = None
    resume: bool = False
    weights: str | None = None  # start from these weights instead of a seeded initialisation
    image_size: int | None = None  # resize an image folder's images on load
    progress: bool = True
    #: pixels to train and evaluate at; ``None``: the network's own (a search's best.yaml
    #: carries the resolution it was scored at)
    resolution: int | None = None


def default_out(network_name: str, data: str) -> Path:
    from nasscale.scoring.data import TESTBED

    tag = data.replace(":", "_").replace(",", "_").replace("=", "") \
        if TESTBED.fullmatch(data) or data == "digits" else Path(data).stem
    return Path("runs") / f"train_{network_name}_{tag}" / "model.pt"


def run_train_job(job: TrainJob) -> dict:
    """Train, write the outputs, return the result record."""
    import torch

    from nasscale import zoo
    from nasscale.grammar import network_to_data
    from nasscale.scoring.data import load_dataset
    from nasscale.scoring.evaluators import build_seeded
    from nasscale.scoring.train import train

    if job.out is not None and Path(job.out).suffix.lower() not in (".pt", ".pth"):
        stem = Path(job.out).stem
        raise NasscaleError(f"-o {job.out}: name the weights file NAME.pt ({stem}.json, the "
                            f"record, and {stem}.ckpt, the resumable checkpoint, are written "
                            "beside it)")
    spec = zoo.load(job.network)
    spec.check_trainable(str(job.network))
    settings = replace(job.settings, resolution=job.resolution or spec.resolution)
    settings.check()
    from nasscale.reports import output_file

    out = Path(job.out) if job.out else default_out(spec.name, job.data)
    if out.is_dir():
        raise NasscaleError(f"-o {out}: is a folder; name the weights file, e.g. {out}/model.pt")
    for path in (out, out.with_suffix(".json"), out.with_suffix(".ckpt")):
        output_file(path, "-o")  # writable, before any training
    data = load_dataset(job.data, job.image_size)
    spec = spec.replace(num_classes=data.num_classes, resolution=settings.resolution)
    if job.weights:
        spec, model = _start_from(job.weights, spec, zoo.load(job.network))
    else:
        model = build_seeded(spec, settings.seed)
    ckpt = out.with_suffix(".ckpt")
    if job.resume and not ckpt.exists():
        raise NasscaleError(f"--resume: no checkpoint {ckpt} to continue"
                            + (f" ({out} is a finished run's)" if out.exists() else "")
                            + "; run without --resume to start")
    _say_size(data, spec.name, settings.resolution, job.resolution is not None)
    made_for = {"network": network_to_data(spec),
                "data": {"name": data.name, "classes": list(data.classes),
                         "images": int(len(data.y))}}
    result = train(model, data, settings, progress=job.progress, checkpoint=ckpt,
                   resume=job.resume, label=f"train {spec.name}", made_for=made_for)
    cost = zoo.count(spec)
    record = {"network": spec.name, "data": data.name, "classes": list(data.classes),
              "resolution": spec.resolution, "params": cost.params, "flops": cost.flops,
              **result.record(),
              "settings": asdict(settings), "normalisation": data.normalisation,
              "weights": str(out)}
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"format": WEIGHTS_FORMAT, "state_dict": model.state_dict(),
                "network": network_to_data(spec), "classes": list(data.classes),
                "accuracy": result.accuracy, "settings": asdict(settings), "data": data.name,
                "normalisation": data.normalisation}, tmp)
    tmp.replace(out)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    ckpt.unlink(missing_ok=True)
    return record


def _say_size(data, network: str, resolution: int, given: bool) -> None:
    """One line on stderr when the network trains at another size than the data's images."""
    import sys

    h, w = data.image_size
    if (h, w) == (resolution, resolution):
        return
    source = "--resolution" if given else "its own resolution"
    if min(h, w) < resolution:
        cost = (resolution / max(h, w)) ** 2
        what = (f"upsamples them ({cost:.1f}x the pixels of the images' size); give "
                f"--resolution {max(h, w)} to train at the images' size")
    else:
        what = (f"shrinks them and loses detail; give --resolution {min(h, w)} to train at "
                "the images' size")
    print(f"nasscale train: data {data.name} has {w}x{h} images; training {network} at "
          f"{resolution} px ({source}) {what}", file=sys.stderr, flush=True)


def record_text(record: dict) -> str:
    from nasscale.reports.text import FLOPS_CONVENTION, si, table

    rows = [(h["epoch"], f"{h['size']}px", f"{h['loss']:.3f}", f"{100 * h['accuracy']:.1f}%",
             f"{h['seconds']:.1f}", f"{h['images_per_s']:.0f}" if "images_per_s" in h else "")
            for h in record["history"]]
    head = table(("epoch", "size", "train loss", "held-out top-1", "s", "train img/s"), rows,
                 right="epoch size train loss held-out top-1 s train img/s")
    ema = record["settings"].get("ema")
    averaged = f" (weights averaged, EMA {ema:g})" if ema else ""
    return (f"{head}\n\n{record['network']} on {record['data']} ({len(record['classes'])} classes) "
            f"at {record['resolution']}px, {record['device']}: top-1 "
            f"{100 * record['accuracy']:.2f}% on the held-out split{averaged} after "
            f"{record['epochs']} epoch(s), {record['steps']} steps, {record['seconds']:.0f} s\n"
            f"{si(record['params'])} params, {si(record['flops'])} FLOPs at "
            f"{record['resolution']}px ({FLOPS_CONVENTION})\n"
            f"weights: {record['weights']} (and {Path(record['weights']).with_suffix('.json')})")


def _start_from(path: str, spec, base):
    """The network to train and its module holding ``path``'s weights: a nasscale weights file
    of ``spec``, or torchvision / timm weights of ``base`` (every tensor checked; the network
    then has its source's BatchNorm constants).  A reference classifier for another number of
    classes (ImageNet's 1000) is replaced by a seeded one for the data's: fine-tuning."""
    from nasscale.modules.checkpoint import load_weights, read_checkpoint
    from nasscale.scoring.evaluators import build_seeded
    from nasscale.weights import convert_to_nasscale, detect_source

    ckpt = read_checkpoint(path)
    source = detect_source(base, ckpt.state_dict)
    if source == "nasscale":
        return spec, load_weights(ckpt, spec)
    ref_spec, state = convert_to_nasscale(base, ckpt.state_dict, source, f"--weights {path}")
    spec = ref_spec.replace(num_classes=spec.num_classes, resolution=spec.resolution)
    model = build_seeded(spec, 0)
    own = model.state_dict()
    kept = {k: v.reshape(own[k].shape) for k, v in state.items()  # reference shapes
            if v.numel() == own[k].numel() and not (k.startswith("head.classifier.")
                                                    and tuple(v.shape) != tuple(own[k].shape))}
    dropped = sorted(set(state) - set(kept))
    if any(not k.startswith("head.classifier.") for k in dropped):
        raise NasscaleError(f"--weights {path}: {source} weights do not fit {spec.name} "
                            f"(tensors {', '.join(dropped[:3])})")
    model.load_state_dict({**own, **kept})
    if dropped:
        print(f"--weights {path}: {source} weights; the classifier is new "
              f"({spec.num_classes} classes, the file's has {state[dropped[0]].shape[0]})")
    return spec, model.eval()
