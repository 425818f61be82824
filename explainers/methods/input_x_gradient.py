"""Input x Gradient (Shrikumar et al., 2016, https://arxiv.org/abs/1605.01713)."""

from __future__ import annotations

from captum.attr import InputXGradient as _InputXGradient

from ..registry import register_method
from .base import Method


@register_method
class InputXGradient(Method):
    r"""The input times the gradient of the target logit: a one-step, zero-baseline
    approximation of Integrated Gradients."""

    name = "input_x_gradient"
    input_factor = True
    title = "Input x Gradient"
    summary = ("Gradient times input: one backward pass, an implicit all-zero baseline. "
               "A cheap first look; unreliable where the model saturates.")
    paper = ("Shrikumar, Greenside, Shcherbina, Kundaje. Not Just a Black Box. "
             "arXiv 1605.01713, 2016.")
    uses_baselines = False
    supports_noise_tunnel = True
    defer_model_calls = True  # Captum never branches on outputs: pooled across inputs

    def cost(self, adapter, enc, params):
        return 1

    def attribute(self, adapter, enc, target, params, forward):
        # a copy: Captum toggles requires_grad in place, without a finally
        return _InputXGradient(forward).attribute(enc.inputs.detach().clone(), target=target), None
