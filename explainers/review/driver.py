"""The review driver: read the inputs, skip those already written, hand micro-batches to an
engine, write each line as it comes back, and print the summary table.

One micro-batch of inputs is one call of :func:`explainers.review.local.review_items`,
whichever engine runs it: ``engine="local"`` (this process) or ``engine="ray"`` (actors on a
Ray cluster, see :mod:`explainers.review.ray_engine`). Lines are written as they finish, in
input order, with an error line for each input the file gets wrong (:class:`InOrder`), and a
re-run with the same output file resumes when its sidecar says it is this run's output
(:mod:`explainers.review.outputs`): the ids already written are skipped.
"""

from __future__ import annotations

import collections
import itertools
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, TextIO

from .. import precision as precision_policy
from ..api import check_methods, check_metric_names
from ..errors import ExplainerError
from ..metrics.common import review_metric_options
from .batched import review_params
from .inputs import InputSource, Item, ModelInfo, label_index
from .local import LocalEngine
from .options import BATCH_SIZE, EXPLAIN_TARGETS, ModelSpec, ReviewOptions, as_spec
from .outputs import (Resumed, Writer, check_model, check_out, drop_cut_line, id_key, read_existing, run_meta,
                      write_meta)
from .report import ReviewSummary, model_card, read_lines, run_card
from .slices import Views, check_columns, overview_table, slices_table
from .summary import Summary, summary_table
from .trackers import check_publish, publish


def _items(inputs: Any, info: ModelInfo) -> Iterator[Item]:
    if isinstance(inputs, InputSource):
        return inputs.items(info)
    return (Item(*(tuple(x) + (None,))[:3]) for x in inputs)


#: error lines held back to keep the file in input order; beyond this many they go out at once
MAX_HELD = 1024


class InOrder:
    """Writes the reviewed lines as their batches come back and the error lines of inputs
    that were never reviewed (unreadable rows, unknown labels) among them in input order:
    an error line waits only for the reviewed inputs read before it (with the Ray engine,
    whose batches finish in any order, lines follow the batches, as before). At most
    :data:`MAX_HELD` lines wait; beyond that they are written at once."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self.queue: collections.deque = collections.deque()  # [key, its line or None, back yet]
        self.waiting: dict[int | str, list] = {}

    def reviewed(self, key: int | str) -> None:
        """An input handed to the engine: lines read after it wait for its line."""
        entry = [key, None, False]
        self.queue.append(entry)
        self.waiting[key] = entry

    def failed(self, record: dict) -> None:
        if not self.queue or len(self.queue) >= MAX_HELD:
            self.writer.add([record])
        else:
            self.queue.append([None, record, True])

    def add(self, records: list[dict]) -> None:
        """A batch's lines, back from the engine."""
        loose = []
        for r in records:
            entry = self.waiting.pop(id_key(r.get("id")), None)
            if entry is None:
                loose.append(r)
            else:
                entry[1:] = [r, True]
        if loose:
            self.writer.add(loose)
        self._release()

    def close(self) -> None:
        """Whatever still waits (lines read after an input the engine never answered)."""
        held = [entry[1] for entry in self.queue if entry[1] is not None]
        self.queue.clear()
        if held:
            self.writer.add(held)

    def _release(self) -> None:
        out = []
        while self.queue and self.queue[0][2]:
            entry = self.queue.popleft()
            if entry[1] is not None:
                out.append(entry[1])
        if out:
            self.writer.add(out)


def _checked(items: Iterator[Item], classes: Sequence[str] | None, done: set[int | str], skipped: list[int],
             order: InOrder, strict: bool, seen: set | None, cells: dict) -> Iterator[Item]:
    """Items not yet written, their labels mapped to class indices. An input that cannot be
    read or has an unknown label is reported (its error line written in order, ``order``)
    and the run goes on; with ``strict`` it stops there. ``seen``: ids met so far, where ids
    are not known to be unique (inputs given from Python): a repeat stops the run, since a
    resume would skip it. With no ``classes`` (generation: expected answers) the labels stay
    as written. ``cells``: the ``slice_by`` values of the items handed on, by id, until their
    lines come back (:func:`_with_cells`)."""
    for item in items:
        key = id_key(item.id)
        if done and key in done:
            skipped[0] += 1
            continue
        if seen is not None:
            if key in seen:
                raise ExplainerError(f"input id {item.id!r:.60} repeats; a resumed review skips inputs by "
                                     "id, so ids must be unique")
            seen.add(key)
        error, truth = item.error, None
        if error is None:
            try:
                truth = item.label if classes is None else label_index(item.label, classes, item.id)
            except ExplainerError as e:
                if strict:
                    raise ExplainerError(f"{e} (strict: the run stops at the first bad input)") from None
                error = str(e)
        if error is not None:
            order.failed({"id": item.id, "error": error})
            continue
        order.reviewed(key)
        if item.columns is not None:
            cells[key] = item.columns
        yield Item(item.id, item.raw, truth)


def _with_cells(batches: Iterable[list[dict]], cells: dict) -> Iterator[list[dict]]:
    """Each reviewed line with its input's ``slice_by`` values (``columns``), which the
    engines never see."""
    for records in batches:
        if cells:
            for r in records:
                value = cells.pop(id_key(r.get("id")), None)
                if value is not None:
                    r["columns"] = value
        yield records


def run_review(model: Any, inputs: Iterable[tuple] | InputSource, methods: Sequence[str] | None = None,
               params: dict | None = None, metrics: Sequence[str] | None = None,
               metric_params: dict | None = None, limit: int | None = None,
               out: str | Path | None = None, use_cache: bool = True, *, log: TextIO | None = None,
               unit: str | None = None, explain: str = "predicted", engine: str = "local",
               workers: int | None = None, address: str | None = None,
               cpus_per_worker: float | None = None, gpus_per_worker: float | None = None,
               batch_size: int = BATCH_SIZE, resume: bool = True, strict: bool = False,
               report: str | Path | None = None, tensorboard: str | Path | None = None,
               mlflow: str | None = None, slice_by: Sequence[str] | str | None = None,
               precision: str | None = None) -> ReviewSummary:
    """Explain every input with metrics and summarize the methods.

    Args:
        model: a :class:`~explainers.adapters.base.ModelAdapter`, or a :class:`ModelSpec`
            (required for ``engine="ray"``: each worker loads the model from it).
        inputs: ``(id, raw input)`` or ``(id, raw input, label)`` tuples, or an
            :class:`~explainers.review.inputs.InputSource`; read lazily.
        methods, params, metrics, metric_params, use_cache: as for
            :func:`explainers.explain`; ``metric_params`` over the review's own defaults
            (:data:`~explainers.metrics.common.REVIEW_METRIC_OPTIONS`: 3 random orders per
            input, for the summary's dataset-level test).
        limit: only the first ``limit`` inputs (counting those already written).
        out: write the JSON lines to this file, and ``OUT.meta.json`` beside it (what the
            run read, with which model and settings); None writes the lines to stdout.
        log: where the table goes (default: stderr when the JSON goes to stdout, stdout
            when it goes to a file). Progress always goes to stderr.
        unit: text only: ``"word"`` (default) or ``"piece"`` features.
        explain: ``"predicted"`` (default) or ``"true"``: explain the ground-truth class.
        engine: ``"local"`` (this process) or ``"ray"``.
        workers, address, cpus_per_worker, gpus_per_worker: Ray only; see
            :func:`explainers.review.ray_engine.start`.
        batch_size: inputs per micro-batch (one :func:`~explainers.review.local.review_items` call).
        resume: with ``out``, skip the ids already in it and append, if it is this run's
            output (same inputs, model and settings; see
            :func:`~explainers.review.outputs.read_existing`); anything else is refused.
            False starts over.
        strict: stop at the first input that cannot be read or has an unknown label
            (default: its error line is written and the run goes on); for an
            :class:`InputSource` this sets its ``strict``.
        report: write a self-contained HTML report here (:mod:`explainers.review.report`).
        tensorboard: write the summary to this TensorBoard log folder.
        mlflow: log an MLflow run to this tracking URI (``""``: a local file store,
            ``mlruns/`` next to ``out``). The last three need ``out`` (they read the lines
            back) and TensorBoard / MLflow the ``tracking`` extra
            (:mod:`explainers.review.trackers`).
        slice_by: input-file columns to slice the summary by, besides the true and the
            predicted label, correct / wrong and (text) length (:mod:`explainers.review.slices`);
            each line carries their values as ``columns``. Needs an :class:`InputSource`
            (default: its own ``slice_by``).
        precision: ``"fp32"`` (default), ``"bf16-forward"`` or ``"auto"``, as for
            :func:`explainers.explain`; each line's ``precision`` says what it ran as.

    Returns:
        The :func:`summarize` dict over every line in ``out`` (those of earlier runs too), as
        a :class:`~explainers.review.report.ReviewSummary` (a dict that draws itself in a notebook),
        with ``slices`` (per slicing, the same dict per slice) and ``global`` (per feature,
        each method's mean and mean |attribution|: :mod:`explainers.review.overview`).
    """
    metrics = check_metric_names(metrics)
    chosen = check_methods(methods)
    precision = precision_policy.check(precision)
    if limit is not None and limit < 0:
        raise ExplainerError(f"--limit must be >= 0, got {limit}")
    if explain not in EXPLAIN_TARGETS:
        raise ExplainerError(f"explain must be one of {EXPLAIN_TARGETS}, got {explain!r}")
    if batch_size < 1:
        raise ExplainerError(f"batch size must be >= 1, got {batch_size}")
    if engine not in ("local", "ray"):
        raise ExplainerError(f"unknown engine {engine!r}; use 'local' or 'ray'")
    check_publish(out, report, tensorboard, mlflow)
    source = inputs if isinstance(inputs, InputSource) else None
    columns = check_columns(slice_by) or list(source.slice_by if source is not None else ())
    if columns and source is None:
        raise ExplainerError("slice_by reads columns of an input file: give the inputs as an InputSource")
    if columns and list(source.slice_by) != columns:
        source.slice_by = columns
        source.check()  # the columns exist, before any model is loaded
    views = Views(columns)
    publishing = bool(report or tensorboard) or mlflow is not None
    params = review_params(methods, params)  # adaptive IG unless the caller sets n_steps
    metric_params = review_metric_options(metric_params)  # a few random orders: the dataset-level test
    options = ReviewOptions(methods=tuple(methods) if methods else None, params=params or None,
                            metrics=tuple(metrics), metric_params=metric_params, unit=unit,
                            use_cache=use_cache, explain=explain, precision=precision)
    settings = {"methods": chosen, "params": params, "metrics": metrics, "metric_params": metric_params,
                "unit": unit, "explain": explain}
    if columns:  # resumed lines must carry the same columns
        settings["slice_by"] = columns
    if precision != "fp32":  # part of what a resumed run must match (fp32 runs' files unchanged)
        settings["precision"] = precision
    if source is not None:
        source.strict = source.strict or strict
    identity = source.identity() if source is not None else {"iterable": True}
    if log is None:
        log = sys.stdout if out else sys.stderr
    summary = Summary()
    found = Resumed()
    if out:
        check_out(out, source.file if source is not None else None)
        if resume:  # before any model is loaded: the file, its sidecar and its lines
            found = read_existing(out, run_meta(identity, {}, settings), summary)
    if engine == "ray":
        from .ray_engine import RayEngine  # lazy: keeps Ray off every import path but its own
        runner: Any = RayEngine(as_spec(model), workers=workers, address=address,
                                cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)
    else:
        if any(v is not None for v in (workers, address, cpus_per_worker, gpus_per_worker)):
            raise ExplainerError("workers, address, cpus/gpus per worker need engine='ray'")
        runner = LocalEngine(model)
    writer = None
    try:
        info = runner.info()
        about = None
        if publishing:  # the model as the report names it (Ray: as a worker loaded it)
            about = model_card(runner.model) if hasattr(runner, "model") else runner.model_card
        meta = run_meta(identity, {"name": _model_name(model), "key": info.key}, settings)
        resuming = bool(found.rows) or found.cut_line is not None
        if out and resuming:
            check_model(out, meta)
            cut = drop_cut_line(out, found)
            print(f"resuming {out}: {found.rows} line(s) already written{cut}", file=sys.stderr, flush=True)
        elif out:
            write_meta(out, meta)
        if source is not None:
            print(source.describe() + f"; {runner.describe()}", file=sys.stderr, flush=True)
        items = _items(inputs, info)
        if limit is not None:
            items = itertools.islice(items, limit)
        skipped = [0]
        total = limit
        if total is None and source is not None:
            total = source.estimate_rows() if source.file else info.n_rows
        writer = Writer(out, summary, skipped, total, append=resuming)
        order = InOrder(writer)
        cells: dict = {}
        checked = _checked(items, None if info.free_labels else info.labels, found.done, skipped, order, strict,
                           seen=None if source is not None else set(), cells=cells)
        batches = _with_cells(runner.run(checked, options, batch_size), cells)
        for records in (batches if out else views.watch(batches)):  # a file: read back at the end
            order.add(records)
        order.close()
    finally:
        if writer is not None:
            writer.close()
        runner.close()
    if source is not None and source.reported:
        print(f"{source.reported} row(s) of {Path(source.file).name} could not be read; each has an error "
              f"line ({'; '.join(source.examples)}{'; ...' if source.reported > len(source.examples) else ''})",
              file=sys.stderr, flush=True)
    result = ReviewSummary(summary.result())
    result.update((views.feed(read_lines(out)) if out else views).result())  # a file: every line in it
    print(summary_table(result), file=log, flush=True)
    for extra in (slices_table(result), overview_table(result.get("global"))):
        if extra:
            print("\n" + extra, file=log, flush=True)
    if publishing:
        card = run_card(about, source=inputs, methods=methods, params=params, metrics=metrics,
                        metric_params=metric_params, explain=explain, unit=unit, limit=limit, engine=engine,
                        out=out)
        publish(result, card, out, report=report, tensorboard=tensorboard, mlflow=mlflow)
    return result


def _model_name(model: Any) -> str:
    if isinstance(model, (ModelSpec, str, dict)):
        return as_spec(model).spec
    return str(getattr(model, "name", type(model).__name__))
