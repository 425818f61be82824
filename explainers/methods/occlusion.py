"""Occlusion (Zeiler & Fergus, 2014, https://arxiv.org/abs/1311.2901)."""

from __future__ import annotations

import math

import torch
from captum.attr import Occlusion as _Occlusion

from ..errors import ExplainerError
from ..params import ParamSpec
from ..registry import register_method
from .base import Method, n_baselines, n_windows, repeat_for_baselines, share_by_group


@register_method
class Occlusion(Method):
    r"""Slides a window over the input, replaces it with the baseline (the fill value) and
    records the drop in the target logit, spread evenly over the window.

    Captum gives every element of a window the window's whole drop (averaged over the
    windows that cover it); dividing by the window's size makes each element carry its
    share. Windows are counted in pixels on images and in the adapter's features where it
    sets ``occludes_features`` (text: words, or word pieces with ``unit="piece"``; a
    window of one word hides all of its pieces at once, so with window = stride = 1 a
    word's score is exactly the logit drop from hiding that word). Elsewhere (tables) they
    count the input's own elements, which are its features.

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
    forward_only = True  # no gradients: may run under bf16-forward (explainers.precision)

    def own_params(self, adapter):
        if adapter.modality == "image":
            unit = "pixels"
        elif getattr(adapter, "occludes_features", False):
            unit = "features (words, or word pieces with that unit)"
        else:
            unit = adapter.feature_unit + "s"
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
        if getattr(adapter, "occludes_features", False):
            window = min(params["window"], enc.n_features)
            return (window,), (params["stride"],), n_windows((enc.n_features,), (window,), (params["stride"],))
        shapes, strides = adapter.sliding_window(enc, params["window"], params["stride"])
        return shapes, strides, n_windows(enc.inputs.shape[1:], shapes, strides)

    def cost(self, adapter, enc, params):
        return n_baselines(adapter, enc, params) * (1 + self._windows(adapter, enc, params)[2])

    def attribute(self, adapter, enc, target, params, forward):
        baselines = adapter.baselines(enc, params["baselines"])
        shapes, strides, _ = self._windows(adapter, enc, params)
        if getattr(adapter, "occludes_features", False):
            return self._over_features(adapter, enc, target, baselines, shapes, strides, forward), None
        inputs = repeat_for_baselines(enc, baselines)
        per_eval = max(1, adapter.eval_batch_size // inputs.shape[0])
        attr = _Occlusion(forward).attribute(
            inputs, sliding_window_shapes=shapes, strides=strides, baselines=baselines,
            target=target, perturbations_per_eval=per_eval)
        return attr.mean(0, keepdim=True) / math.prod(shapes), None

    @staticmethod
    def _over_features(adapter, enc, target, baselines, shapes, strides, forward) -> torch.Tensor:
        """Captum's Occlusion over a ``[1, n_features]`` tensor of ones (the features present);
        each row it asks about becomes the input with the features at 0 taken from the
        baseline (:meth:`ModelAdapter.perturb`: every piece of a word at once). Per baseline,
        then averaged; the features' scores are shared out evenly over their elements."""
        present = torch.ones((1, enc.n_features), device=enc.inputs.device)
        per_eval = max(1, adapter.eval_batch_size)
        scores = []
        for b in baselines:
            def on_features(keep: torch.Tensor, b=b) -> torch.Tensor:
                return forward(adapter.perturb(enc, keep > 0.5, b[None]))
            attr = _Occlusion(on_features).attribute(
                present, sliding_window_shapes=shapes, strides=strides, baselines=0.0,
                target=target, perturbations_per_eval=per_eval)
            scores.append(attr[0] / math.prod(shapes))
        per_feature = torch.stack(scores).mean(0)
        mask = adapter.feature_mask(enc)  # never-perturbed elements ([CLS]) are feature n: 0
        padded = torch.cat([per_feature, per_feature.new_zeros(1)])
        return share_by_group(padded[mask].to(enc.inputs.dtype), mask)
