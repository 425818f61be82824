"""Faithfulness: does removing what a method calls important actually change the prediction?

Features are removed in the method's order, most important first (highest signed score for
the target), and the model is re-run on every step. How a feature is removed is the
``perturbation``: for text, ``delete`` (the words leave the text, which is re-tokenised:
ERASER's definition) or ``mask`` ([MASK] in their place); for every modality, ``baseline``
(the features' values are replaced by a baseline).

* deletion curve and AOPC: Samek et al., *Evaluating the Visualization of What a Deep
  Neural Network Has Learned*, IEEE TNNLS 2017 (https://arxiv.org/abs/1509.06321);
* insertion curve and its area: Petsiuk et al., *RISE*, BMVC 2018
  (https://arxiv.org/abs/1806.07421);
* comprehensiveness and sufficiency: DeYoung et al., *ERASER*, ACL 2020
  (https://arxiv.org/abs/1911.03429), averaged over ERASER's bins, the top 1, 5, 10, 20
  and 50 % of the features (``k = ceil(f * n)``, so every bin removes at least one).

Every method is compared with a random-attribution control, because any removal lowers
the probability somewhat: a one-sided permutation test of the method's deletion AOPC
against the AOPCs of ``R`` seeded random orders (default 100), with the Monte-Carlo p-value
``(1 + #{random AOPC >= method AOPC}) / (R + 1)`` (Phipson & Smyth 2010) and the effect
size ``(AOPC - random mean) / random std``.
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
    """The top-k sizes comprehensiveness and sufficiency average over, one per bin.

    ``k = ceil(f * n)`` for each fraction ``f`` (at least one feature per bin, at most
    ``n``). Bins are kept even when two give the same ``k``: ERASER averages over its five
    bins, so on a 10-word sentence the 1 %, 5 % and 10 % bins each remove the top word.
    """
    if n <= 0:
        return []
    return [min(n, max(1, int(math.ceil(f * n - 1e-9)))) for f in fractions]


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


def _summarise(deletion: np.ndarray, insertion: np.ndarray | None, steps: list[int],
               fractions: list[float], ks: list[int], extra: dict[int, tuple[float, float]]) -> dict:
    """Curves and measures of one order. ``extra[k] = (p without top-k, p with only top-k)``
    for ERASER sizes that are not curve steps."""
    by_k = {k: i for i, k in enumerate(steps)}

    def at(k: int, which: int) -> float:
        if k in by_k:
            curve = deletion if which == 0 else insertion
            return float(curve[by_k[k]])
        return extra[k][which]

    out = {"deletion": deletion.tolist(), "deletion_aopc": aopc(deletion)}
    if insertion is None:
        out["comprehensiveness"] = (float(np.mean([float(deletion[0]) - at(k, 0) for k in ks]))
                                    if ks else float("nan"))
        return out
    comp, suff = comprehensiveness_sufficiency(
        float(deletion[0]), {k: at(k, 0) for k in ks}, {k: at(k, 1) for k in ks}, ks)
    out.update({"insertion": insertion.tolist(), "insertion_auc": area_under(insertion, fractions),
                "comprehensiveness": comp, "sufficiency": suff})
    return out


def permutation_test(value: float, random_values: Sequence[float]) -> tuple[float, float]:
    """One-sided Monte-Carlo permutation test of ``value`` against a random control.

    Under the null hypothesis (the method's order is no better than a random order) the
    method's AOPC is exchangeable with the random orders' AOPCs, so

    ``p = (1 + #{r >= value}) / (R + 1)`` (ties count against the method) and
    ``effect = (value - mean(r)) / std(r)`` (sample std; +-inf when the std is 0 and the
    value differs, 0 when it equals the mean).

    Returns:
        ``(p_value, effect_size)``; ``(nan, nan)`` for a non-finite value or no orders.
    """
    r = np.asarray([v for v in random_values if math.isfinite(v)], dtype=np.float64)
    if not math.isfinite(value) or r.size == 0:
        return float("nan"), float("nan")
    p = (1.0 + float(np.sum(r >= value - 1e-12))) / (r.size + 1.0)
    std = float(r.std(ddof=1)) if r.size > 1 else 0.0
    diff = value - float(r.mean())
    if std > 0:
        effect = diff / std
    else:
        effect = 0.0 if abs(diff) < 1e-12 else math.copysign(math.inf, diff)
    return p, effect


def beats_random(p_value: float, alpha: float = 0.05) -> bool:
    """True when the permutation test's ``p_value`` is at most ``alpha``."""
    return bool(math.isfinite(p_value) and p_value <= alpha)


#: the random orders whose insertion curves are measured too (the permutation test needs
#: deletion AOPCs only, so the other orders skip the insertion half of the cost)
INSERTION_ORDERS = 10


def _order_masks(order: np.ndarray, steps: list[int], extra_ks: list[int], n: int,
                 with_insertion: bool) -> np.ndarray:
    parts = [deletion_masks(order, steps, n)]
    if with_insertion:
        parts.append(insertion_masks(order, steps, n))
    if extra_ks:
        parts.append(deletion_masks(order, extra_ks, n))
        if with_insertion:
            parts.append(insertion_masks(order, extra_ks, n))
    return np.concatenate(parts)


def _split(probs: np.ndarray, steps: list[int], extra_ks: list[int], with_insertion: bool
           ) -> tuple[np.ndarray, np.ndarray | None, dict[int, tuple[float, float]]]:
    s, e = len(steps), len(extra_ks)
    deletion = probs[:s]
    insertion = probs[s:2 * s] if with_insertion else None
    off = 2 * s if with_insertion else s
    dele = probs[off:off + e]
    ins = probs[off + e:off + 2 * e] if with_insertion else np.full(e, np.nan)
    return deletion, insertion, {k: (float(dele[i]), float(ins[i])) for i, k in enumerate(extra_ks)}


def _plan(scores: dict[str, np.ndarray], n: int, n_random: int, seed: int):
    steps = curve_steps(n)
    extra_ks = sorted(set(eraser_steps(n)) - set(steps))
    orders = {name: importance_order(s) for name, s in scores.items()}
    rand = random_orders(n, n_random, seed)
    n_ins = min(len(rand), INSERTION_ORDERS)
    plan = [(o, True) for o in orders.values()] + [(o, i < n_ins) for i, o in enumerate(rand)]
    blocks = [_order_masks(o, steps, extra_ks, n, ins) for o, ins in plan]
    return orders, rand, n_ins, plan, blocks


def faithfulness_masks(scores: dict[str, np.ndarray], n_features: int, n_random: int = 100,
                       seed: int = 0) -> np.ndarray:
    """Every keep-mask :func:`faithfulness` will predict with these arguments, ``[B, n]``
    (so they can be predicted ahead, together with other inputs' masks)."""
    blocks = _plan(scores, n_features, n_random, seed)[4]
    return np.concatenate(blocks) if blocks else np.zeros((0, n_features), dtype=bool)


def faithfulness(scores: dict[str, np.ndarray], target: int, predict: Callable[[np.ndarray], np.ndarray],
                 n_features: int, baseline: str, n_random: int = 100, seed: int = 0,
                 alpha: float = 0.05, perturbation: str = "baseline",
                 perturbation_note: str | None = None) -> dict:
    """Deletion/insertion curves, AOPC, comprehensiveness and sufficiency per method, and
    a permutation test of each method's deletion AOPC against random orders.

    Args:
        scores: ``{method: per-feature scores}``.
        target: class whose probability the curves follow.
        predict: maps keep-masks ``[B, n_features]`` to class probabilities ``[B, C]``
            (a :class:`~explainers.metrics.common.Repredictor`, which applies the
            perturbation); called once with the masks of all methods and of the control.
        n_features: number of features.
        baseline: name of the baseline removed features take under ``baseline``.
        n_random: random orders in the permutation test.
        seed: seed of the random orders.
        alpha: ``beats_random`` when the p-value is at most this.
        perturbation: how features are removed (reported).
        perturbation_note: what that means for this input (reported).

    Returns:
        The ``faithfulness`` block of the metrics JSON. Curve points are at
        ``fractions = steps / n_features``: every feature when there are at most 50,
        otherwise 0 %, 10 %, ..., 100 %. Each method has ``p_value``, ``effect_size`` and
        ``beats_random``. The random block holds the mean curves and measures over the
        random orders, ``deletion_aopc_std`` (sample std), ``orders`` and
        ``insertion_orders`` (the first orders, whose insertion curves and sufficiency
        are measured).
    """
    n = n_features
    steps = curve_steps(n)
    fractions = [k / n for k in steps]
    ks = eraser_steps(n)
    extra_ks = sorted(set(ks) - set(steps))
    orders, rand, n_ins, plan, blocks = _plan(scores, n, n_random, seed)
    probs = predict(np.concatenate(blocks))[:, target] if blocks else np.zeros(0)
    results, offset = [], 0
    for (o, ins), b in zip(plan, blocks):
        d, i_, extra = _split(probs[offset:offset + len(b)], steps, extra_ks, ins)
        results.append(_summarise(d, i_, steps, fractions, ks, extra))
        offset += len(b)
    methods = dict(zip(orders, results[:len(orders)]))
    rand_results = results[len(orders):]
    aopcs = np.array([r["deletion_aopc"] for r in rand_results])
    with_ins = rand_results[:n_ins]
    random_block = {
        "deletion": np.mean([r["deletion"] for r in rand_results], axis=0).tolist(),
        "insertion": np.mean([r["insertion"] for r in with_ins], axis=0).tolist(),
        "deletion_aopc": float(aopcs.mean()),
        "deletion_aopc_std": float(aopcs.std(ddof=1)) if len(aopcs) > 1 else 0.0,
        "insertion_auc": float(np.mean([r["insertion_auc"] for r in with_ins])),
        "comprehensiveness": float(np.mean([r["comprehensiveness"] for r in rand_results])),
        "sufficiency": float(np.mean([r["sufficiency"] for r in with_ins])),
        "orders": len(rand),
        "insertion_orders": n_ins,
    }
    for name, block in methods.items():
        p, effect = permutation_test(block["deletion_aopc"], aopcs)
        block["p_value"], block["effect_size"] = p, effect
        block["beats_random"] = beats_random(p, alpha)
    return {"baseline": baseline, "perturbation": perturbation, "perturbation_note": perturbation_note,
            "fractions": fractions, "steps": steps, "eraser_k": ks, "alpha": alpha,
            "test": (f"one-sided permutation test of deletion AOPC against {len(rand)} random "
                     f"orders; beats_random when p <= {alpha}"),
            "methods": methods, "random": random_block}
