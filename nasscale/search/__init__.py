"""Architecture search: spaces over the grammar, Optuna studies, objectives, storages.

This is the only package that imports optuna (lazily, in the study runner).
"""
from nasscale.search.space import NotInSpace, SearchSpace, same_architecture
from nasscale.search.space_io import load_space, space_names

__all__ = ["NotInSpace", "SearchSpace", "load_space", "same_architecture", "space_names"]
