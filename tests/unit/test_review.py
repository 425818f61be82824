"""Batch review: JSON lines, error lines, the summary numbers and the table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from explainers import ExplainerError
from explainers.adapters import TabularAdapter
from explainers.review import run_review, slim, summarize, summary_table


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIBUTION_STUDIO_CACHE", str(tmp_path))


def small_adapter() -> TabularAdapter:
    torch.manual_seed(0)
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(50, 5)), columns=list("abcde"))
    mlp = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    return TabularAdapter("small", mlp, frame, ["no", "yes"])


def record(aopc_a, aopc_b, flip_a, flip_b, beats_a, seconds_a, rho):
    return {
        "attributions": {"a": {"seconds": seconds_a}, "b": {"seconds": 1.0}},
        "metrics": {
            "faithfulness": {"methods": {"a": {"deletion_aopc": aopc_a, "beats_random": beats_a},
                                         "b": {"deletion_aopc": aopc_b, "beats_random": False}},
                             "random": {"deletion_aopc": 0.1}},
            "flip": {"methods": {"a": {"count": flip_a}, "b": {"count": flip_b}}, "random": {"count": None}},
            "agreement": {"methods": ["a", "b"], "spearman": [[1.0, rho], [rho, 1.0]]},
        },
    }


def test_summarize_hand_made_records():
    recs = [record(0.5, 0.2, 2, None, True, 0.1, 0.8), record(0.3, 0.4, 4, 6, False, 0.3, None),
            {"id": 9, "error": "bad row"}]
    s = summarize(recs)
    assert s["inputs"] == 2 and s["errors"] == 1
    a, b = s["methods"]["a"], s["methods"]["b"]
    assert a["deletion_aopc"] == pytest.approx(0.4) and b["deletion_aopc"] == pytest.approx(0.3)
    assert a["flip_count"] == pytest.approx(3.0) and a["flipped_share"] == 1.0
    assert b["flip_count"] == pytest.approx(6.0) and b["flipped_share"] == 0.5
    assert a["agreement"] == pytest.approx(0.8)  # the undefined (None) correlation is skipped
    assert a["beats_random_share"] == 0.5 and b["beats_random_share"] == 0.0
    assert a["seconds"] == pytest.approx(0.2)
    assert s["random"]["deletion_aopc"] == pytest.approx(0.1) and s["random"]["flipped_share"] == 0.0
    table = summary_table(s)
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["method", "del."]
    assert lines[2].split()[:3] == ["a", "0.400", "3.0"]
    assert "(random control)" in table and "2 input(s) explained, 1 failed" in table


def test_run_review_writes_lines_and_summary(tmp_path, capsys):
    adapter = small_adapter()
    out = tmp_path / "review.jsonl"
    inputs = iter([(0, 0), (1, 1), ("bad", 999), (3, 3), (4, 4)])
    summary = run_review(adapter, inputs, methods=["integrated_gradients", "occlusion"],
                         params={"integrated_gradients": {"n_steps": 8}},
                         metrics=["agreement", "faithfulness", "flip"], metric_params={"random_orders": 3},
                         limit=4, out=str(out), use_cache=False)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["id"] for x in lines] == [0, 1, "bad", 3]  # limit=4 stops before input 4
    assert "out of range" in lines[2]["error"]
    assert set(lines[0]["metrics"]) == {"agreement", "faithfulness", "flip"}
    assert summary["inputs"] == 3 and summary["errors"] == 1
    aopcs = [x["metrics"]["faithfulness"]["methods"]["occlusion"]["deletion_aopc"]
             for x in lines if "metrics" in x]
    assert summary["methods"]["occlusion"]["deletion_aopc"] == pytest.approx(np.mean(aopcs), rel=1e-6)
    captured = capsys.readouterr()
    assert "integrated_gradients" in captured.out and "del. AOPC" in captured.out  # table on stdout
    assert "review 4/4" in captured.err


def test_run_review_to_stdout_puts_table_on_stderr(capsys):
    adapter = small_adapter()
    run_review(adapter, [(0, 0)], methods=["saliency"], params=None, metrics=["faithfulness"],
               metric_params={"random_orders": 2}, use_cache=False)
    captured = capsys.readouterr()
    line = json.loads(captured.out.strip())
    assert line["id"] == 0 and "faithfulness" in line["metrics"]
    assert "del. AOPC" in captured.err and "del. AOPC" not in captured.out


def test_run_review_refuses_unknown_metric():
    with pytest.raises(ExplainerError, match="unknown metric"):
        run_review(small_adapter(), [(0, 0)], methods=["saliency"], params=None, metrics=["nope"],
                   metric_params=None, use_cache=False)


def test_summarize_reports_the_median_effect_size_and_skips_infinite_ones():
    recs = []
    for effect in (1.0, 3.0, float("inf"), 10.0, None):
        r = record(0.5, 0.2, 2, None, True, 0.1, 0.8)
        r["metrics"]["faithfulness"]["methods"]["a"]["effect_size"] = effect
        recs.append(slim(r))
    s = summarize(recs)
    assert s["methods"]["a"]["effect_size"] == pytest.approx(3.0)  # median of 1, 3, 10
    assert s["methods"]["b"]["effect_size"] is None
    assert "effect (median)" in summary_table(s).splitlines()[0]
