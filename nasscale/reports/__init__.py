"""Reports: text tables, progress bars and checked output paths here; DataFrames, CSV and plots
(pandas/matplotlib) in submodules."""
from nasscale.reports.paths import output_dir, output_file
from nasscale.reports.progress import Progress
from nasscale.reports.text import FLOPS_CONVENTION, si, table

__all__ = ["FLOPS_CONVENTION", "Progress", "output_dir", "output_file", "si", "table"]
