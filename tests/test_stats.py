"""Rank correlations and the reliability of repeated measurements (the fidelity benchmark's
statistics)."""
import math

import numpy as np
import pytest

from nasscale.reports.stats import bootstrap_tau, kendall_tau, reliability, spearman


def test_kendall_and_spearman_on_known_orders():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert spearman([1, 2, 3, 4], [1, 2, 4, 3]) == pytest.approx(0.8)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))


def test_reliability_of_seeds_that_agree_and_that_do_not():
    means = np.linspace(0.4, 0.7, 10)
    same = reliability([[m, m] for m in means])
    assert same["within_sd"] == 0 and same["pairwise_kendall"]["mean"] == 1.0
    assert same["reliability_of_mean"] == pytest.approx(1.0)
    assert same["tau_ceiling"] == pytest.approx(1.0)
    # a known within-network noise: +-d about each mean, 3 runs
    d = 0.01
    runs = [[m - d, m, m + d] if i % 2 else [m + d, m, m - d] for i, m in enumerate(means)]
    r = reliability(runs)
    assert r["within_sd"] == pytest.approx(d)
    assert r["between_sd"] == pytest.approx(np.std(means, ddof=1))
    assert r["ratio"] == pytest.approx(d / np.std(means, ddof=1))
    assert r["pairwise_kendall"]["pairs"] == 3 and r["runs"] == 3 and r["items"] == 10
    # Spearman-Brown: the 3-run mean is more reliable than one run
    assert r["reliability_of_mean"] > r["pearson_single_run"]
    lo, hi = r["seed0_vs_seed1_kendall_95"]
    assert lo <= kendall_tau([x[0] for x in runs], [x[1] for x in runs]) <= hi


def test_reliability_needs_repeats():
    with pytest.raises(ValueError, match="at least 3 items measured at least twice"):
        reliability([[0.1], [0.2], [0.3]])
    with pytest.raises(ValueError):
        reliability([[0.1, 0.2], [0.2, 0.3]])


def test_bootstrap_interval_of_a_constant_is_nan():
    lo, hi = bootstrap_tau([1, 1, 1, 1], [1, 2, 3, 4], n=50)
    assert math.isnan(lo) and math.isnan(hi)
    lo, hi = bootstrap_tau(list(range(20)), list(range(20)), n=50)
    assert lo == hi == 1.0
