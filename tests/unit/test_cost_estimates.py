"""Cost estimates in seconds: calibrated per model and kind of work, refreshed from each
run (an exponential moving average), priced on each method's own split of gradient and
forward rows."""

from __future__ import annotations

import copy

import pytest
import torch

import explainers.engine as engine
from explainers.engine import (COSTS, EWMA_WEIGHT, CostModel, estimate_cost, estimate_seconds, estimate_work,
                               fold, grad_share, method_work, predict_seconds, run_method, split_seconds)

TEXT = "the soup was bland and the service was terrible !"
METHODS = ("integrated_gradients", "gradient_shap", "occlusion", "saliency", "feature_ablation", "kernel_shap")


def test_fold_is_an_exponential_moving_average():
    assert fold(None, 2.0, 4.0) == 0.5  # the first run sets the rate
    assert fold(0.5, 3.0, 2.0) == pytest.approx((1 - EWMA_WEIGHT) * 0.5 + EWMA_WEIGHT * 1.5)
    assert fold(0.5, 3.0, 0.0) == 0.5  # a run without work teaches nothing
    rate = None
    for _ in range(12):  # a steady machine: the rate converges to the measured one
        rate = fold(rate, 0.7, 10.0) if rate is not None else fold(rate, 9.0, 10.0)
    # the first (slow, cold) run's excess decays by (1 - weight) with every run after it
    assert rate == pytest.approx(0.07 + (0.9 - 0.07) * (1 - EWMA_WEIGHT) ** 11)


def test_split_seconds_follows_the_known_rates():
    assert split_seconds(4.0, {"grad": 10, "forward": 10}, {"grad": 0.3, "forward": 0.1}) == \
        pytest.approx({"grad": 3.0, "forward": 1.0})
    # nothing known yet: a gradient row is assumed GRAD_TO_FORWARD forward rows
    g = engine.GRAD_TO_FORWARD
    assert split_seconds(4.0, {"grad": 10, "forward": 10}, {}) == \
        pytest.approx({"grad": 4.0 * g / (g + 1), "forward": 4.0 / (g + 1)})
    # one kind known: it keeps its predicted share, the other gets the rest
    assert split_seconds(4.0, {"grad": 10, "forward": 20}, {"grad": 0.1}) == pytest.approx({"grad": 1.0, "forward": 3.0})
    assert split_seconds(1.0, {"grad": 0, "forward": 5}, {}) == pytest.approx({"forward": 1.0})
    assert predict_seconds({"grad": 0.2, "forward": 0.1}, {"grad": 5, "forward": 10}) == pytest.approx(2.0)
    assert predict_seconds({"grad": None, "forward": 0.1}, {"grad": 5, "forward": 10}) is None


def test_the_estimate_from_measured_runs(tiny_text):
    enc = tiny_text.encode(TEXT)
    costs = CostModel()
    units = float(estimate_work(tiny_text, enc, "occlusion"))
    runs = [(0.9, units), (0.3, units), (0.5, 2 * units)]  # (seconds, units) as runs report them
    for seconds, u in runs:
        costs.record(tiny_text, seconds, {"forward": u}, "occlusion", u)
    rate = None
    for seconds, u in runs:  # the test's own moving average
        rate = seconds / u if rate is None else (1 - EWMA_WEIGHT) * rate + EWMA_WEIGHT * seconds / u
    assert estimate_seconds(tiny_text, enc, "occlusion", costs=costs) == pytest.approx(rate * units)
    assert estimate_seconds(tiny_text, enc, "occlusion", inputs=2, costs=costs) == pytest.approx(2 * rate * units)
    # a method that never ran is priced on the kinds' rates its runs taught, on its own split
    kinds = costs.rates(tiny_text)
    assert kinds["forward"] == pytest.approx(rate)  # occlusion's rows are all forward rows
    costs.record(tiny_text, 2.0, {"grad": 10.0}, "saliency", 10.0)
    work = method_work(tiny_text, enc, "integrated_gradients")
    expected = work["grad"] * 0.2 + work["forward"] * kinds["forward"]
    assert estimate_seconds(tiny_text, enc, "integrated_gradients", costs=costs) == pytest.approx(expected)


def test_before_any_run_the_calibration_prices_each_kind(tiny_text, monkeypatch):
    enc = tiny_text.encode(TEXT)
    measured = {"grad": 3e-4, "forward": 1e-4, "metric": 2e-4}
    monkeypatch.setattr(engine, "measure_rates", lambda a, e, passes=8, kinds=engine.WORK_KINDS:
                        {k: measured[k] for k in kinds})
    costs = CostModel()
    per = tiny_text.work_per_pass(enc)
    occ = estimate_cost(tiny_text, enc, "occlusion")
    assert estimate_seconds(tiny_text, enc, "occlusion", costs=costs) == pytest.approx(occ * per * 1e-4)
    ig = estimate_cost(tiny_text, enc, "integrated_gradients")  # 50 gradient rows + 2 delta forwards
    assert estimate_seconds(tiny_text, enc, "integrated_gradients", costs=costs) == \
        pytest.approx((50 * 3e-4 + 2 * 1e-4) * per * ig / 52)
    assert engine.estimate_metric_seconds(tiny_text, enc, 40, costs=costs) == pytest.approx(40 * per * 2e-4)


@pytest.mark.parametrize("name", METHODS)
def test_grad_share_is_what_a_real_run_sends_the_model(tiny_text, name):
    enc = tiny_text.encode(TEXT)
    seen = {"grad": 0, "forward": 0}
    counting = copy.copy(tiny_text)
    real = tiny_text.forward

    def forward(x, e):
        seen["grad" if torch.is_grad_enabled() and x.requires_grad else "forward"] += x.shape[0]
        return real(x, e)

    counting.forward = forward
    run_method(counting, enc, name, None, 0)
    assert grad_share(tiny_text, enc, name) == pytest.approx(seen["grad"] / (seen["grad"] + seen["forward"]))


def test_every_computed_run_refreshes_the_methods_rate(tiny_text):
    enc = tiny_text.encode(TEXT)
    COSTS.forget(tiny_text)
    a = run_method(tiny_text, enc, "occlusion", None, 0)
    units = float(estimate_work(tiny_text, enc, "occlusion"))
    assert COSTS.method_rate(tiny_text, "occlusion") == pytest.approx(a.seconds / units)
    b = run_method(tiny_text, enc, "occlusion", None, 0)
    assert COSTS.method_rate(tiny_text, "occlusion") == pytest.approx(
        (1 - EWMA_WEIGHT) * a.seconds / units + EWMA_WEIGHT * b.seconds / units)
    assert estimate_seconds(tiny_text, enc, "occlusion") == pytest.approx(
        COSTS.method_rate(tiny_text, "occlusion") * units)


def test_a_kinds_first_run_replaces_its_calibration(tiny_text, monkeypatch):
    enc = tiny_text.encode(TEXT)
    monkeypatch.setattr(engine, "measure_rates", lambda a, e, passes=8, kinds=engine.WORK_KINDS:
                        {k: 1.0 for k in kinds})  # a calibration taken in a bad moment
    costs = CostModel()
    costs.calibrated(tiny_text, enc)
    costs.record(tiny_text, 2.0, {"forward": 100.0})
    assert costs.rates(tiny_text)["forward"] == pytest.approx(0.02)  # the run, not half the stand-in
    costs.record(tiny_text, 4.0, {"forward": 100.0})
    assert costs.rates(tiny_text)["forward"] == pytest.approx((1 - EWMA_WEIGHT) * 0.02 + EWMA_WEIGHT * 0.04)
    assert costs.rates(tiny_text)["grad"] == 1.0  # not run yet: still the calibration
