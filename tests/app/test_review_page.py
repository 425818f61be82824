"""The Review page against the CLI's review (issue 21, items 3, 5 and 6): the page reads an
uploaded file with the CLI's reader and gives ``run_review``'s summary on it, its report
download is ``review --report``'s document with the page's summary, its slice and global
tables are :class:`explainers.review.slices.Views`' numbers, and "Open" carries the
parameters each method ran with."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.test_pages import ROOT, needs_text_model, page, panel_stats, run

#: a labelled TSV as GLUE writes it; "maybe" is none of the model's classes (an error line)
TSV = ("sentence\tlabel\n"
       "the film was a delight from start to finish\t1\n"
       "the film was dull , lifeless and far too long\t0\n"
       "i hated every minute of the film\tpositive\n"
       "this is not the worst film ever\tmaybe\n"
       "the film was warm , funny and beautifully acted\t1\n")
METHODS = ["integrated_gradients", "occlusion"]
#: the page's default metrics
METRICS = ["agreement", "faithfulness", "flip"]
#: per-method figures compared; "seconds" is the wall time of each run, not a property of the data
FIGURES = ("deletion_aopc", "flip_count", "flipped_share", "agreement", "beats_random_share", "effect_size", "n")


def review_page(tsv: str) -> AppTest:
    at = run(AppTest.from_file(str(ROOT / "pages" / "review.py"), default_timeout=600))
    at.file_uploader(key="rv.file").upload("reviews.tsv", tsv.encode(), "text/tab-separated-values")
    run(at)
    at.multiselect(key="rv.methods").set_value(METHODS)
    at.button(key="rv.run").click()
    return run(at)


def close(a, b) -> bool:
    # both sides run the same float32 forwards; pooling inputs in other micro-batches (the page
    # 16, the CLI 8) may change the last bits of a logit (~eps 1.2e-7 x logits of order 10)
    if a is None or b is None:
        return a is b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):  # an undefined figure (a CI over one input) on both sides
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5)
    return a == b


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """The page's review of :data:`TSV`, the files its downloads served (by MIME type), and
    ``run_review``'s summary and lines of the same file."""
    if not (ROOT / "cache" / "weights" / "sst2_minilm.safetensors").is_file():
        pytest.skip("default text model weights not built yet")
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
    from explainers import load_model
    from explainers.review import InputSource, run_review
    folder = tmp_path_factory.mktemp("review_page")
    path = folder / "reviews.tsv"
    path.write_text(TSV, encoding="utf-8")
    with open(folder / "log.txt", "w") as log:
        cli = run_review(load_model("text", "text"), InputSource("text", str(path)), methods=METHODS,
                         metrics=METRICS, out=folder / "cli.jsonl", log=log)
    served: dict[str, bytes] = {}
    keep = MemoryMediaFileStorage.load_and_get_id

    def record(self, data, mimetype, kind, filename=None):  # what a download button hands the browser
        served[mimetype] = data if isinstance(data, bytes) else Path(data).read_bytes()
        return keep(self, data, mimetype, kind, filename)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
        at = review_page(TSV)
    lines = [json.loads(x) for x in (folder / "cli.jsonl").read_text().splitlines()]
    return at, served, cli, lines


@needs_text_model
def test_the_page_reads_a_labelled_file_as_the_cli_and_gives_its_summary(reviewed):
    from dashboard.review_views import review_summary
    at, _, cli, lines = reviewed
    records = at.session_state["_review.text"]
    # the CLI's reader: the header is no input, labels are kept and mapped, "maybe" is an error line
    assert [r.get("true_label") for r in records] == [r.get("true_label") for r in lines]
    assert [r.get("true_label") for r in records] == ["positive", "negative", "positive", None, "positive"]
    assert [r.get("correct") for r in records] == [r.get("correct") for r in lines]
    assert "error" in records[3] and records[3]["error"] == lines[3]["error"]
    assert "reviews.tsv, line 5" in records[3]["error"] and "maybe" in records[3]["error"]
    page_summary = review_summary(records)
    assert (page_summary["inputs"], page_summary["errors"], page_summary["labelled"]) == (4, 1, 4)
    assert page_summary["accuracy"] == cli["accuracy"]
    for part in [page_summary, *page_summary["outcomes"].values()]:
        other = cli if part is page_summary else cli["outcomes"][next(k for k, v in page_summary["outcomes"].items()
                                                                      if v is part)]
        assert part["inputs"] == other["inputs"]
        for m in METHODS:
            for k in FIGURES:
                assert close(part["methods"][m][k], other["methods"][m][k]), (m, k)
        assert close(part["random"]["deletion_aopc"], other["random"]["deletion_aopc"])
        assert close(part["dataset"], other["dataset"])
    # and the page shows these numbers: its table is the summary's
    table = next(d.value for d in at.dataframe if "del. AOPC" in d.value.columns).set_index("method")
    for m in METHODS:
        assert close(float(table.loc[m, "del. AOPC"]), cli["methods"][m]["deletion_aopc"])
    captions = " ".join(c.value for c in at.caption)
    assert f"Accuracy {cli['accuracy']:.1%} on 4 labelled input(s)" in captions
    assert "labels from column 'label'" in captions  # the reader says what it read
    assert "4 input(s) explained, 1 failed" in captions


@needs_text_model
def test_the_report_button_holds_the_pages_summary(reviewed):
    from dashboard.review_views import review_summary
    at, served, _, _ = reviewed
    assert any(b.proto.label == "Download report" for b in at.get("download_button"))
    doc = served["text/html"].decode("utf-8")
    data = re.search(r"<script type='application/json' id='review-data'>(.*?)</script>", doc, re.S).group(1)
    embedded = json.loads(data.replace("<\\/", "</"))
    page_summary = json.loads(json.dumps(review_summary(at.session_state["_review.text"]), default=str))
    assert embedded["summary"] == page_summary
    card = embedded["card"]
    assert card["model"]["name"] and card["model"]["fingerprint"]
    assert card["data"]["file"].endswith("reviews.tsv") and "labels from column 'label'" in card["data"]["read"]
    assert card["settings"]["methods"] == METHODS and card["settings"]["metrics"] == METRICS
    body = doc.split("id='review-data'")[0]
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", body)  # loads nothing remote
    assert "<h2>Slices</h2>" in doc and "Global view" in doc


@needs_text_model
def test_the_slice_and_global_tables_are_the_views_numbers(reviewed):
    from explainers.review.slices import Views, slicing_title
    at, _, _, _ = reviewed
    records = at.session_state["_review.text"]
    views = Views().feed(records).result()
    picker = at.selectbox(key="rv.slicing")
    assert list(picker.options) == [slicing_title(s) for s in views["slices"]]
    for slicing in list(views["slices"]):
        picker.set_value(slicing)
        run(at)
        picker = at.selectbox(key="rv.slicing")
        shown = next(d.value for d in at.dataframe if "slice" in d.value.columns)
        expected = [(p["value"], m, p["inputs"], vals["deletion_aopc"], vals["flipped_share"])
                    for p in views["slices"][slicing] for m, vals in p["methods"].items()]
        got = shown[["slice", "method", "inputs", "del. AOPC", "flipped"]].itertuples(index=False)
        assert [tuple(r) for r in got] == expected, slicing
    view = views["global"]
    assert view["features"], "the file's words 'the' and 'film' are in every input"
    table = next(d.value for d in at.dataframe if "rank" in d.value.columns)
    assert list(table["feature"]) == [r["feature"] for r in view["features"]]
    assert list(table["inputs"]) == [r["inputs"] for r in view["features"]]
    for m in METHODS:
        assert list(table[f"{m} mean |attr|"]) == [r["methods"][m]["mean_abs"] for r in view["features"]]
        assert list(table[f"{m} mean"]) == [r["methods"][m]["mean"] for r in view["features"]]


def test_open_carries_the_parameters_each_method_ran_with(tiny_text):
    from dashboard.review import _params_query
    ran = {"id": 0, "attributions": {
        "integrated_gradients": {"params": {"n_steps": "auto", "rtol": 0.01, "baselines": ["pad"]}},
        "occlusion": {"params": {"window": 2, "stride": 1}}}}
    query = _params_query(tiny_text, ran)
    assert query["methods"] == ["Integrated Gradients", "Occlusion"]  # the picker's URL values
    assert query["ig.n_steps.auto"] == "true" and "ig.n_steps" not in query  # an adaptive IG opens as auto
    assert query["occ.window"] == "2"
    ran["attributions"]["integrated_gradients"]["params"]["n_steps"] = 7
    assert _params_query(tiny_text, ran)["ig.n_steps"] == "7"


@needs_text_model
def test_open_opens_the_input_with_the_reviews_methods_and_parameters():
    from dashboard.state import param_key
    from explainers import get_method, load_model
    at = run(page("app", timeout=600))  # switching pages needs the app's navigation
    at.switch_page("../pages/review.py")
    run(at)
    at.file_uploader(key="rv.file").upload("reviews.tsv", TSV.encode(), "text/tab-separated-values")
    run(at)
    at.multiselect(key="rv.methods").set_value(METHODS)
    at.multiselect(key="rv.metrics").set_value(["agreement"])
    at.button(key="rv.run").click()
    run(at)
    record = at.session_state["_review.text"][2]
    at.selectbox(key="rv.open").set_value(2)
    at.button(key="rv.open.go").click()
    run(at)
    assert at.text_area(key="text").value == record["input"]
    assert at.multiselect(key="methods").value == METHODS
    adapter = load_model("text", "text")
    checked = 0
    for m in METHODS:
        for spec in get_method(m).param_specs(adapter):
            v = record["attributions"][m]["params"].get(spec.name)
            if spec.type in ("int", "float") and v not in (None, "auto"):
                assert at.number_input(key=param_key(m, spec.name)).value == v, (m, spec.name)
                checked += 1
    assert checked >= 2 and len(panel_stats(at)) == len(METHODS)


def test_tabular_review_draws_the_global_view_and_reviews_the_diabetes_model():
    from explainers.review.slices import Views
    at = run(AppTest.from_file(str(ROOT / "pages" / "review.py"), default_timeout=600))
    at.segmented_control(key="rv.modality").set_value("tabular")
    run(at)
    at.number_input(key="rv.count").set_value(6)
    at.multiselect(key="rv.metrics").set_value(["agreement"])
    at.button(key="rv.run").click()
    run(at)
    view = Views().feed(at.session_state["_review.tabular"]).result()["global"]
    table = next(d.value for d in at.dataframe if "rank" in d.value.columns)
    assert list(table["feature"]) == [r["feature"] for r in view["features"]]
    for m in view["points"]["methods"]:
        assert list(table[f"{m} mean |attr|"]) == [r["methods"][m]["mean_abs"] for r in view["features"]]
    chart = at.get("vega_lite_chart")
    assert len(chart) == 1 and "yOffset" in chart[0].proto.spec  # the beeswarm
    # the sidebar's model picker is the Tabular page's: the diabetes regression reviews too
    at.selectbox(key="tab.model").set_value(next(o for o in at.selectbox(key="tab.model").options
                                                 if "iabetes" in o))
    run(at)
    at.button(key="rv.run").click()
    run(at)
    records = at.session_state["_review.tabular"]
    assert len(records) == 6 and all(r["prediction"]["output_kind"] == "score" for r in records)


@needs_text_model
def test_the_page_slices_by_a_file_column_as_review_slice_by_does(tmp_path):
    """The file's other columns are offered as --slice-by is, and the page's slices by one
    are run_review's on the same file."""
    from explainers import load_model
    from explainers.review import InputSource, run_review
    from explainers.review.slices import slicing_title
    tsv = ("sentence\tlabel\tsource\n"
           "the film was a delight from start to finish\t1\tweb\n"
           "the film was dull , lifeless and far too long\t0\tprint\n"
           "i hated every minute of the film\t0\tweb\n"
           "the film was warm , funny and beautifully acted\t1\tprint\n")
    at = run(AppTest.from_file(str(ROOT / "pages" / "review.py"), default_timeout=600))
    at.file_uploader(key="rv.file").upload("sliced.tsv", tsv.encode(), "text/tab-separated-values")
    run(at)
    assert list(at.multiselect(key="rv.slice_by").options) == ["source"]  # not the text or the labels
    at.multiselect(key="rv.slice_by").set_value(["source"])
    at.multiselect(key="rv.methods").set_value(METHODS)
    at.button(key="rv.run").click()
    run(at)
    records = at.session_state["_review.text"]
    assert [r["columns"] for r in records] == [{"source": v} for v in ("web", "print", "web", "print")]
    path = tmp_path / "sliced.tsv"
    path.write_text(tsv, encoding="utf-8")
    with open(tmp_path / "log.txt", "w") as log:
        cli = run_review(load_model("text", "text"), InputSource("text", str(path), slice_by=["source"]),
                         methods=METHODS, metrics=METRICS, out=tmp_path / "cli.jsonl", log=log)
    picker = at.selectbox(key="rv.slicing")
    assert slicing_title("column:source") in picker.options
    picker.set_value("column:source")
    run(at)
    shown = next(d.value for d in at.dataframe if "slice" in d.value.columns)
    expected = [(p["value"], m, p["inputs"]) for p in cli["slices"]["column:source"] for m in p["methods"]]
    assert [tuple(r) for r in shown[["slice", "method", "inputs"]].itertuples(index=False)] == expected
    for p in cli["slices"]["column:source"]:
        row = shown[(shown["slice"] == p["value"]) & (shown["method"] == METHODS[0])].iloc[0]
        assert close(float(row["del. AOPC"]), p["methods"][METHODS[0]]["deletion_aopc"])
