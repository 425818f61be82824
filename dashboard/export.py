"""Downloads: the engine's JSON result, CSV of scores, a PNG per panel, the metrics review.

The JSON follows ``Explanation.to_dict()`` (the CLI's schema), so a download from the
dashboard and ``python -m explainers`` output can be diffed.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from explainers import Attribution, Explanation

from . import render


def explanation(adapter, inp, attributions: dict[str, Attribution], target: int,
                metrics: dict | None = None) -> Explanation:
    return Explanation(
        model=adapter.name, modality=adapter.modality, features=adapter.features(inp.enc),
        prediction=inp.prediction, target={"index": int(target), "label": adapter.label(target)},
        attributions=dict(attributions), warnings=list(adapter.warnings) + list(inp.enc.warnings),
        metrics=dict(metrics or {}))


def result_json(adapter, inp, attributions, target, metrics=None, extra: dict | None = None) -> bytes:
    d = explanation(adapter, inp, attributions, target, metrics).to_dict()
    if extra:
        d["input"] = extra
    return json.dumps(d, indent=1).encode()


def scores_csv(adapter, enc, a: Attribution) -> bytes:
    """Text/tabular: one row per feature (index, feature, value, score). Image: the H x W
    score matrix (row = y), one line per image row."""
    buf = io.StringIO()
    if adapter.modality == "image":
        np.savetxt(buf, np.asarray(a.scores), delimiter=",", fmt="%.6g")
        return buf.getvalue().encode()
    import csv
    w = csv.writer(buf)
    values = enc.raw if isinstance(enc.raw, dict) else {}
    w.writerow(["index", "feature", "value", "score"])
    for i, (f, s) in enumerate(zip(enc.feature_labels, np.asarray(a.scores).tolist())):
        w.writerow([i, f, values.get(f, ""), f"{s:.8g}"])
    return buf.getvalue().encode()


def panel_png(adapter, inp, a: Attribution, scale: float, positive_only: bool = False,
              smooth: float = 0.0) -> bytes:
    """The panel drawn with PIL (same colours as on screen)."""
    from explainers import get_method
    title = (f"{get_method(a.method).title} · {inp.name} · predicted {inp.prediction.label} · "
             f"scale ±{scale:.3g}")
    if adapter.modality == "image":
        shown = render.smooth(a.scores, smooth) if smooth > 0 else a.scores
        return render.png_bytes(render.overlay(inp.enc.raw, shown, scale, positive_only, inp.box))
    if adapter.modality == "text":
        return render.text_png(inp.enc.feature_labels, a.scores, scale, title=title)
    return render.bars_png(inp.enc.feature_labels, a.scores, inp.enc.raw, scale, title=title)


def review_json(adapter, inp, target: int, methods: list[str], params: dict, metrics: dict,
                input_id: Any) -> bytes:
    """The metrics of this input, with what is needed to reproduce them."""
    from explainers.results import _jsonable
    return json.dumps(_jsonable({
        "model": adapter.name, "modality": adapter.modality, "input": input_id,
        "prediction": inp.prediction.to_dict(), "target": {"index": target, "label": adapter.label(target)},
        "methods": methods, "params": params, "metrics": metrics,
    }), indent=1).encode()
