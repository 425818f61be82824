"""The README's pictures of a review report and of a notebook cell, from the default text model.

    python -m bench.report_screenshots [--file ../shared/data/sst2/dev.tsv] [--limit 20] [--out docs/screenshots]

Reviews the first ``--limit`` sentences with the review's defaults and ``--report``, and
explains one sentence as a notebook cell shows it; both HTML files are drawn by Debian's
chromium (Playwright, as tests/e2e does), which must load nothing but the file.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SENTENCE = "The soup was bland, but the service was wonderful."


def screenshot(html_file: Path, png: Path, width: int, height: int | None = None) -> None:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": width, "height": height or 300}, device_scale_factor=1)
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(html_file.as_uri())
        page.wait_for_load_state("load")
        assert [r for r in requests if not r.startswith("data:")] == [html_file.as_uri()], requests
        if height:
            page.screenshot(path=str(png), clip={"x": 0, "y": 0, "width": width, "height": height})
        else:
            page.screenshot(path=str(png), full_page=True)
        browser.close()


def notebook_cell(model, path: Path) -> None:
    from explainers import explain
    r = explain(model, SENTENCE, metrics=["agreement", "faithfulness", "flip"])
    prompt = "font:13px monospace;color:#303f9f;padding:4px 8px"
    code = ("r = explain(m, \"The soup was bland, but the service was wonderful.\",\n"
            "            metrics=[\"agreement\", \"faithfulness\", \"flip\"])\nr")
    path.write_text(
        "<!doctype html><meta charset='utf-8'><body style='margin:0;background:#fff'>"
        "<div style='display:flex;margin:14px 14px 4px'><div style='" + prompt + "'>[3]:</div>"
        "<pre style='flex:1;margin:0;background:#f5f5f5;border:1px solid #e0e0e0;padding:6px 8px;font-size:13px'>"
        + code + "</pre></div><div style='display:flex;margin:0 14px 14px'><div style='" + prompt
        + ";color:#d84315'>[3]:</div><div style='flex:1;padding:4px 8px'>" + r._repr_html_() + "</div></div>",
        encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", default=str(ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"))
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()
    from explainers import load_model
    from explainers.review import InputSource, run_review
    out = Path(args.out)
    model = load_model("text")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cell = tmp / "cell.html"
        notebook_cell(model, cell)
        screenshot(cell, out / "notebook.png", 1100)
        run_review(model, InputSource("text", args.file).check(), metrics=["agreement", "faithfulness", "flip"],
                   limit=args.limit, out=tmp / "r.jsonl", report=tmp / "report.html")
        screenshot(tmp / "report.html", out / "report.png", 1240, 2000)
    print(f"wrote {out / 'notebook.png'} and {out / 'report.png'}")


if __name__ == "__main__":
    main()
