"""The space a study names: ``make_space`` (a grammar space from ``spaces/search/`` or a path
relative to the study file, or a coefficient grid).  Paths in study files are resolved by
``nasscale.reports.paths.resolve_path``, re-exported here."""
from __future__ import annotations

from nasscale.reports.paths import resolve_path
from nasscale.search.coefficients import coefficient_space_from_data
from nasscale.search.space_io import load_space

__all__ = ["make_space", "resolve_path"]


def make_space(study):
    """The study's search space: a grammar space, or a coefficient grid."""
    if study.coefficients is not None:
        return coefficient_space_from_data(study.coefficients)
    return load_space(resolve_path(study.space, study.path))
