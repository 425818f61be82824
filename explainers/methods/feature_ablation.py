"""Feature ablation: occlusion over interpretable features rather than windows."""

from __future__ import annotations

from captum.attr import FeatureAblation as _FeatureAblation

from ..registry import register_method
from .base import Method, n_baselines, repeat_for_baselines, share_by_group


@register_method
class FeatureAblation(Method):
    r"""Replaces one interpretable feature at a time (a token, an image patch, a column)
    with the baseline and records the change in the target logit, shared evenly among the
    feature's elements (so a feature's summed score is its logit drop).
    """

    name = "feature_ablation"
    input_factor = True
    title = "Feature ablation"
    summary = ("Removes one token, image patch or column at a time and measures the drop. "
               "A direct 'what if I delete this?' per feature; misses interactions.")
    paper = "Captum FeatureAblation (perturbation baseline; cf. Zeiler & Fergus 2014)."
    defer_model_calls = True  # Captum never branches on outputs: pooled across inputs
    forward_only = True  # no gradients: may run under bf16-forward (explainers.precision)

    def cost(self, adapter, enc, params):
        # never-perturbed elements ([CLS]/[SEP]) form one more group in Captum's feature mask
        groups = enc.n_features + int(bool((enc.groups < 0).any()))
        return n_baselines(adapter, enc, params) * (1 + groups)

    def attribute(self, adapter, enc, target, params, forward):
        baselines = adapter.baselines(enc, params["baselines"])
        inputs = repeat_for_baselines(enc, baselines)
        per_eval = max(1, adapter.eval_batch_size // inputs.shape[0])
        mask = adapter.feature_mask(enc)
        attr = _FeatureAblation(forward).attribute(
            inputs, baselines=baselines, target=target, feature_mask=mask,
            perturbations_per_eval=per_eval)
        return share_by_group(attr.mean(0, keepdim=True), mask), None
