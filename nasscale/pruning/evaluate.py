"""How NetAdapt scores a proposal (higher is better), and its long-term fine-tuning.

``--evaluator`` forms:

The forms are the text of the same evaluator specs a study's ``evaluator:`` mapping reads
(``nasscale.scoring.kinds``: ``kind:ARG,key=value``; ``batch`` is read as ``batch_size``):

- ``proxy[:naswot|synflow][,resolution=R][,batch_size=B][,data=SOURCE]``: a zero-cost proxy on
  one batch (default ``proxy:naswot,resolution=0.5x,batch_size=16``, random inputs).  ``R`` is
  pixels or a fraction of the network's resolution (``0.5x``).
- ``train:SOURCE[,steps=N|epochs=E][,final_epochs=M][,final_lr=F][,subset=K][,resolution=R]
  [,lr=F][,batch=B][,device=auto|cpu|cuda][,amp=none|bf16|fp16][,channels_last=1]
  [,progressive=1][,threads=T]``: NetAdapt's own criterion, on a dataset (``digits``, an
  ``.npz`` file or an image folder; see ``nasscale.scoring.data``).  *Short-term*
  fine-tuning: every proposal (and the start network) trains ``steps`` optimizer steps
  (default 50), or ``epochs`` epochs instead (one or the other), and scores top-1 on the
  held-out split.  *Long-term*
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

from dataclasses import dataclass, replace
from typing import Any

from nasscale.errors import NasscaleError, SpecError
from nasscale.scoring.evaluator_spec import BuildContext, EvaluatorSpec
from nasscale.scoring.evaluators import Evaluator, arch_seed, build_seeded
from nasscale.scoring.kinds import evaluator_forms, evaluator_from_text
from nasscale.scoring.settings import TrainSettings
from nasscale.specs import NetworkSpec

EVALUATOR_HELP = evaluator_forms("prune")
#: the evaluator when none is given
DEFAULT = "proxy:naswot,resolution=0.5x,batch_size=16"
#: a proxy's resolution when the text gives none: half the network's (proposals are many)
PROXY_RESOLUTION = 0.5
#: NetAdapt's short-term fine-tuning, what ``train:`` keys that are not given take: the
#: fine-tuning budget (``FINE_TUNE``: 50 steps at lr 0.01, batch 32), one epoch when epochs
#: replace steps, in NCHW
SHORT_TERM = replace(TrainSettings(epochs=1, steps=50, lr=0.01, batch_size=32),
                     channels_last=False)
DEFAULT_STEPS = SHORT_TERM.steps
#: long-term fine-tuning epochs of the final network, with weights, by default
DEFAULT_FINAL_EPOCHS = 5


@dataclass
class PruneEvaluator:
    """Scores a proposal: ``score(spec, model)`` where ``model`` is the module with carried
    weights, or ``None`` (structure only: a seeded module is built).  Returns ``(score,
    model)``; the model is what the next iteration starts from when weights are carried."""

    spec: EvaluatorSpec
    evaluator: Evaluator
    text: str
    seed: int = 0

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def name(self) -> str:
        return self.evaluator.name

    def describe(self) -> str:
        text = self.evaluator.describe()
        return f"{text} (short-term fine-tuning)" if self.spec.trains else text

    @property
    def train(self) -> TrainSettings | None:
        """The short-term fine-tuning's settings (``None``: the evaluator does not train)."""
        return getattr(self.evaluator, "settings", None) if self.spec.trains else None

    def dataset(self):
        return getattr(self.evaluator, "_dataset", None)

    def final_settings(self, weighted: bool) -> TrainSettings | None:
        """The long-term fine-tuning's settings, or ``None`` when there is none: only a
        training evaluator has it, ``final_epochs`` epochs (default ``DEFAULT_FINAL_EPOCHS``
        with weights, 0 without) at ``final_lr`` (default the short-term lr)."""
        if not self.spec.trains:
            return None
        epochs = getattr(self.spec, "final_epochs", None)
        if epochs is None:
            epochs = DEFAULT_FINAL_EPOCHS if weighted else 0
        if epochs == 0:
            return None
        settings = self.evaluator.settings
        final_lr = getattr(self.spec, "final_lr", None)
        return replace(settings, epochs=epochs, steps=None,
                       lr=final_lr if final_lr is not None else settings.lr)

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

    def check(self, spec: NetworkSpec, weighted: bool) -> None:
        """Set-up errors before the first iteration (class counts that differ, long-term
        fine-tuning without weights)."""
        if not self.spec.trains:
            return
        final_epochs = getattr(self.spec, "final_epochs", None)
        if final_epochs and not weighted:
            raise NasscaleError(
                f"--evaluator {self.text!r}: final_epochs={final_epochs} fine-tunes carried "
                "weights; give --weights, or train the result: nasscale train OUT/final.yaml")
        data = self.dataset()
        if weighted and data.num_classes != spec.num_classes:
            raise NasscaleError(
                f"--evaluator {self.text!r}: the weights classify {spec.num_classes} classes but "
                f"{self.spec.data} has {data.num_classes}; fine-tune the checkpoint's classifier "
                "on the data first, or prune without --weights (structure only)")

    def score(self, spec: NetworkSpec, model=None) -> tuple[float, Any]:
        if model is None:
            data = self.dataset() if self.spec.trains else None
            built = spec.replace(num_classes=data.num_classes) if data is not None else spec
            model = build_seeded(built, arch_seed(self.seed, spec))
        return float(self.evaluator.score_model(model, spec, self.seed)), model


def make_evaluator(text: str | None, seed: int = 0) -> PruneEvaluator:
    """Parse ``--evaluator`` (see module doc) into its spec and build it: data sets and user
    functions load now, so a bad one fails before any iteration."""
    text = text or DEFAULT
    try:
        spec = evaluator_from_text(text, "prune")
        if spec.kind == "train" and not spec.written.get("data"):
            raise SpecError("name the data, e.g. train:digits", ("--evaluator",))
        if getattr(spec, "resolution", 0) is None and not spec.trains:
            spec = spec.replace(resolution=PROXY_RESOLUTION)
        evaluator = spec.build(BuildContext(seed=seed, context="prune", train_base=SHORT_TERM))
    except SpecError as err:  # --evaluator 'TEXT': key: message
        keys = ".".join(w.replace("--evaluator", "").strip(".") for w in err.where).strip(".")
        raise NasscaleError(f"--evaluator {text!r}: " + (f"{keys}: " if keys else "")
                            + err.message) from None
    return PruneEvaluator(spec=spec, evaluator=evaluator, text=text, seed=seed)
