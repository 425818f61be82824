"""Surrogate-model attributions over interpretable features: KernelSHAP and LIME.

Both sample coalitions of features (tokens, 16x16 image patches, columns), replace the
absent ones with the baseline, re-predict, and fit a weighted linear model whose
coefficients are the attributions.
"""

from __future__ import annotations

from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import KernelShap as _KernelShap
from captum.attr import Lime as _Lime

from ..params import ParamSpec
from ..registry import register_method
from ..rng import seeded
from .base import Method, n_baselines, seed_spec, share_by_group


class _Surrogate(Method):
    captum_class: type = _KernelShap
    input_factor = True  # coalitions switch features between input and baseline
    default_samples = 200
    defer_model_calls = True  # Captum never branches on outputs: pooled across inputs
    forward_only = True  # no gradients: may run under bf16-forward (explainers.precision)

    def make(self, forward):
        return self.captum_class(forward)

    def own_params(self, adapter):
        return [
            ParamSpec("n_samples", "int", self.default_samples,
                      "coalitions sampled (more = less noisy)", min=10, max=20_000, cost=True),
            seed_spec(),
        ]

    def cost(self, adapter, enc, params):
        return n_baselines(adapter, enc, params) * (params["n_samples"] + 1)

    def attribute(self, adapter, enc, target, params, forward):
        baselines = adapter.baselines(enc, params["baselines"])
        mask = adapter.feature_mask(enc)
        explainer = self.make(forward)
        total = None
        # Captum fits one surrogate per example, so each baseline row is its own call.
        with seeded(params["seed"], enc.inputs.device):
            for b in baselines:
                a = explainer.attribute(enc.inputs, baselines=b.unsqueeze(0), target=target,
                                        feature_mask=mask, n_samples=params["n_samples"],
                                        perturbations_per_eval=adapter.eval_batch_size)
                total = a if total is None else total + a
        return share_by_group(total / baselines.shape[0], mask), None


@register_method
class KernelShap(_Surrogate):
    r"""KernelSHAP: Shapley values estimated by a linear model over sampled coalitions,
    weighted by the Shapley kernel."""

    name = "kernel_shap"
    title = "KernelSHAP"
    summary = ("Estimates Shapley values of tokens, patches or columns from random coalitions. "
               "Model-agnostic and captures interactions on average; noisy with few samples.")
    paper = "Lundberg, Lee. A Unified Approach to Interpreting Model Predictions. NeurIPS 2017."
    captum_class = _KernelShap


@register_method
class Lime(_Surrogate):
    r"""LIME: a ridge-regression surrogate fitted to re-predictions on random coalitions,
    weighted by their similarity to the input.

    Ridge (alpha 1), as in the reference ``lime`` package, instead of Captum's default Lasso
    (alpha 0.01), which zeroes every coefficient when logit changes are small.
    """

    name = "lime"
    title = "LIME"
    summary = ("Fits a local sparse linear model to predictions on randomly masked inputs. "
               "Easy to read; the answer depends on the sampling and the kernel width.")
    paper = ("Ribeiro, Singh, Guestrin. \"Why Should I Trust You?\": Explaining the Predictions "
             "of Any Classifier. KDD 2016.")
    captum_class = _Lime

    def make(self, forward):
        return _Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0))
