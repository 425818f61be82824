"""Grad-CAM on the default image model: the map lies on the cat (measured thresholds)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from explainers import explain, load_model

pytestmark = pytest.mark.slow
CAT_CLASSES = range(281, 286)


@pytest.fixture(scope="module")
def image_model():
    return load_model("image")


def positive_share(scores: np.ndarray, rows: slice, cols: slice) -> float:
    pos = np.clip(scores, 0, None)
    return float(pos[rows, cols].sum() / pos.sum())


def test_grad_cam_focuses_on_the_cat(image_model):
    """chelsea: the cat fills all but the blurred strip right of its face (x >= 168, y < 196,
    22 % of the image). Measured on conv_head (7 x 7): 0.76 of the positive mass off that
    strip, and 0.38 on the face (the central quarter, 25 % of the area: 1.5 x its share)."""
    from cache.models import gallery_image
    r = explain(image_model, gallery_image("chelsea"), methods=["grad_cam"], use_cache=False)
    assert r.prediction.index in CAT_CLASSES
    a = r.attributions["grad_cam"]
    assert a.params["layer"] == "conv_head" and a.scores.shape == (224, 224)
    assert a.scores.min() >= 0 and np.isfinite(a.scores).all()
    background = positive_share(a.scores, slice(0, 196), slice(168, 224))
    assert 1 - background > 0.7, background
    assert positive_share(a.scores, slice(56, 168), slice(56, 168)) > 0.33


@pytest.mark.parametrize("quadrant", [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_grad_cam_finds_a_pasted_cat(image_model, quadrant):
    """chelsea pasted into one quadrant of a grey canvas: the quadrant holding the cat gets
    more of the positive mass than any other (measured 0.43 / 0.59 / 0.56 / 0.79 for
    top-left / top-right / bottom-left / bottom-right; a quadrant is 25 % of the area)."""
    from cache.models import gallery_image
    cat = np.asarray(Image.fromarray(gallery_image("chelsea")).resize((224, 224)))
    canvas = np.full((448, 448, 3), 128, np.uint8)
    r, c = quadrant
    canvas[r * 224:(r + 1) * 224, c * 224:(c + 1) * 224] = cat
    res = explain(image_model, canvas, methods=["grad_cam"], use_cache=False)
    assert res.prediction.index in CAT_CLASSES
    s = res.attributions["grad_cam"].scores
    shares = {(i, j): positive_share(s, slice(i * 112, (i + 1) * 112), slice(j * 112, (j + 1) * 112))
              for i in (0, 1) for j in (0, 1)}
    assert max(shares, key=shares.get) == quadrant, shares
    assert shares[quadrant] > 0.38, shares
