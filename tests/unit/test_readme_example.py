"""The README's recommender walkthrough runs as printed and prints what the README says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> tuple[str, str]:
    """The walkthrough's code block and the output its last comment line states."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### The recommender example, end to end"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    stated = code.rstrip().splitlines()[-1]
    assert stated.startswith("# "), "the block ends with the line it prints, as a comment"
    return code, stated[2:]


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_recommender_example_prints_what_the_readme_says(tmp_path, monkeypatch):
    code, stated = _example()
    monkeypatch.chdir(tmp_path)  # it writes rows.csv and rec.pt2 where it runs
    out, namespace = io.StringIO(), {"__name__": "readme_example"}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), namespace)
    assert out.getvalue().strip().splitlines()[-1] == stated
    # the dashboard's ranked read-out the README quotes, from the same scores
    from dashboard.render import ranked_text
    readme = " ".join(README.read_text(encoding="utf-8").split())
    quoted = re.search(r'to 3 significant digits \("(.*?)"', readme)
    assert quoted and quoted.group(1) == ranked_text(namespace["m"].feature_names, namespace["fa"])
