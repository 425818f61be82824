"""Issue 19, items 8-9: each quiet oddity is a one-line error or a stated behaviour."""

from __future__ import annotations

import os
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from explainers import ExplainerError, explain, load_model
from explainers.api import MAX_TEXT_CHARS
from explainers.cli import main
from explainers.review import explain_many


def cli(args, capsys) -> tuple[int, str]:
    with warnings.catch_warnings():  # main() silences warnings process-wide
        code = main(args)
    return code, capsys.readouterr().err


def test_empty_methods_on_the_command_line_are_refused(tiny_text_dir, capsys):
    for command in ("explain", "review"):
        extra = ["--text", "the film"] if command == "explain" else ["--file", os.devnull]
        code, err = cli([command, "--modality", "text", "--model", str(tiny_text_dir), *extra,
                         "--methods", ""], capsys)
        assert code == 2 and err.startswith("error: --methods '' names no method") and err.count("\n") == 1


def test_empty_method_lists_are_refused_and_none_means_the_defaults(tiny_text):
    with pytest.raises(ExplainerError, match="no method given"):
        explain(tiny_text, "the film", methods=[], use_cache=False)
    with pytest.raises(ExplainerError, match="methods must be a list of names, got int"):
        explain(tiny_text, "the film", methods=5, use_cache=False)
    r = explain(tiny_text, "the film", methods=None, params={"integrated_gradients": {"n_steps": 4},
                                                              "gradient_shap": {"n_samples": 2}}, use_cache=False)
    assert list(r.attributions) == ["integrated_gradients", "gradient_shap", "occlusion"]


def test_a_metrics_string_is_one_name(tiny_text):
    """A string is taken as one metric name, as a string of methods is one method."""
    r = explain(tiny_text, "the film was good", methods=["saliency", "occlusion"], metrics="agreement",
                use_cache=False)
    assert list(r.metrics) == ["agreement"]
    with pytest.raises(ExplainerError, match=r"unknown metric\(s\) \['agreement,flip'\]"):
        explain(tiny_text, "the film", methods="saliency", metrics="agreement,flip", use_cache=False)


def test_explain_many_refuses_one_string(tiny_text):
    for one in ("abc", b"abc", {"a": 1}):
        with pytest.raises(ExplainerError, match="explain_many takes a list of inputs, not one"):
            explain_many(tiny_text, one, ["saliency"], use_cache=False)
    out = explain_many(tiny_text, ["abc"], ["saliency"], use_cache=False)
    assert len(out) == 1


@pytest.mark.parametrize("spec", [None, 3, "", ["text"]])
def test_load_model_without_a_spec_is_one_line(spec):
    with pytest.raises(ExplainerError, match="load_model needs a model"):
        load_model(spec)


def test_a_one_row_reference_table_says_it_needs_two_rows(tmp_path, capsys):
    from explainers.adapters import TabularAdapter
    with pytest.raises(ExplainerError, match="the reference data has 1 row; it needs at least 2"):
        TabularAdapter("one", torch.nn.Linear(3, 2), pd.DataFrame([[1.0, 2.0, 3.0]], columns=list("abc")),
                       ["n", "y"])
    model = torch.jit.script(torch.nn.Linear(3, 2))
    model.save(str(tmp_path / "m.pt"))
    (tmp_path / "one.csv").write_text("a,b,c\n1,2,3\n")
    code, err = cli(["explain", "--modality", "tabular", "--model", str(tmp_path / "m.pt"), "--csv",
                     str(tmp_path / "one.csv"), "--row", "0", "--methods", "saliency", "--no-cache"], capsys)
    assert code == 2 and "needs at least 2" in err and "overflows" not in err


def test_a_huge_text_fails_fast_with_its_size(tiny_text, capsys, tiny_text_dir):
    huge = "good " * (MAX_TEXT_CHARS // 5 + 1)
    start = time.perf_counter()
    with pytest.raises(ExplainerError, match=f"the text has {len(huge):,} characters, over the limit of "
                                             f"{MAX_TEXT_CHARS:,}"):
        explain(tiny_text, huge, methods="saliency", use_cache=False)
    assert time.perf_counter() - start < 1.0  # refused before tokenizing
    out = explain_many(tiny_text, [huge, "the film"], ["saliency"], use_cache=False)
    assert isinstance(out[0], ExplainerError) and "over the limit" in str(out[0])
    assert not isinstance(out[1], ExplainerError)


def test_reference_csv_with_a_repeated_column_on_the_command_line(tiny_tabular, tmp_path, capsys):
    rows = tmp_path / "rows.csv"
    rows.write_text("f0,f1,f2,f3,f4,f0\n" + "\n".join(",".join(["1"] * 6) for _ in range(3)) + "\n")
    code, err = cli(["explain", "--modality", "tabular", "--csv", str(rows), "--row", "0",
                     "--methods", "saliency", "--no-cache"], capsys)
    assert code == 2 and "column name 'f0' appears twice in the header row (columns 1 and 6)" in err


def test_the_uploads_folder_is_bounded_least_recently_used_first(tmp_path, monkeypatch):
    from dashboard import models
    monkeypatch.setenv("ATTRIBUTION_STUDIO_CACHE", str(tmp_path))
    monkeypatch.setenv("ATTRIBUTION_STUDIO_UPLOADS_MB", str(2.5 / 1024))  # 2.5 KiB
    blobs = [bytes([i]) * 1024 for i in range(4)]
    paths = []
    for i, blob in enumerate(blobs[:2]):
        paths.append(models.save_upload(blob, ".csv"))
        os.utime(paths[-1], (1000 + i, 1000 + i))  # distinct ages: 0 oldest
    models.save_upload(blobs[0], ".csv")  # 0 used again: now the most recent
    paths.append(models.save_upload(blobs[2], ".csv"))  # 3 KiB in all: the least recent goes
    folder = lambda path: os.path.basename(os.path.dirname(path))  # one content-hash folder per upload
    left = sorted(os.listdir(tmp_path / "uploads"))
    assert left == sorted(folder(p) for p in (paths[0], paths[2]))
    big = models.save_upload(bytes(10 * 1024), ".pt2", "rec.pt2")  # larger than the cap: kept alone
    assert os.listdir(tmp_path / "uploads") == [folder(big)] and big.endswith("rec.pt2")
    monkeypatch.setenv("ATTRIBUTION_STUDIO_UPLOADS_MB", "nonsense")
    assert models.uploads_cap() == models.UPLOADS_MB * 1024 ** 2
