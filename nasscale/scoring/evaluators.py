"""Evaluators: the "accuracy measure" a study maximises.

An evaluator scores a candidate ``NetworkSpec`` (higher is better).  It builds the module
itself, with the weight initialisation seeded, so a score depends only on the architecture and
the study's seed:

- ``ProxyEvaluator``: a zero-cost proxy (``naswot``, ``synflow``) on one batch, random or from
  a dataset;
- ``CostEvaluator``: ``flops`` or ``params`` as the naive baselines a proxy must beat;
- ``TrainEvaluator``: short training on a dataset, top-1 on its held-out split;
- ``PythonEvaluator``: a user function ``package.module:function`` called with the built
  module and the spec, returning a number (or a mapping with a ``score``);
- ``InheritEvaluator`` (``nasscale.scoring.inherit``): weights carried from a trained parent
  that contains the candidate, fine-tuned a few steps, top-1 on the held-out split.
"""
from __future__ import annotations

import importlib
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

from nasscale.errors import NasscaleError
from nasscale.specs import NetworkSpec


def arch_seed(seed: int, spec: NetworkSpec) -> int:
    """A seed that depends on the study seed and the architecture only (not the trial)."""
    from nasscale.grammar import format_block

    text = ";".join(format_block(b.spec) for b in _resolved(spec).blocks)
    return (seed * 1_000_003 + zlib.crc32(f"{text}@{spec.resolution}".encode())) % (2 ** 31)


def _resolved(spec):
    from nasscale.specs import resolve

    return resolve(spec)


def build_seeded(spec: NetworkSpec, seed: int):
    import torch

    from nasscale.modules import build_network

    torch.manual_seed(seed)
    return build_network(spec)


class Evaluator(ABC):
    """Scores a candidate network; higher is better.  ``name`` labels the metric in tables
    and plots; ``needs_module`` says whether scoring builds torch modules.

    ``report(epoch, value)``, when given, receives intermediate scores (1-based epochs) from
    an evaluator that has them: the train evaluator calls it after every epoch with held-out
    top-1, and the objective turns that into ``trial.report`` and a pruner's decision.  If
    ``report`` raises (``optuna.TrialPruned``), scoring stops and the exception propagates.
    Evaluators without intermediate scores ignore it."""

    name: str = "score"
    needs_module: bool = True

    @abstractmethod
    def score(self, spec: NetworkSpec, seed: int,
              report: Callable[[int, float], None] | None = None) -> float:
        ...

    def score_model(self, model, spec: NetworkSpec, seed: int) -> float:
        """Score a module that already exists (a pruned network carrying weights); a training
        evaluator trains it in place.  ``seed``: the run's (a proxy's batch, the batch
        order), kept fixed so that modules compare on the same inputs."""
        raise NasscaleError(f"the {self.name} evaluator scores architectures, not modules")

    def describe(self) -> str:
        return self.name


@dataclass
class CostEvaluator(Evaluator):
    metric: str = "flops"
    needs_module = False

    def __post_init__(self) -> None:
        if self.metric not in ("flops", "params"):
            raise NasscaleError(f"evaluator.proxy: cost baseline must be 'flops' or 'params', "
                                f"got {self.metric!r}")
        self.name = self.metric

    def score(self, spec: NetworkSpec, seed: int, report=None) -> float:
        from nasscale import zoo

        cost = zoo.count(spec)
        return float(cost.flops if self.metric == "flops" else cost.params)


@dataclass
class ProxyEvaluator(Evaluator):
    proxy: str = "naswot"
    batch_size: int = 16
    resolution: int | float | None = None  # pixels, a fraction of the candidate's, or None
    data: str | None = None  # a dataset source for NASWOT's batch (random normal if none)
    _dataset: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from nasscale.scoring.proxies import PROXIES

        if self.proxy not in PROXIES:
            raise NasscaleError(f"evaluator.proxy: unknown proxy {self.proxy!r}; known: "
                                f"{', '.join(PROXIES)}, flops, params")
        self.name = self.proxy

    def use_dataset(self, dataset) -> "ProxyEvaluator":
        """Draw NASWOT's batches from this loaded ``Dataset`` instead of loading ``data``."""
        self._dataset = dataset
        return self

    def _batch(self, spec: NetworkSpec, seed: int, res: int):
        import torch

        from nasscale.scoring.data import load_dataset, resize

        g = torch.Generator().manual_seed(seed)
        if self.data is None:
            return torch.randn(self.batch_size, spec.in_channels, res, res, generator=g)
        if self._dataset is None:
            self._dataset = load_dataset(self.data)
        idx = torch.randperm(len(self._dataset.y), generator=g)[:self.batch_size]
        return resize(self._dataset.x[idx], res)

    def score(self, spec: NetworkSpec, seed: int, report=None) -> float:

        spec = spec.replace(resolution=eval_resolution(self.resolution, spec.resolution))
        return self.score_module(build_seeded(spec, seed), spec, seed, spec.resolution)

    def score_model(self, model, spec: NetworkSpec, seed: int) -> float:
        res = eval_resolution(self.resolution, spec.resolution)
        was_training = model.training
        try:
            return self.score_module(model, spec, seed, res)
        finally:
            model.train(was_training)

    def describe(self) -> str:
        res = self.resolution
        at = (f"{res:g}x" if isinstance(res, float) else f"{res}px") if res else "its own size"
        return (f"{self.proxy} proxy on a batch of {self.batch_size} "
                f"({self.data or 'random inputs'}) at {at}")

    def score_module(self, model, spec: NetworkSpec, batch_seed: int, res: int) -> float:
        """The proxy of a module that already exists (a pruned network carrying weights), on
        inputs of ``res`` pixels; ``batch_seed`` draws NASWOT's batch (keep it fixed to compare
        modules on the same inputs)."""
        from nasscale.scoring.proxies import naswot, synflow

        if self.proxy == "synflow":  # works on a float64 copy
            return synflow(model, (1, spec.in_channels, res, res))
        return naswot(model, self._batch(spec, batch_seed, res))


@dataclass
class TrainEvaluator(Evaluator):
    data: str = "digits"
    settings: Any = None  # TrainSettings
    name: str = "accuracy"
    relative: float | None = None  # train at this fraction of each candidate's resolution
    #: ``accuracy``: held-out top-1 after training; ``sotl``: minus the mean training loss of
    #: the last epoch (SoTL-E, Ru et al., NeurIPS 2021).  On the testbed after one epoch SoTL
    #: ranked fully trained networks better than top-1 (benchmarks/fidelity.py).
    signal: str = "accuracy"
    _dataset: Any = field(default=None, init=False, repr=False)

    def use_dataset(self, dataset) -> "TrainEvaluator":
        """Train on this loaded ``Dataset`` instead of loading ``data``."""
        self._dataset = dataset
        return self

    @property
    def epochs(self) -> int | None:
        """Epochs a full evaluation trains (``None``: a step budget, no per-epoch reports)."""
        from nasscale.scoring.train import TrainSettings

        s = self.settings or TrainSettings()
        return s.epochs if s.steps is None else None

    def score(self, spec: NetworkSpec, seed: int, report=None) -> float:
        from dataclasses import replace

        from nasscale.scoring.data import load_dataset
        from nasscale.scoring.train import TrainSettings, train_and_evaluate


        if self._dataset is None:
            self._dataset = load_dataset(self.data)
        settings = self.settings or TrainSettings()
        res = eval_resolution(self.relative, spec.resolution) if self.relative \
            else settings.resolution
        spec = spec.replace(num_classes=self._dataset.num_classes, resolution=res)
        model = build_seeded(spec, seed)
        settings = replace(settings, seed=seed, resolution=res)
        if self.signal == "sotl":
            from nasscale.scoring.train import train

            def record(entry: dict) -> None:
                if report is not None:
                    report(entry["epoch"], -entry["loss"])

            result = train(model, self._dataset, settings, on_record=record)
            return -result.history[-1]["loss"]
        return train_and_evaluate(model, self._dataset, settings, on_epoch=report)

    def score_model(self, model, spec: NetworkSpec, seed: int) -> float:
        from dataclasses import replace

        from nasscale.scoring.train import train

        if self._dataset is None:
            from nasscale.scoring.data import load_dataset

            self._dataset = load_dataset(self.data)
        return float(train(model, self._dataset, replace(self.settings, seed=seed)).accuracy)

    def describe(self) -> str:
        s = self.settings
        what = "minus the training loss (SoTL)" if self.signal == "sotl" else "top-1"
        amount = f"{s.steps} steps" if s.steps is not None else f"{s.epochs} epochs"
        return (f"{what} after {amount} on {self.data} at {s.resolution}px"
                if s else f"{what} on {self.data}")


@dataclass
class PythonEvaluator(Evaluator):
    target: str = ""
    name: str = "score"
    _fn: Callable | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._fn = load_callable(self.target)

    def score(self, spec: NetworkSpec, seed: int, report=None) -> float:
        return self.score_model(build_seeded(spec, seed), spec, seed)

    def score_model(self, model, spec: NetworkSpec, seed: int) -> float:
        result = self._fn(model, spec)
        if isinstance(result, dict):
            if "score" not in result:
                raise NasscaleError(f"{self.target} returned a mapping without 'score'")
            result = result["score"]
        try:
            return float(result)
        except (TypeError, ValueError):
            raise NasscaleError(f"{self.target} returned {result!r}, not a number") from None


def load_callable(target: str) -> Callable:
    """``package.module:function`` (an optional ``python:`` prefix is accepted)."""
    text = target.removeprefix("python:")
    module_name, _, attr = text.partition(":")
    if not module_name or not attr:
        raise NasscaleError(f"evaluator: {target!r} must look like python:package.module:function")
    import os
    import sys

    here = os.getcwd()  # the installed `nasscale` script does not put it on sys.path
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise NasscaleError(f"evaluator.target: cannot import module {module_name!r} ({err}); "
                            "the python evaluator imports it and runs it: it must be on "
                            f"PYTHONPATH or in the current folder ({here})") from None
    except Exception as err:  # noqa: BLE001 - the user's module failed while importing
        first = (str(err).splitlines() or [""])[0][:160]
        raise NasscaleError(f"evaluator.target: importing {module_name!r} failed: "
                            f"{type(err).__name__}: {first}") from None
    finally:
        if added:
            sys.path.remove(here)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise NasscaleError(f"evaluator.target: {module_name} has no callable {attr!r}")
    return fn


def parse_eval_resolution(value: Any, where: str = "evaluator.resolution") -> int | float:
    """An evaluator's input size: pixels (``64``) or a fraction of each candidate's own
    resolution (``"0.25x"``; coefficient studies need this so that γ still matters)."""
    from nasscale.scoring.fields import Resolution

    return Resolution().check(value, where)


from nasscale.units import eval_resolution  # noqa: E402 - re-exported: evaluators use it
