"""A real browser against a real server: `streamlit run dashboard/app.py` + Debian chromium.

Playwright drives ``/usr/bin/chromium`` (never a downloaded browser). Each page is opened,
an explanation runs, the text page deletes a word and checks the new prediction, and a
screenshot of each page is saved (to ``docs/screenshots/`` with UPDATE_SCREENSHOTS=1, the
README's pictures). Skipped when chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import streamlit_server

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
#: README screenshots are refreshed only on request (UPDATE_SCREENSHOTS=1), so a test run
#: never dirties the working tree; otherwise they go to a scratch folder.
SHOTS = (ROOT / "docs" / "screenshots" if os.environ.get("UPDATE_SCREENSHOTS") == "1"
         else Path(tempfile.gettempdir()) / "attribution-studio-screenshots")
TEXT_WEIGHTS = ROOT / "cache" / "weights" / "sst2_minilm.safetensors"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: cheap image settings passed as a shared link would pass them. The text and image
IMAGE_QUERY = "ig.n_steps=8&gs.n_samples=4&occ.window=56&occ.stride=56"

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
    pytest.mark.e2e,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cache = tmp_path_factory.mktemp("e2e_cache")
    with open(cache / "streamlit.log", "w") as log, \
            streamlit_server("dashboard/app.py", {"ATTRIBUTION_STUDIO_CACHE": str(cache)}, log) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        # Playwright gives every launch a fresh temporary profile (user-data-dir).
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _settle(page, quiet: float = 2.0, timeout: float = 240) -> None:
    """Wait until the app has not been running for ``quiet`` seconds in a row."""
    deadline, calm_since = time.time() + timeout, None
    while time.time() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            calm_since = None
        elif calm_since is None:
            calm_since = time.time()
        elif time.time() - calm_since >= quiet:
            return
        time.sleep(0.25)
    raise AssertionError("the app kept running")


def _open(browser, url: str, ready_text: str, height: int = 2200):
    page = browser.new_page(viewport={"width": 1440, "height": height})
    page.goto(url)
    page.get_by_text(ready_text, exact=False).first.wait_for(timeout=240_000)
    _settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    return page


def _shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    return path


def _wait_until(cond, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError("timed out waiting for the page")
        time.sleep(0.25)


def _panel_captions(page) -> list[str]:
    return [t for t in page.locator('[data-testid="stCaptionContainer"]').all_inner_texts() if "δ =" in t]


def test_home(server, browser):
    page = _open(browser, server, "How to read the numbers", height=1300)
    assert page.get_by_text("Integrated Gradients").count() >= 1
    # at 1440 px the four cards' links read in full (none cut off with an ellipsis)
    page.get_by_text("Open Review").first.wait_for(timeout=60_000)  # a first load may draw twice
    links = page.locator('[data-testid="stPageLink"] p')
    assert links.count() >= 4
    cut = links.evaluate_all("els => els.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)")
    assert not cut, cut
    _shot(page, "home")
    page.close()


@pytest.mark.skipif(not TEXT_WEIGHTS.is_file(), reason="default text model weights not built yet")
def test_text_delete_a_word(server, browser):
    text = "The soup was bland and the service was terrible."
    page = _open(browser, f"{server}/text?text={urllib.request.quote(text)}", "Download review",
                 height=2300)
    assert len(_panel_captions(page)) == 3
    first = page.get_by_text(re.compile(r"^(negative|positive)$")).first.inner_text()
    # click the word "terrible" in the token pills: it is deleted and the prediction re-runs
    page.locator('[data-testid="stButtonGroup"] button', has_text=re.compile(r"^terrible$")).first.click()
    page.get_by_text("Prediction on the edit").first.wait_for(timeout=120_000)
    page.get_by_text("Edited input: text edited").first.wait_for(timeout=120_000)
    # the rows' headers come first and each map fills in as its method finishes
    _wait_until(lambda: len(_panel_captions(page)) >= 6)
    _settle(page)
    change = page.get_by_text("Prediction on the edit").first.inner_text()
    before, after = re.search(r"([\d.]+)% → ([\d.]+)%", change).groups()
    assert before != after, change
    assert page.locator("del").count() >= 1  # the diff shows the deleted word
    assert len(_panel_captions(page)) == 6  # before/after rows in every panel
    assert first in ("negative", "positive")
    assert "edit=" in page.url  # the edit is part of the shareable link
    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, "text")
    page.close()


def test_image(server, browser):
    page = _open(browser, f"{server}/image?{IMAGE_QUERY}", "Download review", height=1900)
    assert len(_panel_captions(page)) == 3
    assert page.get_by_text("Egyptian cat").count() >= 1
    page.get_by_text("Attributions side by side").first.scroll_into_view_if_needed()
    _shot(page, "image")
    page.close()


def test_image_full_screen_buttons_leave_the_row_titles_readable(server, browser):
    page = _open(browser, f"{server}/image?{IMAGE_QUERY}&erase=true", "Download review", height=2200)
    for title in ("Original input", "Edited input:"):
        header = page.get_by_text(title).first
        header.scroll_into_view_if_needed()
        box = header.bounding_box()
        below = [i for i in page.locator('[data-testid="stImage"]').all()
                 if (b := i.bounding_box()) and 0 < b["y"] - box["y"] < 200]
        below[0].hover()  # the first map of the row: its button sits above its top-right corner
        time.sleep(0.5)
        shown = [b for b in _boxes(page, '[data-testid="stElementToolbar"]') if abs(b["y"] - box["y"]) < 80]
        assert shown and not any(_overlap(box, b) for b in shown), (title, box, shown)
    page.close()


def test_stop_says_stopped_in_the_panels_and_keeps_the_pause_out_of_the_link(server, browser):
    """The default image settings take seconds: Stop while they run; each panel then says
    "Stopped", the page is paused, and its address does not carry the pause."""
    page = _open(browser, f"{server}/image?img=rocket&ig.n_steps=8&gs.n_samples=4&occ.window=56&occ.stride=56",
                 "Download review", height=1900)
    page.goto(f"{server}/image?img=astronaut")  # default settings: several seconds of work
    page.get_by_text("Running: 3 method(s)").first.wait_for(timeout=240_000)
    page.get_by_role("button", name="Stop").first.click()
    page.get_by_text("Stopped: this map was not computed").first.wait_for(timeout=120_000)
    _settle(page)
    assert page.get_by_text("Stopped: this map was not computed").count() == 3
    assert page.get_by_role("button", name="Apply changes").count() == 1
    assert "live" not in page.url, page.url
    page.close()


@pytest.mark.skipif(not TEXT_WEIGHTS.is_file(), reason="default text model weights not built yet")
def test_the_running_line_appears_before_anything_of_the_new_input(server, browser):
    """After Ctrl+Enter the 'Running' line is on screen no later than the new text's clickable
    words (the first thing the rerun draws of it), not only once the panels start. Streamlit
    may commit both in one render (the same mutation, the same timestamp): the line is then
    there when the words are, which is what the user sees; drawn after them, it fails."""
    page = _open(browser, f"{server}/text", "Download review", height=1600)
    page.evaluate("""() => { window.__seen = {};
      new MutationObserver(() => {
        const t = performance.now(), s = window.__seen;
        if (s.running === undefined && [...document.querySelectorAll('[data-testid="stAlertContentInfo"]')]
              .some(e => e.innerText.includes('Running:'))) s.running = t;
        if (s.word === undefined && [...document.querySelectorAll('[data-testid="stButtonGroup"] button')]
              .some(e => e.innerText.trim() === 'walrus')) s.word = t;
      }).observe(document.body, {subtree: true, childList: true, characterData: true}); }""")
    box = page.locator("textarea").first
    box.fill("A touching walrus documentary.")
    box.press("Control+Enter")
    _wait_until(lambda: page.evaluate("window.__seen.word !== undefined"), timeout=240)
    seen = page.evaluate("window.__seen")
    assert "running" in seen and seen["running"] <= seen["word"], seen
    _settle(page)
    page.close()


def test_image_grad_cam(server, browser):
    """Grad-CAM next to IG and Occlusion on the cat: each CAM panel is the blended map with a
    colour bar under it and states its resolution (the README's Grad-CAM screenshot)."""
    methods = "&".join("methods=" + urllib.request.quote(t) for t in
                       ("Grad-CAM", "Integrated Gradients", "Occlusion"))
    page = _open(browser, f"{server}/image?{IMAGE_QUERY}&{methods}", "Download review", height=1500)
    assert len(_panel_captions(page)) == 3
    assert page.get_by_text("Egyptian cat").count() >= 1
    assert page.get_by_text("7 x 7 cells", exact=False).count() == 1
    assert page.get_by_text("no display smoothing", exact=False).count() == 1
    # the panels' pictures: three maps and Grad-CAM's colour bar (a wide, flat image)
    sizes = _boxes(page, '[data-testid="stImage"] img')
    flat = [b for b in sizes if b["width"] > 4 * b["height"]]
    assert len(flat) == 1, sizes
    page.get_by_text("Attributions side by side").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    time.sleep(0.5)
    _shot(page, "image_grad_cam")
    page.close()


def test_tabular(server, browser):
    page = _open(browser, f"{server}/tabular", "Download review", height=2000)
    assert len(_panel_captions(page)) == 3
    assert page.get_by_text("Where the methods disagree most").count() == 1
    _shot(page, "tabular")
    page.close()


def test_review(server, browser):
    page = _open(browser, f"{server}/review", "Run review", height=1100)
    page.get_by_text("tabular", exact=True).click()
    _settle(page)
    page.get_by_role("button", name="Run review").click()
    page.get_by_text("input(s) explained").first.wait_for(timeout=240_000)
    _settle(page)
    assert page.get_by_text("20 input(s) explained").count() == 1
    assert page.get_by_text("Download JSON lines").count() == 1
    _shot(page, "review")
    page.close()


def _nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    time.sleep(1.0)
    _settle(page)


@pytest.mark.skipif(not TEXT_WEIGHTS.is_file(), reason="default text model weights not built yet")
def test_pages_do_not_leak_state_into_each_other_and_keep_their_own(server, browser):
    """Type a sentence on Text, then visit every page from every other page (sidebar links):
    no page shows an error or another page's parameters; Text still has the sentence."""
    from tests.app.test_pages import PAGES, every_ordered_pair
    page = _open(browser, f"{server}/text", "Download review", height=1600)
    box = page.locator("textarea").first
    box.fill("Great movie.")
    box.press("Control+Enter")
    time.sleep(1.0)
    _settle(page)
    for name in every_ordered_pair(PAGES)[1:]:
        _nav(page, name.capitalize())
        assert page.locator('[data-testid="stException"]').count() == 0, name
        errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
        assert not errors, (name, errors)
        if name in ("text", "image", "tabular"):
            page.get_by_text("Download review").first.wait_for(timeout=240_000)
            _settle(page)
            assert len(_panel_captions(page)) == 3, name
            assert "baselines=pad" not in page.url or name == "text", page.url
        if name == "text":
            assert page.locator("textarea").first.input_value() == "Great movie."
            assert "text=Great" in page.url  # the restored view is also the page's link
    page.close()


def _boxes(page, selector: str) -> list[dict]:
    return [b for b in (el.bounding_box() for el in page.locator(selector).all()) if b]


def _overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["width"] - 1 and b["x"] < a["x"] + a["width"] - 1
            and a["y"] < b["y"] + b["height"] - 1 and b["y"] < a["y"] + a["height"] - 1)


def test_nine_methods_lay_out_without_overlap(server, browser):
    from explainers import list_methods
    from explainers import get_method
    methods = "&".join("methods=" + urllib.request.quote(get_method(m).title) for m in list_methods("tabular"))
    page = _open(browser, f"{server}/tabular?row=13&{methods}", "Download review", height=3400)
    assert len(_panel_captions(page)) == len(list_methods("tabular"))
    panels = _boxes(page, '[data-testid="stVerticalBlockBorderWrapper"]')
    width = page.viewport_size["width"]
    for i, a in enumerate(panels):
        assert a["x"] >= 0 and a["x"] + a["width"] <= width + 1, a  # inside the window
        assert not any(_overlap(a, b) for b in panels[i + 1:] if not (_inside(a, b) or _inside(b, a)))
    for chart in _boxes(page, '[data-testid="stVegaLiteChart"]'):
        assert chart["x"] + chart["width"] <= width + 1, chart  # no chart runs off the page
    _shot(page, "many_methods")
    page.close()


def _inside(a: dict, b: dict) -> bool:
    return (a["x"] >= b["x"] - 1 and a["y"] >= b["y"] - 1 and a["x"] + a["width"] <= b["x"] + b["width"] + 1
            and a["y"] + a["height"] <= b["y"] + b["height"] + 1)


CHINESE = "这家餐厅的服务太差了,等了两个小时都没上菜"


@pytest.mark.skipif(not TEXT_WEIGHTS.is_file(), reason="default text model weights not built yet")
def test_chinese_text_renders_and_is_flagged_as_unreadable(server, browser):
    """CJK characters draw as characters (make browser installs a CJK font), and the page says
    the English model cannot read them instead of explaining [UNK]s with confidence."""
    page = _open(browser, f"{server}/text?text={urllib.request.quote(CHINESE)}", "Download review", height=1500)
    assert page.get_by_text("this model does not read this script").count() >= 1
    assert page.locator("textarea").first.input_value() == CHINESE
    _shot(page, "text_chinese")
    page.close()


def test_tabular_diabetes_score_model(server, browser):
    """The regression default: the strip shows a score against the model's range on its data
    (a histogram with this row marked), no class selector, and the flips cross a threshold."""
    page = _open(browser, f"{server}/tabular?tab.model=diabetes&row=0", "Download review", height=2100)
    assert len(_panel_captions(page)) == 3
    assert page.get_by_text("Predicted disease progression").count() >= 1
    assert page.get_by_text("percentile of the data").count() >= 1
    assert page.get_by_text("Explain class").count() == 0  # one output: no target to pick
    assert page.locator('[data-testid="stVegaLiteChart"]').count() >= 4  # the range histogram + 3 panels
    _shot(page, "tabular_diabetes")
    page.get_by_role("tab", name="Flips").click()
    page.get_by_text("crosses the threshold").first.wait_for(timeout=60_000)
    assert page.get_by_text("median of the model's scores").count() >= 1


def _shown(select) -> str:
    """What a select box shows: its text and the value of its input (Streamlit >= 1.5x)."""
    return select.evaluate("e => e.innerText + ' ' + Array.from(e.querySelectorAll('input'))"
                           ".map(i => i.value + ' ' + (i.getAttribute('aria-label') || '')).join(' ')")


@pytest.mark.skipif(not TEXT_WEIGHTS.is_file(), reason="default text model weights not built yet")
def test_text_attention_heat_map(server, browser):
    """The Text page's Attention section: a query x key heat map of the default model's own
    weights, with layer and head pickers; picking a head changes the view and its link. The
    attention methods run as panels next to IG."""
    text = "The plot was predictable, but the acting kept me watching."
    methods = "&".join("methods=" + urllib.request.quote(t)
                       for t in ("Integrated Gradients", "Attention", "Attention x Gradient"))
    page = _open(browser, f"{server}/text?text={urllib.request.quote(text)}&ig.n_steps=16&{methods}",
                 "Download review", height=2600)
    assert len(_panel_captions(page)) == 3
    assert page.get_by_text("negative by construction").count() >= 2  # both attention panels say so
    heading = page.get_by_role("heading", name="Attention", exact=True)
    heading.scroll_into_view_if_needed()
    top = heading.bounding_box()["y"]
    charts = [b for b in _boxes(page, '[data-testid="stVegaLiteChart"]') if b["y"] > top]
    chart = min(charts, key=lambda b: b["y"])
    assert chart["height"] > 250 and chart["width"] > 250  # 16 tokens on each axis
    head = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("Head", exact=True))
    assert "mean of heads" in _shown(head)
    layer = page.locator('[data-testid="stSelectbox"]').filter(has=page.get_by_text("Layer", exact=True))
    assert "6 (last)" in _shown(layer)
    head.locator("input").first.click()
    page.get_by_role("option", name="head 3").click()
    _settle(page)
    _wait_until(lambda: "head 3" in _shown(head), timeout=60)
    assert "att.head=" in page.url, page.url  # the view is part of the shareable link
    assert page.locator('[data-testid="stException"]').count() == 0
    heading.evaluate("e => e.scrollIntoView({block: 'start'})")  # the section at the top
    time.sleep(0.5)
    box = heading.bounding_box()
    chart = min((b for b in _boxes(page, '[data-testid="stVegaLiteChart"]') if b["y"] > box["y"]),
                key=lambda b: b["y"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / "text_attention.png"
    page.screenshot(path=str(path), clip={"x": 0, "y": box["y"] - 10, "width": page.viewport_size["width"],
                                          "height": chart["y"] + chart["height"] - box["y"] + 90})
    assert path.stat().st_size > 10_000
    page.close()


def test_generation_delete_a_word(server, browser):
    """The Generation page on the default SmolLM2: the greedy continuation, one matrix per
    method; deleting "Lisbon" shows the new continuation beside the old (the README's
    screenshot)."""
    query = "gen.new=6&ig.n_steps=8&methods=feature_ablation,integrated_gradients,target_attention"
    page = browser.new_page(viewport={"width": 1440, "height": 2600})
    page.goto(f"{server}/generation?{query}")
    # the first load converts the GGUF file to safetensors (12-15 s on a quiet machine)
    page.get_by_text("The model continues:").first.wait_for(timeout=900_000)
    page.get_by_text("Download review").first.wait_for(timeout=900_000)
    _settle(page, timeout=900)
    assert len(_panel_captions(page)) == 3
    # the label is bold: the continuation is the rest of its paragraph
    before = page.locator("p", has_text="The model continues:").first.inner_text()
    page.locator('[data-testid="stButtonGroup"] button', has_text=re.compile(r"^Lisbon$")).first.click()
    page.get_by_text("On the edit it continues:").first.wait_for(timeout=600_000)
    _wait_until(lambda: len(_panel_captions(page)) >= 6, timeout=900)
    _settle(page, timeout=900)
    after = page.locator("p", has_text="On the edit it continues:").first.inner_text()
    assert after.split(":", 1)[1].strip() and before.split(":", 1)[1].strip()
    assert page.get_by_text("deleted: Lisbon").count() >= 1
    assert page.locator("del").count() >= 1  # the prompt's diff
    assert page.locator('[data-testid="stException"]').count() == 0
    page.evaluate("window.scrollTo(0, 0)")
    _shot(page, "generation")
    page.close()
