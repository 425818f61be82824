"""Dataset-level statistics: does a method beat the random control *on this data*?

A review asks it of many inputs at once, and a paired test across inputs answers it with a
few random orders per input where a per-input test needs at least ``1 / alpha - 1``. Per
input, the difference is the method's deletion AOPC less the mean AOPC of that input's
first random orders (``aopc_minus_random`` in the faithfulness block: same features, same
perturbation, same curve points). Across inputs:

* a one-sided Wilcoxon signed-rank test that the differences lie above 0 (Wilcoxon 1945;
  ``scipy.stats.wilcoxon``: zero differences dropped, the exact null distribution up to 50
  differences (approximate where two ``|d|`` tie), the normal approximation above);
* its effect size, the matched-pairs rank-biserial correlation
  ``r = (T+ - T-) / (T+ + T-)`` (Kerby 2014; 1: every difference positive, 0: balanced);
* a 95 % percentile-bootstrap interval of the mean difference (``scipy.stats.bootstrap``,
  2,000 resamples, seeded; above 20,000 inputs the normal interval
  ``mean +- 1.96 s / sqrt(n)``, which the bootstrap matches at that size).

The verdict is ``beats_random = p <= alpha``. Each method is tested on its own, with no
correction for testing several.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
from scipy import stats

#: resamples of the bootstrap interval of the mean difference
BOOTSTRAP_RESAMPLES = 2000
#: above this many inputs the interval is the normal one (the bootstrap's cost grows with n)
BOOTSTRAP_MAX = 20000
#: the test, in one line (summaries print it)
TEST = ("one-sided Wilcoxon signed-rank test across inputs of the per-input difference "
        "deletion AOPC - mean AOPC of the input's random orders")


def rank_biserial(differences: Sequence[float]) -> float:
    """Matched-pairs rank-biserial correlation of ``differences`` (zeros dropped; NaN when
    none is left): ``(T+ - T-) / (T+ + T-)`` over the ranks of ``|d|``, ties averaged."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[d != 0]
    if not d.size:
        return float("nan")
    ranks = stats.rankdata(np.abs(d))
    plus, minus = float(ranks[d > 0].sum()), float(ranks[d < 0].sum())
    return (plus - minus) / (plus + minus)


def mean_interval(differences: Sequence[float], seed: int = 0) -> tuple[float, float, str]:
    """A 95 % interval of the mean of ``differences`` and how it was made (NaN for fewer
    than two values)."""
    d = np.asarray(differences, dtype=np.float64)
    if d.size < 2:
        return float("nan"), float("nan"), "none (fewer than 2 inputs)"
    if d.size > BOOTSTRAP_MAX:
        half = 1.959963984540054 * float(d.std(ddof=1)) / math.sqrt(d.size)
        return float(d.mean() - half), float(d.mean() + half), f"normal (n > {BOOTSTRAP_MAX})"
    if np.all(d == d[0]):  # every resample has the same mean
        return float(d[0]), float(d[0]), "bootstrap (all differences equal)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on near-degenerate resamples
        res = stats.bootstrap((d,), np.mean, n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                              confidence_level=0.95, rng=np.random.default_rng(seed), vectorized=True)
    ci = res.confidence_interval
    return float(ci.low), float(ci.high), f"percentile bootstrap, {BOOTSTRAP_RESAMPLES} resamples"


def paired_test(differences: Sequence[float], alpha: float = 0.05, seed: int = 0) -> dict:
    """The dataset-level verdict of one method from its per-input differences.

    Args:
        differences: per input, deletion AOPC less the mean random AOPC (non-finite values
            are dropped).
        alpha: the verdict is ``beats_random`` when the p-value is at most this.
        seed: seed of the bootstrap.

    Returns:
        ``{"n", "mean_difference", "ci95": [low, high], "ci_method", "p_value",
        "effect_size" (rank-biserial r), "beats_random", "alpha"}``; with no differences
        every figure is None and ``beats_random`` None.
    """
    d = np.asarray([v for v in differences if v is not None and math.isfinite(v)], dtype=np.float64)
    out: dict = {"n": int(d.size), "alpha": alpha}
    if not d.size:
        return {**out, "mean_difference": None, "ci95": [None, None], "ci_method": None, "p_value": None,
                "effect_size": None, "beats_random": None}
    if np.any(d != 0):
        p = float(stats.wilcoxon(d, alternative="greater", zero_method="wilcox").pvalue)
    else:
        p = 1.0  # nothing differs from random
    low, high, how = mean_interval(d, seed)
    r = rank_biserial(d)
    return {**out, "mean_difference": float(d.mean()), "ci95": [low, high], "ci_method": how, "p_value": p,
            "effect_size": r if math.isfinite(r) else 0.0, "beats_random": bool(p <= alpha)}
