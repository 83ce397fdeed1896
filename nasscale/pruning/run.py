"""``nasscale prune``: set up a NetAdapt run (target, resource, evaluator, weights), run it,
measure the result, and write every output.

Outputs in ``--out`` (default ``runs/prune_<network>_<metric>``):

- ``iterations/000_start.yaml`` and ``iterations/NNN.yaml``: the network after every iteration;
- ``final.yaml``: the pruned network (``nasscale show final.yaml`` reads it);
- ``iterations.csv``: iteration, group pruned, widths, limit, resource, score, FLOPs, params;
- ``summary.json``: the ``--format json`` object (with ``long_term``: the long-term
  fine-tuning's epochs, lr and held-out top-1 before and after, when it ran);
- ``pruned.pt``: the pruned network with its weights, when ``--weights`` came in (after the
  long-term fine-tuning, when the ``train`` evaluator runs one), in ``nasscale train``'s
  format: ``state_dict``, ``network``, and the input file's classes and normalisation, so
  that ``nasscale export pruned.pt`` and ``nasscale train --weights`` read it alone;
- ``latency_table.json``: the lookup table grown during a latency run (unless ``--lut``).

Order: NetAdapt's iterations (short-term fine-tuning inside each score), then for a latency
target the end-to-end check that may prune on, and only then, once, the long-term fine-tuning
of the settled final network (``PruneEvaluator.fine_tune``).

``--weights`` reads a plain ``state_dict`` or a ``nasscale train -o FILE`` file
(``nasscale.modules.checkpoint``).  When the file's classifier has another number of classes
than the network as named (``nasscale train`` sizes it to the data), the network takes the
file's: the weights decide what the pruned network classifies.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from nasscale.errors import NasscaleError
from nasscale.pruning.evaluate import make_evaluator
from nasscale.pruning.netadapt import Continuation, Options, Result, netadapt
from nasscale.pruning.resource import LatencyResource, make_resource, parse_target
from nasscale.specs import NetworkSpec
from nasscale.transfer.groups import prunable, width_groups


@dataclass
class PruneRequest:
    network: str
    target: str
    device: str = "cpu"
    threads: int = 1
    lut: str | None = None
    runtime: str = "eager"  # what runs the network for latency (nasscale.latency.runtimes)
    quantize: str = "none"
    evaluator: str | None = None
    weights: str | None = None
    out: str | None = None
    seed: int = 0
    options: Options = Options()
    verbose: bool = True
    #: latency timing policy for carriers and measurements (None: the defaults; tests: QUICK)
    timing: object = None
    resume: bool = False  # go on from OUT/progress.pt (``pruning/resume.py``)


def load_weights(path, spec: NetworkSpec):
    """A module of ``spec`` holding the weights file's tensors, or an error naming the file
    (``nasscale.modules.checkpoint.load_weights``; imported here so that this module loads
    without torch)."""
    from nasscale.modules.checkpoint import load_weights as load

    return load(path, spec)


def _log(verbose: bool):
    def log(msg: str) -> None:
        if verbose:
            print(f"nasscale prune: {msg}", file=sys.stderr, flush=True)
    return log


def run_prune(req: PruneRequest) -> tuple[Result, Path]:
    from nasscale.pruning import resume as progress_file
    from nasscale.pruning.report import iteration_line, write_iteration, write_outputs

    log = _log(req.verbose)
    req, spec, model, meta = _network_and_weights(req, log)
    target = parse_target(req.target)
    out = Path(req.out or Path("runs") / f"prune_{spec.name}_{target.metric}")
    evaluator = make_evaluator(req.evaluator, req.seed)
    evaluator.check(spec, model is not None)
    long_term = evaluator.final_settings(weighted=model is not None)
    request = progress_file.request_of(req, spec, evaluator)
    from nasscale.reports import output_dir

    out = output_dir(out, "--out")  # writable, before any iteration
    state = progress_file.load(out, request) if req.resume else None
    if state is None:
        progress_file.refuse_to_overwrite(out)
    resource, start_ms = _resource(req, target, out, spec, log)
    out.mkdir(parents=True, exist_ok=True)
    write_iteration(out, 0, spec)
    log(f"{len(width_groups(prunable(spec)))} width groups; evaluator: {evaluator.describe()}")
    done = state.iterations if state else []
    start = [(state.start_resource, state.start_score)] if state else []

    def on_iteration(it):
        write_iteration(out, it.index, it.spec)
        log(iteration_line(it, target.metric))
        start[:] = start or [(it.start_resource, it.start_score)]
        done.append(it)
        progress_file.save(out, request, done, it, start[0])
        it.model = None  # the run holds the current module; the list holds none

    training = req.verbose and evaluator.kind == "train"
    if state is None:
        result = netadapt(spec, target, resource, evaluator, req.options, model, log,
                          on_iteration, progress=training)
    else:
        from nasscale.transfer.groups import block_names

        log(f"resuming after iteration {len(done)} ({out / progress_file.FILE})")
        result = netadapt(
            state.current, target, resource, evaluator, req.options,
            _module_of(state.current, state.state_dict) if model is not None else None, log,
            on_iteration, progress=training, resume=Continuation(
                len(done), block_names(spec), spec.name, state.start_resource,
                state.start_score, state.score))
        result.start, result.iterations = spec, list(done)  # as if never interrupted
    result.start_measured_ms = start_ms
    if isinstance(resource, LatencyResource):
        result = _verify_latency(result, spec, target, resource, evaluator, req, log,
                                 on_iteration)
    if result.model is not None:
        _long_term(result, evaluator, long_term, training, log)
    result.weights_meta = meta
    write_outputs(result, out)
    progress_file.finish(out)
    return result, out


def _network_and_weights(req: PruneRequest, log):
    """(request, network, module with the weights or None, what the weights file says about
    its data).  A trained weights file given as the network brings its own weights."""
    from nasscale import zoo
    from nasscale.modules.checkpoint import is_weights_file, read_checkpoint, trained_network

    if is_weights_file(req.network) and not req.weights:
        spec = trained_network(req.network)[0]
        req = replace(req, weights=req.network)
    else:
        spec = zoo.load(req.network)
    if not req.weights:
        return req, spec, None, {}
    ckpt = read_checkpoint(req.weights)
    spec, ckpt = _from_reference(spec, ckpt, f"--weights {req.weights}", log)
    spec = _classes_of_weights(spec, ckpt, log)
    meta = {k: ckpt.meta[k] for k in ("classes", "normalisation", "data") if k in ckpt.meta}
    return req, spec, load_weights(ckpt, spec), meta


def _resource(req: PruneRequest, target, out: Path, spec: NetworkSpec, log):
    """The resource pruned against, and for latency the start network measured (ms)."""
    from nasscale.latency.measure import Settings

    settings = Settings.from_options(device=req.device, threads=req.threads,
                                     runtime=req.runtime, quantize=req.quantize)
    if target.metric != "latency" and req.lut:
        raise NasscaleError(f"--lut is for latency targets; {target} is counted analytically")
    settings.key()  # no such device (cuda here?), too many threads: before anything else
    resource = make_resource(target.metric, req.lut, out, settings)
    if not isinstance(resource, LatencyResource):
        return resource, None
    if req.timing is not None:
        resource.set_timing(req.timing)
    log(f"measuring {spec.name} end to end ({settings.device}, {settings.threads} thread)")
    start_ms = resource.measure_median(spec)
    resource.calibrate(spec, start_ms)
    log(f"{spec.name}: {start_ms:.3f} ms measured; lookup table {resource.path} "
        f"({len(resource.table)} blocks, calibration x{resource.scale:.3f})")
    return resource, start_ms


def _long_term(result: Result, evaluator, long_term, progress: bool, log) -> None:
    """The final module regrouped as the final network, then once long-term fine-tuned."""
    from nasscale.pruning.netadapt import regroup_model

    result.model = regroup_model(result.model, result.final)
    if long_term is None:
        return
    log(f"long-term fine-tuning of {result.final.name}: {long_term.epochs} epoch(s) at "
        f"lr {long_term.lr:g}")
    result.long_term = evaluator.fine_tune(result.final, result.model, long_term,
                                           progress=progress)
    log(f"top-1 {result.long_term['accuracy_before']:.4f} -> "
        f"{result.long_term['accuracy_after']:.4f} after long-term fine-tuning")


def _module_of(spec: NetworkSpec, state_dict: dict):
    """A module of a prunable-form network holding a progress file's weights."""
    from nasscale.modules import build_network

    model = build_network(spec)
    model.load_state_dict(state_dict)
    return model


def _classes_of_weights(spec: NetworkSpec, ckpt, log) -> NetworkSpec:
    """``spec`` with the weights file's number of classes (see module doc)."""
    n = ckpt.num_classes
    if n is None or n == spec.num_classes:
        return spec
    log(f"--weights {ckpt.path}: its classifier has {n} classes ({spec.name} as named has "
        f"{spec.num_classes}); pruning the {n}-class network")
    return spec.replace(num_classes=n)


def _verify_latency(result: Result, spec: NetworkSpec, target, resource: LatencyResource,
                    evaluator, req: PruneRequest, log, on_iteration, rounds: int = 5,
                    extra_runs: int = 2) -> Result:
    """Measure the start and the result alternately; when the *measured* latency misses the
    target (the table predicts within a few percent, not exactly), tighten the predicted limit
    by the miss and prune on, at most ``extra_runs`` times."""
    import statistics

    from nasscale.pruning.resource import Target
    from nasscale.transfer.groups import block_names

    names = block_names(spec)
    for attempt in range(extra_runs + 1):
        log(f"measuring the start and the pruned network end to end, alternately "
            f"({rounds} rounds)")
        s_ms, f_ms, ratio = resource.compare(spec, result.final, rounds=rounds)
        meets = ratio <= target.factor if target.factor else f_ms <= target.value
        result.measured_ms = f_ms
        result.extra["measured"] = {"start_ms": s_ms, "pruned_ms": f_ms, "ratio": ratio,
                                    "rounds": rounds}
        result.extra["measured_meets_target"] = meets
        result.extra["carriers_timed"] = resource.carriers
        result.extra["lut"] = str(resource.path)
        if resource.drift:
            result.extra["carrier_drift"] = {"median": statistics.median(resource.drift),
                                             "min": min(resource.drift),
                                             "max": max(resource.drift)}
        if meets or attempt == extra_runs:
            return result
        miss = (target.factor / ratio) if target.factor else target.value / f_ms
        limit = result.final_resource * miss
        log(f"measured {f_ms:.3f} ms (ratio {ratio:.3f}) misses {target}; pruning on to a "
            f"predicted {limit:.3f} ms")
        tighter = Target("latency", value=limit, text=f"latency={limit:.3f}ms")
        try:
            more = netadapt(result.final, tighter, resource, evaluator, req.options,
                            result.model, log, on_iteration,
                            resume=Continuation(len(result.iterations), names, spec.name),
                            progress=req.verbose and evaluator.kind == "train")
        except NasscaleError as err:
            log(f"cannot prune further: {err}")
            result.extra["note"] = f"measured latency misses the target; pruning on failed: {err}"
            return result
        result.iterations += more.iterations
        result.final, result.final_resource, result.model = (more.final, more.final_resource,
                                                             more.model)
        result.final = result.final.replace(paper=f"{spec.name} pruned by NetAdapt to {target} "
                                            f"({len(result.iterations)} iterations)")
        result.limit = min(result.limit, limit)
        result.seconds += more.seconds
    return result


def _from_reference(spec, ckpt, where: str, log):
    """A torchvision or timm checkpoint converted to nasscale names (every tensor checked),
    with the network built as its source builds it (``nasscale.weights``)."""
    from nasscale.weights import convert_to_nasscale, detect_source

    source = detect_source(spec, ckpt.state_dict)
    if source == "nasscale":
        return spec, ckpt
    spec, state = convert_to_nasscale(spec, ckpt.state_dict, source, where)
    log(f"{where}: {source} weights, converted ({len(state)} tensors)")
    ckpt.state_dict = state
    return spec, ckpt
