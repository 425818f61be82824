"""Baselines that say what they are, GradientSHAP's distribution default, IG's per-baseline
deltas, the sanity caveat and the robustness radius (issue 8), on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explainers import explain, get_method, run_method
from explainers.baselines import baseline_predictions, neutral_info, neutrality
from explainers.methods.gradient_shap import STOCHASTIC_IG_NOTE
from explainers.metrics.sanity import INPUT_FACTOR_CAVEAT, caveat


def test_neutrality_on_known_distributions():
    assert neutrality([0.5, 0.5]) == pytest.approx(1.0)
    assert neutrality([1.0, 0.0]) == pytest.approx(0.0)
    assert neutrality([0.71, 0.29]) == pytest.approx(1 - 2 * 0.21)
    assert neutrality([0.25] * 4) == pytest.approx(1.0)
    assert neutrality([1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.0)
    assert neutrality([0.5, 0.5, 0.0, 0.0]) == pytest.approx(1 - 0.5 / 0.75)


@pytest.mark.parametrize("modality", ["text", "image", "tabular"])
def test_baseline_predictions_are_the_models_predictions_on_the_baselines(tiny_adapters, modality):
    adapter, raw = tiny_adapters[modality]
    enc = adapter.encode(raw)
    report = baseline_predictions(adapter, enc)
    assert list(report) == list(adapter.baseline_kinds)
    for kind, r in report.items():
        base = adapter.baselines(enc, [kind])
        with torch.no_grad():
            probs = torch.softmax(adapter.forward(base, enc), -1).mean(0).numpy()
        np.testing.assert_allclose(r.prediction.probabilities, probs, atol=1e-6)
        assert r.prediction.index == int(probs.argmax()) and r.rows == base.shape[0]
        assert r.neutrality == pytest.approx(neutrality(probs))
        assert (r.warning is not None) == (r.neutrality < 0.5)
        assert r.to_dict()["prediction"]["label"] == adapter.label(r.prediction.index)


@pytest.mark.parametrize("modality", ["text", "image"])
def test_neutral_baseline_is_at_least_as_neutral_as_every_candidate(tiny_adapters, modality):
    adapter, raw = tiny_adapters[modality]
    enc = adapter.encode(raw)
    report = baseline_predictions(adapter, enc)
    info = neutral_info(adapter, enc)
    assert set(info["candidates"]) >= set(adapter.neutral_candidates)
    assert report["neutral"].neutrality >= max(info["candidates"].values()) - 1e-9
    for kind in adapter.neutral_candidates:
        assert report["neutral"].neutrality >= report[kind].neutrality - 1e-6
    if modality == "text":  # the shipped sentences are one of the candidates
        assert "sample average" in info["candidates"]
        base = adapter.baseline(enc, "neutral")
        pos = enc.context["content_positions"]
        special = torch.ones(enc.inputs.shape[1], dtype=torch.bool)
        special[pos] = False
        assert torch.equal(base[0, special], enc.inputs[0, special])  # [CLS]/[SEP] kept


def test_neutral_is_the_text_default_and_gradient_shap_uses_a_distribution(tiny_text):
    assert tiny_text.default_baselines == ("neutral",)
    specs = {s.name: s for s in get_method("gradient_shap").param_specs(tiny_text)}
    assert specs["baselines"].default == list(tiny_text.distribution_baselines)
    assert len(specs["baselines"].default) > 1


def test_gradient_shap_notes_and_efficiency_error(tiny_text):
    enc = tiny_text.encode("the soup was bland and the service was terrible !")
    one = run_method(tiny_text, enc, "gradient_shap", {"baselines": ["pad"], "n_samples": 8}, 0)
    assert one.notes == [STOCHASTIC_IG_NOTE] and "stochastic IG" in one.to_dict()["notes"][0]
    many = run_method(tiny_text, enc, "gradient_shap", {"n_samples": 8}, 0)
    assert many.notes == []
    base = tiny_text.baselines(enc, many.params["baselines"])
    with torch.no_grad():
        fx = float(tiny_text.forward(enc.inputs, enc)[0, 0])
        fb = float(tiny_text.forward(base, enc)[:, 0].mean())
    # the SHAP efficiency error: sum of scores minus f(x) - E_b f(b), over the baseline set
    assert many.convergence_delta == pytest.approx(many.scores.sum() - (fx - fb), abs=1e-5)
    noisy = run_method(tiny_text, enc, "gradient_shap",
                       {"baselines": ["pad"], "n_samples": 4, "stdevs": 0.01}, 0)
    assert noisy.notes and "smoothed Integrated Gradients" in noisy.notes[0]


def test_ig_reports_each_baselines_delta_and_no_cancelling_mean(tiny_text):
    enc = tiny_text.encode("the soup was bland and the service was terrible !")
    kinds = ["pad", "mask", "zero"]
    # riemann_left: its deltas on the tiny model (~5e-6 of ~1e-4 gaps) are quadrature error;
    # Gauss-Legendre's (~1e-9) are float32 noise, so their order would be a coin toss per CPU
    p = {"n_steps": 4, "method": "riemann_left"}
    both = run_method(tiny_text, enc, "integrated_gradients", {"baselines": kinds, **p}, 0)
    singles = [run_method(tiny_text, enc, "integrated_gradients", {"baselines": [k], **p}, 0)
               for k in kinds]
    per = [s.convergence_delta for s in singles]
    stats = both.delta_stats
    np.testing.assert_allclose(stats["per_baseline"], per, rtol=1e-3, atol=1e-6)
    assert stats["mean_abs"] == pytest.approx(np.mean(np.abs(per)), rel=1e-3, abs=1e-7)
    assert stats["max_abs"] == pytest.approx(np.max(np.abs(per)), rel=1e-3, abs=1e-7)
    worst = per[int(np.argmax(np.abs(per)))]
    assert both.convergence_delta == pytest.approx(worst, rel=1e-3, abs=1e-7)
    assert abs(both.convergence_delta) >= abs(np.mean(per)) - 1e-9  # never the cancelling mean
    for s, gap in zip(singles, stats["gaps"]):  # gaps are f(x) - f(b_k)
        assert gap == pytest.approx(s.scores.sum() - s.convergence_delta, rel=1e-3, abs=1e-5)
    assert both.to_dict()["delta_stats"]["max_abs"] == pytest.approx(stats["max_abs"], rel=1e-6)


def test_sanity_caveat_names_the_input_factor():
    assert caveat("integrated_gradients", True) == INPUT_FACTOR_CAVEAT
    assert "(input - baseline)" in INPUT_FACTOR_CAVEAT and "Adebayo" in INPUT_FACTOR_CAVEAT
    assert caveat("integrated_gradients", False) is None
    assert caveat("saliency", True) is None  # no input factor: no excuse
    assert caveat("not_a_method", True) is None


def test_sanity_block_carries_the_caveat_where_it_flags(tiny_tabular):
    r = explain(tiny_tabular, 3, methods=["integrated_gradients", "saliency"], use_cache=False,
                metrics=["sanity"], metric_params={"sanity_stages": 2, "sanity_threshold": -1.0})
    block = r.metrics["sanity"]["methods"]
    assert block["integrated_gradients"]["independent_of_model"] is True  # threshold -1 flags all
    assert block["integrated_gradients"]["caveat"] == INPUT_FACTOR_CAVEAT
    assert block["saliency"]["caveat"] is None


def test_robustness_states_its_radius_in_the_inputs_own_scale(tiny_text):
    text = "the soup was bland and the service was terrible !"
    r = explain(tiny_text, text, methods=["saliency"], use_cache=False, metrics=["robustness"],
                metric_params={"sensitivity_radius": 0.05, "sensitivity_samples": 2,
                               "n_perturb_samples": 3})
    b = r.metrics["robustness"]["saliency"]
    enc = tiny_text.encode(text)
    content = enc.inputs[0, enc.context["content_positions"]].double()
    assert b["input_std"] == pytest.approx(float(content.std()), rel=1e-5)
    assert b["sensitivity_radius_in_std"] == pytest.approx(0.05 / float(content.std()), rel=1e-5)
    assert b["sensitivity_radius"] == 0.05 and b["infidelity_drop_probability"] == 0.25
    assert f"{b['sensitivity_radius_in_std']:.2f} x the input's std" in b["perturbation_note"]


def test_one_sentence_names_every_flagged_baseline(tiny_text):
    """A panel with several baselines shows one warning naming each flagged kind with its
    neutrality (and none when no kind is flagged), by the same rule as each kind's own."""
    from explainers.baselines import NEUTRALITY_WARN, BaselinePrediction, flagged_baselines
    enc = tiny_text.encode("a good film")
    preds = baseline_predictions(tiny_text, enc, ["pad", "mask", "unk"])
    # the rule itself, made to flag two kinds of three by setting their neutrality below it
    for kind, score in (("pad", 0.9), ("mask", 0.31), ("unk", 0.2)):
        b = preds[kind]
        preds[kind] = BaselinePrediction(b.kind, b.prediction, score, b.rows, b.description,
                                         "flagged" if score < NEUTRALITY_WARN else None)
    line = flagged_baselines(preds)
    assert line.startswith("Baselines mask (neutrality 0.31; ") and " and unk (neutrality 0.20; " in line
    assert "(2 of the 3 used) are below the neutrality rule 0.5" in line and "pad" not in line
    assert flagged_baselines({"pad": preds["pad"]}) is None
    one = flagged_baselines({"unk": preds["unk"]})
    assert one.startswith("Baseline unk (neutrality 0.20; ") and " is below " in one
