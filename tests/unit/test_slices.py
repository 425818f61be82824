"""Slices of a review and its global view, against direct computations on the same lines."""

from __future__ import annotations

import numpy as np
import pytest

from explainers.review import summarize
from explainers.review.overview import POINTS, overview
from explainers.review.slices import MAX_VALUES, OTHER, length_bucket, slice_summaries


def line(i: int, words: list[str], scores: dict[str, list[float]], pred: str, truth: str | None,
         aopc: float = 0.5, column: str | None = None) -> dict:
    rec = {"id": i, "modality": "text", "features": words,
           "prediction": {"index": 0 if pred == "neg" else 1, "label": pred, "probabilities": [0.6, 0.4],
                          "output_kind": "softmax"},
           "attributions": {m: {"scores": s, "seconds": 0.1} for m, s in scores.items()},
           "metrics": {"faithfulness": {"methods": {m: {"deletion_aopc": aopc + 0.01 * k, "beats_random": k == 0,
                                                        "effect_size": 1.0 + k} for k, m in enumerate(scores)},
                                        "random": {"deletion_aopc": 0.2}}}}
    if truth is not None:
        rec["true_label"], rec["correct"] = truth, truth == pred
    if column is not None:
        rec["columns"] = {"source": column}
    return rec


def lines() -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(24):
        n = [3, 8, 15, 30, 50][i % 5]
        words = [f"w{j % 7}" for j in range(n)]
        scores = {"a": rng.normal(size=n).tolist(), "b": rng.normal(size=n).tolist()}
        out.append(line(i, words, scores, "neg" if i % 3 else "pos", "neg" if i % 4 else "pos",
                        aopc=0.3 + 0.01 * i, column="web" if i % 2 else "shop"))
    out.append({"id": 99, "error": "unreadable"})
    return out


def test_each_slice_is_the_summary_of_its_own_lines():
    recs = lines()
    found = slice_summaries(recs, columns=["source"])
    assert set(found) == {"true_label", "predicted", "length", "column:source"}
    ok = [r for r in recs if "error" not in r]
    expect = {
        "true_label": lambda r: r["true_label"],
        "predicted": lambda r: r["prediction"]["label"],
        "length": lambda r: length_bucket(len(r["features"])),
        "column:source": lambda r: r["columns"]["source"],
    }
    for slicing, key in expect.items():
        values = [part["value"] for part in found[slicing]]
        assert sorted(values) == sorted({key(r) for r in ok})
        for part in found[slicing]:
            mine = summarize(r for r in ok if key(r) == part["value"])  # the same table, its lines only
            assert {k: v for k, v in part.items() if k != "value"} == mine
    assert [p["value"] for p in found["length"]] == ["1-5", "6-10", "11-20", "21-40", "41+"]


def test_a_slicing_keeps_a_bounded_number_of_slices():
    recs = [line(i, ["x"], {"a": [1.0]}, "neg", None, column=f"v{i}") for i in range(MAX_VALUES + 5)]
    parts = slice_summaries(recs, columns=["source"])["column:source"]
    assert len(parts) == MAX_VALUES + 1 and parts[-1]["value"] == OTHER
    assert parts[-1]["inputs"] == 5 and sum(p["inputs"] for p in parts) == len(recs)


def test_correct_and_wrong_are_the_summarys_own_outcomes():
    from explainers.review.slices import slice_value
    recs = [r for r in lines() if "error" not in r]
    assert {slice_value(r, "outcome") for r in recs} == {"correct", "wrong"}
    whole = summarize(recs)
    wrong = [r for r in recs if slice_value(r, "outcome") == "wrong"]
    assert whole["outcomes"]["wrong"] == summarize(wrong)["outcomes"]["wrong"]


def test_length_buckets():
    assert [length_bucket(n) for n in (1, 5, 6, 10, 11, 20, 21, 40, 41, 500)] == \
        ["1-5", "1-5", "6-10", "6-10", "11-20", "11-20", "21-40", "21-40", "41+", "41+"]


def test_the_global_view_of_words_against_a_direct_count():
    recs = [line(0, ["The", "soup", "the"], {"a": [1.0, -2.0, 0.5], "b": [1.0, -2.0, 0.5]}, "neg", None),
            line(1, ["the", "film"], {"a": [-3.0, 1.0], "b": [-3.0, 1.0]}, "neg", None),
            line(2, ["soup", "the", "rare"], {"a": [4.0, 1.0, 9.0], "b": [4.0, 1.0, 9.0]}, "neg", None)]
    view = overview(recs, min_inputs=2)
    rows = {r["feature"]: r for r in view["features"]}
    assert set(rows) == {"the", "soup"}  # "film" and "rare" are in one input each
    # "the": per input the sum of its occurrences (1.5, -3, 1), case folded
    the = rows["the"]["methods"]["a"]
    assert rows["the"]["inputs"] == 3
    assert the["mean"] == pytest.approx((1.5 - 3 + 1) / 3) and the["mean_abs"] == pytest.approx((1.5 + 3 + 1) / 3)
    soup = rows["soup"]["methods"]["a"]
    assert soup["mean"] == pytest.approx(1.0) and soup["mean_abs"] == pytest.approx(3.0)
    assert [r["feature"] for r in view["features"]] == ["soup", "the"]  # by weight
    assert view["agreement"]["top_overlap"]["a|b"] == 1.0


def test_methods_that_rank_features_oppositely_disagree():
    cols = [f"f{i}" for i in range(6)]
    recs = []
    for i in range(10):
        weights = np.arange(1, 7, dtype=float)
        rec = line(i, cols, {"a": weights.tolist(), "b": weights[::-1].tolist()}, "neg", None)
        rec["modality"] = "tabular"
        recs.append(rec)
    view = overview(recs)
    assert view["agreement"]["spearman"]["a|b"] == pytest.approx(-1.0)
    assert len(view["features"]) == 6  # every column of a table, whatever the count
    assert view["points"]["columns"] == cols and len(view["points"]["methods"]["a"]) == 10


def test_the_beeswarm_reservoir_is_bounded_and_images_have_no_global_view():
    recs = []
    for i in range(POINTS + 50):
        rec = line(i, ["f0", "f1"], {"a": [float(i), 0.0]}, "neg", None)
        rec["modality"] = "tabular"
        recs.append(rec)
    view = overview(recs)
    assert len(view["points"]["methods"]["a"]) == POINTS
    assert view["features"][0]["inputs"] == POINTS + 50  # the means still cover every input
    image = line(0, ["patch r0 c0"], {"a": [1.0]}, "neg", None)
    image["modality"] = "image"
    assert overview([image]) is None


# -- --slice-by: the file's columns travel with each line -----------------------------------------
def _genre_file(tmp_path):
    f = tmp_path / "rated.tsv"
    rows = [("the soup was good", "positive", "food"), ("a bad film", "negative", "film"),
            ("the film was good", "positive", "film"), ("bad soup", "negative", "food"),
            ("a good good film", "positive", "film")]
    f.write_text("sentence\tlabel\tgenre\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return f, rows


def test_slice_by_a_column_of_the_file(tiny_text, tmp_path):
    """Each line carries its row's value, and the column's slices are the summaries of the
    lines of that value, read back from the written file."""
    import json
    from explainers.review import InputSource, run_review
    f, rows = _genre_file(tmp_path)
    out = tmp_path / "rated.jsonl"
    summary = run_review(tiny_text, InputSource("text", str(f)).check(), methods=["saliency", "input_x_gradient"],
                         metrics=["faithfulness"], out=str(out), slice_by="genre")
    written = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["columns"] for r in written] == [{"genre": g} for _, _, g in rows]
    parts = {p["value"]: p for p in summary["slices"]["column:genre"]}
    assert {v: p["inputs"] for v, p in parts.items()} == {"film": 3, "food": 2}
    for value, part in parts.items():
        mine = summarize(r for r in written if r["columns"]["genre"] == value)
        got = {k: v for k, v in part.items() if k != "value"}
        # as JSON: a slice too small for the bootstrap has a NaN interval, and NaN != NaN
        assert json.dumps(got, sort_keys=True) == json.dumps(mine, sort_keys=True)


def test_slice_by_a_missing_column_stops_before_the_model(tiny_text_dir, tmp_path, capsys):
    from explainers.cli import main
    f, _ = _genre_file(tmp_path)
    code = main(["review", "--modality", "text", "--model", str(tiny_text_dir), "--file", str(f),
                 "--slice-by", "genre,mood", "--out", str(tmp_path / "r.jsonl")])
    assert code == 2
    err = capsys.readouterr().err
    assert "--slice-by 'mood' is not a column of rated.tsv" in err and "'genre'" in err
    assert not (tmp_path / "r.jsonl").exists()


def test_slice_by_needs_a_table(tmp_path):
    from explainers.errors import ExplainerError
    from explainers.review import InputSource
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(ExplainerError, match="a folder of images has no columns"):
        InputSource("image", str(tmp_path), slice_by=["camera"]).check()
    with pytest.raises(ExplainerError, match="the model's own rows has no columns"):
        InputSource("tabular", None, slice_by=["age"]).check()


def test_the_cli_slices_by_a_column_and_prints_its_table(tiny_text_dir, tmp_path, capsys):
    from explainers.cli import main
    f, _ = _genre_file(tmp_path)
    code = main(["review", "--modality", "text", "--model", str(tiny_text_dir), "--file", str(f),
                 "--methods", "saliency", "--metrics", "agreement", "--slice-by", "genre",
                 "--out", str(tmp_path / "r.jsonl")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "by column genre" in printed
    table = printed.split("by column genre", 1)[1]
    assert "film" in table and "food" in table


def test_a_resumed_review_slices_by_the_same_columns(tiny_text, tmp_path):
    """The sidecar records the columns, so lines written without them are not resumed as if
    they carried them (and the other way round)."""
    import json
    from explainers.errors import ExplainerError
    from explainers.review import InputSource, run_review
    f, _ = _genre_file(tmp_path)
    out = tmp_path / "rated.jsonl"
    run_review(tiny_text, InputSource("text", str(f)).check(), methods=["saliency"], metrics=["agreement"],
               out=str(out), slice_by="genre")
    meta = json.loads((tmp_path / "rated.jsonl.meta.json").read_text(encoding="utf-8"))
    assert meta["settings"]["slice_by"] == ["genre"]
    with pytest.raises(ExplainerError, match=r"other slice by \(\[\"genre\"\], now null\)"):
        run_review(tiny_text, InputSource("text", str(f)).check(), methods=["saliency"], metrics=["agreement"],
                   out=str(out))


def test_spare_columns_are_what_slice_by_can_name(tmp_path):
    """The columns besides input, labels and ids; by position where there is no header, and
    a position given as text (what the page passes) slices that column."""
    from PIL import Image

    from explainers.review import InputSource
    from explainers.review.inputs import ModelInfo
    named = tmp_path / "named.tsv"
    named.write_text("id\tsentence\tlabel\tsource\nr1\tgood fun\tpositive\tweb\n"
                     "r2\tdull\tnegative\tprint\n", encoding="utf-8")
    assert InputSource("text", str(named), id_column="id").check().spare_columns() == ["source"]
    bare = tmp_path / "bare.tsv"
    bare.write_text("good fun\tpositive\tweb\ndull\tnegative\tprint\n", encoding="utf-8")
    source = InputSource("text", str(bare), header=False, label_column="1").check()
    assert source.spare_columns() == [2]
    sliced = InputSource("text", str(bare), header=False, label_column="1", slice_by=["2"]).check()
    assert [item.columns for item in sliced.items(ModelInfo("text", ("negative", "positive")))] == [{"2": "web"}, {"2": "print"}]
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.png")
    assert InputSource("image", str(images)).check().spare_columns() == []
