"""Grad-CAM (Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391)."""

from __future__ import annotations

from captum.attr import LayerAttribution, LayerGradCam

from ..params import ParamSpec
from ..registry import register_method
from .base import Method
from .cam import interpolation_spec, layer_notes, layer_spec, no_hooks_left, resolve_layer


@register_method
class GradCam(Method):
    r"""Gradient-weighted class activation map of one convolutional stage.

    Captum's ``LayerGradCam``: each channel of the stage's output is weighted by the mean
    gradient of the target logit over its positions, the weighted channels are summed (and,
    with ``relu_attributions``, only the positive part kept, as in the paper), and the
    coarse map is upsampled to the input with ``LayerAttribution.interpolate``. The map is
    spread evenly over the three colour channels, so a pixel's summed score is the CAM value.

    The stage is a parameter (``layer``), found from the module tree; the last is the
    default, an earlier one is allowed and the result's notes say so. Captum hooks the
    stage for the call, so the engine holds the model for the whole run
    (``exclusive_model``) and every hook is removed afterwards, whatever happened.

    The scores are in units of (gradient x activation) of that layer, not logits: they do
    not sum to the prediction, and no convergence delta exists.
    """

    name = "grad_cam"
    title = "Grad-CAM"
    summary = ("Weights a convolutional stage's channels by their mean gradient and sums them: "
               "a coarse, class-specific blob (7 x 7 cells on the default model's last stage). "
               "Reads at a glance; its resolution is the layer's, not the image's.")
    paper = ("Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra. Grad-CAM: Visual Explanations "
             "from Deep Networks via Gradient-based Localization. ICCV 2017.")
    modalities = ("image",)
    uses_baselines = False
    #: hooks on the shared model: the engine holds its lock for the whole run
    exclusive_model = True
    additive = False
    #: the dashboard draws it as it is (no display smoothing) with a colour bar
    coarse_map = True
    colour_bar = True

    def own_params(self, adapter):
        return [layer_spec(adapter),
                ParamSpec("relu_attributions", "choice", "true",
                          "keep only the positive part of the map (the paper's ReLU); 'false' "
                          "also shows where the layer's evidence speaks against the class",
                          choices=("true", "false")),
                interpolation_spec()]

    def notes(self, adapter, enc, params):
        return layer_notes(adapter, params)

    def cost(self, adapter, enc, params):
        return 1  # one forward, one backward to the layer

    def attribute(self, adapter, enc, target, params, forward):
        layer = resolve_layer(adapter, params["layer"])
        with no_hooks_left(adapter.module):
            cam = LayerGradCam(forward, layer).attribute(
                enc.inputs.detach().clone(), target=target,
                relu_attributions=params["relu_attributions"] == "true")
        up = LayerAttribution.interpolate(cam.detach().float(), tuple(enc.inputs.shape[2:]),
                                          interpolate_mode=params["interpolation"])
        # [1, 1, H, W] -> shaped like the input, each channel a third: the channel sum is the CAM
        return (up / enc.inputs.shape[1]).expand_as(enc.inputs).contiguous(), None
