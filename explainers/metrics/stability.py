"""Stability: do the scores depend on settings that should not matter?

* IG convergence: Integrated Gradients is a Riemann/Gauss-Legendre approximation of a path
  integral; its completeness error (``convergence_delta``, Sundararajan et al. 2017,
  https://arxiv.org/abs/1703.01365) shrinks as ``n_steps`` grows. We run several step
  counts and suggest the smallest that converged.
* GradientSHAP seeds: GradientSHAP (Lundberg & Lee 2017) samples baselines and path
  points; rerunning it with other seeds gives a confidence interval per feature.
* Baseline sensitivity: baseline-based methods are run under every baseline kind of the
  modality and compared by Spearman correlation (Sturmfels et al., *Visualizing the
  Impact of Feature Attribution Baselines*, Distill 2020).

All runs go through :func:`explainers.engine.run_method`, so they are cached in the store.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats

from ..adapters.base import Encoded, ModelAdapter
from ..engine import run_method
from ..registry import get_method
from .agreement import rank_agreement

#: |f(x) - f(b)| below this (in logits) is replaced by it in the relative tolerance
MIN_REFERENCE = 0.1


def relative_delta(total: float, delta: float) -> float:
    """``|delta| / max(|f(x) - f(b)|, MIN_REFERENCE)``.

    Captum's delta is ``sum(attributions) - (f(x) - f(b))``, so ``f(x) - f(b)`` is
    recovered as ``total - delta`` without another forward pass.
    """
    return abs(delta) / max(abs(total - delta), MIN_REFERENCE)


def worst_relative_delta(stats: dict | None, total: float, delta: float) -> float:
    """The largest per-baseline relative delta when ``stats`` (IG's ``delta_stats``) has
    per-baseline deltas and gaps, else :func:`relative_delta` of ``total`` and ``delta``."""
    if stats and stats.get("per_baseline") and stats.get("gaps"):
        return max(abs(d) / max(abs(g), MIN_REFERENCE)
                   for d, g in zip(stats["per_baseline"], stats["gaps"]))
    return relative_delta(total, delta)


def suggest_steps(n_steps: Sequence[int], relative: Sequence[float], tolerance: float) -> int | None:
    """The smallest ``n_steps`` whose relative delta is below ``tolerance`` (None if none)."""
    ok = [s for s, r in sorted(zip(n_steps, relative))
          if r is not None and math.isfinite(r) and r < tolerance]
    return int(ok[0]) if ok else None


def t_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and two-sided Student-t confidence interval of the mean, per column.

    ``samples`` is ``[runs, features]`` with at least two runs. The interval is
    ``mean +- t_{(1+confidence)/2, runs-1} * sd / sqrt(runs)``: it covers the expected
    attribution (over seeds) with the given confidence, assuming roughly normal runs.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError("t_interval needs at least two runs")
    mean = x.mean(0)
    sem = x.std(0, ddof=1) / math.sqrt(x.shape[0])
    half = stats.t.ppf((1 + confidence) / 2, x.shape[0] - 1) * sem
    return mean, mean - half, mean + half


def crosses_zero(low: np.ndarray, high: np.ndarray) -> list[int]:
    """Indices whose interval contains 0: their sign is not significant."""
    return [int(i) for i in np.flatnonzero((np.asarray(low) <= 0) & (np.asarray(high) >= 0))]


def ig_convergence(adapter: ModelAdapter, enc: Encoded, target: int, params: dict,
                   steps: Sequence[int], tolerance: float, store: Any = None,
                   progress: Callable[[float], None] | None = None) -> dict:
    """IG at each ``n_steps`` with the user's other parameters: sum, delta, suggestion.

    Returns:
        ``{"n_steps", "sum", "delta", "relative_delta", "tolerance", "suggested_n_steps"}``
        where ``suggested_n_steps`` is the smallest step count with
        ``|delta| / max(|f(x) - f(b)|, 0.1) < tolerance`` (logit units), for the worst of
        the baselines when there are several.
    """
    sums, deltas, rel = [], [], []
    auto = None
    if params.get("n_steps") == "auto":  # the user's own adaptive run: where did it stop?
        auto = adaptive_stop(run_method(adapter, enc, "integrated_gradients", params, target, store))
    for i, s in enumerate(steps):
        a = run_method(adapter, enc, "integrated_gradients", {**params, "n_steps": int(s)}, target, store)
        total = float(np.sum(a.scores))
        delta = float(a.convergence_delta) if a.convergence_delta is not None else float("nan")
        sums.append(total)
        deltas.append(delta)
        rel.append(worst_relative_delta(a.delta_stats, total, delta) if math.isfinite(delta)
                   else float("nan"))
        if progress:
            progress((i + 1) / len(steps))
    out = {"n_steps": [int(s) for s in steps], "sum": sums, "delta": deltas, "relative_delta": rel,
           "tolerance": tolerance, "suggested_n_steps": suggest_steps(steps, rel, tolerance)}
    if auto is not None:
        out["auto"] = auto
    return out


def adaptive_stop(a: Any) -> dict:
    """Where an ``n_steps="auto"`` IG run stopped, for the convergence plot.

    Returns:
        ``{"n_steps_used", "rtol", "converged", "points", "relative_delta"}``: the worst
        baseline's path points at each level it went through and its relative delta there
        (``|delta| / max(|f(x) - f(b)|, 0.1)``, the plot's definition; the run itself
        stops on ``|delta| <= rtol * |f(x) - f(b)|``).
    """
    st = a.delta_stats or {}
    gap = max(abs(float(st.get("history_gap", 0.0))), MIN_REFERENCE)
    hist = st.get("history") or []
    return {"n_steps_used": st.get("n_steps_used"), "rtol": a.params.get("rtol"),
            "converged": st.get("converged"), "points": [int(p) for p, _ in hist],
            "relative_delta": [abs(float(d)) / gap for _, d in hist]}


def gradient_shap_seeds(adapter: ModelAdapter, enc: Encoded, target: int, params: dict,
                        seeds: Sequence[int], store: Any = None,
                        progress: Callable[[float], None] | None = None) -> dict:
    """GradientSHAP over several seeds: per-feature mean and 95 % t-interval.

    Returns:
        ``{"seeds", "mean", "low", "high", "not_significant", "feature_labels"}`` where
        ``not_significant`` lists the features whose interval contains 0.
    """
    runs = []
    for i, seed in enumerate(seeds):
        a = run_method(adapter, enc, "gradient_shap", {**params, "seed": int(seed)}, target, store)
        runs.append(adapter.group_scores(a.scores, enc))
        if progress:
            progress((i + 1) / len(seeds))
    mean, low, high = t_interval(np.stack(runs))
    return {"seeds": [int(s) for s in seeds], "mean": mean.tolist(), "low": low.tolist(),
            "high": high.tolist(), "not_significant": crosses_zero(low, high),
            "feature_labels": list(enc.feature_labels)}


def spearman_matrix(vectors: Sequence[np.ndarray]) -> list[list[float]]:
    """Symmetric matrix of Spearman correlations (NaN where undefined)."""
    m = len(vectors)
    out = np.full((m, m), np.nan)
    for i in range(m):
        for j in range(i, m):
            rho = rank_agreement(vectors[i], vectors[j])[0]
            out[i, j] = out[j, i] = 1.0 if i == j and not math.isnan(rho) else rho
    return out.tolist()


def baseline_sensitivity(adapter: ModelAdapter, enc: Encoded, target: int, name: str, params: dict,
                         store: Any = None, progress: Callable[[float], None] | None = None) -> dict:
    """One method under each of the adapter's baseline kinds, compared by Spearman.

    Returns:
        ``{"baselines": [kinds], "spearman": [[...]]}``.
    """
    spec = next((s for s in get_method(name).param_specs(adapter) if s.name == "baselines"), None)
    kinds = list(spec.choices) if spec is not None else list(adapter.baseline_kinds)  # the method's own
    vectors = []
    for i, kind in enumerate(kinds):
        a = run_method(adapter, enc, name, {**params, "baselines": [kind]}, target, store)
        vectors.append(adapter.group_scores(a.scores, enc))
        if progress:
            progress((i + 1) / len(kinds))
    return {"baselines": kinds, "spearman": spearman_matrix(vectors)}


def stability(adapter: ModelAdapter, enc: Encoded, target: int, methods: dict[str, dict],
              steps: Sequence[int], tolerance: float, seeds: int | Sequence[int], store: Any = None,
              progress: Callable[[float], None] | None = None) -> dict:
    """The ``stability`` block of the metrics JSON, for the selected registered methods.

    Args:
        methods: ``{method: parameters it ran with}``, registered methods only.
        steps: IG ``n_steps`` values.
        tolerance: IG relative tolerance.
        seeds: a list of GradientSHAP seeds, or a count ``S`` meaning the user's seed and
            the ``S - 1`` following ones (so the user's own run is one of them).
    """
    jobs: list[tuple[str, Callable]] = []
    out: dict[str, Any] = {"baseline_sensitivity": {}}
    if "integrated_gradients" in methods:
        p = methods["integrated_gradients"]
        jobs.append(("ig", lambda pr, p=p: out.__setitem__(
            "ig_convergence", ig_convergence(adapter, enc, target, p, steps, tolerance, store, pr))))
    if "gradient_shap" in methods:
        p = methods["gradient_shap"]
        if isinstance(seeds, int):
            first = int(p.get("seed", 0) or 0)
            seed_list = [first + i for i in range(seeds)]
        else:
            seed_list = list(seeds)
        jobs.append(("gs", lambda pr, p=p, seed_list=seed_list: out.__setitem__(
            "gradient_shap", gradient_shap_seeds(adapter, enc, target, p, seed_list, store, pr))))
    for name, p in methods.items():
        if get_method(name).uses_baselines:
            jobs.append((name, lambda pr, name=name, p=p: out["baseline_sensitivity"].__setitem__(
                name, baseline_sensitivity(adapter, enc, target, name, p, store, pr))))
    for i, (_, job) in enumerate(jobs):
        job((lambda f, i=i: progress((i + f) / len(jobs))) if progress else None)
    return out
