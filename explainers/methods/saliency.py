"""Saliency (Simonyan et al., 2013, https://arxiv.org/abs/1312.6034)."""

from __future__ import annotations

from captum.attr import Saliency as _Saliency

from ..params import ParamSpec
from ..registry import register_method
from .base import Method


@register_method
class Saliency(Method):
    r"""The gradient of the target logit with respect to the input (absolute by default)."""

    name = "saliency"
    title = "Saliency"
    summary = ("The raw gradient: how sensitive the score is to each input, not how much each "
               "input contributed. Cheap reference point; often noisy and sign-less.")
    paper = ("Simonyan, Vedaldi, Zisserman. Deep Inside Convolutional Networks. "
             "ICLR workshop 2014.")
    uses_baselines = False
    supports_noise_tunnel = True
    defer_model_calls = True  # Captum never branches on outputs: pooled across inputs

    def own_params(self, adapter):
        return [ParamSpec("absolute", "choice", "yes", "take the absolute value of the gradient",
                          choices=("yes", "no"))]

    def cost(self, adapter, enc, params):
        return 1

    def attribute(self, adapter, enc, target, params, forward):
        # a copy: Captum toggles requires_grad in place, without a finally
        attr = _Saliency(forward).attribute(enc.inputs.detach().clone(), target=target,
                                            abs=params["absolute"] == "yes")
        return attr, None
