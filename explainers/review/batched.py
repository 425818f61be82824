"""Explain many inputs at once: every method's model work and every metric's re-predictions
run as a few large batches across inputs instead of many small ones per input.

The results per input are those of :func:`explainers.explain` on that input alone (within
float rounding: the same rows go through the model in other batch compositions).

How the model work is pooled (:mod:`explainers.pooling`): methods whose model calls can be
recorded and replayed are pooled across inputs; adaptive IG refines all inputs' paths level
by level (:func:`explainers.methods.integrated_gradients.adaptive_many`); methods that hook
the model run one input at a time. The metrics' re-predictions are pooled by
:mod:`explainers.metrics.batched`.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from cache.store import default_store, make_key

from .. import precision as precision_policy
from ..adapters.base import Encoded, ModelAdapter
from ..api import (check_metric_names, check_metric_options, check_methods, check_params, check_text,
                   collect_warnings, encode, explain)
from ..baselines import prepare_baselines
from ..engine import Progress, check_method, read_stored, resolve_target, row_meta, write_stored
from ..errors import ExplainerError
from ..metrics.batched import metrics_many
from ..methods.base import Method
from ..pooling import Pool
from ..results import Attribution, Explanation, Prediction

#: the method parameters ``review`` should use unless the user sets them, merged under the
#: user's ``--param`` values: fixed 50-step Gauss-Legendre IG again. Adaptive IG that is right
#: word by word (``n_steps="auto"``) needs a median of 49 path points on SST-2 dev, no saving
#: over 50 steps (+2 forwards), and still misses 1e-3 per-word accuracy on some sentences
#: (BENCHMARKS.md, "Adaptive IG"); it stays an option.
REVIEW_DEFAULT_PARAMS: dict[str, dict] = {"integrated_gradients": {"n_steps": 50}}

def review_params(methods: Sequence[str] | None, params: dict | None) -> dict[str, dict]:
    """``params`` over :data:`REVIEW_DEFAULT_PARAMS`, for the selected ``methods`` only
    (None: the default methods), the user's values winning: the parameters a review runs with."""
    chosen = check_methods(methods)
    out = {m: dict(v) for m, v in (params or {}).items()}
    for m, defaults in REVIEW_DEFAULT_PARAMS.items():
        if m in chosen:
            out[m] = {**defaults, **out.get(m, {})}
    return out


#: inputs per micro-batch when the caller gives none: enough to fill a batch with a few
#: texts' IG steps, small enough that the deferred points (IG: ~50 per input) stay in memory
DEFAULT_BATCH = 16


def _encode(model: ModelAdapter, raw: Any, unit: str | None) -> Encoded:
    if isinstance(raw, Encoded):
        return raw
    if isinstance(raw, str) and model.modality == "text":
        check_text(raw)
    return encode(model, raw, unit)


def _error(e: BaseException) -> ExplainerError:
    if isinstance(e, ExplainerError):
        return e
    first = str(e).splitlines()[0] if str(e) else ""
    return ExplainerError(f"{type(e).__name__}: {first}")


def predictions(model: ModelAdapter, encs: Sequence[Encoded], pool: Pool) -> list[Prediction]:
    """Each input's prediction, all in a few batches."""
    outputs = pool.outputs([(i, e.inputs) for i, e in enumerate(encs)])
    return [model.make_prediction(o[0].cpu().numpy().astype(float).tolist()) for o in outputs]


def explain_many(model: ModelAdapter, raws: Sequence[Any], methods: Sequence[str] | None = None,
                 params: dict[str, dict] | None = None, metrics: Sequence[str] | None = None,
                 metric_params: dict | None = None, targets: Sequence[Any] | None = None,
                 unit: str | None = None, use_cache: bool = True, batch_size: int | None = None,
                 progress: Progress | None = None, store: Any = None,
                 precision: str | None = None) -> list[Explanation | ExplainerError]:
    """:func:`explainers.explain` for many inputs, their model work pooled into large batches.

    Args:
        model: from :func:`explainers.load_model`.
        raws: a list of inputs (each as for ``explain``; an :class:`Encoded` is used as is).
            One string (bytes, a mapping) is refused, not read as a list of characters.
        methods, params, metrics, metric_params, unit, use_cache, store, precision: as for
            ``explain`` (the predictions are float32 whatever the policy).
        targets: one per input (None: the predicted class), or None for all predicted.
        batch_size: inputs per micro-batch (default :data:`DEFAULT_BATCH`).
        progress: ``progress(stage, fraction)``, the fraction of all inputs done.

    Returns:
        Per input, its :class:`Explanation` or the :class:`ExplainerError` that stopped it
        (one bad input never stops the others).

    Raises:
        ExplainerError: for arguments that fail every input alike (unknown method or
            metric, bad parameters), before any model work.
    """
    if isinstance(raws, (str, bytes, Mapping, Encoded)) or not hasattr(raws, "__iter__"):
        raise ExplainerError(f"explain_many takes a list of inputs, not one {type(raws).__name__} "
                             "(explain_many(m, [x]) for one input, or explain(m, x))")
    policy = precision_policy.check(precision) if precision is not None else None
    methods = check_methods(methods)
    params = check_params(params, methods)
    metrics = check_metric_names(metrics)
    checked = {name: check_method(model, name, params.get(name)) for name in methods}
    raws = list(raws)
    if targets is not None and len(targets) != len(raws):
        raise ExplainerError(f"{len(targets)} targets for {len(raws)} inputs")
    if use_cache and store is None:
        store = default_store()
    size = max(1, int(batch_size or DEFAULT_BATCH))
    results: list[Explanation | ExplainerError | None] = [None] * len(raws)
    for start in range(0, len(raws), size):
        idx = list(range(start, min(start + size, len(raws))))

        def step(stage: str, f: float, start=start, n=len(idx)) -> None:
            if progress:
                progress(stage, min(1.0, (start + f * n) / max(1, len(raws))))

        with precision_policy.use(policy, model.device):
            out = _explain_chunk(model, [raws[i] for i in idx],
                                 None if targets is None else [targets[i] for i in idx],
                                 methods, params, checked, metrics, metric_params, unit,
                                 store if use_cache else None, step)
        for i, r in zip(idx, out):
            results[i] = r
    return results  # type: ignore[return-value]


def _explain_chunk(model, raws, targets, methods, params, checked, metrics, metric_params, unit,
                   store, step) -> list[Explanation | ExplainerError]:
    out: list[Any] = [None] * len(raws)
    encs: list[Encoded] = []
    where: list[int] = []
    for i, raw in enumerate(raws):
        try:
            enc = _encode(model, raw, unit)
            if metrics:
                check_metric_options(model, enc, metric_params)
            encs.append(enc)
            where.append(i)
        except Exception as e:  # noqa: BLE001
            out[i] = _error(e)
    if not encs:
        return out
    total_methods = max(1, len(methods) + (1 if metrics else 0))
    pool = Pool(model, encs)
    with precision_policy.fp32():  # the predictions a user reads are always float32
        preds = predictions(model, encs, pool)
    target_of: list[int | None] = []
    for k, (enc, i) in enumerate(zip(encs, where)):
        t = None if targets is None else targets[i]
        try:
            target_of.append(preds[k].index if t is None else resolve_target(model, enc, t))
        except Exception as e:  # noqa: BLE001
            out[i] = _error(e)
            target_of.append(None)
    alive = [k for k in range(len(encs)) if target_of[k] is not None]
    attributions: list[dict[str, Attribution]] = [{} for _ in encs]
    for m, name in enumerate(methods):
        method, resolved = checked[name]
        live = [k for k in alive if out[where[k]] is None]
        step(name, m / total_methods)
        results = run_many(model, method, [encs[k] for k in live], [target_of[k] for k in live],
                           resolved, store)
        for k, r in zip(live, results):
            if isinstance(r, Exception):
                out[where[k]] = _error(r)
            else:
                attributions[k][name] = r
    done = [k for k in alive if out[where[k]] is None]
    explanations = {}
    for k in done:
        explanations[k] = Explanation(
            model=model.name, modality=model.modality, features=model.features(encs[k]),
            prediction=preds[k], target={"index": target_of[k], "label": model.label(target_of[k])},
            attributions=attributions[k],
            warnings=collect_warnings(model, encs[k], attributions[k].values()),
            baseline_seconds=encs[k].extra.get("baseline_seconds", 0.0),
            precision=precision_policy.active())
    if metrics and done:
        step("metrics", len(methods) / total_methods)
        blocks = metrics_many(model, [encs[k] for k in done], [explanations[k] for k in done],
                              metrics, metric_params, params, store)
        for k, b in zip(done, blocks):
            if isinstance(b, Exception):
                out[where[k]] = _error(b)
            else:
                explanations[k].metrics = b
    for k in done:
        if out[where[k]] is None:
            out[where[k]] = explanations[k]
    step("done", 1.0)
    return out


def run_many(model: ModelAdapter, method: Method, encs: Sequence[Encoded], targets: Sequence[int],
             resolved: dict, store: Any = None) -> list[Attribution | Exception]:
    """One method on many inputs: stored results served per input (each input's own key),
    the rest attributed together by :meth:`Method.attribute_many`; ``seconds`` is the
    batch's time shared evenly among the inputs it computed, the baselines' search excluded
    (:func:`explainers.baselines.prepare_baselines`, reported as ``baseline_seconds``)."""
    if not method.forward_only and precision_policy.active() != "fp32":
        with precision_policy.fp32():  # no gradient path ever runs in bf16; stored (and served) as fp32
            return run_many(model, method, encs, targets, resolved, store)
    name = method.name
    out: list[Any] = [None] * len(encs)
    metas, keys, notes, writable = [], [], [], []
    for k, (enc, t) in enumerate(zip(encs, targets)):
        meta = row_meta(model, enc, name, t)
        key = make_key(meta, resolved)
        note: list[str] = []
        ok = store is not None
        if store is not None:
            hit, ok = read_stored(store, key, name, meta, resolved, model.score_shape(enc), note)
            if hit is not None:
                hit.notes = method.notes(model, enc, resolved)
                out[k] = hit
        metas.append(meta), keys.append(key), notes.append(note), writable.append(ok)
    todo = [k for k in range(len(encs)) if out[k] is None]
    if not todo:
        return out
    for k in todo:  # searched baselines (neutral) are not the method's time
        try:
            prepare_baselines(model, encs[k], resolved.get("baselines"))
        except Exception:  # noqa: BLE001 - the method meets the same error and reports it per input
            pass
    pool = Pool(model, [encs[k] for k in todo])
    start = time.perf_counter()
    raw = method.attribute_many(model, [encs[k] for k in todo], [targets[k] for k in todo], resolved, pool)
    if any(getattr(a, "is_cuda", False) for r in raw if isinstance(r, tuple) for a in r[:1]):
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / len(todo)
    for k, r in zip(todo, raw):
        if isinstance(r, Exception):
            out[k] = r
            continue
        attr, delta = r
        enc = encs[k]
        scores = model.reduce(attr.float(), enc).astype(np.float64)
        if not np.all(np.isfinite(scores)):
            out[k] = ExplainerError(f"{method.title} produced non-finite scores; try other parameters")
            continue
        stats = None
        if isinstance(delta, dict):
            stats = {key: v for key, v in delta.items() if key != "convergence_delta"}
            delta = delta["convergence_delta"]
        result = Attribution(name, scores, delta, seconds, resolved, warnings=notes[k],
                             precision=metas[k]["precision"],
                             notes=method.notes(model, enc, resolved), delta_stats=stats)
        if writable[k]:
            write_stored(store, keys[k], result, metas[k], notes[k])
        out[k] = result
    return out


def review_one(model: Any, ident: Any, raw: Any, methods: Sequence[str] | None, params: dict | None,
               metrics: Sequence[str], metric_params: dict | None, use_cache: bool = True,
               unit: str | None = None, target: Any = None) -> dict:
    """One review line: ``{"id": ..., **Explanation.to_dict()}``, or ``{"id": ..., "error": ...}``
    (an ExplainerError message, or the exception type and first line for unexpected errors,
    so one bad input does not stop the batch). ``target`` as for :func:`explainers.explain`."""
    try:
        result = explain(model, raw, methods=methods, params=params, use_cache=use_cache,
                         metrics=metrics, metric_params=metric_params, unit=unit, target=target)
        return {"id": ident, **result.to_dict()}
    except ExplainerError as e:
        return {"id": ident, "error": str(e)}
    except Exception as e:  # noqa: BLE001 - recorded, the batch goes on
        first = str(e).splitlines()[0] if str(e) else ""
        return {"id": ident, "error": f"{type(e).__name__}: {first}"}


def review_chunk(model: ModelAdapter, items: Sequence[tuple[Any, Any]], methods: Sequence[str] | None,
                 params: dict | None, metrics: Sequence[str], metric_params: dict | None,
                 unit: str | None = None, use_cache: bool = True,
                 targets: Sequence[Any] | None = None, progress: Progress | None = None) -> list[dict]:
    """Review lines for a micro-batch of ``(id, raw input)`` pairs, explained together:
    ``{"id": ..., **Explanation.to_dict()}`` or ``{"id": ..., "error": ...}`` per item,
    as :func:`review_one` writes them. One bad input gets its error line
    and the others go on; an error that fails every input alike (bad parameters) is
    every line's error."""
    items = list(items)
    if not getattr(model, "poolable", True):  # generation: every prompt has its own target
        return [review_one(model, ident, raw, methods, params, metrics, metric_params, use_cache, unit,
                           target=None if targets is None else targets[i])
                for i, (ident, raw) in enumerate(items)]
    try:
        results = explain_many(model, [raw for _, raw in items], methods, params, metrics,
                               metric_params, targets=targets, unit=unit, use_cache=use_cache,
                               batch_size=max(1, len(items)), progress=progress)
    except ExplainerError as e:
        return [{"id": ident, "error": str(e)} for ident, _ in items]
    except Exception:  # noqa: BLE001 - a fault of the pooled path: one input at a time instead
        return [review_one(model, ident, raw, methods, params, metrics, metric_params, use_cache, unit,
                           target=None if targets is None else targets[i])
                for i, (ident, raw) in enumerate(items)]
    return [{"id": ident, "error": str(r)} if isinstance(r, ExplainerError) else {"id": ident, **r.to_dict()}
            for (ident, _), r in zip(items, results)]
