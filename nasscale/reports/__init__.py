"""Reports: text tables and progress bars here; DataFrames, CSV and plots (pandas/matplotlib)
in submodules."""
from nasscale.reports.progress import Progress
from nasscale.reports.text import FLOPS_CONVENTION, si, table

__all__ = ["FLOPS_CONVENTION", "Progress", "si", "table"]
