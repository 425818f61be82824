"""The precision policy (explainers.precision): which devices run bf16, the policy in the store
key, no gradient pass in bf16, float32 reported numbers, bf16 scores within a tolerance derived
from the bf16 outputs the run saw, and decisions (flips, beats_random) confirmed in float32.

This CPU may have no bf16 units, where ``bf16-forward`` runs as fp32; the tests ask for the
emulated bf16 (``use(..., emulate=True)``): slow there, but the same arithmetic."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from cache.store import AttributionStore
from explainers import ExplainerError, explain, list_methods, precision
from explainers.adapters.generation import Prompt
from explainers.metrics import compute
from explainers.metrics.flip import NOT_CONFIRMED, confirm_flips, flip

TEXT = "the soup was bland and the service was terrible !"
FORWARD_ONLY = ["occlusion", "feature_ablation"]
GRADIENT = ["integrated_gradients", "saliency", "input_x_gradient"]


def bf16(model):
    return precision.use("bf16-forward", model.device, emulate=True)


# -- the rule ----------------------------------------------------------------------------------
@pytest.mark.parametrize("units, auto, forced", [
    ({"amx_bf16": False, "avx512_bf16": False}, "fp32", "fp32"),  # emulated bf16: 6.5x slower
    ({"amx_bf16": False, "avx512_bf16": True}, "fp32", "bf16-forward"),  # units, never timed
    ({"amx_bf16": True, "avx512_bf16": True}, "bf16-forward", "bf16-forward"),  # measured 2.39x
])
def test_auto_picks_bf16_only_where_it_was_measured_faster(monkeypatch, units, auto, forced):
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: dict(units))
    cpu = torch.device("cpu")
    assert precision.resolve("auto", cpu) == auto
    assert precision.resolve("bf16-forward", cpu) == forced
    assert precision.resolve("fp32", cpu) == precision.resolve(None, cpu) == "fp32"
    with precision.use("bf16-forward", cpu, emulate=True) as ran:
        assert ran == precision.active() == "bf16-forward"
    assert precision.active() == "fp32"


def test_an_unknown_policy_is_one_clear_error(tiny_text):
    with pytest.raises(ExplainerError, match="unknown precision 'fp16'"):
        explain(tiny_text, TEXT, methods=["occlusion"], precision="fp16", use_cache=False)


def test_autocast_only_for_passes_without_gradients():
    x = torch.ones(2, 3)
    with precision.use("bf16-forward", x.device, emulate=True):
        assert isinstance(precision.autocast_for(x), torch.autocast)
        assert isinstance(precision.autocast_for(x.requires_grad_()), contextlib.nullcontext)
        with torch.no_grad():
            assert isinstance(precision.autocast_for(x), torch.autocast)
        with precision.fp32():
            assert isinstance(precision.autocast_for(x.detach()), contextlib.nullcontext)


# -- the store key -------------------------------------------------------------------------------
def test_a_bf16_result_never_serves_an_fp32_request(tiny_text, tmp_path):
    store = AttributionStore(tmp_path / "s.sqlite")
    methods = ["occlusion", "integrated_gradients"]
    params = {"integrated_gradients": {"n_steps": 8}}
    with bf16(tiny_text):
        first = explain(tiny_text, TEXT, methods=methods, params=params, store=store)
    assert first.precision == "bf16-forward" and first.to_dict()["precision"] == "bf16-forward"
    assert first.attributions["occlusion"].precision == "bf16-forward"
    assert first.attributions["integrated_gradients"].precision == "fp32"  # gradients: float32
    fp32 = explain(tiny_text, TEXT, methods=methods, params=params, store=store)
    assert fp32.precision == "fp32"
    assert not fp32.attributions["occlusion"].cache_hit  # another key
    assert fp32.attributions["occlusion"].precision == "fp32"
    assert fp32.attributions["integrated_gradients"].cache_hit  # it ran in fp32: the same result
    with bf16(tiny_text):
        again = explain(tiny_text, TEXT, methods=["occlusion"], store=store)
    assert again.attributions["occlusion"].cache_hit
    np.testing.assert_array_equal(again.attributions["occlusion"].scores, first.attributions["occlusion"].scores)


# -- no gradient pass in bf16 -------------------------------------------------------------------
@contextlib.contextmanager
def record_linear_outputs(module: torch.nn.Module):
    """(dtype, requires_grad) of every Linear layer's output while the block runs."""
    seen: list[tuple[torch.dtype, bool]] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: seen.append((out.dtype, out.requires_grad)))
               for m in module.modules() if isinstance(m, torch.nn.Linear)]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("fixture, raw", [("tiny_text", TEXT), ("tiny_tabular", 5),
                                          ("tiny_lm", Prompt(TEXT, max_new_tokens=2))])
def test_no_gradient_pass_runs_in_bf16(request, fixture, raw):
    model = request.getfixturevalue(fixture)
    methods = FORWARD_ONLY + [m for m in GRADIENT if m != "input_x_gradient" or fixture != "tiny_lm"]
    methods = [m for m in methods if m in _supported(model)]
    with record_linear_outputs(model.module) as seen, bf16(model):
        r = explain(model, raw, methods=methods, metrics=["faithfulness"], use_cache=False,
                    params={"integrated_gradients": {"n_steps": 4}},
                    metric_params={"random_orders": 19})
    assert any(dtype == torch.bfloat16 for dtype, _ in seen), "no forward ran in bf16"
    assert all(dtype == torch.float32 for dtype, grad in seen if grad), "a gradient pass ran in bf16"
    # reported numbers are float32 or wider, never bf16
    for a in r.attributions.values():
        assert a.scores.dtype in (np.float32, np.float64)
    assert np.asarray(r.prediction.probabilities, dtype=np.float64).dtype == np.float64
    # the prediction is the fp32 one
    fp32 = explain(model, raw, methods=["occlusion"], use_cache=False)
    assert r.prediction.to_dict() == fp32.prediction.to_dict()


def _supported(model) -> set[str]:
    return set(list_methods(model.modality))


# -- scores within the derived tolerance ----------------------------------------------------------
@pytest.mark.parametrize("fixture, raw", [("tiny_text", TEXT), ("tiny_tabular", 5)])
def test_bf16_scores_within_twice_the_largest_output_change(request, monkeypatch, fixture, raw):
    """An occlusion / ablation score is a mean over baselines of f(x) - f(x without the
    feature) of the logit f: two outputs, so bf16 moves it by at most twice the largest change
    bf16 makes to any logit the run computed (measured by re-running those exact rows)."""
    model = request.getfixturevalue(fixture)
    rows: list[tuple[torch.Tensor, object]] = []
    original = type(model).forward

    def recording(self, inputs, enc):
        if precision.active() == "bf16-forward":
            rows.append((inputs.detach().clone(), enc))
        return original(self, inputs, enc)

    monkeypatch.setattr(type(model), "forward", recording)
    ref = explain(model, raw, methods=FORWARD_ONLY, use_cache=False)
    with bf16(model):
        low = explain(model, raw, methods=FORWARD_ONLY, use_cache=False)
    monkeypatch.setattr(type(model), "forward", original)
    assert rows
    logit_change = prob_change = 0.0
    with torch.no_grad():
        for x, enc in rows:
            a = model.forward(x, enc)
            with bf16(model):
                b = model.forward(x, enc)
            logit_change = max(logit_change, float((a - b).abs().max()))
            prob_change = max(prob_change, float((model.activate(a) - model.activate(b)).abs().max()))
    assert logit_change > 0  # bf16 did run
    for name in FORWARD_ONLY:
        a, b = ref.attributions[name].scores, low.attributions[name].scores
        # fp32 rounding: ~1e-7 relative per logit
        assert np.abs(a - b).max() <= 2 * logit_change + 1e-6 * max(1.0, np.abs(a).max()), name
    assert prob_change <= precision.BF16_PROB_TOLERANCE  # the tolerance the verdicts use holds here


# -- decisions confirmed in fp32 -----------------------------------------------------------------
def _fake(flip_at: dict[int, bool], n: int):
    """keep-mask -> probabilities of 2 classes; class 1 where ``flip_at[removed count]``."""
    def predict(keep):
        removed = n - np.asarray(keep).reshape(-1, n).sum(1)
        return np.array([[0.4, 0.6] if flip_at.get(int(r), False) else [0.6, 0.4] for r in removed])
    return predict


def test_a_flip_the_fp32_prediction_does_not_confirm_is_not_reported():
    n, labels = 5, ["neg", "pos"]
    scores = {"m": np.arange(n, 0, -1.0)}
    low = _fake({2: True, 3: True, 4: True}, n)  # bf16 flips after 2 removals
    block = flip(scores, 0, low, [f"w{i}" for i in range(n)], labels)
    assert block["methods"]["m"]["count"] == 2 and block["best"] == "m"
    confirm_flips(block, _fake({}, n), n, 0, labels)  # fp32: it never flips
    m = block["methods"]["m"]
    assert m["count"] is None and m["reason"] == NOT_CONFIRMED and m["bf16_count"] == 2
    assert block["best"] is None and block["confirmed_in"] == "fp32"
    block = flip(scores, 0, low, [f"w{i}" for i in range(n)], labels)
    confirm_flips(block, _fake({2: True}, n), n, 0, labels)  # fp32 agrees
    assert block["methods"]["m"]["count"] == 2 and block["methods"]["m"]["new_probability"] == 0.6


def test_a_verdict_within_the_bf16_noise_of_alpha_is_recomputed_in_fp32(tiny_text):
    with bf16(tiny_text):
        r = explain(tiny_text, TEXT, methods=FORWARD_ONLY, metrics=["faithfulness"], use_cache=False)
    # the fp32 test of the same (bf16) scores
    ref = compute(tiny_text, tiny_text.encode(TEXT), r, ["faithfulness"])
    # the tiny model's AOPCs (~1e-4) lie far inside the bf16 noise (2 x 2 x 0.03), so every
    # verdict is in doubt and recomputed: each is then exactly the fp32 request's
    for name, b in r.metrics["faithfulness"]["methods"].items():
        assert "in_doubt" not in b and b["recomputed_in"] == "fp32"
        assert b["p_value"] == ref["faithfulness"]["methods"][name]["p_value"]
        assert b["beats_random"] == ref["faithfulness"]["methods"][name]["beats_random"]


def test_tabular_flips_reported_under_bf16_are_the_fp32_outcome_of_their_edit(tiny_tabular):
    from explainers.metrics.common import Repredictor, resolve_options
    seen = 0
    for row in range(12):
        with bf16(tiny_tabular):
            r = explain(tiny_tabular, row, methods=FORWARD_ONLY, metrics=["flip"], use_cache=False)
        block = r.metrics["flip"]
        assert block["confirmed_in"] == "fp32"
        enc = tiny_tabular.encode(row)
        opts = resolve_options({}, tiny_tabular, enc)
        fp32 = Repredictor(tiny_tabular, enc, opts["baseline"], opts["perturbation"])  # outside use(): fp32
        for b in [*block["methods"].values(), block["random"]]:
            if not b["count"]:
                continue
            seen += 1
            keep = np.ones(enc.n_features, dtype=bool)
            keep[b["indices"]] = False
            probs = fp32(keep[None])[0]
            assert int(np.argmax(probs)) != r.prediction.index
            assert b["new_probability"] == pytest.approx(float(probs.max()), abs=1e-6)  # JSON: 7 digits
    assert seen  # the tiny MLP flips on some of its rows


# -- the review ----------------------------------------------------------------------------------
def test_a_review_runs_and_records_its_policy(tiny_tabular, tmp_path, monkeypatch, capsys):
    import json

    from explainers.review import run_review
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: {"amx_bf16": True, "avx512_bf16": True})
    out = tmp_path / "r.jsonl"
    run_review(tiny_tabular, [(0, 0), (1, 1)], methods=["occlusion", "saliency"], metrics=["flip"],
               out=str(out), use_cache=False, precision="auto")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["precision"] for x in lines] == ["bf16-forward"] * 2  # auto, on an AMX CPU
    assert [x["attributions"]["saliency"]["precision"] for x in lines] == ["fp32"] * 2
    assert all(x["metrics"]["flip"]["confirmed_in"] == "fp32" for x in lines)
    meta = json.loads((tmp_path / "r.jsonl.meta.json").read_text())
    assert "auto" in json.dumps(meta)  # a resumed run must ask for the same policy
    with pytest.raises(ExplainerError, match="unknown precision"):
        run_review(tiny_tabular, [(0, 0)], methods=["occlusion"], use_cache=False, precision="bf16")
