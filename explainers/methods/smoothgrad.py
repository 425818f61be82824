"""SmoothGrad (Smilkov et al., 2017, https://arxiv.org/abs/1706.03825)."""

from __future__ import annotations

from captum.attr import NoiseTunnel, Saliency

from ..params import ParamSpec
from ..registry import register_method
from ..rng import seeded
from .base import Method, seed_spec


@register_method
class SmoothGrad(Method):
    r"""Saliency averaged over Gaussian-noised copies of the input, which removes much of
    the gradient's high-frequency noise."""

    name = "smoothgrad"
    title = "SmoothGrad"
    summary = ("Averages gradients over noisy copies of the input: a sharper, steadier saliency "
               "map. Still a sensitivity map, not a contribution; no completeness.")
    paper = ("Smilkov, Thorat, Kim, Viegas, Wattenberg. SmoothGrad: removing noise by adding "
             "noise. arXiv 1706.03825, 2017.")
    uses_baselines = False
    averages_samples = True
    defer_model_calls = True  # Captum never branches on outputs: pooled across inputs

    def own_params(self, adapter):
        return [
            ParamSpec("n_samples", "int", 20, "noisy copies averaged", min=1, max=1024, cost=True),
            ParamSpec("stdevs", "float", 0.15 if adapter.modality == "image" else 0.05,
                      "std of the Gaussian noise (input units)", min=0.0, max=10.0),
            ParamSpec("absolute", "choice", "yes", "take the absolute value of each gradient",
                      choices=("yes", "no")),
            seed_spec(),
        ]

    def cost(self, adapter, enc, params):
        return 3 * params["n_samples"]

    def attribute(self, adapter, enc, target, params, forward):
        nt = NoiseTunnel(Saliency(forward))
        with seeded(params["seed"], enc.inputs.device):
            attr = nt.attribute(enc.inputs.detach().clone(), nt_type="smoothgrad",
                                nt_samples=params["n_samples"],
                                nt_samples_batch_size=adapter.grad_batch_size,
                                stdevs=params["stdevs"], target=target,
                                abs=params["absolute"] == "yes")
        return attr, None
