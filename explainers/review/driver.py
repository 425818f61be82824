"""The review driver: read the inputs, skip those already written, hand micro-batches to an
engine, write each line as it comes back, and print the summary table.

One micro-batch of inputs is one call of :func:`explainers.review.local.review_items`,
whichever engine runs it: ``engine="local"`` (this process) or ``engine="ray"`` (actors on a
Ray cluster, see :mod:`explainers.review.ray_engine`). Lines are written as they finish, and a
re-run with the same output file resumes: the ids already written are skipped.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, TextIO

from ..errors import ExplainerError
from ..metrics import check_names
from .batched import review_params
from .inputs import InputSource, Item, ModelInfo, label_index
from .local import LocalEngine
from .options import BATCH_SIZE, EXPLAIN_TARGETS, ReviewOptions, as_spec
from .outputs import Resumed, id_key, read_existing, write_lines
from .summary import Summary, summary_table

def _items(inputs: Any, info: ModelInfo) -> Iterator[Item]:
    if isinstance(inputs, InputSource):
        return inputs.items(info)
    return (Item(*(tuple(x) + (None,))[:3]) for x in inputs)


def _checked(items: Iterator[Item], classes: Sequence[str] | None, done: set[int | str],
             skipped: list[int]) -> Iterator[Item]:
    """Items not yet written, their labels mapped to class indices (an unmappable label
    stops the run at once rather than filling the file with error lines); with no
    ``classes`` (generation: expected answers) the labels stay as written."""
    for item in items:
        if done and id_key(item.id) in done:
            skipped[0] += 1
            continue
        truth = item.label if classes is None else label_index(item.label, classes, item.id)
        yield Item(item.id, item.raw, truth)


def run_review(model: Any, inputs: Iterable[tuple] | InputSource, methods: Sequence[str] | None = None,
               params: dict | None = None, metrics: Sequence[str] | None = None,
               metric_params: dict | None = None, limit: int | None = None,
               out: str | Path | None = None, use_cache: bool = True, *, log: TextIO | None = None,
               unit: str | None = None, explain: str = "predicted", engine: str = "local",
               workers: int | None = None, address: str | None = None,
               cpus_per_worker: float | None = None, gpus_per_worker: float | None = None,
               batch_size: int = BATCH_SIZE, resume: bool = True) -> dict:
    """Explain every input with metrics and summarize the methods.

    Args:
        model: a :class:`~explainers.adapters.base.ModelAdapter`, or a :class:`ModelSpec`
            (required for ``engine="ray"``: each worker loads the model from it).
        inputs: ``(id, raw input)`` or ``(id, raw input, label)`` tuples, or an
            :class:`~explainers.review.inputs.InputSource`; read lazily.
        methods, params, metrics, metric_params, use_cache: as for
            :func:`explainers.explain`.
        limit: only the first ``limit`` inputs (counting those already written).
        out: write the JSON lines to this file; None writes them to stdout.
        log: where the table goes (default: stderr when the JSON goes to stdout, stdout
            when it goes to a file). Progress always goes to stderr.
        unit: text only: ``"word"`` (default) or ``"piece"`` features.
        explain: ``"predicted"`` (default) or ``"true"``: explain the ground-truth class.
        engine: ``"local"`` (this process) or ``"ray"``.
        workers, address, cpus_per_worker, gpus_per_worker: Ray only; see
            :func:`explainers.review.ray_engine.start`.
        batch_size: inputs per micro-batch (one :func:`~explainers.review.local.review_items` call).
        resume: with ``out``, skip the ids already in it and append; False starts over.

    Returns:
        The :func:`summarize` dict over every line in ``out`` (those of earlier runs too).
    """
    metrics = check_names(metrics or [])
    if limit is not None and limit < 0:
        raise ExplainerError(f"--limit must be >= 0, got {limit}")
    if explain not in EXPLAIN_TARGETS:
        raise ExplainerError(f"explain must be one of {EXPLAIN_TARGETS}, got {explain!r}")
    if batch_size < 1:
        raise ExplainerError(f"batch size must be >= 1, got {batch_size}")
    if engine not in ("local", "ray"):
        raise ExplainerError(f"unknown engine {engine!r}; use 'local' or 'ray'")
    params = review_params(methods, params)  # adaptive IG unless the caller sets n_steps
    options = ReviewOptions(methods=tuple(methods) if methods else None, params=params or None,
                            metrics=tuple(metrics), metric_params=metric_params, unit=unit,
                            use_cache=use_cache, explain=explain)
    if log is None:
        log = sys.stdout if out else sys.stderr
    summary = Summary()
    found = read_existing(out, summary) if out and resume else Resumed()
    if found.rows and found.methods is not None and methods and set(found.methods) != set(methods):
        raise ExplainerError(f"{Path(out).name} holds lines explained with {list(found.methods)}, not "
                             f"{list(methods)}: use another --out, or --overwrite to start over")
    if found.rows:
        cut = " (its cut-off last line dropped)" if found.truncated else ""
        print(f"resuming {out}: {found.rows} line(s) already written{cut}", file=sys.stderr, flush=True)
    if engine == "ray":
        from .ray_engine import RayEngine  # lazy: keeps Ray off every import path but its own
        runner: Any = RayEngine(as_spec(model), workers=workers, address=address,
                                cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker)
    else:
        if any(v is not None for v in (workers, address, cpus_per_worker, gpus_per_worker)):
            raise ExplainerError("workers, address, cpus/gpus per worker need engine='ray'")
        runner = LocalEngine(model)
    try:
        info = runner.info()
        if isinstance(inputs, InputSource):
            print(inputs.describe() + f"; {runner.describe()}", file=sys.stderr, flush=True)
        items = _items(inputs, info)
        if limit is not None:
            items = itertools.islice(items, limit)
        skipped = [0]
        items = _checked(items, None if info.free_labels else info.labels, found.done, skipped)
        total = limit
        if total is None and isinstance(inputs, InputSource):
            total = inputs.estimate_rows() if inputs.file else info.n_rows
        write_lines(runner.run(items, options, batch_size), out, summary, skipped, total,
               append=bool(found.rows) or found.truncated)
    finally:
        runner.close()
    result = summary.result()
    print(summary_table(result), file=log, flush=True)
    return result


