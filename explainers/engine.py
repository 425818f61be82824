"""Running methods: parameter checks, locking, progress, GPU OOM retry, the store, and cost
estimates in seconds calibrated on this machine."""

from __future__ import annotations

import collections
import contextlib
import json
import threading
import time
import weakref
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from cache.store import BadRow, StoreFault, make_key

from . import methods  # noqa: F401  importing the package registers every method
from . import precision
from .adapters.base import Encoded, ModelAdapter
from .baselines import prepare_baselines
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


def pass_work(adapter: ModelAdapter, enc: Encoded) -> dict[str, int]:
    """Work of one row of each kind on ``enc``: :meth:`ModelAdapter.work_per_pass` for a
    forward-only row, :meth:`ModelAdapter.grad_work_per_pass` for a gradient row (the same
    but for generation: a forward and one backward per target token)."""
    return {"grad": int(adapter.grad_work_per_pass(enc)), "forward": int(adapter.work_per_pass(enc))}


def calibrate(adapter: ModelAdapter, enc: Encoded, passes: int | None = None) -> float:
    """Seconds per unit of :func:`estimate_work` on this machine, measured with a batched
    forward + backward of copies of ``enc`` (gradient passes, the dearer kind), so
    ``estimate_work(...) * calibrate(...)`` estimates a method's seconds (generation: per
    unit of a gradient row's own work, :func:`pass_work`, so price its rows with
    :func:`method_work`). A warm-up call goes first: the first gradient call of a process
    costs many times a warm one."""
    return measure_rates(adapter, enc, passes, kinds=("grad",))["grad"]


# -- cost estimates in seconds ---------------------------------------------------------------
#: the kinds of model work priced apart: rows with a backward pass, forward-only rows (an
#: attribution's perturbations and deltas) and a metric's re-predictions (text: re-tokenised)
WORK_KINDS = ("grad", "forward", "metric")
#: the newest run's weight in a running rate (an exponential moving average)
EWMA_WEIGHT = 0.5
#: seconds of a gradient row per forward-only row, assumed only until both are measured
GRAD_TO_FORWARD = 3.0
#: estimates are shown to this resolution ("under 0.1 s"); below it both agree
ESTIMATE_RESOLUTION = 0.1
#: a calibration batch holds about this much work (units of ``work_per_pass``), up to the
#: run's batch size: batches as large as the methods' own, without seconds on an image
CALIBRATION_WORK = 1500
#: a calibration call this long is timed once: a moment's noise is small beside it
SETTLED_SECONDS = 1.0


def fold(rate: float | None, seconds: float, units: float, weight: float = EWMA_WEIGHT) -> float | None:
    """The running rate (seconds per unit of work) after one measured run: an exponential
    moving average giving the run ``weight``; the first run sets it. Runs without work
    leave it as it is."""
    if units <= 0:
        return rate
    new = seconds / units
    return new if rate is None else (1.0 - weight) * rate + weight * new


def split_seconds(seconds: float, work: Mapping[str, float], rates: Mapping[str, float | None]
                  ) -> dict[str, float]:
    """A run's seconds shared among the kinds of work it did, in proportion to what each
    should have cost at ``rates``; a kind without a rate yet gets what the known kinds leave
    (all of it if none is known, split :data:`GRAD_TO_FORWARD` : 1 between gradient and
    forward rows)."""
    work = {k: float(u) for k, u in work.items() if u > 0}
    known = {k: rates[k] * u for k, u in work.items() if rates.get(k) is not None}
    unknown = [k for k in work if k not in known]
    if not unknown:
        total = sum(known.values())
        return {k: seconds * v / total for k, v in known.items()} if total > 0 else \
            {k: seconds / len(work) for k in work}
    if not known:
        weight = {k: work[k] * (GRAD_TO_FORWARD if k == "grad" else 1.0) for k in unknown}
        total = sum(weight.values())
        return {k: seconds * w / total for k, w in weight.items()}
    out = {k: min(v, seconds) for k, v in known.items()}
    left = max(seconds - sum(out.values()), 0.0)
    out.update({k: left * work[k] / sum(work[u] for u in unknown) for k in unknown})
    return out


def predict_seconds(rates: Mapping[str, float | None], work: Mapping[str, float]) -> float | None:
    """Seconds ``work`` (units per kind) takes at ``rates``; None if a kind it needs has no rate."""
    need = [k for k, u in work.items() if u > 0]
    if any(rates.get(k) is None for k in need):
        return None
    return float(sum(rates[k] * work[k] for k in need))


class CostModel:
    """Measured rates per model: seconds per unit of work per kind (:data:`WORK_KINDS`),
    calibrated once, then refreshed from every computed run; and per method the seconds per
    unit of its own estimate (its mix of kinds, overheads and batching included), once it
    has run. Thread-safe; a model's rates go with its module.

    An estimate (:func:`estimate_seconds`) is the method's own rate when it has run on this
    model, else the kinds' rates on its split of gradient and forward rows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()

    def _state(self, adapter: ModelAdapter) -> dict:
        # "runs": the kinds some computed run has measured (a calibration is only a stand-in)
        return self._models.setdefault(adapter.module, {"kinds": {}, "methods": {}, "runs": set()})

    def rates(self, adapter: ModelAdapter) -> dict[str, float | None]:
        with self._lock:
            kinds = dict(self._state(adapter)["kinds"])
        return {k: kinds.get(k) for k in WORK_KINDS}

    def method_rate(self, adapter: ModelAdapter, name: str) -> float | None:
        with self._lock:
            return self._state(adapter)["methods"].get(name)

    def calibrated(self, adapter: ModelAdapter, enc: Encoded, kinds: Sequence = WORK_KINDS) -> dict:
        """The kinds' rates, measuring those never measured nor learned (:func:`measure_rates`)."""
        have = self.rates(adapter)
        missing = [k for k in kinds if have[k] is None]
        if missing:
            measured = measure_rates(adapter, enc, kinds=missing)
            with self._lock:
                state = self._state(adapter)["kinds"]
                for k, v in measured.items():
                    state.setdefault(k, v)
            have = self.rates(adapter)
        return have

    def record(self, adapter: ModelAdapter, seconds: float, work: Mapping[str, float],
               method: str | None = None, units: float | None = None) -> None:
        """Fold one computed run in: its seconds shared among the kinds of ``work`` it did
        (:func:`split_seconds`), and, for a method, ``seconds / units`` into its own rate
        (``units``: the work its estimate counts). A kind's first run replaces its
        calibration; later runs are averaged in (:func:`fold`)."""
        with self._lock:
            state = self._state(adapter)
            kinds = state["kinds"]
            for k, secs in split_seconds(seconds, work, {k: kinds.get(k) for k in work}).items():
                kinds[k] = fold(kinds.get(k) if k in state["runs"] else None, secs, work[k])
                state["runs"].add(k)
            if method is not None and units:
                state["methods"][method] = fold(state["methods"].get(method), seconds, units)

    def forget(self, adapter: ModelAdapter) -> None:
        with self._lock:
            self._models.pop(adapter.module, None)


#: the process's measured rates (every session's runs refresh them)
COSTS = CostModel()


def measure_rates(adapter: ModelAdapter, enc: Encoded, passes: int | None = None,
                  kinds: Sequence[str] = WORK_KINDS) -> dict[str, float]:
    """Seconds per unit of work (:meth:`ModelAdapter.work_per_pass`) of each kind, measured
    on ``enc``: ``passes`` copies with a backward (``grad``; default: about
    :data:`CALIBRATION_WORK` units, at most the run's gradient batch, as large as the
    methods' batches, whose rows cost less the larger the batch), twice as many forward only
    (``forward``) and, for ``metric``, as many re-predictions the way metrics make them
    (text: edited texts, tokenised again; elsewhere a forward-only batch). Each is timed
    after one untimed warm-up call, the median of three timings (one is at the mercy of a
    busy machine's moment), or one timing that alone lasts :data:`SETTLED_SECONDS` (a
    generation row with a 12-token target: 4.3 s a call, 17.8 s for the four). Each call runs on a fresh :meth:`ModelAdapter.for_run` copy: an
    adapter that remembers the rows a run scored (generation) would answer the copies, and
    every timed call after the first, from memory; a gradient row's work is the kind's own
    (:func:`pass_work`), so a generation row with its per-token backward passes counts as
    such."""
    run = adapter.for_run(enc)
    work = pass_work(adapter, enc)
    per = work["forward"]
    if passes is None:
        passes = max(2, min(run.grad_batch_size, -(-CALIBRATION_WORK // work["grad"])))

    def timed(fn: Callable[[], Any]) -> float:
        fn()
        times: list[float] = []
        while not times or (len(times) < 3 and sum(times) < SETTLED_SECONDS):
            start = time.perf_counter()
            fn()
            if enc.inputs.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    def forward(x: torch.Tensor) -> torch.Tensor:  # a new run each call: nothing remembered
        return adapter.locked_each_batch(adapter.for_run(enc).forward_fn(enc))(x)

    def grad() -> None:
        x = enc.inputs.expand((passes,) + tuple(enc.inputs.shape[1:])).clone().requires_grad_(True)
        torch.autograd.grad(forward(x)[:, 0].sum(), x)

    def fwd() -> None:
        with torch.inference_mode():
            forward(enc.inputs.expand((2 * passes,) + tuple(enc.inputs.shape[1:])))

    def metric() -> None:
        texts = getattr(adapter, "predict_texts", None)
        if texts is not None and isinstance(enc.raw, str):
            with adapter.lock:
                texts([enc.raw] * (2 * passes))
        else:
            fwd()

    rows = {"grad": passes, "forward": 2 * passes, "metric": 2 * passes}
    jobs = {"grad": grad, "forward": fwd, "metric": metric}
    unit = {"grad": work["grad"], "forward": per, "metric": per}
    return {k: timed(jobs[k]) / (rows[k] * unit[k]) for k in kinds}


_splits: "collections.OrderedDict[tuple, float]" = collections.OrderedDict()
_splits_lock = threading.Lock()


def grad_share(adapter: ModelAdapter, enc: Encoded, name: str, params: dict | None = None) -> float:
    """The share of a method's rows that take a backward pass, found by running the method
    once against a forward that only counts (and answers zeros): exact for methods whose
    control flow never reads the outputs (``defer_model_calls``); other methods (hooks on
    the model) count as all gradient, unless they take no gradient (``takes_gradients``:
    the attention readers). Kept per method, parameters and input shape."""
    method, resolved = check_method(adapter, name, params)
    key = (name, json.dumps(jsonable(resolved), sort_keys=True), tuple(enc.inputs.shape), enc.n_features)
    with _splits_lock:
        if key in _splits:
            _splits.move_to_end(key)
            return _splits[key]
    share = 1.0 if method.takes_gradients else 0.0
    if method.defer_model_calls:
        counts = {"grad": 0, "forward": 0}
        n_out = len(adapter.labels)

        def counting(x: torch.Tensor) -> torch.Tensor:
            grad = torch.is_grad_enabled() and x.requires_grad
            counts["grad" if grad else "forward"] += int(x.shape[0])
            out = x.new_zeros((x.shape[0], n_out))
            return out + 0 * x.flatten(1).sum(1, keepdim=True) if grad else out

        try:
            prepare_baselines(adapter, enc, resolved.get("baselines"))  # no search inside the RNG lock
            # seeded runs take the model lock before the RNG lock, as run_method does
            with contextlib.nullcontext() if shares_per_batch(method, resolved) else adapter.guarded():
                method.run(adapter.for_run(enc), enc, 0, resolved, counting)
            total = counts["grad"] + counts["forward"]
            share = counts["grad"] / total if total else 1.0
        except Exception:  # noqa: BLE001 - an estimate is optional: count every row as gradient
            share = 1.0
    with _splits_lock:
        _splits[key] = share
        while len(_splits) > 256:
            _splits.popitem(last=False)
    return share


def method_work(adapter: ModelAdapter, enc: Encoded, name: str, params: dict | None = None,
                inputs: int = 1) -> dict[str, float]:
    """The units of work per kind a method's run on ``enc`` does, ``inputs`` times:
    :func:`estimate_work` split by :func:`grad_share`, its gradient rows priced at the
    kind's :func:`pass_work` (the same as a forward row's except for generation)."""
    units = float(estimate_work(adapter, enc, name, params)) * inputs
    share = grad_share(adapter, enc, name, params)
    work = pass_work(adapter, enc)
    heavier = work["grad"] / work["forward"]  # 1.0 (exactly) where gradient rows are not dearer
    return {"grad": units * share * heavier, "forward": units * (1.0 - share)}


def method_units(adapter: ModelAdapter, enc: Encoded, name: str, params: dict | None = None,
                 inputs: int = 1) -> float:
    """The work a method's own rate (:meth:`CostModel.method_rate`) is counted in:
    :func:`estimate_work` (``inputs`` times), or, where gradient rows are dearer than
    forward rows (generation), the sum of :func:`method_work`'s kinds."""
    work = pass_work(adapter, enc)
    if work["grad"] == work["forward"]:
        return float(estimate_work(adapter, enc, name, params)) * inputs
    return float(sum(method_work(adapter, enc, name, params, inputs).values()))


def estimate_seconds(adapter: ModelAdapter, enc: Encoded, name: str, params: dict | None = None,
                     inputs: int = 1, costs: CostModel = COSTS) -> float:
    """Seconds a method should take on ``enc`` (``inputs`` times: the original and an edit):
    its own measured rate once it has run on this model (refreshed by every computed run),
    else the calibrated rates of the kinds of rows it runs (each measured once per model, on
    ``enc``, if no run taught it yet). Both are per unit of work (:func:`pass_work`), so the
    estimate grows with the input: for generation with the prompt, the target's length and,
    for gradient methods, the target's tokens once more (one backward pass each)."""
    units = method_units(adapter, enc, name, params, inputs)
    rate = costs.method_rate(adapter, name)
    if rate is not None:
        return rate * units
    work = method_work(adapter, enc, name, params, inputs)
    need = tuple(k for k in ("grad", "forward") if work[k] > 0)  # calibrate only what it runs
    return float(predict_seconds(costs.calibrated(adapter, enc, need), work) or 0.0)


def estimate_metric_seconds(adapter: ModelAdapter, enc: Encoded, rows: int,
                            costs: CostModel = COSTS) -> float:
    """Seconds ``rows`` metric re-predictions of ``enc`` should take (``rows``: the metric's
    forward passes, :func:`explainers.metrics.metric_costs`), at the measured metric rate."""
    rates = costs.calibrated(adapter, enc, ("metric",))
    return float(rates["metric"] * rows * adapter.work_per_pass(enc))


def record_metric_run(adapter: ModelAdapter, enc: Encoded, rows: int, seconds: float,
                      costs: CostModel = COSTS) -> None:
    """Fold a computed metrics run (``rows`` estimated re-predictions) into the metric rate."""
    costs.record(adapter, seconds, {"metric": float(rows * adapter.work_per_pass(enc))})


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


def check_row(row: Any, meta: dict, params: dict, shape: tuple[int, ...],
              matrix_rows: int = 0) -> str | None:
    """Why a row read from the store must not be served, or None when it may be.

    A row is served only if it carries the ``meta`` and the resolved ``params`` its key
    promised, and finite scores of the expected ``shape`` (one per feature, or H x W); with
    ``matrix_rows`` (generation: one per target token), a finite ``matrix`` of that many
    rows of ``shape``.
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
    if matrix_rows:
        try:
            matrix = np.asarray(row.get("matrix"), dtype=np.float64)
        except (TypeError, ValueError):
            return "the matrix is not numbers"
        if matrix.shape != (matrix_rows,) + tuple(shape) or not np.all(np.isfinite(matrix)):
            return f"the matrix has shape {matrix.shape}, expected {(matrix_rows,) + tuple(shape)}"
    if not np.all(np.isfinite(scores)) or (delta is not None and not np.isfinite(delta)) \
            or not np.isfinite(seconds):
        return "values are not finite"
    return None


def read_stored(store: Any, key: str, name: str, meta: dict, params: dict,
                shape: tuple[int, ...], notes: list[str], matrix_rows: int = 0
                ) -> tuple[Attribution | None, bool]:
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
    why = check_row(row, meta, params, shape, matrix_rows)
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


def matrix_columns(adapter: ModelAdapter, enc: Encoded) -> list[int]:
    """The output columns an adapter wants attributed besides the target, one matrix row
    each (generation: one per target token); none for classifiers."""
    columns = getattr(adapter, "matrix_columns", None)
    return list(columns(enc)) if callable(columns) else []


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
        Where the adapter has :func:`matrix_columns` (generation), its ``matrix`` holds one
        row of per-feature scores per column (per target token), from the same run.
    """
    method, resolved = check_method(adapter, name, params)
    if not method.forward_only and precision.active() != "fp32":
        with precision.fp32():  # no gradient path ever runs in bf16; stored (and served) as fp32
            return run_method(adapter, enc, name, params, target, store, progress, max_cost)
    target_index = resolve_target(adapter, enc, target)
    meta = row_meta(adapter, enc, name, target_index)
    key = make_key(meta, resolved)
    columns = matrix_columns(adapter, enc)
    notes: list[str] = []
    writable = store is not None
    if store is not None:
        hit, writable = read_stored(store, key, name, meta, resolved, adapter.score_shape(enc), notes,
                                    len(columns))
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
    rows = {"grad": 0, "forward": 0}
    kind = ["forward"]

    def on_batch(n: int) -> None:  # n: rows the model ran (a remembered row is none)
        done[0] += n
        rows[kind[0]] += n  # by kind, for the cost estimates
        if progress:
            progress(name, min(1.0, done[0] / cost))

    run = adapter.for_run(enc)  # batch sizes bounded by the input's size, private to this run
    prepare_baselines(adapter, enc, resolved.get("baselines"))  # searched here: not the method's time
    per_batch = shares_per_batch(method, resolved)
    counted = run.forward_fn(enc, on_batch)

    def forward(x: torch.Tensor) -> torch.Tensor:
        kind[0] = "grad" if torch.is_grad_enabled() and x.requires_grad else "forward"
        return counted(x)

    if per_batch:
        forward = run.locked_each_batch(forward)  # the run's cut of batches into locked calls
    with contextlib.nullcontext() if per_batch else adapter.guarded():
        start = time.perf_counter()
        attr, delta = _run_with_oom_retry(
            run, lambda: method.run(run, enc, target_index, resolved, forward))
        # one more run per matrix column; the adapter's run remembers every row it scored
        # (and its gradients), so these reuse the model work of the run above
        column_scores = [_run_with_oom_retry(run, lambda c=c: method.run(run, enc, c, resolved, forward))[0]
                         for c in columns]
        if attr.is_cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    work = pass_work(adapter, enc)
    COSTS.record(adapter, seconds, {k: float(n * work[k]) for k, n in rows.items()}, name,
                 method_units(adapter, enc, name, resolved))  # the work its estimate counts
    scores = adapter.reduce(attr.float(), enc).astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise ExplainerError(f"{method.title} produced non-finite scores; try other parameters")
    stats = None
    if isinstance(delta, dict):
        stats = {k: v for k, v in delta.items() if k != "convergence_delta"}
        delta = delta["convergence_delta"]
    matrix = (np.stack([adapter.reduce(r.float(), enc).astype(np.float64) for r in column_scores])
              if column_scores else None)
    if matrix is not None and not np.all(np.isfinite(matrix)):
        raise ExplainerError(f"{method.title} produced non-finite per-token scores; try other parameters")
    result = Attribution(name, scores, delta, seconds, resolved, warnings=notes,
                         notes=method.notes(adapter, enc, resolved), delta_stats=stats, matrix=matrix,
                         precision=meta["precision"])
    if writable:
        write_stored(store, key, result, meta, notes)
    if progress:
        progress(name, 1.0)
    return result
