"""Running methods: parameter checks, locking, progress, GPU OOM retry and the store."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from .adapters.base import Encoded, ModelAdapter
from .errors import ExplainerError
from .params import resolve_params
from .registry import get_method
from .results import Attribution

Progress = Callable[[str, float], None]
OOM_RETRIES = 3


def resolve_target(adapter: ModelAdapter, enc: Encoded, target: Any) -> int:
    """Class index for ``target``: None (the predicted class), an index, or a label."""
    if target is None:
        return adapter.predict(enc).index
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in adapter.labels:
            raise ExplainerError(f"unknown target label {target!r}")
        return adapter.labels.index(target)
    try:
        index = int(target)
    except (TypeError, ValueError):
        raise ExplainerError(f"target must be a class index or label, got {target!r}") from None
    if not 0 <= index < len(adapter.labels):
        raise ExplainerError(f"target {index} out of range: the model has {len(adapter.labels)} classes")
    return index


def check_method(adapter: ModelAdapter, name: str, params: dict | None):
    """The method instance and its validated parameters, or an ExplainerError."""
    method = get_method(name)
    if adapter.modality not in method.modalities:
        raise ExplainerError(f"method '{name}' does not support {adapter.modality} input")
    return method, resolve_params(method.param_specs(adapter), params, name)


def estimate_cost(adapter: ModelAdapter, enc: Encoded, name: str, params: dict | None = None) -> int:
    """Forward passes (examples) a method will run on ``enc`` with ``params``."""
    method, resolved = check_method(adapter, name, params)
    return int(method.cost(adapter, enc, resolved))


def _run_with_oom_retry(adapter: ModelAdapter, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; on CUDA out-of-memory halve the adapter's batch sizes and try again."""
    sizes = (adapter.grad_batch_size, adapter.eval_batch_size)
    try:
        for attempt in range(OOM_RETRIES + 1):
            try:
                return fn()
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if attempt == OOM_RETRIES or adapter.grad_batch_size == 1:
                    raise ExplainerError(
                        "GPU out of memory even with batch size "
                        f"{adapter.grad_batch_size}; lower n_steps, n_samples or the input size"
                    ) from None
                adapter.grad_batch_size = max(1, adapter.grad_batch_size // 2)
                adapter.eval_batch_size = max(1, adapter.eval_batch_size // 2)
    finally:
        adapter.grad_batch_size, adapter.eval_batch_size = sizes


def run_method(adapter: ModelAdapter, enc: Encoded, name: str, params: dict | None = None,
               target: Any = None, store: Any = None, progress: Progress | None = None,
               max_cost: int | None = None) -> Attribution:
    """Attribute ``enc`` with one registered method.

    Args:
        adapter: the model adapter.
        enc: the encoded input.
        name: registered method name.
        params: method parameters; missing ones take their declared defaults.
        target: class index or label; None means the predicted class.
        store: an :class:`cache.store.AttributionStore`, or None to skip the cache.
        progress: called as ``progress(method, fraction)`` after each model batch. It may
            raise to abort (Streamlit does so when a widget changes mid-run).
        max_cost: refuse settings needing more forward passes than this.

    Returns:
        The :class:`Attribution`, from the store when an identical request was seen before.
    """
    from cache.store import make_key

    method, resolved = check_method(adapter, name, params)
    target_index = resolve_target(adapter, enc, target)
    key = make_key(adapter.result_key, enc.key, name, resolved, target_index)
    if store is not None:
        hit = store.get(key)
        if hit is not None:
            if progress:
                progress(name, 1.0)
            result = Attribution.from_dict(name, hit, cache_hit=True)
            result.notes = method.notes(adapter, enc, resolved)
            return result

    cost = max(1, int(method.cost(adapter, enc, resolved)))
    if max_cost is not None and cost > max_cost:
        raise ExplainerError(
            f"{method.title} with these settings needs {cost:,} forward passes, over the cap of "
            f"{max_cost:,}; lower its parameters or raise the cap")
    done = [0]

    def on_batch(n: int) -> None:
        done[0] += n
        if progress:
            progress(name, min(1.0, done[0] / cost))

    forward = adapter.forward_fn(enc, on_batch)
    with adapter.guarded():
        start = time.perf_counter()
        attr, delta = _run_with_oom_retry(
            adapter, lambda: method.attribute(adapter, enc, target_index, resolved, forward))
        if attr.is_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    scores = adapter.reduce(attr.float(), enc).astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise ExplainerError(f"{method.title} produced non-finite scores; try other parameters")
    stats = None
    if isinstance(delta, dict):
        stats = {k: v for k, v in delta.items() if k != "convergence_delta"}
        delta = delta["convergence_delta"]
    result = Attribution(name, scores, delta, seconds, resolved,
                         notes=method.notes(adapter, enc, resolved), delta_stats=stats)
    if store is not None:
        store.put(key, result.to_dict())
    if progress:
        progress(name, 1.0)
    return result
