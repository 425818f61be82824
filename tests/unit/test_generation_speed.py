"""Generation's cost estimates count the work a run really does: the decoder's tokens through
every forward and backward pass, counted by hooks on a tiny random-weight causal LM (never
by time). The estimate grows with the target as the work does, the calibration runs the model
on every timed call, and a run past the Jacobian's memory budget gives the same numbers
with one backward pass per row and run."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

import explainers.adapters.generation as generation
import explainers.engine as engine
from explainers import run_method
from explainers.adapters.generation import Prompt
from explainers.engine import CostModel, estimate_seconds, method_units, method_work, pass_work

PROMPT = "Maria was born in Lisbon and studied chemistry in Berlin. Which city was Maria born in?"
#: a 2-token and a 4-token target (checked below)
SHORT, LONG = " Lisbon and", " Lisbon and studied chemistry"
METHODS = {"integrated_gradients": {"n_steps": 6, "baselines": ["unk"]},
           "feature_ablation": {"baselines": ["unk"]},  # a token baseline: every row as long
           "saliency": None}


@contextlib.contextmanager
def counted(adapter):
    """Tokens the decoder ran, by kind: ``grad`` (forwards that keep a graph, and every
    backward pass through them) and ``forward`` (forwards without one)."""
    seen = {"grad": 0, "forward": 0, "backward_passes": 0, "rows": 0}

    def hook(module, args, kwargs, output):
        states = output.last_hidden_state
        tokens = int(states.shape[0] * states.shape[1])
        seen["rows"] += int(states.shape[0])
        if torch.is_grad_enabled() and states.requires_grad:
            seen["grad"] += tokens

            def backward(grad):
                seen["grad"] += tokens
                seen["backward_passes"] += 1
            states.register_hook(backward)
        else:
            seen["forward"] += tokens

    handle = adapter.decoder.register_forward_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def encode(adapter, target):
    return adapter.encode(Prompt(PROMPT, chat=False), unit="word", target=target)


def read_per_pass(adapter, enc) -> int:
    """Tokens the decoder reads per row: the prompt and the target but its last token (it is
    predicted, never read)."""
    return int(enc.inputs.shape[1]) + adapter.n_target(enc) - 1


@pytest.mark.parametrize("name", METHODS)
def test_the_estimate_is_the_work_the_run_does(tiny_lm, name):
    """Each kind's estimated units are the tokens the decoder runs, but for the one target
    token per pass that the model never reads (a pass is priced at prompt + target tokens)."""
    for target in (SHORT, LONG):
        enc = encode(tiny_lm, target)
        with counted(tiny_lm) as seen:
            run_method(tiny_lm, enc, name, METHODS[name], 0)  # 0: no predict() forward
        work = method_work(tiny_lm, enc, name, METHODS[name])
        scale = read_per_pass(tiny_lm, enc) / tiny_lm.work_per_pass(enc)
        for kind in ("grad", "forward"):
            # integer token counts against a float product: exact up to float64 rounding
            assert seen[kind] == pytest.approx(work[kind] * scale, rel=1e-12), (target, kind)
        assert seen["grad"] + seen["forward"] > 0


def test_doubling_the_target_doubles_the_gradient_estimate(tiny_lm, monkeypatch):
    """With fixed rates, IG's estimate for a 4-token target over a 2-token one is the ratio
    of the work the two runs count: about 2x (a forward and 4 backward passes per row
    against a forward and 2, each over a longer sequence)."""
    rates = {"grad": 2e-6, "forward": 1e-6, "metric": 1e-6}
    monkeypatch.setattr(engine, "measure_rates", lambda a, e, passes=None, kinds=engine.WORK_KINDS:
                        {k: rates[k] for k in kinds})
    params = METHODS["integrated_gradients"]
    est, work = {}, {}
    for target in (SHORT, LONG):
        enc = encode(tiny_lm, target)
        assert tiny_lm.n_target(enc) == (2 if target == SHORT else 4)
        est[target] = estimate_seconds(tiny_lm, enc, "integrated_gradients", params, costs=CostModel())
        with counted(tiny_lm) as seen:
            run_method(tiny_lm, enc, "integrated_gradients", params, 0)
        per = tiny_lm.work_per_pass(enc) / read_per_pass(tiny_lm, enc)  # priced / read tokens
        work[target] = sum(rates[k] * seen[k] * per for k in ("grad", "forward"))
    ratio = est[LONG] / est[SHORT]
    assert ratio > 5 / 3  # more than the passes' ratio alone: the sequences grow too
    # both sides are sums of float64 products of integers: equal to rounding
    assert ratio == pytest.approx(work[LONG] / work[SHORT], rel=1e-9)


def test_a_gradient_row_is_a_forward_and_a_backward_per_target_token(tiny_lm):
    enc = encode(tiny_lm, LONG)
    per = tiny_lm.work_per_pass(enc)
    assert pass_work(tiny_lm, enc) == {"grad": per * (1 + 4), "forward": per}
    params = METHODS["integrated_gradients"]
    with counted(tiny_lm) as seen:
        run_method(tiny_lm, enc, "integrated_gradients", params, 0)
    grad_rows = params["n_steps"]  # the 2 delta rows (input and baseline) are forward-only
    batches = -(-grad_rows // tiny_lm.for_run(enc).grad_batch_size)
    assert seen["backward_passes"] == 4 * batches  # one per target token per batch of rows
    assert method_units(tiny_lm, enc, "integrated_gradients", params) == pytest.approx(
        grad_rows * per * 5 + 2 * per, rel=1e-12)


def test_the_calibration_runs_the_model_on_every_timed_call(tiny_lm, monkeypatch):
    """A run remembers the rows it scored; a calibration made of copies of one input must
    not be answered from memory (it measured nothing: estimates of 0.01 s for 24 s runs)."""
    monkeypatch.setattr(engine, "SETTLED_SECONDS", float("inf"))  # three timings, however slow
    enc = encode(tiny_lm, SHORT)
    with counted(tiny_lm) as seen:
        engine.measure_rates(tiny_lm, enc, passes=2, kinds=("forward",))
    assert seen["rows"] == 4 * 2 * 2  # warm-up + 3 timings, each 2 x passes rows
    with counted(tiny_lm) as seen:
        engine.measure_rates(tiny_lm, enc, passes=2, kinds=("grad",))
    assert seen["rows"] == 4 * 2
    assert seen["backward_passes"] == 4 * tiny_lm.n_target(enc)  # each call: one per target token


def test_a_call_that_lasts_is_timed_once(tiny_lm, monkeypatch):
    monkeypatch.setattr(engine, "SETTLED_SECONDS", 0.0)  # every call counts as long
    enc = encode(tiny_lm, SHORT)
    with counted(tiny_lm) as seen:
        engine.measure_rates(tiny_lm, enc, passes=2, kinds=("grad",))
    assert seen["rows"] == 2 * 2  # warm-up + one timing


def test_a_forward_only_estimate_does_not_calibrate_gradients(tiny_lm, monkeypatch):
    asked = []
    monkeypatch.setattr(engine, "measure_rates", lambda a, e, passes=None, kinds=engine.WORK_KINDS:
                        asked.append(tuple(kinds)) or {k: 1e-6 for k in kinds})
    enc = encode(tiny_lm, SHORT)
    estimate_seconds(tiny_lm, enc, "feature_ablation", METHODS["feature_ablation"], costs=CostModel())
    assert asked == [("forward",)]


def test_attention_is_priced_as_the_forward_rows_it_runs(tiny_lm, monkeypatch):
    """The attention reader hooks an eager copy (so it is not ``defer_model_calls``) but takes
    no gradient: its estimate counts forward rows only, and never calibrates gradients (it
    was priced as gradient rows, a backward per target token each: 5.1 s shown for 0.9 s)."""
    enc = encode(tiny_lm, LONG)
    with counted(tiny_lm) as seen:
        run_method(tiny_lm, enc, "target_attention", None, 0)
    assert seen["grad"] == 0 and seen["forward"] > 0
    work = method_work(tiny_lm, enc, "target_attention")
    assert work["grad"] == 0 and work["forward"] == 2 * tiny_lm.work_per_pass(enc)
    asked = []
    monkeypatch.setattr(engine, "measure_rates", lambda a, e, passes=None, kinds=engine.WORK_KINDS:
                        asked.append(tuple(kinds)) or {k: 1e-6 for k in kinds})
    estimate_seconds(tiny_lm, enc, "target_attention", None, costs=CostModel())
    assert asked == [("forward",)]


def test_past_the_jacobian_budget_the_numbers_hold_with_one_backward_per_row(tiny_lm, monkeypatch):
    """Over :data:`MAX_JACOBIAN_BYTES` every run (the target's, then one per matrix column)
    scores its rows itself: one backward each, no per-token Jacobian thrown away."""
    enc = encode(tiny_lm, LONG)
    params = METHODS["integrated_gradients"]
    kept = run_method(tiny_lm, enc, "integrated_gradients", params, 0)
    monkeypatch.setattr(generation, "MAX_JACOBIAN_BYTES", 0)
    with counted(tiny_lm) as seen:
        over = run_method(tiny_lm, enc, "integrated_gradients", params, 0)
    runs = 1 + len(tiny_lm.matrix_columns(enc))
    assert seen["backward_passes"] == runs * -(-params["n_steps"] // tiny_lm.for_run(enc).grad_batch_size)
    # the same gradients, summed in another order (float32 eps 1.2e-7 x a few terms x |value|)
    tol = 1e-6 * max(1.0, float(np.abs(kept.matrix).max()))
    np.testing.assert_allclose(over.matrix, kept.matrix, atol=tol)
    np.testing.assert_allclose(over.scores, kept.scores, atol=tol * len(tiny_lm.matrix_columns(enc)))
    assert np.abs(kept.matrix).max() > 100 * tol  # a matrix the tolerance can tell apart
