"""The dashboard's downloads and renderers, checked without Streamlit running."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from dashboard import export, render
from dashboard.types import Input
from explainers import run_method


@pytest.fixture(scope="module")
def tabular_run():
    from explainers import load_model
    adapter = load_model("tabular")
    enc = adapter.encode(3)
    attr = {m: run_method(adapter, enc, m) for m in ("integrated_gradients", "occlusion")}
    return adapter, Input(enc, adapter.predict(enc)), attr


def test_result_json_is_the_engine_schema(tabular_run):
    adapter, inp, attr = tabular_run
    d = json.loads(export.result_json(adapter, inp, attr, inp.prediction.index, extra={"id": 3}))
    expected = export.explanation(adapter, inp, attr, inp.prediction.index).to_dict()
    assert {k: d[k] for k in expected} == json.loads(json.dumps(expected))
    assert set(d["attributions"]) == {"integrated_gradients", "occlusion"}
    assert len(d["attributions"]["occlusion"]["scores"]) == 30 and d["input"] == {"id": 3}


def test_scores_csv_has_one_row_per_feature_with_values(tabular_run):
    adapter, inp, attr = tabular_run
    rows = list(csv.DictReader(io.StringIO(export.scores_csv(adapter, inp.enc, attr["occlusion"]).decode())))
    assert len(rows) == 30 and rows[0]["feature"] == adapter.feature_names[0]
    assert float(rows[0]["value"]) == pytest.approx(inp.enc.raw[adapter.feature_names[0]])
    assert float(rows[5]["score"]) == pytest.approx(attr["occlusion"].scores[5], rel=1e-6)


def test_panel_png_for_every_modality(tabular_run, tiny_text):
    adapter, inp, attr = tabular_run
    png = Image.open(io.BytesIO(export.panel_png(adapter, inp, attr["integrated_gradients"], 1.0)))
    assert png.format == "PNG" and png.size[1] > 100
    enc = tiny_text.encode("the soup was bland <img src=x>")
    a = run_method(tiny_text, enc, "occlusion")
    text_png = Image.open(io.BytesIO(export.panel_png(tiny_text, Input(enc, tiny_text.predict(enc)), a, 1.0)))
    assert text_png.size[0] == 900
    image = np.zeros((224, 224, 3), np.uint8)
    over = render.overlay(image, np.ones((224, 224)), 1.0)
    assert over.shape == (224, 224, 3) and over[0, 0, 0] > over[0, 0, 2]  # positive = red


def test_token_html_escapes_and_diff_marks_changes():
    html = render.token_html(["<img", "src=x", "onerror=alert(1)>"], [1.0, -1.0, 0.0], 1.0)
    assert "<img" not in html and "&lt;img" in html and "rgba(214,39,40" in html and "rgba(31,119,180" in html
    diff = render.diff_html("the <b>soup</b> was bland", "the <b>soup</b> was")
    assert "<del" in diff and "bland" in diff and "<b>" not in diff and "&lt;b&gt;" in diff


def test_image_png_has_a_title_and_a_legend(tiny_image, tiny_image_input):
    enc = tiny_image.encode(tiny_image_input)
    a = run_method(tiny_image, enc, "saliency")
    inp = Input(enc, tiny_image.predict(enc))
    png = Image.open(io.BytesIO(export.panel_png(tiny_image, inp, a, 1.0)))
    bare = render.overlay(enc.raw, a.scores, 1.0)
    assert png.size[1] > bare.shape[0] + 30 and png.size[0] >= bare.shape[1]  # room for title + key
    top = np.asarray(png.convert("RGB"))[: png.size[1] - bare.shape[0]]
    assert (np.abs(top.astype(int) - render.POS).sum(-1) < 10).any()  # the red key swatch
    assert (np.abs(top.astype(int) - render.NEG).sum(-1) < 10).any()  # and the blue one


def test_md_keeps_labels_literal_and_unlinked():
    label = "![x](https://evil.example/a.png) see www.evil.example or me@evil.example *now*"
    out = render.md(label)
    assert "![" not in out and "](" not in out and "*now*" not in out  # no image, link or emphasis
    assert "://" not in out and "www." not in out and "@" not in out  # nothing auto-links
    assert "&#58;//" in out and "www&#46;" in out and "&#64;" in out  # the same text, as references


def test_words_are_spaced_as_in_the_text():
    text = "Great, isn't it?"
    labels, spans = ["Great", ",", "isn't", "it", "?"], [(0, 5), (5, 6), (7, 12), (13, 15), (15, 16)]
    shown = render.display_tokens(labels, spans)
    assert "".join((" " if space else "") + t for t, space in shown) == text
    assert [space for _, space in render.display_tokens(labels)] == [False, True, True, True, True]  # no spans
