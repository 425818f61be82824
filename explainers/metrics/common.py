"""Pieces the metric families share: option checking, feature orders, batched re-prediction.

Every metric works on *interpretable features* (tokens, image patches, table columns) through
the adapter's ``group_scores``, ``perturb`` and ``predict_batch``, so nothing here knows which
modality it is looking at.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..adapters.base import Encoded, ModelAdapter
from ..errors import ExplainerError
from ..registry import list_methods
from ..results import Explanation

Progress = Callable[[str, float], None]

#: up to this many features the deletion/insertion curves take one step per feature;
#: above it they take steps at 0 %, 10 %, ..., 100 % of the features. Eleven points keep the
#: random control affordable: each random order is a whole curve of re-predictions (a
#: 40-word sentence costs 9 re-predictions per order instead of 39).
PER_FEATURE_MAX = 10
#: the bins comprehensiveness and sufficiency average over (DeYoung et al. 2020, ERASER):
#: the top 1, 5, 10, 20 and 50 % of the features
ERASER_FRACTIONS = (0.01, 0.05, 0.1, 0.2, 0.5)
#: how a metric removes features: delete them from the text (ERASER), replace them by
#: [MASK] in the text, or replace their values by a baseline (the only one for images/tables)
PERTURBATIONS = ("delete", "mask", "baseline")
DEFAULT_IG_STEPS = (8, 16, 32, 64, 128)

#: the most random orders the per-input permutation test draws: 19 orders resolve
#: p = 1/20 = 0.05, the default alpha (BENCHMARKS.md, "The random control, made cheap")
RANDOM_ORDERS = 19
#: what a review runs the metrics with unless the user sets them: a few random orders per
#: input, all drawn (no per-input stopping rule), for the dataset-level paired test across
#: inputs (:mod:`explainers.metrics.paired`); ``random_orders=19`` (or 100 with
#: ``sequential=false``, the test before issue 18) gives every input its own test again
REVIEW_METRIC_OPTIONS: dict[str, Any] = {"random_orders": 3, "sequential": False}

#: every metric option, with its help line (the dashboard can show these)
OPTION_HELP: dict[str, str] = {
    "k": "top-k size for the Jaccard overlap (default: 10 % of the features, at least 1; "
         "capped at the number of features)",
    "perturbation": "how faithfulness and flip remove features: 'delete' (text default: the "
                    "words are removed and the text re-tokenised, as in ERASER), 'mask' (the "
                    "words are replaced by [MASK] in the text), 'baseline' (their embeddings, "
                    "pixels or values are replaced by the 'baseline' kind; images and tables "
                    "always use this)",
    "baseline": "baseline kind that replaces removed features under the 'baseline' "
                "perturbation, and in infidelity (default: the model's first default baseline)",
    "random_orders": "random deletion orders of faithfulness's random control: the most the "
                     f"permutation test draws (default {RANDOM_ORDERS}; its p-value resolves "
                     "1 / (random_orders + 1)); with 'sequential' off, exactly this many",
    "sequential": "draw the random orders sequentially and stop once the permutation test's "
                  "decision at alpha is settled (Besag & Clifford 1991; default true); false: "
                  "every order is drawn",
    "alpha": "significance level of the permutation test: beats_random when its p-value "
             "is <= alpha (default 0.05)",
    "seed": "random seed of the metrics (default 0)",
    "margin": "deprecated and ignored: beats_random is now a permutation test (see alpha)",
    "threshold": "score and sigmoid models: the flip is the fewest removals that move the "
                 "target output across this value (default: the median of the model's outputs "
                 "on its reference data for a score, or on the baseline when it has no data; "
                 "0.5 for a sigmoid)",
    "tolerance": "IG convergence: largest |delta| / max(|f(x) - f(baseline)|, 0.1) accepted "
                 "(default 0.05)",
    "ig_steps": "n_steps values tried in the IG convergence check (default 8,16,32,64,128)",
    "seeds": "GradientSHAP stability: number of seeds (default 5) or a list of seeds",
    "sanity_stages": "cascading randomization stages, from the output layer down (default 3)",
    "sanity_threshold": "a method whose Spearman of |scores| stays above this after full "
                        "randomization is flagged as independent of the model (default 0.5)",
    "n_perturb_samples": "random feature removals for infidelity (default 10)",
    "sensitivity_samples": "perturbed inputs for sensitivity_max (default 5)",
    "sensitivity_radius": "L-inf radius of the sensitivity_max noise, in encoded input units "
                          "(default 0.02)",
}


# -- options ---------------------------------------------------------------------------------
def _as_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise ExplainerError(f"metric option '{name}' must be an integer, got {value!r}")
    try:
        f = float(value)
        if not f.is_integer():
            raise ValueError
        i = int(f)
    except (TypeError, ValueError):
        raise ExplainerError(f"metric option '{name}' must be an integer, got {value!r}") from None
    if not lo <= i <= hi:
        raise ExplainerError(f"metric option '{name}' must be between {lo} and {hi}, got {i}")
    return i


def _as_float(name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> float:
    if isinstance(value, bool):
        raise ExplainerError(f"metric option '{name}' must be a number, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ExplainerError(f"metric option '{name}' must be a number, got {value!r}") from None
    if not math.isfinite(f) or f < lo or f > hi or (lo_open and f == lo):
        bound = f"> {lo}" if lo_open else f">= {lo}"
        raise ExplainerError(f"metric option '{name}' must be {bound} and <= {hi}, got {value!r}")
    return f


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ExplainerError(f"metric option '{name}' must be true or false, got {value!r}")


def review_metric_options(options: dict | None) -> dict:
    """``options`` over :data:`REVIEW_METRIC_OPTIONS`, the user's values winning: the metric
    options a review runs with."""
    return {**REVIEW_METRIC_OPTIONS, **(options or {})}


def _as_int_list(name: str, value: Any, lo: int, hi: int, min_len: int = 1) -> list[int]:
    if isinstance(value, str):
        value = [v for v in value.replace("+", ",").split(",") if v.strip()]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    out = [_as_int(name, v, lo, hi) for v in value]
    if len(out) < min_len:
        raise ExplainerError(f"metric option '{name}' needs at least {min_len} value(s), got {out}")
    if len(set(out)) != len(out):
        raise ExplainerError(f"metric option '{name}' lists a value twice: {out}")
    return out


def resolve_options(options: dict | None, adapter: ModelAdapter, enc: Encoded) -> dict:
    """Fill the defaults of the metric options and validate them.

    Raises:
        ExplainerError: for an unknown option or a value of the wrong type or out of range.
    """
    given = dict(options or {})
    unknown = sorted(set(given) - set(OPTION_HELP))
    if unknown:
        raise ExplainerError(f"unknown metric option(s) {unknown}; known: {sorted(OPTION_HELP)}")
    n = enc.n_features
    out: dict[str, Any] = {}
    # a k above the number of features (a short text in a batch review) means "all of them"
    out["k"] = (min(_as_int("k", given["k"], 1, 10**9), max(1, n)) if given.get("k") is not None
                else max(1, int(round(0.1 * n))))
    kinds = list(adapter.baseline_kinds)
    baseline = given.get("baseline")
    if baseline is None:
        if not adapter.default_baselines and not kinds:
            raise ExplainerError(f"the {adapter.modality} adapter declares no baselines")
        baseline = (list(adapter.default_baselines) or kinds)[0]
    if isinstance(baseline, (list, tuple)) and len(baseline) == 1:
        baseline = baseline[0]
    if not isinstance(baseline, str) or baseline not in kinds:
        raise ExplainerError(f"metric option 'baseline' must be one of {kinds}, got {baseline!r}")
    out["baseline"] = baseline
    out["perturbation"], out["perturbation_note"] = resolve_perturbation(
        given.get("perturbation"), adapter, baseline)
    out["random_orders"] = _as_int("random_orders", given.get("random_orders", RANDOM_ORDERS), 1, 10000)
    out["sequential"] = _as_bool("sequential", given.get("sequential", True))
    out["alpha"] = _as_float("alpha", given.get("alpha", 0.05), 0.0, 1.0, lo_open=True)
    out["seed"] = _as_int("seed", given.get("seed", 0), 0, 2**31 - 1)
    out["margin"] = _as_float("margin", given.get("margin", 1.0), 0.0, 100.0)
    threshold = given.get("threshold")
    out["threshold"] = (None if threshold is None or threshold == ""
                        else _as_float("threshold", threshold, -1e30, 1e30))
    out["tolerance"] = _as_float("tolerance", given.get("tolerance", 0.05), 0.0, 10.0, lo_open=True)
    out["ig_steps"] = sorted(_as_int_list("ig_steps", given.get("ig_steps", DEFAULT_IG_STEPS), 2, 1024))
    seeds = given.get("seeds", 5)
    if isinstance(seeds, (list, tuple)) or (isinstance(seeds, str) and "," in seeds):
        out["seeds"] = _as_int_list("seeds", seeds, 0, 2**31 - 1, min_len=2)
    else:
        out["seeds"] = _as_int("seeds", seeds, 2, 100)  # a count: resolved against the user's seed
    out["sanity_stages"] = _as_int("sanity_stages", given.get("sanity_stages", 3), 1, 50)
    out["sanity_threshold"] = _as_float("sanity_threshold", given.get("sanity_threshold", 0.5), -1.0, 1.0)
    out["n_perturb_samples"] = _as_int("n_perturb_samples", given.get("n_perturb_samples", 10), 1, 10000)
    out["sensitivity_samples"] = _as_int("sensitivity_samples", given.get("sensitivity_samples", 5), 1, 1000)
    out["sensitivity_radius"] = _as_float("sensitivity_radius", given.get("sensitivity_radius", 0.02),
                                          0.0, 1e6, lo_open=True)
    return out


def resolve_perturbation(value: Any, adapter: ModelAdapter, baseline: str) -> tuple[str, str]:
    """The perturbation a metric will use, and a sentence saying what it does.

    ``None`` means the modality's default: ``delete`` where the adapter can edit its raw
    input (text), else ``baseline``. ``delete`` or ``mask`` for an image or a table has
    no meaning there: it falls back to ``baseline`` and the note says so.

    Raises:
        ExplainerError: for a value not in :data:`PERTURBATIONS`.
    """
    edits = tuple(getattr(adapter, "edit_perturbations", ()) or ())
    if value is None:
        value = edits[0] if edits else "baseline"
    if not isinstance(value, str) or value not in PERTURBATIONS:
        raise ExplainerError(f"metric option 'perturbation' must be one of {list(PERTURBATIONS)}, "
                             f"got {value!r}")
    unit = {"image": "patches", "tabular": "columns"}.get(adapter.modality, "features")
    if value != "baseline" and value not in edits:
        return "baseline", (f"'{value}' has no meaning for {adapter.modality} input: removed "
                            f"{unit} take the '{baseline}' baseline instead")
    if value == "delete":
        return value, ("removed words are deleted from the text, which is re-tokenised "
                       "(ERASER's definition)")
    if value == "mask":
        return value, "removed words are replaced by one [MASK] each, and the text re-tokenised"
    if baseline in tuple(getattr(adapter, "edit_baselines", ())):  # an edit, not a value (generation)
        return value, f"removed features: {adapter.describe_baseline(baseline)}"
    what = "embeddings" if adapter.modality == "text" else ("pixels" if adapter.modality == "image"
                                                            else "values")
    return value, f"removed features' {what} are replaced by the '{baseline}' baseline"


# -- scores and orders ------------------------------------------------------------------------
def feature_scores(adapter: ModelAdapter, enc: Encoded, explanation: Explanation) -> dict[str, np.ndarray]:
    """One score per interpretable feature for each method of ``explanation``, in its order."""
    out = {}
    for name, attr in explanation.attributions.items():
        s = np.asarray(adapter.group_scores(attr.scores, enc), dtype=np.float64).reshape(-1)
        if s.shape[0] != enc.n_features:
            raise ExplainerError(f"{name}: {s.shape[0]} feature scores for {enc.n_features} features")
        out[name] = np.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def importance_order(scores: np.ndarray) -> np.ndarray:
    """Feature indices, most important for the target (highest signed score) first.

    Ties keep the feature order (stable sort), so results are deterministic.
    """
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def random_orders(n: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` seeded random permutations of ``range(n)``."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(count)]


def curve_steps(n: int) -> list[int]:
    """Numbers of removed/inserted features at which the curves are evaluated.

    One step per feature (0, 1, ..., n) when ``n <= PER_FEATURE_MAX``; otherwise the tenths
    of ``n``: ``floor(f * n)`` for f = 0, 0.1, ..., 0.5 and ``n - floor((1 - f) * n)`` above,
    so the steps are symmetric (``k`` is a step when ``n - k`` is; for odd ``n`` but the
    middle one, ``floor(n / 2)``). Keeping ``k`` features of a random order is removing the
    other ``n - k``, so the random control's insertion curve costs no re-predictions of its
    own (see :mod:`explainers.metrics.faithfulness`).
    """
    if n <= PER_FEATURE_MAX:
        return list(range(n + 1))
    low = [int(math.floor(i * n / 10 + 1e-9)) for i in range(6)]
    high = [n - int(math.floor((10 - i) * n / 10 + 1e-9)) for i in range(6, 11)]
    return sorted(set(low + high))


def deletion_masks(order: np.ndarray, steps: Sequence[int], n: int) -> np.ndarray:
    """Keep-masks ``[len(steps), n]``: row ``i`` removes the first ``steps[i]`` features of ``order``."""
    keep = np.ones((len(steps), n), dtype=bool)
    for i, k in enumerate(steps):
        keep[i, order[:k]] = False
    return keep


def insertion_masks(order: np.ndarray, steps: Sequence[int], n: int) -> np.ndarray:
    """Keep-masks ``[len(steps), n]``: row ``i`` keeps only the first ``steps[i]`` features."""
    return ~deletion_masks(order, steps, n)


def method_params(explanation: Explanation, params: dict | None, name: str) -> dict:
    """The parameters a method ran with: its resolved params, else the user's."""
    attr = explanation.attributions.get(name)
    if attr is not None and isinstance(attr.params, dict) and attr.params:
        return dict(attr.params)
    return dict((params or {}).get(name) or {})


def is_registered(name: str) -> bool:
    return name in list_methods()


# -- batched re-prediction ------------------------------------------------------------------
class Repredictor:
    """Target-independent class probabilities for keep-masks over the features, memoised.

    Under the ``baseline`` perturbation, removed features take the value of one baseline
    (``[1, ...]``; a baseline kind with several rows, such as tabular ``train_samples``, is
    averaged into one). Under ``delete`` and ``mask`` (text), each mask becomes an edited
    text (:meth:`edited`) that is re-tokenised and predicted, exactly as a user's edit
    would be. Identical masks (within a call and across calls: the faithfulness and flip
    passes share most) are predicted once, chunk by chunk, so memory stays bounded.

    Args:
        adapter: the model adapter (its lock is held while predicting).
        enc: the encoded input.
        baseline_kind: one of ``adapter.baseline_kinds``.
        perturbation: one of :data:`PERTURBATIONS` (already resolved for the modality).
    """

    def __init__(self, adapter: ModelAdapter, enc: Encoded, baseline_kind: str,
                 perturbation: str = "baseline") -> None:
        self.adapter = adapter
        self.enc = enc
        self.baseline_kind = baseline_kind
        self.perturbation = perturbation
        self.edits = perturbation in tuple(getattr(adapter, "edit_perturbations", ()) or ())
        self._baseline: torch.Tensor | None = None
        self.memo: dict[bytes, np.ndarray] = {}
        self.evaluated = 0

    @property
    def baseline(self) -> torch.Tensor:
        """The baseline removed features take (``[1, ...]``), built on first use."""
        if self._baseline is None:
            base = self.adapter.baselines(self.enc, [self.baseline_kind])
            self._baseline = base.mean(0, keepdim=True) if base.shape[0] > 1 else base
        return self._baseline

    def edited(self, keep: np.ndarray) -> Any:
        """The edit a keep-mask stands for, in a form any client can re-predict.

        Text under ``delete``/``mask``: the edited text. Tables: ``{feature: value}`` of the
        removed features at their baseline values. Otherwise None (the removed feature
        indices describe the edit).
        """
        removed = [int(i) for i in np.flatnonzero(~np.asarray(keep, dtype=bool).reshape(-1))]
        if self.edits:
            return self.adapter.edit(self.enc, removed, self.perturbation)
        values = getattr(self.adapter, "baseline_values", None)
        if callable(values):
            return values(self.enc, self.baseline, removed)
        return None

    def missing(self, keep: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
        """The keep-masks (``[B, n]``) not yet memoised, each once, and their memo keys;
        :func:`explainers.metrics.batched.prefetch` predicts these for many inputs at once and
        hands them to :meth:`fill`."""
        keep, keys = self._keys(keep)
        todo: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self.memo and key not in todo:
                todo[key] = i
        return keep[list(todo.values())], list(todo)

    def fill(self, keys: Sequence[bytes], probs: np.ndarray) -> None:
        """Memoise probabilities ``[B, C]`` predicted elsewhere for the masks of ``keys``."""
        for key, p in zip(keys, probs):
            self.memo[key] = np.asarray(p, dtype=np.float64)
        self.evaluated += len(keys)

    def _keys(self, keep: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
        keep = np.ascontiguousarray(np.asarray(keep, dtype=bool).reshape(-1, self.enc.n_features))
        return keep, [row.tobytes() for row in np.packbits(keep, axis=1)]

    def __call__(self, keep: np.ndarray) -> np.ndarray:
        """Probabilities ``[B, C]`` for keep-masks ``[B, n_features]``."""
        keep, keys = self._keys(keep)
        todo: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            if key not in self.memo and key not in todo:
                todo[key] = i
        if todo:
            rows = list(todo.values())
            chunk = max(1, int(self.adapter.eval_batch_size)) * (8 if self.edits else 1)
            with self.adapter.guarded():
                for start in range(0, len(rows), chunk):
                    idx = rows[start:start + chunk]
                    for j, p in zip(idx, self._predict(keep[idx])):
                        self.memo[keys[j]] = p.astype(np.float64)
            self.evaluated += len(rows)
        return np.stack([self.memo[k] for k in keys]) if keys else np.zeros((0, len(self.adapter.labels)))

    def _predict(self, keep: np.ndarray) -> np.ndarray:
        if self.edits:
            texts = [self.edited(row) for row in keep]
            return self.adapter.predict_texts(texts).float().cpu().numpy()
        mask = torch.from_numpy(np.ascontiguousarray(keep)).to(self.enc.inputs.device)
        x = self.adapter.perturb(self.enc, mask, self.baseline)
        return self.adapter.predict_batch(x, self.enc).float().cpu().numpy()


def labels_of(enc: Encoded, indices: Sequence[int]) -> list[str]:
    return [enc.feature_labels[int(i)] for i in indices]
