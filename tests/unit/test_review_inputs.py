"""Review inputs read with pandas: formats, header detection, columns, labels, streaming."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explainers import ExplainerError
from explainers.review.inputs import InputSource, Item, ModelInfo, detect_header, label_index

TEXT_INFO = ModelInfo(modality="text", labels=("negative", "positive"))


def items(tmp_path, name: str, content: str, **kwargs) -> list[Item]:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    info = kwargs.pop("info", TEXT_INFO)
    source = InputSource(kwargs.pop("modality", "text"), str(path), **kwargs).check()
    return list(source.items(info))


def test_sst2_header_is_a_header_not_a_review(tmp_path):
    got = items(tmp_path, "dev.tsv", "sentence\tlabel\nit 's a charming journey . \t1\nbleak and "
                                     "desperate \t0\n")
    assert got == [Item(0, "it 's a charming journey .", "1"), Item(1, "bleak and desperate", "0")]


def test_first_row_is_data_when_nothing_says_header(tmp_path):
    got = items(tmp_path, "plain.tsv", "a great film\t1\nthe soup was bland\t0\n")
    assert [g.raw for g in got] == ["a great film", "the soup was bland"]
    assert [g.label for g in got] == [None, None]  # no header: labels only when asked for
    got = items(tmp_path, "plain.tsv", "a great film\t1\nthe soup was bland\t0\n", label_column="1")
    assert [g.label for g in got] == ["1", "0"]


def test_header_detected_from_a_numeric_column_under_an_unknown_name(tmp_path):
    assert detect_header(["phrase", "polarity"], [["good", "1"], ["bad", "0"]])
    assert not detect_header(["a fine film", "1"], [["bad", "0"]])
    got = items(tmp_path, "x.tsv", "phrase\tpolarity\ngood\t1\nbad\t0\n", label_column="polarity")
    assert [(g.raw, g.label) for g in got] == [("good", "1"), ("bad", "0")]


def test_csv_columns_by_name_quotes_and_ids(tmp_path):
    content = 'uid,stars,review\nr7,positive,"Great, really great"\nr9,negative,"He said ""meh"""\n'
    got = items(tmp_path, "x.csv", content, text_column="review", label_column="stars", id_column="uid")
    assert got == [Item("r7", "Great, really great", "positive"), Item("r9", 'He said "meh"', "negative")]


def test_tsv_keeps_quote_marks_and_words_pandas_would_call_missing(tmp_path):
    got = items(tmp_path, "x.tsv", 'text\n" the movie " is fine\nNA\nnull\n')
    assert [g.raw for g in got] == ['" the movie " is fine', "NA", "null"]


def test_jsonl_with_named_and_numeric_labels(tmp_path):
    lines = [{"text": "a great film", "label": "positive", "id": 11},
             {"text": "the soup was bland", "label": 0, "id": 12}, {"text": "no label", "id": 13}]
    got = items(tmp_path, "x.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n", id_column="id")
    assert [(g.id, g.raw) for g in got] == [(11, "a great film"), (12, "the soup was bland"), (13, "no label")]
    assert [label_index(g.label, TEXT_INFO.labels) for g in got] == [1, 0, None]


def test_unknown_column_is_a_clear_error_before_any_model(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("sentence\tlabel\nfine\t1\n")
    with pytest.raises(ExplainerError, match=r"--label-column 'gold' is not a column .*\['sentence', 'label'\]"):
        InputSource("text", str(path), label_column="gold").check()
    path.write_text("fine\t1\n")
    with pytest.raises(ExplainerError, match="no header row"):
        InputSource("text", str(path), text_column="text", header=False).check()
    with pytest.raises(ExplainerError, match="file not found"):
        InputSource("text", str(tmp_path / "nope.tsv")).check()


def test_reading_streams_line_by_line(tmp_path):
    # 1 MB of rows, then a broken one: the first items come before the reader reaches it,
    # and the broken row is reported with its line, the rows before it kept
    rows = "".join(f"sentence number {i}\t{i % 2}\n" for i in range(50_000))
    path = tmp_path / "x.tsv"
    path.write_text("text\tlabel\n" + rows + "broken\tline\twith too many fields\n")
    source = InputSource("text", str(path)).check()
    stream = source.items(TEXT_INFO)
    first = [next(stream) for _ in range(7)]
    assert [g.id for g in first] == list(range(7)) and first[6] == Item(6, "sentence number 6", "0")
    stream.close()
    got = list(InputSource("text", str(path)).check().items(TEXT_INFO))
    assert len(got) == 50_001 and all(g.error is None for g in got[:-1])
    assert got[-1].id == 50_000 and got[-1].raw is None
    assert got[-1].error == "x.tsv, line 50002: 3 fields where the header has 2 (a stray tab?)"
    with pytest.raises(ExplainerError, match="line 50002: 3 fields .*--strict stops"):
        list(InputSource("text", str(path), strict=True).check().items(TEXT_INFO))
    assert source.estimate_rows() == 50_001


def test_label_index_names_indices_and_errors():
    classes = ("negative", "positive")
    assert [label_index(v, classes) for v in ("positive", "NEGATIVE", 1, "0", 1.0, np.int64(1))] == [1, 0, 1, 0, 1, 1]
    assert [label_index(v, classes) for v in (None, float("nan"), "", " ")] == [None] * 4
    for bad in ("pos", 2, "-1", 0.5, True):
        with pytest.raises(ExplainerError, match=r"neither one of the model's classes \['negative', 'positive'\]"):
            label_index(bad, classes, ident=3)
    assert label_index("1", ("0", "1", "2")) == 1  # a class named "1" is matched by name


def test_tabular_rows_drop_the_label_column_and_are_checked(tmp_path):
    info = ModelInfo(modality="tabular", labels=("no", "yes"), feature_names=("a", "b"), n_rows=3,
                     true_labels=(0, 1, 1))
    got = items(tmp_path, "rows.csv", "a,y,b\n1.5,yes,2\n3,0,4\n", modality="tabular", label_column="y",
                info=info)
    assert got == [Item(0, {"a": 1.5, "b": 2.0}, "yes"), Item(1, {"a": 3.0, "b": 4.0}, "0")]
    with pytest.raises(ExplainerError, match="extra \\['y'\\]"):
        items(tmp_path, "rows.csv", "a,y,b\n1.5,1,2\n", modality="tabular", label_column="none", info=info)
    model_rows = list(InputSource("tabular").check().items(info))
    assert model_rows == [Item(0, 0, 0), Item(1, 1, 1), Item(2, 2, 1)]


def test_image_table_paths_are_relative_to_the_table(tmp_path):
    (tmp_path / "imgs").mkdir()
    got = items(tmp_path, "images.csv", "file,class\nimgs/a.png,cat\n/abs/b.png,dog\n", modality="image",
                info=ModelInfo(modality="image", labels=("cat", "dog")))
    assert got == [Item(0, str(tmp_path.resolve() / "imgs" / "a.png"), "cat"), Item(1, "/abs/b.png", "dog")]
    with pytest.raises(ExplainerError, match="folder of images carries no labels"):
        InputSource("image", str(tmp_path / "imgs"), label_column="class").check()


def test_describe_says_what_is_read(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("sentence\tlabel\nfine\t1\n")
    assert InputSource("text", str(path)).check().describe() == (
        "reading dev.tsv (tsv, header row), text from column 'sentence', labels from column 'label'")
