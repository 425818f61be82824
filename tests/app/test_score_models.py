"""AppTest of score models on the Tabular page: the diabetes default, and the walkthrough's
recommender uploaded as a ``torch.export`` program with Chinese feature names (the page, the
URL, the CSV / JSON / PNG exports)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.app.test_pages import run

NAMES = ["浏览时长", "收藏次数", "历史消费", "年龄", "性别"]
#: one cheap method for the upload tests (the URL names methods by title)
FAST = "Feature ablation"


def page(params: dict | None = None) -> AppTest:
    from tests.app.test_pages import page as any_page
    return any_page("tabular", params)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_diabetes_on_the_tabular_page():
    at = run(page({"tab.model": "diabetes", "row": "0"}))
    shown = metrics(at)
    assert "Predicted disease progression" in shown and "Prediction" not in shown
    assert float(shown["Predicted disease progression"]) == pytest.approx(217.05, abs=0.1)
    assert not [s for s in at.selectbox if s.key == "target"]  # one output: nothing to choose
    assert any("percentile of the data" in c.value for c in at.caption)
    assert any("R² on held-out rows" in c.value for c in at.caption)
    # the flip threshold defaults to the data's median, and the flips cross it
    threshold = next(n for n in at.number_input if str(n.key).startswith("cmp.threshold"))
    from explainers import load_model
    assert threshold.value == pytest.approx(float(np.median(load_model("diabetes").reference_outputs()[:, 0])))
    assert any("crosses the threshold" in c.value for c in at.caption)
    # an edit shows the new value and its change
    at.number_input(key="wf.0.bmi").set_value(40.0)
    run(at)
    edited = next(m for m in at.metric if m.label == "Edited input")
    assert float(edited.value) > 217.05 and edited.delta.startswith("+")


@pytest.fixture(scope="module")
def recommender_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec_upload")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.uniform(0, 10, (30, 5)), columns=NAMES)
    lin = torch.nn.Linear(5, 1).eval()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.8, -0.5, 0.03, 0.1, 2.0]]))
    program = torch.export.export(lin, (torch.randn(3, 5),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(d / "rec.pt2"))
    return (d / "rec.pt2").read_bytes(), frame.to_csv(index=False).encode("utf-8"), frame


def upload(at: AppTest, model: bytes, rows: bytes) -> None:
    at.file_uploader(key="up.csv").upload("rows.csv", rows, "text/csv")
    at.file_uploader(key="up.model").upload("rec.pt2", model)


def test_uploaded_pt2_recommender_with_chinese_feature_names(recommender_files):
    model, rows, frame = recommender_files
    # a link carrying a what-if edit of 浏览时长 (the URL direction of the round trip)
    at = run(page({"model_src": "upload", "wf.2.浏览时长": "9.5", "row": "2", "tab.readout": "ranked",
                   "methods": FAST}))
    upload(at, model, rows)
    run(at)
    shown = metrics(at)
    assert "Predicted score" in shown
    # the upload is named as the user named it (stored by content hash, shown by name)
    assert any(c.value.endswith("model rec.pt2") for c in at.caption), [c.value for c in at.caption][:8]
    assert any("Scores are in **the score's own units" in c.value for c in at.caption)
    x = frame.iloc[2].to_numpy()
    w = np.array([0.8, -0.5, 0.03, 0.1, 2.0])
    edited = next(m for m in at.metric if m.label == "Edited input")
    assert float(edited.delta) == pytest.approx(0.8 * (9.5 - x[0]), rel=1e-3)
    labels = {n.label for n in at.number_input}
    assert set(NAMES) <= labels  # the what-if fields are named in Chinese
    ranked = [c.value for c in at.caption if c.value.startswith(tuple(NAMES))]
    assert ranked and all(name in ranked[0] for name in NAMES)
    top = max(range(5), key=lambda i: abs(w[i] * (x[i] - frame.iloc[:, i].mean())))
    assert ranked[0].startswith(NAMES[top])


def test_chinese_names_survive_csv_json_and_png_exports(recommender_files, tmp_path):
    from dashboard import export, render
    from dashboard.types import Input
    from dashboard.views import get_view
    from explainers import explain, load_model
    model, rows, _ = recommender_files
    (tmp_path / "rec.pt2").write_bytes(model)
    (tmp_path / "rows.csv").write_bytes(rows)
    adapter = load_model(str(tmp_path / "rec.pt2"), "tabular", data=str(tmp_path / "rows.csv"))
    enc = adapter.encode(1)
    r = explain(adapter, enc, methods=["feature_ablation"], use_cache=False)
    a = r.attributions["feature_ablation"]
    inp = Input(enc, adapter.predict(enc))
    table = list(csv.reader(io.StringIO(get_view("tabular").scores_csv(adapter, enc, a).decode("utf-8"))))
    assert [row[1] for row in table[1:]] == NAMES
    doc = json.loads(export.result_json(adapter, inp, r.attributions, 0))
    assert doc["features"] == NAMES and doc["prediction"]["output_kind"] == "score"
    png = export.panel_png(adapter, inp, a, 1.0)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    if render.wide_font_path() is None:
        pytest.skip("no CJK font on this system (install fonts-noto-cjk): PNG names would be boxes")
    # with a CJK font, different names draw different glyphs (the fallback draws identical boxes)
    one = render.bars_png(["浏览时长"], np.array([1.0]), None, 1.0)
    other = render.bars_png(["历史消费"], np.array([1.0]), None, 1.0)
    assert one != other


def test_uploaded_multilabel_head_shows_independent_probabilities(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(20, 4)), columns=["a", "b", "c", "d"])
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3).eval()
    program = torch.export.export(lin, (torch.randn(2, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(tmp_path / "tags.pt2"))
    at = run(page({"model_src": "upload", "row": "4", "methods": FAST}))
    upload(at, (tmp_path / "tags.pt2").read_bytes(), frame.to_csv(index=False).encode())
    at.selectbox(key="up.output").set_value("sigmoid")
    at.text_input(key="up.names").input("sports, music, travel")
    run(at)
    with torch.no_grad():
        want = torch.sigmoid(lin(torch.tensor(frame.iloc[4].to_numpy(), dtype=torch.float32)))
    share = next(c.value for c in at.caption if c.value.startswith("independent per output"))
    assert f"{float(want.max()):.1%}" in share  # the most probable output's own probability
    on = next(c.value for c in at.caption if c.value.startswith("at or above 0.5"))
    expected = [n for n, p in zip(["sports", "music", "travel"], want.tolist()) if p >= 0.5]
    assert all(n in on for n in expected) and (expected or "none" in on)
    assert [s for s in at.selectbox if s.key == "target"]  # three outputs: a target to choose
