"""Baselines that say what they are: the model's prediction on each baseline, how neutral
it is, and a ``neutral`` baseline searched to be as uninformative as the model allows.

An attribution against a baseline explains ``f(x) - f(baseline)``. When the baseline has
a strong prediction of its own (the default text model calls the all-[PAD] input
"negative" with p 0.54-0.81), the map explains the difference from "negative", not from
"nothing" (Sturmfels et al., *Visualizing the Impact of Feature Attribution Baselines*,
Distill 2020). :func:`baseline_predictions` shows that prediction, :func:`neutrality`
scores it for the model's output kind, and :func:`neutral_baseline` picks the candidate, or
the mix of two candidates, whose prediction is the most neutral.

**One rule for every warning**: a baseline is flagged when its neutrality is below
:data:`NEUTRALITY_WARN` (0.5), whatever the modality; the top class's name and probability
are said, never used to decide.

**The search costs nothing after the first input of a length**: its result is kept per
model (a bounded, thread-safe memo) under everything the search depends on: the adapter's
settings and output kind, and the adapter's :meth:`neutral_key` of the input (text: its
length and special tokens, because every candidate replaces all content tokens; images:
the image itself, because the ``blur`` candidate is made from it). Its time is reported
apart from any method's (:func:`prepare_baselines`, ``Explanation.baseline_seconds``).
"""

from __future__ import annotations

import collections
import json
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Hashable, Sequence

import numpy as np
import torch

from .errors import ExplainerError
from .results import Prediction, jsonable

if TYPE_CHECKING:
    from .adapters.base import Encoded, ModelAdapter

#: mixing weights tried between every pair of candidates
MIX_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(1, 10))
#: below this neutrality a baseline is flagged (the one rule for every kind and modality)
NEUTRALITY_WARN = 0.5
#: neutral searches kept per model (each a tensor the size of one input)
MEMO_SIZE = 64


def neutrality(outputs: Sequence[float], kind: str = "softmax",
               reference: np.ndarray | None = None) -> float:
    r"""How neutral a model's outputs are, in [0, 1], by output kind.

    * ``softmax``: closeness to uniform,
      :math:`1 - \mathrm{TV}(p, u) / (1 - 1/C)` with
      :math:`\mathrm{TV}(p, u) = \tfrac12 \sum_c |p_c - 1/C|`: 1 = uniform, 0 = all mass on
      one class; for two classes ``1 - 2 |p_0 - 0.5|`` (p = 0.71 gives 0.58).
    * ``sigmoid``: closeness of every output to 0.5, ``1 - 2 mean_c |p_c - 0.5|``: 1 = all
      at 0.5, 0 = all at 0 or 1 (one output: the two-class softmax formula).
    * ``score``: closeness to the median of ``reference`` (the model's scores on its data,
      ``[N, C]``), ``1 - 2 mean_c |q_c - 0.5|`` with ``q_c`` the output's mid-rank
      percentile among ``reference[:, c]``: 1 = at the median, 0 = beyond every value.
      NaN without a reference.

    Returns:
        The neutrality; NaN where it is undefined (a one-class softmax, a score without a
        reference).
    """
    p = np.asarray(outputs, dtype=np.float64).reshape(-1)
    if kind == "sigmoid":
        return float(max(0.0, 1.0 - 2.0 * np.abs(p - 0.5).mean())) if p.size else float("nan")
    if kind == "score":
        if reference is None or len(reference) == 0:
            return float("nan")
        ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
        q = [((ref[:, c] < v).sum() + 0.5 * (ref[:, c] == v).sum()) / len(ref) for c, v in enumerate(p)]
        return float(1.0 - 2.0 * np.abs(np.asarray(q) - 0.5).mean())
    c = p.size
    if c < 2:
        return float("nan")
    tv = 0.5 * np.abs(p - 1.0 / c).sum()
    return float(max(0.0, 1.0 - tv / (1.0 - 1.0 / c)))


def neutral_reference(adapter: "ModelAdapter") -> tuple[np.ndarray | None, str]:
    """What a score model's neutrality is measured against, and its name.

    The model's outputs on its own data (:meth:`ModelAdapter.reference_outputs`, tabular);
    for a model without data, the adapter's ``neutral_reference_outputs()`` if it has one
    (text: the scores of the shipped everyday sentences); else none (neutrality NaN, and the
    neutral search keeps its first candidate and says so). Other kinds need none.
    """
    if adapter.output_kind != "score":
        return None, ""
    ref = adapter.reference_outputs()
    if ref is not None:
        return np.asarray(ref, dtype=np.float64), "the model's scores on its data"
    fallback = getattr(adapter, "neutral_reference_outputs", None)
    if fallback is not None:
        return fallback()
    return None, "no reference data"


def neutrality_of(adapter: "ModelAdapter", outputs: Sequence[float]) -> float:
    """:func:`neutrality` of one input's activated outputs, by the adapter's output kind."""
    return neutrality(outputs, adapter.output_kind, neutral_reference(adapter)[0])


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


#: what a flagged baseline means for the map, the same words for every kind
MAP_MEANING = ("so the map explains how the input's output differs from the baseline's own "
               "(its scores sum to f(x) - f(baseline)), not the evidence for the prediction "
               "starting from no information")


def baseline_warning(adapter: "ModelAdapter", kind: str, outputs: Sequence[float], score: float) -> str | None:
    """The warning for a baseline of neutrality ``score``, or None: flagged by the one rule
    (``score < NEUTRALITY_WARN``), stating that rule for the output kind, the baseline's
    own prediction, and what it means for the map."""
    if not score < NEUTRALITY_WARN:  # NaN: no rule applies, no warning
        return None
    p = np.asarray(outputs, dtype=np.float64)
    top = adapter.make_prediction(p.tolist())
    where = f"baseline {kind}: neutrality {score:.2f}, below {NEUTRALITY_WARN}"
    if adapter.output_kind == "softmax":
        scale = (f"1 = uniform over the {p.size} classes ({1 / p.size:.1%} each), 0 = all on one; "
                 f"its top class: {top.label} {top.value:.1%}")
    elif adapter.output_kind == "sigmoid":
        scale = f"1 = every output at 0.5, 0 = every output at 0 or 1; {top.label} {top.value:.2f}"
    else:
        scale = (f"1 = at the median of {neutral_reference(adapter)[1]}, 0 = beyond all of them; "
                 f"its {top.label} is {top.value:.4g}")
    return f"{where} ({scale}): {MAP_MEANING}"


def flagged_baselines(preds: dict[str, BaselinePrediction]) -> str | None:
    """One sentence for every flagged baseline of a panel (a method averaging over several
    baselines, GradientSHAP's default four, would otherwise show one warning each), or None.

    Args:
        preds: :func:`baseline_predictions`' result.

    Returns:
        "Baselines mask (neutrality 0.31; negative 0.80) and unk (...) are below the
        neutrality rule 0.5: so the map explains ...", naming each flagged kind with its
        neutrality and top output, and what that means for the map once (:data:`MAP_MEANING`).
    """
    flagged = [b for b in preds.values() if b.warning]
    if not flagged:
        return None
    named = [f"{b.kind} (neutrality {b.neutrality:.2f}; {b.prediction.label} {b.prediction.value:.2f})"
             for b in flagged]
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    which = "Baseline" if len(named) == 1 else "Baselines"
    verb = "is" if len(named) == 1 else "are"
    share = "" if len(flagged) == len(preds) else f" ({len(flagged)} of the {len(preds)} used)"
    return f"{which} {listed}{share} {verb} below the neutrality rule {NEUTRALITY_WARN}: {MAP_MEANING}."


def baseline_predictions(adapter: "ModelAdapter", enc: "Encoded", kinds: Sequence[str] | None = None
                         ) -> dict[str, BaselinePrediction]:
    """The model's prediction on each baseline, and how neutral it is.

    Args:
        adapter: the model adapter.
        enc: the encoded input (text baselines keep its length and special tokens).
        kinds: baseline kinds; default all of ``adapter.baseline_kinds``.

    Returns:
        ``{kind: BaselinePrediction}`` in the order given. A kind with several rows (tabular
        ``train_samples``) reports the mean of its rows' outputs. Neutrality follows the
        output kind (:func:`neutrality`); a warning is set by the one rule, neutrality
        below :data:`NEUTRALITY_WARN` (:func:`baseline_warning`).
    """
    kinds = list(adapter.baseline_kinds if kinds is None else kinds)
    out: dict[str, BaselinePrediction] = {}
    for kind in kinds:
        base = adapter.baselines(enc, [kind])
        with adapter.lock:
            probs = adapter.predict_batch(base, enc).float().mean(0).cpu().numpy().astype(float)
        pred = adapter.make_prediction(probs.tolist())
        score = neutrality_of(adapter, probs)
        out[kind] = BaselinePrediction(kind, pred, score, int(base.shape[0]),
                                       _describe(adapter, kind, enc),
                                       baseline_warning(adapter, kind, probs, score))
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

    Neutrality follows the output kind (:func:`neutrality`: softmax closest to uniform,
    sigmoid closest to 0.5, score closest to the reference's median).

    Returns:
        ``(baseline [1, ...], info)`` where ``info`` holds ``description``,
        ``probabilities`` (the chosen row's activated outputs), ``neutrality``, the
        ``candidates`` with their own neutrality and ``rule`` (what neutral means here).
        Ties go to the pure candidate listed first; when
        neutrality is undefined (a score model without reference data) the first candidate
        is kept and ``rule`` says so.
    """
    named = adapter.neutral_candidate_tensors(enc)
    if not named:
        raise ExplainerError(f"the {adapter.modality} adapter has no neutral-baseline candidates")
    names = list(named)
    cands = [named[n].to(enc.inputs.dtype) for n in names]
    rows, recipe = _mix_rows(cands)
    with adapter.lock:
        probs = adapter.predict_batch(rows, enc).float().cpu().numpy().astype(np.float64)
    reference, ref_name = neutral_reference(adapter)
    scores = np.array([neutrality(p, adapter.output_kind, reference) for p in probs])
    defined = not np.all(np.isnan(scores))
    best = int(np.nanargmax(scores)) if defined else 0  # first maximum: pure candidates come first
    i, j, w = recipe[best]
    desc = names[i] if i == j else f"{w:.1f} x {names[i]} + {1 - w:.1f} x {names[j]}"
    rule = {"softmax": "the prediction closest to uniform", "sigmoid": "the outputs closest to 0.5",
            "score": f"the score closest to the median of {ref_name}"}[adapter.output_kind]
    if not defined:
        rule = f"undefined ({ref_name} to compare a score with): the first candidate is used"
    info = {"description": desc, "probabilities": probs[best].tolist(),
            "neutrality": float(scores[best]), "rule": rule,
            "candidates": {n: float(scores[k]) for k, n in enumerate(names)}}
    return rows[best:best + 1].clone(), info


# -- the memo: one search per model and input length ----------------------------------------
_memos: "weakref.WeakKeyDictionary[torch.nn.Module, collections.OrderedDict]" = weakref.WeakKeyDictionary()
_memo_lock = threading.Lock()


def memo_key(adapter: "ModelAdapter", enc: "Encoded") -> Hashable:
    """Everything the neutral search of ``enc`` depends on besides the model's weights: the
    adapter's class, settings and output kind, and its ``neutral_key(enc)`` (the whole
    input, ``enc.key``, for an adapter that has none)."""
    part = getattr(adapter, "neutral_key", None)
    return (type(adapter).__qualname__, json.dumps(jsonable(adapter.config()), sort_keys=True),
            adapter.output_kind, part(enc) if part is not None else enc.key)


def _memo(adapter: "ModelAdapter", enc: "Encoded") -> tuple[torch.Tensor, dict, bool]:
    """``(baseline, info, found)``: from the model's memo (``found``) or searched now. Kept per
    model (the shared module, so every ``for_run`` copy sees it), at most
    :data:`MEMO_SIZE` entries, least recently used dropped first."""
    key = memo_key(adapter, enc)
    with _memo_lock:
        table = _memos.setdefault(adapter.module, collections.OrderedDict())
        hit = table.get(key)
        if hit is not None:
            table.move_to_end(key)
            return hit[0], hit[1], True
    start = time.perf_counter()
    base, info = neutral_search(adapter, enc)  # outside the lock: other models' lookups go on
    found = (base, {**info, "seconds": time.perf_counter() - start})
    with _memo_lock:
        table = _memos.setdefault(adapter.module, collections.OrderedDict())
        table[key] = found
        table.move_to_end(key)
        while len(table) > MEMO_SIZE:
            table.popitem(last=False)
    return found[0], found[1], False


def forget_neutral(adapter: "ModelAdapter") -> None:
    """Drop the model's memo of neutral searches (benchmarks measure the search this way)."""
    with _memo_lock:
        _memos.pop(adapter.module, None)


def neutral_baseline(adapter: "ModelAdapter", enc: "Encoded") -> torch.Tensor:
    """The ``neutral`` baseline of ``enc`` (searched once per model and :func:`memo_key`)."""
    return _memo(adapter, enc)[0].clone()


def neutral_info(adapter: "ModelAdapter", enc: "Encoded") -> dict:
    """What the ``neutral`` baseline of ``enc`` is made of, its prediction, the rule that
    chose it and ``seconds``, the search's own time (of the first input it was searched for)."""
    return dict(_memo(adapter, enc)[1])


def prepare_baselines(adapter: "ModelAdapter", enc: "Encoded", kinds: Any) -> float:
    """Search what ``kinds`` need before a method runs, so the method's ``seconds`` are its
    own work; returns the seconds spent searching here (0 when the memo had it) and adds them
    to ``enc.extra["baseline_seconds"]``, which ``Explanation.baseline_seconds`` reports."""
    if not isinstance(kinds, (list, tuple)) or "neutral" not in kinds \
            or "neutral" not in adapter.baseline_kinds:
        return 0.0
    start = time.perf_counter()
    _, _, found = _memo(adapter, enc)
    spent = 0.0 if found else time.perf_counter() - start
    enc.extra["baseline_seconds"] = enc.extra.get("baseline_seconds", 0.0) + spent
    return spent
