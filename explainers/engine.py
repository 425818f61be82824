"""Running methods: parameter checks, locking, progress, GPU OOM retry and the store."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Mapping

import numpy as np
import torch

from cache.store import BadRow, StoreFault, make_key

from . import methods  # noqa: F401  importing the package registers every method
from . import precision
from .adapters.base import Encoded, ModelAdapter
from .errors import ExplainerError
from .params import resolve_params
from .pooling import shares_per_batch
from .registry import get_method
from .results import Attribution, jsonable

Progress = Callable[[str, float], None]
OOM_RETRIES = 3


def resolve_target(adapter: ModelAdapter, enc: Encoded, target: Any) -> int:
    """Class index for ``target``: None (the predicted class), an index, or a label.

    Raises:
        ExplainerError: for an unknown label, an index out of range, or a value that is not
            a whole number (``1.5``) or is a boolean (``True`` is not class 1).
    """
    if target is None:
        return adapter.predict(enc).index
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        if target not in adapter.labels:
            raise ExplainerError(f"unknown target label {target!r}; labels: {adapter.labels[:20]}")
        return adapter.labels.index(target)
    index = _as_index(target)
    if not 0 <= index < len(adapter.labels):
        raise ExplainerError(f"target {index} out of range: the model has {len(adapter.labels)} classes")
    return index


def _as_index(target: Any) -> int:
    """A class index from an int, a whole float or a digit string; nothing else."""
    bad = ExplainerError(f"target must be a class index or label, got {target!r}")
    if isinstance(target, (bool, np.bool_)):
        raise bad
    if isinstance(target, (float, np.floating)):
        if not np.isfinite(target) or not float(target).is_integer():
            raise bad
        return int(target)
    if isinstance(target, (int, np.integer)):
        return int(target)
    if isinstance(target, str):
        return int(target.strip())
    raise bad


def check_method(adapter: ModelAdapter, name: str, params: Any):
    """The method instance and its validated parameters, or an ExplainerError."""
    method = get_method(name)
    if not method.supports(adapter.modality):
        raise ExplainerError(f"method '{name}' does not support {adapter.modality} input")
    if params is not None and not isinstance(params, Mapping):
        raise ExplainerError(f"parameters of '{name}' must be a mapping of name to value, "
                             f"got {type(params).__name__} {params!r:.80}")
    return method, resolve_params(method.param_specs(adapter), params, name)


def estimate_cost(adapter: ModelAdapter, enc: Encoded, name: str, params: dict | None = None) -> int:
    """Forward passes (examples) a method will run on ``enc`` with ``params``."""
    method, resolved = check_method(adapter, name, params)
    return int(method.total_cost(adapter, enc, resolved))


def estimate_work(adapter: ModelAdapter, enc: Encoded, name: str, params: dict | None = None) -> int:
    """Work a method will do on ``enc``: forward passes x the size of one pass
    (:meth:`ModelAdapter.work_per_pass`: tokens for text, pixels for images, features for
    tables). Unlike :func:`estimate_cost` it grows with the input, as the time does: 590
    passes over 512 tokens are about 25 times the work of 590 passes over 20."""
    return estimate_cost(adapter, enc, name, params) * adapter.work_per_pass(enc)


def calibrate(adapter: ModelAdapter, enc: Encoded, passes: int = 8) -> float:
    """Seconds per unit of :func:`estimate_work` on this machine, measured with one batched
    forward + backward of ``passes`` copies of ``enc`` (gradient passes, the dearer kind), so
    ``estimate_work(...) * calibrate(...)`` estimates a method's seconds."""
    x = enc.inputs.expand((passes,) + tuple(enc.inputs.shape[1:])).clone().requires_grad_(True)
    run = adapter.for_run(enc)
    forward = adapter.locked_each_batch(run.forward_fn(enc))
    start = time.perf_counter()
    torch.autograd.grad(forward(x)[:, 0].sum(), x)
    if x.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / (passes * adapter.work_per_pass(enc))


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


def row_meta(adapter: ModelAdapter, enc: Encoded, name: str, target: int) -> dict:
    """What a stored row promises besides its parameters: the method, the target class, the
    model (:attr:`ModelAdapter.result_key`), the encoded input and the precision policy in
    force (a bf16 result never serves an fp32 request)."""
    return {"method": name, "target": int(target), "model": adapter.result_key, "input": enc.key,
            "precision": precision.active()}


def check_row(row: Any, meta: dict, params: dict, shape: tuple[int, ...]) -> str | None:
    """Why a row read from the store must not be served, or None when it may be.

    A row is served only if it carries the ``meta`` and the resolved ``params`` its key
    promised, and finite scores of the expected ``shape`` (one per feature, or H x W).
    """
    if not isinstance(row, dict) or not {"scores", "params", "seconds", "meta"} <= set(row):
        return "fields missing"
    if row["meta"] != meta:
        return "made for another model, input, method or target"
    if row["params"] != jsonable(params):
        return "made with other parameters"
    try:
        scores = np.asarray(row["scores"], dtype=np.float64)
        delta = row.get("convergence_delta")
        seconds = float(row["seconds"])
        if delta is not None:
            delta = float(delta)
    except (TypeError, ValueError):
        return "scores or timings are not numbers"
    if scores.shape != tuple(shape):
        return f"scores have shape {scores.shape}, expected {tuple(shape)}"
    if not np.all(np.isfinite(scores)) or (delta is not None and not np.isfinite(delta)) \
            or not np.isfinite(seconds):
        return "values are not finite"
    return None


def read_stored(store: Any, key: str, name: str, meta: dict, params: dict,
                shape: tuple[int, ...], notes: list[str]) -> tuple[Attribution | None, bool]:
    """The stored attribution if a valid row exists, and whether the store may be written.

    A fault appends one note; a bad row is dropped and appends a note too."""
    try:
        row = store.get(key)
    except BadRow as e:
        notes.append(f"attribution store: {e}; recomputed")
        return None, True
    except StoreFault as e:
        notes.append(f"attribution store unavailable, computed without it: {e}")
        return None, False
    if row is None:
        return None, True
    why = check_row(row, meta, params, shape)
    if why is not None:
        store.discard(key)
        notes.append(f"attribution store: a stored result was not served ({why}); recomputed")
        return None, True
    return Attribution.from_dict(name, row, cache_hit=True), True


def write_stored(store: Any, key: str, result: Attribution, meta: dict, notes: list[str]) -> None:
    try:
        store.put(key, {**result.to_dict(), "meta": meta})
    except StoreFault as e:
        notes.append(f"attribution store unavailable, result not saved: {e}")


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
        store: an :class:`cache.store.AttributionStore`, or None to skip the cache. A row is
            served only after :func:`check_row` accepts it; a store fault never fails the
            call, it adds a note to the result's ``warnings`` and the method runs without it.
        progress: called as ``progress(method, fraction)`` after each model batch. It may
            raise to abort (Streamlit does so when a widget changes mid-run).
        max_cost: refuse settings needing more forward passes than this.

    Returns:
        The :class:`Attribution`, from the store when an identical request was seen before.
    """
    method, resolved = check_method(adapter, name, params)
    target_index = resolve_target(adapter, enc, target)
    meta = row_meta(adapter, enc, name, target_index)
    key = make_key(meta, resolved)
    notes: list[str] = []
    writable = store is not None
    if store is not None:
        hit, writable = read_stored(store, key, name, meta, resolved, adapter.score_shape(enc), notes)
        if hit is not None:
            if progress:
                progress(name, 1.0)
            hit.notes = method.notes(adapter, enc, resolved)
            return hit

    cost = max(1, int(method.total_cost(adapter, enc, resolved)))
    if max_cost is not None and cost > max_cost:
        raise ExplainerError(
            f"{method.title} with these settings needs {cost:,} forward passes, over the cap of "
            f"{max_cost:,}; lower its parameters or raise the cap")
    done = [0]

    def on_batch(n: int) -> None:
        done[0] += n
        if progress:
            progress(name, min(1.0, done[0] / cost))

    run = adapter.for_run(enc)  # batch sizes bounded by the input's size, private to this run
    per_batch = shares_per_batch(method, resolved)
    forward = run.forward_fn(enc, on_batch)
    if per_batch:
        forward = adapter.locked_each_batch(forward)
    with contextlib.nullcontext() if per_batch else adapter.guarded():
        start = time.perf_counter()
        attr, delta = _run_with_oom_retry(
            run, lambda: method.run(run, enc, target_index, resolved, forward))
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
    result = Attribution(name, scores, delta, seconds, resolved, warnings=notes,
                         notes=method.notes(adapter, enc, resolved), delta_stats=stats,
                         precision=meta["precision"])
    if writable:
        write_stored(store, key, result, meta, notes)
    if progress:
        progress(name, 1.0)
    return result
