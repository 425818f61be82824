"""AppTest checks of every page: the real engine, the default models, no browser.

Each test runs a page script in-process (``streamlit.testing.v1.AppTest``) and asserts on
what it rendered: panel captions (seconds, convergence delta), predictions, escaped HTML,
the Compare section. The image page runs with small parameters passed the way a shared
link passes them (query parameters), because an EfficientNet forward costs ~0.1 s here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
TEXT_WEIGHTS = ROOT / "cache" / "weights" / "sst2_minilm.safetensors"
needs_text_model = pytest.mark.skipif(
    not TEXT_WEIGHTS.is_file(), reason=f"default text model weights not built yet ({TEXT_WEIGHTS.name})")

#: cheap image settings, as URL parameters (the same a shared link would carry)
FAST_IMAGE = {"ig.n_steps": "4", "gs.n_samples": "2", "occ.window": "112", "occ.stride": "112"}
XSS = "<img src=x onerror=alert(1)>"
PANEL = re.compile(r"δ = (\S+) · Σ = (\S+|n/a \(not additive\)) · (computed|cache hit)")


def page(name: str, params: dict | None = None, timeout: int = 240) -> AppTest:
    path = ROOT / ("dashboard/app.py" if name == "app" else f"pages/{name}.py")
    at = AppTest.from_file(str(path), default_timeout=timeout)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    return at


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def panel_stats(at: AppTest) -> list[tuple[str, str]]:
    """(delta, sum) of every panel caption, original row first, methods in order."""
    return [m.groups()[:2] for c in at.caption if (m := PANEL.search(c.value))]


def render_md(value: str) -> str:
    from dashboard.render import md
    return md(value)


def rendered(at: AppTest) -> list[str]:
    return ([m.value for m in at.markdown] + [c.value for c in at.caption]
            + [h.value for h in at.get("html")])


def faithfulness_table(at: AppTest):
    return next(d.value for d in at.dataframe if "deletion AOPC ↑" in d.value.columns)


def charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


def edit_change(at: AppTest) -> tuple[float, float]:
    """The target probability before and after the edit, as shown in the editor."""
    for m in at.markdown:
        hit = re.search(r"Prediction on the edit.*?([\d.]+)% → ([\d.]+)%", m.value)
        if hit:
            return float(hit.group(1)), float(hit.group(2))
    raise AssertionError("no prediction for the edited input is shown")


# -- home and navigation --------------------------------------------------------------------
def test_entry_point_renders_home_with_every_method():
    from explainers import get_method, list_methods
    at = run(page("app", timeout=60))
    assert at.title[0].value == "Attribution Studio"
    text = "\n".join(rendered(at))
    for name in list_methods():
        assert get_method(name).title in text
        assert get_method(name).summary in text
    assert "random control" in text  # how to read the faithfulness numbers
    # every card opens its page with an example; the first-explanation path links the sentence
    links = {(link.proto.page, link.proto.query_string) for link in at.get("page_link")}
    assert {p for p, _ in links} == {"text", "image", "tabular", "generation", "review"}
    assert all(q for _, q in links)
    assert ".pt2" in text and "TorchScript" in text  # the Tabular card names both model formats
    assert "Three steps" in text
    assert re.search(r"Attribution store: [\d,]+ result\(s\), [\d.,]+ MB of a [\d,]+ MB cap", text)


def test_a_home_example_link_opens_its_page_explained():
    from dashboard.home import EXAMPLES
    at = run(page("tabular", EXAMPLES["tabular"]))
    assert at.number_input(key="row").value == int(EXAMPLES["tabular"]["row"])
    assert len(panel_stats(at)) == 3


def test_config_keeps_the_server_local_and_quiet():
    import tomllib
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["server"]["enableXsrfProtection"] is True
    assert cfg["server"]["maxUploadSize"] == 20
    assert cfg["server"]["enableStaticServing"] is False
    assert cfg["client"]["showErrorDetails"] == "none"
    assert cfg["client"]["toolbarMode"] == "minimal"
    assert cfg["browser"]["gatherUsageStats"] is False


def test_pages_never_import_captum():
    for path in (ROOT / "pages").glob("*.py"):
        assert "captum" not in path.read_text(), path
    for path in (ROOT / "dashboard").glob("*.py"):
        assert "import captum" not in path.read_text() and "from captum" not in path.read_text(), path


# -- text -------------------------------------------------------------------------------------
@needs_text_model
def test_text_default_model_fills_every_panel_and_ig_steps_change_the_result():
    at = run(page("text"))
    assert at.metric[0].value in ("negative", "positive")
    stats = panel_stats(at)
    assert len(stats) == 3, stats  # IG, GradientSHAP, Occlusion on the original
    assert stats[0][0] != "n/a" and stats[2][0] == "n/a"  # IG reports a delta, occlusion none
    ig_before = stats[0]
    at.number_input(key="ig.n_steps").set_value(4)
    run(at)
    assert panel_stats(at)[0] != ig_before
    assert "n_steps=4" in "\n".join(c.value for c in at.caption)


@needs_text_model
def test_text_deleting_tokens_changes_the_prediction_and_re_explains_the_edit():
    text = "The soup was bland and the service was terrible."
    at = run(page("text", {"text": text}))
    tokens = at.pills[0]
    labels = list(tokens.options)  # displayed tokens; the option values are their indices
    bland, terrible = labels.index("bland"), labels.index("terrible")
    tokens.set_value([bland, terrible])
    run(at)
    assert at.text_area(key="edit").value == "The soup was and the service was."  # case kept
    before, after = edit_change(at)
    assert before != after  # the new prediction is shown at once
    assert len(at.metric) == 2  # original and edited prediction in the strip
    assert len(panel_stats(at)) == 6  # every panel re-explains the edit (before/after rows)
    diff = "\n".join(h.value for h in at.get("html"))
    assert "<del" in diff and "bland" in diff
    at.button(key="cf.reset").click()
    run(at)
    assert at.text_area(key="edit").value == "" and len(panel_stats(at)) == 3


@needs_text_model
def test_text_tokens_and_diff_are_escaped():
    at = run(page("text", {"text": f"Great film {XSS}", "edit": f"Great {XSS}"}))
    html = rendered(at)
    assert any("&lt;img" in h for h in html)  # the diff shows the review as text
    assert not any("<img src=x" in h for h in html)
    assert not any("onerror=alert(1)>" in h and "&gt;" not in h for h in html)


def test_text_custom_model_from_a_local_folder(tiny_text_dir):
    at = run(page("text", {"model_src": "custom", "model": str(tiny_text_dir),
                           "text": f"the soup was bad {XSS}"}))
    assert at.metric[0].value in ("negative", "positive")
    assert len(panel_stats(at)) == 3
    assert not any("<img src=x" in h for h in rendered(at))


def test_text_unknown_model_is_a_message_not_a_traceback(tmp_path):
    at = run(page("text", {"model_src": "custom", "model": str(tmp_path / "missing")}))
    assert any("Model not available" in e.value for e in at.error)


# -- image ------------------------------------------------------------------------------------
def test_image_panels_erase_and_compare():
    at = run(page("image", FAST_IMAGE))
    assert at.metric[0].value == "Egyptian cat"
    assert len(panel_stats(at)) == 3
    assert len(at.image) >= 3
    captions = "\n".join(c.value for c in at.caption)
    assert "n_steps=4" in captions and "window=112" in captions
    # erase the cat's face: the prediction changes and every panel re-explains the edit
    at.toggle(key="erase").set_value(True)
    run(at)
    before, after = edit_change(at)
    assert after < before
    assert len(panel_stats(at)) == 6
    # Compare: agreement is automatic on images, the rest waits for a click
    assert [t.label for t in at.tabs] == ["Agreement", "Faithfulness", "Flips", "Stability",
                                          "Sanity & robustness"]
    assert "Where the methods disagree most" in "\n".join(m.value for m in at.markdown)
    assert at.button(key="cmp.run.faithfulness") is not None


def test_image_cost_cap_refuses_expensive_settings():
    # IG needs 4 + 2 passes, GradientSHAP 3 x 2, occlusion 1 + 4 windows: a cap of 5 keeps occlusion only
    at = run(page("image", {**FAST_IMAGE, "cap": "5"}))
    refused = [w.value for w in at.warning if "Refused" in w.value]
    assert len(refused) == 2 and all("over the cap of 5" in r for r in refused)
    assert len(panel_stats(at)) == 1


# -- tabular ----------------------------------------------------------------------------------
def test_tabular_panels_what_if_and_scale_toggle():
    at = run(page("tabular", {"row": "13"}))  # a malignant row predicted at ~81 %
    assert at.metric[0].value == "malignant"  # its true label
    assert len(panel_stats(at)) == 3
    legend = "\n".join(h.value for h in at.get("html"))
    assert "shared by all panels" in legend
    ig_before = panel_stats(at)[0]
    at.number_input(key="ig.n_steps").set_value(3)
    run(at)
    assert panel_stats(at)[0] != ig_before
    # what-if: shrink the worst radius; the prediction of the edited row is shown at once
    at.number_input(key="wf.13.worst radius").set_value(10.0)
    at.number_input(key="wf.13.worst area").set_value(300.0)
    run(at)
    before, after = edit_change(at)
    assert before != after
    assert len(panel_stats(at)) == 6
    at.radio(key="scale").set_value("per panel")
    run(at)
    assert "per panel" in "\n".join(h.value for h in at.get("html"))
    # a bad parameter is a message in its own panel; the other panels still render
    at.multiselect(key="occ.baselines").set_value([])
    run(at)
    assert any("Occlusion" in e.value and "baselines" in e.value for e in at.error)
    assert len(panel_stats(at)) == 4  # IG and GradientSHAP, before and after


def test_tabular_compare_section_and_apply_flip():
    at = run(page("tabular"))
    md = "\n".join(rendered(at))
    assert "Where the methods disagree most" in md
    assert "Integrated Gradients convergence" in md
    assert "GradientSHAP across seeds" in md
    assert "Baseline sensitivity" in md
    table = faithfulness_table(at)
    assert {"deletion AOPC ↑", "comprehensiveness ↑", "sufficiency ↓", "beats random"} <= set(table.columns)
    assert "random (control)" in list(table["method"])
    assert charts(at) >= 8  # probabilities, 3 panels, agreement, disagreement, curves, stability
    # the convergence check suggests fewer IG steps; one click applies them to the IG panel
    suggested = at.button(key="cmp.use_steps")
    steps = int(re.search(r"(\d+)$", suggested.label).group(1))
    suggested.click()
    run(at)
    assert at.number_input(key="ig.n_steps").value == steps
    assert f"n_steps={steps}" in "\n".join(c.value for c in at.caption)
    apply = [b for b in at.button if b.key and b.key.startswith("cmp.apply.")]
    assert apply, "no flip found for any method"
    flip = next(v for v in at.session_state["_metrics"].values() if isinstance(v, dict) and "original_label" in v)
    method = apply[0].key.removeprefix("cmp.apply.")
    block = flip["random"] if method == "random" else flip["methods"][method]
    apply[0].click()
    run(at)
    assert len(at.metric) == 3  # true label, prediction, edited prediction
    assert at.metric[2].value != at.metric[1].value  # the applied edit flips the prediction
    assert at.metric[2].value == block["new_label"]  # to the class the metric reported
    assert len(panel_stats(at)) == 6


def test_tabular_sanity_and_robustness_on_demand():
    at = run(page("tabular"))
    assert not [s for s in at.success if "passes" in s.value]
    at.button(key="cmp.run.sanity").click()
    run(at)
    verdicts = [s.value for s in at.success] + [e.value for e in at.error]
    assert sum(("passes" in v or "Do not trust" in v) for v in verdicts) == 3
    at.button(key="cmp.run.robustness").click()
    run(at)
    rob = [d.value for d in at.dataframe if "infidelity ↓" in d.value.columns]
    assert rob and len(rob[0]) == 3


def test_compare_without_metrics_engine_says_so(monkeypatch):
    import dashboard.compare
    monkeypatch.setattr(dashboard.compare, "metrics_engine", lambda: None)
    at = run(page("tabular"))
    assert any("metrics engine is not available" in i.value for i in at.info)
    assert len(panel_stats(at)) == 3  # the panels do not depend on it


# -- uploads ------------------------------------------------------------------------------------
def _png(arr) -> bytes:
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_image_upload_and_a_broken_file():
    import numpy as np
    at = run(page("image", {**FAST_IMAGE, "src": "upload"}))
    assert any("Upload an image" in i.value for i in at.info)
    rng = np.random.default_rng(0)
    at.file_uploader(key="upload").upload("noise.png", _png(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)),
                                          "image/png")
    run(at)
    assert len(panel_stats(at)) == 3
    assert any("resized to 224x224" in c.value for c in at.caption)
    at.file_uploader(key="upload").set_value(("fake.png", b"not an image at all", "image/png"))
    run(at)
    assert any("not an image" in e.value for e in at.error)


def test_the_model_upload_help_claims_only_what_the_loader_does():
    """Loading checks the archive; predicting runs the model's graph. The help said
    "loading it runs no code" of both formats, and nothing of the graph."""
    at = run(page("tabular", {"model_src": "upload"}))
    help_text = at.file_uploader(key="up.model").help
    assert "runs no Python code" in help_text and "TorchScript holds TorchScript" in help_text
    assert "graph runs whenever it predicts" in help_text


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_tabular_upload_csv_and_torchscript(tmp_path):
    import torch

    from tests.conftest import tiny_frame
    frame = tiny_frame()
    frame["label"] = (frame["f0"] > 0).astype(int)
    torch.manual_seed(0)
    model = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)))
    path = tmp_path / "model.pt"
    model.save(str(path))
    at = run(page("tabular", {"model_src": "upload"}))
    at.file_uploader(key="up.csv").upload("rows.csv", frame.to_csv(index=False).encode(), "text/csv")
    at.file_uploader(key="up.model").upload("model.pt", path.read_bytes())
    at.text_input(key="up.label").input("label")
    at.text_input(key="up.names").input("no, ![x](https://evil.example/a.png)")
    run(at)
    assert at.metric[0].value in ("no", render_md("![x](https://evil.example/a.png)"))
    shown = [m.value for m in at.metric] + rendered(at)
    assert not any("](https://" in v or "https://evil" in v for v in shown)  # never a live image or link
    assert len(panel_stats(at)) == 3
    bars = "\n".join(rendered(at))
    assert "Where the methods disagree most" in bars


def test_image_flip_apply_fills_the_patches():
    at = run(page("image", FAST_IMAGE))
    at.button(key="cmp.run.flip").click()
    run(at)
    apply = [b for b in at.button if b.key and b.key.startswith("cmp.apply.") and b.key != "cmp.apply.random"]
    assert apply, "no method flips the prediction"
    apply[0].click()
    run(at)
    patches = at.multiselect(key="cf.patches").value
    assert patches and all(p.startswith("patch r") for p in patches)
    assert at.metric[1].value != "Egyptian cat"  # the loaded edit flips the prediction
    assert len(panel_stats(at)) == 6


def test_expensive_metric_buttons_show_their_cost_and_respect_the_cap():
    """On-demand metrics say how many forward passes they may run; over the cap they are off."""
    at = run(page("tabular", {"row": "13"}))
    buttons = {b.key: b for b in at.button if str(b.key).startswith("cmp.run.")}
    assert buttons and all("forward passes" in (b.help or "") for b in buttons.values())
    assert not any(b.disabled for b in buttons.values())
    at2 = run(page("tabular", {"row": "13", "cap": "60"}))
    sanity = next(b for b in at2.button if b.key == "cmp.run.sanity")
    assert sanity.disabled and "over the cap" in sanity.help


# -- review -----------------------------------------------------------------------------------
def test_review_page_summarises_a_batch():
    at = run(AppTest.from_file(str(ROOT / "pages" / "review.py"), default_timeout=300))
    assert not at.exception
    at.segmented_control(key="rv.modality").set_value("tabular")
    run(at)
    at.number_input(key="rv.count").set_value(4)
    at.button(key="rv.run").click()
    run(at)
    assert not at.exception
    verdict = at.dataframe[0].value  # the dataset-level verdict comes first
    assert list(verdict["method"]) == ["integrated_gradients", "gradient_shap", "occlusion"]
    assert set(verdict["verdict"]) <= {"beats random", "does not beat random"}
    assert (verdict["inputs"] == 4).all() and verdict["p"].between(0, 1).all()
    frame = at.dataframe[1].value
    assert list(frame["method"]) == ["integrated_gradients", "gradient_shap", "occlusion",
                                     "(random control)"]
    aopc = frame.set_index("method")["del. AOPC"]
    assert aopc.notna().all() and aopc["integrated_gradients"] > aopc["(random control)"]
    assert "4 input(s) explained" in " ".join(c.value for c in at.caption)


def test_review_page_reports_bad_inputs():
    at = run(AppTest.from_file(str(ROOT / "pages" / "review.py"), default_timeout=300))
    at.text_area(key="rv.texts").set_value("the film was good\n   \n[SEP]\nthe film was bad")
    at.multiselect(key="rv.metrics").set_value(["agreement"])
    at.button(key="rv.run").click()
    run(at)
    assert not at.exception
    assert "2 input(s) explained, 1 failed" in " ".join(c.value for c in at.caption)
    assert "no tokens besides special ones" in " ".join(m.value for m in at.markdown)


def test_tabular_what_if_values_travel_in_the_url():
    # (AppTest does not mirror widgets into query_params; a link carrying one is the check)
    shared = run(page("tabular", {"row": "13", "wf.13.worst radius": "10.0"}))
    before, after = edit_change(shared)
    assert before != after  # the link reproduces the edited row and its prediction


@pytest.mark.parametrize("arch,message", [("no_such_net", "unknown timm model"),
                                          ("resnet10t", "not reachable")])
def test_image_custom_model_errors_are_messages(arch, message):
    """A custom timm model without a checkpoint needs hub weights: offline, that is a message."""
    at = run(page("image", {"model_src": "custom", "model": arch}))
    assert not at.exception
    assert any(message in e.value for e in at.error)


# -- moving between pages ---------------------------------------------------------------------
PAGES = ("home", "text", "image", "tabular", "review")


def every_ordered_pair(nodes: tuple[str, ...]) -> list[str]:
    """A walk that goes from every page to every other page exactly once (an Eulerian circuit
    of the complete directed graph, by Hierholzer's algorithm)."""
    out = {a: [b for b in nodes if b != a] for a in nodes}
    stack, walk = [nodes[0]], []
    while stack:
        if out[stack[-1]]:
            stack.append(out[stack[-1]].pop())
        else:
            walk.append(stack.pop())
    return walk[::-1]


def test_the_walk_covers_every_ordered_pair():
    walk = every_ordered_pair(PAGES)
    pairs = list(zip(walk, walk[1:]))
    assert len(pairs) == len(set(pairs)) == len(PAGES) * (len(PAGES) - 1)


@needs_text_model
def test_every_page_after_every_other_page_explains_its_default_input():
    """Widget values never leak from one page into the next (issue: the Image page showed
    the Text page's `baselines=pad` as an error, and explained ImageNet class 0)."""
    from dashboard.views import get_view
    at = run(page("app", timeout=300))
    for name in every_ordered_pair(PAGES)[1:]:
        at.switch_page(f"../pages/{name}.py")
        run(at)
        where = f"page {name}"
        assert not at.error, (where, [e.value for e in at.error])
        if name in ("home", "review"):
            continue
        assert len(panel_stats(at)) == 3, where
        assert at.selectbox(key="target").value == -1, where  # the predicted class, not a leftover
        assert at.radio(key="scale").value == get_view(name).default_scale, where
        captions = "\n".join(c.value for c in at.caption)
        assert "baselines=" in captions and "baselines= " not in captions and not captions.endswith(
            "baselines="), where
        # leave the page with state that would be wrong elsewhere: another class, another scale
        at.selectbox(key="target").set_value(0)
        at.radio(key="scale").set_value("per panel" if get_view(name).default_scale == "shared" else "shared")
        run(at)


# -- reset ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,params", [
    ("text", {"edit": "The soup was and the service was terrible."}),
    ("image", {**FAST_IMAGE, "erase": "true"}),
    ("tabular", {"row": "13", "wf.13.worst radius": "10.0", "wf.13.worst area": "300.0"}),
])
def test_reset_restores_the_original_input(name, params):
    """After Reset the edited row is gone and the prediction is the original's, even when
    the edit came in with the link (the URL parameters are reset too)."""
    if name == "text" and not TEXT_WEIGHTS.is_file():
        pytest.skip("default text model weights not built yet")
    at = run(page(name, params))
    edit_change(at)  # the edit is applied
    metrics_before = len(at.metric)
    original = at.metric[0 if name != "tabular" else 1].value
    at.button(key="cf.reset").click()
    run(at)
    assert not any("Prediction on the edit" in m.value for m in at.markdown)
    assert len(at.metric) == metrics_before - 1  # the "Edited input" metric is gone
    assert at.metric[0 if name != "tabular" else 1].value == original
    assert len(panel_stats(at)) == 3  # no before/after rows
    assert not [k for k in at.query_params if k.startswith(("wf.", "edit", "erase"))
                and at.query_params[k] not in ("", "false")]


# -- long inputs and many methods ----------------------------------------------------------------
def test_a_long_text_pages_its_tokens_folds_its_disagreements_and_waits_for_clicks(tiny_text_dir, monkeypatch):
    """Above the thresholds (lowered here, so the tiny model's 64 positions are 'long'), the
    token pills come in pages, the per-token disagreement folds into an expander, only the
    top-k disagreements are charted, and the re-predicting metrics wait for their buttons."""
    import dashboard.compare
    import dashboard.views.text
    monkeypatch.setattr(dashboard.views.text, "LONG_TEXT", 8)
    monkeypatch.setattr(dashboard.compare, "AUTO_MAX_FEATURES", 10)
    # distinct words: AppTest picks a pill by its label
    text = "the soup was bland good bad film a great terrible movie not very i it and love hate service food"
    at = run(page("text", {"model_src": "custom", "model": str(tiny_text_dir), "text": text}))
    n = len(text.split())
    assert len(at.pills[0].options) == 8  # one page of tokens
    assert len(at.selectbox(key="cf.page").options) == -(-n // 8)
    # a selection on one page survives turning to another
    at.pills[0].set_value([0])
    run(at)
    first_edit = at.text_area(key="edit").value
    assert first_edit and first_edit != text
    at.selectbox(key="cf.page").set_value(1)
    run(at)
    at.pills[0].set_value([8])
    run(at)
    assert len(at.text_area(key="edit").value.split()) == n - 2  # both deletions kept
    assert any("over 10, only agreement runs" in c.value for c in at.caption)
    assert any("Not computed yet" in i.value for i in at.info)  # faithfulness waits for a click
    assert any(e.label.startswith("Disagreement over all") for e in at.expander)
    at.slider(key="cmp.top").set_value(5)
    run(at)
    bars = [c for c in at.get("vega_lite_chart") if "disagreement" in str(c.proto.spec)]
    assert bars and str(bars[0].proto.spec).count('"feature":') <= 6  # 5 rows (+ the encoding)


def test_many_methods_wrap_into_rows():
    from dashboard.panels import grid
    assert [len(r) for r in grid(list("abc"))] == [3]
    assert [len(r) for r in grid(list("abcde"))] == [3, 2]
    assert [len(r) for r in grid(list("abcdefg"))] == [4, 3]
    assert [len(r) for r in grid(list("abcdefghi"))] == [3, 3, 3]
    from explainers import list_methods
    at = run(page("tabular", {"row": "13"}))
    at.multiselect(key="methods").set_value(list_methods("tabular"))
    run(at)
    assert len(panel_stats(at)) == len(list_methods("tabular"))
    assert not at.error


def test_compare_gives_a_verdict_per_method_from_its_numbers():
    at = run(page("tabular", {"row": "13"}))
    verdicts = next(m.value for m in at.markdown if m.value.startswith("**On this input**"))
    table = faithfulness_table(at).set_index("method")
    for title in ("Integrated Gradients", "GradientSHAP", "Occlusion"):
        line = next(x for x in verdicts.splitlines() if x.startswith(f"- **{title}**"))
        aopc = table.loc[title, "deletion AOPC ↑"]
        assert f"deletion AOPC {aopc:.3f}" in line  # the same number the table shows
        beats = table.loc[title, "beats random"] == "yes"
        assert ("does **not** beat" in line) != beats
        assert "Spearman" in line and ("flips the prediction" in line or "no flip" in line)


def test_paused_live_updates_run_once_on_apply():
    at = run(page("tabular", {"row": "13"}))
    at.toggle(key="live").set_value(False)
    at.number_input(key="ig.n_steps").set_value(6)
    run(at)
    assert not panel_stats(at)  # nothing ran yet
    assert any("Live updates are paused" in i.value for i in at.info)
    at.number_input(key="ig.n_steps").set_value(7)
    at.number_input(key="occ.window").set_value(2)
    run(at)
    assert not panel_stats(at)  # several changes, still no run
    at.button(key="run.apply").click()
    run(at)
    assert len(panel_stats(at)) == 3
    captions = "\n".join(c.value for c in at.caption)
    assert "n_steps=7" in captions and "window=2" in captions  # both changes in the one run
    at.number_input(key="ig.n_steps").set_value(9)
    run(at)
    assert not panel_stats(at)  # a new change waits for the next apply


def test_review_uses_the_page_parameters_lists_inputs_and_opens_one_with_them():
    at = run(page("app", timeout=300))
    at.query_params["ig.n_steps"] = "7"  # a link that tunes IG on the Tabular page
    at.switch_page("../pages/tabular.py")
    run(at)
    assert "n_steps=7" in "\n".join(c.value for c in at.caption)
    at.switch_page("../pages/review.py")
    run(at)
    at.segmented_control(key="rv.modality").set_value("tabular")
    run(at)
    at.number_input(key="rv.start").set_value(38)
    at.number_input(key="rv.count").set_value(4)
    at.button(key="rv.run").click()
    run(at)
    assert any("Integrated Gradients n_steps=7" in c.value for c in at.caption)
    records = at.session_state["_review.tabular"]
    assert all(r["attributions"]["integrated_gradients"]["params"]["n_steps"] == 7 for r in records)
    assert records[0]["input"]["row"] == 38 and len(records[0]["input"]["values"]) == 30  # the row itself
    table = next(d.value for d in at.dataframe if "fewest flips" in d.value.columns)
    assert list(table["id"]) == ["38", "39", "40", "41"]
    assert {"predicted", "true label", "correct", "disagreement"} <= set(table.columns)
    assert table["correct"].notna().all()
    n_wrong = int((~table["correct"].astype(bool)).sum())  # the summary split agrees with the rows
    labels = [t.label for t in at.tabs]
    assert f"Wrong predictions ({n_wrong})" in labels and f"Correct predictions ({4 - n_wrong})" in labels
    at.selectbox(key="rv.open").set_value(2)
    at.button(key="rv.open.go").click()
    run(at)
    assert at.number_input(key="row").value == 40  # the row opened on its page ...
    assert at.number_input(key="ig.n_steps").value == 7  # ... with the review's settings
    assert len(panel_stats(at)) == 3


def test_tabular_data_table_finds_misclassified_rows_and_explains_units():
    at = run(page("tabular"))
    assert any("Scores are in **logits of the explained class" in c.value for c in at.caption)
    at.toggle(key="tab.wrong").set_value(True)
    run(at)
    table = next(d.value for d in at.dataframe if "correct" in d.value.columns)
    assert len(table) > 0 and not table["correct"].any()  # only the model's errors
    assert (table["predicted"] != table["true label"]).all()
    wrong = int(table.index[0])
    at.selectbox(key="tab.pick").set_value(wrong)
    run(at)
    assert at.number_input(key="row").value == wrong
    assert at.metric[0].value != at.metric[1].value  # true label vs the (wrong) prediction
    radius = at.number_input(key=f"wf.{wrong}.mean radius")
    assert "distances from center" in radius.help and "percentile" in radius.help


def test_image_display_options_are_stated_in_the_legend():
    at = run(page("image", FAST_IMAGE))
    legend = next(h.value for h in at.get("html") if "outliers clipped" in h.value)
    assert "98th percentile" in legend and "supports the target" in legend
    assert "speaks against it" not in legend  # the default shows the positive part only
    at.radio(key="sign").set_value("all")
    at.slider(key="clip").set_value(5.0)
    run(at)
    legend = next(h.value for h in at.get("html") if "outliers clipped" in h.value)
    assert "speaks against it" in legend and "95th percentile" in legend
    at.radio(key="display").set_value("masked")
    run(at)
    assert any("top 20% of pixels" in h.value for h in at.get("html"))
    assert len(panel_stats(at)) == 3


def test_image_sign_and_mask_renderers():
    import numpy as np

    from dashboard import render
    s = np.array([[-2.0, 1.0], [0.0, 3.0]])
    assert (render.signed_part(s, "positive") == [[0, 1], [0, 3]]).all()
    assert (render.signed_part(s, "negative") == [[-2, 0], [0, 0]]).all()
    assert (render.signed_part(s, "absolute") == [[2, 1], [0, 3]]).all()
    img = np.full((2, 2, 3), 200, np.uint8)
    out = render.masked(img, s, 25)  # keep the top quarter: the 3.0 pixel only
    assert out[1, 1, 0] == 200 and out[0, 0, 0] == 50 and out[0, 1, 0] == 50


def test_panels_estimate_before_and_say_what_it_took_after(monkeypatch):
    import dashboard.panels
    at = page("tabular", {"row": "13"})
    at.session_state["live"] = False  # paused: the estimates stand, nothing has run
    run(at)
    costs = [c.value for c in at.caption if c.value.startswith("Estimated cost")]
    assert len(costs) == 3 and all(re.search(r"estimated (under 0\.1|[\d.,]+) s", c) for c in costs)
    monkeypatch.setattr(dashboard.panels, "SLOW_SECONDS", 0.0)  # every run counts as slow now
    at = page("tabular", {"row": "14"})
    at.session_state["live"] = False
    run(at)
    assert sum("This will take about" in w.value for w in at.warning) == 3
    at = run(page("tabular", {"row": "15"}))  # live: each run replaces its estimate and warning
    took = [c.value for c in at.caption if c.value.startswith("Took ")]
    assert len(took) == 3 and all("estimated" in c or "from the store" in c for c in took)
    assert not any("This will take about" in w.value for w in at.warning)  # never stale beside a map
    assert not any(c.value.startswith("Estimated cost") for c in at.caption)


@needs_text_model
@pytest.mark.parametrize("text", ["The plot was predictable, but the acting kept me watching.",
                                  "The soup was bland and the service was terrible."])
def test_apply_flip_loads_the_scored_edit_and_its_prediction(text):
    """Apply loads exactly the edit the flip metric scored (words deleted, the text
    re-tokenised), so the edited prediction shown is the one the metric reported."""
    at = run(page("text", {"text": text}))
    assert at.selectbox(key="cmp.perturb").value == "delete"  # ERASER's removal is the default
    flip = next(v for v in at.session_state["_metrics"].values()
                if isinstance(v, dict) and "original_label" in v)
    flipped = {m: b for m, b in flip["methods"].items() if b.get("count") is not None}
    assert flipped, "no method flips this sentence"
    method, block = next(iter(flipped.items()))
    at.button(key=f"cmp.apply.{method}").click()
    run(at)
    assert at.text_area(key="edit").value == block["edited"]  # the very text that was scored
    assert at.metric[1].value == block["new_label"] != at.metric[0].value  # and its prediction



@needs_text_model
def test_text_the_model_cannot_read_is_flagged_at_the_prediction_and_in_every_verdict():
    at = run(page("text", {"text": "这家餐厅的服务太差了,等了两个小时都没上菜"}))
    warned = [w.value for w in at.warning if "The model cannot read this text" in w.value]
    assert len(warned) == 2  # under the prediction, and above the verdicts
    assert "this model does not read this script" in warned[0] and "more than 20%" in warned[0]
    n = re.search(r"(\d+) of (\d+) tokens are \\\[UNK\\\]", warned[0])
    assert n and int(n.group(1)) > 0.2 * int(n.group(2))
    verdicts = next(m.value for m in at.markdown if m.value.startswith("**On this input**")).splitlines()[1:]
    assert len(verdicts) == 3 and all("on placeholders" in v for v in verdicts)
    assert len(panel_stats(at)) == 3  # still explained, with the warning beside it
    from dashboard import export
    from explainers import load_model
    adapter = load_model("text")
    enc = adapter.encode("这家餐厅的服务太差了,等了两个小时都没上菜")
    from dashboard.types import Input
    review = json.loads(export.review_json(adapter, Input(enc, adapter.predict(enc)), 0, [], {}, {}, "x"))
    assert any("does not read this script" in w for w in review["warnings"])
