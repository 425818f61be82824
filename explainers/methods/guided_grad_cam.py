"""Guided Grad-CAM (Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391)."""

from __future__ import annotations

import torch
from captum._utils.common import _register_backward_hook
from captum.attr import GuidedBackprop, GuidedGradCam as _GuidedGradCam

from ..registry import register_method
from .base import Method
from .cam import ForwardModule, interpolation_spec, layer_notes, layer_spec, no_hooks_left, resolve_layer

#: activations whose backward pass guided backpropagation rectifies
GUIDED_ACTIVATIONS = (torch.nn.ReLU, torch.nn.ReLU6)


class _GuidedBackprop(GuidedBackprop):
    """Captum's ``GuidedBackprop``, also on ``ReLU6`` (EfficientNet-Lite, MobileNet).

    Captum hooks ``nn.ReLU`` only, so on the default model (ReLU6 throughout) the guided
    part would be the plain gradient. ReLU6's own derivative already zeroes the inputs
    outside (0, 6); the guided rule then keeps the positive gradients, as for ReLU.
    """

    def _register_hooks(self, module: torch.nn.Module) -> None:
        if isinstance(module, GUIDED_ACTIVATIONS):
            self.backward_hooks.extend(_register_backward_hook(module, self._backward_hook, self))


def guided_activations(module: torch.nn.Module) -> int:
    return sum(isinstance(m, GUIDED_ACTIVATIONS) for m in module.modules())


@register_method
class GuidedGradCam(Method):
    r"""Guided backpropagation times the upsampled Grad-CAM map (Captum ``GuidedGradCam``).

    The Grad-CAM part (always rectified, as in the paper) says where the class's evidence
    is; guided backpropagation (gradients with negative values stopped at every ReLU /
    ReLU6 on the way back) adds pixel detail. Same ``layer`` choice as Grad-CAM. Guided
    backpropagation hooks every activation of the shared model for the call, so the engine
    holds the model for the whole run and every hook is removed afterwards.

    Guided backpropagation is known to reconstruct the image more than it explains the
    model (Adebayo et al. 2018, "Sanity checks"): check it with Compare > Sanity.
    """

    name = "guided_grad_cam"
    title = "Guided Grad-CAM"
    summary = ("Guided backpropagation masked by Grad-CAM: pixel-sharp edges inside the "
               "Grad-CAM blob. Sharp but partly model-independent: guided backprop mostly "
               "redraws the image, so check it with the sanity test.")
    paper = ("Selvaraju, Cogswell, Das, Vedantam, Parikh, Batra. Grad-CAM: Visual Explanations "
             "from Deep Networks via Gradient-based Localization. ICCV 2017.")
    modalities = ("image",)
    uses_baselines = False
    exclusive_model = True
    additive = False
    colour_bar = True

    def own_params(self, adapter):
        return [layer_spec(adapter), interpolation_spec()]

    def notes(self, adapter, enc, params):
        notes = layer_notes(adapter, params)
        if not guided_activations(adapter.module):
            notes.append("This model has no ReLU or ReLU6 modules, so the guided part is the "
                         "plain gradient (gradient x Grad-CAM).")
        return notes

    def cost(self, adapter, enc, params):
        return 2  # Grad-CAM's forward + guided backpropagation's forward

    def attribute(self, adapter, enc, target, params, forward):
        layer = resolve_layer(adapter, params["layer"])
        method = _GuidedGradCam(ForwardModule(adapter.module, forward), layer)
        method.guided_backprop = _GuidedBackprop(method.guided_backprop.model)
        with no_hooks_left(adapter.module):
            attr = method.attribute(enc.inputs.detach().clone(), target=target,
                                    interpolate_mode=params["interpolation"])
        return attr.detach().float(), None
