"""Batch review: explain many inputs with metrics, one JSON line each, then a summary table.

``python -m explainers review`` calls :func:`run_review`; the dashboard reuses
:func:`summarize` and :func:`summary_table`.

One micro-batch of inputs is one call of :func:`review_chunk`, whichever engine runs it:
``engine="local"`` (this process) or ``engine="ray"`` (actors on a Ray cluster, see
:mod:`explainers.review_ray`). Lines are written as they finish, and a re-run with the same
output file resumes: the ids already written are skipped.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from array import array
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, TextIO

from .errors import ExplainerError
from .review_inputs import InputSource, Item, ModelInfo, label_index

COLUMNS = (
    ("deletion_aopc", "del. AOPC", "{:.3f}"),
    ("flip_count", "flip count", "{:.1f}"),
    ("flipped_share", "flipped", "{:.0%}"),
    ("agreement", "agreement", "{:.2f}"),
    ("beats_random_share", "beats random", "{:.0%}"),
    ("effect_size", "effect (median)", "{:.2f}"),
    ("seconds", "seconds", "{:.3f}"),
)
#: inputs per :func:`review_chunk` call (a Ray task; the local engine writes after each)
BATCH_SIZE = 8
EXPLAIN_TARGETS = ("predicted", "true")


# -- what to load, what to do ----------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """The arguments of :func:`explainers.load_model`: what a Ray worker loads the model
    from (the spec travels, never the weights).

    Args:
        spec, modality, checkpoint, data, labels, label_column, output: as for
            :func:`explainers.load_model`. Paths must exist on every machine that runs a
            worker.
    """
    spec: str = "text"
    modality: str | None = None
    checkpoint: str | None = None
    data: str | None = None
    labels: tuple[str, ...] | None = None
    label_column: str | None = None
    output: str | None = None

    def load(self) -> Any:
        from .api import load_model
        return load_model(self.spec, self.modality, checkpoint=self.checkpoint, data=self.data,
                          labels=list(self.labels) if self.labels else None,
                          label_column=self.label_column, output=self.output)


@dataclass(frozen=True)
class ReviewOptions:
    """How each input is reviewed (the same for every input of a run).

    Args:
        methods, params, metrics, metric_params, use_cache, unit: as for
            :func:`explainers.explain`.
        explain: ``"predicted"`` explains the predicted class; ``"true"`` the ground-truth
            label (inputs without one get an error line).
    """
    methods: tuple[str, ...] | None = None
    params: dict | None = None
    metrics: tuple[str, ...] = ()
    metric_params: dict | None = None
    unit: str | None = None
    use_cache: bool = True
    explain: str = "predicted"


# -- one input, one micro-batch ----------------------------------------------------------------------
def review_one(model: Any, ident: Any, raw: Any, methods: Sequence[str] | None, params: dict | None,
               metrics: Sequence[str], metric_params: dict | None, use_cache: bool = True,
               unit: str | None = None, target: Any = None) -> dict:
    """One review line: ``{"id": ..., **Explanation.to_dict()}``, or ``{"id": ..., "error": ...}``
    (an ExplainerError message, or the exception type and first line for unexpected errors,
    so one bad input does not stop the batch). ``target`` as for :func:`explainers.explain`."""
    from .api import explain
    try:
        result = explain(model, raw, methods=methods, params=params, use_cache=use_cache,
                         metrics=metrics, metric_params=metric_params, unit=unit, target=target)
        return {"id": ident, **result.to_dict()}
    except ExplainerError as e:
        return {"id": ident, "error": str(e)}
    except Exception as e:  # noqa: BLE001 - recorded, the batch goes on
        first = str(e).splitlines()[0] if str(e) else ""
        return {"id": ident, "error": f"{type(e).__name__}: {first}"}


def review_chunk(model: Any, items: Sequence[Item | tuple], options: ReviewOptions) -> list[dict]:
    """Review a micro-batch of inputs: one line per item, in order.

    Args:
        model: a :class:`~explainers.adapters.base.ModelAdapter`.
        items: ``(id, raw input, label or None)``; the label is a class name or index.
        options: the run's :class:`ReviewOptions`.

    Returns:
        One dict per item: :func:`review_one`'s line, plus ``input`` (the text or image
        path) and, where a label is given, ``true_label``, ``true_index`` and ``correct``
        (the prediction equals the label).
    """
    from .batched import review_chunk as explain_chunk
    out: list[dict | None] = [None] * len(items)
    todo: list[tuple[int, Any, Any, int | None]] = []  # (position, id, raw, truth)
    for pos, item in enumerate(items):
        ident, raw, label = (tuple(item) + (None,))[:3]
        try:
            truth = label_index(label, model.labels, ident)
        except ExplainerError as e:
            out[pos] = {"id": ident, "error": str(e)}
            continue
        if options.explain == "true" and truth is None:
            out[pos] = {"id": ident, "error": "no ground-truth label to explain (explain='true')"}
            continue
        todo.append((pos, ident, raw, truth))
    if todo:
        targets = [t for *_, t in todo] if options.explain == "true" else None
        records = explain_chunk(model, [(ident, raw) for _, ident, raw, _ in todo], options.methods,
                                options.params, options.metrics, options.metric_params,
                                unit=options.unit, use_cache=options.use_cache, targets=targets)
        for (pos, _, raw, truth), rec in zip(todo, records):
            out[pos] = with_label(rec, raw, truth, model.labels)
    return out  # type: ignore[return-value]


def with_label(record: dict, raw: Any, truth: int | None, classes: Sequence[str]) -> dict:
    """``record`` with the input (a text or a path) after its id, and the ground truth."""
    rec = {"id": record.get("id")}
    if isinstance(raw, str):
        rec["input"] = raw
    rec.update((k, v) for k, v in record.items() if k != "id")
    if truth is not None:
        rec["true_label"] = classes[truth] if 0 <= truth < len(classes) else str(truth)
        rec["true_index"] = truth
        if "prediction" in record:
            rec["correct"] = record["prediction"]["index"] == truth
    return rec


# -- summary -------------------------------------------------------------------------------------
def _finite(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class _Mean:
    __slots__ = ("total", "n")

    def __init__(self) -> None:
        self.total, self.n = 0.0, 0

    def add(self, v: Any) -> None:
        v = _finite(v)
        if v is not None:
            self.total += v
            self.n += 1

    def value(self) -> float | None:
        return self.total / self.n if self.n else None


class _Share:
    __slots__ = ("yes", "n")

    def __init__(self) -> None:
        self.yes, self.n = 0, 0

    def add(self, v: Any) -> None:
        if v is not None:
            self.yes += bool(v)
            self.n += 1

    def value(self) -> float | None:
        return self.yes / self.n if self.n else None


class _Median:
    """Every finite value in a compact float array (8 bytes each): the median needs them."""
    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values = array("d")

    def add(self, v: Any) -> None:
        v = _finite(v)
        if v is not None:
            self.values.append(v)

    def value(self) -> float | None:
        vals = sorted(self.values)
        if not vals:
            return None
        mid = len(vals) // 2
        return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _mean_to_others(matrix: Sequence[Sequence[float | None]], i: int) -> float | None:
    m = _Mean()
    for j, v in enumerate(matrix[i]):
        if j != i:
            m.add(v)
    return m.value()


class _Stats:
    """One method's (or the random control's) running figures."""

    def __init__(self) -> None:
        self.aopc, self.flip_count, self.agreement, self.seconds = _Mean(), _Mean(), _Mean(), _Mean()
        self.flipped, self.beats = _Share(), _Share()
        self.effect = _Median()
        self.n = 0

    def row(self) -> dict:
        return {"deletion_aopc": self.aopc.value(), "flip_count": self.flip_count.value(),
                "flipped_share": self.flipped.value(), "agreement": self.agreement.value(),
                "beats_random_share": self.beats.value(), "seconds": self.seconds.value(),
                "effect_size": self.effect.value(), "n": self.n}


class Summary:
    """:func:`summarize`, one line at a time: running sums and counts (the median effect
    size keeps one float per input), so a million-line review stays small in memory.

    Labelled lines (with ``correct``) are also summarised apart, wrong and correct."""

    def __init__(self, split: bool = True) -> None:
        self.methods: dict[str, _Stats] = {}
        self.random = _Stats()
        self.random_aopc_n = 0
        self.n_ok = self.n_err = 0
        self.outcomes = {"wrong": Summary(split=False), "correct": Summary(split=False)} if split else None

    def add(self, rec: dict) -> None:
        if "error" in rec:
            self.n_err += 1
            return
        self.n_ok += 1
        if self.outcomes is not None and rec.get("correct") is not None:
            self.outcomes["correct" if rec["correct"] else "wrong"].add(rec)
        metrics = rec.get("metrics") or {}
        faith = metrics.get("faithfulness") or {}
        flips = metrics.get("flip") or {}
        agree = metrics.get("agreement") or {}
        order = list(agree.get("methods") or [])
        for name, attr in (rec.get("attributions") or {}).items():
            d = self.methods.setdefault(name, _Stats())
            d.n += 1
            d.seconds.add(attr.get("seconds"))
            fm = (faith.get("methods") or {}).get(name)
            if fm:
                d.aopc.add(fm.get("deletion_aopc"))
                d.beats.add(fm.get("beats_random"))
                d.effect.add(fm.get("effect_size"))
            fl = (flips.get("methods") or {}).get(name)
            if fl:
                d.flip_count.add(fl.get("count"))
                d.flipped.add(fl.get("count") is not None)
            if name in order and len(order) > 1:
                d.agreement.add(_mean_to_others(agree["spearman"], order.index(name)))
        if faith.get("random"):
            self.random.aopc.add(faith["random"].get("deletion_aopc"))
            self.random_aopc_n += 1
        if flips.get("random"):
            self.random.flip_count.add(flips["random"].get("count"))
            self.random.flipped.add(flips["random"].get("count") is not None)

    def result(self) -> dict:
        """The :func:`summarize` dict."""
        rand = self.random
        random_row = {"deletion_aopc": rand.aopc.value(), "flip_count": rand.flip_count.value(),
                      "flipped_share": rand.flipped.value(), "agreement": None,
                      "beats_random_share": None, "seconds": None, "effect_size": None,
                      "n": self.random_aopc_n}
        out = {"inputs": self.n_ok, "errors": self.n_err,
               "methods": {name: d.row() for name, d in self.methods.items()}, "random": random_row}
        if self.outcomes is not None:
            wrong, correct = self.outcomes["wrong"], self.outcomes["correct"]
            labelled = wrong.n_ok + correct.n_ok
            if labelled:
                out["labelled"] = labelled
                out["accuracy"] = correct.n_ok / labelled
                out["outcomes"] = {"wrong": wrong.result(), "correct": correct.result()}
        return out


def slim(record: dict) -> dict:
    """The parts of an explanation line :func:`summarize` reads (keeps memory flat)."""
    if "error" in record:
        return {"id": record.get("id"), "error": record["error"]}
    metrics = record.get("metrics") or {}
    faith = metrics.get("faithfulness") or {}
    flips = metrics.get("flip") or {}
    agree = metrics.get("agreement") or {}
    keep_f = ("deletion_aopc", "beats_random", "effect_size", "p_value")
    attrs = record.get("attributions") or {}
    out = {
        "id": record.get("id"),
        "attributions": {m: {"seconds": a.get("seconds")} for m, a in attrs.items()},
        "metrics": {
            "faithfulness": {
                "methods": {m: {k: v.get(k) for k in keep_f}
                            for m, v in (faith.get("methods") or {}).items()},
                "random": {"deletion_aopc": (faith.get("random") or {}).get("deletion_aopc")},
            } if faith else {},
            "flip": {
                "methods": {m: {"count": v.get("count")} for m, v in (flips.get("methods") or {}).items()},
                "random": {"count": (flips.get("random") or {}).get("count")},
            } if flips else {},
            "agreement": ({"methods": agree.get("methods"), "spearman": agree.get("spearman")}
                          if agree else {}),
        },
    }
    if record.get("correct") is not None:
        out["correct"] = record["correct"]
    return out


def summarize(records: Iterable[dict]) -> dict:
    """Per-method means over explanation dicts (``Explanation.to_dict()`` lines).

    Lines with an ``"error"`` are counted and skipped. For each method: mean deletion AOPC,
    mean flip count (over inputs where it flipped) and share of inputs flipped, mean
    Spearman to the other methods, share of inputs where it beat the random control (the
    permutation test), median effect size (AOPC - random mean) / random std, and mean
    attribution seconds. The ``random`` row holds the random control's values.

    Returns:
        ``{"inputs", "errors", "methods": {m: {deletion_aopc, flip_count, flipped_share,
        agreement, beats_random_share, effect_size, seconds, n}}, "random": {...}}``; a value is None
        where the metric was not computed. Where lines carry a ground truth (``correct``),
        also ``labelled`` (their count), ``accuracy`` and ``outcomes``: ``{"wrong": {...},
        "correct": {...}}``, each the same dict over those lines only.
    """
    acc = Summary()
    for rec in records:
        acc.add(rec)
    return acc.result()


def _table(summary: dict) -> list[str]:
    rows = [(name, vals) for name, vals in (summary.get("methods") or {}).items()]
    if summary.get("random") and any(v is not None for k, v in summary["random"].items() if k != "n"):
        rows.append(("(random control)", summary["random"]))
    header = ["method"] + [title for _, title, _ in COLUMNS]
    body = []
    for name, vals in rows:
        cells = [name]
        for key, _, fmt in COLUMNS:
            v = vals.get(key)
            cells.append("-" if v is None else fmt.format(v))
        body.append(cells)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def summary_table(summary: dict) -> str:
    """A plain-text table of :func:`summarize`'s output, one row per method and the control;
    with ground-truth labels, the same table for the wrong predictions and for the correct
    ones after it. The last two lines are always the count and the column notes."""
    lines = _table(summary)
    for name in ("wrong", "correct"):
        part = (summary.get("outcomes") or {}).get(name)
        if part is not None:
            lines += ["", f"{name} predictions: {part['inputs']} input(s)"]
            lines += _table(part) if part["inputs"] else ["(none)"]
    tail = f"{summary.get('inputs', 0)} input(s) explained"
    if summary.get("errors"):
        tail += f", {summary['errors']} failed"
    if summary.get("labelled"):
        wrong = summary["outcomes"]["wrong"]["inputs"]
        tail += (f"; accuracy {summary['accuracy']:.1%} on {summary['labelled']} labelled "
                 f"({wrong} wrong)")
    notes = ("flip count: mean over inputs that flipped; agreement: mean Spearman to the other "
             "methods; beats random: permutation test of deletion AOPC against the random orders, "
             "p <= alpha; effect: (AOPC - random mean) / random std")
    return "\n".join(lines + ["", tail, notes])


# -- output file and resume ----------------------------------------------------------------------
def id_key(ident: Any) -> int | str:
    """How ids are compared on resume: as JSON writes them (``3`` and ``"3"`` differ);
    whole-number ids stay ints, the smallest key for the common case of row numbers."""
    if isinstance(ident, int) and not isinstance(ident, bool):
        return ident
    return json.dumps(ident, default=str)


@dataclass
class Resumed:
    """What an existing output file already holds."""
    done: set[int | str] = field(default_factory=set)
    rows: int = 0
    methods: tuple[str, ...] | None = None
    truncated: bool = False


def read_existing(path: str | Path, summary: Summary) -> Resumed:
    """Read the lines a previous run wrote to ``path``: their ids, added to ``summary``.

    A last line cut short by a killed run (no newline and not JSON) is cut off the file, so
    that input is explained again; a last line that is whole JSON but lacks its newline gets
    one. Any other line that is not JSON stops with an error (not a review file).
    """
    found = Resumed()
    path = Path(path)
    if not path.is_file():
        return found
    good_end = 0
    bad: tuple[int, bytes] | None = None
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if bad is not None:
                raise ExplainerError(f"{path.name}: line {bad[0]} is not a JSON review line; "
                                     "not a review output (use another --out, or --overwrite)")
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or "id" not in rec:
                    raise ValueError("no id")
            except ValueError:
                if line.endswith(b"\n"):
                    raise ExplainerError(f"{path.name}: line {number} is not a JSON review line; not a "
                                         "review output (use another --out, or --overwrite)") from None
                bad = (number, line)
                continue
            good_end += len(line)
            found.done.add(id_key(rec["id"]))
            found.rows += 1
            if found.methods is None and "attributions" in rec:
                found.methods = tuple(rec["attributions"])
            summary.add(slim(rec))
    if bad is not None:
        with open(path, "r+b") as f:
            f.truncate(good_end)
        found.truncated = True
    elif good_end and not _ends_with_newline(path):
        with open(path, "ab") as f:
            f.write(b"\n")
    return found


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


# -- engines ---------------------------------------------------------------------------------------
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
            yield review_chunk(self.model, chunk, options)

    def describe(self) -> str:
        return "local engine"

    def close(self) -> None:
        pass


def as_spec(model: Any) -> ModelSpec:
    """A :class:`ModelSpec` from a spec, a ``load_model`` string or its keyword arguments."""
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, str):
        return ModelSpec(model)
    if isinstance(model, dict):
        return ModelSpec(**model)
    raise ExplainerError("engine='ray' loads the model on each worker from its spec: pass a "
                         "ModelSpec (the load_model arguments), not a loaded model; weights are "
                         "never shipped from the driver")


def _items(inputs: Any, info: ModelInfo) -> Iterator[Item]:
    if isinstance(inputs, InputSource):
        return inputs.items(info)
    return (Item(*(tuple(x) + (None,))[:3]) for x in inputs)


def _checked(items: Iterator[Item], classes: Sequence[str], done: set[int | str],
             skipped: list[int]) -> Iterator[Item]:
    """Items not yet written, their labels mapped to class indices (an unmappable label
    stops the run at once rather than filling the file with error lines)."""
    for item in items:
        if done and id_key(item.id) in done:
            skipped[0] += 1
            continue
        truth = label_index(item.label, classes, item.id)
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
            :class:`~explainers.review_inputs.InputSource`; read lazily.
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
            :func:`explainers.review_ray.start`.
        batch_size: inputs per :func:`review_chunk` call.
        resume: with ``out``, skip the ids already in it and append; False starts over.

    Returns:
        The :func:`summarize` dict over every line in ``out`` (those of earlier runs too).
    """
    from .metrics import check_names

    metrics = check_names(metrics or [])
    if limit is not None and limit < 0:
        raise ExplainerError(f"--limit must be >= 0, got {limit}")
    if explain not in EXPLAIN_TARGETS:
        raise ExplainerError(f"explain must be one of {EXPLAIN_TARGETS}, got {explain!r}")
    if batch_size < 1:
        raise ExplainerError(f"batch size must be >= 1, got {batch_size}")
    if engine not in ("local", "ray"):
        raise ExplainerError(f"unknown engine {engine!r}; use 'local' or 'ray'")
    from .batched import review_params
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
        from .review_ray import RayEngine
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
        items = _checked(items, info.labels, found.done, skipped)
        total = limit
        if total is None and isinstance(inputs, InputSource):
            total = inputs.estimate_rows() if inputs.file else info.n_rows
        _write(runner.run(items, options, batch_size), out, summary, skipped, total,
               append=bool(found.rows) or found.truncated)
    finally:
        runner.close()
    result = summary.result()
    print(summary_table(result), file=log, flush=True)
    return result


def _write(batches: Iterator[list[dict]], out: str | Path | None, summary: Summary, skipped: list[int],
           total: int | None, append: bool) -> None:
    """Write each line as soon as its batch is back (flushed, so a killed run keeps it)."""
    tty = getattr(sys.stderr, "isatty", lambda: False)()
    cr = "\r" if tty else ""  # one line on a terminal
    sink = open(out, "a" if append else "w", encoding="utf-8") if out else nullcontext(sys.stdout)
    start = time.perf_counter()
    new = 0
    with sink as fh:
        for records in batches:
            fh.write("".join(json.dumps(r, default=str) + "\n" for r in records))
            fh.flush()
            for r in records:
                summary.add(slim(r))
            new += len(records)
            done = skipped[0] + new  # inputs of this run's stream handled so far
            rate = new / max(time.perf_counter() - start, 1e-9)
            left = f"/{total}" if total is not None else ""
            eta = (f", about {_duration((total - done) / rate)} left"
                   if total is not None and total > done else "")
            print(f"{cr}review {done}{left} ({rate * 60:.1f} inputs/min{eta})",
                  end="" if cr else "\n", file=sys.stderr, flush=True)
    if new and cr:
        print(file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
