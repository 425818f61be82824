"""Agreement between attribution methods on the same input.

Methods that rank features the same way corroborate each other; where they disagree, at
least one is wrong about the model. All comparisons are on per-feature (token, patch,
column) scores. See Krishna et al., *The Disagreement Problem in Explainable Machine
Learning*, 2022 (https://arxiv.org/abs/2202.01602) for the measures.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from scipy import stats


def _finite(a: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(a, dtype=np.float64).reshape(-1))


def rank_agreement(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman's rho and Kendall's tau-b between two score vectors.

    Returns NaN for a coefficient that is undefined (fewer than two features, or a constant
    vector such as an all-zero attribution).
    """
    a, b = _finite(a), _finite(b)
    if a.shape != b.shape:
        raise ValueError(f"score vectors differ in length: {a.shape[0]} vs {b.shape[0]}")
    if a.size < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = stats.spearmanr(a, b).statistic
        tau = stats.kendalltau(a, b).statistic
    return float(rho), float(tau)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` features with the largest absolute score (ties: lower index)."""
    s = np.abs(_finite(scores))
    return np.argsort(-s, kind="stable")[: max(0, int(k))]


def topk_jaccard(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Jaccard overlap |A & B| / |A | B| of the top-``k`` features by absolute score."""
    sa, sb = set(top_k(a, k).tolist()), set(top_k(b, k).tolist())
    union = sa | sb
    return len(sa & sb) / len(union) if union else float("nan")


def sign_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of features on which both methods give the same sign.

    A score of exactly zero has no sign: features where either method scores exactly 0
    (for example a column equal to the baseline, whose IG and occlusion scores are 0) are
    left out. NaN when no feature is left.
    """
    a, b = _finite(a), _finite(b)
    both = (a != 0) & (b != 0)
    if not both.any():
        return float("nan")
    return float(np.mean(np.sign(a[both]) == np.sign(b[both])))


def disagreement(scores: np.ndarray) -> np.ndarray:
    """Per-feature disagreement across methods.

    Each method's scores (rows of ``scores``, shape ``[methods, features]``) are divided by
    their maximum absolute value, so every method lies in [-1, 1]; the disagreement of a
    feature is the standard deviation of its normalised scores across methods (0 = all
    methods give it the same relative weight and sign; at most 1). All zeros for a single
    method.
    """
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if s.shape[0] < 2:
        return np.zeros(s.shape[1])
    scale = np.abs(s).max(axis=1, keepdims=True)
    scale[scale == 0] = 1.0
    return (s / scale).std(axis=0)


def agreement(scores: dict[str, np.ndarray], k: int, feature_labels: Sequence[str]) -> dict:
    """Pairwise agreement matrices and the per-feature disagreement.

    Args:
        scores: ``{method: per-feature scores}``.
        k: top-k size for the Jaccard overlap.
        feature_labels: a label per feature.

    Returns:
        ``{"methods", "k", "spearman", "kendall", "topk_jaccard", "sign_agreement",
        "disagreement", "feature_labels"}``; matrices are ``[methods][methods]`` lists.
    """
    names = list(scores)
    m = len(names)
    sp, kt, jac, sg = (np.full((m, m), np.nan) for _ in range(4))
    for i in range(m):
        for j in range(i, m):
            a, b = scores[names[i]], scores[names[j]]
            rho, tau = rank_agreement(a, b)
            if i == j and not np.isnan(rho):
                rho, tau = 1.0, 1.0
            sp[i, j] = sp[j, i] = rho
            kt[i, j] = kt[j, i] = tau
            jac[i, j] = jac[j, i] = topk_jaccard(a, b, k)
            sg[i, j] = sg[j, i] = sign_agreement(a, b)
    stacked = np.stack([scores[n] for n in names]) if names else np.zeros((0, len(feature_labels)))
    return {
        "methods": names,
        "k": int(k),
        "spearman": sp.tolist(),
        "kendall": kt.tolist(),
        "topk_jaccard": jac.tolist(),
        "sign_agreement": sg.tolist(),
        "disagreement": disagreement(stacked).tolist() if names else [0.0] * len(feature_labels),
        "feature_labels": list(feature_labels),
    }
