"""Downloads: the engine's JSON result, CSV of scores, a PNG per panel, the metrics review.

The JSON follows ``Explanation.to_dict()`` (the CLI's schema), so a download from the
dashboard and ``python -m explainers`` output can be diffed.
"""

from __future__ import annotations

import json
from typing import Any

from explainers import Attribution, Explanation, get_method
from explainers.results import jsonable

from .render import prediction_summary
from .views import get_view
from .widgets import Settings


def explanation(adapter, inp, attributions: dict[str, Attribution], target: int,
                metrics: dict | None = None) -> Explanation:
    return Explanation(
        model=adapter.name, modality=adapter.modality, features=adapter.features(inp.enc),
        prediction=inp.prediction, target={"index": int(target), "label": adapter.label(target)},
        attributions=dict(attributions), warnings=list(adapter.warnings) + list(inp.enc.warnings),
        metrics=dict(metrics or {}),
        precision=next((a.precision for a in attributions.values() if a.precision != "fp32"), "fp32"))


def result_json(adapter, inp, attributions, target, metrics=None, extra: dict | None = None) -> bytes:
    d = explanation(adapter, inp, attributions, target, metrics).to_dict()
    if extra:
        d["input"] = extra
    return json.dumps(d, indent=1).encode()


def scores_csv(adapter, enc, a: Attribution) -> bytes:
    """The panel's scores as CSV, in the modality view's layout (one row per feature for
    text and tables, the H x W matrix for images)."""
    return get_view(adapter.modality).scores_csv(adapter, enc, a)


def panel_png(adapter, inp, a: Attribution, scale: float, settings=None) -> bytes:
    """The panel drawn with PIL (same colours as on screen), titled with the method, the
    input, the prediction and the colour scale."""
    view = get_view(adapter.modality)
    caveat = view.caveat(adapter, inp)
    title = (f"{get_method(a.method).title} · {inp.name} · predicted {prediction_summary(inp.prediction)} · "
             f"scale ±{scale:.3g}" + (f" · CAUTION: {caveat.short}" if caveat else ""))
    return view.panel_png(adapter, inp, a, scale, settings or Settings(0, True), title)


def review_json(adapter, inp, target: int, methods: list[str], params: dict, metrics: dict,
                input_id: Any, precision: str = "fp32") -> bytes:
    """The metrics of this input, with what is needed to reproduce them (``precision``: what
    the model passes ran as), and the input's warnings (as the result JSON carries them:
    text the model cannot read says so)."""
    return json.dumps(jsonable({
        "model": adapter.name, "modality": adapter.modality, "input": input_id,
        "prediction": inp.prediction.to_dict(), "target": {"index": target, "label": adapter.label(target)},
        "methods": methods, "params": params, "metrics": metrics,
        "precision": precision,
        "warnings": list(adapter.warnings) + list(inp.enc.warnings),
    }), indent=1).encode()
