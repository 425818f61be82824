"""The neutral baseline: searched once per model and input length (a bounded, thread-safe
memo), its time kept out of every method's seconds, neutrality defined per output kind, and
one stated rule for every baseline warning."""

from __future__ import annotations

import copy
import threading
import time

import numpy as np
import pytest
import torch

import explainers.baselines as baselines
from explainers import explain, run_method
from explainers.adapters import ImageAdapter
from explainers.adapters.text import sample_sentences
from explainers.baselines import (NEUTRALITY_WARN, baseline_predictions, forget_neutral, neutral_baseline,
                                  neutral_info, neutrality)

# three texts of one token length (tiny vocabulary: one token per word) and one longer
SAME_LENGTH = ("the soup was bland", "the film was good", "a movie was terrible")
LONGER = "the soup was bland and the service was terrible !"


@pytest.fixture
def text(tiny_text):
    """A private view of the tiny text model with an empty memo (the memo is per model)."""
    forget_neutral(tiny_text)
    yield tiny_text
    forget_neutral(tiny_text)


@pytest.fixture
def searches(monkeypatch):
    """Counts the neutral searches that really run."""
    calls = []
    real = baselines.neutral_search

    def counted(adapter, enc):
        calls.append(enc.raw)
        return real(adapter, enc)

    monkeypatch.setattr(baselines, "neutral_search", counted)
    return calls


def test_one_search_per_length_and_the_same_baseline_as_a_fresh_search(text, searches):
    encs = [text.encode(t) for t in SAME_LENGTH]
    assert len({e.inputs.shape[1] for e in encs}) == 1
    got = [neutral_baseline(text, e) for e in encs]
    assert searches == [SAME_LENGTH[0]]  # the first input of the length pays, the others do not
    neutral_baseline(text, text.encode(LONGER))
    assert searches == [SAME_LENGTH[0], LONGER]
    for e, g in zip(encs, got):  # the remembered baseline is what a search of that input gives
        fresh, _ = baselines.neutral_search(text, e)
        assert torch.equal(g, fresh)


def test_the_memo_is_bounded_and_keyed_by_the_output_kind(text, searches, monkeypatch):
    monkeypatch.setattr(baselines, "MEMO_SIZE", 2)
    lengths = ["the soup", "the soup was", "the soup was bland"]
    for t in lengths:
        neutral_baseline(text, text.encode(t))
    neutral_baseline(text, text.encode(lengths[-1]))
    assert len(searches) == 3  # the newest is remembered
    neutral_baseline(text, text.encode(lengths[0]))
    assert len(searches) == 4  # the oldest was dropped when the third came
    sig = copy.copy(text).set_output_kind("sigmoid")
    neutral_baseline(sig, sig.encode(lengths[0]))
    assert len(searches) == 5  # another output kind is another search


def test_concurrent_sessions_get_the_sequential_baselines(text):
    texts = ["the soup", "the soup was", "the soup was bland", "the soup was bland and"]
    expected = [baselines.neutral_search(text, text.encode(t))[0] for t in texts]
    results: dict[int, torch.Tensor] = {}

    def work(i: int) -> None:
        results[i] = neutral_baseline(text, text.encode(texts[i % len(texts)]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(results[i], expected[i % len(texts)]) for i in range(12))


def test_the_search_is_timed_apart_from_every_method(text, monkeypatch):
    methods = ["integrated_gradients", "occlusion"]
    params = {"integrated_gradients": {"n_steps": 4}}
    real_search, real_clock = baselines.neutral_search, time.perf_counter
    pause = 1000.0  # the search moves a fake clock this far: whoever's timer spans it sees it
    skipped = [0.0]

    def slow(adapter, enc):
        skipped[0] += pause
        return real_search(adapter, enc)

    monkeypatch.setattr(baselines, "neutral_search", slow)
    monkeypatch.setattr(time, "perf_counter", lambda: real_clock() + skipped[0])
    first = explain(text, SAME_LENGTH[0], methods, params, use_cache=False)
    assert first.baseline_seconds >= pause
    assert all(a.seconds < pause for a in first.attributions.values())
    assert first.to_dict()["baseline_seconds"] == pytest.approx(first.baseline_seconds, abs=1e-6)
    second = explain(text, SAME_LENGTH[1], methods, params, use_cache=False)  # same length: remembered
    assert second.baseline_seconds == 0.0
    assert neutral_info(text, text.encode(SAME_LENGTH[1]))["seconds"] >= pause  # the search's own time


def test_neutrality_per_output_kind_on_known_values():
    assert neutrality([0.5], "sigmoid") == pytest.approx(1.0)
    assert neutrality([0.9, 0.5], "sigmoid") == pytest.approx(1 - 2 * (0.4 + 0.0) / 2)
    assert neutrality([0.0, 1.0], "sigmoid") == pytest.approx(0.0)
    ref = np.arange(1.0, 101.0).reshape(-1, 1)  # scores 1..100: median 50.5
    assert neutrality([50.5], "score", ref) == pytest.approx(1.0)  # 50 below, 50 above
    assert neutrality([1000.0], "score", ref) == pytest.approx(0.0)
    assert neutrality([25.5], "score", ref) == pytest.approx(1 - 2 * 0.25)  # 25 of 100 below
    assert np.isnan(neutrality([3.0], "score", None))


def _independent_neutralities(adapter, enc, kind_score):
    """Every candidate and mix, scored by the test's own formula for the kind."""
    named = adapter.neutral_candidate_tensors(enc)
    cands = list(named.values())
    rows = list(cands)
    for i in range(len(cands)):
        for j in range(i + 1, len(cands)):
            rows += [w * cands[i] + (1 - w) * cands[j] for w in baselines.MIX_WEIGHTS]
    with torch.no_grad():
        logits = adapter.forward(torch.cat(rows), enc)
    return rows, [kind_score(row) for row in logits.double()]


@pytest.mark.parametrize("kind", ["softmax", "sigmoid", "score"])
def test_the_neutral_search_follows_the_output_kind(tiny_text, kind):
    adapter = copy.copy(tiny_text).set_output_kind(kind)
    enc = adapter.encode(LONGER)
    if kind == "softmax":
        def score(z):
            p = torch.softmax(z, -1).numpy()
            return 1 - 0.5 * np.abs(p - 0.5).sum() / 0.5
    elif kind == "sigmoid":
        def score(z):
            return 1 - 2 * float((torch.sigmoid(z) - 0.5).abs().mean())
    else:  # no data: the model's scores on the shipped sentences are the reference
        with torch.no_grad():
            ref = adapter.predict_texts(list(sample_sentences())).double().numpy()

        def score(z):
            q = [((ref[:, c] < v).sum() + 0.5 * (ref[:, c] == v).sum()) / len(ref) for c, v in enumerate(z.numpy())]
            return 1 - 2 * float(np.abs(np.array(q) - 0.5).mean())
    rows, scores = _independent_neutralities(adapter, enc, score)
    best = int(np.argmax(scores))
    info = neutral_info(adapter, enc)
    assert info["neutrality"] == pytest.approx(scores[best], abs=1e-6)
    assert torch.allclose(neutral_baseline(adapter, enc), rows[best], atol=1e-6)
    assert scores[best] > scores[0] + 1e-6 or best == 0  # the first candidate only when it is the best
    report = baseline_predictions(adapter, enc, ["pad", "neutral"])
    assert report["neutral"].neutrality == pytest.approx(scores[best], abs=1e-6)
    assert np.isfinite(report["pad"].neutrality)  # defined for every kind now
    if kind == "score":
        assert "shipped everyday sentences" in info["rule"]


class MeanBrightness(torch.nn.Module):
    """Logits [-8 * mean(x), 0, 0, 0] on the normalised image: a black image (x = -1 after
    normalisation) is nearly all class 0, a mid-grey one (x = 0) uniform."""

    def forward(self, x):
        m = -8 * x.mean(dim=(1, 2, 3))
        z = torch.zeros_like(m)
        return torch.stack([m, z, z, z], 1)


def test_image_baseline_warnings_follow_one_stated_rule():
    adapter = ImageAdapter("brightness", MeanBrightness(), ["bright", "b", "c", "d"], size=32, patch=8)
    grey = np.full((32, 32, 3), 127, dtype=np.uint8)
    report = baseline_predictions(adapter, adapter.encode(grey), ["black", "mean", "blur"])
    assert report["black"].neutrality < NEUTRALITY_WARN  # black: p ~ (e^8, 1, 1, 1) / ..., far off
    assert report["blur"].neutrality > 0.99  # the grey image blurred: uniform
    for kind, b in report.items():
        assert (b.warning is not None) == (b.neutrality < NEUTRALITY_WARN)  # the rule, and only it
        if b.warning:
            assert f"neutrality {b.neutrality:.2f}, below {NEUTRALITY_WARN}" in b.warning
            assert "uniform over the 4 classes" in b.warning and "f(x) - f(baseline)" in b.warning
