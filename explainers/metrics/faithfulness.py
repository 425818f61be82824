"""Faithfulness: does removing what a method calls important actually change the prediction?

Features are removed (replaced by a baseline) in the method's order, most important first
(highest signed score for the target), and the model is re-run on every step:

* deletion curve and AOPC: Samek et al., *Evaluating the Visualization of What a Deep
  Neural Network Has Learned*, IEEE TNNLS 2017 (https://arxiv.org/abs/1509.06321);
* insertion curve and its area: Petsiuk et al., *RISE*, BMVC 2018
  (https://arxiv.org/abs/1806.07421);
* comprehensiveness and sufficiency: DeYoung et al., *ERASER*, ACL 2020
  (https://arxiv.org/abs/1911.03429), averaged over top-k bins as in ferret
  (Attanasio et al., 2023).

Every method is compared with a random-attribution control (the same measures for seeded
random orders), because any removal lowers the probability somewhat.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .common import (
    ERASER_FRACTIONS,
    curve_steps,
    deletion_masks,
    importance_order,
    insertion_masks,
    random_orders,
)


def aopc(curve: Sequence[float]) -> float:
    r"""Area over the perturbation curve (Samek et al. 2017).

    .. math:: \mathrm{AOPC} = \frac{1}{L+1}\sum_{k=0}^{L} \big(p_0 - p_k\big)

    where ``curve = [p_0, ..., p_L]`` is the target probability after removing the top-k
    features (``p_0``: nothing removed). Higher means the removed features mattered more.
    """
    c = np.asarray(curve, dtype=np.float64)
    return float(np.mean(c[0] - c)) if c.size else float("nan")


def area_under(curve: Sequence[float], fractions: Sequence[float]) -> float:
    """Trapezoidal area under ``curve`` against the fraction of features (x in [0, 1])."""
    c = np.asarray(curve, dtype=np.float64)
    x = np.asarray(fractions, dtype=np.float64)
    return float(np.trapezoid(c, x)) if c.size > 1 else float("nan")


def eraser_steps(n: int, fractions: Sequence[float] = ERASER_FRACTIONS) -> list[int]:
    """The top-k sizes comprehensiveness and sufficiency average over.

    ``k = floor(f * n)`` for each fraction ``f`` (ferret's ``_get_id_tokens_percentage``);
    sizes of 0 and repeated sizes (the same rationale twice) are skipped, as in ferret.
    """
    out: list[int] = []
    for f in fractions:
        k = int(math.floor(f * n + 1e-9))
        if 0 < k <= n and k not in out:
            out.append(k)
    return out


def comprehensiveness_sufficiency(p_orig: float, without_top: dict[int, float],
                                  only_top: dict[int, float], ks: Sequence[int]) -> tuple[float, float]:
    """ERASER comprehensiveness and sufficiency averaged over the top-k sizes ``ks``.

    ``comprehensiveness = mean_k(p_orig - p(input without its top-k features))``: higher
    is better. ``sufficiency = mean_k(p_orig - p(only the top-k features))``: lower is
    better.
    """
    if not ks:
        return float("nan"), float("nan")
    comp = float(np.mean([p_orig - without_top[k] for k in ks]))
    suff = float(np.mean([p_orig - only_top[k] for k in ks]))
    return comp, suff


def _summarise(deletion: np.ndarray, insertion: np.ndarray, steps: list[int], fractions: list[float],
               ks: list[int]) -> dict:
    by_k = {k: i for i, k in enumerate(steps)}
    comp, suff = comprehensiveness_sufficiency(
        float(deletion[0]), {k: float(deletion[by_k[k]]) for k in ks},
        {k: float(insertion[by_k[k]]) for k in ks}, ks)
    return {"deletion": deletion.tolist(), "insertion": insertion.tolist(),
            "deletion_aopc": aopc(deletion), "insertion_auc": area_under(insertion, fractions),
            "comprehensiveness": comp, "sufficiency": suff}


def beats_random(method_aopc: float, random_mean: float, random_std: float, margin: float) -> bool:
    """True when ``method_aopc > random_mean + margin * random_std`` (strictly)."""
    if not all(math.isfinite(v) for v in (method_aopc, random_mean, random_std)):
        return False
    return bool(method_aopc > random_mean + margin * random_std)


def faithfulness(scores: dict[str, np.ndarray], target: int, predict: Callable[[np.ndarray], np.ndarray],
                 n_features: int, baseline: str, n_random: int = 10, seed: int = 0,
                 margin: float = 1.0) -> dict:
    """Deletion/insertion curves, AOPC, comprehensiveness and sufficiency per method.

    Args:
        scores: ``{method: per-feature scores}``.
        target: class whose probability the curves follow.
        predict: maps keep-masks ``[B, n_features]`` to class probabilities ``[B, C]``
            (a :class:`~explainers.metrics.common.Repredictor`); called once with the
            masks of all methods and of the random control together.
        n_features: number of features.
        baseline: name of the baseline removed features take (reported only).
        n_random: random orders in the control.
        seed: seed of the random orders.
        margin: ``beats_random`` threshold, in standard deviations of the random AOPCs.

    Returns:
        The ``faithfulness`` block of the metrics JSON. Curve points are at
        ``fractions = steps / n_features``: every feature when there are at most 50,
        otherwise 0 %, 10 %, ..., 100 %. The random block holds the mean curves and
        measures over the random orders, and ``deletion_aopc_std`` (sample std).
    """
    n = n_features
    steps = curve_steps(n)
    fractions = [k / n for k in steps]
    ks = eraser_steps(n)
    orders = {name: importance_order(s) for name, s in scores.items()}
    rand = random_orders(n, n_random, seed)
    all_orders = list(orders.values()) + rand
    masks = np.concatenate([np.concatenate([deletion_masks(o, steps, n), insertion_masks(o, steps, n)])
                            for o in all_orders]) if all_orders else np.zeros((0, n), bool)
    probs = predict(masks)[:, target] if len(masks) else np.zeros(0)
    per_order = probs.reshape(len(all_orders), 2, len(steps))

    methods = {}
    for i, name in enumerate(orders):
        methods[name] = _summarise(per_order[i, 0], per_order[i, 1], steps, fractions, ks)
    rand_results = [_summarise(per_order[len(orders) + r, 0], per_order[len(orders) + r, 1],
                               steps, fractions, ks) for r in range(len(rand))]
    aopcs = np.array([r["deletion_aopc"] for r in rand_results])
    random_block = {
        "deletion": per_order[len(orders):, 0].mean(0).tolist(),
        "insertion": per_order[len(orders):, 1].mean(0).tolist(),
        "deletion_aopc": float(aopcs.mean()),
        "deletion_aopc_std": float(aopcs.std(ddof=1)) if len(aopcs) > 1 else 0.0,
        "insertion_auc": float(np.mean([r["insertion_auc"] for r in rand_results])),
        "comprehensiveness": float(np.mean([r["comprehensiveness"] for r in rand_results])),
        "sufficiency": float(np.mean([r["sufficiency"] for r in rand_results])),
        "orders": len(rand),
    }
    for name, block in methods.items():
        block["beats_random"] = beats_random(block["deletion_aopc"], random_block["deletion_aopc"],
                                             random_block["deletion_aopc_std"], margin)
    return {"baseline": baseline, "fractions": fractions, "steps": steps, "margin": margin,
            "methods": methods, "random": random_block}
