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


def test_slow_panels_draw_a_preview_first_then_the_full_settings(monkeypatch):
    """Above PREVIEW_SECONDS a method first runs with cheaper settings (IG 8 steps,
    Occlusion without overlapping windows, GradientSHAP 4 samples); the page ends on the full
    settings, and Compare sees only those."""
    import dashboard.panels as panels
    from cache.store import default_store
    from explainers import load_model, run_method
    monkeypatch.setattr(panels, "PREVIEW_SECONDS", 0.0)  # every panel counts as slow
    at = run(page("tabular", {"row": "21", "occ.window": "2"}))
    captions = "\n".join(c.value for c in at.caption)
    assert "n_steps=50" in captions and "n_samples=20" in captions and "stride=1" in captions
    adapter = load_model("tabular")
    enc = adapter.encode(21)
    target = adapter.predict(enc).index
    previews = {"integrated_gradients": {"n_steps": 8}, "occlusion": {"window": 2, "stride": 2},
                "gradient_shap": {"n_samples": 4}}
    for m, cheap in previews.items():  # each preview ran (and was stored) before the full run
        run_method(adapter, enc, m, cheap, target, default_store(), max_cost=0)
    stats = panel_stats(at)
    ig = run_method(adapter, enc, "integrated_gradients", {"n_steps": 50}, target, default_store(), max_cost=0)
    assert stats[0][0] == f"{ig.convergence_delta:+.2e}"  # the panel shows the full run's δ


def test_a_preview_names_its_delta_only_when_it_has_one(tiny_tabular):
    from dashboard.panels import preview_caption
    from explainers import run_method
    enc = tiny_tabular.encode(3)
    ig = run_method(tiny_tabular, enc, "integrated_gradients", {"n_steps": 8}, 0)
    occ = run_method(tiny_tabular, enc, "occlusion", {"window": 2, "stride": 2}, 0)
    assert preview_caption("n_steps=8 (full: 50)", ig).endswith("(its δ below): the full settings are running and will replace it.")
    assert "δ" not in preview_caption("stride=2 (full: 1)", occ)  # Occlusion has no δ


def test_preview_settings_are_the_same_method_cheaper():
    from dashboard.panels import preview_params
    ig = "integrated_gradients"
    assert preview_params(ig, {"n_steps": 50, "baselines": ["black"]}) == {"n_steps": 8, "baselines": ["black"]}
    assert preview_params(ig, {"n_steps": "auto"}) is None  # adaptive IG chooses its own steps
    # a mean of random draws: fewer of them, the same seed
    assert preview_params("gradient_shap", {"n_samples": 20, "seed": 0}) == {"n_samples": 4, "seed": 0}
    assert preview_params("shapley_sampling", {"n_samples": 10, "seed": 0}) == {"n_samples": 4, "seed": 0}
    assert preview_params("gradient_shap", {"n_samples": 3, "seed": 0}) is None  # already as cheap
    assert preview_params("kernel_shap", {"n_samples": 200, "seed": 0}) is None  # a regression: none
    assert preview_params("occlusion", {"window": 32, "stride": 16}) == {"window": 32, "stride": 32}
    assert preview_params("occlusion", {"window": 1, "stride": 1}) is None  # nothing cheaper: no preview
