"""GradientSHAP (Lundberg & Lee, 2017, https://arxiv.org/abs/1705.07874)."""

from __future__ import annotations

import torch
from captum.attr import GradientShap as _GS

from ..params import ParamSpec
from ..registry import register_method
from ..rng import seeded
from .base import Method, seed_spec

#: the note on a GradientSHAP run that has one baseline and no input noise
STOCHASTIC_IG_NOTE = ("equivalent to stochastic IG: with one baseline and no input noise, "
                      "GradientSHAP is a Monte-Carlo estimate of Integrated Gradients, not an "
                      "estimate of SHAP values; choose several baselines (or input noise)")
ONE_BASELINE_NOTE = ("one baseline: with input noise this is a smoothed Integrated Gradients, "
                     "not a SHAP estimate over a baseline distribution; choose several baselines")


SAMPLE_CHUNK = 32


@register_method
class GradientShap(Method):
    r"""Expected gradients: gradients at random points between noisy inputs and baselines
    drawn from the baseline set, times (input - baseline), averaged over samples.

    Captum's GradientShap has no ``internal_batch_size`` (captum issue 1350), so samples
    are drawn in chunks that fit the adapter's batch size and averaged with their weights.
    Both RNGs Captum draws from (torch for noise, numpy for baseline choice and path
    points) are seeded from ``seed`` and restored afterwards, which makes results
    reproducible and cacheable without disturbing the caller's random state.

    SHAP needs a baseline *distribution*: the default for text and images is several
    baselines (the adapter's ``distribution_baselines``). With one baseline and no input
    noise the result carries :data:`STOCHASTIC_IG_NOTE`.

    ``convergence_delta`` is the SHAP efficiency error
    ``sum(scores) - (f(x) - mean_k f(b_k))`` over the baseline set when there is no input
    noise (K + 1 forwards, not Captum's 2 x n_samples); with noise, Captum's per-sample
    deltas averaged.
    """

    name = "gradient_shap"
    input_factor = True
    title = "GradientSHAP"
    summary = ("Samples baselines and path points at random, with input noise, and averages "
               "gradient x (input - baseline). Approximates SHAP values; noisy with few samples, "
               "so check the stability intervals.")
    paper = "Lundberg, Lee. A Unified Approach to Interpreting Model Predictions. NeurIPS 2017."
    has_convergence_delta = True
    supports_noise_tunnel = True
    interpolates = True  # offered no edit baselines (generation's "delete")
    averages_samples = True
    defer_model_calls = True  # Captum never branches on outputs: pooled across inputs

    def default_baselines(self, adapter):
        return adapter.distribution_baselines or None  # a distribution: the SHAP estimate its name says

    def notes(self, adapter, enc, params):
        if sum(adapter.baseline_rows(k) for k in params["baselines"]) > 1:
            return []
        return [STOCHASTIC_IG_NOTE if params["stdevs"] == 0 else ONE_BASELINE_NOTE]

    def own_params(self, adapter):
        return [
            ParamSpec("n_samples", "int", 20, "random samples per input", min=1, max=1024, cost=True),
            ParamSpec("stdevs", "float", 0.0 if adapter.modality == "text" else 0.01,
                      "std of Gaussian noise added to the input per sample", min=0.0, max=10.0),
            seed_spec(),
        ]

    def cost(self, adapter, enc, params):
        n = params["n_samples"]
        k = sum(adapter.baseline_rows(b) for b in params["baselines"])
        return n + (1 + k if self._deterministic(adapter, params) else 2 * n)

    @staticmethod
    def _deterministic(adapter, params) -> bool:
        """No input noise: every sample ends at x, so the delta needs f(x) and each f(b_k)."""
        return params["stdevs"] == 0

    def attribute(self, adapter, enc, target, params, forward):
        baselines = adapter.baselines(enc, params["baselines"])
        gs = _GS(forward, multiply_by_inputs=True)
        # A fixed chunk size: the random stream (and so the cached result) must not depend
        # on the device's batch size or on an out-of-memory retry.
        total, chunk = params["n_samples"], SAMPLE_CHUNK
        # With no input noise every sample's path ends at x, so the efficiency error needs
        # f(x) and each f(b_k) once instead of Captum's 2 x n_samples forwards.
        deterministic = self._deterministic(adapter, params)
        with seeded(params["seed"], enc.inputs.device):
            attr_sum, deltas = self._sample(gs, enc, baselines, target, params, total, chunk,
                                            with_delta=not deterministic)
        attr = attr_sum / total
        if deterministic:
            with torch.no_grad():
                ends = forward(torch.cat([enc.inputs, baselines]))[:, target].double()
            gap = ends[0] - ends[1:].mean()
            return attr, {"convergence_delta": float(attr.double().sum() - gap), "gaps": [float(gap)]}
        return attr, float(torch.cat(deltas).mean())

    @staticmethod
    def _sample(gs, enc, baselines, target, params, total, chunk, with_delta):
        attr_sum, deltas, done = None, [], 0
        while done < total:
            n = min(chunk, total - done)
            out = gs.attribute(enc.inputs, baselines=baselines, n_samples=n,
                               stdevs=params["stdevs"], target=target,
                               return_convergence_delta=with_delta)
            a = out[0] if with_delta else out
            if with_delta:
                deltas.append(out[1].detach())
            attr_sum = a * n if attr_sum is None else attr_sum + a * n
            done += n
        return attr_sum, deltas
