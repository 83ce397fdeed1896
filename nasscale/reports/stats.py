"""Rank correlations for benchmarks: predicted vs measured latency, proxies vs accuracy
(numpy only)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n with ties given their average rank."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        if tied.sum() > 1:
            r[tied] = r[tied].mean()
    return r


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's ρ: the Pearson correlation of the ranks."""
    ra, rb = ranks(a), ranks(b)
    if len(ra) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's τ-b (ties in either sequence handled), O(n²)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    i, j = np.triu_indices(len(x), k=1)
    dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    concordant_minus_discordant = float(np.sum(dx * dy))
    nx, ny = float(np.sum(dx != 0)), float(np.sum(dy != 0))
    if nx == 0 or ny == 0:
        return float("nan")
    return concordant_minus_discordant / np.sqrt(nx * ny)


def bootstrap_tau(a: Sequence[float], b: Sequence[float], n: int = 2000,
                  seed: int = 0) -> list[float]:
    """A 95 % percentile interval of Kendall's τ over ``n`` resamples of the pairs; NaNs when
    every resample is tied."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(n):
        s = rng.integers(0, len(x), len(x))
        t = kendall_tau(x[s], y[s])
        if t == t:
            taus.append(t)
    if not taus:
        return [float("nan"), float("nan")]
    return [float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))]


def reliability(runs: Sequence[Sequence[float]]) -> dict:
    """How well repeated measurements of the same items agree.  ``runs[i][k]`` is item i's
    k-th measurement (every item measured the same K >= 2 times).

    - ``within_sd``: the pooled standard deviation of an item's measurements about its mean;
    - ``between_sd``: the standard deviation of the items' means; ``ratio`` = within / between;
    - ``pairwise_kendall``: Kendall's τ of run a against run b, over all pairs a < b (mean, min,
      max);
    - ``pearson_single_run``: the mean Pearson r of one run against another, and
      ``reliability_of_mean`` by Spearman-Brown for the K-run mean; ``tau_ceiling``: the τ a
      perfect evaluator would show against that mean (Greiner: τ = 2/π·asin(ρ), ρ = √rel).
    """
    m = np.asarray(runs, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2 or m.shape[0] < 3:
        raise ValueError("reliability needs at least 3 items measured at least twice each")
    n, k = m.shape
    within = float(np.sqrt(np.mean(np.var(m, axis=1, ddof=1))))
    between = float(np.std(m.mean(axis=1), ddof=1))
    pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    taus = [kendall_tau(m[:, a], m[:, b]) for a, b in pairs]
    r1 = float(np.mean([np.corrcoef(m[:, a], m[:, b])[0, 1] for a, b in pairs]))
    rel = k * r1 / (1 + (k - 1) * r1) if r1 > 0 else 0.0
    return {"items": n, "runs": k, "within_sd": within, "between_sd": between,
            "ratio": within / between if between > 0 else float("inf"),
            "pairwise_kendall": {"mean": float(np.mean(taus)), "min": float(min(taus)),
                                 "max": float(max(taus)), "pairs": len(pairs)},
            "seed0_vs_seed1_kendall_95": bootstrap_tau(m[:, 0], m[:, 1]),
            "pearson_single_run": r1, "reliability_of_mean": rel,
            "tau_ceiling": float(2 / np.pi * np.arcsin(np.sqrt(rel)))}
