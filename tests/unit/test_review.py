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
    # the dataset-level verdict from the old lines' AOPC - random AOPC: a 0.4, 0.2; b 0.1, 0.3
    assert s["dataset"]["methods"]["a"]["mean_difference"] == pytest.approx(0.3)
    assert s["dataset"]["methods"]["b"]["mean_difference"] == pytest.approx(0.2)
    table = summary_table(s)
    lines = table.splitlines()
    assert lines[0].startswith("Does each method beat the random control")  # the verdict first
    assert lines[1].split()[:2] == ["method", "verdict"] and lines[3].split()[0] == "a"
    first = next(i for i, x in enumerate(lines) if x.split()[:2] == ["method", "del."])
    assert lines[first + 2].split()[:3] == ["a", "0.400", "3.0"]
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
    assert any("effect (median)" in x for x in summary_table(s).splitlines())


# -- issue 13: labels, the wrong/correct split, resume ----------------------------------------------
FAST = {"methods": ["integrated_gradients", "occlusion"], "params": {"integrated_gradients": {"n_steps": 8}},
        "metrics": ["agreement", "faithfulness"], "metric_params": {"random_orders": 3}, "use_cache": False}


def lines_of(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_labelled_lines_carry_the_truth_and_the_summary_splits_wrong_from_correct(tmp_path, capsys):
    adapter = small_adapter()
    preds = [adapter.predict(adapter.encode(i)).index for i in range(6)]
    truth = [p if i % 3 else 1 - p for i, p in enumerate(preds)]  # inputs 0 and 3 are errors
    inputs = [(i, i, adapter.labels[t] if i % 2 else t) for i, t in enumerate(truth)]  # names and indices
    out = tmp_path / "r.jsonl"
    summary = run_review(adapter, inputs, out=str(out), **FAST)
    lines = lines_of(out)
    assert [x["true_index"] for x in lines] == truth
    assert [x["true_label"] for x in lines] == [adapter.labels[t] for t in truth]
    assert [x["correct"] for x in lines] == [False, True, True, False, True, True]
    assert all(x["target"]["index"] == x["prediction"]["index"] for x in lines)  # explain="predicted"
    assert summary["labelled"] == 6 and summary["accuracy"] == pytest.approx(4 / 6)
    wrong, correct = summary["outcomes"]["wrong"], summary["outcomes"]["correct"]
    assert wrong["inputs"] == 2 and correct["inputs"] == 4
    aopc = lambda rows: np.mean([x["metrics"]["faithfulness"]["methods"]["occlusion"]["deletion_aopc"] for x in rows])
    assert wrong["methods"]["occlusion"]["deletion_aopc"] == pytest.approx(aopc([lines[0], lines[3]]))
    assert correct["methods"]["occlusion"]["deletion_aopc"] == pytest.approx(aopc([lines[i] for i in (1, 2, 4, 5)]))
    table = capsys.readouterr().out
    assert table.index("wrong predictions: 2 input(s)") < table.index("correct predictions: 4 input(s)")
    assert "\n6 input(s) explained; accuracy 66.7% on 6 labelled (2 wrong)\n" in table  # the slices follow


def test_explain_true_targets_the_label_and_unlabelled_input_keeps_the_old_summary(tmp_path):
    adapter = small_adapter()
    preds = [adapter.predict(adapter.encode(i)).index for i in range(3)]
    out = tmp_path / "r.jsonl"
    run_review(adapter, [(0, 0, 1 - preds[0]), (1, 1, preds[1]), (2, 2)], out=str(out), explain="true", **FAST)
    lines = lines_of(out)
    assert lines[0]["target"]["index"] == 1 - preds[0] and lines[1]["target"]["index"] == preds[1]
    assert "no ground-truth label" in lines[2]["error"]
    plain = summarize(slim(r) for r in lines_of(out)[1:2] + [{"id": 2, "error": "x"}])
    assert set(plain) == {"dataset", "inputs", "errors", "methods", "random", "labelled", "accuracy",
                          "outcomes"}
    no_labels = summarize([record(0.5, 0.2, 2, None, True, 0.1, 0.8)])
    assert set(no_labels) == {"dataset", "inputs", "errors", "methods", "random"}  # no outcomes
    # an unknown label is that input's error line, the others go on; strict stops there
    bad = tmp_path / "bad.jsonl"
    summary = run_review(adapter, [(0, 0, "maybe"), (1, 1, preds[1])], out=str(bad), **FAST)
    assert [x["id"] for x in lines_of(bad)] == [0, 1] and summary["errors"] == 1
    assert "label 'maybe' (input 0) is neither one of the model's classes" in lines_of(bad)[0]["error"]
    with pytest.raises(ExplainerError, match="neither one of the model's classes .*strict"):
        run_review(adapter, [(0, 0, "maybe")], out=str(tmp_path / "bad2.jsonl"), strict=True, **FAST)


def test_resume_skips_written_ids_and_redoes_a_cut_off_last_line(tmp_path, capsys):
    adapter = small_adapter()
    fresh, out = tmp_path / "fresh.jsonl", tmp_path / "r.jsonl"
    run_review(adapter, [(i, i) for i in range(6)], out=str(fresh), **FAST)
    run_review(adapter, [(i, i) for i in range(6)], out=str(out), limit=3, **FAST)
    with open(out, "a") as f:  # a run killed while writing input 3
        f.write(fresh.read_text().splitlines()[3][:40])
    capsys.readouterr()
    summary = run_review(adapter, [(i, i) for i in range(6)], out=str(out), **FAST)
    assert "resuming" in capsys.readouterr().err
    assert [x["id"] for x in lines_of(out)] == list(range(6))  # no gap, no duplicate, in order
    for a, b in zip(lines_of(out), lines_of(fresh)):
        for m in FAST["methods"]:
            np.testing.assert_allclose(a["attributions"][m]["scores"], b["attributions"][m]["scores"], atol=1e-6)
    assert summary["inputs"] == 6  # the summary covers the earlier run's lines too
    assert summary["methods"]["occlusion"]["deletion_aopc"] == pytest.approx(
        summarize(lines_of(fresh))["methods"]["occlusion"]["deletion_aopc"])


def test_a_run_that_dies_midway_resumes_without_gaps(tmp_path):
    adapter = small_adapter()
    out = tmp_path / "r.jsonl"

    def dying(n):
        yield from ((i, i) for i in range(n))
        raise KeyboardInterrupt  # the driver stops here, lines written so far stay

    with pytest.raises(KeyboardInterrupt):
        run_review(adapter, dying(5), out=str(out), batch_size=2, **FAST)
    assert [x["id"] for x in lines_of(out)] == [0, 1, 2, 3]  # whole batches only
    run_review(adapter, [(i, i) for i in range(7)], out=str(out), batch_size=2, **FAST)
    assert [x["id"] for x in lines_of(out)] == list(range(7))
    with pytest.raises(ExplainerError, match="holds lines explained with"):
        run_review(adapter, [(0, 0)], out=str(out), **{**FAST, "methods": ["saliency"], "params": None})
    run_review(adapter, [(9, 9)], out=str(out), resume=False, **{**FAST, "methods": ["saliency"], "params": None})
    assert [x["id"] for x in lines_of(out)] == [9]  # resume=False (--overwrite) starts over
    (tmp_path / "notes.txt").write_text("hello\nworld\n")
    with pytest.raises(ExplainerError, match="not a review output"):
        run_review(adapter, [(0, 0)], out=str(tmp_path / "notes.txt"), **FAST)


def test_cli_review_reads_an_sst2_style_file_with_its_labels(tmp_path, tiny_text_dir, capsys):
    import warnings
    from explainers.cli import main
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\nthe soup was bland \t0\na great film \t1\nnot very good\tpositive\n")
    out = tmp_path / "r.jsonl"
    args = ["review", "--modality", "text", "--model", str(tiny_text_dir), "--file", str(data),
            "--methods", "integrated_gradients,occlusion", "--param", "integrated_gradients.n_steps=4",
            "--metrics", "agreement", "--no-cache", "--out", str(out)]
    with warnings.catch_warnings():  # main() silences warnings process-wide
        assert main(args) == 0
        lines = lines_of(out)
        assert [x["input"] for x in lines] == ["the soup was bland", "a great film", "not very good"]
        assert [x["true_index"] for x in lines] == [0, 1, 1] and [x["id"] for x in lines] == [0, 1, 2]
        err = capsys.readouterr().err
        assert "text from column 'sentence', labels from column 'label'" in err
        out.unlink()
        assert main(args + ["--explain", "true"]) == 0
        assert [x["target"]["index"] for x in lines_of(out)] == [0, 1, 1]
        assert main(args + ["--label-column", "none", "--explain", "true"]) == 2
        assert "--explain true needs ground-truth labels" in capsys.readouterr().err
        assert main(args + ["--workers", "2"]) == 2
        assert "--workers need(s) --engine ray" in capsys.readouterr().err


def test_resume_keys_keep_numbers_and_strings_apart():
    from explainers.review import id_key
    assert id_key(3) != id_key("3") and id_key("a.png") == id_key("a.png") and id_key(True) != id_key(1)
