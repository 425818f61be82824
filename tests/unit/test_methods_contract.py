"""Contract tests generated for every registered method x every tiny adapter.

Each method must give finite scores of the right shape, leave no hook and no changed state
on the model (also after an exception mid-run), be deterministic, and IG must satisfy
completeness within its reported delta.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from explainers import ExplainerError, get_method, list_methods, run_method
from explainers.engine import estimate_cost

MODALITIES = ("text", "image", "tabular")
FAST = {"integrated_gradients": {"n_steps": 16}, "gradient_shap": {"n_samples": 8}}
CASES = [(m, name) for m in MODALITIES for name in list_methods(m)]


def hooks(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in module.modules())


def snapshot(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def expected_shape(adapter, enc):
    if adapter.modality == "image":
        return tuple(enc.inputs.shape[2:])
    return (enc.n_features,)


def test_every_required_method_is_registered():
    names = set(list_methods())
    assert {"integrated_gradients", "gradient_shap", "occlusion", "saliency",
            "input_x_gradient", "feature_ablation"} <= names


@pytest.mark.parametrize("modality,name", CASES)
def test_contract(tiny_adapters, modality, name):
    adapter, raw = tiny_adapters[modality]
    enc = adapter.encode(raw)
    before = snapshot(adapter.module)
    calls = []
    res = run_method(adapter, enc, name, FAST.get(name), target=1,
                     progress=lambda m, f: calls.append(f))
    assert res.scores.shape == expected_shape(adapter, enc)
    assert np.all(np.isfinite(res.scores))
    assert np.abs(res.scores).sum() > 0, "an all-zero map means the method saw no signal"
    assert hooks(adapter.module) == 0
    assert not adapter.module.training
    assert all(not p.requires_grad for p in adapter.module.parameters())
    after = snapshot(adapter.module)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert calls and calls[-1] == 1.0 and all(0 <= f <= 1 for f in calls)
    assert (res.convergence_delta is not None) == get_method(name).has_convergence_delta
    again = run_method(adapter, enc, name, FAST.get(name), target=1)
    np.testing.assert_allclose(res.scores, again.scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("modality", MODALITIES)
def test_ig_completeness(tiny_adapters, modality):
    """sum(IG) = f(x) - f(baseline) up to the reported convergence delta."""
    adapter, raw = tiny_adapters[modality]
    enc = adapter.encode(raw)
    res = run_method(adapter, enc, "integrated_gradients", {"n_steps": 64}, target=0)
    base = adapter.baselines(enc, res.params["baselines"])
    with torch.no_grad():
        fx = adapter.forward(enc.inputs, enc)[0, 0]
        fb = adapter.forward(base, enc)[:, 0].mean()
    gap = float(fx - fb)
    # Text scores exclude [CLS]/[SEP], whose IG is exactly 0 (the baseline keeps them).
    assert res.scores.sum() == pytest.approx(gap + res.convergence_delta, abs=1e-3)
    assert abs(res.convergence_delta) < 0.05 * max(1.0, abs(gap))


@pytest.mark.parametrize("modality", MODALITIES)
def test_state_restored_after_exception(tiny_adapters, modality):
    adapter, raw = tiny_adapters[modality]
    enc = adapter.encode(raw)
    before = snapshot(adapter.module)

    def boom(method, fraction):
        if fraction < 1.0:
            raise RuntimeError("user changed a widget mid-run")

    for name in ("integrated_gradients", "occlusion", "gradient_shap"):
        with pytest.raises(RuntimeError):
            run_method(adapter, enc, name, FAST.get(name), progress=boom)
        assert hooks(adapter.module) == 0
        assert not adapter.module.training
        assert all(not p.requires_grad for p in adapter.module.parameters())
    after = snapshot(adapter.module)
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the lock was released: another thread can take it at once
    got = []

    def take():
        ok = adapter.lock.acquire(timeout=5)
        got.append(ok)
        if ok:
            adapter.lock.release()

    t = threading.Thread(target=take)
    t.start()
    t.join()
    assert got == [True]


def test_concurrent_callers_get_serial_results(tiny_text):
    enc = tiny_text.encode("the film was not very good")
    serial = run_method(tiny_text, enc, "integrated_gradients", {"n_steps": 16}).scores
    out, errors = [], []

    def work():
        try:
            out.append(run_method(tiny_text, enc, "integrated_gradients", {"n_steps": 16}).scores)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for scores in out:
        np.testing.assert_allclose(scores, serial, rtol=1e-5, atol=1e-6)


def test_several_baselines_are_averaged(tiny_tabular):
    enc = tiny_tabular.encode(3)
    kinds = ["train_mean", "train_median"]
    runs = [run_method(tiny_tabular, enc, "integrated_gradients", {"n_steps": 32, "baselines": [k]}, 0).scores
            for k in kinds]
    both = run_method(tiny_tabular, enc, "integrated_gradients", {"n_steps": 32, "baselines": kinds}, 0).scores
    np.testing.assert_allclose(both, np.mean(runs, axis=0), rtol=1e-4, atol=1e-6)


def test_gradient_shap_does_not_depend_on_batch_size(tiny_tabular):
    """The random stream, hence the cached result, is the same on any device or OOM retry."""
    enc = tiny_tabular.encode(1)
    p = {"n_samples": 70, "seed": 3, "baselines": ["train_samples"]}
    one = run_method(tiny_tabular, enc, "gradient_shap", p, 0).scores
    saved = tiny_tabular.grad_batch_size
    tiny_tabular.grad_batch_size = 5
    try:
        small = run_method(tiny_tabular, enc, "gradient_shap", p, 0).scores
    finally:
        tiny_tabular.grad_batch_size = saved
    np.testing.assert_array_equal(one, small)
    other_seed = run_method(tiny_tabular, enc, "gradient_shap", {**p, "seed": 4}, 0).scores
    assert not np.allclose(one, other_seed)


def test_occlusion_stride_beyond_window_is_refused(tiny_image, tiny_image_input):
    enc = tiny_image.encode(tiny_image_input)
    with pytest.raises(ExplainerError, match="stride"):
        run_method(tiny_image, enc, "occlusion", {"window": 4, "stride": 8})


def test_saliency_leaves_the_input_untouched(tiny_text):
    enc = tiny_text.encode("the film was good")

    def boom(method, fraction):
        raise RuntimeError("rerun")

    for name in ("saliency", "input_x_gradient"):
        with pytest.raises(RuntimeError):
            run_method(tiny_text, enc, name, progress=boom)
        assert not enc.inputs.requires_grad


def test_occlusion_window_changes_cost_and_result(tiny_image, tiny_image_input):
    enc = tiny_image.encode(tiny_image_input)
    small = estimate_cost(tiny_image, enc, "occlusion", {"window": 4, "stride": 4})
    large = estimate_cost(tiny_image, enc, "occlusion", {"window": 16, "stride": 8})
    assert small == 1 + 8 * 8 and large == 1 + 3 * 3
    # Captum rounds the last window up: (32 - 16) / 6 -> 3 steps + 1
    assert estimate_cost(tiny_image, enc, "occlusion", {"window": 16, "stride": 6}) == 1 + 4 * 4
    a = run_method(tiny_image, enc, "occlusion", {"window": 4, "stride": 4}, 0).scores
    b = run_method(tiny_image, enc, "occlusion", {"window": 16, "stride": 8}, 0).scores
    assert not np.allclose(a, b)


@pytest.mark.parametrize("params,message", [
    ({"n_steps": 1}, ">= 2"),
    ({"n_steps": 5000}, "<= 1024"),
    ({"n_steps": "many"}, "type int"),
    ({"method": "simpson"}, "one of"),
    ({"baselines": ["sky"]}, "accepts"),
    ({"bogus": 1}, "unknown parameter"),
])
def test_bad_params_are_refused(tiny_text, params, message):
    enc = tiny_text.encode("the film")
    with pytest.raises(ExplainerError, match=message):
        run_method(tiny_text, enc, "integrated_gradients", params)


def test_unknown_method_and_target(tiny_text):
    enc = tiny_text.encode("the film")
    with pytest.raises(ExplainerError, match="unknown method"):
        run_method(tiny_text, enc, "lime_but_typo")
    with pytest.raises(ExplainerError, match="out of range"):
        run_method(tiny_text, enc, "saliency", target=7)


def test_cost_cap_refuses_before_running(tiny_text):
    enc = tiny_text.encode("the film was good")
    with pytest.raises(ExplainerError, match="forward passes"):
        run_method(tiny_text, enc, "integrated_gradients", {"n_steps": 500}, max_cost=100)


@pytest.mark.parametrize("modality", MODALITIES)
def test_feature_ablation_scores_are_the_logit_drop(tiny_adapters, modality):
    """A perturbation score is f(x) - f(x without that feature), whatever the feature's size
    (384 embedding dims, 3 x 8 x 8 pixels or one column)."""
    adapter, raw = tiny_adapters[modality]
    enc = adapter.encode(raw)
    res = run_method(adapter, enc, "feature_ablation", target=1)
    feature = int(np.argmax(np.abs(adapter.group_scores(res.scores, enc))))
    baseline = adapter.baselines(enc, res.params["baselines"])
    keep = torch.ones(1, enc.n_features, dtype=torch.bool)
    keep[0, feature] = False
    with torch.no_grad():
        drop = float(adapter.forward(enc.inputs, enc)[0, 1] - adapter.forward(
            adapter.perturb(enc, keep, baseline), enc)[0, 1])
    group = adapter.group_scores(res.scores, enc)[feature]
    assert group == pytest.approx(drop, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("modality", ["text", "tabular"])
def test_one_feature_occlusion_equals_feature_ablation(tiny_adapters, modality):
    adapter, raw = tiny_adapters[modality]
    enc = adapter.encode(raw)
    occ = run_method(adapter, enc, "occlusion", {"window": 1, "stride": 1}, target=0).scores
    fa = run_method(adapter, enc, "feature_ablation", target=0).scores
    np.testing.assert_allclose(occ, fa, rtol=1e-4, atol=1e-7)


def test_gradient_shap_fast_delta_matches_captums(tiny_tabular):
    """The 2-forward delta (no noise, one baseline) equals Captum's per-sample mean."""
    enc = tiny_tabular.encode(2)
    p = {"n_samples": 6, "stdevs": 0.0, "baselines": ["train_median"], "seed": 1}
    fast = run_method(tiny_tabular, enc, "gradient_shap", p, 0)
    from captum.attr import GradientShap
    np.random.seed(1)
    torch.manual_seed(1)
    attr, deltas = GradientShap(tiny_tabular.forward_fn(enc)).attribute(
        enc.inputs, baselines=tiny_tabular.baselines(enc, ["train_median"]), n_samples=6, stdevs=0.0,
        target=0, return_convergence_delta=True)
    np.testing.assert_allclose(fast.scores, attr[0].numpy(), rtol=1e-5, atol=1e-7)
    assert fast.convergence_delta == pytest.approx(float(deltas.mean()), abs=1e-5)


@pytest.mark.parametrize("modality,name", [(m, n) for m in MODALITIES
                                           for n in ("occlusion", "feature_ablation", "integrated_gradients",
                                                     "gradient_shap")])
def test_cost_estimate_counts_the_examples_run(tiny_adapters, modality, name, monkeypatch):
    """The estimate shown before a run (and checked against the cap) is what the run does."""
    adapter, raw = tiny_adapters[modality]
    enc = adapter.encode(raw)
    params = {"baselines": list(adapter.baseline_kinds[:2])}
    seen = []
    forward = adapter.forward_fn
    monkeypatch.setattr(adapter, "forward_fn",
                        lambda e, on_batch=None: forward(e, lambda n: (seen.append(n), on_batch(n))))
    run_method(adapter, enc, name, params, target=0)
    assert sum(seen) == estimate_cost(adapter, enc, name, params)


@pytest.mark.parametrize("stdevs,baselines", [(0.0, ["train_mean"]), (0.1, ["train_mean"]),
                                              (0.0, ["train_mean", "train_median"])])
def test_gradient_shap_cost_follows_the_delta_path(tiny_tabular, stdevs, baselines, monkeypatch):
    enc = tiny_tabular.encode(0)
    params = {"n_samples": 10, "stdevs": stdevs, "baselines": baselines}
    seen = []
    forward = tiny_tabular.forward_fn
    monkeypatch.setattr(tiny_tabular, "forward_fn",
                        lambda e, on_batch=None: forward(e, lambda n: (seen.append(n), on_batch(n))))
    run_method(tiny_tabular, enc, "gradient_shap", params, target=0)
    # without noise: n samples + f(x) + f(b_k) per baseline; with noise Captum's 2 n more
    expected = 10 + 1 + len(baselines) if stdevs == 0 else 30
    assert sum(seen) == estimate_cost(tiny_tabular, enc, "gradient_shap", params) == expected
