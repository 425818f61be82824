"""The random control on known answers: the sequential test decides as the fixed one, a
random method does not beat random (at the rate alpha allows), an oracle does, and the
dataset-level paired test equals an independent computation.

The "model" here is closed-form: ``p(keep) = sigmoid(w . keep - b)``, so every re-prediction
is exact and fast, and the true importance order is known.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from explainers.metrics.common import RANDOM_ORDERS, random_orders, resolve_options, review_metric_options
from explainers.metrics.faithfulness import (
    ControlRun,
    exceeds,
    faithfulness,
    sequential_p_value,
    significant_exceedances,
)
from explainers.metrics.paired import BOOTSTRAP_MAX, mean_interval, paired_test, rank_biserial
from explainers.review.summary import Summary, summary_table

ALPHA = 0.05


def linear_model(n: int, seed: int):
    """(predict, weights): keep-masks [B, n] -> outputs [B, 1] of a logistic model whose
    features all push the target up, by different amounts."""
    w = np.random.default_rng(seed).uniform(0.05, 1.0, size=n)

    def predict(keep: np.ndarray) -> np.ndarray:
        z = np.asarray(keep, dtype=np.float64) @ w - 0.5 * w.sum()
        return (1.0 / (1.0 + np.exp(-z)))[:, None]

    return predict, w


# -- the sequential p-value -----------------------------------------------------------------
def test_significant_exceedances_and_resolution():
    assert significant_exceedances(19, ALPHA) == 0  # p = 1/20: only with no exceedance
    assert significant_exceedances(100, ALPHA) == 4  # (4 + 1) / 101 <= 0.05 < 6 / 101
    assert significant_exceedances(39, ALPHA) == 1
    assert significant_exceedances(3, ALPHA) == -1  # 1/4 > 0.05: cannot reach alpha


def test_sequential_p_value_on_known_sequences():
    # h = 1 of 19 orders: stops at the first order at or above the method, p = 1 / l
    assert sequential_p_value([False, False, True], 19, 1) == (1 / 3, 3, 1, True)
    # ... but never below 2 / 20, what the 19-order test gives with one exceedance
    assert sequential_p_value([False] * 14 + [True], 19, 1) == (2 / 20, 15, 1, True)
    assert sequential_p_value([False] * 5, 19, 1) == (1 / 20, 5, 0, False)  # open: 14 orders to go
    assert sequential_p_value([False] * 19, 19, 1) == (1 / 20, 19, 0, True)
    # h = 5 of 100: the fifth exceedance stops it; 96 clean orders settle significance, with
    # the largest p the 4 left could give
    seq = [True, False, True, True, False, True, True]
    assert sequential_p_value(seq, 100, 5) == (5 / 7, 7, 5, True)
    assert sequential_p_value([False] * 96, 100, 5) == (5 / 101, 96, 0, True)
    assert sequential_p_value([False] * 95, 100, 5)[3] is False


def test_sequential_decision_equals_the_fixed_test_on_every_sequence():
    """Drawn one by one or all at once, the decision at alpha is the R-order test's."""
    rng = np.random.default_rng(3)
    for R in (19, 39, 100):
        h = significant_exceedances(R, ALPHA) + 1
        for _ in range(400):
            q = rng.choice([0.0, 0.01, 0.03, 0.05, 0.1, 0.5])
            flags = rng.random(R) < q
            p_fixed = (flags.sum() + 1) / (R + 1)
            fixed = p_fixed <= ALPHA * (1 + 1e-9)
            # the sequential test stops at the first settled prefix
            for drawn in range(1, R + 1):
                p, used, _, settled = sequential_p_value(flags[:drawn], R, h)
                if settled:
                    break
            assert (p <= ALPHA * (1 + 1e-9)) == fixed, (R, flags.nonzero())
            assert used <= drawn
            if fixed:  # significant: never a smaller p than all R orders give
                assert p >= p_fixed - 1e-12


# -- the control on one input -------------------------------------------------------------
def test_an_oracle_order_beats_random_and_its_reverse_does_not():
    predict, w = linear_model(16, 0)
    block = faithfulness({"oracle": w, "reverse": -w}, 0, predict, 16, "zero")
    oracle, reverse = block["methods"]["oracle"], block["methods"]["reverse"]
    assert oracle["beats_random"] is True
    assert oracle["p_value"] == pytest.approx(1 / (RANDOM_ORDERS + 1))  # no order reaches it
    assert oracle["orders_used"] == RANDOM_ORDERS == block["random"]["orders"]
    assert oracle["p_resolution"] == pytest.approx(1 / 20)
    assert reverse["beats_random"] is False and reverse["orders_used"] == 1  # the first order beats it
    assert reverse["p_value"] == 1.0


def test_a_method_that_is_a_random_order_beats_random_at_most_at_rate_alpha():
    """Under the null the sequential test's p-value is valid: P(p <= alpha) <= alpha."""
    n, trials = 12, 400
    predict, _ = linear_model(n, 1)
    beats = 0
    for t in range(trials):
        scores = np.random.default_rng(1000 + t).normal(size=n)  # a uniform random order
        block = faithfulness({"random method": scores}, 0, predict, n, "zero", seed=t)
        beats += block["methods"]["random method"]["beats_random"]
    # Binomial(400, 0.05): mean 20; P(X > 35) < 1e-3 (a bias of the test would show here)
    assert beats <= 35, beats
    # and the very first random order itself ties with the control: never significant
    order = random_orders(n, 1, 0)[0]
    same = np.empty(n)
    same[order] = np.arange(n, 0, -1)  # importance order == the control's first order
    assert faithfulness({"same": same}, 0, predict, n, "zero")["methods"]["same"]["beats_random"] is False


def test_random_insertion_curve_is_the_reversed_orders_curve():
    """The control's insertion curve costs no predictions: it is the mean insertion curve of
    the reversed random orders, computed here directly."""
    n, R = 14, 7
    predict, w = linear_model(n, 2)
    run = ControlRun({"m": w}, n, R, seed=5, alpha=ALPHA, sequential=False)
    while not run.done:
        masks = run.masks()
        run.feed(predict(masks)[:, 0])
    block = run.block("zero")
    steps = block["steps"]
    direct = []
    for order in random_orders(n, R, 5):
        rev = order[::-1]
        keep = np.zeros((len(steps), n), dtype=bool)
        for i, k in enumerate(steps):
            keep[i, rev[:k]] = True  # only the first k of the reversed order
        direct.append(predict(keep)[:, 0])
    assert np.allclose(block["random"]["insertion"], np.mean(direct, axis=0), atol=1e-12)
    assert block["random"]["orders"] == R and block["random"]["paired_orders"] == R


def test_few_orders_give_no_per_input_verdict_but_a_paired_difference():
    predict, w = linear_model(10, 4)
    block = faithfulness({"oracle": w}, 0, predict, 10, "zero", n_random=3, sequential=False)
    m, r = block["methods"]["oracle"], block["random"]
    assert m["beats_random"] is None and m["p_value"] == pytest.approx(1 / 4)
    assert "cannot reach alpha" in block["test"]
    assert m["aopc_minus_random"] == pytest.approx(m["deletion_aopc"] - r["paired_deletion_aopc"])
    assert r["paired_deletion_aopc"] == pytest.approx(r["deletion_aopc"])  # all 3 orders


def test_review_defaults_and_the_option_that_restores_the_old_test(tiny_tabular):
    enc = tiny_tabular.encode(1)
    opts = resolve_options(review_metric_options(None), tiny_tabular, enc)
    assert (opts["random_orders"], opts["sequential"]) == (3, False)
    opts = resolve_options(review_metric_options({"random_orders": 100}), tiny_tabular, enc)
    assert (opts["random_orders"], opts["sequential"]) == (100, False)  # the 100-order test
    assert resolve_options({"sequential": "false"}, tiny_tabular, enc)["sequential"] is False
    assert resolve_options({}, tiny_tabular, enc)["sequential"] is True
    from explainers import ExplainerError
    with pytest.raises(ExplainerError, match="sequential"):
        resolve_options({"sequential": "maybe"}, tiny_tabular, enc)


# -- the dataset-level paired test -------------------------------------------------------------
def exact_signed_rank_p(d: np.ndarray) -> float:
    """One-sided p of the signed-rank statistic by enumerating all 2^n sign flips."""
    ranks = stats.rankdata(np.abs(d))
    observed = ranks[d > 0].sum()
    hits = sum(ranks[np.array(signs) > 0].sum() >= observed - 1e-9
               for signs in itertools.product((1, -1), repeat=len(d)))
    return hits / 2 ** len(d)


def test_paired_p_value_equals_an_exact_enumeration_of_sign_flips():
    rng = np.random.default_rng(7)
    for shift in (0.0, 0.3, 1.0):
        d = rng.normal(shift, 1.0, size=11)
        out = paired_test(d, ALPHA)
        assert out["p_value"] == pytest.approx(exact_signed_rank_p(d), rel=1e-9)
        assert out["beats_random"] == (out["p_value"] <= ALPHA)
        assert out["mean_difference"] == pytest.approx(d.mean())
        low, high = out["ci95"]
        assert low < d.mean() < high


def test_paired_effect_size_and_verdict_on_known_answers():
    assert rank_biserial([0.1, 0.2, 0.3]) == 1.0  # every input above random
    assert rank_biserial([-0.1, -0.2]) == -1.0
    assert rank_biserial([1.0, -2.0]) == pytest.approx((1 - 2) / 3)  # ranks 1 (+) and 2 (-)
    oracle = paired_test(np.linspace(0.1, 0.5, 12), ALPHA)
    assert oracle["beats_random"] is True and oracle["p_value"] == pytest.approx(1 / 2 ** 12)
    none = paired_test([0.0, 0.0, 0.0], ALPHA)
    assert none["beats_random"] is False and none["p_value"] == 1.0
    empty = paired_test([], ALPHA)
    assert empty["n"] == 0 and empty["beats_random"] is None


def test_mean_interval_bootstrap_and_its_normal_form_for_large_n():
    rng = np.random.default_rng(0)
    d = rng.normal(0.2, 1.0, size=400)
    low, high, how = mean_interval(d)
    se = d.std(ddof=1) / math.sqrt(d.size)
    # the percentile bootstrap of a mean is close to mean +- 1.96 se at n = 400 (its own
    # Monte-Carlo error with 2,000 resamples is about 0.1 se)
    assert "bootstrap" in how
    assert low == pytest.approx(d.mean() - 1.96 * se, abs=0.25 * se)
    assert high == pytest.approx(d.mean() + 1.96 * se, abs=0.25 * se)
    big = rng.normal(0.0, 1.0, size=BOOTSTRAP_MAX + 1)
    low, high, how = mean_interval(big)
    assert how.startswith("normal") and high - low == pytest.approx(
        2 * 1.959963984540054 * big.std(ddof=1) / math.sqrt(big.size))


def _line(i: int, diffs: dict[str, float], correct: bool | None = None) -> dict:
    rec = {"id": i, "attributions": {m: {"seconds": 0.1} for m in diffs},
           "metrics": {"faithfulness": {
               "alpha": ALPHA,
               "methods": {m: {"deletion_aopc": 0.2 + d, "aopc_minus_random": d, "beats_random": None,
                               "effect_size": 1.0, "p_value": 0.25} for m, d in diffs.items()},
               "random": {"deletion_aopc": 0.2, "orders": 3, "paired_orders": 3}}}}
    if correct is not None:
        rec["correct"] = correct
    return rec


def test_summary_streams_the_dataset_level_verdict_first():
    rng = np.random.default_rng(11)
    good = rng.normal(0.3, 0.1, size=60)
    null = rng.normal(0.0, 0.1, size=60)
    correct = rng.random(60) < 0.7
    acc = Summary()
    for i in range(60):
        acc.add(_line(i, {"oracle": good[i], "random_like": null[i]}, bool(correct[i])))
    out = acc.result()
    assert list(out)[0] == "dataset"
    ds = out["dataset"]["methods"]
    assert ds["oracle"]["beats_random"] is True and ds["random_like"]["beats_random"] is False
    # the p-value is scipy's on the same vector, computed here independently of the summary
    assert ds["oracle"]["p_value"] == pytest.approx(stats.wilcoxon(good, alternative="greater").pvalue)
    assert ds["random_like"]["p_value"] == pytest.approx(stats.wilcoxon(null, alternative="greater").pvalue)
    wrong = out["outcomes"]["wrong"]["dataset"]["methods"]["oracle"]
    assert wrong["n"] == int((~correct).sum())
    assert wrong["p_value"] == pytest.approx(stats.wilcoxon(good[~correct], alternative="greater").pvalue)
    assert out["dataset"]["random_orders_per_input"] == [3]
    text = summary_table(out)
    assert text.splitlines()[0].startswith("Does each method beat the random control")
    assert text.index("does not beat random") < text.index("del. AOPC")
    assert text.splitlines()[-1].startswith("flip count")  # the notes stay last


def test_summary_reads_lines_written_before_the_paired_difference():
    old = _line(0, {"m": 0.1})
    del old["metrics"]["faithfulness"]["methods"]["m"]["aopc_minus_random"]
    acc = Summary()
    acc.add(old)
    assert acc.result()["dataset"]["methods"]["m"]["mean_difference"] == pytest.approx(0.1)


def test_small_flip_rounds_find_the_same_flips_with_fewer_predictions():
    from explainers.metrics import flip_chunk
    from explainers.metrics.flip import flip_orders
    n = 30
    predict, w = linear_model(n, 6)

    def counting(seen):
        def f(keep):
            seen.append(len(keep))
            return np.concatenate([1 - predict(keep), predict(keep)], axis=1)  # 2 classes
        return f

    orders = {"oracle": np.argsort(-w), "other": np.random.default_rng(0).permutation(n)}
    small, big = [], []
    a = flip_orders(orders, 1, counting(small), n, chunk=flip_chunk(1))
    b = flip_orders(orders, 1, counting(big), n, chunk=256)
    assert a == b and a["oracle"][0] is not None
    assert sum(small) < sum(big)
