"""Robustness: Captum's infidelity and max-sensitivity (Yeh et al., *On the (In)fidelity and
Sensitivity of Explanations*, NeurIPS 2019, https://arxiv.org/abs/1901.09392).

* **Infidelity** ``E_I[(I . phi - (f(x) - f(x - I)))^2]`` with feature-removal
  perturbations: each interpretable feature is removed (set to the baseline) with
  probability :data:`DROP_PROBABILITY`, so ``I`` is the indicator of removed features in a
  feature space where 1 = present and 0 = baseline, and ``I . phi`` is the sum of the
  removed features' scores. ``f`` is the target logit (the attributions explain logits).
  Captum's ``normalize=True`` rescales the scores by the least-squares optimal factor
  first, so methods on different scales (Saliency) compare fairly. Lower is better.
* **Max-sensitivity**: the largest relative change ``||phi(x + d) - phi(x)|| / ||phi(x)||``
  of the per-feature scores over uniform noise ``d`` in an L-inf ball (radius in the
  encoded input's units: z-scores, pixels in [0, 1], or embedding values). Lower is better.
  Each perturbed input is explained again with the registered method and its parameters.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from captum.metrics import infidelity, sensitivity_max

from ..adapters.base import Encoded, ModelAdapter
from ..engine import check_method
from ..rng import seeded

DROP_PROBABILITY = 0.25


def feature_space_forward(adapter: ModelAdapter, enc: Encoded, baseline: torch.Tensor
                          ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logits as a function of per-feature presence ``z`` in [0, 1] (``[B, n_features]``).

    ``z = 1`` everywhere gives the input, ``z = 0`` the baseline; elements outside every
    feature (group -1, such as [CLS]) always keep their input value.
    """
    groups = enc.groups.to(enc.inputs.device)
    valid = groups >= 0
    diff = enc.inputs - baseline

    def fn(z: torch.Tensor) -> torch.Tensor:
        full = torch.ones((z.shape[0],) + tuple(groups.shape), dtype=enc.inputs.dtype, device=z.device)
        full[:, valid] = z[:, groups[valid]].to(full.dtype)
        x = baseline + full.reshape((z.shape[0],) + tuple(enc.inputs.shape[1:])) * diff
        # float64 out: Captum's normalised infidelity is beta^2 A - 2 beta B + C, which cancels
        # to ~0 for exact scores, and in float32 the cancellation leaves ~eps * C of noise
        return adapter.forward(x, enc).double()
    return fn


def infidelity_score(adapter: ModelAdapter, enc: Encoded, target: int, scores: np.ndarray,
                     baseline: torch.Tensor, n_samples: int = 10, seed: int = 0) -> float:
    """Normalized infidelity of per-feature ``scores`` under random feature removal."""
    n = enc.n_features
    gen = torch.Generator().manual_seed(seed)
    device = enc.inputs.device

    def perturb(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        drop = (torch.rand(z.shape, generator=gen) < DROP_PROBABILITY).to(device, z.dtype)
        return drop, z - drop

    # presence and scores in float64, so every sum Captum forms is float64 (see above)
    z = torch.ones((1, n), dtype=torch.float64, device=device)
    phi = torch.as_tensor(np.asarray(scores, dtype=np.float64), dtype=torch.float64,
                          device=device).reshape(1, n)
    with adapter.guarded(), torch.no_grad():
        value = infidelity(feature_space_forward(adapter, enc, baseline), perturb, z, phi,
                           target=target, n_perturb_samples=n_samples,
                           max_examples_per_batch=max(1, min(adapter.eval_batch_size, n_samples)),
                           normalize=True)
    return float(value.reshape(-1)[0])


def explanation_function(adapter: ModelAdapter, enc: Encoded, name: str, params: dict, target: int
                         ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``inputs [B, ...] -> (per-feature scores [B, n_features],)`` with the registered method.

    Each row is explained on its own, as an :class:`Encoded` that shares ``enc``'s
    features, groups and context (attention mask, token positions).
    """
    method, resolved = check_method(adapter, name, params)

    def fn(inputs: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
        if isinstance(inputs, tuple):  # Captum passes its inputs as a one-tensor tuple
            inputs = inputs[0]
        rows = []
        for row in inputs:
            e = Encoded(inputs=row.unsqueeze(0).detach().clone(), feature_labels=enc.feature_labels,
                        groups=enc.groups, raw=enc.raw, context=enc.context, key="sensitivity",
                        extra=enc.extra)
            with torch.enable_grad():
                attr, _ = method.run(adapter, e, target, resolved, adapter.forward_fn(e))
            s = adapter.group_scores(adapter.reduce(attr.detach().float(), e), e)
            rows.append(torch.as_tensor(np.asarray(s, dtype=np.float64)))
        # a tuple: Captum iterates over the returned explanations as a tuple of tensors
        return (torch.stack(rows),)
    return fn


def sensitivity_score(adapter: ModelAdapter, enc: Encoded, target: int, name: str, params: dict,
                      n_samples: int = 5, radius: float = 0.02, seed: int = 0) -> float:
    """Captum ``sensitivity_max`` of one method's per-feature scores."""
    with adapter.guarded(), seeded(seed, enc.inputs.device):
        value = sensitivity_max(explanation_function(adapter, enc, name, params, target), enc.inputs,
                                perturb_radius=radius, n_perturb_samples=n_samples,
                                max_examples_per_batch=n_samples)
    return float(value.reshape(-1)[0])


def input_scale(adapter: ModelAdapter, enc: Encoded) -> float:
    """The input's own scale: the standard deviation of its perturbable elements (text:
    the content tokens' embedding entries; images: pixels in [0, 1]; tables: z-scores).
    ``sensitivity_max``'s radius is reported in units of it."""
    valid = enc.groups >= 0  # shaped like one input row in every adapter
    x = enc.inputs[0][valid.to(enc.inputs.device)].detach().double()
    return float(x.std()) if x.numel() > 1 else float("nan")


def removal_size(enc: Encoded, baseline: torch.Tensor) -> float:
    """``||x - baseline|| / ||x||`` over the perturbable elements: how far removing every
    feature moves the input, relative to its own norm."""
    valid = (enc.groups >= 0)
    diff = (enc.inputs - baseline.to(enc.inputs.device))[0][valid.to(enc.inputs.device)].double()
    x = enc.inputs[0][valid.to(enc.inputs.device)].double()
    norm = float(x.norm())
    return float(diff.norm()) / norm if norm > 0 else float("nan")


def perturbation_info(adapter: ModelAdapter, enc: Encoded, baseline: torch.Tensor, radius: float) -> dict:
    """What the two measures perturb, in units of the input's own scale.

    Returns:
        ``{"sensitivity_radius", "input_std", "sensitivity_radius_in_std",
        "infidelity_drop_probability", "infidelity_removal_size", "perturbation_note"}``.
    """
    scale = input_scale(adapter, enc)
    rel = radius / scale if scale and math.isfinite(scale) and scale > 0 else float("nan")
    size = removal_size(enc, baseline)
    note = (f"sensitivity_max: uniform noise of L-inf radius {radius:g} = {rel:.2f} x the "
            f"input's std ({scale:.3g}); infidelity: each feature removed (set to the "
            f"baseline) with probability {DROP_PROBABILITY}, where removing all moves the "
            f"input by {size:.2f} x its norm")
    return {"sensitivity_radius": radius, "input_std": scale, "sensitivity_radius_in_std": rel,
            "infidelity_drop_probability": DROP_PROBABILITY, "infidelity_removal_size": size,
            "perturbation_note": note}


def robustness(adapter: ModelAdapter, enc: Encoded, target: int, scores: dict[str, np.ndarray],
               methods: dict[str, dict], baseline: torch.Tensor, n_perturb_samples: int = 10,
               sensitivity_samples: int = 5, radius: float = 0.02, seed: int = 0,
               progress: Callable[[float], None] | None = None) -> dict:
    """The ``robustness`` block: ``{method: {"infidelity", "sensitivity_max", ...}}``.

    Infidelity needs only the scores, so every method gets it; ``sensitivity_max`` re-runs
    the method and is computed for registered methods (``methods``) only (None otherwise).
    Each method's block also states the perturbations in units of the input's own scale
    (:func:`perturbation_info`: ``sensitivity_radius_in_std``, ``perturbation_note``...).
    """
    out = {}
    names = list(scores)
    info = perturbation_info(adapter, enc, baseline, radius)
    for i, name in enumerate(names):
        block = {"infidelity": infidelity_score(adapter, enc, target, scores[name], baseline,
                                                n_perturb_samples, seed),
                 "sensitivity_max": None, **info}
        if name in methods:
            block["sensitivity_max"] = sensitivity_score(adapter, enc, target, name, methods[name],
                                                         sensitivity_samples, radius, seed)
        out[name] = block
        if progress:
            progress((i + 1) / len(names))
    return out
