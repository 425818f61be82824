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
the probability somewhat: a one-sided Monte-Carlo permutation test of the method's deletion
AOPC against the AOPCs of seeded random orders, on the same curve points and with the same
perturbation. With ``R`` orders its p-value is ``(1 + #{random AOPC >= method AOPC}) / (R + 1)``
(Phipson & Smyth 2010), so it resolves ``1 / (R + 1)``: the default ``R = 19`` resolves 0.05.
By default the orders are drawn sequentially and each method's test stops once its decision
at ``alpha`` is settled (Besag & Clifford, *Sequential Monte Carlo p-values*, Biometrika
1991): at the ``h``-th random order at or above the method, where ``h`` is the first count of
such orders that the ``R``-order test could not call significant, the p-value is ``h / l``
(``l`` orders drawn; raised to ``(h + 1) / (R + 1)`` where that is larger), else
``(g + 1) / (R + 1)`` after all ``R`` (see :func:`sequential_p_value`). The decision is the
``R``-order test's, at fewer orders where it is settled early. The effect size is
``(AOPC - random mean) / random std``.

Random orders cost less than the methods' orders: keeping ``k`` features of a random order is
removing the other ``n - k``, and the curve steps are symmetric, so a random order's
insertion curve is its deletion curve read backwards (the insertion curve of the reversed
order, itself a uniform random order): no re-predictions of its own.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .common import (
    ERASER_FRACTIONS,
    RANDOM_ORDERS,
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


def _summarise(p0: float, removed: dict[int, float], kept: dict[int, float] | None, steps: list[int],
               fractions: list[float], ks: list[int]) -> dict:
    """Curves and measures of one order from its predictions: ``removed[k]`` with its first
    ``k`` features removed, ``kept[k]`` with only its first ``k`` kept (None: no insertion
    curve). Comprehensiveness and sufficiency are NaN where an ERASER size was not predicted."""
    deletion = np.array([removed[k] for k in steps])
    out: dict = {"deletion": deletion.tolist(), "deletion_aopc": aopc(deletion)}
    kept = kept or {}
    comp, suff = (comprehensiveness_sufficiency(p0, removed, kept, ks)
                  if all(k in removed and k in kept for k in ks) else (float("nan"), float("nan")))
    out["comprehensiveness"] = comp
    if all(k in kept for k in steps):
        insertion = np.array([kept[k] for k in steps])
        out.update({"insertion": insertion.tolist(), "insertion_auc": area_under(insertion, fractions),
                    "sufficiency": suff})
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
    p = (1.0 + float(np.sum(exceeds(r, value)))) / (r.size + 1.0)
    return p, effect_size(value, r)


def exceeds(random_values: np.ndarray, value: float) -> np.ndarray:
    """Which random AOPCs are at or above ``value`` (ties, to float rounding, count against
    the method)."""
    return np.asarray(random_values, dtype=np.float64) >= value - 1e-12


def effect_size(value: float, random_values: np.ndarray) -> float:
    """``(value - mean) / std`` of the random values (sample std; +-inf when the std is 0
    and the value differs, 0 when it equals the mean)."""
    r = np.asarray(random_values, dtype=np.float64)
    std = float(r.std(ddof=1)) if r.size > 1 else 0.0
    diff = value - float(r.mean())
    if std > 0:
        return diff / std
    return 0.0 if abs(diff) < 1e-12 else math.copysign(math.inf, diff)


def significant_exceedances(orders: int, alpha: float) -> int:
    """The most random orders at or above the method that still give ``p <= alpha`` with
    ``orders`` orders: ``floor(alpha (orders + 1)) - 1``. Negative when ``1 / (orders + 1)``
    is above ``alpha``: so few orders cannot reach it."""
    return int(math.floor(alpha * (orders + 1) + 1e-9)) - 1


def sequential_p_value(exceed: Sequence[bool], orders: int, h: int) -> tuple[float, int, int, bool]:
    """The sequential Monte-Carlo p-value of one method (Besag & Clifford 1991), stopped so
    that its decision at alpha is always the ``orders``-order test's.

    Args:
        exceed: for the random orders drawn so far, in drawing order, whether each one's AOPC
            is at or above the method's.
        orders: the most orders the test draws (``R``).
        h: the exceedances that settle "not significant": the first count the ``R``-order
            test calls not significant (``significant_exceedances + 1``; 0 or less: no early
            stop).

    Returns:
        ``(p_value, orders used, exceedances, settled)``. At the ``h``-th exceedance, at order
        ``l``: ``p = max(h / l, (h + 1) / (R + 1))``, Besag & Clifford's ``h / l``, never below
        what the ``R``-order test could still give (so never at or below alpha). With ``g <
        h`` exceedances: ``p = (g + 1) / (R + 1)`` after all ``R``; settled early when too few
        orders are left to reach ``h``, with the largest p the rest could give, ``(g + left +
        1) / (R + 1)``, still significant. Each is at least a valid p-value (Besag &
        Clifford's, or the ``R``-order test's), so valid itself. Not settled: ``(g + 1) / (R +
        1)``, the p so far.
    """
    flags = np.asarray(exceed, dtype=bool)
    if h >= 1:
        hits = np.flatnonzero(flags)
        if hits.size >= h:
            used = int(hits[h - 1]) + 1
            return max(h / used, (h + 1) / (orders + 1)), used, h, True
    g, drawn = int(flags.sum()), int(flags.size)
    left = max(0, orders - drawn)
    if drawn >= orders or (h >= 1 and left < h - g):
        return (g + left + 1) / (orders + 1), drawn, g, True
    return (g + 1) / (orders + 1), drawn, g, False


def beats_random(p_value: float | None, alpha: float = 0.05) -> bool:
    """True when the permutation test's ``p_value`` is at most ``alpha`` (to float rounding:
    ``1 / 20`` is 0.05)."""
    return bool(p_value is not None and math.isfinite(p_value) and p_value <= alpha * (1 + 1e-9))


#: random orders drawn in the sequential test's first round; later rounds double
FIRST_BLOCK = 5
#: the random orders whose comprehensiveness and sufficiency are measured: ERASER sizes off
#: the curve steps cost re-predictions of their own, the curves' do not
ERASER_ORDERS = 10


def _block_ends(orders: int, sequential: bool) -> list[int]:
    """How many random orders are drawn after each round: all at once, or 5, 15, 35, ...
    (each round twice the one before) up to ``orders``."""
    if not sequential:
        return [orders]
    ends, size = [], FIRST_BLOCK
    while not ends or ends[-1] < orders:
        ends.append(min(orders, (ends[-1] if ends else 0) + size))
        size *= 2
    return ends


class ControlRun:
    """The faithfulness computation of one input as rounds of keep-masks: :meth:`masks`
    gives a round's masks, :meth:`feed` takes the target's outputs for them, :attr:`done`
    says when the random control has drawn enough orders, :meth:`block` gives the result.
    The first round holds the methods' curves and the first random orders; a sequential
    test adds rounds of random orders until every method's decision is settled. Several
    inputs' runs can so be predicted together (:mod:`explainers.metrics.batched`).

    Args:
        scores: ``{method: per-feature scores}``.
        n_features: number of features.
        n_random: the most random orders (all of them with ``sequential`` False).
        seed: seed of the random orders (the first ``k`` orders are the same for any count).
        alpha: significance level of the test.
        sequential: stop drawing once every method's decision at ``alpha`` is settled.
    """

    def __init__(self, scores: dict[str, np.ndarray], n_features: int, n_random: int = RANDOM_ORDERS,
                 seed: int = 0, alpha: float = 0.05, sequential: bool = True) -> None:
        n = self.n = n_features
        self.steps = curve_steps(n)
        self.ks = eraser_steps(n)
        self.alpha, self.max_orders = alpha, n_random
        self.h = significant_exceedances(n_random, alpha) + 1
        self.sequential = bool(sequential and self.h >= 1)
        self.orders = {name: importance_order(s) for name, s in scores.items()}
        self.rand = random_orders(n, n_random, seed)
        self.ends = _block_ends(n_random, self.sequential)
        self.removed: dict[str, dict[int, float]] = {name: {} for name in self.orders}
        self.kept: dict[str, dict[int, float]] = {name: {} for name in self.orders}
        self.random_removed: list[dict[int, float]] = []
        self.rounds = 0
        self._layout: list[tuple[dict[int, float], list[int]]] = []
        self._done = False

    @property
    def drawn(self) -> int:
        """Random orders predicted so far."""
        return len(self.random_removed)

    @property
    def done(self) -> bool:
        return self._done

    def _random_sizes(self, j: int) -> list[int]:
        """Removal counts predicted for random order ``j``: the curve steps and their
        complements (its insertion curve), and for the first orders the ERASER sizes too."""
        n, need = self.n, set(self.steps)
        if j < ERASER_ORDERS:
            need |= set(self.ks)
        return sorted(need | {n - k for k in need})

    def masks(self) -> np.ndarray:
        """Keep-masks ``[B, n]`` of the next round."""
        n, parts, self._layout = self.n, [], []
        sizes = sorted(set(self.steps) | set(self.ks))
        if self.rounds == 0:
            for name, order in self.orders.items():
                parts += [deletion_masks(order, sizes, n), insertion_masks(order, sizes, n)]
                self._layout += [(self.removed[name], sizes), (self.kept[name], sizes)]
        for j in range(self.drawn, self.ends[self.rounds]):
            ks = self._random_sizes(j)
            self.random_removed.append({})
            parts.append(deletion_masks(self.rand[j], ks, n))
            self._layout.append((self.random_removed[j], ks))
        return np.concatenate(parts) if parts else np.zeros((0, n), dtype=bool)

    def feed(self, values: np.ndarray) -> None:
        """The target's outputs ``[B]`` for this round's :meth:`masks`."""
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        offset = 0
        for into, ks in self._layout:
            into.update(zip(ks, values[offset:offset + len(ks)].tolist()))
            offset += len(ks)
        self.rounds += 1
        self._done = self.rounds >= len(self.ends) or all(
            self._test(name)[3] for name in self.orders)

    def random_aopcs(self) -> np.ndarray:
        """The deletion AOPC of every random order drawn, in drawing order."""
        return np.array([aopc([r[k] for k in self.steps]) for r in self.random_removed])

    def _test(self, name: str) -> tuple[float, int, int, bool]:
        value = aopc([self.removed[name][k] for k in self.steps])
        flags = exceeds(self.random_aopcs(), value)
        if not self.sequential:  # every order drawn: the fixed R-order test
            g = int(flags.sum())
            return (g + 1) / (flags.size + 1), int(flags.size), g, True
        return sequential_p_value(flags, self.max_orders, self.h)

    def in_doubt(self, name: str, noise: float) -> bool:
        """Whether ``name``'s ``beats_random`` verdict could change if its AOPC moved by up to
        ``noise`` either way (bf16 forwards: :data:`explainers.precision.BF16_PROB_TOLERANCE`)."""
        value = aopc([self.removed[name][k] for k in self.steps])
        rand = self.random_aopcs()

        def verdict(v: float) -> bool:
            flags = exceeds(rand, v)
            if not self.sequential:
                return beats_random((flags.sum() + 1) / (flags.size + 1), self.alpha)
            return beats_random(sequential_p_value(flags, self.max_orders, self.h)[0], self.alpha)

        return self.h >= 1 and verdict(value - noise) != verdict(value + noise)

    def paired_orders(self) -> int:
        """The random orders whose mean AOPC each method's ``aopc_minus_random`` subtracts:
        those drawn whatever the outcome (the first round), so the mean is unbiased."""
        return min(self.drawn, self.ends[0])

    def block(self, baseline: str, perturbation: str = "baseline",
              perturbation_note: str | None = None) -> dict:
        """The ``faithfulness`` block (see :func:`faithfulness`)."""
        n, steps, ks = self.n, self.steps, self.ks
        fractions = [k / n for k in steps]
        p0 = self._p0()
        methods = {name: _summarise(p0, self.removed[name], self.kept[name], steps, fractions, ks)
                   for name in self.orders}
        rand = [_summarise(p0, r, {k: r[n - k] for k in r if n - k in r}, steps, fractions, ks)
                for r in self.random_removed]
        aopcs = np.array([r["deletion_aopc"] for r in rand])
        eraser = [r for r in rand if math.isfinite(r["comprehensiveness"]) and math.isfinite(r["sufficiency"])]
        paired = self.paired_orders()
        paired_mean = float(aopcs[:paired].mean()) if paired else float("nan")
        resolution = 1.0 / (self.max_orders + 1)
        for name, b in methods.items():
            p, used, g, _ = self._test(name)
            b.update({"p_value": p, "p_resolution": resolution, "orders_used": used, "exceedances": g,
                      "effect_size": effect_size(b["deletion_aopc"], aopcs) if aopcs.size else float("nan"),
                      "beats_random": beats_random(p, self.alpha) if self.h >= 1 else None,
                      "aopc_minus_random": b["deletion_aopc"] - paired_mean})
        random_block = {
            "deletion": np.mean([r["deletion"] for r in rand], axis=0).tolist(),
            "insertion": np.mean([r["insertion"] for r in rand], axis=0).tolist(),
            "deletion_aopc": float(aopcs.mean()),
            "deletion_aopc_std": float(aopcs.std(ddof=1)) if aopcs.size > 1 else 0.0,
            "insertion_auc": float(np.mean([r["insertion_auc"] for r in rand])),
            "comprehensiveness": float(np.mean([r["comprehensiveness"] for r in eraser])),
            "sufficiency": float(np.mean([r["sufficiency"] for r in eraser])),
            "orders": self.drawn, "max_orders": self.max_orders, "insertion_orders": self.drawn,
            "eraser_orders": len(eraser), "paired_orders": paired, "paired_deletion_aopc": paired_mean,
        }
        return {"baseline": baseline, "perturbation": perturbation, "perturbation_note": perturbation_note,
                "fractions": fractions, "steps": steps, "eraser_k": ks, "alpha": self.alpha,
                "sequential": self.sequential, "p_resolution": resolution, "test": self.describe(),
                "methods": methods, "random": random_block}

    def _p0(self) -> float:
        """The target's output on the untouched input (every order's step 0)."""
        for d in list(self.removed.values()) + self.random_removed:
            if 0 in d:
                return d[0]
        return float("nan")

    def describe(self) -> str:
        """The test in one sentence, with its resolution and the orders it drew."""
        R, a = self.max_orders, self.alpha
        what = (f"one-sided permutation test of deletion AOPC against random orders; p resolves "
                f"1/{R + 1} = {1 / (R + 1):.3g}")
        if self.h < 1:
            return (f"{what}: {R} order(s) cannot reach alpha = {a:g}, so no per-input verdict "
                    f"(a review's dataset-level test uses them)")
        if self.sequential:
            return (f"{what}; orders drawn sequentially (Besag & Clifford 1991), each method's test "
                    f"stopping at its {_nth(self.h)} random order at or above it (p = {self.h}/orders "
                    f"used), else after {R}; {self.drawn} of {R} drawn; beats_random when p <= {a:g}")
        return f"{what}; all {R} orders drawn; beats_random when p <= {a:g}"


def _nth(k: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(k, f"{k}th")


def faithfulness(scores: dict[str, np.ndarray], target: int, predict: Callable[[np.ndarray], np.ndarray],
                 n_features: int, baseline: str, n_random: int = RANDOM_ORDERS, seed: int = 0,
                 alpha: float = 0.05, perturbation: str = "baseline",
                 perturbation_note: str | None = None, sequential: bool = True,
                 noise: float = 0.0) -> dict:
    """Deletion/insertion curves, AOPC, comprehensiveness and sufficiency per method, and
    a permutation test of each method's deletion AOPC against random orders.

    Args:
        scores: ``{method: per-feature scores}``.
        target: class whose probability the curves follow.
        predict: maps keep-masks ``[B, n_features]`` to class probabilities ``[B, C]``
            (a :class:`~explainers.metrics.common.Repredictor`, which applies the
            perturbation); called once per round of :class:`ControlRun` (one round unless
            the sequential test draws more orders).
        n_features: number of features.
        baseline: name of the baseline removed features take under ``baseline``.
        n_random: the most random orders the test draws (exactly this many when not
            ``sequential``).
        seed: seed of the random orders.
        alpha: ``beats_random`` when the p-value is at most this.
        perturbation: how features are removed (reported).
        perturbation_note: what that means for this input (reported).
        sequential: stop drawing orders once every method's decision is settled.
        noise: how far ``predict``'s outputs may be off (bf16 forwards); with ``noise > 0``
            each method has ``in_doubt``: whether its verdict could change if its AOPC moved
            by twice that (:func:`explainers.metrics.compute` then recomputes it in fp32).

    Returns:
        The ``faithfulness`` block of the metrics JSON. Curve points are at
        ``fractions = steps / n_features``: every feature when there are at most
        :data:`~explainers.metrics.common.PER_FEATURE_MAX` (10), otherwise the tenths of
        the features (:func:`~explainers.metrics.common.curve_steps`). Each method has
        ``p_value``, ``p_resolution`` (``1 / (n_random + 1)``, the smallest p the test can
        give), ``orders_used`` and ``exceedances`` (the random orders its p-value counts, and
        those at or above it), ``effect_size`` (against every order drawn), ``beats_random``
        (None when ``n_random`` orders cannot reach ``alpha``) and ``aopc_minus_random``
        (its AOPC less the mean of the ``paired_orders`` first random orders: the per-input
        difference a review's dataset-level test uses). The random block holds the mean
        curves and measures over the orders drawn, ``deletion_aopc_std`` (sample std),
        ``orders`` (drawn), ``max_orders``, ``eraser_orders`` (the first orders, whose
        comprehensiveness and sufficiency are measured), ``paired_orders`` and
        ``paired_deletion_aopc``. ``test`` says all of it in one sentence.
    """
    run = ControlRun(scores, n_features, n_random, seed, alpha, sequential)
    while not run.done:
        masks = run.masks()
        run.feed(predict(masks)[:, target] if len(masks) else np.zeros(0))
    block = run.block(baseline, perturbation, perturbation_note)
    if noise > 0:
        for name, b in block["methods"].items():
            b["in_doubt"] = run.in_doubt(name, 2 * noise)  # an AOPC is a mean of differences
    return block
