"""Forward passes a metric will run, estimated before it runs (an upper bound).

The dashboard shows these on the buttons of the expensive metrics and refuses those over
the user's cap; counts are examples through the model, as in ``engine.estimate_cost``.
"""

from __future__ import annotations

from typing import Sequence

from ..adapters.base import Encoded, ModelAdapter
from ..engine import estimate_cost as method_cost
from ..registry import get_method
from .common import curve_steps, resolve_options
from .faithfulness import ERASER_ORDERS, eraser_steps


def _with(params: dict | None, **changes) -> dict:
    return {**(params or {}), **changes}


def metric_costs(adapter: ModelAdapter, enc: Encoded, names: Sequence[str],
                 methods: dict[str, dict], options: dict | None = None) -> dict[str, int]:
    """Upper bound of forward passes per metric.

    Args:
        adapter, enc: the model and the encoded input.
        names: metric names.
        methods: ``{method: params}`` of the methods being compared.
        options: metric options, as for :func:`explainers.metrics.compute`.

    Returns:
        ``{metric: forward passes}``; repeated perturbations are de-duplicated when the
        metric runs, and stored attributions are reused, so the real count is often lower.
    """
    opts = resolve_options(options, adapter, enc)
    n, m = enc.n_features, len(methods)
    steps = curve_steps(n)
    cost = {name: lambda p, name=name: method_cost(adapter, enc, name, p) for name in methods}
    out: dict[str, int] = {}
    for metric in names:
        if metric == "agreement":
            out[metric] = 0
        elif metric == "faithfulness":
            # a method: removed and kept at every step and ERASER size; a random order: removed
            # at the steps and their complements (its insertion curve), the first ones at the
            # ERASER sizes and their complements too; at most random_orders orders are drawn
            sizes = set(steps) | set(eraser_steps(n))
            plain = len(set(steps) | {n - k for k in steps})
            full = len(sizes | {n - k for k in sizes})
            r = opts["random_orders"]
            out[metric] = m * 2 * len(sizes) + min(r, ERASER_ORDERS) * full + max(0, r - ERASER_ORDERS) * plain
        elif metric == "flip":
            out[metric] = (m + 1) * max(n - 1, 0) + 1  # proper prefixes, and the empty input
        elif metric == "stability":
            total = 0
            if "integrated_gradients" in methods:
                total += sum(cost["integrated_gradients"](_with(methods["integrated_gradients"], n_steps=s))
                             for s in opts["ig_steps"])
            if "gradient_shap" in methods:
                seeds = opts["seeds"] if isinstance(opts["seeds"], int) else len(opts["seeds"])
                total += seeds * cost["gradient_shap"](methods["gradient_shap"])
            for name, p in methods.items():
                if get_method(name).uses_baselines:
                    total += sum(cost[name](_with(p, baselines=[k])) for k in adapter.baseline_kinds)
            out[metric] = total
        elif metric == "sanity":
            # +1: one forward on the copy finds its parameterised layers in call order
            out[metric] = 1 + opts["sanity_stages"] * sum(c(methods[name]) for name, c in cost.items())
        elif metric == "robustness":
            # Captum evaluates the unperturbed input once more in both metrics
            out[metric] = (m * (opts["n_perturb_samples"] + 1) + (opts["sensitivity_samples"] + 1)
                           * sum(c(methods[name]) for name, c in cost.items()))
    return out
