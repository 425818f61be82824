"""Attribution methods, one file each. Importing this package registers them all."""

from . import (  # noqa: F401
    attention,
    attention_x_gradient,
    feature_ablation,
    grad_cam,
    gradient_shap,
    guided_grad_cam,
    input_x_gradient,
    integrated_gradients,
    occlusion,
    saliency,
    shapley,
    smoothgrad,
    surrogates,
    target_attention,
)
from .base import Method  # noqa: F401
