"""A review's report, TensorBoard log and MLflow run hold the summary's numbers, and the
report draws the inputs it says it draws."""

from __future__ import annotations

import html
import importlib.util
import json
import re

import numpy as np
import pytest

from explainers.errors import ExplainerError
from explainers.review import InputSource, ReviewSummary, run_review
from explainers.review.report import VERDICT_COLUMNS
from explainers.review.summary import COLUMNS
from explainers.review.trackers import EXPERIMENT, check_publish, figures

METHODS = ["saliency", "feature_ablation", "integrated_gradients"]
METRICS = ["agreement", "faithfulness", "flip"]
HAVE_TB = importlib.util.find_spec("tensorboard") is not None
HAVE_MLFLOW = importlib.util.find_spec("mlflow") is not None


@pytest.fixture(scope="module")
def reviewed(tiny_tabular, tmp_path_factory):
    """One labelled review of a CSV of rows with every output asked for (those whose packages
    are here): the tiny MLP's methods disagree, flip and get some rows wrong."""
    d = tmp_path_factory.mktemp("review")
    rows = tiny_tabular.data.iloc[:12].copy()
    rows["label"] = ["no", "yes"] * 6
    rows.to_csv(d / "rows.csv", index=False)
    outputs = {"report": d / "r.html", "tensorboard": d / "tb" if HAVE_TB else None,
               "mlflow": "" if HAVE_MLFLOW else None}
    summary = run_review(tiny_tabular, InputSource("tabular", str(d / "rows.csv")).check(), methods=METHODS,
                         metrics=METRICS, params={"integrated_gradients": {"n_steps": 8}}, out=d / "r.jsonl",
                         use_cache=False, **outputs)
    lines = [json.loads(x) for x in (d / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    return d, summary, lines


def cells(page: str, table: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(method, column) -> (data-value, text shown) of one summary table of the report."""
    body = re.search(rf"<table class='summary[^']*' data-table='{table}'>(.*?)</table>", page, re.S).group(1)
    out = {}
    for method, row in re.findall(r"<tr data-method='([^']*)'>(.*?)</tr>", body, re.S):
        for key, value, shown in re.findall(r"data-key='([^']*)' data-value='([^']*)'>([^<]*)</td>", row):
            out[(html.unescape(method), key)] = (html.unescape(value), html.unescape(shown))
    return out


def test_the_report_tables_hold_the_summary_numbers(reviewed):
    d, summary, _ = reviewed
    assert isinstance(summary, ReviewSummary) and summary["labelled"] == 12
    page = (d / "r.html").read_text(encoding="utf-8")
    for name, part in [("all", summary)] + [(k, v) for k, v in summary["outcomes"].items() if v["inputs"]]:
        found = cells(page, name)
        rows = {**part["methods"], "(random control)": part["random"]}
        assert {m for m, _ in found} == set(rows)
        for m, vals in rows.items():
            for key, _, fmt in COLUMNS:
                value, shown = found[(m, key)]
                assert json.loads(value) == vals.get(key)  # the exact number, as in the summary JSON
                assert shown == ("-" if vals.get(key) is None else fmt.format(vals[key]))
        tests = part["dataset"]["methods"]
        found = cells(page, f"verdict-{name}")
        assert {m for m, _ in found} == set(tests) and tests
        for m, test in tests.items():
            for key, _, _ in VERDICT_COLUMNS:
                assert json.loads(found[(m, key)][0]) == test[key]  # the dataset-level verdict, exactly
    embedded = re.search(r"<script type='application/json' id='review-data'>(.*?)</script>", page, re.S).group(1)
    data = json.loads(embedded)
    assert data["summary"] == json.loads(json.dumps(summary))
    assert f"{summary['accuracy']:.1%} on {summary['labelled']} labelled" in page


def test_the_report_names_the_model_data_and_settings(reviewed, tiny_tabular):
    d, _, lines = reviewed
    page = (d / "r.html").read_text(encoding="utf-8")
    assert tiny_tabular.fingerprint in page and "softmax" in page and "rows.csv" in page
    assert "n_steps = 8" in page  # the resolved parameters, as the lines record them
    assert lines[0]["attributions"]["integrated_gradients"]["params"]["n_steps"] == 8
    assert "metrics.seed = 0" in page and "torch" in page


def test_the_report_loads_nothing(reviewed):
    d, _, _ = reviewed
    page = (d / "r.html").read_text(encoding="utf-8")
    refs = re.findall(r"(?:src|href)\s*=\s*['\"]([^'\"]*)", page)
    assert all(r.startswith("data:") for r in refs)
    assert "<link" not in page and "@import" not in page and "url(" not in page
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts == [" type='application/json' id='review-data'"]  # data, never run
    assert "@media print" in page and "print-color-adjust:exact" in page


def test_the_report_escapes_what_the_inputs_say(tiny_text, tmp_path):
    rows = [(0, "<script>alert(1)</script> the soup", "negative"), (1, "<b>bold</b> film", "positive")]
    run_review(tiny_text, rows, methods=["occlusion"], metrics=["agreement"], out=tmp_path / "r.jsonl",
               report=tmp_path / "r.html", use_cache=False)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    body = page.split("id='review-data'>")[0]
    assert "<script>alert" not in body and "<b>bold" not in body
    assert "&lt;" in body and "bold" in body  # drawn, as text


def _ids(page: str, kind: str) -> list:
    return [json.loads(html.unescape(v)) for v in re.findall(rf"<div class='input' data-kind='{kind}' data-id='([^']*)'", page)]


def test_the_report_draws_the_inputs_it_names(reviewed):
    d, _, lines = reviewed
    page = (d / "r.html").read_text(encoding="utf-8")
    ok = [r for r in lines if "error" not in r]

    def disagreement(r):  # 1 - the mean of the upper triangle of the Spearman matrix
        rho = np.asarray(r["metrics"]["agreement"]["spearman"], dtype=float)
        return 1 - rho[np.triu_indices(len(rho), 1)].mean()

    most = sorted(ok, key=lambda r: -disagreement(r))[:3]
    assert _ids(page, "disagreement") == [r["id"] for r in most]
    wrong = [r for r in ok if r["correct"] is False]
    wrong.sort(key=lambda r: -r["prediction"]["probabilities"][r["prediction"]["index"]])
    assert _ids(page, "wrong") == [r["id"] for r in wrong[:3]]
    assert wrong, "the tiny model gets some of these wrong"
    assert len({round(disagreement(r), 6) for r in ok}) > 3  # the ranking has something to rank
    flips = []  # (the fewest removals any method needs, position in the file, id); ties: the earlier
    for position, r in enumerate(ok):
        counts = [b["count"] for b in r["metrics"]["flip"]["methods"].values() if b["count"] is not None]
        if counts:
            flips.append((min(counts), position, r["id"]))
    assert len(flips) > 3 and _ids(page, "fewest_flips") == [i for *_, i in sorted(flips)[:3]]


def test_outputs_need_the_lines_file_and_their_packages(monkeypatch, tiny_text, tmp_path):
    with pytest.raises(ExplainerError, match="give --out"):
        run_review(tiny_text, [(0, "the soup")], report="r.html")
    with pytest.raises(ExplainerError, match="--report: folder .* does not exist"):
        run_review(tiny_text, [(0, "the soup")], out=tmp_path / "r.jsonl", report=tmp_path / "no" / "r.html")
    assert not (tmp_path / "r.jsonl").exists()  # refused before the run
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ExplainerError, match=r"--tensorboard needs the tensorboard package: pip install"):
        check_publish("r.jsonl", None, "tb", None)
    with pytest.raises(ExplainerError, match=r"--mlflow needs the mlflow package"):
        check_publish("r.jsonl", None, None, "")
    check_publish("r.jsonl", "r.html", None, None)  # the report needs nothing more


def test_the_cli_refuses_a_report_without_out(capsys, tiny_text_dir, tmp_path):
    from explainers.cli import main
    f = tmp_path / "t.tsv"
    f.write_text("text\nthe soup\n", encoding="utf-8")
    code = main(["review", "--modality", "text", "--model", str(tiny_text_dir), "--file", str(f), "--report",
                 str(tmp_path / "r.html")])
    assert code == 2
    assert "give --out FILE" in capsys.readouterr().err


@pytest.mark.skipif(not HAVE_TB, reason="tensorboard is not installed (the 'tracking' extra)")
def test_tensorboard_holds_the_summary_scalars_table_and_inputs(reviewed):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    d, summary, _ = reviewed
    acc = EventAccumulator(str(d / "tb"), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    expected = figures(summary)
    for m in METHODS:
        for key in ("deletion_aopc", "dataset_beats_random", "dataset_p_value", "agreement", "seconds"):
            assert f"{m}/{key}" in expected
    assert set(tags["scalars"]) == set(expected)
    for tag, value in expected.items():
        (event,) = acc.Scalars(tag)
        assert event.step == summary["inputs"]
        assert event.value == pytest.approx(value, rel=1e-6, abs=1e-12)  # stored as float32
    assert expected["integrated_gradients/deletion_aopc"] == summary["methods"]["integrated_gradients"]["deletion_aopc"]
    text = acc.Tensors("summary/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "integrated_gradients" in text and "del. AOPC" in text
    page = (d / "r.html").read_text(encoding="utf-8")
    drawn = len(re.findall(r"<div class='input' data-kind=", page))
    images = [t for t in tags["images"] if t.startswith("inputs/")]
    assert len(images) == drawn > 0
    img = acc.Images(images[0])[0]
    assert img.width > 0 and img.height > 0


@pytest.mark.skipif(not HAVE_MLFLOW, reason="mlflow is not installed (the 'tracking' extra)")
def test_mlflow_run_holds_params_metrics_tag_and_artifacts(reviewed, tiny_tabular, monkeypatch):
    import mlflow
    d, summary, _ = reviewed
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    store = (d / "mlruns").as_uri()  # the default: a file store next to the JSON lines
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    (run,) = mlflow.search_runs(experiment_names=[EXPERIMENT], output_format="list")
    client = mlflow.MlflowClient(tracking_uri=store)
    assert run.data.tags["model.fingerprint"] == tiny_tabular.fingerprint
    assert run.data.metrics == pytest.approx(figures(summary))
    assert run.data.params["integrated_gradients.n_steps"] == "8"
    assert run.data.params["methods"] == ",".join(METHODS)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"r.html", "r.jsonl", "summary.json"} <= names
    logged = json.loads(open(client.download_artifacts(run.info.run_id, "summary.json", str(d / "dl"))).read())
    assert logged["summary"] == json.loads(json.dumps(summary))


def test_an_image_review_report_draws_the_maps_over_the_pictures(tiny_image, tmp_path):
    from PIL import Image

    from explainers.review.report import picture, read_lines
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / name)
    run_review(tiny_image, InputSource("image", str(folder)).check(), methods=["input_x_gradient", "saliency"],
               metrics=["agreement"], out=tmp_path / "r.jsonl", report=tmp_path / "r.html", use_cache=False)
    lines = list(read_lines(tmp_path / "r.jsonl"))
    expected = np.asarray(Image.open(folder / "a.png").convert("RGB").resize((32, 32), Image.BILINEAR))
    assert np.array_equal(picture(lines[0]), expected)  # read again, at model resolution
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("src='data:image/png;base64,") == 2 * 2  # both inputs (disagreement), two maps each
    (folder / "a.png").unlink()
    assert picture(lines[0]) is None  # gone: the maps are drawn over grey instead


def test_a_review_summary_shows_its_tables_in_a_notebook(reviewed):
    d, summary, _ = reviewed
    cell = summary._repr_html_()
    page = (d / "r.html").read_text(encoding="utf-8")
    assert cells(cell, "all") == cells(page, "all") and cells(cell, "wrong") == cells(page, "wrong")


@pytest.mark.ray
def test_a_ray_review_report_names_the_model_the_workers_loaded(tiny_text_dir, tmp_path):
    pytest.importorskip("ray")
    from explainers.review import ModelSpec
    spec = ModelSpec(str(tiny_text_dir), "text")
    run_review(spec, [(0, "the soup was bland"), (1, "a great film !")], methods=["occlusion"],
               metrics=["agreement"], out=tmp_path / "r.jsonl", report=tmp_path / "r.html", engine="ray",
               workers=1, use_cache=False)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert spec.load().fingerprint in page  # the workers' model: the driver never loaded one


def test_the_report_shows_every_slice_and_the_global_view(reviewed):
    d, summary, lines = reviewed
    page = (d / "r.html").read_text(encoding="utf-8")
    assert set(summary["slices"]) == {"true_label", "predicted"}  # a table has no length
    for slicing, parts in summary["slices"].items():
        for part in parts:
            found = cells(page, html.escape(f"{slicing}={part['value']}"))
            for m, vals in part["methods"].items():
                for key, _, _ in COLUMNS:
                    assert json.loads(found[(m, key)][0]) == vals[key]
    # the slices split the labelled inputs: each label's slice holds the lines with that label
    truth = {p["value"]: p["inputs"] for p in summary["slices"]["true_label"]}
    assert truth == {v: sum(r["true_label"] == v for r in lines) for v in ("no", "yes")}
    view = summary["global"]
    assert [r["feature"] for r in view["features"]][:1] and len(view["features"]) == 6
    for r in view["features"]:  # the table's values are the view's, which are the lines' means
        for m in METHODS:
            shown = re.search(rf"<tr data-feature='{r['feature']}'>.*?data-method='{m}' data-value='([^']*)'",
                              page, re.S).group(1)
            assert json.loads(html.unescape(shown)) == r["methods"][m]
            col = lines[0]["features"].index(r["feature"])
            direct = [x["attributions"][m]["scores"][col] for x in lines]
            assert r["methods"][m]["mean"] == pytest.approx(np.mean(direct))
            assert r["methods"][m]["mean_abs"] == pytest.approx(np.mean(np.abs(direct)))
    assert page.count("beeswarm' src='data:image/png;base64,") == len(METHODS)
