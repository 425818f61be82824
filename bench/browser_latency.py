"""Time from submit to what a person sees, in a real browser (Debian Chromium + Playwright).

    python -m bench.browser_latency [--root DIR] [--repeats 3]

Starts ``streamlit run dashboard/app.py`` from ``--root`` (default: this checkout; pass an
older worktree to measure "before") on a free loopback port, warms the models up, then:

* text: types a new short sentence, presses Ctrl+Enter, and records the seconds until the
  three panels show the new sentence's tokens (first maps) and until the page stops running
  (whole page: metrics included);
* image: picks another gallery image and records the seconds until the panels' header names
  the new prediction (first maps) and until the page stops running.

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
SENTENCES = [("A wonderfully acted elephant story.", "elephant"), ("A dull giraffe of a film.", "giraffe"),
             ("The penguin scenes are charming.", "penguin"), ("Tedious dolphin drama.", "dolphin"),
             ("An inventive tiger comedy.", "tiger")]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _running(page) -> bool:
    return page.locator('[data-testid="stStatusWidget"]').count() > 0


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


def text_round(page, sentence: str, word: str) -> tuple[float, float]:
    box = page.locator("textarea").first
    box.fill(sentence)
    t0 = time.perf_counter()
    box.press("Control+Enter")
    spans = page.locator("span.tok", has_text=word)
    first = _until(lambda: spans.count() >= 3)
    return first, _settled(page, t0)


def image_round(page, name: str) -> tuple[float, float]:
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Sample image").click()
    t0 = time.perf_counter()
    page.get_by_role("option", name=name, exact=True).click()
    label = {"coffee": "espresso", "chelsea": "Egyptian cat", "rocket": "missile", "astronaut": "bobsled"}[name]
    first = _until(lambda: page.get_by_text(f"predicted {label}").count() > 0)
    return first, _settled(page, t0)


def main() -> None:
    from playwright.sync_api import sync_playwright
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    root = Path(args.root).resolve()
    port = _port()
    cache = tempfile.mkdtemp(prefix="latency-cache-")
    env = {**os.environ, "ATTRIBUTION_STUDIO_CACHE": cache, "PYTHONPATH": str(root)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port",
                             str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _until(lambda: _health(url), timeout=90, step=0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1800})
            page.goto(f"{url}/text")
            page.get_by_text("Download review").first.wait_for(timeout=300_000)
            _settled(page, time.perf_counter())
            text_round(page, "A warm-up sentence about a horse.", "horse")  # first-run costs
            texts = [text_round(page, s, w) for s, w in SENTENCES[: args.repeats]]
            page.goto(f"{url}/image")
            page.get_by_text("Download review").first.wait_for(timeout=300_000)
            _settled(page, time.perf_counter())
            images = [image_round(page, n) for n in ("coffee", "rocket", "astronaut")[: args.repeats]]
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    for name, rows in (("text: new short sentence", texts), ("image: new gallery image", images)):
        first = statistics.median(r[0] for r in rows)
        whole = statistics.median(r[1] for r in rows)
        print(f"{name:28s} first maps {first:5.2f} s   whole page {whole:5.2f} s   "
              f"(runs: {', '.join(f'{a:.2f}/{b:.2f}' for a, b in rows)})")


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


if __name__ == "__main__":
    main()
