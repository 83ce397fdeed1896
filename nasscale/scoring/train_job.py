"""``nasscale train``: train one network (a zoo name or a network YAML) on a dataset.

Writes ``OUT.pt`` (the trained weights with the network, classes and result: a file that
``nasscale prune --weights``, the ``inherit`` evaluator and ``torch.load`` read), ``OUT.json``
(the result record) and, while it runs, ``OUT.ckpt`` (resumable after every epoch; removed when
the run finishes).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
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
    threads: int | None = None  # intra-op CPU threads (None: torch's default)


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

    job.settings.check()
    if job.threads:
        torch.set_num_threads(job.threads)
    spec = zoo.load(job.network)
    data = load_dataset(job.data, job.image_size)
    spec = spec.replace(num_classes=data.num_classes, resolution=job.settings.resolution)
    out = Path(job.out) if job.out else default_out(spec.name, job.data)
    if out.exists() and out.is_dir():
        raise NasscaleError(f"-o {out}: is a folder; name the weights file, e.g. {out}/model.pt")
    if job.weights:
        spec, model = _start_from(job.weights, spec, zoo.load(job.network))
    else:
        model = build_seeded(spec, job.settings.seed)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NasscaleError(f"-o {out}: cannot create its folder ({err.strerror})") from None
    ckpt = out.with_suffix(".ckpt")
    result = train(model, data, job.settings, progress=job.progress, checkpoint=ckpt,
                   resume=job.resume, label=f"train {spec.name}")
    cost = zoo.count(spec)
    record = {"network": spec.name, "data": data.name, "classes": list(data.classes),
              "resolution": spec.resolution, "params": cost.params, "flops": cost.flops,
              **result.record(),
              "settings": asdict(job.settings), "weights": str(out)}
    tmp = out.with_name(out.name + ".tmp")
    torch.save({"format": WEIGHTS_FORMAT, "state_dict": model.state_dict(),
                "network": network_to_data(spec), "classes": list(data.classes),
                "accuracy": result.accuracy, "settings": asdict(job.settings)}, tmp)
    tmp.replace(out)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    ckpt.unlink(missing_ok=True)
    return record


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
