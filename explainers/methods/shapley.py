"""Shapley value sampling (Castro, Gómez, Tejada 2009; Strumbelj & Kononenko 2010)."""

from __future__ import annotations

from captum.attr import ShapleyValueSampling as _ShapleyValueSampling

from ..params import ParamSpec
from ..registry import register_method
from ..rng import seeded
from .base import Method, n_baselines, seed_spec, share_by_group


@register_method
class ShapleySampling(Method):
    r"""Shapley values estimated from random feature orders: each sampled permutation adds
    the features one by one, from the baseline up to the input, and credits each feature
    with the change it causes; the credits are averaged over the permutations (Captum's
    ``ShapleyValueSampling``, one of the perturbation methods Captum's ``LLMAttribution``
    wraps). Exact Shapley values in the limit; each sample costs one forward per feature.
    """

    name = "shapley_sampling"
    title = "Shapley value sampling"
    summary = ("Adds the features in random orders and averages each one's marginal effect: "
               "Shapley values, up to sampling noise. Costs a forward per feature and sample.")
    paper = ("Castro, Gómez, Tejada. Polynomial calculation of the Shapley value based on "
             "sampling. Computers & Operations Research 2009.")
    input_factor = True
    averages_samples = True
    defer_model_calls = True  # Captum never branches on outputs: pooled across inputs
    forward_only = True  # no gradients: may run under bf16-forward (explainers.precision)

    def own_params(self, adapter):
        return [ParamSpec("n_samples", "int", 10, "random feature orders (more = less noisy)",
                          min=1, max=1000, cost=True),
                seed_spec()]

    def cost(self, adapter, enc, params):
        # never-perturbed elements form one more group in Captum's feature mask
        groups = enc.n_features + int(bool((enc.groups < 0).any()))
        return n_baselines(adapter, enc, params) * (params["n_samples"] * groups + 1)

    def attribute(self, adapter, enc, target, params, forward):
        baselines = adapter.baselines(enc, params["baselines"])
        mask = adapter.feature_mask(enc)
        total = None
        with seeded(params["seed"], enc.inputs.device):
            for b in baselines:  # one call per baseline row, averaged as feature ablation does
                a = _ShapleyValueSampling(forward).attribute(
                    enc.inputs, baselines=b.unsqueeze(0), target=target, feature_mask=mask,
                    n_samples=params["n_samples"], perturbations_per_eval=adapter.eval_batch_size)
                total = a if total is None else total + a
        return share_by_group(total / baselines.shape[0], mask), None
