"""The attention methods on the default text model (MiniLM-L6, mean-pooled): one score per
content token, and ``last_layer`` equal to what the model itself returns with
``output_attentions=True``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from explainers import explain, load_model

pytestmark = pytest.mark.slow
TEXT = "The soup was bland, but the unflinchingly kind service saved the evening."


@pytest.fixture(scope="module")
def text_model():
    return load_model("text")


def own_last_layer(model, enc) -> np.ndarray:
    """Head-mean last-layer attention averaged over the rows the model mean-pools (every
    attended position), from an eager copy of the encoder made here."""
    encoder = copy.deepcopy(model.module.encoder)
    encoder.set_attn_implementation("eager")
    mask = enc.context["attention_mask"]
    with torch.no_grad():
        att = encoder(inputs_embeds=enc.inputs, attention_mask=mask, output_attentions=True).attentions
    assert len(att) == 6 and att[-1].shape[1] == 12
    rows = mask[0].bool()
    return att[-1][0].mean(0)[rows].mean(0).numpy()


@pytest.mark.parametrize("unit", ["word", "piece"])
def test_last_layer_equals_the_models_own_attention(text_model, unit):
    r = explain(text_model, TEXT, methods=["attention", "attention_x_gradient"], use_cache=False, unit=unit)
    enc = text_model.encode(TEXT, unit=unit)
    n_content = int((enc.groups[:, 0] >= 0).sum())
    for name in ("attention", "attention_x_gradient"):
        scores = r.attributions[name].scores
        assert scores.shape == (enc.n_features,) and np.all(scores >= 0) and scores.sum() > 0
    if unit == "piece":
        assert enc.n_features == n_content  # one score per content token
    per_pos = own_last_layer(text_model, enc)
    group = enc.groups[:, 0].numpy()
    expected = np.zeros(enc.n_features)
    for pos, g in enumerate(group):
        if g >= 0:
            expected[g] += per_pos[pos]  # a word's score: the sum of its pieces'
    np.testing.assert_allclose(r.attributions["attention"].scores, expected, rtol=1e-5, atol=1e-7)
    assert text_model.module.config._attn_implementation == "sdpa"  # the shared model is unchanged
