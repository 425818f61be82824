"""Generation on the default causal LM (SmolLM2-135M-Instruct): our attribution against
Captum's LLMAttribution / LLMGradientAttribution on the same prompt and target, where the
fact word ranks, and the time from submit to the first matrix in a real browser.

    nice -n 10 python -m bench.generation [--part speed|ranks|browser|all] [--repeats 3]

``speed``: one plain prompt (no chat template, so Captum's ``TextTokenInput`` sees the same
tokens), token units, the unknown token (id 0, Captum's default) as the baseline, a 1-token
and a 7-token target. Arms, interleaved in one process and repeated (median seconds):

* ours, feature ablation: :func:`explainers.run_method` (the total and the per-token matrix);
* Captum ``LLMAttribution(FeatureAblation)`` as documented (``use_cached_outputs=True``,
  token by token with the KV cache), and with ``use_cached_outputs=False`` (token by token,
  no cache);
* ours, IG with 20 Gauss-Legendre steps; Captum ``LLMGradientAttribution(
  LayerIntegratedGradients(embed_tokens))`` with ``n_steps=20``.

Each arm's numbers are compared with ours (max |difference| over the matrix). Torch runs one
intra-op thread: on a shared 2-core machine two threads spin-wait on each other (a single
forward took 13 s with two threads and 0.9 s with one at load 15); every arm runs alike.

``ranks``: the four fact prompts of :data:`cache.generation_model.FACT_PROMPTS`, with and
without the chat template, target " CITY": the rank of the city's word under feature
ablation (word deletion), IG (20 steps, unknown-token baseline) and last-layer attention.

``browser``: ``streamlit run dashboard/app.py``, the Generation page with feature ablation
alone; a new prompt is typed and submitted (Ctrl+Enter), and the seconds are recorded until
its first panel (highlighted prompt and matrix) shows the prompt's new word, and until the
page settles.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch

from cache.generation_model import FACT_PROMPTS
from explainers import load_model, run_method
from explainers.adapters.generation import Prompt

ROOT = Path(__file__).resolve().parents[1]
PROMPT = FACT_PROMPTS[0][0]
TARGETS = {1: " Lisbon", 7: " Lisbon, Portugal, and she studied"}


def median_time(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def speed(adapter, repeats: int) -> list[str]:
    from captum.attr import (FeatureAblation, LayerIntegratedGradients, LLMAttribution,
                             LLMGradientAttribution, TextTokenInput)
    tok, model = adapter.tokenizer, adapter.module
    inp = TextTokenInput(PROMPT, tok, baselines=tok.unk_token_id)
    fa = LLMAttribution(FeatureAblation(model), tok)
    ig = LLMGradientAttribution(LayerIntegratedGradients(model, model.get_input_embeddings()), tok)
    lines = [f"prompt: {PROMPT!r} ({len(inp.values)} tokens, no chat template), baseline: "
             f"{tok.unk_token!r} (id {tok.unk_token_id})", ""]
    lines.append("| target tokens | arm | seconds | x ours | max abs diff to ours |")
    lines.append("|---|---|---|---|---|")
    for n, target in TARGETS.items():
        assert len(tok(target, add_special_tokens=False)["input_ids"]) == n, target
        enc = adapter.encode(Prompt(PROMPT, chat=False), unit="token", target=target)
        arms = {
            "ours: feature ablation": lambda: run_method(adapter, enc, "feature_ablation", {"baselines": ["unk"]}),
            "Captum LLMAttribution(FeatureAblation), default (KV cache)":
                lambda: fa.attribute(inp, target=target),
            "Captum LLMAttribution(FeatureAblation), use_cached_outputs=False":
                lambda: fa.attribute(inp, target=target, use_cached_outputs=False),
            "ours: IG, 20 steps": lambda: run_method(adapter, enc, "integrated_gradients",
                                                     {"baselines": ["unk"], "n_steps": 20}),
            "Captum LLMGradientAttribution(LayerIntegratedGradients), 20 steps":
                lambda: ig.attribute(inp, target=target, n_steps=20),
        }
        for fn in arms.values():  # warm-up, once each
            fn()
        times: dict[str, list[float]] = {k: [] for k in arms}
        outs: dict[str, object] = {}
        for _ in range(repeats):  # interleaved: every arm once per round
            for name, fn in arms.items():
                t = time.perf_counter()
                outs[name] = fn()
                times[name].append(time.perf_counter() - t)
        med = {k: statistics.median(v) for k, v in times.items()}
        for name in arms:
            ours_name = "ours: IG, 20 steps" if "Gradient" in name or "IG" in name else "ours: feature ablation"
            mine = outs[ours_name].matrix
            other = outs[name]
            theirs = mine if name.startswith("ours") else other.token_attr.cpu().numpy()
            diff = float(np.abs(np.asarray(theirs) - mine).max())
            lines.append(f"| {n} | {name} | {med[name]:.2f} | {med[name] / med[ours_name]:.2f} | {diff:.1e} |")
    return lines


def ranks(adapter) -> list[str]:
    lines = ["| chat template | prompt | feature ablation (word deletion) | IG (20 steps, unk) | attention (last layer) |",
             "|---|---|---|---|---|"]
    for chat in (True, False):
        for prompt, target in FACT_PROMPTS:
            enc = adapter.encode(Prompt(prompt, chat=chat), unit="word", target=target)
            city = [i for i, w in enumerate(enc.feature_labels) if w == target.strip()]
            cells = []
            for m, p in (("feature_ablation", {"baselines": ["delete"]}),
                         ("integrated_gradients", {"n_steps": 20}), ("target_attention", None)):
                scores = run_method(adapter, enc, m, p).scores
                order = list(np.argsort(-scores, kind="stable"))
                rank = 1 + min(order.index(i) for i in city)
                cells.append(f"{rank} of {enc.n_features}" + ("" if rank == 1 else f" (1st: {enc.feature_labels[order[0]]!r})"))
            lines.append(f"| {'yes' if chat else 'no'} | {prompt[:48]}… | " + " | ".join(cells) + " |")
    return lines


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


def _until(cond, timeout: float = 600.0) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if cond():
            return time.perf_counter() - start
        time.sleep(0.05)
    raise TimeoutError("condition not met")


def browser(repeats: int) -> list[str]:
    from playwright.sync_api import sync_playwright
    from tests.servers import free_port
    port = free_port()
    env = {**os.environ, "ATTRIBUTION_STUDIO_CACHE": os.environ.get("ATTRIBUTION_STUDIO_CACHE")
           or tempfile.mkdtemp(prefix="gen-bench-"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port",
                             str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    prompts = [("Ana was born in Porto and moved to Paris. Which city was Ana born in?", "Porto"),
               ("Ivan was born in Minsk and studied in Prague. Which city was Ivan born in?", "Minsk"),
               ("Lena was born in Graz and works in Vienna. Which city was Lena born in?", "Graz")]
    rows = []
    try:
        _until(lambda: _health(url), timeout=120)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                   args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = b.new_page(viewport={"width": 1440, "height": 2000})
            page.goto(f"{url}/generation?methods=feature_ablation")
            page.get_by_text("Export and share").first.wait_for(timeout=900_000)
            for prompt, word in prompts[:repeats]:
                box = page.get_by_label("Prompt", exact=True)
                box.fill(prompt)
                t0 = time.perf_counter()
                box.press("Control+Enter")
                first = _until(lambda: page.locator("span.tok", has_text=word).count() >= 1)
                page.get_by_text("Export and share").first.wait_for(timeout=900_000)
                rows.append((first, time.perf_counter() - t0))
            b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return [f"new prompt -> first matrix: {statistics.median(r[0] for r in rows):.1f} s, whole page "
            f"{statistics.median(r[1] for r in rows):.1f} s (runs: "
            + ", ".join(f"{a:.1f}/{c:.1f}" for a, c in rows) + ")"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["speed", "ranks", "browser", "all"], default="all")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)")
    if args.part in ("speed", "ranks", "all"):
        adapter = load_model("generation")
        if args.part in ("speed", "all"):
            print("\n".join(speed(adapter, args.repeats)))
        if args.part in ("ranks", "all"):
            print("\n".join(ranks(adapter)))
    if args.part in ("browser", "all"):
        print("\n".join(browser(args.repeats)))
    print(json.dumps({"load_after": os.getloadavg()}))


if __name__ == "__main__":
    main()
