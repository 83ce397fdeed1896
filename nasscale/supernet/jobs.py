"""The ``nasscale supernet`` commands as functions: ``run_train_job`` (train and write the
supernet file, ``OUT.json`` and, while running, ``OUT.ckpt``) and ``extract_job`` (a
subnetwork's weights as a nasscale weights file that ``nasscale train --weights``, ``nasscale
prune --weights`` and ``nasscale export`` read)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nasscale.errors import NasscaleError
from nasscale.supernet.settings import SupernetSettings


@dataclass
class TrainJob:
    space: Any  # a SearchSpace
    data: str = "testbed"
    settings: SupernetSettings = field(default_factory=SupernetSettings)
    out: str | None = None
    init: str | None = None
    init_network: str | None = None
    resume: bool = False
    progress: bool = True
    resolution: int | None = None  # None: the data's image size, at least 32
    space_source: str | None = None  # the name or .yaml path the space was loaded from


def _weights_path(out: str, option: str = "-o") -> Path:
    from nasscale.reports import output_file

    path = Path(out)
    if path.suffix.lower() not in (".pt", ".pth"):
        raise NasscaleError(f"{option} {out}: name the file NAME.pt (NAME.json, the record, "
                            "is written beside it)")
    if path.is_dir():
        raise NasscaleError(f"{option} {out}: is a folder; name the file, e.g. "
                            f"{out}/supernet.pt")
    for p in (path, path.with_suffix(".json"), path.with_suffix(".ckpt")):
        output_file(p, option)
    return path


def run_train_job(job: TrainJob) -> dict:
    """Train the supernet of ``job.space``; returns the record (also ``OUT.json``)."""
    from nasscale.scoring.data import load_dataset
    from nasscale.scoring.data_source import data_label, default_resolution, image_size
    from nasscale.supernet.file import aligned, supernet_spec
    from nasscale.supernet.train import Ranks, train_supernet

    out = _weights_path(job.out or f"runs/supernet_{job.space.name}/supernet.pt")
    pixels = job.resolution or default_resolution(image_size(job.data))
    job.settings = replace(job.settings, train=replace(job.settings.train, resolution=pixels))
    job.settings.check(Ranks.from_env().world)
    aligned(job.space, supernet_spec(job.space, job.settings.train.resolution, 2))
    data = load_dataset(job.data)
    source = job.space_source  # a .yaml path: extract reloads the space from there
    source = str(Path(source).resolve()) if source and Path(source).exists() else None
    record = train_supernet(job.space, data, job.settings, out, data_source=job.data,
                            space_source=source,
                            init=job.init, init_network=job.init_network, resume=job.resume,
                            progress=job.progress)
    record = {**record, "weights": str(out), "data": data_label(job.data)}
    if Ranks.from_env().main:
        out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    return record


def space_of(path: str, where: str = "SUPERNET") -> str:
    """The space a supernet file was trained for: its .yaml path when it was given as one
    (and still exists), else its name."""
    from nasscale.modules.checkpoint import read_checkpoint

    meta = read_checkpoint(path, where).meta.get("supernet")
    if not isinstance(meta, dict) or not isinstance(meta.get("space"), str):
        raise NasscaleError(f"{where} {path}: not a supernet file (no supernet record); make "
                            "one with nasscale supernet train SPACE --data DATA -o FILE.pt")
    source = meta.get("space_source")
    return source if isinstance(source, str) and Path(source).exists() else meta["space"]


def extract_job(path: str, space: Any, network: str, out: str, data: str | None = None,
                calibration_batches: int = 20, device: str = "cpu") -> dict:
    """Cut ``network`` out of the supernet, recalibrate it, score it and write its weights."""
    from nasscale import zoo
    from nasscale.supernet.subnet import Supernet
    from nasscale.transfer.containment import NotContained

    target = _weights_path(out)
    spec = zoo.load(network)
    net = Supernet.open(path, space, data, where="SUPERNET",
                        calibration_batches=calibration_batches, device=device)
    spec = net.fit(spec)
    try:
        module = net.extract(spec)
    except NotContained as err:
        raise NasscaleError(f"{network}: not a subnetwork of the supernet of {space.name}: "
                            f"{'; '.join(err.problems[:4])}") from None
    top1 = net.top1(module)
    cost = zoo.count(spec)
    record = {"network": spec.name, "supernet": str(path), "space": space.name,
              "data": net.meta["data"], "resolution": spec.resolution,
              "params": cost.params, "flops": cost.flops, "accuracy": top1,
              "calibration_batches": calibration_batches, "weights": str(target)}
    net.write_subnet(spec, target, module, top1)
    target.with_suffix(".json").write_text(json.dumps(record, indent=2))
    return record


def train_text(record: dict) -> str:
    from nasscale.reports.text import table

    names = list(record["history"][0]["top1"]) if record["history"] else []
    rows = [(h["epoch"], f"{h['loss']:.3f}", *(f"{100 * h['top1'][n]:.1f}%" for n in names),
             f"{h['seconds']:.0f}", f"{h['images_per_s']:.0f}") for h in record["history"]]
    head = table(("epoch", "loss", *names, "s", "img/s"), rows)
    return (f"{head}\n\nsupernet of {record['space']} on {record['data']} at "
            f"{record['resolution']}px ({record['device']}, {record['ranks']} rank(s)); "
            "top-1: held-out, each subnetwork's BatchNorm recalibrated\n"
            f"weights: {record['weights']} (and "
            f"{Path(record['weights']).with_suffix('.json')})")


def extract_text(record: dict) -> str:
    from nasscale.reports.text import FLOPS_CONVENTION, si

    return (f"{record['network']} from the supernet of {record['space']}: held-out top-1 "
            f"{100 * record['accuracy']:.2f}% on {record['data']} at {record['resolution']}px "
            f"(BatchNorm recalibrated on {record['calibration_batches']} batches)\n"
            f"{si(record['params'])} params, {si(record['flops'])} FLOPs ({FLOPS_CONVENTION})\n"
            f"weights: {record['weights']}")


__all__ = ["TrainJob", "extract_job", "extract_text", "run_train_job", "space_of",
           "train_text"]
