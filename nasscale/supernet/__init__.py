"""Weight-sharing supernets: train a space's largest member so that every subnetwork is good at
once (the sandwich rule with in-place distillation, channels sorted by importance), then score
or extract any subnetwork in seconds by cutting its weights and recalibrating BatchNorm.
``nasscale supernet train`` / ``extract`` and the ``supernet`` evaluator of studies use it."""

#: exported names -> the module that defines them, imported on first use (torch is heavy)
_LAZY = {
    "SupernetSettings": "nasscale.supernet.settings",
    "Supernet": "nasscale.supernet.subnet",
    "train_supernet": "nasscale.supernet.train",
    "TrainJob": "nasscale.supernet.jobs", "run_train_job": "nasscale.supernet.jobs",
    "extract_job": "nasscale.supernet.jobs", "space_of": "nasscale.supernet.jobs",
    "train_text": "nasscale.supernet.jobs", "extract_text": "nasscale.supernet.jobs",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'nasscale.supernet' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
