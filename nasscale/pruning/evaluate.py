"""How NetAdapt scores a proposal (higher is better).

``--evaluator`` forms:

- ``proxy[:naswot|synflow][,resolution=R][,batch=B][,data=SOURCE]``: a zero-cost proxy on one
  batch (default ``proxy:naswot,resolution=0.5x,batch=16``, random inputs).  ``R`` is pixels or
  a fraction of the network's resolution (``0.5x``).
- ``train:SOURCE[,epochs=N][,subset=K][,resolution=R][,lr=F][,batch=B]``: short-term
  fine-tuning on a dataset (``digits``, an ``.npz`` file or an image folder; see
  ``nasscale.search.data``), then top-1 on its held-out split — NetAdapt's own criterion.
- ``python:package.module:function``: ``function(model, spec)`` returns a number (or a mapping
  with ``score``).

With ``--weights`` the module scored is the pruned network carrying the kept filters (and, for
``train``, fine-tuned from them; the fine-tuned weights of the chosen proposal go on to the next
iteration, as in NetAdapt).  Without weights the structure alone is scored: a freshly
initialised module, seeded by the architecture so that the same network always scores the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from nasscale.errors import NasscaleError
from nasscale.specs import NetworkSpec

EVALUATOR_HELP = ("proxy[:naswot|synflow][,resolution=R][,batch=B][,data=SOURCE], "
                  "train:SOURCE[,epochs=N][,subset=K][,resolution=R][,lr=F][,batch=B] or "
                  "python:package.module:function")


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
            raise NasscaleError(f"--evaluator {text!r}: {key}={value!r} is not valid") from None
    return out


def _resolution(value: str):
    from nasscale.search.study import parse_eval_resolution

    try:
        return parse_eval_resolution(value if value.endswith("x") else int(value))
    except NasscaleError as err:
        raise ValueError(str(err)) from None


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
    train: Any = None  # TrainSettings
    fn: Callable | None = None
    seed: int = 0
    _dataset: Any = field(default=None, init=False, repr=False)
    _proxy: Any = field(default=None, init=False, repr=False)  # the search's ProxyEvaluator

    def __post_init__(self) -> None:
        if self.kind == "proxy":
            from nasscale.search.evaluators import ProxyEvaluator

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
            return (f"top-1 on {self.data}'s held-out split after {s.epochs} epoch(s) of "
                    f"short-term fine-tuning at {s.resolution}px")
        return self.text

    def dataset(self):
        if self._dataset is None and self.data:
            from nasscale.search.data import load_dataset

            self._dataset = load_dataset(self.data)
            if self._proxy is not None:
                self._proxy._dataset = self._dataset
        return self._dataset

    def check(self, spec: NetworkSpec, weighted: bool) -> None:
        """Set-up errors before the first iteration (data missing, class counts that differ)."""
        data = self.dataset()
        if self.kind == "train" and weighted and data.num_classes != spec.num_classes:
            raise NasscaleError(
                f"--evaluator {self.text!r}: the weights classify {spec.num_classes} classes but "
                f"{self.data} has {data.num_classes}; fine-tune the checkpoint's classifier on "
                "the data first, or prune without --weights (structure only)")

    def score(self, spec: NetworkSpec, model=None):
        from nasscale.search.evaluators import arch_seed, build_seeded

        seed = arch_seed(self.seed, spec)
        if self.kind == "train":
            from nasscale.search.train import train_and_evaluate

            data = self.dataset()
            if model is None:
                model = build_seeded(spec.replace(num_classes=data.num_classes), seed)
            acc = train_and_evaluate(model, data, replace(self.train, seed=self.seed))
            return float(acc), model
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
        from nasscale.search.study import eval_resolution

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
        from nasscale.search.proxies import PROXIES

        proxy = arg or "naswot"
        if proxy not in PROXIES:
            raise NasscaleError(f"--evaluator {text!r}: unknown proxy {proxy!r}; known: "
                                f"{', '.join(PROXIES)}")
        opts = _options(parts, {"resolution": _resolution, "batch": int, "data": str}, text)
        ev = PruneEvaluator("proxy", text, proxy=proxy, seed=seed,
                            resolution=opts.get("resolution", 0.5),
                            batch=opts.get("batch", 16), data=opts.get("data"))
    elif kind == "train":
        from nasscale.search.train import TrainSettings

        if not arg:
            raise NasscaleError(f"--evaluator {text!r}: name the data, e.g. train:digits")
        opts = _options(parts, {"epochs": int, "subset": int, "resolution": int, "lr": float,
                                "batch": int}, text)
        settings = TrainSettings(epochs=opts.get("epochs", 1), subset=opts.get("subset"),
                                 resolution=opts.get("resolution", 32),
                                 lr=opts.get("lr", 0.01), batch_size=opts.get("batch", 32),
                                 seed=seed)
        ev = PruneEvaluator("train", text, data=arg, train=settings, seed=seed)
    elif kind == "python":
        from nasscale.search.evaluators import load_callable

        ev = PruneEvaluator("python", text, fn=load_callable(text), seed=seed)
    else:
        raise NasscaleError(f"--evaluator {text!r}: unknown kind {kind!r}; forms: "
                            f"{EVALUATOR_HELP}")
    ev.dataset()  # a bad data path fails now, before any iteration
    return ev
