"""Explain many inputs at once: every method's model work and every metric's re-predictions
run as a few large batches across inputs instead of many small ones per input.

The results per input are those of :func:`explainers.explain` on that input alone (within
float rounding: the same rows go through the model in other batch compositions).

How the model work is pooled:

* **Deferred model calls** (IG with fixed ``n_steps``, GradientSHAP, Saliency, Input x
  Gradient, SmoothGrad, Occlusion, Feature ablation, KernelSHAP, LIME, and any method that
  sets ``defer_model_calls``). These methods never branch on the model's outputs, so each
  input's run is played twice: a *record* pass runs the method's own code (Captum's, with
  its seeding) with a forward that only notes the batches it is given and answers zeros;
  the noted batches of every input are then evaluated together in large batches
  (:class:`Pool`), with gradients of each input's target where the method asked for
  them; a *replay* pass runs the same code again and the forward answers each batch with
  the logits computed for it, carrying the pooled gradient (``logits + (x - x.detach()) *
  grad`` on the target). The replayed calls are checked against the recorded ones; a
  mismatch (a method that does branch on outputs) falls back to one-at-a-time.
* **Adaptive IG** (``n_steps="auto"``) branches by design: its batched version refines all
  inputs' paths level by level (:func:`explainers.quadrature.integrate`), pooling each
  level's new points across inputs.
* Anything else (methods that hook the model, such as Grad-CAM) runs one input at a time
  through :meth:`Method.attribute_many`'s default loop.

Text rows of different lengths share a batch padded to the longest, with the attention
mask hiding the padding (:meth:`TextAdapter.stack_inputs`); each row is cut back to its own
length before anything is attributed, so padded positions never carry attribution.
Batches hold at most the adapter's batch budget (``grad_batch_size`` / ``eval_batch_size``
rows, fewer for long texts, as :meth:`ModelAdapter.for_run` gives), rows sorted by length so
that little is padded.

Metrics: faithfulness curves, the random control and flip searches (round by round) are
predicted for all inputs together into each input's memo, then each input's metrics are
computed as before and find their predictions there. Agreement needs no model; stability,
sanity and robustness run per input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch

from .adapters.base import Encoded, ModelAdapter
from .engine import (
    Progress,
    _from_store,
    _to_store,
    check_method,
    resolve_target,
    row_meta,
    shares_per_batch,
)
from .errors import ExplainerError
from .results import Attribution, Explanation, Prediction

if TYPE_CHECKING:
    from .methods.base import Method

#: the method parameters ``review`` should use unless the user sets them: adaptive IG, where
#: cost matters most (a median of 25 path points on SST-2 dev instead of 52 forwards, at the
#: same 1 % tolerance; BENCHMARKS.md). Merged under the user's ``--param`` values.
REVIEW_DEFAULT_PARAMS: dict[str, dict] = {"integrated_gradients": {"n_steps": "auto"}}

def review_params(methods: Sequence[str] | None, params: dict | None) -> dict[str, dict]:
    """``params`` over :data:`REVIEW_DEFAULT_PARAMS`, for the selected ``methods`` only
    (None: the default methods), the user's values winning: the parameters a review runs with."""
    from .api import check_methods
    chosen = check_methods(methods)
    out = {m: dict(v) for m, v in (params or {}).items()}
    for m, defaults in REVIEW_DEFAULT_PARAMS.items():
        if m in chosen:
            out[m] = {**defaults, **out.get(m, {})}
    return out


#: inputs per micro-batch when the caller gives none: enough to fill a batch with a few
#: texts' IG steps, small enough that the deferred points (IG: ~50 per input) stay in memory
DEFAULT_BATCH = 16


class ReplayMismatch(RuntimeError):
    """A method's replay asked the model something its record pass did not."""


# -- pooled model work -------------------------------------------------------------------------
@dataclass
class Request:
    """One batch a method gave the forward: input ``index``'s rows ``x``; ``target`` set
    when the method takes gradients of that class (else forward only)."""

    index: int
    x: torch.Tensor
    target: int | None
    logits: torch.Tensor | None = None
    grad: torch.Tensor | None = None


class Pool:
    """Evaluates :class:`Request` s of many inputs together, within the batch budget.

    Args:
        adapter: the model adapter.
        encs: the inputs (a request's ``index`` points here).
        on_rows: called with the number of rows after each batch (progress).
    """

    def __init__(self, adapter: ModelAdapter, encs: Sequence[Encoded],
                 on_rows: Callable[[int], None] | None = None) -> None:
        self.adapter, self.encs, self.on_rows = adapter, list(encs), on_rows
        self.batches = 0
        self.rows = 0

    def budget(self, index: int, grad: bool) -> int:
        run = self.adapter.for_run(self.encs[index])
        return max(1, run.grad_batch_size if grad else run.eval_batch_size)

    def run(self, requests: Sequence[Request]) -> None:
        """Fill every request's ``logits`` (and ``grad`` where it has a target)."""
        for grad in (True, False):
            todo = [r for r in requests if (r.target is not None) == grad and r.x.shape[0]]
            groups: dict[tuple, list[Request]] = {}
            for r in todo:
                groups.setdefault(self.adapter.stack_key(r.x), []).append(r)
            for group in groups.values():
                self._run_group(group, grad)

    def _run_group(self, requests: list[Request], grad: bool) -> None:
        # rows sorted by their input's size, so a batch pads little; segments of a request
        # are split where a batch is full
        requests = sorted(requests, key=lambda r: self.adapter.work_per_pass(self.encs[r.index]))
        for r in requests:
            r.logits = torch.empty((r.x.shape[0], len(self.adapter.labels)), dtype=torch.float32,
                                   device=r.x.device)
            if grad:
                r.grad = torch.zeros_like(r.x)
        batch: list[tuple[Request, int, int]] = []
        size = 0
        for r in requests:
            start = 0
            while start < r.x.shape[0]:
                cap = self.budget(r.index, grad)  # the longest input so far sets the budget
                if size >= cap:
                    self._run_batch(batch, grad)
                    batch, size = [], 0
                take = min(r.x.shape[0] - start, cap - size)
                batch.append((r, start, start + take))
                size += take
                start += take
        if batch:
            self._run_batch(batch, grad)

    def _run_batch(self, batch: list[tuple[Request, int, int]], grad: bool) -> None:
        adapter = self.adapter
        xs = [r.x[a:b] for r, a, b in batch]
        encs = [self.encs[r.index] for r, _, _ in batch]
        with adapter.guarded():
            x, context = adapter.stack_inputs(xs, encs)
            if grad:
                x = x.detach().requires_grad_(True)
                with torch.enable_grad():
                    logits = adapter.forward_stacked(x, context)
                    targets = torch.cat([torch.full((b - a,), r.target, dtype=torch.long)
                                         for r, a, b in batch]).to(logits.device)
                    (g,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
            else:
                with torch.inference_mode():
                    logits = adapter.forward_stacked(x, context)
        logits = logits.detach()
        offset = 0
        for r, a, b in batch:
            n = b - a
            r.logits[a:b] = logits[offset:offset + n]
            if grad:
                own = tuple(slice(0, s) for s in r.x.shape[1:])  # cut the padding off
                r.grad[a:b] = g[(slice(offset, offset + n),) + own]
            offset += n
        self.batches += 1
        self.rows += offset
        if self.on_rows:
            self.on_rows(offset)

    def probabilities(self, index_xs: Sequence[tuple[int, torch.Tensor]]) -> list[torch.Tensor]:
        """Softmax probabilities for forward-only batches ``(input index, rows)``."""
        reqs = [Request(i, x, None) for i, x in index_xs]
        self.run(reqs)
        return [torch.softmax(r.logits, dim=-1) if r.logits is not None
                else torch.zeros((0, len(self.adapter.labels))) for r in reqs]


class Tape:
    """The forward of one input's deferred run: records in the first pass, replays pooled
    results in the second."""

    def __init__(self, index: int, target: int, n_classes: int) -> None:
        self.index, self.target, self.n_classes = index, target, n_classes
        self.requests: list[Request] = []
        self.replaying = False
        self.position = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wants_grad = torch.is_grad_enabled() and x.requires_grad
        if not self.replaying:
            self.requests.append(Request(self.index, x.detach().clone(),
                                         self.target if wants_grad else None))
            out = x.new_zeros((x.shape[0], self.n_classes))
            return out + 0 * x.flatten(1).sum(1, keepdim=True) if wants_grad else out
        if self.position >= len(self.requests):
            raise ReplayMismatch("the replay made more model calls than the record")
        req = self.requests[self.position]
        self.position += 1
        if req.x.shape != x.shape or (req.target is not None) != wants_grad \
                or not torch.equal(req.x, x.detach()):
            raise ReplayMismatch("the replay asked for another batch than the record")
        out = req.logits.to(x.dtype)
        if wants_grad:
            onehot = torch.nn.functional.one_hot(torch.tensor(self.target), self.n_classes).to(x)
            out = out + ((x - x.detach()) * req.grad).flatten(1).sum(1, keepdim=True) * onehot
        return out


def deferred(method: "Method", adapter: ModelAdapter, encs: Sequence[Encoded], targets: Sequence[int],
             params: dict, pool: Pool) -> list[Any]:
    """:meth:`Method.run` on each input, its model calls pooled across inputs (see the
    module docstring). Returns ``(attr, delta)`` or the exception, per input."""
    tapes, out = [], [None] * len(encs)
    for i, (enc, t) in enumerate(zip(encs, targets)):
        tape = Tape(i, t, len(adapter.labels))
        try:
            method.run(adapter.for_run(enc), enc, t, params, tape.forward)
            tapes.append(tape)
        except Exception as e:  # noqa: BLE001 - this input fails, the others go on
            out[i] = e
            tapes.append(None)
    pool.run([r for tape in tapes if tape is not None for r in tape.requests])
    for i, tape in enumerate(tapes):
        if tape is None:
            continue
        tape.replaying = True
        try:
            out[i] = method.run(adapter.for_run(encs[i]), encs[i], targets[i], params, tape.forward)
            if tape.position != len(tape.requests):
                raise ReplayMismatch("the replay made fewer model calls than the record")
        except ReplayMismatch:  # the method branched on outputs: run it on its own
            out[i] = looped(method, adapter, [encs[i]], [targets[i]], params, pool, offset=i)[0]
        except Exception as e:  # noqa: BLE001
            out[i] = e
    return out


def looped(method: "Method", adapter: ModelAdapter, encs: Sequence[Encoded], targets: Sequence[int],
           params: dict, pool: Pool, offset: int = 0) -> list[Any]:
    """:meth:`Method.run` one input at a time, locked as :func:`explainers.engine.run_method`
    locks it (per batch, or for the whole run when it hooks the model or draws random
    numbers)."""
    import contextlib
    out: list[Any] = []
    for enc, t in zip(encs, targets):
        run = adapter.for_run(enc)
        forward = run.forward_fn(enc, pool.on_rows)
        per_batch = shares_per_batch(method, params)
        if per_batch:
            forward = adapter.locked_each_batch(forward)
        try:
            with contextlib.nullcontext() if per_batch else adapter.guarded():
                out.append(method.run(run, enc, t, params, forward))
        except Exception as e:  # noqa: BLE001
            out.append(e)
    return out


def adaptive_ig_many(adapter: ModelAdapter, encs: Sequence[Encoded], targets: Sequence[int],
                     params: dict, pool: Pool) -> list[Any]:
    """Adaptive IG (``n_steps="auto"``) on many inputs: one row per (input, baseline), all
    rows refined by :func:`explainers.quadrature.integrate`, each level's new points
    pooled. A row stops exactly where it would alone, so each input's result is its
    one-at-a-time result."""
    from . import quadrature
    from .methods.base import repeat_for_baselines
    from .methods.integrated_gradients import adaptive_result
    out: list[Any] = [None] * len(encs)
    rows: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (input, x, baseline)
    owner: dict[int, list[int]] = {}
    for i, enc in enumerate(encs):
        try:
            base = adapter.baselines(enc, params["baselines"])
        except Exception as e:  # noqa: BLE001
            out[i] = e
            continue
        xs = repeat_for_baselines(enc, base)
        for r in range(base.shape[0]):
            owner.setdefault(i, []).append(len(rows))
            rows.append((i, xs[r:r + 1], base[r:r + 1]))
    if not rows:
        return out

    def evaluate(which: np.ndarray, alphas: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        per_row: dict[int, list[int]] = {}
        for j, r in enumerate(which):
            per_row.setdefault(int(r), []).append(j)
        reqs, order = [], []
        for r, js in per_row.items():
            i, x, b = rows[r]
            a = torch.as_tensor(alphas[js], dtype=x.dtype, device=x.device).reshape(
                (-1,) + (1,) * (x.dim() - 1))
            reqs.append(Request(i, (b + a * (x - b)).detach(), targets[i]))
            order.append((r, js))
        pool.run(reqs)
        g: list[Any] = [None] * len(which)
        f = torch.empty(len(which), dtype=torch.float64)
        for (r, js), req in zip(order, reqs):
            i, x, b = rows[r]
            grads = req.grad * (x - b)
            for n, j in enumerate(js):
                g[j] = grads[n]
                f[j] = float(req.logits[n, targets[i]])
        return g, f

    outcome = quadrature.integrate(evaluate, len(rows), params["rtol"])
    for i, mine in owner.items():
        out[i] = adaptive_result(outcome.select(mine))
    return out


# -- explain many --------------------------------------------------------------------------
def _encode(model: ModelAdapter, raw: Any, unit: str | None) -> Encoded:
    from .api import check_text, encode
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
    probs = pool.probabilities([(i, e.inputs) for i, e in enumerate(encs)])
    out = []
    for p in probs:
        p = p[0].cpu().numpy().astype(float)
        idx = int(p.argmax())
        out.append(Prediction(idx, model.label(idx), p.tolist()))
    return out


def explain_many(model: ModelAdapter, raws: Sequence[Any], methods: Sequence[str] | None = None,
                 params: dict[str, dict] | None = None, metrics: Sequence[str] | None = None,
                 metric_params: dict | None = None, targets: Sequence[Any] | None = None,
                 unit: str | None = None, use_cache: bool = True, batch_size: int | None = None,
                 progress: Progress | None = None, store: Any = None) -> list[Explanation | ExplainerError]:
    """:func:`explainers.explain` for many inputs, their model work pooled into large batches.

    Args:
        model: from :func:`explainers.load_model`.
        raws: the inputs (as for ``explain``; an :class:`Encoded` is used as is).
        methods, params, metrics, metric_params, unit, use_cache, store: as for ``explain``.
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
    from .api import check_methods, check_params
    methods = check_methods(methods)
    params = check_params(params, methods)
    metrics = list(metrics or [])
    if metrics:
        from .metrics import check_names
        metrics = check_names(metrics)
    checked = {name: check_method(model, name, params.get(name)) for name in methods}
    raws = list(raws)
    if targets is not None and len(targets) != len(raws):
        raise ExplainerError(f"{len(targets)} targets for {len(raws)} inputs")
    if use_cache and store is None:
        from cache.store import default_store
        store = default_store()
    size = max(1, int(batch_size or DEFAULT_BATCH))
    results: list[Explanation | ExplainerError | None] = [None] * len(raws)
    for start in range(0, len(raws), size):
        idx = list(range(start, min(start + size, len(raws))))

        def step(stage: str, f: float, start=start, n=len(idx)) -> None:
            if progress:
                progress(stage, min(1.0, (start + f * n) / max(1, len(raws))))

        out = _explain_chunk(model, [raws[i] for i in idx],
                             None if targets is None else [targets[i] for i in idx],
                             methods, params, checked, metrics, metric_params, unit,
                             store if use_cache else None, step)
        for i, r in zip(idx, out):
            results[i] = r
    return results  # type: ignore[return-value]


def _explain_chunk(model, raws, targets, methods, params, checked, metrics, metric_params, unit,
                   store, step) -> list[Explanation | ExplainerError]:
    from .api import check_metric_options, collect_warnings
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
            warnings=collect_warnings(model, encs[k], attributions[k].values()))
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


def run_many(model: ModelAdapter, method: "Method", encs: Sequence[Encoded], targets: Sequence[int],
             resolved: dict, store: Any = None) -> list[Attribution | Exception]:
    """One method on many inputs: stored results served per input (each input's own key),
    the rest attributed together by :meth:`Method.attribute_many`; ``seconds`` is the
    batch's time shared evenly among the inputs it computed."""
    from cache.store import make_key
    name = method.name
    out: list[Any] = [None] * len(encs)
    metas, keys, notes, writable = [], [], [], []
    for k, (enc, t) in enumerate(zip(encs, targets)):
        meta = row_meta(model, enc, name, t)
        key = make_key(meta, resolved)
        note: list[str] = []
        ok = store is not None
        if store is not None:
            hit, ok = _from_store(store, key, name, meta, resolved, model.score_shape(enc), note)
            if hit is not None:
                hit.notes = method.notes(model, enc, resolved)
                out[k] = hit
        metas.append(meta), keys.append(key), notes.append(note), writable.append(ok)
    todo = [k for k in range(len(encs)) if out[k] is None]
    if not todo:
        return out
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
                             notes=method.notes(model, enc, resolved), delta_stats=stats)
        if writable[k]:
            _to_store(store, keys[k], result, metas[k], notes[k])
        out[k] = result
    return out


# -- metrics -----------------------------------------------------------------------------
def prefetch(model: ModelAdapter, predictors: Sequence[Any], masks: Sequence[np.ndarray | None]) -> None:
    """Predict ``masks[i]`` for ``predictors[i]`` (a :class:`~explainers.metrics.common.Repredictor`)
    for all inputs together and memoise them there. Text edits (``delete``/``mask``) go
    through one :meth:`~explainers.adapters.text.TextAdapter.predict_texts` call, which
    groups texts of equal token length (no padding); the ``baseline`` perturbation through
    a :class:`Pool`."""
    todo = []
    for p, m in zip(predictors, masks):
        if m is None or not len(m):
            continue
        keep, keys = p.missing(m)
        if len(keys):
            todo.append((p, keep, keys))
    if not todo:
        return
    if all(p.edits for p, _, _ in todo):
        texts = [p.edited(row) for p, keep, _ in todo for row in keep]
        with model.guarded():
            probs = model.predict_texts(texts).float().cpu().numpy()
        offset = 0
        for p, keep, keys in todo:
            p.fill(keys, probs[offset:offset + len(keys)])
            offset += len(keys)
        return
    pool = Pool(model, [p.enc for p, _, _ in todo])
    xs = []
    for i, (p, keep, _) in enumerate(todo):
        mask = torch.from_numpy(np.ascontiguousarray(keep)).to(p.enc.inputs.device)
        xs.append((i, p.adapter.perturb(p.enc, mask, p.baseline)))
    for (p, _, keys), probs in zip(todo, pool.probabilities(xs)):
        p.fill(keys, probs.float().cpu().numpy())


def metrics_many(model: ModelAdapter, encs: Sequence[Encoded], explanations: Sequence[Explanation],
                 names: Sequence[str], options: dict | None, params: dict | None,
                 store: Any = None) -> list[dict | Exception]:
    """:func:`explainers.metrics.compute` for many inputs, the re-predictions of
    faithfulness and flip predicted across inputs first (see :func:`prefetch`)."""
    from .metrics import compute
    from .metrics.common import Repredictor, feature_scores, resolve_options
    from .metrics.faithfulness import faithfulness_masks
    from .metrics.flip import FlipSearch, search_orders

    preds: list[Any] = []
    opts, scores = [], []
    for enc, ex in zip(encs, explanations):
        try:
            o = resolve_options(options, model, enc)
            preds.append(Repredictor(model, enc, o["baseline"], o["perturbation"]))
            opts.append(o)
            scores.append(feature_scores(model, enc, ex))
        except Exception:  # noqa: BLE001 - compute() below reports it for this input
            preds.append(None), opts.append(None), scores.append(None)
    live = [i for i, p in enumerate(preds) if p is not None]
    if "faithfulness" in names:
        prefetch(model, [preds[i] for i in live],
                 [faithfulness_masks(scores[i], encs[i].n_features, opts[i]["random_orders"], opts[i]["seed"])
                  for i in live])
    if "flip" in names and model.output_kind == "softmax":
        # score and sigmoid flips search across a threshold (compute() runs them per input)
        searches = {}
        for i in live:
            original = int(explanations[i].prediction.index)
            toward = int(explanations[i].target["index"]) == original
            ordered = scores[i] if toward else {m: -s for m, s in scores[i].items()}
            searches[i] = FlipSearch(search_orders(ordered, encs[i].n_features, opts[i]["seed"]),
                                     original, encs[i].n_features, chunk=max(1, model.eval_batch_size))
        while True:
            active = [i for i, s in searches.items() if not s.done]
            if not active:
                break
            masks = {i: searches[i].masks() for i in active}
            prefetch(model, [preds[i] for i in active], [masks[i] for i in active])
            for i in active:
                searches[i].feed(preds[i](masks[i]))  # all memo hits now
        empty = [i for i in live if any(c is None for c, _ in searches[i].result.values())]
        prefetch(model, [preds[i] for i in empty],
                 [np.zeros((1, encs[i].n_features), dtype=bool) for i in empty])
    out: list[Any] = []
    for i, (enc, ex) in enumerate(zip(encs, explanations)):
        try:
            out.append(compute(model, enc, ex, list(names), options or {}, params=params,
                               store=store, predictor=preds[i]))
        except Exception as e:  # noqa: BLE001
            out.append(e)
    return out


# -- review -------------------------------------------------------------------------------
def review_chunk(model: ModelAdapter, items: Sequence[tuple[Any, Any]], methods: Sequence[str] | None,
                 params: dict | None, metrics: Sequence[str], metric_params: dict | None,
                 unit: str | None = None, use_cache: bool = True,
                 targets: Sequence[Any] | None = None, progress: Progress | None = None) -> list[dict]:
    """Review lines for a micro-batch of ``(id, raw input)`` pairs, explained together:
    ``{"id": ..., **Explanation.to_dict()}`` or ``{"id": ..., "error": ...}`` per item,
    as :func:`explainers.review.review_one` writes them. One bad input gets its error line
    and the others go on; an error that fails every input alike (bad parameters) is
    every line's error."""
    items = list(items)
    try:
        results = explain_many(model, [raw for _, raw in items], methods, params, metrics,
                               metric_params, targets=targets, unit=unit, use_cache=use_cache,
                               batch_size=max(1, len(items)), progress=progress)
    except ExplainerError as e:
        return [{"id": ident, "error": str(e)} for ident, _ in items]
    except Exception:  # noqa: BLE001 - a fault of the pooled path: one input at a time instead
        from .review import review_one
        return [review_one(model, ident, raw, methods, params, metrics, metric_params, use_cache, unit,
                           target=None if targets is None else targets[i])
                for i, (ident, raw) in enumerate(items)]
    return [{"id": ident, "error": str(r)} if isinstance(r, ExplainerError) else {"id": ident, **r.to_dict()}
            for (ident, _), r in zip(items, results)]
