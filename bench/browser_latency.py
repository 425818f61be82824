"""Time from submit to what a person sees, in a real browser (Debian Chromium + Playwright).

    python -m bench.browser_latency [--root DIR] [--before DIR] [--repeats 3]

Starts ``streamlit run dashboard/app.py`` from ``--root`` (default: this checkout) on a free
loopback port, warms the models up, then:

* text: types a new short sentence, presses Ctrl+Enter, and records the seconds until the
  first panel and all three panels show the new sentence's tokens, and until the page stops
  running (whole page: metrics included);
* image: picks another gallery image and records the seconds until the first and the third
  new map image arrive (the edit preview is new too; a preview map counts), until every map
  is at its full settings (no "Preview" caption left), and until the page stops running.

With ``--before DIR`` (an older worktree) a second server runs from there, and the rounds
alternate between the two (before, after, before, ...), so both arms see the same machine
load; the figures are printed per arm.

A benchmark, never a test: the figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: (sentence, a word of it no earlier sentence has: its highlight marks the new maps)
SENTENCES = [("A wonderfully acted elephant story.", "elephant"), ("A dull garden of a film.", "garden"),
             ("The penguin scenes are charming.", "penguin"), ("Tedious dolphin drama.", "dolphin"),
             ("An inventive tiger comedy.", "tiger")]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _running(page) -> bool:
    """Streamlit marks the previous run's elements stale (``data-stale="true"``) until the
    run ends; its own status widget is hidden by the minimal toolbar."""
    return (page.locator('[data-testid="stStatusWidget"]').count() > 0
            or page.locator('[data-stale="true"]').count() > 0)


def _until(cond, timeout: float = 300.0, step: float = 0.05) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if cond():
            return time.perf_counter() - start
        time.sleep(step)
    raise TimeoutError("condition not met")


def _settled(page, t0: float, quiet: float = 1.0) -> float:
    """Seconds from ``t0`` to the moment the app stopped running for good (``quiet`` s)."""
    last_busy = time.perf_counter()
    while time.perf_counter() - last_busy < quiet:
        if _running(page):
            last_busy = time.perf_counter()
        time.sleep(0.05)
    return last_busy - t0


def text_round(page, sentence: str, word: str) -> tuple[float, float, float]:
    """Seconds to the first map, to all three maps, and to the settled page."""
    box = page.locator("textarea").first
    box.fill(sentence)
    t0 = time.perf_counter()
    box.press("Control+Enter")
    spans = page.locator("span.tok", has_text=word)
    first = _until(lambda: spans.count() >= 1)
    every = _until(lambda: spans.count() >= 3) + first
    return first, every, _settled(page, t0)


def _panel_images(page) -> set[str]:
    return set(page.locator('[data-testid="stImage"] img').evaluate_all("els => els.map(e => e.src)"))


def _previews(page) -> int:
    return page.locator('[data-testid="stCaptionContainer"]', has_text="Preview with").count()


def image_round(page, name: str) -> tuple[float, float, float, float]:
    """Seconds to the first new map, to three new maps (previews count), to every map at its
    full settings, and to the settled page."""
    before = _panel_images(page)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Sample image").click()
    t0 = time.perf_counter()
    page.get_by_role("option", name=name, exact=True).click()
    first = _until(lambda: len(_panel_images(page) - before) >= 2)  # the input preview + one map
    every = _until(lambda: len(_panel_images(page) - before) >= 4) + first
    full = _until(lambda: _previews(page) == 0 and len(_panel_images(page) - before) >= 4) + every
    return first, every, full, _settled(page, t0)


def _serve(root: Path):
    port = _port()
    cache = tempfile.mkdtemp(prefix="latency-cache-")
    env = {**os.environ, "ATTRIBUTION_STUDIO_CACHE": cache, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port",
                             str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def _ready(browser, url: str, path: str):
    page = browser.new_page(viewport={"width": 1440, "height": 1800})
    page.goto(f"{url}/{path}")
    page.get_by_text("Download review").first.wait_for(timeout=600_000)
    _settled(page, time.perf_counter())
    return page


def main() -> None:
    from playwright.sync_api import sync_playwright
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    p.add_argument("--before", default=None, help="an older checkout, measured in alternation")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    arms = {"after": Path(args.root).resolve()}
    if args.before:
        arms = {"before": Path(args.before).resolve(), **arms}
    servers = {arm: _serve(root) for arm, root in arms.items()}
    texts: dict[str, list] = {arm: [] for arm in arms}
    images: dict[str, list] = {arm: [] for arm in arms}
    try:
        for _, url in servers.values():
            _until(lambda url=url: _health(url), timeout=90, step=0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            pages = {arm: _ready(browser, url, "text") for arm, (_, url) in servers.items()}
            for page in pages.values():
                text_round(page, "A warm-up sentence about a horse.", "horse")  # first-run costs
            for s, w in SENTENCES[: args.repeats]:
                for arm, page in pages.items():
                    texts[arm].append(text_round(page, s, w))
            for page in pages.values():
                page.close()
            pages = {arm: _ready(browser, url, "image") for arm, (_, url) in servers.items()}
            for name in ("coffee", "rocket", "astronaut")[: args.repeats]:
                for arm, page in pages.items():
                    images[arm].append(image_round(page, name))
            browser.close()
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=20)
    for arm in arms:
        for name, rows, cols in ((f"{arm}, text: new short sentence", texts[arm], ("first map", "all maps", "whole page")),
                                 (f"{arm}, image: new gallery image", images[arm],
                                  ("first map", "all maps", "all at full settings", "whole page"))):
            medians = [statistics.median(r[i] for r in rows) for i in range(len(cols))]
            print(f"{name:36s} " + "   ".join(f"{c} {m:5.2f} s" for c, m in zip(cols, medians))
                  + f"   (runs: {', '.join('/'.join(f'{x:.2f}' for x in r) for r in rows)})")


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


if __name__ == "__main__":
    main()
