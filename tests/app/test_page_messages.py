"""What the pages say (issue 22): units named per output kind, an edit that moves nothing,
the pause kept out of links, and uploads shown by their own names."""

from __future__ import annotations

import html

import pytest

from tests.app.test_pages import page, panel_stats, run


def _legend(at) -> str:
    return html.unescape(next(h.value for h in at.get("html") if "supports the target" in h.value))


@pytest.mark.parametrize("model,unit", [("breast cancer", "logits of the explained class"),
                                        ("diabetes", "the score's own units")])
def test_tabular_scores_name_the_units_of_the_output_kind(model, unit):
    """Σ is f(row) - f(baseline) in the output's units; the caption, the legend and the
    panels' help say so (never "standardised units")."""
    at = run(page("tabular", {"tab.model": model, "row": "0"}))
    caption = next(c.value for c in at.caption if c.value.startswith("Scores are in"))
    assert unit in caption and "f(row) − f(baseline)" in caption
    assert not any("standardised units" in c.value for c in at.caption)
    assert f"scores in {unit}" in _legend(at)
    helps = [c.help for c in at.caption if "δ =" in c.value]
    assert len(helps) == 3 and all(unit in h for h in helps)


def test_an_edit_that_moves_nothing_reads_zero_not_minus_zero():
    at = run(page("tabular", {"row": "13"}))
    field = at.number_input(key="wf.13.mean fractal dimension")
    field.set_value(field.value * 1.00002)  # just over the editor's 1e-5 'changed' threshold
    run(at)
    edited = next(m for m in at.metric if m.label == "Edited input")
    assert edited.delta.startswith("0.0 pts for "), edited.delta
    line = next(m.value for m in at.markdown if m.value.startswith("Prediction on the edit"))
    assert "(**0.0** pts)" in line, line


def test_a_link_carrying_live_false_still_runs():
    """The pause is a setting of the session, not of the view: a link never opens paused."""
    at = run(page("tabular", {"row": "13", "live": "false"}))
    assert at.toggle(key="live").value is True
    assert len(panel_stats(at)) == 3
