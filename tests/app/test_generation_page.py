"""AppTest of the Generation page on a tiny random-weight causal LM (a local folder, as a
user's model): the strip, one matrix per method, deleting a unit, the flip's Apply, escaping."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
XSS = "<img src=x onerror=alert(1)>"
PROMPT = "Maria was born in Lisbon and studied chemistry in Berlin. Which city was Maria born in?"


def page(params: dict) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "generation.py"), default_timeout=300)
    for k, v in params.items():
        at.query_params[k] = v
    return at


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def base(tiny_lm_dir, **extra) -> dict:
    return {"model_src": "custom", "model": str(tiny_lm_dir), "gen.new": "3", "ig.n_steps": "4", **extra}


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption]
                     + [h.value for h in at.get("html")])


def test_the_page_explains_the_continuation_with_a_matrix_per_method(tiny_lm_dir):
    at = run(page(base(tiny_lm_dir, **{"gen.prompt": PROMPT})))
    assert not at.error, [e.value for e in at.error]
    assert at.metric[0].label == "log p(target)"
    assert "The model continues:" in texts(at)
    charts = at.get("vega_lite_chart")
    # one matrix per default method (feature ablation, IG, attention), no edit yet
    assert len([c for c in charts if "target token" in str(c.proto)]) == 3
    assert [m for m in at.multiselect(key="methods").value] == ["feature_ablation", "integrated_gradients",
                                                               "target_attention"]


def test_deleting_a_word_shows_the_new_continuation_and_the_change(tiny_lm_dir):
    at = run(page(base(tiny_lm_dir, **{"gen.prompt": PROMPT, "gen.target_mode": "typed target",
                                       "gen.target": " Lisbon", "methods": "feature_ablation"})))
    words = at.pills[0]
    words.set_value([list(words.options).index("Lisbon")])
    run(at)
    shown = texts(at)
    assert "On the edit it continues:" in shown and "deleted: Lisbon" in shown
    assert at.metric[1].label == "On the edited prompt" and at.metric[1].delta
    assert "<del" in texts(at)  # the diff of the prompt
    at.button(key="gcf.reset").click()
    run(at)
    assert "On the edit it continues:" not in texts(at)


def test_user_text_is_escaped_and_a_bad_prompt_is_one_message(tiny_lm_dir):
    at = run(page(base(tiny_lm_dir, **{"gen.prompt": f"the soup {XSS}", "methods": "feature_ablation"})))
    assert "<img src=x" not in texts(at)
    at = run(page(base(tiny_lm_dir, **{"gen.prompt": PROMPT, "gen.target_mode": "typed target",
                                       "methods": "feature_ablation"})))
    at.text_input(key="gen.target").set_value("")
    run(at)
    assert any("tokenizes to nothing" in e.value for e in at.error)


def test_a_template_prompt_attributes_its_fields(tiny_lm_dir):
    at = run(page(base(tiny_lm_dir, **{"gen.mode": "template", "gen.unit": "field", "methods": "feature_ablation",
                                       "gen.target_mode": "typed target", "gen.target": " Lisbon"})))
    assert not at.error, [e.value for e in at.error]
    assert "name=Maria" in texts(at) and "city=Lisbon" in texts(at)


def test_the_review_page_reviews_prompts_with_expected_answers(tiny_lm_dir):
    at = AppTest.from_file(str(ROOT / "pages" / "review.py"), default_timeout=300)
    for k, v in {"rv.modality": "generation", "model_src": "custom", "model": str(tiny_lm_dir)}.items():
        at.query_params[k] = v
    run(at)
    at.segmented_control(key="rv.modality").set_value("generation")
    run(at)
    at.text_area(key="rv.prompts").set_value(f"{PROMPT}\tLisbon\nthe soup was bland\n   ")
    at.multiselect(key="rv.methods").set_value(["feature_ablation"])
    at.multiselect(key="rv.metrics").set_value(["agreement"])
    at.button(key="rv.run").click()
    run(at)
    captions = " ".join(c.value for c in at.caption)
    assert "2 input(s) explained" in captions, captions
    frame = next(d.value for d in at.dataframe if "fewest flips" in d.value.columns)
    # the second prompt has no expected answer: a missing cell (pandas shows None as NaN)
    assert frame["true label"].iloc[0] == "Lisbon" and frame["true label"].isna().iloc[1]
    assert frame["correct"].iloc[1] is None or frame["correct"].isna().iloc[1]
