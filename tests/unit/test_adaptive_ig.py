"""IG's quadrature: adaptive nested Clenshaw-Curtis that stops only when every feature has
settled and completeness holds, never evaluating a point twice; and the trapezoid rule's
own weights (Captum's sum to (n - 1)/n)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explainers import ExplainerError
from captum.attr import IntegratedGradients

from explainers.engine import estimate_cost, run_method
from explainers.methods.integrated_gradients import AUTO_COST_POINTS, trapezoid_weights
from explainers.quadrature import MAX_POINTS, clenshaw_curtis, integrate, levels, straight_path


class Counting(torch.nn.Module):
    """f(z) = [sum(exp(c * z)), 0]: the IG integrand of row r, element i, is
    c (x_i - b_i) exp(c (b_i + a (x_i - b_i))), whose integral is exp(c x_i) - exp(c b_i)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c
        self.calls = 0
        self.rows = 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += z.shape[0]
        s = torch.exp(self.c * z).flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_clenshaw_curtis_is_exact_for_degree_n_and_nested():
    for n in (3, 6, 12, 24):
        nodes, weights = clenshaw_curtis(n)
        for d in range(n + 1):
            assert float((weights * nodes ** d).sum()) == pytest.approx(1 / (d + 1), abs=1e-13)
        coarse, _ = clenshaw_curtis(n // 2 if n > 3 else n)
        if n > 3:
            assert np.array_equal(coarse, nodes[::2])  # bit-identical: the points are reused
    assert levels() == [3, 6, 12, 24, 48, 96] and MAX_POINTS == 97


@pytest.mark.parametrize("c, rtol", [(1.0, 1e-2), (3.0, 1e-2), (3.0, 1e-6)])
def test_stops_at_the_tolerance_and_reuses_every_evaluation(c, rtol):
    torch.manual_seed(0)
    x = torch.rand(2, 5, dtype=torch.float64)
    b = torch.zeros_like(x)
    model = Counting(c)
    out = integrate(straight_path(model, x, b, 0, batch_size=1000), 2, rtol)
    exact = torch.exp(c * x) - torch.exp(c * b)
    gap = exact.sum(1)
    for r in range(2):
        hist, changes = out.history[r], out.changes[r]
        tol = rtol * abs(float(gap[r]))

        def settled(level: int) -> bool:  # both halves of the rule at one level
            return abs(hist[level][1]) <= tol and changes[level] <= rtol

        # the delta is the true error of the sum
        assert out.delta[r] == pytest.approx(float(out.integral[r].sum() - gap[r]), abs=1e-12)
        # it stops at the first level where completeness holds and every element settled
        assert out.converged[r] and settled(len(hist) - 1)
        assert not any(settled(level) for level in range(1, len(hist) - 1))
        assert math.isnan(changes[0]) and len(hist) >= 2  # never at the first level
        assert out.change[r] == changes[-1]
        # elementwise, not only the sum, within rtol of the largest element of the known integral
        assert float((out.integral[r] - exact[r]).abs().max()) <= rtol * float(exact[r].abs().max())
    # reuse: every row costs exactly the points of its last level, one model call per level
    assert model.rows == sum(out.points) == out.evaluations
    assert model.calls == max(len(h) for h in out.history)
    assert out.f1.tolist() == pytest.approx(torch.exp(c * x).sum(1).tolist())


class Cancelling(torch.nn.Module):
    """f(z) = exp(c z_0) - exp(c z_1): from b = 0 to x = (1, 1) the two features' integrands
    are exact opposites, so every level's sum is 0 = f(x) - f(b) and completeness holds
    from the first level, while each feature's integral, +-(exp(c) - 1), is still far off."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s = torch.exp(self.c * z[:, 0]) - torch.exp(self.c * z[:, 1])
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_completeness_by_cancellation_does_not_stop_it():
    c, rtol = 6.0, 1e-3
    x = torch.ones(1, 2, dtype=torch.float64)
    out = integrate(straight_path(Cancelling(c), x, torch.zeros_like(x), 0, 1000), 1, rtol)
    exact = torch.tensor([math.exp(c) - 1, -(math.exp(c) - 1)], dtype=torch.float64)
    assert all(abs(d) < 1e-9 for _, d in out.history[0])  # the sum is right at every level
    # 4 points are 3.9 % off per feature (Clenshaw-Curtis on c exp(c a)); it refines past them
    assert out.points[0] > 4 and out.converged[0]
    assert float((out.integral[0] - exact).abs().max()) <= rtol * float(exact.abs().max())
    assert out.change[0] <= rtol


def test_stops_at_the_cap_when_the_tolerance_is_out_of_reach():
    x = torch.full((1, 3), 4.0)  # float32: the error never reaches 1e-12 of the gap
    model = Counting(3.0)
    out = integrate(straight_path(model, x, torch.zeros_like(x), 0, 1000), 1, rtol=1e-12)
    assert out.points == [MAX_POINTS] and out.converged == [False]
    assert model.rows == MAX_POINTS  # 4 + 3 + 6 + 12 + 24 + 48 new points, none twice
    assert [p for p, _ in out.history[0]] == [4, 7, 13, 25, 49, 97]


def test_auto_on_a_tiny_text_model(tiny_text):
    enc = tiny_text.encode("the soup was bland and the service was terrible !")
    a = run_method(tiny_text, enc, "integrated_gradients", {"n_steps": "auto", "rtol": 0.01, "baselines": ["pad"]}, 1)
    assert a.params["n_steps"] == "auto" and a.params["rtol"] == 0.01
    st = a.delta_stats
    assert st["n_steps_used"] in (4, 7, 13, 25, 49, 97) and st["history"][-1][0] == st["n_steps_used"]
    gap = st["gaps"][0]
    if st["converged"]:
        assert abs(a.convergence_delta) <= 0.01 * max(abs(gap), 1e-3)
    # completeness of the returned map: its sum is f(x) - f(b) up to the reported delta
    assert float(np.sum(a.scores)) == pytest.approx(gap + a.convergence_delta, abs=1e-4)
    # every word settled: the last level moved no word by more than rtol of the largest
    assert [p for p, _ in st["feature_history"]] == [p for p, _ in st["history"]]
    assert st["feature_history"][0][1] is None  # nan in JSON: the first level has no level before
    if st["converged"]:
        assert st["feature_change"] == st["feature_history"][-1][1] <= 0.01
    # word by word close to a fine fixed-step run: the change bounds the coarser level's
    # error by rtol x the largest score; 2 x rtol leaves room for the 64-step run's own error
    fine = run_method(tiny_text, enc, "integrated_gradients", {"n_steps": 64, "baselines": ["pad"]}, 1)
    assert np.abs(a.scores - fine.scores).max() <= 0.02 * np.abs(fine.scores).max()
    assert estimate_cost(tiny_text, enc, "integrated_gradients", {"n_steps": "auto"}) == AUTO_COST_POINTS
    assert any("auto" in n for n in a.notes)


def test_auto_is_only_word_accepted(tiny_text):
    enc = tiny_text.encode("the soup was bland")
    with pytest.raises(ExplainerError, match="or 'auto'"):
        run_method(tiny_text, enc, "integrated_gradients", {"n_steps": "often"}, 1)
    a = run_method(tiny_text, enc, "integrated_gradients", {"n_steps": "AUTO", "baselines": ["pad"]}, 1)
    assert a.params["n_steps"] == "auto"
    assert math.isfinite(a.convergence_delta)


def test_stability_reports_where_auto_stopped(tiny_tabular):
    from explainers import explain
    params = {"integrated_gradients": {"n_steps": "auto", "rtol": 0.001}}
    r = explain(tiny_tabular, 3, ["integrated_gradients"], params, metrics=["stability"],
                metric_params={"ig_steps": [4, 8]}, use_cache=False)
    auto = r.metrics["stability"]["ig_convergence"]["auto"]
    st = r.attributions["integrated_gradients"].delta_stats
    assert auto["n_steps_used"] == st["n_steps_used"] == auto["points"][-1]
    assert auto["points"] == [p for p, _ in st["history"]] and auto["rtol"] == 0.001
    assert len(auto["relative_delta"]) == len(auto["points"])
    assert r.metrics["stability"]["ig_convergence"]["n_steps"] == [4, 8]


def test_trapezoid_uses_the_rules_weights_on_a_known_integral():
    c, n = 3.0, 50
    x = torch.tensor([[0.3, 0.7, 1.0]], dtype=torch.float64)
    model = Counting(c)
    attr, delta = IntegratedGradients(model).attribute(
        x, torch.zeros_like(x), target=0, n_steps=n, method="riemann_trapezoid",
        return_convergence_delta=True)
    exact = torch.exp(c * x) - 1
    # Captum's weights: the sum is (n - 1)/n of the gap, a 2 % bias at 50 steps
    assert float(attr.sum()) == pytest.approx((n - 1) / n * float(exact.sum()), rel=1e-3)
    fixed, fixed_delta = trapezoid_weights(attr, delta, n)
    # trapezoid error bound per element: h^2 / 12 * max |g''| (h = 1/(n-1), g = c x e^{c a x})
    bound = (c * x) ** 3 * torch.exp(c * x) / (12 * (n - 1) ** 2)
    assert torch.all((fixed - exact).abs() <= bound)
    assert float(fixed_delta[0]) == pytest.approx(float(fixed.sum() - exact.sum()), abs=1e-9)


def test_trapezoid_completeness_at_50_steps(tiny_tabular):
    enc = tiny_tabular.encode(3)
    a = run_method(tiny_tabular, enc, "integrated_gradients",
                   {"n_steps": 50, "method": "riemann_trapezoid"}, 1)
    gap = a.delta_stats["gaps"][0]
    assert abs(gap) > 1e-3  # a gap worth explaining
    # the completeness delta is the sum's true error: Captum's weights leave gap / 50 of it;
    # the rule's own weights leave O(1/n^2) on this smooth (tanh) model, under a tenth of that
    assert float(np.sum(a.scores)) == pytest.approx(gap + a.convergence_delta, abs=1e-5)
    assert abs(a.convergence_delta) <= 0.1 * abs(gap) / 50
