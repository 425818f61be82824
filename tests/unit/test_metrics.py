"""Metrics: hand-made cases with known answers, and real re-predictions on small models.

The linear model has logits ``l0 = w.x + b0`` and ``l1 = -l0``, so the target probability
after removing any set of features (set to the training mean) is known in closed form,
and with it the deletion curve, the flip point, IG's exactness and infidelity.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from explainers import ExplainerError, explain
from explainers.adapters import TabularAdapter
from explainers.metrics import METRICS, compute
from explainers.metrics.agreement import disagreement, rank_agreement, sign_agreement, topk_jaccard
from explainers.metrics.common import curve_steps, resolve_options
from explainers.metrics.faithfulness import (
    aopc,
    area_under,
    beats_random,
    comprehensiveness_sufficiency,
    eraser_steps,
    permutation_test,
)
from explainers.metrics.flip import first_flip
from explainers.metrics.sanity import cascade_stages, model_independent, parameter_layers
from explainers.metrics.stability import crosses_zero, relative_delta, suggest_steps, t_interval
from explainers.results import Attribution, Explanation

N_LIN = 12


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTRIBUTION_STUDIO_CACHE", str(tmp_path))


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


@pytest.fixture(scope="module")
def linear():
    """(adapter, encoded input, true contributions c, margin) for l0 - l1 = 2 (sum(c) - 0.5)."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, N_LIN)) * np.linspace(0.5, 50, N_LIN) + 3.0,
                         columns=[f"x{i}" for i in range(N_LIN)])
    lin = torch.nn.Linear(N_LIN, 2)
    adapter = TabularAdapter("linear", lin, frame, ["neg", "pos"])
    mean = adapter.mean[0].double().numpy()
    std = adapter.std[0].double().numpy()
    w = rng.normal(size=N_LIN) / std  # weight per z-unit ~ N(0, 1)
    with torch.no_grad():
        lin.weight[0] = torch.tensor(w)
        lin.weight[1] = -torch.tensor(w)
        b0 = -float(w @ mean) - 0.5
        lin.bias[:] = torch.tensor([b0, -b0])
    s = np.sign(w) * rng.uniform(0.3, 1.5, size=N_LIN)  # mostly positive contributions
    s[:3] *= -1  # ... and a few negative ones
    x = mean + s * std
    enc = adapter.encode({f"x{i}": float(x[i]) for i in range(N_LIN)})
    c = w * (enc.inputs[0].double().numpy() * std)  # = w_j (x_j - mean_j)
    assert c.sum() > 1.0  # predicted class 0, and removing everything flips it
    return adapter, enc, c


def make_explanation(adapter, enc, scores: dict[str, np.ndarray], target: int | None = None) -> Explanation:
    pred = adapter.predict(enc)
    t = pred.index if target is None else target
    return Explanation(model=adapter.name, modality=adapter.modality, features=list(enc.feature_labels),
                       prediction=pred, target={"index": t, "label": adapter.label(t)},
                       attributions={m: Attribution(m, np.asarray(s, float), None, 0.0, {})
                                     for m, s in scores.items()})


def mlp_adapter(n_features: int = 20, seed: int = 0) -> TabularAdapter:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(100, n_features)), columns=[f"f{i}" for i in range(n_features)])
    mlp = torch.nn.Sequential(torch.nn.Linear(n_features, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32),
                              torch.nn.ReLU(), torch.nn.Linear(32, 2))
    return TabularAdapter("mlp", mlp, frame, ["a", "b"])


# -- agreement (pure) ------------------------------------------------------------------------
def test_rank_agreement_identical_and_reversed():
    a = np.array([0.3, -1.0, 2.0, 0.1, 5.0])
    assert rank_agreement(a, a * 3) == pytest.approx((1.0, 1.0))
    assert rank_agreement(a, -a) == pytest.approx((-1.0, -1.0))
    inc = np.arange(6.0)
    assert rank_agreement(inc, inc[::-1]) == pytest.approx((-1.0, -1.0))
    rho, tau = rank_agreement(np.zeros(4), a[:4])
    assert math.isnan(rho) and math.isnan(tau)


def test_topk_jaccard_and_sign_agreement():
    a = np.array([5.0, -4.0, 0.1, 0.2])
    assert topk_jaccard(a, a, 2) == 1.0
    assert topk_jaccard(a, np.array([0.0, 0.0, 3.0, -2.0]), 2) == 0.0
    assert topk_jaccard(a, np.array([0.0, 9.0, -8.0, 0.0]), 2) == pytest.approx(1 / 3)  # {0,1} vs {1,2}
    # features with an exact zero on either side have no sign and are left out
    assert sign_agreement(np.array([1.0, -1.0, 0.0, 2.0]), np.array([1.0, 1.0, 3.0, 0.0])) == 0.5
    assert math.isnan(sign_agreement(np.zeros(3), np.ones(3)))


def test_disagreement_is_scale_free_and_peaks_on_opposite_signs():
    a = np.array([1.0, -2.0, 4.0])
    assert np.allclose(disagreement(np.stack([a, 10 * a])), 0.0)
    d = disagreement(np.stack([np.array([1.0, 0.5, 0.0]), np.array([-1.0, 0.5, 0.0])]))
    assert d.tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert disagreement(a[None]).tolist() == [0.0, 0.0, 0.0]


# -- faithfulness (pure) ---------------------------------------------------------------------
def test_aopc_area_and_eraser_on_known_curves():
    assert aopc([1.0, 0.5, 0.0]) == pytest.approx(0.5)  # mean of 0, 0.5, 1
    assert aopc([0.8, 0.8, 0.8]) == 0.0
    assert area_under([0.0, 0.5, 1.0], [0.0, 0.5, 1.0]) == pytest.approx(0.5)
    # ERASER's bins 1/5/10/20/50 %, ceil(f * n), every bin kept (at least one feature each)
    assert eraser_steps(10) == [1, 1, 1, 2, 5]
    assert eraser_steps(200) == [2, 10, 20, 40, 100]
    assert eraser_steps(1) == [1, 1, 1, 1, 1] and eraser_steps(0) == []
    comp, suff = comprehensiveness_sufficiency(0.9, {1: 0.5, 2: 0.1}, {1: 0.6, 2: 0.9}, [1, 2])
    assert comp == pytest.approx(((0.9 - 0.5) + (0.9 - 0.1)) / 2)
    assert suff == pytest.approx(((0.9 - 0.6) + 0.0) / 2)
    assert curve_steps(10) == list(range(11))
    assert curve_steps(30) == list(range(0, 31, 3))
    # tenths: floor(f n) up to the middle, n - floor((1 - f) n) above it (symmetric steps)
    assert curve_steps(196) == [0, 19, 39, 58, 78, 98, 118, 138, 157, 177, 196]
    assert curve_steps(15) == [0, 1, 3, 4, 6, 7, 9, 11, 12, 14, 15]  # odd n: the middle alone
    for n in (11, 12, 15, 23, 60, 196):  # every complement is a step but ceil(n / 2)
        assert {n - k for k in curve_steps(n)} - set(curve_steps(n)) <= {n - n // 2}, n
    assert beats_random(0.01, 0.05) and beats_random(0.05, 0.05) and not beats_random(0.06, 0.05)
    assert not beats_random(float("nan"))


def test_permutation_test_on_known_answers():
    """The Monte-Carlo p-value counts random AOPCs at or above the method's, plus one."""
    random_aopcs = np.arange(100) / 100.0  # 0.00 ... 0.99, mean 0.495
    p, effect = permutation_test(2.0, random_aopcs)  # above every random order
    assert p == pytest.approx(1 / 101)
    assert effect == pytest.approx((2.0 - 0.495) / np.std(random_aopcs, ddof=1))
    p, _ = permutation_test(0.895, random_aopcs)  # ten orders (0.90 ... 0.99) beat it
    assert p == pytest.approx(11 / 101)
    p, effect = permutation_test(-1.0, random_aopcs)  # below all: p = 1, negative effect
    assert p == 1.0 and effect < 0
    p, _ = permutation_test(0.5, [0.5] * 10)  # ties count against the method
    assert p == 1.0
    assert permutation_test(0.5, [0.5, 0.5])[1] == 0.0
    assert permutation_test(0.7, [0.5, 0.5])[1] == math.inf
    assert all(math.isnan(v) for v in permutation_test(float("nan"), random_aopcs))


def test_first_flip():
    assert first_flip([0, 0, 1, 1], 0) == 3
    assert first_flip([2], 0) == 1
    assert first_flip([0, 0], 0) is None


# -- faithfulness and flip on the linear model ---------------------------------------------
def test_deletion_curve_matches_closed_form_and_true_attribution_beats_random(linear):
    adapter, enc, c = linear
    expl = make_explanation(adapter, enc, {"truth": c, "reversed": -c})
    assert expl.target["index"] == 0
    m = compute(adapter, enc, expl, ["faithfulness"], {"random_orders": 20})["faithfulness"]
    order = np.argsort(-c, kind="stable")
    removed = np.concatenate([[0.0], np.cumsum(c[order])])
    steps = curve_steps(N_LIN)  # 12 features: steps at 0 %, 10 %, ..., 100 %
    assert steps == [0, 1, 2, 3, 4, 6, 8, 9, 10, 11, 12]
    expected = sigmoid(2 * (c.sum() - removed[steps] - 0.5))
    assert np.allclose(m["methods"]["truth"]["deletion"], expected, atol=1e-4)
    assert m["fractions"] == pytest.approx([k / N_LIN for k in steps])
    truth, rev, rnd = m["methods"]["truth"], m["methods"]["reversed"], m["random"]
    assert truth["deletion_aopc"] > rnd["deletion_aopc"] + rnd["deletion_aopc_std"]
    # the true order beats every one of the 20 random orders: the smallest possible p-value
    assert truth["p_value"] == pytest.approx(1 / 21) and truth["beats_random"] is True
    assert truth["effect_size"] == pytest.approx(
        (truth["deletion_aopc"] - rnd["deletion_aopc"]) / rnd["deletion_aopc_std"], rel=1e-6)
    assert rev["deletion_aopc"] < rnd["deletion_aopc"] and rev["beats_random"] is False
    assert rev["p_value"] > 0.5 and rev["effect_size"] < 0
    assert m["perturbation"] == "baseline" and rnd["orders"] == 20
    # insertion from the all-baseline input: the true order recovers the class fastest
    assert truth["insertion_auc"] > rnd["insertion_auc"] > rev["insertion_auc"]
    assert truth["comprehensiveness"] > rnd["comprehensiveness"]
    assert truth["sufficiency"] < rnd["sufficiency"]
    assert m["baseline"] == "train_mean" and len(rnd["deletion"]) == len(steps)


def test_flip_count_matches_hand_computation(linear):
    adapter, enc, c = linear
    expl = make_explanation(adapter, enc, {"truth": c, "reversed": -c})
    f = compute(adapter, enc, expl, ["flip"], {})["flip"]
    order = np.argsort(-c, kind="stable")
    remaining = c.sum() - np.cumsum(c[order])
    expected = int(np.flatnonzero(remaining < 0.5)[0]) + 1  # class 1 once l0 - l1 < 0
    t = f["methods"]["truth"]
    assert t["count"] == expected
    assert t["indices"] == order[:expected].tolist()
    assert t["features"] == [f"x{i}" for i in order[:expected]]
    assert t["new_label"] == "pos" and f["original_label"] == "neg"
    rev = f["methods"]["reversed"]
    assert rev["count"] is None or rev["count"] > expected
    assert f["best"] == "truth"
    assert f["random"]["count"] is None or f["random"]["count"] >= expected
    # the edit is reported in the user's units: the removed columns at their training mean
    mean = adapter.mean[0].double().numpy()
    assert t["edited"] == pytest.approx({f"x{i}": float(mean[i]) for i in order[:expected]}, rel=1e-5)
    assert f["perturbation"] == "baseline" and "train_mean" in f["perturbation_note"]


def test_flip_for_a_non_predicted_target_removes_its_opposition(linear):
    """Explaining class 1 (not predicted): the target-1 scores are -c, and the features most
    opposed to class 1 (largest c) are what holds the prediction, so they are deleted first."""
    adapter, enc, c = linear
    expl = make_explanation(adapter, enc, {"truth_for_target_1": -c}, target=1)
    f = compute(adapter, enc, expl, ["flip"], {})["flip"]
    order = np.argsort(-c, kind="stable")
    remaining = c.sum() - np.cumsum(c[order])
    expected = int(np.flatnonzero(remaining < 0.5)[0]) + 1
    assert f["methods"]["truth_for_target_1"]["count"] == expected
    assert f["order"] == "most opposition to the target first"


def test_agreement_block(linear):
    adapter, enc, c = linear
    expl = make_explanation(adapter, enc, {"truth": c, "twice": 2 * c, "reversed": -c})
    a = compute(adapter, enc, expl, ["agreement"], {"k": 3})["agreement"]
    assert a["methods"] == ["truth", "twice", "reversed"] and a["k"] == 3
    assert a["spearman"][0][1] == pytest.approx(1.0) and a["spearman"][0][2] == pytest.approx(-1.0)
    assert a["kendall"][0][2] == pytest.approx(-1.0)
    assert a["topk_jaccard"][0][2] == 1.0  # same magnitudes
    assert a["sign_agreement"][0][2] == 0.0 and a["sign_agreement"][0][1] == 1.0
    assert len(a["disagreement"]) == N_LIN == len(a["feature_labels"])
    default_k = compute(adapter, enc, expl, ["agreement"], {})["agreement"]["k"]
    assert default_k == 1  # round(10 % of 12)


# -- robustness ------------------------------------------------------------------------------
def test_infidelity_is_zero_for_exact_contributions(linear):
    adapter, enc, c = linear
    rng = np.random.default_rng(1)
    expl = make_explanation(adapter, enc, {"truth": c, "noise": rng.normal(size=N_LIN)})
    r = compute(adapter, enc, expl, ["robustness"], {"n_perturb_samples": 20})["robustness"]
    # bound: the model's float32 logit differences are exact to ~n eps32 |terms|, and the
    # (float64) infidelity is the square of that error
    lin = adapter.module
    raw = adapter.mean[0] + enc.inputs[0] * adapter.std[0]
    terms = float((lin.weight[0] * raw).abs().sum() + lin.bias.abs().max())
    bound = (4 * N_LIN * np.finfo(np.float32).eps * terms) ** 2
    assert 0.0 <= r["truth"]["infidelity"] <= bound
    assert r["noise"]["infidelity"] > 1e-3
    assert r["truth"]["sensitivity_max"] is None  # not a registered method: cannot re-run


def test_ig_convergence_and_sensitivity_on_linear_model(linear):
    adapter, enc, _ = linear
    res = explain(adapter, enc, methods=["integrated_gradients"], use_cache=False,
                  metrics=["stability", "robustness"],
                  metric_params={"ig_steps": "16,4,8", "n_perturb_samples": 5, "sensitivity_samples": 3})
    ig = res.metrics["stability"]["ig_convergence"]
    assert ig["n_steps"] == [4, 8, 16]
    assert max(abs(d) for d in ig["delta"]) < 1e-3  # IG is exact on a linear model
    assert ig["suggested_n_steps"] == 4
    assert ig["sum"][0] == pytest.approx(ig["sum"][2], rel=1e-4)
    s = res.metrics["robustness"]["integrated_gradients"]["sensitivity_max"]
    assert 0.0 < s < 0.2  # IG = w (x - b): noise of 0.02 z-units barely moves it


# -- stability -------------------------------------------------------------------------------
def test_stability_pure_functions():
    mean, low, high = t_interval(np.array([[1.0, 2.0], [3.0, 2.0]]))
    half = 12.7062047 * math.sqrt(2) / math.sqrt(2)
    assert mean.tolist() == [2.0, 2.0]
    assert low.tolist() == pytest.approx([2 - half, 2.0]) and high.tolist() == pytest.approx([2 + half, 2.0])
    assert crosses_zero(low, high) == [0]
    assert suggest_steps([32, 8, 16], [0.01, 0.2, 0.04], 0.05) == 16
    assert suggest_steps([8, 16], [0.2, 0.1], 0.05) is None
    assert relative_delta(total=2.0, delta=0.5) == pytest.approx(0.5 / 1.5)
    assert relative_delta(total=0.01, delta=0.01) == pytest.approx(0.1)  # floor of 0.1


def test_stability_block_and_store_reuse(tmp_path):
    from cache.store import AttributionStore
    adapter = mlp_adapter(8)
    store = AttributionStore(tmp_path / "a.sqlite")
    params = {"integrated_gradients": {"n_steps": 8}, "gradient_shap": {"n_samples": 4}}
    opts = {"ig_steps": [4, 8], "seeds": 4}
    res = explain(adapter, 0, methods=["integrated_gradients", "gradient_shap", "saliency"],
                  params=params, metrics=["stability"], metric_params=opts, store=store)
    st = res.metrics["stability"]
    gs = st["gradient_shap"]
    assert gs["seeds"] == [0, 1, 2, 3]
    low, mean, high = map(np.array, (gs["low"], gs["mean"], gs["high"]))
    assert np.all(low <= mean) and np.all(mean <= high) and np.any(high > low)
    assert gs["not_significant"] == [i for i in range(8) if low[i] <= 0 <= high[i]]
    assert set(st["baseline_sensitivity"]) == {"integrated_gradients", "gradient_shap"}  # saliency has none
    bs = st["baseline_sensitivity"]["integrated_gradients"]
    assert bs["baselines"] == list(adapter.baseline_kinds)
    assert [bs["spearman"][i][i] for i in range(3)] == [1.0, 1.0, 1.0]
    n_stored = len(store)
    again = explain(adapter, 0, methods=["integrated_gradients", "gradient_shap", "saliency"],
                    params=params, metrics=["stability"], metric_params=opts, store=store)
    assert len(store) == n_stored  # every re-run was a cache hit
    st2 = again.metrics["stability"]
    assert st2["ig_convergence"]["sum"] == pytest.approx(st["ig_convergence"]["sum"], rel=1e-6)
    assert st2["gradient_shap"]["mean"] == pytest.approx(gs["mean"], rel=1e-6, abs=1e-9)


# -- sanity ----------------------------------------------------------------------------------
def test_cascade_stages_and_flag():
    assert cascade_stages(3, 3) == [1, 2, 3]
    assert cascade_stages(100, 4) == [1, 34, 67, 100]
    assert cascade_stages(2, 5) == [1, 2]
    assert cascade_stages(10, 1) == [10]
    assert model_independent([0.95, 0.9, 0.8], 0.5) is True
    assert model_independent([0.9, 0.2], 0.5) is False
    assert model_independent([0.9, None], 0.5) is False and model_independent([], 0.5) is False


def test_parameter_layers_follow_the_forward_pass():
    class HeadFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(4, 2)  # registered first, called last
            self.body = torch.nn.Linear(3, 4)
            self.unused = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.head(torch.relu(self.body(x)))

    m = HeadFirst()
    names = [n for n, _ in parameter_layers(m, lambda: m(torch.zeros(1, 3)))]
    assert names == ["body", "head"]
    assert [n for n, _ in parameter_layers(m)] == ["head", "body", "unused"]


def test_sanity_ig_depends_on_model_and_shared_model_untouched(monkeypatch):
    from explainers import registry
    from explainers.methods.base import Method

    class InputMagnitude(Method):
        """|x - baseline|: looks like an explanation but never asks the model."""
        name = "input_magnitude"
        title = "Input magnitude"
        modalities = ("tabular",)

        def cost(self, adapter, enc, params):
            return 1

        def attribute(self, adapter, enc, target, params, forward):
            base = adapter.baselines(enc, params["baselines"]).mean(0, keepdim=True)
            return (enc.inputs - base).abs(), None

    monkeypatch.setitem(registry._METHODS, "input_magnitude", InputMagnitude)
    adapter = mlp_adapter(24)
    before = {k: v.clone() for k, v in adapter.module.state_dict().items()}
    rng = np.random.default_rng(3)
    # |x - mean| equal for all features, so |IG| ranks only the model's gradients
    z = rng.choice([-1.0, 1.0], size=24) * (1 + 0.1 * rng.random(24))
    raw = {f"f{i}": float(adapter.mean[0, i] + adapter.std[0, i] * z[i]) for i in range(24)}
    res = explain(adapter, raw, methods=["integrated_gradients", "input_magnitude"], use_cache=False,
                  params={"integrated_gradients": {"n_steps": 16}}, metrics=["sanity"])
    s = res.metrics["sanity"]
    assert s["stages"] == ["4 (1/3 layers)", "2 and above (2/3 layers)", "0 and above (3/3 layers)"]
    ig = s["methods"]["integrated_gradients"]
    assert len(ig["spearman_abs"]) == 3 and ig["spearman_abs"][-1] < 0.5
    assert ig["independent_of_model"] is False
    fake = s["methods"]["input_magnitude"]
    assert fake["spearman_abs"] == pytest.approx([1.0, 1.0, 1.0])
    assert fake["independent_of_model"] is True
    after = adapter.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the shared model still predicts as before
    assert explain(adapter, raw, methods=["integrated_gradients"], use_cache=False,
                   params={"integrated_gradients": {"n_steps": 16}}).prediction == res.prediction


# -- validation ------------------------------------------------------------------------------
def test_unknown_metric_and_bad_options_are_refused(linear):
    adapter, enc, c = linear
    expl = make_explanation(adapter, enc, {"truth": c})
    with pytest.raises(ExplainerError, match="unknown metric"):
        compute(adapter, enc, expl, ["faithfulness", "fidelity"], {})
    for bad in ({"k": 0}, {"k": "x"}, {"baseline": "zeros"}, {"tolerance": -1}, {"ig_steps": "4,x"},
                {"seeds": 1}, {"random_orders": 1.5}, {"topk": 3}):
        with pytest.raises(ExplainerError):
            resolve_options(bad, adapter, enc)
    assert resolve_options({"baseline": "train_median", "seeds": [3, 7]}, adapter, enc)["seeds"] == [3, 7]
    assert resolve_options({"k": 99}, adapter, enc)["k"] == N_LIN  # capped at the feature count
    assert METRICS == ("agreement", "faithfulness", "flip", "stability", "sanity", "robustness")
    assert compute(adapter, enc, expl, [], {}) == {}


def test_all_metrics_json_structure():
    adapter = mlp_adapter(6)
    res = explain(adapter, 1, methods=["integrated_gradients", "gradient_shap", "occlusion"],
                  params={"integrated_gradients": {"n_steps": 8}, "gradient_shap": {"n_samples": 4}},
                  use_cache=False, metrics=list(METRICS),
                  metric_params={"ig_steps": [4, 8], "seeds": 3, "random_orders": 4, "sanity_stages": 2,
                                 "n_perturb_samples": 4, "sensitivity_samples": 2})
    d = res.to_dict()["metrics"]
    assert set(d) == set(METRICS)
    assert {"methods", "k", "spearman", "kendall", "topk_jaccard", "sign_agreement", "disagreement",
            "feature_labels"} <= set(d["agreement"])
    f = d["faithfulness"]
    assert {"baseline", "fractions", "methods", "random"} <= set(f)
    assert {"deletion", "insertion", "deletion_aopc", "insertion_auc", "comprehensiveness",
            "sufficiency", "beats_random"} <= set(f["methods"]["occlusion"])
    assert {"deletion", "insertion", "deletion_aopc", "deletion_aopc_std", "insertion_auc",
            "comprehensiveness", "sufficiency"} <= set(f["random"])
    assert {"methods", "random", "best", "original_label"} <= set(d["flip"])
    assert {"count", "indices", "features", "new_label"} <= set(d["flip"]["random"])
    st = d["stability"]
    assert {"n_steps", "sum", "delta", "tolerance", "suggested_n_steps"} <= set(st["ig_convergence"])
    assert {"seeds", "mean", "low", "high", "not_significant", "feature_labels"} <= set(st["gradient_shap"])
    assert set(st["baseline_sensitivity"]) == {"integrated_gradients", "gradient_shap", "occlusion"}
    assert len(d["sanity"]["stages"]) == 2
    assert {"spearman_abs", "spearman", "independent_of_model"} <= set(d["sanity"]["methods"]["occlusion"])
    assert set(d["robustness"]) == {"integrated_gradients", "gradient_shap", "occlusion"}
    assert all(v["sensitivity_max"] is not None for v in d["robustness"].values())
    import json
    json.dumps(d, allow_nan=False)


# -- other modalities (tiny models from tests/conftest.py) ----------------------------------
def test_metrics_on_tiny_text_and_image(tiny_adapters):
    from explainers.metrics.sanity import parameter_layers as layers
    for modality in ("text", "image"):
        adapter, raw = tiny_adapters[modality]
        before = {k: v.clone() for k, v in adapter.module.state_dict().items()}
        res = explain(adapter, raw, methods=["saliency", "occlusion"], use_cache=False,
                      params={"occlusion": {"window": 8, "stride": 8}} if modality == "image" else None,
                      metrics=["agreement", "faithfulness", "flip", "sanity", "stability", "robustness"],
                      metric_params={"random_orders": 2, "sanity_stages": 2, "n_perturb_samples": 3,
                                     "sensitivity_samples": 2})
        enc = adapter.encode(raw)
        n = enc.n_features
        m = res.metrics
        assert len(m["agreement"]["disagreement"]) == n
        assert len(m["faithfulness"]["methods"]["occlusion"]["deletion"]) == len(curve_steps(n))
        p0 = res.prediction.probabilities[res.target["index"]]
        assert m["faithfulness"]["methods"]["saliency"]["deletion"][0] == pytest.approx(p0, abs=1e-5)
        assert len(m["sanity"]["methods"]["saliency"]["spearman_abs"]) == 2
        assert list(m["stability"]["baseline_sensitivity"]) == ["occlusion"]
        assert all(v["infidelity"] is not None and v["sensitivity_max"] is not None
                   for v in m["robustness"].values())
        assert all(torch.equal(before[k], v) for k, v in adapter.module.state_dict().items())
        if modality == "text":
            names = [name for name, _ in layers(adapter.module, lambda: adapter.forward(enc.inputs, enc))]
            assert not any("word_embeddings" in name for name in names)  # fed inputs_embeds
            assert names[-1] == "classifier"


def test_metric_cost_is_an_upper_bound_of_the_work(monkeypatch):
    """Count the examples the model really sees per metric; the estimate must cover them."""
    from explainers.metrics import metric_costs
    adapter = mlp_adapter(n_features=8)
    enc = adapter.encode(2)
    methods = {"integrated_gradients": {"n_steps": 8}, "gradient_shap": {"n_samples": 4},
               "occlusion": {}}
    expl = explain(adapter, enc, methods=list(methods), params=methods, use_cache=False)
    options = {"ig_steps": [4, 8], "seeds": 2, "sanity_stages": 2, "n_perturb_samples": 3,
               "sensitivity_samples": 2, "random_orders": 3}
    costs = metric_costs(adapter, enc, list(METRICS), methods, options)
    seen = []
    original = type(adapter).forward

    def counting(self, x, e):
        seen.append(int(x.shape[0]))
        return original(self, x, e)

    monkeypatch.setattr(type(adapter), "forward", counting)
    for name in METRICS:
        seen.clear()
        compute(adapter, enc, expl, [name], options, params=methods)
        assert sum(seen) <= costs[name], name
        if name not in ("agreement",):
            assert sum(seen) > 0, name
    assert costs["agreement"] == 0
