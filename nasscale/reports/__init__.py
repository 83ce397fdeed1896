"""Reports: text tables here; DataFrames, CSV and plots (pandas/matplotlib) in submodules."""
