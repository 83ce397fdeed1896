"""Architecture search: spaces over the grammar, Optuna studies, objectives, storages.

This is the only package that imports optuna (lazily, in the study runner).
"""
from nasscale.search.outputs import chance_warning, summary_text
from nasscale.search.runner import RunOptions, run_search
from nasscale.search.setup import describe_storage
from nasscale.search.sources import parse_source
from nasscale.search.space import NotInSpace, SearchSpace, same_architecture
from nasscale.search.space_io import load_space, space_names
from nasscale.search.storage import redact, trial_user_attrs
from nasscale.search.study import StudySpec, check_study_name, load_study

__all__ = ["NotInSpace", "RunOptions", "SearchSpace", "StudySpec", "chance_warning",
           "check_study_name", "describe_storage", "load_space", "load_study", "parse_source",
           "redact", "run_search", "same_architecture", "space_names", "summary_text",
           "trial_user_attrs"]
