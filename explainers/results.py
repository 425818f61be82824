"""Result types shared by the API, the CLI and the dashboard.

``Explanation.to_dict()`` is the JSON schema the CLI prints::

    {model, modality, features,
     prediction: {index, label, output_kind, probabilities}      (softmax, sigmoid)
               | {index, label, output_kind, value, values}       (score),
     target: {index, label}, attributions: {method: {scores, convergence_delta, seconds,
     params, cache_hit, notes, delta_stats, [matrix]}}, baseline_seconds, warnings: [...],
     [output: {...}], metrics: {...}}

Each method's ``seconds`` is its own work; searching a baseline (``neutral``) is reported
apart, as ``baseline_seconds`` (0 when the search was remembered from an earlier input).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


def jsonable(value: Any) -> Any:
    """Numpy/tensor-free, NaN-free copy of ``value`` for JSON."""
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        f = float(value)
        # 7 significant digits: float32 precision, and compact JSON for 50k-pixel maps
        return None if math.isnan(f) or math.isinf(f) else float(f"{f:.7g}")
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


#: what a model's outputs mean: ``softmax`` (one class out of several; probabilities sum to
#: 1), ``sigmoid`` (each output an independent probability: a binary single-logit head or a
#: multi-label head) or ``score`` (raw values: regression, ranking, recommender scores)
OUTPUT_KINDS = ("softmax", "sigmoid", "score")


@dataclass
class Prediction:
    """The model's output on one input.

    Attributes:
        index: softmax: the arg-max class; sigmoid: the most probable output; score: the
            first output (outputs of a score model are separate quantities, not rivals).
        label: the name of ``index``.
        probabilities: one value per output, in the kind's own space: softmax or sigmoid
            probabilities, or (score) the raw outputs. :attr:`outputs` is the same list
            under a name that fits every kind.
        output_kind: one of :data:`OUTPUT_KINDS`.
    """

    index: int
    label: str
    probabilities: list[float]
    output_kind: str = "softmax"

    @property
    def outputs(self) -> list[float]:
        """One value per output: probabilities (softmax, sigmoid) or raw scores (score)."""
        return self.probabilities

    @property
    def value(self) -> float:
        """The value of output ``index``: its probability, or its raw score."""
        return float(self.probabilities[self.index])

    def to_dict(self) -> dict:
        """``{index, label, probabilities, output_kind}`` for softmax and sigmoid (the
        classifier schema, with ``output_kind`` added); ``{index, label, output_kind, value,
        values}`` for scores, which are not probabilities."""
        if self.output_kind == "score":
            return {"index": self.index, "label": self.label, "output_kind": "score",
                    "value": jsonable(self.value), "values": jsonable(self.probabilities)}
        return {"index": self.index, "label": self.label, "probabilities": jsonable(self.probabilities),
                "output_kind": self.output_kind}


@dataclass
class Attribution:
    """One method's attribution for one input and target.

    Attributes:
        method: registered method name.
        scores: one value per feature (text tokens, tabular features) or an H x W array
            (images, summed over channels).
        convergence_delta: completeness error (IG, GradientSHAP), else None. IG with several
            baselines: the per-baseline delta of largest magnitude, signed; GradientSHAP
            without input noise: ``sum(scores) - (f(x) - mean_k f(b_k))``.
        seconds: wall time of the computation (of the original run for cache hits).
        params: the resolved parameters used.
        cache_hit: whether the result came from the attribution store.
        warnings: notes for the user about this run (for example, the store could not be
            used and the result was computed without it); not part of the stored row.
        notes: sentences to show next to the result (for example GradientSHAP with one
            baseline and no noise: "equivalent to stochastic IG ...").
        delta_stats: IG: ``per_baseline`` deltas, ``gaps`` (f(x) - f(b_k)), ``mean_abs``
            and ``max_abs`` of the deltas; GradientSHAP: ``gaps``; else None.
        matrix: generation only: ``[target tokens, features]``, row ``j`` the scores for the
            log-probability of target token ``j`` (``scores`` are for their sum); else None.
        precision: what the model's passes ran as (:mod:`explainers.precision`): ``"fp32"``,
            or ``"bf16-forward"`` (passes without gradients in bf16); part of the store key.
    """

    method: str
    scores: np.ndarray
    convergence_delta: float | None
    seconds: float
    params: dict
    cache_hit: bool = False
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    delta_stats: dict | None = None
    precision: str = "fp32"
    matrix: np.ndarray | None = None

    def to_dict(self) -> dict:
        d = {
            "scores": jsonable(self.scores),
            "convergence_delta": jsonable(self.convergence_delta),
            "seconds": round(float(self.seconds), 6),
            "params": jsonable(self.params),
            "cache_hit": self.cache_hit,
            "notes": list(self.notes),
            "delta_stats": jsonable(self.delta_stats),
            "precision": self.precision,
        }
        if self.matrix is not None:
            d["matrix"] = jsonable(self.matrix)
        return d

    @classmethod
    def from_dict(cls, method: str, d: dict, cache_hit: bool = False) -> "Attribution":
        return cls(
            method=method,
            scores=np.asarray(d["scores"], dtype=np.float64),
            convergence_delta=d.get("convergence_delta"),
            seconds=float(d["seconds"]),
            params=d["params"],
            cache_hit=cache_hit,
            notes=list(d.get("notes") or []),
            delta_stats=d.get("delta_stats"),
            precision=str(d.get("precision", "fp32")),
            matrix=None if d.get("matrix") is None else np.asarray(d["matrix"], dtype=np.float64),
        )


#: draws an :class:`Explanation` as HTML (``renderer(explanation, **options) -> str``); set by
#: :mod:`explainers.notebook`, which the package imports, so this layer needs no drawing code
html_renderer: Callable[..., str] | None = None


@dataclass
class Explanation:
    """Everything shown for one input: prediction, target and each method's attribution.

    ``baseline_seconds``: time spent searching baselines for this input (the ``neutral``
    one; 0 when the search was remembered), kept out of every method's ``seconds``.
    ``output`` is what the adapter says about the explained output beyond the prediction
    (generation: the prompt, the target and contrast tokens, the greedy continuation and the
    matrix's column labels); empty for classifiers, and then left out of the JSON.

    ``input`` (the input as explained: the text, the RGB picture at model resolution, the
    row's feature values) and ``labels`` (the model's output names) are kept for display: a
    notebook draws the maps over the input and names every output. Neither is part of
    :meth:`to_dict`.
    """

    model: str
    modality: str
    features: Any
    prediction: Prediction
    target: dict
    attributions: dict[str, Attribution]
    warnings: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    #: what the model's passes ran as (see :attr:`Attribution.precision`)
    precision: str = "fp32"
    baseline_seconds: float = 0.0
    output: dict = field(default_factory=dict)
    input: Any = field(default=None, repr=False, compare=False)
    labels: list[str] | None = field(default=None, repr=False, compare=False)

    def _repr_html_(self, **options: Any) -> str:
        """The explanation as Jupyter draws it: prediction, maps side by side, metrics
        (:func:`explainers.notebook.explanation_html`; ``options`` as there)."""
        if html_renderer is None:
            return f"<pre>{html.escape(repr(self))}</pre>"
        return html_renderer(self, **options)

    def to_dict(self) -> dict:
        d = {
            "model": self.model,
            "modality": self.modality,
            "features": jsonable(self.features),
            "prediction": self.prediction.to_dict(),
            "target": self.target,
            "attributions": {k: v.to_dict() for k, v in self.attributions.items()},
            "baseline_seconds": round(float(self.baseline_seconds), 6),
            "warnings": list(self.warnings),
            "precision": self.precision,
        }
        if self.output:
            d["output"] = jsonable(self.output)
        if self.metrics:
            d["metrics"] = jsonable(self.metrics)
        return d
