"""Scoring candidates: data sets and the bundled testbed, training, zero-cost proxies and the
evaluators that turn a network into a score.  Search and pruning both use it; it imports
nothing from either (and no Optuna)."""
