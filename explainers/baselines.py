"""Baselines that say what they are: the model's prediction on each baseline, how neutral
it is, and a ``neutral`` baseline searched to be as uninformative as the model allows.

An attribution against a baseline explains ``f(x) - f(baseline)``. When the baseline has
a strong prediction of its own (the default text model calls the all-[PAD] input
"negative" with p 0.54-0.81), the map explains the difference from "negative", not from
"nothing" (Sturmfels et al., *Visualizing the Impact of Feature Attribution Baselines*,
Distill 2020). :func:`baseline_predictions` shows that prediction, :func:`neutrality`
scores it, and :func:`neutral_baseline` picks the candidate, or the mix of two candidates,
whose prediction is closest to uniform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from .errors import ExplainerError
from .results import Prediction, jsonable

if TYPE_CHECKING:
    from .adapters.base import Encoded, ModelAdapter

#: mixing weights tried between every pair of candidates
MIX_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(1, 10))
#: below this neutrality a baseline's prediction is called far from uniform
NEUTRALITY_WARN = 0.5


def neutrality(probabilities: Sequence[float]) -> float:
    r"""How close a class distribution is to uniform, in [0, 1].

    .. math:: 1 - \frac{\mathrm{TV}(p, u)}{1 - 1/C},\quad
              \mathrm{TV}(p, u) = \tfrac12 \sum_c |p_c - 1/C|

    1 means uniform (the model has no preference), 0 means all mass on one class. For two
    classes it is ``1 - 2 |p_0 - 0.5|``: p = 0.71 gives 0.58.
    """
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    c = p.size
    if c < 2:
        return float("nan")
    tv = 0.5 * np.abs(p - 1.0 / c).sum()
    return float(max(0.0, 1.0 - tv / (1.0 - 1.0 / c)))


@dataclass
class BaselinePrediction:
    """The model's prediction on one baseline kind.

    Attributes:
        kind: the baseline kind.
        prediction: arg-max class and probabilities (averaged over the kind's rows).
        neutrality: :func:`neutrality` of the probabilities (1 = uniform).
        rows: how many baseline rows the kind has.
        description: what the baseline is (for ``neutral``: the chosen mix).
        warning: a sentence for the user when the prediction is far from uniform, else None.
    """

    kind: str
    prediction: Prediction
    neutrality: float
    rows: int
    description: str
    warning: str | None = None

    def to_dict(self) -> dict:
        return jsonable({"kind": self.kind, "prediction": self.prediction.to_dict(),
                          "neutrality": self.neutrality, "rows": self.rows,
                          "description": self.description, "warning": self.warning})


def _describe(adapter: "ModelAdapter", kind: str, enc: "Encoded") -> str:
    if kind == "neutral":
        info = neutral_info(adapter, enc)
        return f"neutral: {info['description']}"
    return adapter.describe_baseline(kind)


def baseline_predictions(adapter: "ModelAdapter", enc: "Encoded", kinds: Sequence[str] | None = None
                         ) -> dict[str, BaselinePrediction]:
    """The model's prediction on each baseline, and how neutral it is.

    Args:
        adapter: the model adapter.
        enc: the encoded input (text baselines keep its length and special tokens).
        kinds: baseline kinds; default all of ``adapter.baseline_kinds``.

    Returns:
        ``{kind: BaselinePrediction}`` in the order given. A kind with several rows (tabular
        ``train_samples``) reports the mean of its rows' probabilities.
    """
    kinds = list(adapter.baseline_kinds if kinds is None else kinds)
    out: dict[str, BaselinePrediction] = {}
    for kind in kinds:
        base = adapter.baselines(enc, [kind])
        with adapter.lock:
            probs = adapter.predict_batch(base, enc).float().mean(0).cpu().numpy().astype(float)
        pred = adapter.make_prediction(probs.tolist())
        idx = pred.index
        # neutrality compares a class distribution with uniform: only a softmax has one
        score = neutrality(probs) if adapter.output_kind == "softmax" else float("nan")
        warn = None
        if score < NEUTRALITY_WARN:
            warn = (f"baseline {kind} -> {pred.label} {probs[idx]:.2f}: far from uniform, so "
                    f"attributions against it explain the difference from '{pred.label}', not "
                    f"from 'nothing'")
        out[kind] = BaselinePrediction(kind, pred, score, int(base.shape[0]),
                                       _describe(adapter, kind, enc), warn)
    return out


def _mix_rows(cands: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int, float]]]:
    """Every candidate, then ``w * a + (1 - w) * b`` for each pair and weight."""
    rows = list(cands)
    recipe: list[tuple[int, int, float]] = [(i, i, 1.0) for i in range(len(cands))]
    for i in range(len(cands)):
        for j in range(i + 1, len(cands)):
            for w in MIX_WEIGHTS:
                rows.append(w * cands[i] + (1.0 - w) * cands[j])
                recipe.append((i, j, w))
    return torch.cat(rows), recipe


def neutral_search(adapter: "ModelAdapter", enc: "Encoded") -> tuple[torch.Tensor, dict]:
    """Search the adapter's neutral candidates and their pairwise mixes.

    Returns:
        ``(baseline [1, ...], info)`` where ``info`` holds ``description``,
        ``probabilities``, ``neutrality`` and the ``candidates`` with their own neutrality.
        Ties go to the pure candidate listed first.
    """
    named = adapter.neutral_candidate_tensors(enc)
    if not named:
        raise ExplainerError(f"the {adapter.modality} adapter has no neutral-baseline candidates")
    names = list(named)
    cands = [named[n].to(enc.inputs.dtype) for n in names]
    rows, recipe = _mix_rows(cands)
    with adapter.lock:
        probs = adapter.predict_batch(rows, enc).float().cpu().numpy().astype(np.float64)
    scores = np.array([neutrality(p) for p in probs])
    best = int(np.argmax(scores))  # first maximum: pure candidates come first
    i, j, w = recipe[best]
    desc = names[i] if i == j else f"{w:.1f} x {names[i]} + {1 - w:.1f} x {names[j]}"
    info = {"description": desc, "probabilities": probs[best].tolist(),
            "neutrality": float(scores[best]),
            "candidates": {n: float(scores[k]) for k, n in enumerate(names)}}
    return rows[best:best + 1].clone(), info


def _memo(adapter: "ModelAdapter", enc: "Encoded") -> tuple[torch.Tensor, dict]:
    memo = enc.extra.get("_neutral")
    if memo is None:
        memo = neutral_search(adapter, enc)
        enc.extra["_neutral"] = memo
    return memo


def neutral_baseline(adapter: "ModelAdapter", enc: "Encoded") -> torch.Tensor:
    """The ``neutral`` baseline of ``enc`` (searched once per encoded input)."""
    return _memo(adapter, enc)[0].clone()


def neutral_info(adapter: "ModelAdapter", enc: "Encoded") -> dict:
    """What the ``neutral`` baseline of ``enc`` is made of, and its prediction."""
    return dict(_memo(adapter, enc)[1])
