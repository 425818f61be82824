"""Metrics that say how far to trust an explanation, computed from real re-predictions.

``compute`` adds any of :data:`METRICS` to an :class:`~explainers.results.Explanation`:

* ``agreement``: rank correlation, top-k overlap and sign agreement between methods;
* ``faithfulness``: deletion/insertion curves, AOPC, comprehensiveness, sufficiency, and a
  random-attribution control;
* ``flip``: deletions needed to change the predicted class;
* ``stability``: IG convergence over ``n_steps``, GradientSHAP seed intervals, baseline
  sensitivity;
* ``sanity``: cascading model-parameter randomization (Adebayo et al. 2018);
* ``robustness``: Captum infidelity and max-sensitivity (Yeh et al. 2019).

Everything is on interpretable features (tokens, image patches, table columns) through the
adapter, so no metric special-cases a modality.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .. import precision
from ..adapters.base import Encoded, ModelAdapter
from ..errors import ExplainerError
from ..results import Explanation, jsonable
from . import agreement, faithfulness, flip, robustness, sanity, stability
from .common import (
    OPTION_HELP,
    Progress,
    Repredictor,
    feature_scores,
    is_registered,
    method_params,
    resolve_options,
)
from .cost import metric_costs

METRICS = ("agreement", "faithfulness", "flip", "stability", "sanity", "robustness")

__all__ = ["METRICS", "OPTION_HELP", "compute", "check_names", "flip_chunk", "metric_costs"]


def check_names(names: Sequence[str]) -> list[str]:
    """``names`` without repeats, or an ExplainerError naming the unknown ones."""
    names = [str(n).strip() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ExplainerError(f"unknown metric(s) {unknown}; available: {list(METRICS)}")
    return list(dict.fromkeys(names))


def compute(adapter: ModelAdapter, enc: Encoded, explanation: Explanation, names: Sequence[str],
            options: dict | None = None, params: dict | None = None, store: Any = None,
            progress: Progress | None = None, predictor: Repredictor | None = None) -> dict:
    """Compute the named metrics for one explanation.

    Args:
        adapter: the model adapter the explanation came from.
        enc: the encoded input.
        explanation: the :class:`Explanation` (its attributions and target are used).
        names: metric names from :data:`METRICS`.
        options: metric options (see :data:`~explainers.metrics.common.OPTION_HELP`):
            ``k``, ``perturbation``, ``baseline``, ``random_orders``, ``sequential``,
            ``alpha``, ``seed``,
            ``tolerance``,
            ``ig_steps``, ``seeds``, ``sanity_stages``, ``sanity_threshold``,
            ``n_perturb_samples``, ``sensitivity_samples``, ``sensitivity_radius``.
        params: the user's ``{method: params}``; used for re-runs where an attribution does
            not carry its resolved parameters.
        store: attribution store for the re-runs of ``stability`` (None: no caching).
        progress: called as ``progress(metric, fraction)``.
        predictor: a :class:`Repredictor` for ``enc`` to use (and extend) instead of a new
            one; :mod:`explainers.metrics.batched` hands in one whose memo it filled for many
            inputs at once. It must match the options' baseline and perturbation.

    Returns:
        ``{metric: block}``, JSON-ready (NaN becomes None).

    Raises:
        ExplainerError: for an unknown metric or option, or an explanation without scores.
    """
    names = check_names(names)
    if not names:
        return {}
    if not explanation.attributions:
        raise ExplainerError("the explanation has no attributions to evaluate")
    opts = resolve_options(options, adapter, enc)
    target = int(explanation.target["index"])
    scores = feature_scores(adapter, enc, explanation)
    runnable = {m: method_params(explanation, params, m) for m in scores if is_registered(m)}
    if predictor is not None and (predictor.baseline_kind, predictor.perturbation) != (
            opts["baseline"], opts["perturbation"]):
        predictor = None  # made for other options: start afresh

    def repredict() -> Repredictor:
        nonlocal predictor
        if predictor is None:
            predictor = Repredictor(adapter, enc, opts["baseline"], opts["perturbation"])
        return predictor

    def step(name: str):
        return (lambda f: progress(name, f)) if progress else None

    # bf16 forwards (precision "bf16-forward"): decisions are confirmed in float32, through
    # a predictor of its own (the shared one's memo holds bf16 outputs)
    bf16 = precision.active() == "bf16-forward"
    fp32_predictor: list[Repredictor] = []

    def predict_fp32(keep: np.ndarray) -> np.ndarray:
        if not fp32_predictor:
            fp32_predictor.append(Repredictor(adapter, enc, opts["baseline"], opts["perturbation"]))
        with precision.fp32():
            return fp32_predictor[0](keep)

    out: dict[str, Any] = {}
    for name in names:
        if progress:
            progress(name, 0.0)
        if name == "agreement":
            out[name] = agreement.agreement(scores, opts["k"], enc.feature_labels)
        elif name == "faithfulness":
            args = (enc.n_features, opts["baseline"], opts["random_orders"], opts["seed"], opts["alpha"],
                    opts["perturbation"], opts["perturbation_note"], opts["sequential"])
            noise = bf16_noise(adapter, target, repredict()) if bf16 else 0.0
            out[name] = faithfulness.faithfulness(scores, target, repredict(), *args, noise=noise)
            if bf16:
                recheck_verdicts(out[name], scores, target, predict_fp32, args)
            # the curves follow the target's probability (softmax, sigmoid) or raw score
            out[name]["output_kind"] = adapter.output_kind
            out[name]["measure"] = "score" if adapter.output_kind == "score" else "probability"
        elif name == "flip" and adapter.output_kind != "softmax":
            out[name] = _threshold_flip(adapter, enc, scores, target, opts, repredict(),
                                        predict_fp32 if bf16 else None)
        elif name == "flip":
            original = int(explanation.prediction.index)
            # Scores explain the target. If it is not the predicted class, the features most
            # opposed to it are the ones holding the prediction, so they go first.
            toward = target == original
            ordered = scores if toward else {m: -s for m, s in scores.items()}
            out[name] = flip.flip(ordered, original, repredict(), enc.feature_labels, adapter.labels,
                             opts["seed"], chunk=flip_chunk(len(ordered)),
                             edited=repredict().edited, perturbation=opts["perturbation"],
                             perturbation_note=opts["perturbation_note"])
            out[name]["order"] = ("most support for the target first" if toward
                                  else "most opposition to the target first")
            if bf16:
                flip.confirm_flips(out[name], predict_fp32, enc.n_features, original, adapter.labels)
        elif name in ("stability", "sanity", "robustness") and bf16:
            with precision.fp32():  # re-runs of the methods and their checks: float32
                out.update(compute(adapter, enc, explanation, [name], options, params, store, progress))
            continue
        elif name == "stability":
            out[name] = stability.stability(adapter, enc, target, runnable, opts["ig_steps"], opts["tolerance"],
                                  opts["seeds"], store, step(name))
        elif name == "sanity":
            out[name] = sanity.sanity(adapter, enc, target, {m: scores[m] for m in runnable}, runnable,
                               opts["sanity_stages"], opts["sanity_threshold"], opts["seed"], step(name))
        elif name == "robustness":
            out[name] = robustness.robustness(adapter, enc, target, scores, runnable, repredict().baseline,
                                   opts["n_perturb_samples"], opts["sensitivity_samples"],
                                   opts["sensitivity_radius"], opts["seed"], step(name))
        if progress:
            progress(name, 1.0)
    return jsonable(out)


#: prefixes per deletion order in one round of the flip search: the search stops at the
#: first flip (a median of 4-5 words on SST-2), so small rounds predict few prefixes past it;
#: a review pools every input's round into one batch (:mod:`explainers.metrics.batched`)
FLIP_STEPS_PER_ROUND = 2


def flip_chunk(methods: int) -> int:
    """Masks per round of the flip search over ``methods`` orders and the random one."""
    return FLIP_STEPS_PER_ROUND * (methods + 1)


def default_threshold(adapter: ModelAdapter, target: int, predictor: Repredictor) -> tuple[float, str]:
    """The flip threshold of a score or sigmoid output when the user sets none, and where it
    comes from: 0.5 for a sigmoid; for a score the median of the model's outputs on its
    reference data, or (a model without data) its output on the removal baseline."""
    if adapter.output_kind == "sigmoid":
        return 0.5, "0.5 (sigmoid default)"
    ref = adapter.reference_outputs()
    if ref is not None and len(ref):
        return float(np.median(ref[:, target])), f"median of the model's scores on its {len(ref)} reference rows"
    empty = predictor(np.zeros((1, predictor.enc.n_features), dtype=bool))[0]
    return float(empty[target]), f"the score of the {predictor.baseline_kind} baseline (no reference data)"


def bf16_noise(adapter: ModelAdapter, target: int, predictor: Repredictor) -> float:
    """How far bf16 forwards may move one output: :data:`explainers.precision.BF16_PROB_TOLERANCE`
    for a probability; for a raw score, that times the score's magnitude (at least 1)."""
    if adapter.output_kind != "score":
        return precision.BF16_PROB_TOLERANCE
    value = float(predictor(np.ones((1, predictor.enc.n_features), dtype=bool))[0][target])
    return precision.BF16_PROB_TOLERANCE * max(1.0, abs(value))


def recheck_verdicts(block: dict, scores: dict[str, np.ndarray], target: int,
                     predict_fp32: Any, args: tuple) -> None:
    """The faithfulness test again, in float32, for the methods whose bf16 verdict is in
    doubt (``in_doubt``): their entries are replaced by the float32 ones, marked
    ``recomputed_in: "fp32"``. The random orders are the same (same seed), so the p-value is
    the one an fp32 request gets."""
    doubtful = [m for m, b in block["methods"].items() if b.pop("in_doubt", False)]
    if not doubtful:
        return
    again = faithfulness.faithfulness({m: scores[m] for m in doubtful}, target, predict_fp32, *args)
    for m in doubtful:
        block["methods"][m] = {**again["methods"][m], "recomputed_in": "fp32"}


def _threshold_flip(adapter: ModelAdapter, enc: Encoded, scores: dict[str, np.ndarray], target: int, opts: dict,
                    predictor: Repredictor, predict_fp32: Any = None) -> dict:
    """The flip block of a score or sigmoid model: across a threshold (see
    :func:`explainers.metrics.flip.flip_threshold`). Features that hold the output on its
    side go first: the most positive when it is at or above the threshold, else the most
    negative."""
    label = adapter.label(target)
    rule = getattr(adapter, "flip_rule", None)
    if callable(rule):  # the adapter says which output decides (generation: the first-token margin)
        target, threshold, label, source = rule(enc)
    if opts.get("threshold") is not None:
        threshold, source = float(opts["threshold"]), "set by the user"
    elif not callable(rule):
        threshold, source = default_threshold(adapter, target, predictor)
    value = float(predictor(np.ones((1, enc.n_features), dtype=bool))[0][target])
    above = value >= threshold
    ordered = scores if above else {m: -s for m, s in scores.items()}
    block = flip.flip_threshold(ordered, target, threshold, predictor, enc.feature_labels, label,
                           adapter.output_kind, opts["seed"], chunk=flip_chunk(len(ordered)),
                           edited=predictor.edited, perturbation=opts["perturbation"],
                           perturbation_note=opts["perturbation_note"], threshold_source=source)
    block["order"] = ("most positive first (they hold the output above the threshold)" if above
                      else "most negative first (they hold the output below the threshold)")
    if predict_fp32 is not None:  # found with bf16 forwards: confirmed in float32
        flip.confirm_flips(block, predict_fp32, enc.n_features, target=target)
    return block


def mean_offdiagonal(matrix: Sequence[Sequence[float | None]]) -> list[float | None]:
    """Per row, the mean of the defined off-diagonal entries (None if there are none)."""
    m = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=np.float64)
    out: list[float | None] = []
    for i in range(m.shape[0]):
        vals = np.delete(m[i], i)
        vals = vals[np.isfinite(vals)]
        out.append(float(vals.mean()) if vals.size else None)
    return out
