"""``nasscale prune --resume``: go on from the last finished iteration after a kill.

After every iteration ``OUT/progress.pt`` is replaced (written beside, then renamed: a kill
leaves the previous one whole) with what the run needs to go on: the request it was made for
(network, target, evaluator, weights, options, seed, device), the finished iterations, the
current network in its prunable form, its score and resource, the first run's start resource
and score, and the current weights when weights are carried.  ``--resume`` checks the request
against the file's, restores the state and continues; the finished run removes the file.  A
run started without ``--resume`` where an unfinished one lies is refused rather than
overwriting it.  Loaded with ``torch.load(weights_only=True)``: no code runs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from nasscale.errors import NasscaleError

FORMAT = "nasscale-prune-progress-1"
FILE = "progress.pt"


@dataclass
class Progress:
    """A restored unfinished run."""

    iterations: list  # Iteration objects (without modules)
    current: object  # NetworkSpec, prunable form
    score: float
    start_resource: float
    start_score: float
    state_dict: dict | None  # the current module's weights, when carried


def request_of(req, spec, evaluator) -> dict:
    """What a run was made for: resuming with any of it changed is refused."""
    from nasscale.grammar import network_to_data

    out = {"network": network_to_data(spec), "target": req.target, "evaluator": evaluator.text,
           "weights": req.weights, "options": asdict(req.options), "seed": req.seed,
           "device": req.device, "threads": req.threads, "lut": req.lut}
    if (req.runtime, req.quantize) != ("eager", "none"):  # files from before runtimes resume
        out.update(runtime=req.runtime, quantize=req.quantize)
    return out


def refuse_to_overwrite(out: Path) -> None:
    path = out / FILE
    if path.exists():
        raise NasscaleError(f"--out {out}: holds an unfinished prune ({path}); --resume "
                            "continues it, or give another --out")


def save(out: Path, request: dict, iterations: list, it, start: tuple[float, float]) -> None:
    """Replace ``OUT/progress.pt`` after iteration ``it`` (see module doc)."""
    import torch

    from nasscale.grammar import network_to_data

    state = {"format": FORMAT, "request": request,
             "iterations": [{**x.row(), "spec": network_to_data(x.spec)} for x in iterations],
             "current": network_to_data(it.prunable), "score": float(it.score),
             "resource": float(it.resource), "start_resource": float(start[0]),
             "start_score": float(start[1]),
             "state_dict": it.model.state_dict() if it.model is not None else None}
    tmp = out / (FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out / FILE)


def load(out: Path, request: dict) -> Progress:
    """The unfinished run in ``out``, or an error saying why it cannot go on."""
    import torch

    from nasscale.grammar import network_from_data
    from nasscale.pruning.netadapt import Iteration

    path = out / FILE
    if not path.exists():
        raise NasscaleError(f"--resume: no unfinished prune in {out} (no {FILE}); run without "
                            "--resume to start")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a damaged file is bad input
        raise NasscaleError(f"--resume {path}: cannot read it ({str(err)[:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise NasscaleError(f"--resume {path}: not a nasscale prune progress file")
    was = state["request"]
    changed = [k for k in request if was.get(k) != request[k]]
    if changed:
        raise NasscaleError(f"--resume {path}: the unfinished run was made with another "
                            f"{', '.join(changed)}; give the same command, or another --out")
    iterations = []
    for row in state["iterations"]:
        row = dict(row)
        spec = network_from_data(row.pop("spec"))
        iterations.append(Iteration(
            index=row["iteration"], limit=row["limit"], group=row["group"],
            old_width=row["width_from"], width=row["width"], resource=row["resource"],
            score=row["score"], delta_score=row["score_change"], saved=row["saved"],
            proposals=row["proposals"], flops=row["flops"], params=row["params"],
            seconds=row["seconds"], spec=spec))
    return Progress(iterations, network_from_data(state["current"]), state["score"],
                    state["start_resource"], state["start_score"], state["state_dict"])


def finish(out: Path) -> None:
    (out / FILE).unlink(missing_ok=True)
