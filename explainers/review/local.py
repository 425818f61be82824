"""A micro-batch of review inputs, labelled, reviewed in this process: what the local
engine runs and what each Ray worker runs (:mod:`explainers.review.ray_engine`)."""

from __future__ import annotations

import itertools
from typing import Any, Iterator, Sequence

from .. import precision
from ..errors import ExplainerError
from .batched import review_chunk
from .inputs import Item, ModelInfo, label_index
from .options import ModelSpec, ReviewOptions


def review_items(model: Any, items: Sequence[Item | tuple], options: ReviewOptions) -> list[dict]:
    """Review a micro-batch of inputs: one line per item, in order.

    Args:
        model: a :class:`~explainers.adapters.base.ModelAdapter`.
        items: ``(id, raw input, label or None)``; the label is a class name or index.
        options: the run's :class:`ReviewOptions`.

    Returns:
        One dict per item: :func:`~explainers.review.batched.review_one`'s line, plus ``input`` (the text or image
        path) and, where a label is given, ``true_label``, ``true_index`` and ``correct``
        (the prediction equals the label).
    """
    out: list[dict | None] = [None] * len(items)
    todo: list[tuple[int, Any, Any, int | None]] = []  # (position, id, raw, truth)
    for pos, item in enumerate(items):
        ident, raw, label = (tuple(item) + (None,))[:3]
        try:
            answers = getattr(model, "label_kind", "class") == "answer"  # generation: expected text
            truth = (None if label in (None, "") else str(label)) if answers else label_index(label, model.labels, ident)
        except ExplainerError as e:
            out[pos] = {"id": ident, "error": str(e)}
            continue
        if options.explain == "true" and truth is None:
            out[pos] = {"id": ident, "error": "no ground-truth label to explain (explain='true')"}
            continue
        todo.append((pos, ident, raw, truth))
    if todo:
        targets = [t for *_, t in todo] if options.explain == "true" else None
        with precision.use(options.precision, model.device):
            records = review_chunk(model, [(ident, raw) for _, ident, raw, _ in todo], options.methods,
                                   options.params, options.metrics, options.metric_params,
                                   unit=options.unit, use_cache=options.use_cache, targets=targets)
        for (pos, _, raw, truth), rec in zip(todo, records):
            out[pos] = with_label(rec, raw, truth, model.labels)
    return out  # type: ignore[return-value]


def with_label(record: dict, raw: Any, truth: int | str | None, classes: Sequence[str]) -> dict:
    """``record`` with the input (a text or a path) after its id, and the ground truth. An
    expected answer (generation, a string) is ``correct`` when the greedy continuation
    contains it, ignoring case."""
    rec = {"id": record.get("id")}
    if isinstance(raw, str):
        rec["input"] = raw
    rec.update((k, v) for k, v in record.items() if k != "id")
    if isinstance(truth, str):
        rec["expected"] = truth
        if "output" in record:
            said = record["output"]["continuation"]["text"]
            rec["correct"] = truth.strip().casefold() in said.casefold()
    elif truth is not None:
        rec["true_label"] = classes[truth] if 0 <= truth < len(classes) else str(truth)
        rec["true_index"] = truth
        if "prediction" in record:
            rec["correct"] = record["prediction"]["index"] == truth
    return rec


class LocalEngine:
    """Reviews micro-batches in this process."""

    def __init__(self, model: Any) -> None:
        self.model = model.load() if isinstance(model, ModelSpec) else model

    def info(self) -> ModelInfo:
        return ModelInfo.from_adapter(self.model)

    def run(self, items: Iterator[Item], options: ReviewOptions, batch_size: int) -> Iterator[list[dict]]:
        while True:
            chunk = list(itertools.islice(items, batch_size))
            if not chunk:
                return
            yield review_items(self.model, chunk, options)

    def describe(self) -> str:
        return "local engine"

    def close(self) -> None:
        pass
