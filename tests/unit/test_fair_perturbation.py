"""Issue 19, item 7: perturbation and seeded methods share the model batch by batch.

A light request runs between the batches of a heavy Occlusion / feature ablation /
KernelSHAP / LIME / GradientSHAP run instead of after it, the seeded ones draw the same
numbers whether or not another request interleaves, and neither the metrics' lock order
nor a model call inside a seeded section can deadlock. Timing lives in bench/fair_share.py;
these tests check order and values only.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from explainers import run_method
from explainers.adapters import TabularAdapter
from explainers.rng import paused, seeded
from tests.conftest import tiny_frame

HEAVY = {"kernel_shap": {"n_samples": 400}, "lime": {"n_samples": 400}, "occlusion": {},
         "feature_ablation": {}, "gradient_shap": {"n_samples": 24}}
LIGHT = {"gradient_shap": {"n_samples": 4}, "kernel_shap": {"n_samples": 12}, "saliency": {}}


class SlowMLP(torch.nn.Module):
    """Logs the thread of each forward and sleeps, so that two runs overlap."""

    def __init__(self, n_in: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(n_in, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        self.log: list[str] = []

    def forward(self, x):
        time.sleep(0.002)
        self.log.append(threading.current_thread().name)
        return self.net(x)


@pytest.fixture()
def slow():
    module = SlowMLP(12)
    adapter = TabularAdapter("slow", module, tiny_frame(n_features=12), ["a", "b"])
    adapter.eval_batch_size = adapter.grad_batch_size = 4  # many short batches
    return adapter, module


def run_all(adapter, enc, plan):
    return {name: run_method(adapter, enc, name, params, target=0) for name, params in plan.items()}


def test_a_light_request_runs_between_the_batches_of_heavy_perturbation_runs(slow):
    adapter, module = slow
    heavy_enc, light_enc = adapter.encode(1), adapter.encode(2)
    got: dict = {}
    heavy = threading.Thread(name="heavy", target=lambda: got.update(heavy=run_all(adapter, heavy_enc, HEAVY)))
    heavy.start()
    deadline = time.monotonic() + 60
    while module.log.count("heavy") < 5 and time.monotonic() < deadline:
        time.sleep(0.002)
    light = threading.Thread(name="light", target=lambda: got.update(light=run_all(adapter, light_enc, LIGHT)))
    light.start()
    light.join(timeout=300)
    heavy.join(timeout=300)
    assert not light.is_alive() and not heavy.is_alive(), "deadlock"
    log = module.log
    last_light = len(log) - 1 - log[::-1].index("light")
    last_heavy = len(log) - 1 - log[::-1].index("heavy")
    # the heavy runs make about 220 model calls; the light one finished before half of them
    assert last_light < last_heavy and log[last_light:].count("heavy") > log.count("heavy") / 2, \
        "the light request waited for the heavy run"
    assert adapter.lock.waiting() == 0 and adapter.lock.acquire(blocking=False)
    adapter.lock.release()
    for sub in module.modules():
        assert not sub._forward_hooks and not sub._forward_pre_hooks and not sub._backward_hooks
    # interleaving changed no number: each run alone, afterwards, gives the same bits
    for who, enc, plan in (("heavy", heavy_enc, HEAVY), ("light", light_enc, LIGHT)):
        alone = run_all(adapter, enc, plan)
        for name in plan:
            np.testing.assert_array_equal(got[who][name].scores, alone[name].scores, err_msg=f"{who} {name}")


def test_seeded_runs_draw_the_same_numbers_while_another_thread_seeds_and_draws(slow):
    """A thread seeding and drawing between the heavy run's batches (as the metrics and
    other sessions do) must not shift the heavy run's random stream."""
    adapter, _ = slow
    enc = adapter.encode(3)
    alone = run_all(adapter, enc, {"kernel_shap": {"n_samples": 60}, "lime": {"n_samples": 60}})
    stop, draws = threading.Event(), []

    def noisy():
        while not stop.is_set():
            with seeded(123):
                draws.append(float(torch.rand(1)))
                np.random.rand(3)

    t = threading.Thread(target=noisy, daemon=True)
    t.start()
    try:
        busy = run_all(adapter, enc, {"kernel_shap": {"n_samples": 60}, "lime": {"n_samples": 60}})
    finally:
        stop.set()
        t.join(timeout=30)
    assert len(draws) > 5, "the other thread never ran in between"
    assert set(draws) == {draws[0]}  # its own sections stayed seeded too
    for name in alone:
        np.testing.assert_array_equal(busy[name].scores, alone[name].scores, err_msg=name)


def test_seeded_runs_keep_the_lock_order_of_the_metrics(tiny_tabular):
    """Metrics hold the model lock, then the RNG lock. A seeded method that shares per batch,
    and a seeded section that takes the model lock itself (a neutral-baseline search, a
    prediction), must never wait for the model while holding the RNG lock."""
    from explainers import get_method
    from explainers.engine import check_method
    from explainers.pooling import shares_per_batch
    for name in ("gradient_shap", "smoothgrad", "kernel_shap", "lime", "occlusion", "feature_ablation"):
        method, params = check_method(tiny_tabular, name, None)
        assert shares_per_batch(method, params), name
    assert not shares_per_batch(get_method("grad_cam"), {})  # hooks the model: whole run
    enc, done = tiny_tabular.encode(5), []

    def metric_like():
        for _ in range(30):
            with tiny_tabular.guarded(), seeded(0):
                time.sleep(0.002)
        done.append("metric")

    def methods():
        for _ in range(5):
            run_method(tiny_tabular, enc, "gradient_shap", {"n_samples": 4}, target=0)
            run_method(tiny_tabular, enc, "kernel_shap", {"n_samples": 12}, target=0)
        done.append("methods")

    def section_that_predicts():
        for _ in range(30):
            with seeded(1):
                tiny_tabular.predict(enc)  # takes the model lock inside a seeded section
        done.append("predict")

    threads = [threading.Thread(target=f, daemon=True) for f in (metric_like, methods, section_that_predicts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(done) == ["methods", "metric", "predict"], "deadlock between a metric and a method"


def test_paused_restores_the_stream_and_is_a_no_op_outside_a_section():
    with seeded(7):
        a = torch.rand(3)
        b = torch.rand(3)
    with seeded(7):
        first = torch.rand(3)
        with paused():
            other = threading.Thread(target=lambda: [torch.rand(5) for _ in range(3)])
            other.start()
            other.join()
            torch.rand(2)  # even a draw in the pause is undone (the block must not draw)
        second = torch.rand(3)
    assert torch.equal(first, a) and torch.equal(second, b)
    before = torch.get_rng_state()
    with paused():
        pass
    assert torch.equal(torch.get_rng_state(), before)


def test_long_text_batches_are_cut_into_short_locked_calls(tiny_text, monkeypatch):
    """Each locked call of a long text holds at most ``locked_rows`` rows (the lock is handed
    over between them); Captum's batches and the numbers stay as they were."""
    from explainers.adapters import base
    enc = tiny_text.encode(" ".join(["the film was good and the soup was bland"] * 5))
    uncut = {m: run_method(tiny_text, enc, m, p, target=1)
             for m, p in (("occlusion", {}), ("integrated_gradients", {"n_steps": 24}))}
    monkeypatch.setitem(base.LOCKED_WORK, "text", 1)
    run = tiny_text.for_run(enc)
    tokens = enc.inputs.shape[1]
    assert run.locked_rows == max(1, tiny_text.eval_batch_size // tokens) < run.eval_batch_size
    assert run.eval_batch_size == tiny_text.for_run(enc).eval_batch_size  # batches not cut
    sizes: list[int] = []
    hook = tiny_text.module.register_forward_pre_hook(
        lambda mod, args, kwargs: sizes.append(kwargs["inputs_embeds"].shape[0]), with_kwargs=True)
    try:
        cut = {m: run_method(tiny_text, enc, m, p, target=1)
               for m, p in (("occlusion", {}), ("integrated_gradients", {"n_steps": 24}))}
    finally:
        hook.remove()
    assert sizes and max(sizes) <= run.locked_rows
    for m in cut:  # the same rows in smaller calls: float32 rounding only (eps x |logit| ~ 1e-6)
        np.testing.assert_allclose(cut[m].scores, uncut[m].scores, rtol=1e-4, atol=1e-6, err_msg=m)
