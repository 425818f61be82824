"""NoiseTunnel over any gradient method (Captum's NoiseTunnel around our methods)."""

from __future__ import annotations

import numpy as np
import pytest

from explainers import get_method, list_methods, run_method
from explainers.engine import estimate_cost

MODALITIES = ("text", "image", "tabular")
GRADIENT = ("integrated_gradients", "gradient_shap", "saliency", "input_x_gradient")


def test_the_gradient_methods_offer_the_switch_and_the_others_do_not(tiny_tabular):
    for name in list_methods("tabular"):
        names = {s.name for s in get_method(name).param_specs(tiny_tabular)}
        assert ("noise_tunnel" in names) == (name in GRADIENT), name


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("name", ("integrated_gradients", "input_x_gradient"))
def test_without_noise_the_tunnel_reduces_to_the_method(tiny_adapters, modality, name):
    """With zero noise every copy is the input: smoothgrad gives the map itself, vargrad 0."""
    adapter, raw = tiny_adapters[modality]
    enc = adapter.encode(raw)
    plain = run_method(adapter, enc, name, {"n_steps": 8} if name == "integrated_gradients" else {}, target=0)
    base = {"n_steps": 8} if name == "integrated_gradients" else {}
    smooth = run_method(adapter, enc, name, {**base, "noise_tunnel": "smoothgrad", "nt_samples": 3,
                                             "nt_stdevs": 0.0}, target=0)
    np.testing.assert_allclose(smooth.scores, plain.scores, rtol=1e-4, atol=1e-6)
    var = run_method(adapter, enc, name, {**base, "noise_tunnel": "vargrad", "nt_samples": 3,
                                          "nt_stdevs": 0.0}, target=0)
    np.testing.assert_allclose(var.scores, 0.0, atol=1e-6)
    assert smooth.convergence_delta is None  # a smoothed map is not one path's integral


def test_noise_changes_the_map_deterministically(tiny_image, tiny_image_input):
    enc = tiny_image.encode(tiny_image_input)
    params = {"noise_tunnel": "smoothgrad_sq", "nt_samples": 4, "nt_stdevs": 0.2}
    a = run_method(tiny_image, enc, "saliency", params, target=1)
    b = run_method(tiny_image, enc, "saliency", params, target=1)
    plain = run_method(tiny_image, enc, "saliency", {}, target=1)
    np.testing.assert_array_equal(a.scores, b.scores)  # seeded: a cached result equals a rerun
    assert not np.allclose(a.scores, plain.scores) and (a.scores >= 0).all()  # squares


@pytest.mark.parametrize("modality", MODALITIES)
def test_the_estimate_counts_every_noisy_copy(tiny_adapters, modality, monkeypatch):
    adapter, raw = tiny_adapters[modality]
    enc = adapter.encode(raw)
    params = {"n_steps": 6, "noise_tunnel": "smoothgrad", "nt_samples": 3}
    seen = []
    forward = adapter.forward_fn
    monkeypatch.setattr(adapter, "forward_fn",
                        lambda e, on_batch=None: forward(e, lambda n: (seen.append(n), on_batch(n))))
    run_method(adapter, enc, "integrated_gradients", params, target=0)
    assert sum(seen) == estimate_cost(adapter, enc, "integrated_gradients", params)
    assert estimate_cost(adapter, enc, "integrated_gradients", params) == 3 * estimate_cost(
        adapter, enc, "integrated_gradients", {"n_steps": 6})
