"""Integrated Gradients (Sundararajan et al., 2017, https://arxiv.org/abs/1703.01365)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
from captum.attr import IntegratedGradients as _IG

from .. import quadrature
from ..params import AUTO, ParamSpec
from ..pooling import Pool, Request
from ..registry import register_method
from .base import Method, n_baselines, repeat_for_baselines

if TYPE_CHECKING:
    from ..adapters.base import Encoded, ModelAdapter


@register_method
class IntegratedGradients(Method):
    r"""Path integral of gradients from a baseline to the input, times (input - baseline).

    Satisfies completeness: the scores sum to f(input) - f(baseline), up to the reported
    convergence delta. Several baselines are run in one batched Captum call and averaged.

    With several baselines each has its own completeness error ``delta_k``. Their signed
    mean cancels (-3.6e-5 and +2.7e-5 would read as -4.5e-6), so ``convergence_delta`` is
    the per-baseline delta of largest magnitude, signed (with one baseline: Captum's
    delta), and ``delta_stats`` holds every ``delta_k``, ``f(x) - f(b_k)``, the mean and
    the max of ``|delta_k|``.

    ``n_steps="auto"`` integrates with nested Clenshaw-Curtis (:mod:`explainers.quadrature`)
    and stops each baseline at the first level where both ``|delta_k| <= rtol * |f(x) -
    f(b_k)|`` and every displayed feature (word, pixel, column) agrees with the level before
    to ``rtol`` of the largest, or at :data:`~explainers.quadrature.MAX_POINTS`;
    ``delta_stats`` then adds ``n_steps_used`` (the most points any baseline used),
    ``n_steps_per_baseline``, ``converged``, ``history`` (``[points, delta]`` per level of
    the worst baseline), ``feature_change`` (the largest per-feature change reached, relative
    to the largest feature), ``feature_change_per_baseline`` and ``feature_history``
    (``[points, change]`` per level of the worst baseline).

    ``method="riemann_trapezoid"``: Captum weighs its ``n`` evenly spaced nodes by ``1/n``
    (``1/2n`` at the ends), which sums to ``(n - 1)/n``, a ``1/n`` completeness bias; the
    trapezoid rule on those nodes weighs ``1/(n - 1)``, so the result is rescaled by
    ``n/(n - 1)`` (exact: the nodes are the same) and its delta recomputed.
    """

    name = "integrated_gradients"
    input_factor = True
    title = "Integrated Gradients"
    summary = ("Averages gradients along a straight path from a baseline to the input. "
               "Trust it when |convergence delta| is small relative to the logit change; "
               "it depends on the baseline you choose.")
    paper = "Sundararajan, Taly, Yan. Axiomatic Attribution for Deep Networks. ICML 2017."
    has_convergence_delta = True
    supports_noise_tunnel = True
    interpolates = True  # offered no edit baselines (generation's "delete")
    defer_model_calls = True  # Captum never branches on outputs: pooled across inputs

    def own_params(self, adapter):
        return [
            ParamSpec("n_steps", "int", 50, "integration steps (more = smaller delta, slower); "
                      "'auto': refine until every feature's score settles (changes by at most "
                      "rtol x the largest between levels) and |delta| <= rtol x |f(x) - f(baseline)|",
                      min=2, max=1024, cost=True, auto=True),
            ParamSpec("method", "choice", "gausslegendre", "integration rule (fixed n_steps; "
                      "'auto' uses nested Clenshaw-Curtis)",
                      choices=("gausslegendre", "riemann_trapezoid", "riemann_left",
                               "riemann_right", "riemann_middle")),
            ParamSpec("rtol", "float", quadrature.DEFAULT_RTOL,
                      "n_steps 'auto' only: relative per-feature change and convergence delta "
                      "to stop at",
                      min=1e-4, max=0.5),
        ]

    def notes(self, adapter, enc, params):
        if params["n_steps"] != AUTO:
            return []
        return [f"n_steps auto: nested Clenshaw-Curtis up to {quadrature.MAX_POINTS} points per "
                f"baseline, stopped once every feature's score changes by at most {params['rtol']:g} "
                f"x the largest between levels and |delta| <= {params['rtol']:g} x |f(x) - "
                f"f(baseline)|; 'method' is not used"]

    def cost(self, adapter, enc, params):
        """Per baseline ``n_steps + 2`` (Captum's two delta forwards); for ``"auto"`` it
        assumes :data:`AUTO_COST_POINTS` points (where most short texts stop; no extra
        forwards, the path's ends are nodes), though a hard input may use up to
        :data:`~explainers.quadrature.MAX_POINTS`. The time estimate learns the real mix from
        each run (:func:`explainers.engine.estimate_seconds`)."""
        k = n_baselines(adapter, enc, params)
        if params["n_steps"] == AUTO:
            return k * AUTO_COST_POINTS
        return k * params["n_steps"] + 2 * k

    def attribute_many(self, adapter, encs, targets, params, pool):
        """Fixed ``n_steps``: the pooled default. ``"auto"``: every input's baselines refine
        together, level by level, each level's new points evaluated as one pooled batch."""
        if params["n_steps"] != AUTO or params.get("noise_tunnel", "none") not in (None, "none"):
            return super().attribute_many(adapter, encs, targets, params, pool)
        return adaptive_many(adapter, encs, targets, params, pool)

    def attribute(self, adapter, enc, target, params, forward):
        baselines = adapter.baselines(enc, params["baselines"])
        inputs = repeat_for_baselines(enc, baselines)
        if params["n_steps"] == AUTO:
            evaluate = quadrature.straight_path(forward, inputs, baselines, target, adapter.grad_batch_size)
            return adaptive_result(quadrature.integrate(
                evaluate, inputs.shape[0], params["rtol"],
                features=lambda _r, integral: feature_scores(adapter, enc, integral)))
        ig = _IG(forward, multiply_by_inputs=True)
        attr, delta = ig.attribute(
            inputs, baselines=baselines, target=target, n_steps=params["n_steps"],
            method=params["method"], internal_batch_size=adapter.grad_batch_size,
            return_convergence_delta=True)
        if params["method"] == "riemann_trapezoid":
            attr, delta = trapezoid_weights(attr, delta, params["n_steps"])
        return attr.mean(0, keepdim=True), delta_stats(attr, delta)


#: what the cost estimate assumes an ``n_steps="auto"`` run spends per baseline: where most
#: SST-2 dev sentences stop under the per-word rule at the default rtol 1e-3 (BENCHMARKS.md:
#: median 97; at rtol 0.01, 49)
AUTO_COST_POINTS = 97


def trapezoid_weights(attr: torch.Tensor, delta: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum's ``riemann_trapezoid`` result with the trapezoid rule's own weights.

    Captum weighs the ``n`` nodes ``linspace(0, 1, n)`` by ``1/n`` (``1/2n`` at the ends),
    summing to ``(n - 1)/n``; the trapezoid rule on those nodes (spacing ``1/(n - 1)``)
    weighs ``1/(n - 1)``. Same nodes, weights off by one factor, so the attribution scales
    by ``n/(n - 1)`` and the delta is recomputed against the unchanged ``f(x) - f(b)``.
    """
    def sums(a: torch.Tensor) -> torch.Tensor:
        return a.detach().double().reshape(a.shape[0], -1).sum(1).cpu()

    gap = sums(attr) - delta.detach().double().reshape(-1).cpu()
    attr = attr * (n / (n - 1))
    return attr, sums(attr) - gap


def feature_scores(adapter: "ModelAdapter", enc: "Encoded", integral: torch.Tensor) -> torch.Tensor:
    """One row's integral ``[...]`` as the scores the user reads (:meth:`ModelAdapter.reduce`:
    words, pixels, columns), flat: what the adaptive rule asks to settle."""
    return torch.from_numpy(adapter.reduce(integral.unsqueeze(0).float(), enc)).reshape(-1)


def adaptive_result(outcome: "quadrature.Outcome") -> tuple[torch.Tensor, dict]:
    """The attribution (mean over baselines, ``[1, ...]``) and ``delta_stats`` of an
    adaptive run, with ``n_steps_used``, ``n_steps_per_baseline``, ``converged``, the
    per-feature change reached (``feature_change``, the largest over the baselines, and
    ``feature_change_per_baseline``) and the worst baseline's ``history`` (``[points,
    delta]``) and ``feature_history`` (``[points, change]``; None at the first level, which
    has no level before it)."""
    stats = delta_stats(outcome.integral, outcome.delta)
    worst = int(outcome.delta.abs().argmax())
    points = [p for p, _ in outcome.history[worst]]
    stats.update({"n_steps_used": int(max(outcome.points)), "n_steps_per_baseline": list(outcome.points),
                  "converged": bool(all(outcome.converged)),
                  "history": [[p, d] for p, d in outcome.history[worst]],
                  "history_gap": float(outcome.f1[worst] - outcome.f0[worst]),
                  "feature_change": max((c for c in outcome.change if not math.isnan(c)), default=None),
                  "feature_change_per_baseline": [None if math.isnan(c) else c for c in outcome.change],
                  "feature_history": [[p, None if math.isnan(c) else c]
                                      for p, c in zip(points, outcome.changes[worst])]})
    return outcome.integral.mean(0, keepdim=True), stats


def delta_stats(attr: torch.Tensor, delta: torch.Tensor) -> dict:
    """Per-baseline completeness errors of a batched IG call.

    Args:
        attr: attributions ``[K, ...]``, one row per baseline.
        delta: Captum's convergence deltas ``[K]``.

    Returns:
        ``{"convergence_delta", "per_baseline", "gaps", "mean_abs", "max_abs"}`` where
        ``gaps[k] = f(x) - f(b_k) = sum(attr_k) - delta_k`` and ``convergence_delta`` is
        the ``delta_k`` of largest magnitude, signed.
    """
    d = delta.detach().double().cpu().reshape(-1)
    sums = attr.detach().double().reshape(attr.shape[0], -1).sum(1).cpu()
    worst = int(d.abs().argmax())
    return {"convergence_delta": float(d[worst]), "per_baseline": d.tolist(),
            "gaps": (sums - d).tolist(), "mean_abs": float(d.abs().mean()),
            "max_abs": float(d.abs().max())}


def adaptive_many(adapter: "ModelAdapter", encs: Sequence["Encoded"], targets: Sequence[int],
                  params: dict, pool: Pool) -> list[Any]:
    """Adaptive IG (``n_steps="auto"``) on many inputs: one row per (input, baseline), all
    rows refined by :func:`explainers.quadrature.integrate`, each level's new points
    pooled. A row stops exactly where it would alone, so each input's result is its
    one-at-a-time result."""
    out: list[Any] = [None] * len(encs)
    rows: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (input, x, baseline)
    owner: dict[int, list[int]] = {}
    for i, enc in enumerate(encs):
        try:
            base = adapter.baselines(enc, params["baselines"])
        except Exception as e:  # noqa: BLE001
            out[i] = e
            continue
        xs = repeat_for_baselines(enc, base)
        for r in range(base.shape[0]):
            owner.setdefault(i, []).append(len(rows))
            rows.append((i, xs[r:r + 1], base[r:r + 1]))
    if not rows:
        return out

    def evaluate(which: np.ndarray, alphas: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        per_row: dict[int, list[int]] = {}
        for j, r in enumerate(which):
            per_row.setdefault(int(r), []).append(j)
        reqs, order = [], []
        for r, js in per_row.items():
            i, x, b = rows[r]
            a = torch.as_tensor(alphas[js], dtype=x.dtype, device=x.device).reshape(
                (-1,) + (1,) * (x.dim() - 1))
            reqs.append(Request(i, (b + a * (x - b)).detach(), targets[i]))
            order.append((r, js))
        pool.run(reqs)
        g: list[Any] = [None] * len(which)
        f = torch.empty(len(which), dtype=torch.float64)
        for (r, js), req in zip(order, reqs):
            i, x, b = rows[r]
            grads = req.grad * (x - b)
            for n, j in enumerate(js):
                g[j] = grads[n]
                f[j] = float(req.logits[n, targets[i]])
        return g, f

    outcome = quadrature.integrate(
        evaluate, len(rows), params["rtol"],
        features=lambda r, integral: feature_scores(adapter, encs[rows[r][0]], integral))
    for i, mine in owner.items():
        out[i] = adaptive_result(outcome.select(mine))
    return out
