"""The global view of a review: what drives the model over all its inputs.

Per feature (a table's columns; for text, each word seen in at least ``min_inputs`` inputs,
lower-cased) and per method: the mean attribution (its direction) and the mean |attribution|
(its weight) over the inputs that have the feature, and how many inputs that is. A word's
attribution in one input is the sum over its occurrences there. Whether the methods agree on
what matters is the Spearman correlation of their mean |attribution| over the features shown,
and the overlap of their top 10.

For tables, a seeded reservoir of at most :data:`POINTS` inputs keeps every method's scores
per input, for a beeswarm (one dot per input and feature). Images have no features shared
across inputs (a patch is a place, not a thing), so they get no global view.

Lines are read one at a time; memory grows with the distinct features (capped at
:data:`MAX_FEATURES` words), never with the inputs.
"""

from __future__ import annotations

import random
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy.stats import spearmanr

#: inputs a word must appear in to be shown (text)
MIN_INPUTS = 3
#: distinct words followed; words first seen after that are not counted (the view says so)
MAX_FEATURES = 50_000
#: features in the global table, by weight
TOP = 25
#: inputs kept for the beeswarm (tables)
POINTS = 500
#: the top-k overlap reported between methods
TOP_K = 10


class Overview:
    """The global view, fed one review line at a time (:meth:`add`), read with :meth:`result`.

    Args:
        min_inputs: text: the fewest inputs a word must appear in to be shown (tables show
            every column).
        seed: the beeswarm reservoir's seed.
    """

    def __init__(self, min_inputs: int = MIN_INPUTS, seed: int = 0) -> None:
        self.min_inputs = min_inputs
        self.modality: str | None = None
        self.methods: list[str] = []
        self.sums: dict[str, dict[str, list[float]]] = {}  # method -> feature -> [sum, sum |.|, n]
        self.dropped = 0
        self.points: list[dict[str, list[float]]] = []
        self.columns: list[str] | None = None
        self.seen = 0
        self.rng = random.Random(seed)

    def add(self, record: Mapping) -> None:
        if "error" in record or record.get("modality") not in ("text", "tabular"):
            return
        self.modality = record["modality"]
        features = [str(f) for f in record.get("features") or []]
        attrs = record.get("attributions") or {}
        if not features or not attrs:
            return
        self.seen += 1
        text = self.modality == "text"
        for method, a in attrs.items():
            if method not in self.sums:
                self.methods.append(method)
                self.sums[method] = {}
            scores = np.asarray(a.get("scores") or [], dtype=np.float64).reshape(-1)
            if scores.size != len(features):
                continue
            per: dict[str, float] = {}
            for f, s in zip(features, scores):
                key = f.lower() if text else f
                per[key] = per.get(key, 0.0) + float(s)
            table = self.sums[method]
            for key, s in per.items():
                row = table.get(key)
                if row is None:
                    if len(table) >= MAX_FEATURES:
                        self.dropped += 1
                        continue
                    row = table[key] = [0.0, 0.0, 0]
                row[0] += s
                row[1] += abs(s)
                row[2] += 1
        if not text:
            self._sample(features, attrs)

    def _sample(self, features: list[str], attrs: Mapping) -> None:
        """Reservoir sampling (Algorithm R): each input kept with probability POINTS / seen."""
        self.columns = self.columns or features
        point = {m: [float(v) for v in (a.get("scores") or [])] for m, a in attrs.items()}
        if len(self.points) < POINTS:
            self.points.append(point)
            return
        j = self.rng.randrange(self.seen)
        if j < POINTS:
            self.points[j] = point

    def result(self, top: int = TOP) -> dict | None:
        """``{"modality", "inputs", "min_inputs", "features": [{"feature", "inputs", "methods":
        {m: {"mean", "mean_abs"}}}], "agreement": {"spearman": {"a|b": rho}, "top_overlap":
        {"a|b": share}}, "points": {"columns", "methods": {m: [[...], ...]}}}`` (points: tables
        only), or None when there is nothing to show (images, no lines)."""
        if self.modality is None or not self.methods:
            return None
        shown_min = self.min_inputs if self.modality == "text" else 1
        names = sorted({f for m in self.methods for f, row in self.sums[m].items() if row[2] >= shown_min})
        if not names:
            return {"modality": self.modality, "inputs": self.seen, "min_inputs": shown_min, "features": [],
                    "agreement": {}, "dropped_words": self.dropped}
        weight = {m: np.array([self._stat(m, f)[1] or 0.0 for f in names]) for m in self.methods}
        # rank by the methods' mean weight, each method's weights scaled to its own largest
        scaled = np.mean([w / w.max() if w.max() > 0 else w for w in weight.values()], axis=0)
        order = np.argsort(-scaled, kind="stable")[:top]
        rows = []
        for i in order:
            f = names[i]
            stats = {m: dict(zip(("mean", "mean_abs", "inputs"), self._stat(m, f))) for m in self.methods}
            rows.append({"feature": f, "inputs": max(s["inputs"] for s in stats.values()),
                         "methods": {m: {"mean": s["mean"], "mean_abs": s["mean_abs"]} for m, s in stats.items()}})
        out = {"modality": self.modality, "inputs": self.seen, "min_inputs": shown_min, "features": rows,
               "agreement": ranking_agreement({m: weight[m] for m in self.methods}),
               "dropped_words": self.dropped}
        if self.modality == "tabular" and self.points:
            out["points"] = {"columns": self.columns, "methods": {m: [p[m] for p in self.points if m in p]
                                                                  for m in self.methods}}
        return out

    def _stat(self, method: str, feature: str) -> tuple[float | None, float | None, int]:
        row = self.sums[method].get(feature)
        if not row or not row[2]:
            return None, None, 0
        return row[0] / row[2], row[1] / row[2], row[2]


def ranking_agreement(weights: Mapping[str, np.ndarray], k: int = TOP_K) -> dict:
    """Per pair of methods: Spearman's rho of their weights over the features, and the share
    of their top ``k`` they have in common."""
    names = list(weights)
    rho, overlap = {}, {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            wa, wb = weights[a], weights[b]
            pair = f"{a}|{b}"
            r = spearmanr(wa, wb).statistic if len(wa) > 1 and np.ptp(wa) > 0 and np.ptp(wb) > 0 else None
            rho[pair] = None if r is None or not np.isfinite(r) else float(r)
            kk = min(k, len(wa))
            top_a = set(np.argsort(-wa, kind="stable")[:kk])
            top_b = set(np.argsort(-wb, kind="stable")[:kk])
            overlap[pair] = len(top_a & top_b) / kk if kk else None
    return {"spearman": rho, "top_overlap": overlap, "k": k}


def overview(records: Iterable[Mapping], min_inputs: int = MIN_INPUTS, top: int = TOP) -> dict | None:
    """:meth:`Overview.result` over ``records`` (review lines)."""
    acc = Overview(min_inputs)
    for r in records:
        acc.add(r)
    return acc.result(top)


def method_pairs(agreement: Mapping) -> Sequence[tuple[str, str, float | None, float | None]]:
    """``(a, b, rho, top overlap)`` per pair, for tables."""
    rho, top = agreement.get("spearman") or {}, agreement.get("top_overlap") or {}
    return [(*pair.split("|", 1), rho[pair], top.get(pair)) for pair in rho]

