"""Architecture search: spaces over the grammar, Optuna studies, objectives, storages.

This is the only package that imports optuna (lazily, in the study runner).
"""
from nasscale.search.outputs import summary_text
from nasscale.search.runner import RunOptions, run_search
from nasscale.search.sources import parse_source
from nasscale.search.space import NotInSpace, SearchSpace, same_architecture
from nasscale.search.space_io import load_space, space_names
from nasscale.search.storage import trial_user_attrs
from nasscale.search.study import StudySpec, load_study

__all__ = ["NotInSpace", "RunOptions", "SearchSpace", "StudySpec", "load_space", "load_study",
           "parse_source", "run_search", "same_architecture", "space_names", "summary_text",
           "trial_user_attrs"]
