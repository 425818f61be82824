"""Issue 19, items 4-6 and 8: review files that never lose or silently skip a row.

Every case counts: the input's data lines = the output's lines (one per row) + the lines an
error line reports (a row spanning several lines names them all), and an output that is
refused keeps every byte it had.
"""

from __future__ import annotations

import json
import re
import warnings

import pytest

from explainers import ExplainerError
from explainers.cli import main
from explainers.review import InputSource, run_review
from explainers.review import inputs as inputs_module
from explainers.review.outputs import meta_path

FAST = {"methods": ["saliency"], "metrics": [], "use_cache": False}
CLI_FAST = ["--methods", "saliency", "--metrics", "", "--no-cache"]
WORDS = ["the film was good", "the soup was bland", "a great movie", "not very good", "i love it",
         "terrible service", "the food was bad", "a very good film", "i hate it", "great food"]


def texts(n: int) -> list[str]:
    return [f"{WORDS[i % len(WORDS)]} {'!' * (i % 3)}".strip() for i in range(n)]


def lines_of(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def source(path, **kw) -> InputSource:
    return InputSource("text", str(path), **kw).check()


def covered(line: dict) -> int:
    """How many physical lines an output line stands for: 1, or an error's 'lines A-B'."""
    m = re.search(r"lines (\d+)-(\d+)", line.get("error", ""))
    return int(m.group(2)) - int(m.group(1)) + 1 if m else 1


def cli(args, capsys) -> tuple[int, str]:
    with warnings.catch_warnings():  # main() silences warnings process-wide
        code = main(args)
    return code, capsys.readouterr().err


# -- item 4: --out that is not this run's review output ------------------------------------------
@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\x00\x00binary", b'{"minified": [1, 2, 3]}',
                                     b'{"id": 0, "foo": "bar"}\n{"id": 1, "foo": "bar"}\n'])
def test_an_out_that_is_no_review_output_is_refused_and_kept(tiny_text, tmp_path, content):
    out = tmp_path / "out.jsonl"
    out.write_bytes(content)
    with pytest.raises(ExplainerError, match="no out.jsonl.meta.json beside it.*--overwrite"):
        run_review(tiny_text, [(0, "the film")], out=str(out), **FAST)
    assert out.read_bytes() == content  # never truncated


def test_the_input_file_as_out_is_refused(tiny_text, tmp_path, capsys):
    data = tmp_path / "in.jsonl"
    original = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts(5)))
    data.write_text(original)
    with pytest.raises(ExplainerError, match="is the input file itself"):
        run_review(tiny_text, source(data), out=str(data), **FAST)
    assert data.read_text() == original


def test_foreign_lines_in_a_review_file_are_refused_naming_the_line(tiny_text, tmp_path):
    data = tmp_path / "in.tsv"
    data.write_text("text\n" + "\n".join(texts(6)) + "\n")
    out = tmp_path / "r.jsonl"
    run_review(tiny_text, source(data), out=str(out), limit=3, **FAST)
    with open(out, "a") as f:
        f.write('{"id": 3, "foo": "bar"}\n')
    before = out.read_bytes()
    with pytest.raises(ExplainerError, match=r"line 4 is not a review line of this run \(neither an error"):
        run_review(tiny_text, source(data), out=str(out), **FAST)
    assert out.read_bytes() == before


def test_a_review_of_other_inputs_or_settings_is_refused(tiny_text, tmp_path):
    data = tmp_path / "in.tsv"
    data.write_text("text\n" + "\n".join(texts(6)) + "\n")
    out = tmp_path / "r.jsonl"
    run_review(tiny_text, source(data), out=str(out), limit=2, **FAST)
    before = out.read_bytes()
    with pytest.raises(ExplainerError, match=r"holds lines explained with \['saliency'\], not \['occlusion'\]"):
        run_review(tiny_text, source(data), out=str(out), **{**FAST, "methods": ["occlusion"]})
    with pytest.raises(ExplainerError, match="written with other params"):
        run_review(tiny_text, source(data), out=str(out), **{**FAST, "params": {"saliency": {"absolute": "no"}}})
    with pytest.raises(ExplainerError, match="written with other unit"):
        run_review(tiny_text, source(data), out=str(out), unit="piece", **FAST)
    data.write_text("text\n" + "\n".join(texts(7)) + "\n")  # the input grew: another file
    with pytest.raises(ExplainerError, match="written for other inputs"):
        run_review(tiny_text, source(data), out=str(out), **FAST)
    other = tmp_path / "other.tsv"
    other.write_text("text\n" + "\n".join(texts(6)) + "\n")
    with pytest.raises(ExplainerError, match="written for other inputs"):
        run_review(tiny_text, source(other), out=str(out), **FAST)
    assert out.read_bytes() == before


def test_a_review_by_another_model_is_refused(tiny_text, tiny_tabular, tmp_path):
    out = tmp_path / "r.jsonl"
    run_review(tiny_tabular, [(0, 0), (1, 1)], out=str(out), **FAST)
    from explainers.adapters import TabularAdapter
    from tests.conftest import tiny_frame
    import torch
    torch.manual_seed(1)
    other = TabularAdapter("tiny-mlp", torch.nn.Sequential(torch.nn.Linear(6, 2)), tiny_frame(), ["no", "yes"])
    before = out.read_bytes()
    with pytest.raises(ExplainerError, match="written by another model"):
        run_review(other, [(0, 0), (1, 1), (2, 2)], out=str(out), **FAST)
    assert out.read_bytes() == before
    run_review(tiny_tabular, [(0, 0), (1, 1), (2, 2)], out=str(out), **FAST)  # the same one resumes
    assert [x["id"] for x in lines_of(out)] == [0, 1, 2]


def test_only_a_genuine_review_loses_its_cut_off_last_line_and_says_so(tiny_text, tmp_path, capsys):
    data = tmp_path / "in.tsv"
    data.write_text("text\n" + "\n".join(texts(5)) + "\n")
    out = tmp_path / "r.jsonl"
    run_review(tiny_text, source(data), out=str(out), limit=2, **FAST)
    whole = out.read_text()
    cut = '{"id": 2, "input": "a great mo'  # killed while writing input 2
    with open(out, "a") as f:
        f.write(cut)
    capsys.readouterr()
    run_review(tiny_text, source(data), out=str(out), **FAST)
    err = capsys.readouterr().err
    assert f"resuming {out}: 2 line(s) already written (its cut-off last line 3, {len(cut)} bytes, dropped)" in err
    got = lines_of(out)
    assert [x["id"] for x in got] == [0, 1, 2, 3, 4]
    assert out.read_text().startswith(whole)  # the two whole lines kept as they were


def test_out_that_is_a_folder_is_one_line(tiny_text_dir, tmp_path, capsys):
    data = tmp_path / "in.tsv"
    data.write_text("text\nthe film\n")
    code, err = cli(["review", "--modality", "text", "--model", str(tiny_text_dir), "--file", str(data),
                     *CLI_FAST, "--out", str(tmp_path)], capsys)
    assert code == 2 and err == f"error: --out {tmp_path} is a folder; give a file name such as {tmp_path / 'review.jsonl'}\n"


# -- item 5: repeated ids ------------------------------------------------------------------------
def test_repeated_ids_are_an_error_naming_them_before_any_model(tmp_path):
    data = tmp_path / "in.csv"
    rows = [f"r{i % 10},{t}" for i, t in enumerate(texts(30))]  # 10 distinct ids over 30 rows
    data.write_text("uid,text\n" + "\n".join(rows) + "\n")
    with pytest.raises(ExplainerError, match=r"ids repeat in column 'uid' of in.csv: 'r0' \(lines 2 and 12\), "
                                             r"'r1' \(lines 3 and 13\).* and 15 more; .*unique"):
        InputSource("text", str(data), id_column="uid").check()


def test_repeated_ids_given_from_python_stop_the_run(tiny_text, tmp_path):
    out = tmp_path / "r.jsonl"
    with pytest.raises(ExplainerError, match="input id 'a' repeats"):
        run_review(tiny_text, [("a", "the film"), ("b", "bad"), ("a", "good")], out=str(out), batch_size=1, **FAST)


# -- item 6: quoting, bad UTF-8, unknown labels, broken JSON lines -------------------------------
def test_an_unmatched_quote_is_reported_with_its_lines_not_merged(tiny_text, tmp_path):
    rows = [f"{t},{i % 2}" for i, t in enumerate(texts(30))]
    rows[12] = '"' + rows[12]  # opens on line 14 ...
    rows[19] = rows[19].replace(",", '",', 1)  # ... and closes on line 21: rows 13-20 would be one
    data = tmp_path / "in.csv"
    data.write_text("text,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "r.jsonl"
    summary = run_review(tiny_text, source(data), out=str(out), **FAST)
    got = lines_of(out)
    errors = [x for x in got if "error" in x]
    assert len(errors) == 1 and "in.csv, lines 14-21: one quoted field runs over lines 14-21" in errors[0]["error"]
    assert sum(covered(x) for x in got) == 30  # 30 data lines = 22 reviewed + 8 reported
    assert len(got) == 23 and summary["inputs"] == 22 and summary["errors"] == 1
    assert [x["input"] for x in got if "input" in x][12] == texts(30)[20]  # rows after it kept
    # a file whose fields really hold line breaks: --multiline
    multi = tmp_path / "multi.csv"
    multi.write_text('text,label\n"the film\nwas good",1\nbad,0\n')
    assert [i.raw for i in source(multi, multiline=True).items(inputs_module.ModelInfo("text", ("a", "b")))] == \
        ["the film\nwas good", "bad"]


def test_bad_utf8_names_its_line_and_the_rows_around_it_are_kept(tiny_text, tmp_path, capsys):
    body = [f"{t}\t{i % 2}".encode() for i, t in enumerate(texts(12))]
    body[7] = b"caf\xe9 au lait\t1"  # Latin-1, not UTF-8
    data = tmp_path / "in.tsv"
    data.write_bytes(b"text\tlabel\n" + b"\n".join(body) + b"\n")
    out = tmp_path / "r.jsonl"
    run_review(tiny_text, source(data), out=str(out), batch_size=4, **FAST)
    got = lines_of(out)
    assert [x["id"] for x in got] == list(range(12))
    assert got[7]["error"] == "in.tsv, line 9: not valid UTF-8 (byte 0xe9 at byte 4 of the line)"
    assert all("error" not in x for i, x in enumerate(got) if i != 7)
    assert "1 row(s) of in.tsv could not be read; each has an error line (line 9: not valid UTF-8" in \
        capsys.readouterr().err
    before = out.read_bytes()
    run_review(tiny_text, source(data), out=str(out), **FAST)  # resume: nothing redone, nothing lost
    assert out.read_bytes() == before and "resuming" in capsys.readouterr().err
    strict = tmp_path / "strict.jsonl"
    with pytest.raises(ExplainerError, match=r"in.tsv, line 9: not valid UTF-8 .*--strict"):
        run_review(tiny_text, source(data, strict=True), out=str(strict), batch_size=4, **FAST)
    assert [x["id"] for x in lines_of(strict)] == [0, 1, 2, 3]  # whole batches before it kept


def test_bad_utf8_deep_in_a_big_file_is_found_at_its_line(tmp_path):
    """The probe's row 2500: past the first 2,048-row chunk, named, and the reading goes on."""
    body = [f"sentence {i}\t{i % 2}".encode() for i in range(3000)]
    body[2500] = b"\xff\xfe broken\t1"
    data = tmp_path / "big.tsv"
    data.write_bytes(b"text\tlabel\n" + b"\n".join(body) + b"\n")
    got = list(source(data).items(inputs_module.ModelInfo("text", ("a", "b"))))
    assert len(got) == 3000 and [i for i, g in enumerate(got) if g.error] == [2500]
    assert got[2500].error == "big.tsv, line 2502: not valid UTF-8 (byte 0xff at byte 1 of the line)"
    assert got[2999].raw == "sentence 2999"


def test_an_unknown_label_names_its_line_and_resume_does_not_redo_anything(tiny_text, tmp_path, capsys):
    rows = [f"{t}\t{['negative', 'positive'][i % 2]}" for i, t in enumerate(texts(9))]
    rows[4] = "a great movie\tmaybe"
    data = tmp_path / "in.tsv"
    data.write_text("text\tlabel\n" + "\n".join(rows) + "\n")
    out = tmp_path / "r.jsonl"
    summary = run_review(tiny_text, source(data), out=str(out), **FAST)
    got = lines_of(out)
    assert len(got) == 9 and summary["errors"] == 1 and summary["labelled"] == 8
    assert got[4]["error"].startswith("in.tsv, line 6: label 'maybe' (input 4) is neither one of the model's")
    before = out.read_bytes()
    run_review(tiny_text, source(data), out=str(out), **FAST)
    assert out.read_bytes() == before
    with pytest.raises(ExplainerError, match="line 6: label 'maybe'.*--strict"):
        run_review(tiny_text, source(data, strict=True), out=str(tmp_path / "s.jsonl"), **FAST)


def test_json_lines_that_are_no_objects_or_hold_no_text(tiny_text, tmp_path):
    lines = [json.dumps({"text": "the film"}), "[1, 2, 3]", json.dumps({"text": {"nested": "object"}}),
             "{not json", "", json.dumps({"text": "bad soup"}), "[" * 100_000 + "]" * 100_000]
    data = tmp_path / "in.jsonl"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.jsonl"
    run_review(tiny_text, source(data), out=str(out), **FAST)
    got = lines_of(out)
    assert [x["id"] for x in got] == [0, 1, 2, 3, 4, 5]  # the blank line is no row
    assert got[1]["error"] == "in.jsonl, line 2: a JSON line must be an object such as {\"text\": ...}, not a list [1, 2, 3]"
    assert got[2]["error"] == "in.jsonl, line 3: the 'text' value is an object, not a text: {'nested': 'object'}"
    assert got[3]["error"].startswith("in.jsonl, line 4: not JSON (")
    assert got[5]["error"] in ("in.jsonl, line 7: the JSON is nested too deeply",) or \
        got[5]["error"].startswith("in.jsonl, line 7: a JSON line must be an object")
    assert "input" in got[0] and "input" not in got[1] and "error" not in got[4]


def test_an_overlong_line_is_reported_and_never_copied(tiny_text, tmp_path, monkeypatch):
    monkeypatch.setattr(inputs_module, "MAX_LINE_BYTES", 4096)
    data = tmp_path / "in.tsv"
    data.write_text("text\nthe film\n" + "good " * 20_000 + "\nbad soup\n")  # a 100 kB line
    out = tmp_path / "r.jsonl"
    run_review(tiny_text, source(data), out=str(out), **FAST)
    got = lines_of(out)
    assert [x["id"] for x in got] == [0, 1, 2]
    assert got[1] == {"id": 1, "error": "in.tsv, line 3: the line has 100,001 bytes, over the limit of "
                                        "4,096 for one input"}
    assert out.stat().st_size < 10_000  # the 100 kB input is not in the output


def test_a_repeated_column_name_is_refused(tmp_path, tiny_tabular):
    data = tmp_path / "in.csv"
    data.write_text("text,label,text\nthe film,1,x\n")
    with pytest.raises(ExplainerError, match=r"column name 'text' appears twice in the header row \(columns 1 and 3\)"):
        InputSource("text", str(data)).check()
    from explainers import load_model
    rows = tmp_path / "rows.csv"
    rows.write_text("a,b,a\n1,2,3\n4,5,6\n")
    with pytest.raises(ExplainerError, match="rows.csv: column name 'a' appears twice"):
        load_model(str(tmp_path / "model.pt2"), "tabular", data=str(rows))


def test_empty_inputs_are_errors_before_any_model(tmp_path, tiny_text_dir, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "notes.txt").write_text("no image here")
    code, err = cli(["predict", "--modality", "image", "--file", str(tmp_path / "imgs")], capsys)
    assert code == 2 and "error: no images in folder" in err and err.count("\n") == 1
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(ExplainerError, match="empty.tsv holds no rows"):
        InputSource("text", str(empty)).check()
    empty.write_text("text\tlabel\n")
    with pytest.raises(ExplainerError, match="a header row and no rows below it"):
        InputSource("text", str(empty)).check()
