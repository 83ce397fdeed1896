"""Export a network to ONNX (the ``onnx`` extra): ``nasscale export NETWORK --onnx FILE``.

The graph is written by :func:`nasscale.latency.runtimes.artifacts.write_onnx`, the function
latency measurement in ONNX Runtime and OpenVINO uses too.

What is exported:

- a trained network: ``nasscale export MODEL.pt`` (what ``nasscale train -o`` and
  ``nasscale prune --weights`` write: the network, its weights, classes and resolution), or a
  network YAML with ``--weights FILE`` (a ``nasscale train`` file or a bare ``state_dict``);
- without weights, the network with seeded random weights: for shapes and latency only, and
  the command says so.

The input is the image in pixels scaled to [0, 1] (RGB, ``resolution`` square) when the weights
file records the data's normalisation: the graph subtracts the mean and divides by the std the
network was trained with, so a deployment feeds it plain pixels.  Without a recorded
normalisation the input is what the module takes.  The file's metadata (``metadata_props``)
holds the classes, the resolution, the input convention and where the weights came from.

Every export is run once in ONNX Runtime (or onnx's reference evaluator when ONNX Runtime is
not installed) on a seeded batch of two and compared with the PyTorch module: the largest
difference of a logit must stay within ``TOLERANCE`` times the largest logit magnitude (at
least 1).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from nasscale.errors import NasscaleError
from nasscale.latency.runtimes.artifacts import write_onnx


def opset_range() -> tuple[int, int]:
    """The ONNX opsets torch's TorchScript-based exporter writes."""
    try:
        from torch.onnx import _constants as c

        return c.ONNX_MIN_OPSET, c.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    except (ImportError, AttributeError):  # a torch that moved them
        return 7, 20


def check_fits_in_memory(spec, factor: float = 1.5) -> None:
    """A network whose fp32 weights alone exceed this machine's memory is an error naming
    how much it needs, before torch's allocator fails."""
    import os

    from nasscale import zoo

    need = zoo.count(spec).params * 4 * factor
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > have:
        raise NasscaleError(f"{spec.name}: needs about {need / 1e9:.1f} GB for its weights, "
                            f"more than this machine's {have / 1e9:.1f} GB")


#: the largest |ONNX - PyTorch| logit allowed, relative to max(1, the largest |logit|)
TOLERANCE = 1e-4


@dataclass
class Exported:
    """What ``export_onnx`` wrote and checked."""

    path: Path
    network: str
    resolution: int
    classes: list[str] | None
    weights: str | None  # the file the weights came from; None: seeded random weights
    normalisation: dict | None  # what the graph applies to [0, 1] pixels, when known
    max_error: float | None = None  # largest |ONNX - PyTorch| logit on the check batch
    runtime: str | None = None  # what ran the ONNX file for that comparison
    meta: dict = field(default_factory=dict)

    def __fspath__(self) -> str:
        return str(self.path)


def network_and_weights(network, weights: str | None = None):
    """(spec, module or ``None``, checkpoint metadata) for ``network`` — a zoo name, a YAML, a
    ``NetworkSpec`` or a trained weights file — and optional ``weights``."""
    from nasscale import zoo
    from nasscale.modules.checkpoint import (
        is_weights_file,
        load_weights,
        read_checkpoint,
        trained_network,
    )
    from nasscale.specs import NetworkSpec

    if not isinstance(network, NetworkSpec) and is_weights_file(str(network)):
        if weights:
            raise NasscaleError(f"--weights {weights}: {network} already holds weights; give "
                                "one or the other")
        spec, ckpt = trained_network(str(network), "network")
        return spec, load_weights(ckpt, spec, "network"), ckpt.meta
    spec = zoo.load(network)
    if not weights:
        return spec, None, {}
    ckpt = read_checkpoint(weights)
    n = ckpt.num_classes
    if n is not None and n != spec.num_classes:  # a trained file sizes the classifier to its data
        spec = spec.replace(num_classes=n)
    return spec, load_weights(ckpt, spec), ckpt.meta


class _Normalised:
    """``(x - mean) / std`` in front of a module (built lazily: torch is imported on use)."""

    @staticmethod
    def wrap(model, normalisation: dict):
        import torch

        class Normalised(torch.nn.Module):
            def __init__(self):
                super().__init__()
                shape = (1, -1, 1, 1)
                self.register_buffer("mean", torch.tensor(normalisation["mean"]).view(shape))
                self.register_buffer("std", torch.tensor(normalisation["std"]).view(shape))
                self.net = model

            def forward(self, x):
                return self.net((x - self.mean) / self.std)

        return Normalised().eval()


def _usable_normalisation(meta: dict) -> dict | None:
    norm = meta.get("normalisation")
    if not isinstance(norm, dict):
        return None
    try:
        mean = [float(v) for v in norm["mean"]]
        std = [float(v) for v in norm["std"]]
    except (KeyError, TypeError, ValueError):
        return None
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        return None
    return {"mean": mean, "std": std, "scale": str(norm.get("scale", "pixels / 255"))}


def deployable(spec_or_name, weights: str | None, resolution: int | None, normalise: bool):
    """(spec at the export resolution, eval module, checkpoint metadata, normalisation or None)
    of what ``nasscale export`` writes, whichever the format (see the module doc).  A network
    with re-parameterisable blocks is fused first (``nasscale.reparameterize``): the file holds
    its deploy form."""
    import torch

    from nasscale.scoring import MAX_TRAIN_RESOLUTION as most

    if resolution is not None and (isinstance(resolution, bool) or not isinstance(
            resolution, int) or not 8 <= resolution <= most):
        raise NasscaleError(f"--resolution: must be an integer from 8 to {most} (pixels), got "
                            f"{resolution!r}")
    spec, model, meta = network_and_weights(spec_or_name, weights)
    res = resolution or spec.resolution
    spec = spec.replace(resolution=res) if res != spec.resolution else spec
    check_fits_in_memory(spec)
    if model is None:
        torch.manual_seed(0)
        try:
            from nasscale import zoo

            model = zoo.build(spec, res)
        except (RuntimeError, MemoryError) as err:  # the allocator refused
            raise NasscaleError(f"{spec.name}: cannot build it here: "
                                f"{str(err).splitlines()[0][:200]}") from None
    model = model.eval()
    if spec.reparameterizable and not spec.deployed:  # ship the fused form (same function)
        from nasscale import zoo

        model, spec = zoo.reparameterize(model), spec.deploy_form()
    norm = _usable_normalisation(meta) if normalise else None
    if norm is not None:
        model = _Normalised.wrap(model, norm)
    return spec, model, meta, norm


def export_onnx(spec_or_name, path: str | Path, resolution: int | None = None,
                opset: int = 17, batch: int = 1, check: bool = True,
                weights: str | None = None, normalise: bool = True, quantize: str = "none",
                calibration: str | None = None) -> Exported:
    """Write the network (see module doc) with a dynamic batch axis, load it back with
    ``onnx.checker`` and compare its output with the PyTorch module's.  Uses torch's
    TorchScript-based exporter (``dynamo=False``), which needs only the ``onnx`` package.
    ``quantize='int8'`` writes the statically quantised QDQ form instead, calibrated on
    ``calibration`` (a data source; :mod:`nasscale.latency.runtimes.quantize`)."""
    import torch

    low, high = opset_range()
    if isinstance(opset, bool) or not isinstance(opset, int) or not low <= opset <= high:
        raise NasscaleError(f"--opset: must be an ONNX opset from {low} to {high} (torch "
                            f"{torch.__version__}'s exporter), got {opset!r}")
    if quantize not in ("none", "int8"):
        raise NasscaleError(f"--quantize: must be one of none, int8, got {quantize!r}")
    try:
        import onnx
    except ImportError:
        raise NasscaleError("ONNX export needs the onnx package: pip install "
                            "'nasscale[onnx]'") from None

    spec, model, meta, norm = deployable(spec_or_name, weights, resolution, normalise)
    res = spec.resolution
    from nasscale.reports import output_file

    path = output_file(path, "--onnx")
    fp32 = path if quantize == "none" else path.with_name(path.stem + ".fp32.onnx")
    example = torch.randn(batch, spec.in_channels, res, res)
    try:
        write_onnx(model, example, fp32, opset)
    except torch.onnx.errors.OnnxExporterError as err:  # e.g. an operator newer than opset
        raise NasscaleError(f"--opset {opset}: {spec.name} cannot be exported at this opset: "
                            f"{str(err).splitlines()[0][:200]}") from None
    except OSError as err:
        raise NasscaleError(f"--onnx {path}: cannot write: {err.strerror or err}") from None
    classes = [str(c) for c in meta["classes"]] if isinstance(meta.get("classes"), list) \
        else None
    source = str(weights or spec_or_name) if meta or weights else None
    out = Exported(path, spec.name, res, classes, source, norm)
    out.meta = _metadata(out, spec, meta)
    if quantize == "int8":
        from nasscale.export.calibration import calibration_batches
        from nasscale.latency import runtime_info
        from nasscale.latency.runtimes.quantize import onnx_int8

        runtime_info("onnxruntime").require()
        batches, what = calibration_batches(calibration, spec.in_channels, res, norm)
        try:
            onnx_int8(fp32, path, batches)
        finally:
            fp32.unlink(missing_ok=True)
        out.meta["nasscale.quantization"] = (f"int8 QDQ (ONNX Runtime quantize_static, U8S8, "
                                             f"per channel), calibrated on {what}")
    proto = onnx.load(str(path))
    for key, value in out.meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    if check:
        onnx.checker.check_model(proto, full_check=True)
        if quantize == "none":
            out.max_error, out.runtime = compare(path, model, spec.in_channels, res)
    return out


def _metadata(out: Exported, spec, meta: dict) -> dict[str, str]:
    norm = out.normalisation
    data = {
        "nasscale.network": spec.name,
        "nasscale.resolution": str(out.resolution),
        "nasscale.input": (f"RGB pixels scaled to [0, 1] ({norm['scale']}), "
                           f"{out.resolution}x{out.resolution}, NCHW; the graph normalises"
                           if norm else "what the PyTorch module takes (no normalisation "
                           "recorded), NCHW"),
        "nasscale.weights": out.weights or "random (seeded): for shapes and latency only",
    }
    if out.classes:
        data["nasscale.classes"] = json.dumps(out.classes)
    if norm:
        data["nasscale.normalisation"] = json.dumps(norm)
    if isinstance(meta.get("accuracy"), (int, float)):
        data["nasscale.accuracy"] = f"{meta['accuracy']:.6f}"
    if isinstance(meta.get("data"), str):
        data["nasscale.data"] = meta["data"]
    return data


def compare(path: Path, model, channels: int, resolution: int) -> tuple[float, str]:
    """(largest |ONNX - PyTorch| logit on a seeded batch of two, the runtime that ran it);
    an error when it exceeds the tolerance (module doc)."""
    import numpy as np
    import torch

    x = torch.rand(2, channels, resolution, resolution, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = model(x).numpy()
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(None, {"image": x.numpy()})[0]
        runtime = f"onnxruntime {ort.__version__}"
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        got = ReferenceEvaluator(str(path)).run(None, {"image": x.numpy()})[0]
        runtime = "onnx reference evaluator"
    err = float(np.abs(got - want).max())
    if err > TOLERANCE * max(1.0, float(np.abs(want).max())):
        raise NasscaleError(f"--onnx {path}: the ONNX output differs from the PyTorch module's "
                            f"by {err:.3g} (tolerance {TOLERANCE:g} x the largest logit); "
                            f"ran with {runtime}")
    return err, runtime
