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
)


def make_evaluator(study) -> Evaluator:
    """The evaluator a study file describes (its typed ``EvaluatorConfig``); datasets and user
    functions are loaded here, so a bad path fails once, before any trial."""
    cfg = study.evaluator
    if cfg.kind == "python":
        return PythonEvaluator(target=cfg.target, name=cfg.name)
    if cfg.kind == "inherit":  # weights carried from a trained parent (search/inherit.py)
        from nasscale.search.inherit_config import make_inherit_evaluator

        return make_inherit_evaluator(study)
    if cfg.kind == "train":
        return _train_evaluator(study)
    if cfg.proxy in ("flops", "params"):
        return CostEvaluator(metric=cfg.proxy)
    evaluator = ProxyEvaluator(proxy=cfg.proxy, batch_size=cfg.batch_size,
                               resolution=cfg.resolution, data=study.data_source)
    if evaluator.data is not None:
        from nasscale.scoring.data import load_dataset

        evaluator._dataset = load_dataset(evaluator.data)
    return evaluator


def _train_evaluator(study) -> TrainEvaluator:
    """Short training on the study's data (loaded once here), at the study's resolution or
    the data's own image size."""
    from nasscale.scoring.data import load_dataset
    from nasscale.search.study_data import dataset_resolution

    cfg = study.evaluator
    dataset = load_dataset(study.data_source)
    settings = cfg.train_settings(study.seed, dataset_resolution(dataset))
    try:  # e.g. device: cuda on a machine without CUDA, fp16 on the CPU: before any trial
        settings.check()
    except NasscaleError as err:
        raise NasscaleError(f"{study.path or 'study'}: evaluator.{err}") from None
    res = cfg.resolution
    evaluator = TrainEvaluator(data=study.data_source, settings=settings,
                               relative=res if isinstance(res, float) else None,
                               signal=cfg.signal,
                               name="sotl" if cfg.signal == "sotl" else "accuracy")
    evaluator._dataset = dataset
    return evaluator
