"""A review's summary: per-method figures over its JSON lines, kept as running sums so a
million-line review stays small, and the plain-text table the CLI prints. The verdict comes
first: per method, whether it beats the random control across the inputs (a paired test of
the per-input differences, :mod:`explainers.metrics.paired`), overall and within the wrong
and the correct predictions."""

from __future__ import annotations

import math
from array import array
from typing import Any, Iterable, Sequence

from ..metrics.paired import TEST, paired_test

COLUMNS = (
    ("deletion_aopc", "del. AOPC", "{:.3f}"),
    ("flip_count", "flip count", "{:.1f}"),
    ("flipped_share", "flipped", "{:.0%}"),
    ("agreement", "agreement", "{:.2f}"),
    ("beats_random_share", "beats random", "{:.0%}"),
    ("effect_size", "effect (median)", "{:.2f}"),
    ("seconds", "seconds", "{:.3f}"),
)


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


class _Values:
    """Every finite value in a compact float array (8 bytes each)."""
    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values = array("d")

    def add(self, v: Any) -> None:
        v = _finite(v)
        if v is not None:
            self.values.append(v)


class _Median(_Values):
    """The median of the values added."""
    __slots__ = ()

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
        self.differences = _Values()  # AOPC - random AOPC, one per input: the paired test's data
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
        self.alpha: float | None = None
        self.paired_orders: set[int] = set()
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
                d.differences.add(_difference(fm, faith))
            fl = (flips.get("methods") or {}).get(name)
            if fl:
                d.flip_count.add(fl.get("count"))
                d.flipped.add(fl.get("count") is not None)
            if name in order and len(order) > 1:
                d.agreement.add(_mean_to_others(agree["spearman"], order.index(name)))
        if faith.get("random"):
            self.random.aopc.add(faith["random"].get("deletion_aopc"))
            self.random_aopc_n += 1
            orders = faith["random"].get("paired_orders") or faith["random"].get("orders")
            if orders:
                self.paired_orders.add(int(orders))
        if self.alpha is None and _finite(faith.get("alpha")) is not None:
            self.alpha = float(faith["alpha"])
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
        out = {"dataset": self.dataset(), "inputs": self.n_ok, "errors": self.n_err,
               "methods": {name: d.row() for name, d in self.methods.items()}, "random": random_row}
        if self.outcomes is not None:
            wrong, correct = self.outcomes["wrong"], self.outcomes["correct"]
            labelled = wrong.n_ok + correct.n_ok
            if labelled:
                out["labelled"] = labelled
                out["accuracy"] = correct.n_ok / labelled
                out["outcomes"] = {"wrong": wrong.result(), "correct": correct.result()}
        return out


    def dataset(self) -> dict:
        """The dataset-level verdict per method (:func:`explainers.metrics.paired.paired_test`)."""
        alpha = self.alpha if self.alpha is not None else 0.05
        orders = sorted(self.paired_orders)
        return {"test": TEST, "alpha": alpha, "random_orders_per_input": orders,
                "methods": {name: paired_test(d.differences.values, alpha)
                            for name, d in self.methods.items() if len(d.differences.values)}}


def _difference(method: dict, faith: dict) -> float | None:
    """A method's AOPC less the random control's on one input: the line's own
    ``aopc_minus_random``, or (lines written before it) the AOPC less the random mean."""
    if method.get("aopc_minus_random") is not None:
        return _finite(method["aopc_minus_random"])
    a, r = _finite(method.get("deletion_aopc")), _finite((faith.get("random") or {}).get("deletion_aopc"))
    return None if a is None or r is None else a - r


def slim(record: dict) -> dict:
    """The parts of an explanation line :func:`summarize` reads (keeps memory flat)."""
    if "error" in record:
        return {"id": record.get("id"), "error": record["error"]}
    metrics = record.get("metrics") or {}
    faith = metrics.get("faithfulness") or {}
    flips = metrics.get("flip") or {}
    agree = metrics.get("agreement") or {}
    keep_f = ("deletion_aopc", "beats_random", "effect_size", "p_value", "aopc_minus_random")
    attrs = record.get("attributions") or {}
    out = {
        "id": record.get("id"),
        "attributions": {m: {"seconds": a.get("seconds")} for m, a in attrs.items()},
        "metrics": {
            "faithfulness": {
                "methods": {m: {k: v.get(k) for k in keep_f}
                            for m, v in (faith.get("methods") or {}).items()},
                "random": {k: (faith.get("random") or {}).get(k)
                           for k in ("deletion_aopc", "orders", "paired_orders")},
                "alpha": faith.get("alpha"),
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

    First, ``dataset``: per method the dataset-level verdict, a paired test across the inputs
    of its per-input difference AOPC - random AOPC (:func:`explainers.metrics.paired.paired_test`:
    ``n``, ``mean_difference``, ``ci95``, ``p_value``, ``effect_size``, ``beats_random``), with
    the ``test``, ``alpha`` and ``random_orders_per_input``.

    Returns:
        ``{"dataset", "inputs", "errors", "methods": {m: {deletion_aopc, flip_count, flipped_share,
        agreement, beats_random_share, effect_size, seconds, n}}, "random": {...}}``; a value is None
        where the metric was not computed (``beats_random_share`` also where the per-input
        test had too few orders to reach alpha, as in a review by default). Where lines carry a ground truth (``correct``),
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


def verdict_rows(summary: dict) -> list[dict]:
    """The dataset-level verdict of :func:`summarize`'s output, one dict per method (the
    Review page shows these as a table)."""
    rows = []
    for name, v in ((summary.get("dataset") or {}).get("methods") or {}).items():
        low, high = v.get("ci95") or (None, None)
        rows.append({"method": name, "verdict": ("beats random" if v.get("beats_random")
                                                 else "does not beat random"),
                     "inputs": v.get("n"), "AOPC - random": v.get("mean_difference"),
                     "95% CI low": low, "95% CI high": high, "effect r": v.get("effect_size"),
                     "p": v.get("p_value")})
    return rows


def verdict_caption(summary: dict) -> str:
    """What the dataset-level verdict tests, in one line."""
    ds = summary.get("dataset") or {}
    orders = ds.get("random_orders_per_input") or []
    per = ("/".join(str(o) for o in orders) + " random order(s) per input") if orders else "random orders"
    return (f"{ds.get('test', 'paired test across inputs')} ({per}); beats random when p <= "
            f"{ds.get('alpha', 0.05):g}; effect r: matched-pairs rank-biserial; CI: of the mean difference")


def _verdict_table(summary: dict) -> list[str]:
    rows = verdict_rows(summary)
    if not rows:
        return []

    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    header = ["method", "verdict", "inputs", "AOPC - random", "95% CI", "effect r", "p"]
    body = [[r["method"], r["verdict"], str(r["inputs"]), num(r["AOPC - random"], ".3f"),
             f"[{num(r['95% CI low'], '.3f')}, {num(r['95% CI high'], '.3f')}]",
             num(r["effect r"], ".2f"), num(r["p"], ".2g")] for r in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return ["Does each method beat the random control on these inputs?"] + lines + [verdict_caption(summary), ""]


def summary_table(summary: dict) -> str:
    """A plain-text report of :func:`summarize`'s output: the dataset-level verdict first,
    then the per-input figures, one row per method and the control; with ground-truth
    labels, the same for the wrong predictions and for the correct ones after it. The last
    two lines are always the count and the column notes."""
    lines = _verdict_table(summary) + _table(summary)
    for name in ("wrong", "correct"):
        part = (summary.get("outcomes") or {}).get(name)
        if part is not None:
            lines += ["", f"{name} predictions: {part['inputs']} input(s)"]
            lines += (_verdict_table(part) + _table(part)) if part["inputs"] else ["(none)"]
    tail = f"{summary.get('inputs', 0)} input(s) explained"
    if summary.get("errors"):
        tail += f", {summary['errors']} failed"
    if summary.get("labelled"):
        wrong = summary["outcomes"]["wrong"]["inputs"]
        tail += (f"; accuracy {summary['accuracy']:.1%} on {summary['labelled']} labelled "
                 f"({wrong} wrong)")
    notes = ("flip count: mean over inputs that flipped; agreement: mean Spearman to the other "
             "methods; beats random: share of inputs whose own permutation test of deletion AOPC "
             "against the random orders gives p <= alpha ('-' where too few orders to reach alpha); "
             "effect: (AOPC - random mean) / random std")
    return "\n".join(lines + ["", tail, notes])
