"""Batched across inputs: every method and metric gives what one-at-a-time gives, padded
text equals unpadded text, the store is per input, and one bad input does not sink a chunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explainers import ExplainerError, explain, list_methods
from explainers.pooling import Pool, Request
from explainers.review import explain_many, review_chunk
from explainers.metrics import compute

TEXTS = ["bad", "the soup was bland", "i love the film and the food was great , not bad !",
         "the service was terrible"]
#: small settings per method, so every method runs in well under a second on the tiny model
FAST = {
    "integrated_gradients": {"n_steps": 8, "baselines": ["pad", "mask"]},
    "gradient_shap": {"n_samples": 5, "baselines": ["pad", "mask", "unk"]},
    "smoothgrad": {"n_samples": 3},
    "kernel_shap": {"n_samples": 20, "baselines": ["pad"]},
    "lime": {"n_samples": 20, "baselines": ["pad"]},
    "occlusion": {"window": 2, "stride": 1, "baselines": ["pad"]},
    "feature_ablation": {"baselines": ["mask"]},
}


def close(a, b, what: str, rtol: float = 1e-4) -> None:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(1e-6, float(np.abs(b).max()) if b.size else 1.0)
    assert a.shape == b.shape, what
    # floor: occlusion scores are float32 logit differences, and a padded batch rounds the
    # logits (~1e-1 on the tiny model) differently by a few 1e-9; a one-word input's whole
    # score can be ~3e-5, so a tolerance relative to the scores alone would test rounding
    atol = max(rtol * scale, 1e-7)
    assert np.allclose(a, b, rtol=rtol, atol=atol), f"{what}: {a} vs {b}"


def same_tree(a, b, path: str = "") -> None:
    """Equal JSON trees, numbers within float tolerance."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            same_tree(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same_tree(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        # numbers on a [0, 1] or [-1, 1] scale (probabilities, scores over their max): the
        # tiny model's logit drops are ~1e-3, so float32 rounding of padded rows shows at 1e-5
        assert a == pytest.approx(b, rel=1e-3, abs=1e-4, nan_ok=True), path
    else:
        assert a == b, path


@pytest.mark.parametrize("method", list_methods("text"))
def test_every_method_batched_equals_one_at_a_time(tiny_text, method):
    params = {method: FAST.get(method, {})}
    batched = explain_many(tiny_text, TEXTS, [method], params, use_cache=False, batch_size=3)
    for text, b in zip(TEXTS, batched):
        one = explain(tiny_text, text, [method], params, use_cache=False)
        assert isinstance(b, type(one))
        close(b.prediction.probabilities, one.prediction.probabilities, f"{text}: prediction")
        assert b.target == one.target
        a1, ab = one.attributions[method], b.attributions[method]
        close(ab.scores, a1.scores, f"{method} on {text!r}")
        if a1.convergence_delta is not None:
            assert ab.convergence_delta == pytest.approx(a1.convergence_delta, rel=1e-3, abs=1e-5)
        assert ab.params == a1.params and ab.notes == a1.notes


def test_adaptive_ig_batched_stops_where_alone(tiny_text):
    params = {"integrated_gradients": {"n_steps": "auto", "rtol": 0.01, "baselines": ["pad", "unk"]}}
    batched = explain_many(tiny_text, TEXTS, ["integrated_gradients"], params, use_cache=False)
    for text, b in zip(TEXTS, batched):
        one = explain(tiny_text, text, ["integrated_gradients"], params, use_cache=False)
        a1, ab = one.attributions["integrated_gradients"], b.attributions["integrated_gradients"]
        assert ab.delta_stats["n_steps_per_baseline"] == a1.delta_stats["n_steps_per_baseline"]
        close(ab.scores, a1.scores, text)


@pytest.mark.parametrize("perturbation", ["delete", "baseline"])
def test_every_metric_batched_equals_one_at_a_time(tiny_text, perturbation):
    methods = ["integrated_gradients", "occlusion"]
    params = {"integrated_gradients": {"n_steps": 8, "baselines": ["pad"]},
              "occlusion": {"baselines": ["pad"]}}
    opts = {"perturbation": perturbation, "baseline": "pad", "random_orders": 20}
    metrics = ["agreement", "faithfulness", "flip"]
    batched = explain_many(tiny_text, TEXTS, methods, params, metrics, opts, use_cache=False)
    for text, b in zip(TEXTS, batched):
        # the one-at-a-time metrics of the *same* attributions: the batched and the single
        # attributions agree only to float32 rounding (test above), and orders, ranks and the
        # disagreement of the tiny model's ~1e-3 scores would amplify that rounding; what is
        # compared here is the metrics' own pooled re-predictions against per-input ones
        one = compute(tiny_text, tiny_text.encode(text), b, metrics, opts, params=params)
        same_tree(b.metrics, one, text)
        assert b.metrics["faithfulness"]["perturbation"] == perturbation


def test_other_metrics_and_modalities(tiny_image, tiny_image_input, tiny_tabular):
    rng = np.random.default_rng(1)
    images = [tiny_image_input, rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)]
    p = {"integrated_gradients": {"n_steps": 4}, "occlusion": {"window": 16, "stride": 16}}
    for adapter, raws, methods, metrics in [
            (tiny_image, images, ["integrated_gradients", "occlusion"], ["faithfulness"]),
            (tiny_tabular, [1, 5, 7], ["integrated_gradients", "feature_ablation"],
             ["agreement", "faithfulness", "flip", "stability"])]:
        params = {m: p[m] for m in methods if m in p}
        opts = {"random_orders": 10, "ig_steps": [4, 8], "seeds": 2}
        batched = explain_many(adapter, raws, methods, params, metrics, opts, use_cache=False)
        for raw, b in zip(raws, batched):
            one = explain(adapter, raw, methods, params, use_cache=False)
            for m in methods:
                close(b.attributions[m].scores, one.attributions[m].scores, f"{adapter.name} {m}")
            # metrics of the same attributions (see test_every_metric_batched_equals_one_at_a_time)
            same_tree(b.metrics, compute(adapter, adapter.encode(raw), b, metrics, opts, params=params),
                      adapter.name)


def test_padded_rows_equal_unpadded_and_pads_get_no_gradient(tiny_text):
    encs = [tiny_text.encode(t) for t in TEXTS]
    pool = Pool(tiny_text, encs)
    reqs = [Request(i, e.inputs.clone(), 1) for i, e in enumerate(encs)]
    pool.run(reqs)
    assert pool.batches == 1  # four lengths, one padded batch
    for e, r in zip(encs, reqs):
        x = e.inputs.clone().requires_grad_(True)
        logits = tiny_text.forward(x, e)
        (g,) = torch.autograd.grad(logits[0, 1], x)
        close(r.logits[0].detach(), logits[0].detach(), "logits")
        close(r.grad[0], g[0], "gradient")
    # the padded positions of the shortest row get exactly no gradient
    x, mask = tiny_text.stack_inputs([e.inputs for e in encs], encs)
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(tiny_text.forward_stacked(x, mask)[:, 1].sum(), x)
    assert mask[0].sum() < mask.shape[1] and torch.all(g[mask == 0] == 0)


def test_model_work_is_pooled(tiny_text):
    calls = []
    hook = tiny_text.module.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        params = {"integrated_gradients": {"n_steps": 8, "baselines": ["pad"]},
                  "gradient_shap": {"n_samples": 4, "baselines": ["pad", "mask"]},
                  "occlusion": {"baselines": ["pad"]}}
        methods = list(params)
        explain_many(tiny_text, TEXTS, methods, params, use_cache=False)
        pooled = len(calls)
        calls.clear()
        for t in TEXTS:
            explain(tiny_text, t, methods, params, use_cache=False)
        alone = len(calls)
    finally:
        hook.remove()
    assert pooled * 2 <= alone, (pooled, alone)


def test_cache_is_per_input_and_hits_skip_work(tiny_text, tmp_path):
    from cache.store import AttributionStore
    store = AttributionStore(tmp_path / "s.sqlite")
    params = {"integrated_gradients": {"n_steps": 8, "baselines": ["pad"]}}
    explain(tiny_text, TEXTS[1], ["integrated_gradients"], params, store=store)  # one input stored alone
    first = explain_many(tiny_text, TEXTS, ["integrated_gradients"], params, store=store)
    hits = [r.attributions["integrated_gradients"].cache_hit for r in first]
    assert hits == [False, True, False, False]
    calls = []
    hook = tiny_text.module.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        again = explain_many(tiny_text, TEXTS, ["integrated_gradients"], params, store=store)
    finally:
        hook.remove()
    assert all(r.attributions["integrated_gradients"].cache_hit for r in again)
    assert len(calls) == 1  # the predictions' one batch; no attribution work
    for a, b in zip(first, again):
        close(a.attributions["integrated_gradients"].scores, b.attributions["integrated_gradients"].scores, "hit")


def test_one_bad_input_does_not_sink_the_chunk(tiny_text):
    items = [("a", TEXTS[1]), ("b", "   "), ("c", TEXTS[3])]
    lines = review_chunk(tiny_text, items, ["occlusion"], {"occlusion": {"baselines": ["pad"]}},
                         ["agreement"], None, use_cache=False)
    assert [line["id"] for line in lines] == ["a", "b", "c"]
    assert "error" in lines[1] and "empty" in lines[1]["error"]
    assert "attributions" in lines[0] and "attributions" in lines[2]
    bad = review_chunk(tiny_text, items, ["occlusion"], {"occlusion": {"window": 0}}, [], None)
    assert all("error" in line for line in bad)
    with pytest.raises(ExplainerError):
        explain_many(tiny_text, TEXTS, ["occlusion"], targets=[0])


def test_review_params_default_to_fixed_ig_for_selected_methods_only():
    from explainers.review import review_params
    assert review_params(None, None)["integrated_gradients"]["n_steps"] == 50  # adaptive saves nothing
    assert review_params(["occlusion"], None) == {}  # IG not selected: no stray parameters
    mine = review_params(["integrated_gradients"], {"integrated_gradients": {"n_steps": 32}})
    assert mine == {"integrated_gradients": {"n_steps": 32}}


@pytest.mark.parametrize("kind", ["score", "sigmoid"])
def test_batched_follows_the_output_kind(kind):
    """Score and sigmoid models: the pooled predictions and re-predictions are in the kind's
    space, as one at a time (a softmax over one output would be 1.0 everywhere)."""
    import pandas as pd

    from explainers.adapters import TabularAdapter
    torch.manual_seed(0)
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(50, 4)), columns=list("abcd"))
    adapter = TabularAdapter(kind, torch.nn.Linear(4, 1), frame, ["y"], output=kind)
    opts = {"perturbation": "baseline", "random_orders": 5}
    rows = [3, 7]
    batched = explain_many(adapter, rows, ["integrated_gradients"], metrics=["faithfulness"],
                           metric_params=opts, use_cache=False)
    for row, b in zip(rows, batched):
        one = explain(adapter, row, ["integrated_gradients"], metrics=["faithfulness"], metric_params=opts,
                      use_cache=False)
        assert b.prediction.output_kind == one.prediction.output_kind == kind
        close(b.prediction.outputs, one.prediction.outputs, f"{kind} prediction")
        same_tree(b.metrics, compute(adapter, adapter.encode(row), b, ["faithfulness"], opts), kind)
        close(b.metrics["faithfulness"]["methods"]["integrated_gradients"]["deletion"],
              one.metrics["faithfulness"]["methods"]["integrated_gradients"]["deletion"], f"{kind} curve")
