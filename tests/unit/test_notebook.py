"""Explanations as notebook HTML: the values drawn are the explanation's, text is escaped, and
nothing is fetched (inline styles, pictures as data: PNGs)."""

from __future__ import annotations

import base64
import html
import io
import re

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from explainers import Figure, explain, figure, show
from explainers.notebook import TOP_FEATURES, explanation_png, text_spans

METRICS = ["agreement", "faithfulness", "flip"]


def alphas(page: str) -> list[tuple[str, float, float]]:
    """(token, score, background alpha) of every highlighted token, in order."""
    found = re.findall(r"<span class='tok' title=\"([^\"]*)\" style='background:rgba\(\d+,\d+,\d+,([0-9.]+)\)", page)
    out = []
    for tip, alpha in found:
        token, _, score = html.unescape(tip).rpartition(": ")
        out.append((token, float(score), float(alpha)))
    return out


def pngs(page: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB"))
            for b in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)]


def assert_offline(page: str) -> None:
    # every resource is inline: no src/href but data: URIs, no stylesheet or script element
    refs = re.findall(r"(?:src|href)\s*=\s*['\"]([^'\"]*)", page)
    assert all(r.startswith("data:") for r in refs), refs
    assert "<link" not in page and "<script" not in page.lower() and "@import" not in page


def test_text_cell_draws_every_method_on_the_shared_scale_and_escapes_tokens(tiny_text):
    text = "<script>alert(1)</script> the soup was bland"
    r = explain(tiny_text, text, methods=["integrated_gradients", "occlusion"], metrics=METRICS, use_cache=False)
    page = r._repr_html_()
    assert_offline(page)
    assert "&lt;" in page and "<script>" not in page  # the token "<" and the text are escaped
    assert "Integrated Gradients" in page and "Occlusion" in page
    drawn = alphas(page)
    features = r.to_dict()["features"]
    n = len(features)
    assert len(drawn) == 2 * n  # two panels, one pill per word
    shared = max(float(np.max(np.abs(a.scores))) for a in r.attributions.values())
    for k, (m, a) in enumerate(r.attributions.items()):
        panel = drawn[k * n:(k + 1) * n]
        assert [t for t, _, _ in panel] == features
        # each tooltip is the method's own score, rounded as shown; the colour is |score| / the
        # shared maximum at 0.85 opacity (rgba written with 3 decimals: +-0.0005)
        assert [s for _, s, _ in panel] == pytest.approx(np.round(a.scores, 4), abs=1e-4)
        assert [al for _, _, al in panel] == pytest.approx(0.85 * np.abs(a.scores) / shared, abs=6e-4)
    assert max(al for _, _, al in drawn) == pytest.approx(0.85)  # the largest score is full colour
    # the prediction with the model's own class names, and the metrics' verdicts as computed
    p = r.prediction
    assert f"{p.label} ({p.probabilities[p.index]:.1%})" in page
    assert all(html.escape(lab) in page for lab in tiny_text.labels)
    faith = r.metrics["faithfulness"]["methods"]
    for m in r.attributions:
        verdict = "✓ beats random" if faith[m]["beats_random"] else "✗ not better than random"
        assert f"{faith[m]['deletion_aopc']:.3f}</td>" in page and verdict in page


def test_text_spans_follow_the_text():
    assert text_spans("The soup, was bland.", ["The", "soup", ",", "was", "bland", "."]) == \
        [(0, 3), (4, 8), (8, 9), (10, 13), (14, 19), (19, 20)]
    assert text_spans("the soup", ["soup", "the"]) is None  # out of order: default spacing
    assert text_spans("The Soup", ["the", "soup"]) == [(0, 3), (4, 8)]


def test_image_cell_draws_each_map_over_the_picture(tiny_image, tiny_image_input):
    r = explain(tiny_image, tiny_image_input, methods=["integrated_gradients", "occlusion"], use_cache=False)
    page = r._repr_html_()
    assert_offline(page)
    assert [m.shape for m in pngs(page)] == [(32, 32, 3)] * 2
    # a map with a known shape (against the target on the left, for it on the right) drawn over
    # the explained picture: the page's default view keeps the positive part, smoothed (sigma 8 px)
    record = r.to_dict()
    known = np.where(np.arange(32)[None, :] < 16, -1.0, 1.0) * np.ones((32, 1))
    for a in record["attributions"].values():
        a["scores"] = known.tolist()
    from explainers.notebook import explanation_html
    raw = np.asarray(r.input, dtype=np.float64)  # the picture at model resolution
    base = 0.55 * raw + 0.45 * raw.mean(axis=2, keepdims=True)  # the desaturated picture under a map
    shown = np.clip(gaussian_filter(known, 8.0, mode="nearest"), 0, None)
    for picture in pngs(explanation_html(record, image=r.input)):
        drawn = np.asarray(picture, dtype=np.float64)
        clear = shown <= 0
        assert clear[:, :8].all() and not clear[:, 24:].any()
        assert np.abs(drawn[clear] - base[clear]).max() <= 1.0  # the picture shows through (uint8 cut)
        hot = shown >= np.percentile(shown, 98)  # full colour from the 98th percentile: red over the picture
        expected = base[hot] * (1 - 0.85) + np.array([214, 39, 40]) * 0.85
        assert np.abs(drawn[hot] - expected).max() <= 1.0


def test_tabular_cell_bars_are_scaled_to_the_shared_maximum(tiny_tabular):
    r = explain(tiny_tabular, 3, methods=["feature_ablation", "integrated_gradients"], use_cache=False)
    page = r._repr_html_()
    assert_offline(page)
    widths = [int(w) for w in re.findall(r"display:inline-block;width:(\d+)px;height:11px", page)]
    shared = max(float(np.max(np.abs(a.scores))) for a in r.attributions.values())
    expected = [int(round(110 * min(1.0, abs(float(s)) / shared)))
                for a in r.attributions.values()
                for s in sorted(a.scores, key=lambda v: -abs(v))[:TOP_FEATURES]]
    assert widths == expected
    values = r.input  # the row's values label the bars, as on the page
    assert all(f"{name} = {values[name]:.4g}" in page for name in tiny_tabular.feature_names)


def test_escaped_feature_names_and_a_png_of_the_same_explanation(tiny_tabular):
    r = explain(tiny_tabular, 2, methods=["feature_ablation"], use_cache=False)
    record = r.to_dict()
    record["features"] = ["<img src=x onerror=alert(1)>"] + record["features"][1:]
    from explainers.notebook import explanation_html
    page = explanation_html(record)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    picture = explanation_png(record)
    assert picture.ndim == 3 and picture.shape[2] == 3 and picture.dtype == np.uint8


def test_figure_and_show_outside_a_notebook(tiny_tabular, tmp_path, capsys):
    r = explain(tiny_tabular, 1, methods=["feature_ablation"], use_cache=False)
    fig = figure(r, methods=["feature_ablation"])
    assert isinstance(fig, Figure) and fig._repr_html_() == r._repr_html_(methods=["feature_ablation"])
    saved = tmp_path / "f.html"
    fig.save(str(saved))
    assert saved.read_text(encoding="utf-8").startswith("<!doctype html>")
    shown = show(r)  # no IPython shell here: written to a file whose path is printed
    assert isinstance(shown, Figure) and "not in a notebook" in capsys.readouterr().err
    png = figure(np.zeros((4, 5, 3), np.uint8))
    assert pngs(png._repr_html_())[0].shape == (4, 5, 3)
    with pytest.raises(ValueError, match="not in this explanation"):
        r._repr_html_(methods=["occlusion"])
    with pytest.raises(TypeError, match="cannot draw"):
        figure(object())


def test_a_highlight_spaces_words_as_the_text_does(tiny_text):
    # the word's character spans decide the spaces: none before a comma or a full stop
    r = explain(tiny_text, "the soup, was bland.", methods=["occlusion"], use_cache=False)
    page = r._repr_html_()
    pills = re.findall(r"( ?)<span class='tok' title=\"([^\"]*): [-+][0-9.]+\"", page)
    assert [(space, word) for space, word in pills] == [("", "the"), (" ", "soup"), ("", ","), (" ", "was"),
                                                        (" ", "bland"), ("", ".")]
