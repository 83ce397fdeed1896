"""How NetAdapt scores a proposal (higher is better), and its long-term fine-tuning.

``--evaluator`` forms:

- ``proxy[:naswot|synflow][,resolution=R][,batch=B][,data=SOURCE]``: a zero-cost proxy on one
  batch (default ``proxy:naswot,resolution=0.5x,batch=16``, random inputs).  ``R`` is pixels or
  a fraction of the network's resolution (``0.5x``).
- ``train:SOURCE[,steps=N|epochs=E][,final_epochs=M][,final_lr=F][,subset=K][,resolution=R]
  [,lr=F][,batch=B][,device=auto|cpu|cuda][,amp=none|bf16|fp16][,channels_last=1]
  [,progressive=1][,threads=T]``: NetAdapt's own criterion, on a dataset (``digits``, an ``.npz`` file or
  an image folder; see ``nasscale.scoring.data``).  *Short-term* fine-tuning: every proposal
  (and the start network) trains ``steps`` optimizer steps (default 50), or ``epochs`` epochs
  instead (one or the other), and scores top-1 on the held-out split.  *Long-term*
  fine-tuning: once the final network is settled (after any latency check that prunes on), it
  trains ``final_epochs`` epochs (default 5 with ``--weights``; it needs ``--weights``) at
  ``final_lr`` (default ``lr``, 0.01) from the last iteration's weights; top-1 before and
  after is reported, and ``OUT/pruned.pt`` holds the long-term weights.  Training is
  ``nasscale train``'s loop and recipe (``nasscale.scoring.train``: SGD with Nesterov momentum,
  cosine decay over the run, label smoothing, random resized crops); ``device`` is where it
  trains (default ``auto``: CUDA when present), not ``--device``, which is where latency is
  measured.  Defaults otherwise: ``lr=0.01,batch=32``, the resolution of the data's images
  (at least 32 px) and the threads other processes leave idle (``nasscale.scoring.threads``).
- ``python:package.module:function``: ``function(model, spec)`` returns a number (or a mapping
  with ``score``).

With ``--weights`` the module scored is the pruned network carrying the kept filters (and, for
``train``, fine-tuned from them; the fine-tuned weights of the chosen proposal go on to the next
iteration, as in NetAdapt).  Without weights the structure alone is scored: a freshly
initialised module, seeded by the architecture so that the same network always scores the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from nasscale.errors import NasscaleError
from nasscale.specs import NetworkSpec

EVALUATOR_HELP = ("proxy[:naswot|synflow][,resolution=R][,batch=B][,data=SOURCE], "
                  "train:SOURCE[,steps=N|epochs=E][,final_epochs=M][,final_lr=F][,subset=K]"
                  "[,resolution=R][,lr=F][,batch=B][,device=auto|cpu|cuda]"
                  "[,amp=none|bf16|fp16][,channels_last=1][,progressive=1][,threads=T] or "
                  "python:package.module:function")
#: short-term fine-tuning steps per proposal, and long-term epochs with weights, by default
DEFAULT_STEPS = 50
DEFAULT_FINAL_EPOCHS = 5


def _options(parts: list[str], allowed: dict[str, Callable[[str], Any]], text: str) -> dict:
    out = {}
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            raise NasscaleError(f"--evaluator {text!r}: unknown option {part!r}; allowed: "
                                f"{', '.join(allowed)} (forms: {EVALUATOR_HELP})")
        try:
            out[key] = allowed[key](value.strip())
        except ValueError:
            want = _WANT.get(allowed[key])
            raise NasscaleError(f"--evaluator {text!r}: {key}={value!r} is not valid"
                                + (f"; give {want}" if want else "")) from None
    return out


def _flag(value: str) -> bool:
    text = value.lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def _resolution(value: str):
    from nasscale.scoring.evaluators import parse_eval_resolution

    try:
        return parse_eval_resolution(value if value.endswith("x") else int(value))
    except NasscaleError as err:
        raise ValueError(str(err)) from None


_WANT = {int: "an integer", float: "a number", _flag: "1 or 0",
         _resolution: "pixels or a fraction of the network's, e.g. 0.5x"}


@dataclass
class PruneEvaluator:
    """Scores a proposal: ``score(spec, model)`` where ``model`` is the module with carried
    weights, or ``None`` (structure only: the evaluator builds it).  Returns ``(score, model)``;
    the model is what the next iteration starts from when weights are carried."""

    kind: str
    text: str
    proxy: str = "naswot"
    resolution: Any = 0.5
    batch: int = 16
    data: str | None = None
    train: Any = None  # TrainSettings of the short-term fine-tuning
    final_epochs: int | None = None  # long-term epochs (None: the default, see final_settings)
    final_lr: float | None = None  # long-term learning rate (None: the short-term one)
    fn: Callable | None = None
    seed: int = 0
    _dataset: Any = field(default=None, init=False, repr=False)
    _proxy: Any = field(default=None, init=False, repr=False)  # the search's ProxyEvaluator

    def __post_init__(self) -> None:
        if self.kind == "proxy":
            from nasscale.scoring.evaluators import ProxyEvaluator

            self._proxy = ProxyEvaluator(proxy=self.proxy, batch_size=self.batch, data=self.data)

    @property
    def name(self) -> str:
        return {"proxy": self.proxy, "train": "accuracy", "python": "score"}[self.kind]

    def describe(self) -> str:
        if self.kind == "proxy":
            res = (f"{self.resolution:g}x" if isinstance(self.resolution, float)
                   else f"{self.resolution}px")
            return (f"{self.proxy} proxy on a batch of {self.batch} "
                    f"({self.data or 'random inputs'}) at {res}")
        if self.kind == "train":
            s = self.train
            amount = f"{s.steps} steps" if s.steps is not None else f"{s.epochs} epoch(s)"
            return (f"top-1 on {self.data}'s held-out split after {amount} of short-term "
                    f"fine-tuning at {s.resolution}px (lr {s.lr:g}, batch {s.batch_size}, "
                    f"device {s.device}" + (f", amp {s.amp}" if s.amp != "none" else "") + ")")
        return self.text

    def final_settings(self, weighted: bool):
        """The long-term fine-tuning's settings, or ``None`` when there is none: only the
        ``train`` evaluator has it, ``final_epochs`` epochs (default ``DEFAULT_FINAL_EPOCHS``
        with weights, 0 without) at ``final_lr`` (default the short-term lr)."""
        if self.kind != "train":
            return None
        epochs = self.final_epochs
        if epochs is None:
            epochs = DEFAULT_FINAL_EPOCHS if weighted else 0
        if epochs == 0:
            return None
        return replace(self.train, epochs=epochs, steps=None,
                       lr=self.final_lr if self.final_lr is not None else self.train.lr)

    def fine_tune(self, spec: NetworkSpec, model, settings, progress: bool = False) -> dict:
        """NetAdapt's long-term fine-tuning of the final network: ``model`` (its carried,
        short-term fine-tuned weights) trains in place with ``settings`` (``final_settings``);
        returns the held-out top-1 before and after, and the run (epochs, steps, seconds,
        device, per-epoch history)."""
        import torch

        from nasscale.scoring import train as training

        s = settings
        data = self.dataset()
        _, _, vx, vy = data.split(s.val_fraction, s.seed, s.subset)  # the split train() holds out
        device = training.resolve_device(s.device)
        memory = torch.channels_last if s.channels_last else torch.contiguous_format
        before = training.evaluate(
            model.to(device=device, memory_format=memory), vx, vy, s.resolution, device,
            s.augment, memory, {"bf16": torch.bfloat16, "fp16": torch.float16}.get(s.amp))
        run = training.train(model, data, s, progress=progress,
                             label=f"long-term fine-tuning {spec.name}")
        return {"epochs": s.epochs, "lr": s.lr, "accuracy_before": float(before),
                "accuracy_after": float(run.accuracy), "steps": run.steps,
                "seconds": round(run.seconds, 1), "device": run.device,
                "history": run.history}

    def dataset(self):
        if self._dataset is None and self.data:
            from nasscale.scoring.data import load_dataset

            self._dataset = load_dataset(self.data)
            if self._proxy is not None:
                self._proxy._dataset = self._dataset
        return self._dataset

    def check(self, spec: NetworkSpec, weighted: bool) -> None:
        """Set-up errors before the first iteration (data missing, class counts that differ)."""
        data = self.dataset()
        if self.kind == "train" and self.final_epochs and not weighted:
            raise NasscaleError(
                f"--evaluator {self.text!r}: final_epochs={self.final_epochs} fine-tunes carried "
                "weights; give --weights, or train the result: nasscale train OUT/final.yaml")
        if self.kind == "train" and weighted and data.num_classes != spec.num_classes:
            raise NasscaleError(
                f"--evaluator {self.text!r}: the weights classify {spec.num_classes} classes but "
                f"{self.data} has {data.num_classes}; fine-tune the checkpoint's classifier on "
                "the data first, or prune without --weights (structure only)")

    def score(self, spec: NetworkSpec, model=None):
        from nasscale.scoring.evaluators import arch_seed, build_seeded

        seed = arch_seed(self.seed, spec)
        if self.kind == "train":  # short-term fine-tuning
            from nasscale.scoring import train as training

            data = self.dataset()
            if model is None:
                model = build_seeded(spec.replace(num_classes=data.num_classes), seed)
            return float(training.train(model, data, self.train).accuracy), model
        if model is None:
            model = build_seeded(spec, seed)
        if self.kind == "python":
            result = self.fn(model, spec)
            if isinstance(result, dict):
                result = result.get("score")
            try:
                return float(result), model
            except (TypeError, ValueError):
                raise NasscaleError(f"{self.text} returned {result!r}, not a number") from None
        from nasscale.scoring.evaluators import eval_resolution

        res = eval_resolution(self.resolution, spec.resolution)
        was_training = model.training
        try:  # every proposal sees the same batch (the study seed), so scores compare
            return float(self._proxy.score_module(model, spec, self.seed, res)), model
        finally:
            model.train(was_training)


def make_evaluator(text: str | None, seed: int = 0) -> PruneEvaluator:
    """Parse ``--evaluator`` (see module doc); a bad form names the allowed ones."""
    text = text or "proxy:naswot,resolution=0.5x,batch=16"
    head, *parts = [p for p in text.split(",")]
    kind, _, arg = head.partition(":")
    kind = kind.strip()
    if kind == "proxy":
        from nasscale.scoring.proxies import PROXIES

        proxy = arg or "naswot"
        if proxy not in PROXIES:
            raise NasscaleError(f"--evaluator {text!r}: unknown proxy {proxy!r}; known: "
                                f"{', '.join(PROXIES)}")
        opts = _options(parts, {"resolution": _resolution, "batch": int, "data": str}, text)
        ev = PruneEvaluator("proxy", text, proxy=proxy, seed=seed,
                            resolution=opts.get("resolution", 0.5),
                            batch=opts.get("batch", 16), data=opts.get("data"))
    elif kind == "train":
        from nasscale.scoring.train import TrainSettings

        if not arg:
            raise NasscaleError(f"--evaluator {text!r}: name the data, e.g. train:digits")
        opts = _options(parts, {"steps": int, "epochs": int, "final_epochs": int,
                                "final_lr": float, "subset": int, "resolution": int,
                                "lr": float, "batch": int, "device": str, "amp": str,
                                "channels_last": _flag, "progressive": _flag,
                                "threads": int}, text)
        if "steps" in opts and "epochs" in opts:
            raise NasscaleError(f"--evaluator {text!r}: give steps=N or epochs=E for the "
                                "short-term fine-tuning, not both")
        settings = TrainSettings(
            epochs=opts.get("epochs", 1),
            steps=None if "epochs" in opts else opts.get("steps", DEFAULT_STEPS),
            subset=opts.get("subset"), resolution=opts.get("resolution", 32),
            lr=opts.get("lr", 0.01), batch_size=opts.get("batch", 32), seed=seed,
            device=opts.get("device", "auto"), amp=opts.get("amp", "none"),
            channels_last=opts.get("channels_last", False),
            progressive=opts.get("progressive", False), threads=opts.get("threads"))
        final_epochs, final_lr = opts.get("final_epochs"), opts.get("final_lr")
        if final_epochs is not None and final_epochs < 0:
            raise NasscaleError(f"--evaluator {text!r}: final_epochs: must be an integer >= 0 "
                                f"(0: no long-term fine-tuning), got {final_epochs}")
        try:  # device cuda without CUDA, fp16 on the CPU, steps=0: before any iteration
            settings.check()
        except NasscaleError as err:
            raise NasscaleError(f"--evaluator {text!r}: {err}") from None
        if final_lr is not None and not (math.isfinite(final_lr) and final_lr > 0):
            raise NasscaleError(f"--evaluator {text!r}: final_lr: must be a number > 0, got "
                                f"{final_lr:g}")
        ev = PruneEvaluator("train", text, data=arg, train=settings, seed=seed,
                            final_epochs=final_epochs, final_lr=final_lr)
    elif kind == "python":
        from nasscale.scoring.evaluators import load_callable

        ev = PruneEvaluator("python", text, fn=load_callable(text), seed=seed)
    else:
        raise NasscaleError(f"--evaluator {text!r}: unknown kind {kind!r}; forms: "
                            f"{EVALUATOR_HELP}")
    data = ev.dataset()  # a bad data path fails now, before any iteration
    if kind == "train" and "resolution" not in opts:  # the data's own image size
        from nasscale.scoring.data import default_resolution

        ev.train = replace(ev.train, resolution=default_resolution(max(data.image_size)))
    return ev
