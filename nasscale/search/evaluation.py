"""The evaluator a study file describes: the scoring package's evaluators, or weight
inheritance from a trained parent (``search/inherit.py``), which needs the study's space."""
from __future__ import annotations

from nasscale.errors import NasscaleError
from nasscale.scoring.evaluators import (
    CostEvaluator,
    Evaluator,
    ProxyEvaluator,
    PythonEvaluator,
    TrainEvaluator,
    parse_eval_resolution,
)


def make_evaluator(study) -> Evaluator:
    """The evaluator a study file describes; datasets and user functions are loaded here, so a
    bad path fails once, before any trial."""
    cfg = dict(study.evaluator)
    kind = cfg.pop("kind")
    if kind == "python":
        return PythonEvaluator(target=cfg["target"], name=cfg.get("name", "score"))
    if kind == "inherit":  # weights carried from a trained parent (search/inherit.py)
        from nasscale.search.inherit_config import make_inherit_evaluator

        return make_inherit_evaluator(study)
    if kind == "train":
        from nasscale.scoring.data import load_dataset
        from nasscale.scoring.train import TrainSettings


        data = cfg.pop("data", "digits")
        signal = cfg.pop("signal", "accuracy")
        res = parse_eval_resolution(cfg.pop("resolution", 32))
        relative = res if isinstance(res, float) else None
        settings = TrainSettings(**cfg, resolution=res if relative is None else 32,
                                 seed=study.seed)
        try:  # e.g. device: cuda on a machine without CUDA, fp16 on the CPU: before any trial
            settings.check()
        except NasscaleError as err:
            raise NasscaleError(f"{study.path or 'study'}: evaluator.{err}") from None
        evaluator = TrainEvaluator(data=data, settings=settings, relative=relative,
                                   signal=signal, name="sotl" if signal == "sotl" else "accuracy")
        evaluator._dataset = load_dataset(data)
        return evaluator
    proxy = cfg.get("proxy", "naswot")
    if proxy in ("flops", "params"):
        return CostEvaluator(metric=proxy)

    res = cfg.get("resolution")
    evaluator = ProxyEvaluator(proxy=proxy, batch_size=cfg.get("batch_size", 16),
                               resolution=None if res is None else parse_eval_resolution(res),
                               data=cfg.get("data"))
    if evaluator.data is not None:
        from nasscale.scoring.data import load_dataset

        evaluator._dataset = load_dataset(evaluator.data)
    return evaluator
