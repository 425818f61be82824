"""Decision flip: how many of a method's top features must go before the prediction changes?

Features are removed greedily in the method's order (most important for the target first)
until the arg-max class differs from the original prediction. Removal is the metric's
``perturbation``: for text by default the words are deleted from the text and the edited
text is re-predicted, so the reported flip is exactly the edit a user gets ("Apply"); the
block carries that edit (``edited``). Removing every feature is not a counterfactual: a
method that flips only then is reported as "no flip short of deleting everything". A
method that names the features the decision rests on flips it with few deletions. This is
the "decision flip" test of Chrysostomou & Aletras (ACL 2021, https://arxiv.org/abs/2105.02657)
and the fraction-of-tokens-to-flip of Serrano & Smith (ACL 2019,
https://arxiv.org/abs/1906.03731). A seeded random order is the control.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .common import importance_order, random_orders


def first_flip(classes: Sequence[int], original: int) -> int | None:
    """The number of deletions at the first flip.

    Args:
        classes: the arg-max class after deleting 1, 2, ..., len(classes) features.
        original: the class predicted on the untouched input.

    Returns:
        The smallest k whose class differs from ``original``, or None if none does.
    """
    for i, c in enumerate(classes):
        if int(c) != int(original):
            return i + 1
    return None


#: why a method has no flip
NO_FLIP_SHORT = "no flip short of deleting everything"
NO_FLIP_AT_ALL = "removing every feature does not change the class"
#: why a score or sigmoid output has no flip
NO_CROSS_AT_ALL = "removing every feature does not move the output across the threshold"


def flip_orders(orders: dict[str, np.ndarray], original: int, predict: Callable[[np.ndarray], np.ndarray],
                n_features: int, chunk: int = 256,
                decide: Callable[[np.ndarray], np.ndarray] | None = None
                ) -> dict[str, tuple[int | None, int | None]]:
    """``{name: (count, new_class)}`` for several deletion orders, batched with early stop.

    Prefixes of all orders still unflipped are predicted together, ``chunk`` masks per
    call; an order stops being extended once it flips. Only proper prefixes count (at most
    ``n - 1`` removals): emptying the input is not a counterfactual. ``decide`` maps the
    predicted outputs ``[B, C]`` to a class per row (default: the arg-max; a threshold
    flip passes the side of the threshold, 0 or 1).
    """
    search = FlipSearch(orders, original, n_features, chunk, decide)
    while not search.done:
        search.feed(predict(search.masks()))
    return search.result


class FlipSearch:
    """The rounds of :func:`flip_orders` one at a time: :meth:`masks` gives the next
    round's keep-masks, :meth:`feed` takes their outputs. Several inputs' searches can so be
    predicted together (:mod:`explainers.metrics.batched`), round by round. ``decide`` as for
    :func:`flip_orders`."""

    def __init__(self, orders: dict[str, np.ndarray], original: int, n_features: int,
                 chunk: int = 256, decide: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.orders, self.original, self.n, self.chunk = orders, original, n_features, chunk
        self.decide = decide or (lambda out: np.asarray(out).argmax(axis=1))
        self.result: dict[str, tuple[int | None, int | None]] = {name: (None, None) for name in orders}
        self.active = list(orders)
        self.next_k = 1
        self._ks: list[int] = []

    @property
    def done(self) -> bool:
        return not self.active or self.next_k > self.n - 1

    def masks(self) -> np.ndarray:
        """Keep-masks ``[len(active) * len(ks), n]`` of this round."""
        per = max(1, self.chunk // len(self.active))
        self._ks = ks = list(range(self.next_k, min(self.n - 1, self.next_k + per - 1) + 1))
        masks = np.ones((len(self.active) * len(ks), self.n), dtype=bool)
        for a, name in enumerate(self.active):
            for j, k in enumerate(ks):
                masks[a * len(ks) + j, self.orders[name][:k]] = False
        return masks

    def feed(self, probs: np.ndarray) -> None:
        """This round's outputs (rows of :meth:`masks`)."""
        ks = self._ks
        classes = np.asarray(self.decide(probs)).reshape(len(self.active), len(ks))
        still = []
        for a, name in enumerate(self.active):
            hit = first_flip(classes[a], self.original)
            if hit is None:
                still.append(name)
            else:
                self.result[name] = (ks[hit - 1], int(classes[a, hit - 1]))
        self.active = still
        self.next_k = ks[-1] + 1


RANDOM_KEY = "\x00random"


def search_orders(scores: dict[str, np.ndarray], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The deletion orders :func:`flip` searches: each method's, and the random control's
    under :data:`RANDOM_KEY`."""
    orders = {name: importance_order(s) for name, s in scores.items()}
    return {**orders, RANDOM_KEY: random_orders(n, 1, seed)[0]}


def flip(scores: dict[str, np.ndarray], original: int, predict: Callable[[np.ndarray], np.ndarray],
         feature_labels: Sequence[str], class_labels: Sequence[str], seed: int = 0,
         chunk: int = 256, edited: Callable[[np.ndarray], Any] | None = None,
         perturbation: str = "baseline", perturbation_note: str | None = None) -> dict:
    """The ``flip`` block of the metrics JSON.

    Args:
        scores: ``{method: per-feature scores}`` for the explained target.
        original: the predicted class of the untouched input.
        predict: keep-masks ``[B, n]`` -> probabilities ``[B, C]``.
        feature_labels: a label per feature.
        class_labels: class names.
        seed: seed of the random control order (the first order of the faithfulness control).
        chunk: masks per prediction call.
        edited: keep-mask -> the edit it stands for (the edited text for text), reported
            as ``edited`` so any client can re-predict it; None reports None.
        perturbation: how features are removed (reported).
        perturbation_note: what that means (reported).

    Returns:
        ``{"methods": {m: {"count", "indices", "features", "new_label", "new_probability",
        "edited", "reason"}}, "random": {...}, "best", "original_label", "perturbation",
        "perturbation_note"}``. ``count`` is None when no proper subset of the features
        flips the prediction; ``reason`` then says whether removing everything would
        (:data:`NO_FLIP_SHORT`) or not (:data:`NO_FLIP_AT_ALL`). ``best`` is the method
        with the fewest removals (first listed on a tie), None when no method flips it.
    """
    n = len(feature_labels)
    orders = {name: importance_order(s) for name, s in scores.items()}
    rand = random_orders(n, 1, seed)[0]
    found = flip_orders(search_orders(scores, n, seed), original, predict, n, chunk)
    key_random = RANDOM_KEY
    empty = np.zeros((1, n), dtype=bool)
    empty_probs = predict(empty)[0] if any(c is None for c, _ in found.values()) else None
    empty_flips = empty_probs is not None and int(np.argmax(empty_probs)) != int(original)

    def name_of(cls: int | None) -> str | None:
        if cls is None:
            return None
        return class_labels[cls] if 0 <= cls < len(class_labels) else str(cls)

    def block(order: np.ndarray, count: int | None, cls: int | None) -> dict:
        idx = [int(i) for i in order[:count]] if count else []
        out = {"count": count, "indices": idx, "features": [feature_labels[i] for i in idx],
               "new_label": name_of(cls), "new_probability": None, "edited": None, "reason": None}
        if count:
            keep = np.ones(n, dtype=bool)
            keep[idx] = False
            out["new_probability"] = float(predict(keep[None])[0][cls])
            out["edited"] = edited(keep) if edited is not None else None
        else:
            out["reason"] = NO_FLIP_SHORT if empty_flips else NO_FLIP_AT_ALL
        return out

    methods = {name: block(orders[name], *found[name]) for name in orders}
    return {"methods": methods, "random": block(rand, *found[key_random]), "best": fewest(methods),
            "original_label": name_of(original), "perturbation": perturbation,
            "perturbation_note": perturbation_note}


def fewest(methods: dict[str, dict]) -> str | None:
    """The method with the fewest removals (first listed on a tie), None when none flips."""
    counts = {name: b["count"] for name, b in methods.items() if b["count"] is not None}
    return min(counts, key=lambda m: counts[m]) if counts else None


def side_label(label: str, above: bool, threshold: float) -> str:
    """``"score >= 140.5"`` or ``"score < 140.5"``: one side of a threshold, as a label."""
    return f"{label} {'>=' if above else '<'} {threshold:.4g}"


def flip_threshold(scores: dict[str, np.ndarray], target: int, threshold: float,
                   predict: Callable[[np.ndarray], np.ndarray], feature_labels: Sequence[str],
                   target_label: str, output_kind: str = "score", seed: int = 0, chunk: int = 256,
                   edited: Callable[[np.ndarray], Any] | None = None, perturbation: str = "baseline",
                   perturbation_note: str | None = None, threshold_source: str = "") -> dict:
    """The ``flip`` block for a score or sigmoid output: the fewest removals, in each method's
    order, that move output ``target`` across ``threshold``.

    A score has no rival class to flip to; what a decision made on it asks is whether the
    score falls on the other side of a cut-off (recommend or not, approve or not). The same
    counterfactual search as :func:`flip`, on the side of the threshold instead of the
    arg-max: the original side is ``value >= threshold``; the first proper prefix whose value
    is on the other side is the flip.

    Args:
        scores: ``{method: per-feature scores}``, already signed so that the features that
            hold the output on its side come first (see :func:`explainers.metrics.compute`).
        target: the output index.
        threshold: the cut-off, in the output's units (probability for a sigmoid).
        predict: keep-masks ``[B, n]`` -> outputs ``[B, C]`` (scores or probabilities).
        feature_labels: a label per feature.
        target_label: the output's name.
        output_kind: ``score`` or ``sigmoid`` (reported).
        seed: seed of the random control order.
        chunk: masks per prediction call.
        edited: keep-mask -> the edit it stands for (as in :func:`flip`).
        perturbation, perturbation_note: how features are removed (reported).
        threshold_source: how the threshold was chosen (reported).

    Returns:
        As :func:`flip`, with per method ``new_value`` (the output after the removals) and
        ``new_label`` (the side reached); ``new_probability`` is that value for a sigmoid
        and None for a score. Top level: ``threshold``, ``threshold_source``,
        ``original_value``, ``output_kind``, ``target_label``.
    """
    n = len(feature_labels)
    full = predict(np.ones((1, n), dtype=bool))[0]
    value0 = float(full[target])
    above0 = value0 >= threshold

    def side(out: np.ndarray) -> np.ndarray:
        return (np.asarray(out)[:, target] >= threshold).astype(int)

    orders = {name: importance_order(s) for name, s in scores.items()}
    rand = random_orders(n, 1, seed)[0]
    key_random = RANDOM_KEY
    found = flip_orders(search_orders(scores, n, seed), int(above0), predict, n, chunk, decide=side)
    empty_flips = None
    if any(c is None for c, _ in found.values()):
        empty_flips = bool(side(predict(np.zeros((1, n), dtype=bool)))[0] != int(above0))

    def block(order: np.ndarray, count: int | None, _side: int | None) -> dict:
        idx = [int(i) for i in order[:count]] if count else []
        out = {"count": count, "indices": idx, "features": [feature_labels[i] for i in idx],
               "new_label": None, "new_value": None, "new_probability": None, "edited": None,
               "reason": None}
        if count:
            keep = np.ones(n, dtype=bool)
            keep[idx] = False
            value = float(predict(keep[None])[0][target])
            out["new_value"] = value
            out["new_label"] = side_label(target_label, value >= threshold, threshold)
            out["new_probability"] = value if output_kind == "sigmoid" else None
            out["edited"] = edited(keep) if edited is not None else None
        else:
            out["reason"] = NO_FLIP_SHORT if empty_flips else NO_CROSS_AT_ALL
        return out

    methods = {name: block(orders[name], *found[name]) for name in orders}
    return {"methods": methods, "random": block(rand, *found[key_random]), "best": fewest(methods),
            "original_label": side_label(target_label, above0, threshold), "original_value": value0,
            "threshold": float(threshold), "threshold_source": threshold_source,
            "output_kind": output_kind, "target_label": target_label,
            "perturbation": perturbation, "perturbation_note": perturbation_note}


#: why a flip found with bf16 forwards is not reported
NOT_CONFIRMED = ("the bf16 forwards flipped it after these removals, the float32 re-prediction of "
                 "that edit does not: not reported as a flip (rerun with precision fp32 to search "
                 "further)")


def confirm_flips(block: dict, predict: Callable[[np.ndarray], np.ndarray], n_features: int,
                  original: int | None = None, class_labels: Sequence[str] = (),
                  target: int | None = None) -> dict:
    """Re-predict every flip of a ``flip`` block (found with bf16 forwards) with ``predict``
    (float32), so the reported outcome is the float32 one of the very edit reported.

    A flip the float32 re-prediction confirms keeps its count and gets the float32
    ``new_label`` / ``new_probability`` (``new_value``); one it does not confirm is reported
    as no flip, ``reason`` :data:`NOT_CONFIRMED`, its bf16 count as ``bf16_count``.

    Args:
        block: from :func:`flip` (pass ``original`` and ``class_labels``) or
            :func:`flip_threshold` (pass ``target``); changed in place.
        predict: keep-masks ``[B, n]`` -> outputs ``[B, C]``, in float32.
        n_features: number of features.

    Returns:
        ``block``, with ``confirmed_in: "fp32"``.
    """
    threshold = block.get("threshold")
    if threshold is not None:  # the side of the untouched input, in float32 too
        value0 = float(predict(np.ones((1, n_features), dtype=bool))[0][target])
        above0 = value0 >= threshold
        block["original_value"] = value0
        block["original_label"] = side_label(block["target_label"], above0, threshold)
    for entry in [*block["methods"].values(), block["random"]]:
        if not entry["count"]:
            continue
        keep = np.ones(n_features, dtype=bool)
        keep[entry["indices"]] = False
        out = predict(keep[None])[0]
        if threshold is None:
            cls = int(np.argmax(out))
            if cls != int(original):
                entry["new_label"] = class_labels[cls] if 0 <= cls < len(class_labels) else str(cls)
                entry["new_probability"] = float(out[cls])
                continue
        else:
            value = float(out[target])
            if (value >= threshold) != above0:
                entry["new_value"] = value
                entry["new_label"] = side_label(block["target_label"], value >= threshold, threshold)
                entry["new_probability"] = value if block.get("output_kind") == "sigmoid" else None
                continue
        entry.update({"bf16_count": entry["count"], "count": None, "indices": [], "features": [],
                      "new_label": None, "new_probability": None, "edited": None,
                      "reason": NOT_CONFIRMED})
        if "new_value" in entry:
            entry["new_value"] = None
    block["best"] = fewest(block["methods"])
    block["confirmed_in"] = "fp32"
    return block
