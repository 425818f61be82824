"""A review report in a real browser: Debian chromium opens the file offline, requests nothing
but the file itself, shows the summary's numbers, and keeps its colours when printed; a
notebook cell's HTML does the same. (The README's pictures of both come from the default
models: ``python -m bench.report_screenshots``.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from explainers import explain
from explainers.review import InputSource, run_review
from explainers.review.summary import COLUMNS

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
    pytest.mark.e2e,
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_report_opens_offline_with_the_summary_numbers(browser, tiny_tabular, tmp_path):
    rows = tiny_tabular.data.iloc[:8].copy()
    rows["label"] = ["no", "yes"] * 4
    rows.to_csv(tmp_path / "rows.csv", index=False)
    summary = run_review(tiny_tabular, InputSource("tabular", str(tmp_path / "rows.csv")).check(),
                         methods=["saliency", "feature_ablation"], metrics=["agreement", "faithfulness", "flip"],
                         out=tmp_path / "r.jsonl", report=tmp_path / "r.html", use_cache=False)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    url = (tmp_path / "r.html").as_uri()
    page.goto(url)
    page.wait_for_load_state("load")
    assert [r for r in requests if not r.startswith("data:")] == [url]  # the file, and nothing else
    assert page.title() == f"Review of {tiny_tabular.name}"
    for method, vals in summary["methods"].items():
        row = page.locator(f"table[data-table='all'] tr[data-method='{method}']")
        for key, _, fmt in COLUMNS:
            shown = row.locator(f"td[data-key='{key}']").inner_text()
            assert shown == ("-" if vals[key] is None else fmt.format(vals[key]))
    data = json.loads(page.locator("#review-data").text_content())
    assert data["summary"] == json.loads(json.dumps(summary))
    assert page.locator(".input").count() > 0 and page.locator(".input img").count() == 0  # bars, no pictures
    page.emulate_media(media="print")
    adjust = page.evaluate("getComputedStyle(document.querySelector('.input span')).printColorAdjust")
    assert adjust == "exact"  # the highlights and bars keep their colours on paper
    pdf = page.pdf(format="A4")
    assert pdf[:4] == b"%PDF" and len(pdf) > 10_000
    page.close()


def test_notebook_cell_renders(browser, tiny_text, tmp_path):
    r = explain(tiny_text, "the soup was bland and the service was terrible !",
                methods=["integrated_gradients", "gradient_shap", "occlusion"],
                metrics=["agreement", "faithfulness", "flip"], use_cache=False)
    cell = tmp_path / "cell.html"
    cell.write_text("<!doctype html><meta charset='utf-8'><body style='margin:12px;width:1000px'>"
                    f"<pre style='color:#555'>r = explain(m, text, metrics=[...]); r</pre>{r._repr_html_()}",
                    encoding="utf-8")
    page = browser.new_page(viewport={"width": 1040, "height": 600})
    requests: list[str] = []
    page.on("request", lambda q: requests.append(q.url))
    page.goto(cell.as_uri())
    assert [q for q in requests if not q.startswith("data:")] == [cell.as_uri()]
    assert page.locator("span.tok").count() == 3 * len(r.to_dict()["features"])
    page.close()
