"""The Review page's precision selector: the policy asked, what it ran as, each line's field."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from explainers import precision

ROOT = Path(__file__).resolve().parents[2]


def test_review_page_runs_under_the_chosen_precision(monkeypatch):
    # an AMX CPU, where auto means bf16-forward (the rule, not this machine: bf16 is emulated here)
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: {"amx_bf16": True, "avx512_bf16": True})
    at = AppTest.from_file(str(ROOT / "pages" / "review.py"), default_timeout=300).run()
    assert not at.exception
    at.segmented_control(key="rv.modality").set_value("tabular").run()
    at.number_input(key="rv.count").set_value(2)
    at.multiselect(key="rv.methods").set_value(["occlusion", "saliency"])
    at.selectbox(key="rv.precision").set_value("auto")
    at.button(key="rv.run").click().run()
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "Model passes: bf16-forward (auto:" in captions
    records = at.session_state["_review.tabular"]
    assert {r["precision"] for r in records} == {"bf16-forward"}
    assert {r["attributions"]["saliency"]["precision"] for r in records} == {"fp32"}  # gradients
