"""The metrics of many inputs at once: the re-predictions of faithfulness and flips (each
round by round: the sequential random control draws more orders where a decision is open,
the flip search extends the orders not yet flipped) are predicted for all inputs together
into each input's memo, then each input's metrics are computed as
:func:`explainers.metrics.compute` computes them alone and find their predictions there.
Agreement needs no model; stability, sanity and robustness run per input.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..adapters.base import Encoded, ModelAdapter
from ..pooling import Pool
from ..results import Explanation
from . import compute, flip_chunk
from .common import Repredictor, feature_scores, resolve_options
from .faithfulness import ControlRun
from .flip import FlipSearch, search_orders


def prefetch(model: ModelAdapter, predictors: Sequence[Any], masks: Sequence[np.ndarray | None]) -> None:
    """Predict ``masks[i]`` for ``predictors[i]`` (a :class:`~explainers.metrics.common.Repredictor`)
    for all inputs together and memoise them there. Text edits (``delete``/``mask``) go
    through one :meth:`~explainers.adapters.text.TextAdapter.predict_texts` call, which
    groups texts of equal token length (no padding); the ``baseline`` perturbation through
    a :class:`Pool`."""
    todo = []
    for p, m in zip(predictors, masks):
        if m is None or not len(m):
            continue
        keep, keys = p.missing(m)
        if len(keys):
            todo.append((p, keep, keys))
    if not todo:
        return
    if all(p.edits for p, _, _ in todo):
        texts = [p.edited(row) for p, keep, _ in todo for row in keep]
        with model.guarded():
            probs = model.predict_texts(texts).float().cpu().numpy()
        offset = 0
        for p, keep, keys in todo:
            p.fill(keys, probs[offset:offset + len(keys)])
            offset += len(keys)
        return
    pool = Pool(model, [p.enc for p, _, _ in todo])
    xs = []
    for i, (p, keep, _) in enumerate(todo):
        mask = torch.from_numpy(np.ascontiguousarray(keep)).to(p.enc.inputs.device)
        xs.append((i, p.adapter.perturb(p.enc, mask, p.baseline)))
    for (p, _, keys), probs in zip(todo, pool.outputs(xs)):
        p.fill(keys, probs.float().cpu().numpy())


def metrics_many(model: ModelAdapter, encs: Sequence[Encoded], explanations: Sequence[Explanation],
                 names: Sequence[str], options: dict | None, params: dict | None,
                 store: Any = None) -> list[dict | Exception]:
    """:func:`explainers.metrics.compute` for many inputs, the re-predictions of
    faithfulness and flip predicted across inputs first (see :func:`prefetch`)."""
    preds: list[Any] = []
    opts, scores = [], []
    for enc, ex in zip(encs, explanations):
        try:
            o = resolve_options(options, model, enc)
            preds.append(Repredictor(model, enc, o["baseline"], o["perturbation"]))
            opts.append(o)
            scores.append(feature_scores(model, enc, ex))
        except Exception:  # noqa: BLE001 - compute() below reports it for this input
            preds.append(None), opts.append(None), scores.append(None)
    live = [i for i, p in enumerate(preds) if p is not None]
    if "faithfulness" in names:
        runs = {i: ControlRun(scores[i], encs[i].n_features, opts[i]["random_orders"], opts[i]["seed"],
                              opts[i]["alpha"], opts[i]["sequential"]) for i in live}
        target = {i: int(explanations[i].target["index"]) for i in live}
        while True:  # round by round: a sequential control draws more orders where undecided
            active = [i for i, r in runs.items() if not r.done]
            if not active:
                break
            masks = {i: runs[i].masks() for i in active}
            prefetch(model, [preds[i] for i in active], [masks[i] for i in active])
            for i in active:
                runs[i].feed(preds[i](masks[i])[:, target[i]] if len(masks[i]) else np.zeros(0))
    if "flip" in names and model.output_kind == "softmax":
        # score and sigmoid flips search across a threshold (compute() runs them per input)
        searches = {}
        for i in live:
            original = int(explanations[i].prediction.index)
            toward = int(explanations[i].target["index"]) == original
            ordered = scores[i] if toward else {m: -s for m, s in scores[i].items()}
            searches[i] = FlipSearch(search_orders(ordered, encs[i].n_features, opts[i]["seed"]),
                                     original, encs[i].n_features, chunk=flip_chunk(len(ordered)))
        while True:
            active = [i for i, s in searches.items() if not s.done]
            if not active:
                break
            masks = {i: searches[i].masks() for i in active}
            prefetch(model, [preds[i] for i in active], [masks[i] for i in active])
            for i in active:
                searches[i].feed(preds[i](masks[i]))  # all memo hits now
        empty = [i for i in live if any(c is None for c, _ in searches[i].result.values())]
        prefetch(model, [preds[i] for i in empty],
                 [np.zeros((1, encs[i].n_features), dtype=bool) for i in empty])
    out: list[Any] = []
    for i, (enc, ex) in enumerate(zip(encs, explanations)):
        try:
            out.append(compute(model, enc, ex, list(names), options or {}, params=params,
                               store=store, predictor=preds[i]))
        except Exception as e:  # noqa: BLE001
            out.append(e)
    return out


