"""Batch review: explain many inputs with metrics, one JSON line each, then a summary table.

``python -m explainers review`` calls :func:`run_review`; the dashboard reuses
:func:`summarize` and :func:`summary_table`.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Sequence, TextIO

from .errors import ExplainerError

COLUMNS = (
    ("deletion_aopc", "del. AOPC", "{:.3f}"),
    ("flip_count", "flip count", "{:.1f}"),
    ("flipped_share", "flipped", "{:.0%}"),
    ("agreement", "agreement", "{:.2f}"),
    ("beats_random_share", "beats random", "{:.0%}"),
    ("effect_size", "effect (median)", "{:.2f}"),
    ("seconds", "seconds", "{:.3f}"),
)


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(vals) / len(vals) if vals else None


def _median(values: Sequence[float | None]) -> float | None:
    vals = sorted(float(v) for v in values if v is not None and math.isfinite(float(v)))
    if not vals:
        return None
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _share(values: Sequence[bool | None]) -> float | None:
    vals = [bool(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _mean_to_others(matrix: Sequence[Sequence[float | None]], i: int) -> float | None:
    return _mean([v for j, v in enumerate(matrix[i]) if j != i])


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
    return {
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
        where the metric was not computed.
    """
    per: dict[str, dict[str, list]] = {}
    rand: dict[str, list] = {"deletion_aopc": [], "flip_count": [], "flipped": []}
    n_ok = n_err = 0
    for rec in records:
        if "error" in rec:
            n_err += 1
            continue
        n_ok += 1
        metrics = rec.get("metrics") or {}
        faith = metrics.get("faithfulness") or {}
        flips = metrics.get("flip") or {}
        agree = metrics.get("agreement") or {}
        order = list(agree.get("methods") or [])
        for name, attr in (rec.get("attributions") or {}).items():
            d = per.setdefault(name, {k: [] for k in ("deletion_aopc", "flip_count", "flipped",
                                                       "agreement", "beats_random", "seconds",
                                                       "effect_size")})
            d["seconds"].append(attr.get("seconds"))
            fm = (faith.get("methods") or {}).get(name)
            if fm:
                d["deletion_aopc"].append(fm.get("deletion_aopc"))
                d["beats_random"].append(fm.get("beats_random"))
                d["effect_size"].append(fm.get("effect_size"))
            fl = (flips.get("methods") or {}).get(name)
            if fl:
                d["flip_count"].append(fl.get("count"))
                d["flipped"].append(fl.get("count") is not None)
            if name in order and len(order) > 1:
                d["agreement"].append(_mean_to_others(agree["spearman"], order.index(name)))
        if faith.get("random"):
            rand["deletion_aopc"].append(faith["random"].get("deletion_aopc"))
        if flips.get("random"):
            rand["flip_count"].append(flips["random"].get("count"))
            rand["flipped"].append(flips["random"].get("count") is not None)
    methods = {
        name: {"deletion_aopc": _mean(d["deletion_aopc"]), "flip_count": _mean(d["flip_count"]),
               "flipped_share": _share(d["flipped"]), "agreement": _mean(d["agreement"]),
               "beats_random_share": _share(d["beats_random"]), "seconds": _mean(d["seconds"]),
               "effect_size": _median(d["effect_size"]), "n": len(d["seconds"])}
        for name, d in per.items()
    }
    random_row = {"deletion_aopc": _mean(rand["deletion_aopc"]), "flip_count": _mean(rand["flip_count"]),
                  "flipped_share": _share(rand["flipped"]), "agreement": None,
                  "beats_random_share": None, "seconds": None, "effect_size": None,
                  "n": len(rand["deletion_aopc"])}
    return {"inputs": n_ok, "errors": n_err, "methods": methods, "random": random_row}


def summary_table(summary: dict) -> str:
    """A plain-text table of :func:`summarize`'s output, one row per method and the control."""
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
    tail = f"{summary.get('inputs', 0)} input(s) explained"
    if summary.get("errors"):
        tail += f", {summary['errors']} failed"
    notes = ("flip count: mean over inputs that flipped; agreement: mean Spearman to the other "
             "methods; beats random: permutation test of deletion AOPC against the random orders, "
             "p <= alpha; effect: (AOPC - random mean) / random std")
    return "\n".join(lines + ["", tail, notes])


def review_one(model: Any, ident: Any, raw: Any, methods: Sequence[str] | None, params: dict | None,
               metrics: Sequence[str], metric_params: dict | None, use_cache: bool = True,
               unit: str | None = None) -> dict:
    """One review line: ``{"id": ..., **Explanation.to_dict()}``, or ``{"id": ..., "error": ...}``
    (an ExplainerError message, or the exception type and first line for unexpected errors,
    so one bad input does not stop the batch)."""
    from .api import explain
    try:
        result = explain(model, raw, methods=methods, params=params, use_cache=use_cache,
                         metrics=metrics, metric_params=metric_params, unit=unit)
        return {"id": ident, **result.to_dict()}
    except ExplainerError as e:
        return {"id": ident, "error": str(e)}
    except Exception as e:  # noqa: BLE001 - recorded, the batch goes on
        first = str(e).splitlines()[0] if str(e) else ""
        return {"id": ident, "error": f"{type(e).__name__}: {first}"}


def run_review(model: Any, inputs: Iterable[tuple[Any, Any]], methods: Sequence[str] | None,
               params: dict | None, metrics: Sequence[str] | None, metric_params: dict | None,
               limit: int | None = None, out: str | Path | None = None, use_cache: bool = True,
               *, log: TextIO | None = None, unit: str | None = None) -> dict:
    """Explain every input with metrics and summarize the methods.

    Args:
        model: a :class:`~explainers.adapters.base.ModelAdapter`.
        inputs: ``(id, raw input)`` pairs.
        methods, params, metrics, metric_params, use_cache: as for
            :func:`explainers.explain`.
        limit: only the first ``limit`` inputs.
        unit: text only: ``"word"`` (default) or ``"piece"`` features.
        out: write the JSON lines to this file; None writes them to stdout.
        log: where progress and the table go (default: stderr when the JSON goes to
            stdout, stdout when it goes to a file).

    Each input gives one :func:`review_one` line.

    Returns:
        The :func:`summarize` dict.
    """
    from .metrics import check_names

    metrics = check_names(metrics or [])
    if limit is not None and limit < 0:
        raise ExplainerError(f"--limit must be >= 0, got {limit}")
    items = list(itertools.islice(inputs, limit) if limit is not None else inputs)
    if log is None:
        log = sys.stdout if out else sys.stderr
    records = []
    total = len(items)
    cr = "\r" if getattr(sys.stderr, "isatty", lambda: False)() else ""  # one line on a terminal
    sink = open(out, "w", encoding="utf-8") if out else nullcontext(sys.stdout)
    with sink as fh:
        for i, (ident, raw) in enumerate(items):
            start = time.perf_counter()
            record = review_one(model, ident, raw, methods, params, metrics, metric_params, use_cache,
                                unit)
            fh.write(json.dumps(record, default=str) + "\n")
            fh.flush()
            records.append(slim(record))
            print(f"{cr}review {i + 1}/{total} ({time.perf_counter() - start:.1f} s)",
                  end="" if cr else "\n", file=sys.stderr, flush=True)
    if total and cr:
        print(file=sys.stderr, flush=True)
    summary = summarize(records)
    print(summary_table(summary), file=log, flush=True)
    return summary
