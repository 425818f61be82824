"""A review's summary per slice of its inputs: by true label, by predicted label, by length
(text), and by any column of the input file (``--slice-by COLUMN``). (Correct / wrong is the
summary's own split, its ``outcomes``; :func:`slice_value` knows it as ``"outcome"`` too.)

Each slice gets the same table as the whole review (a :class:`~explainers.review.summary.Summary`
of its lines). Lines are read one at a time; memory grows with the number of slices, never
with the inputs (a slicing keeps at most :data:`MAX_VALUES` values, the rest go to
``"(other)"``).
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Sequence

from .overview import MIN_INPUTS, Overview, method_pairs
from .summary import COLUMNS, Summary, slim

#: slicings computed for every review (where its lines have what they need)
DEFAULT_SLICINGS = ("true_label", "predicted", "length")
#: what each slicing is called in a table or a report
SLICING_TITLES = {"outcome": "correct / wrong", "true_label": "true label", "predicted": "predicted label",
                  "length": "length (words)"}
#: text lengths (features) bucketed at these upper bounds
LENGTH_BUCKETS = (5, 10, 20, 40)
#: values kept per slicing; the rest are summarised together as "(other)"
MAX_VALUES = 30
OTHER = "(other)"


def column_slicing(name: str) -> str:
    """The slicing key of an input-file column (``--slice-by NAME``)."""
    return f"column:{name}"


def length_bucket(n: int) -> str:
    low = 1
    for high in LENGTH_BUCKETS:
        if n <= high:
            return f"{low}-{high}"
        low = high + 1
    return f"{low}+"


def _bucket_order(value: str) -> int:
    head = value.split("-")[0].rstrip("+")
    return int(head) if head.isdigit() else 10 ** 9


def slice_value(record: Mapping, slicing: str) -> str | None:
    """Which slice of ``slicing`` a review line belongs to (None: it has no such value)."""
    if slicing == "outcome":
        c = record.get("correct")
        return None if c is None else ("correct" if c else "wrong")
    if slicing == "true_label":
        v = record.get("true_label")
        return None if v is None else str(v)
    if slicing == "predicted":
        pred = record.get("prediction") or {}
        if pred.get("output_kind") == "score":  # a score has no class to slice by
            return None
        return None if pred.get("label") is None else str(pred["label"])
    if slicing == "length":
        feats = record.get("features")
        return length_bucket(len(feats)) if record.get("modality") == "text" and isinstance(feats, list) else None
    if slicing.startswith("column:"):
        v = (record.get("columns") or {}).get(slicing[len("column:"):])
        return None if v is None else str(v)
    raise ValueError(f"unknown slicing {slicing!r}")


class Slices:
    """Per slicing and value, a :class:`Summary` of the lines in that slice, fed one line
    at a time.

    Args:
        columns: input-file columns to slice by too (their values travel in each line's
            ``columns``).
    """

    def __init__(self, columns: Sequence[str] = ()) -> None:
        self.slicings = list(DEFAULT_SLICINGS) + [column_slicing(c) for c in columns]
        self.parts: dict[str, dict[str, Summary]] = {s: {} for s in self.slicings}

    def add(self, record: Mapping) -> None:
        if "error" in record:
            return
        slimmed = None
        for slicing in self.slicings:
            value = slice_value(record, slicing)
            if value is None:
                continue
            parts = self.parts[slicing]
            if value not in parts and len(parts) >= MAX_VALUES:
                value = OTHER
            if slimmed is None:
                slimmed = slim(dict(record))
            parts.setdefault(value, Summary()).add(slimmed)  # with its accuracy and outcomes

    def result(self) -> dict:
        """``{slicing: [{"value", "inputs", "methods", "random", ...}, ...]}`` (each slice
        the :func:`~explainers.review.summary.summarize` dict of its lines), for the slicings
        with at least two slices; values in order (lengths by size, the rest by name)."""
        out = {}
        for slicing, parts in self.parts.items():
            if len(parts) < 2:
                continue  # one slice is the whole review again
            key = _bucket_order if slicing == "length" else (lambda v: (v == OTHER, v))
            out[slicing] = [{"value": v, **parts[v].result()} for v in sorted(parts, key=key)]
        return out


def slice_summaries(records: Iterable[Mapping], columns: Sequence[str] = ()) -> dict:
    """:meth:`Slices.result` over ``records`` (review lines)."""
    acc = Slices(columns)
    for r in records:
        acc.add(r)
    return acc.result()


def slicing_title(slicing: str) -> str:
    return SLICING_TITLES.get(slicing) or f"column {slicing.split(':', 1)[-1]}"


def check_columns(columns: Any) -> list[str]:
    """``--slice-by`` names as a list (comma-separated or repeated), each once."""
    if columns is None:
        return []
    if isinstance(columns, str):
        columns = [columns]
    out: list[str] = []
    for c in columns:
        for name in str(c).split(","):
            name = name.strip()
            if name and name not in out:
                out.append(name)
    return out


class Views:
    """The slices and the global view of a review, fed its lines in one pass.

    Args:
        columns: input-file columns to slice by (``--slice-by``).
        min_inputs: text: the fewest inputs a word of the global view appears in.
    """

    def __init__(self, columns: Sequence[str] = (), min_inputs: int = MIN_INPUTS) -> None:
        self.slices = Slices(columns)
        self.overview = Overview(min_inputs)

    def add(self, record: Mapping) -> None:
        self.slices.add(record)
        self.overview.add(record)

    def feed(self, records: Iterable[Mapping]) -> "Views":
        for r in records:
            self.add(r)
        return self

    def watch(self, batches: Iterator[list[dict]]) -> Iterator[list[dict]]:
        """``batches`` passed on unchanged, each line added on the way."""
        for batch in batches:
            for r in batch:
                self.add(r)
            yield batch

    def result(self) -> dict:
        """``{"slices": Slices.result(), "global": Overview.result()}`` (``global`` left out
        where there is none: images)."""
        out: dict[str, Any] = {"slices": self.slices.result()}
        view = self.overview.result()
        if view is not None:
            out["global"] = view
        return out


def grid(header: list[str], body: list[list[str]], left: int = 2) -> list[str]:
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def slices_table(summary: Mapping) -> str:
    """The slices as plain-text tables (one per slicing: a row per slice and method, the
    summary's columns plus the slice's inputs and accuracy); empty without slices."""
    out = []
    for slicing, parts in (summary.get("slices") or {}).items():
        header = ["slice", "method", "inputs", "accuracy"] + [t for _, t, _ in COLUMNS]
        body = []
        for part in parts:
            acc = "-" if part.get("accuracy") is None else f"{part['accuracy']:.0%}"
            for method, vals in (part.get("methods") or {}).items():
                body.append([part["value"], method, str(part["inputs"]), acc]
                            + ["-" if vals.get(k) is None else fmt.format(vals[k]) for k, _, fmt in COLUMNS])
        out += [f"by {slicing_title(slicing)}"] + grid(header, body) + [""]
    return "\n".join(out).rstrip()


def overview_table(view: Mapping | None, top: int = 15) -> str:
    """The global view as plain text: per feature the inputs it rests on and each method's
    mean |attribution| (mean attribution); then how far the methods agree on the ranking."""
    if not view or not view.get("features"):
        return ""
    methods = list(view["features"][0]["methods"])
    what = (f"words seen in >= {view['min_inputs']} inputs" if view["modality"] == "text" else "columns")
    header = ["feature", "inputs"] + methods
    body = [[r["feature"], str(r["inputs"])]
            + ["-" if r["methods"][m]["mean_abs"] is None
               else f"{r['methods'][m]['mean_abs']:.3g} ({r['methods'][m]['mean']:+.3g})" for m in methods]
            for r in view["features"][:top]]
    lines = grid(header, body, left=1)
    pairs = [f"{a} vs {b}: Spearman {'-' if rho is None else f'{rho:+.2f}'}, top-{view['agreement']['k']} "
             f"overlap {'-' if o is None else f'{o:.0%}'}" for a, b, rho, o in method_pairs(view["agreement"])]
    return "\n".join([f"global view over {view['inputs']} input(s), {what}: mean |attribution| (mean) per method"]
                     + lines + (["methods on the ranking: " + "; ".join(pairs)] if pairs else []))
