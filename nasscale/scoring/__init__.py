"""Scoring candidates: data sets and the bundled testbed, training, zero-cost proxies and the
evaluators that turn a network into a score.  Search and pruning both use it; it imports
nothing from either (and no Optuna)."""

#: exported names -> the module that defines them, imported on first use: training imports
#: torch, and ``import nasscale.scoring`` stays light (PEP 562)
_LAZY = {
    "AMP": "nasscale.scoring.train", "DEVICES": "nasscale.scoring.train",
    "TrainSettings": "nasscale.scoring.train", "train": "nasscale.scoring.train",
    "recipe_for": "nasscale.scoring.train", "MAX_TRAIN_RESOLUTION": "nasscale.scoring.train",
    "TrainJob": "nasscale.scoring.train_job", "record_text": "nasscale.scoring.train_job",
    "run_train_job": "nasscale.scoring.train_job",
    "load_dataset": "nasscale.scoring.data",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'nasscale.scoring' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
