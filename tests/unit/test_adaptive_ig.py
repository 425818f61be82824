"""Adaptive Integrated Gradients: nested Clenshaw-Curtis that stops at the tolerance and
never evaluates a point twice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explainers import ExplainerError
from explainers.engine import estimate_cost, run_method
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
        hist = out.history[r]
        # the delta is the true error of the sum, and the run stops at the first level within it
        assert out.delta[r] == pytest.approx(float(out.integral[r].sum() - gap[r]), abs=1e-12)
        assert out.converged[r] and abs(hist[-1][1]) <= rtol * abs(float(gap[r]))
        assert all(abs(d) > rtol * abs(float(gap[r])) for _, d in hist[:-1])
        # elementwise, not only the sum, is close to the known integral
        assert torch.allclose(out.integral[r], exact[r], rtol=max(10 * rtol, 1e-9), atol=1e-9)
    # reuse: every row costs exactly the points of its last level, one model call per level
    assert model.rows == sum(out.points) == out.evaluations
    assert model.calls == max(len(h) for h in out.history)
    assert out.f1.tolist() == pytest.approx(torch.exp(c * x).sum(1).tolist())


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
    # close to a fine fixed-step run
    fine = run_method(tiny_text, enc, "integrated_gradients", {"n_steps": 64, "baselines": ["pad"]}, 1)
    assert np.allclose(a.scores, fine.scores, atol=0.05 * np.abs(fine.scores).max())
    assert estimate_cost(tiny_text, enc, "integrated_gradients", {"n_steps": "auto"}) == 25
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
