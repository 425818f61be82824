"""Occlusion (Zeiler & Fergus, 2014, https://arxiv.org/abs/1311.2901)."""

from __future__ import annotations

import math

from captum.attr import Occlusion as _Occlusion

from ..errors import ExplainerError
from ..params import ParamSpec
from ..registry import register_method
from .base import Method, n_baselines, n_windows, repeat_for_baselines


@register_method
class Occlusion(Method):
    r"""Slides a window over the input, replaces it with the baseline (the fill value) and
    records the drop in the target logit, spread evenly over the window.

    Captum gives every element of a window the window's whole drop; dividing by the window's
    element count makes each element carry its share. With window = stride = 1 a token's
    score (summed over its embedding dims) is its logit drop, and maps share a scale with the
    gradient methods.

    Many windows are evaluated per forward pass (``perturbations_per_eval`` from the
    adapter's batch size); no gradients are taken.
    """

    name = "occlusion"
    input_factor = True
    title = "Occlusion"
    summary = ("Hides one window at a time and measures how much the target score drops. "
               "Model-agnostic and easy to read; blind to features that only matter together "
               "and coarse for windows larger than one feature.")
    paper = "Zeiler, Fergus. Visualizing and Understanding Convolutional Networks. ECCV 2014."
    defer_model_calls = True  # Captum never branches on outputs: pooled across inputs

    def own_params(self, adapter):
        unit = "pixels" if adapter.modality == "image" else adapter.feature_unit + "s"
        return [
            ParamSpec("window", "int", adapter.occlusion_window_default,
                      f"window size in {unit}", min=1, max=adapter.occlusion_window_max, cost=True),
            ParamSpec("stride", "int", adapter.occlusion_stride_default,
                      f"step between windows in {unit}", min=1, max=adapter.occlusion_window_max,
                      cost=True),
        ]

    def _windows(self, adapter, enc, params):
        if params["stride"] > params["window"]:
            raise ExplainerError(f"occlusion stride ({params['stride']}) must not exceed the window "
                                 f"({params['window']}): parts of the input would never be occluded")
        shapes, strides = adapter.sliding_window(enc, params["window"], params["stride"])
        return shapes, strides, n_windows(enc.inputs.shape[1:], shapes, strides)

    def cost(self, adapter, enc, params):
        return n_baselines(adapter, enc, params) * (1 + self._windows(adapter, enc, params)[2])

    def attribute(self, adapter, enc, target, params, forward):
        baselines = adapter.baselines(enc, params["baselines"])
        inputs = repeat_for_baselines(enc, baselines)
        shapes, strides, _ = self._windows(adapter, enc, params)
        per_eval = max(1, adapter.eval_batch_size // inputs.shape[0])
        attr = _Occlusion(forward).attribute(
            inputs, sliding_window_shapes=shapes, strides=strides, baselines=baselines,
            target=target, perturbations_per_eval=per_eval)
        return attr.mean(0, keepdim=True) / math.prod(shapes), None
