"""The public Python API: ``load_model`` and ``explain``."""

from __future__ import annotations

from typing import Any, Sequence

from .adapters.base import Encoded, ModelAdapter
from .engine import Progress, resolve_target, run_method
from .errors import ExplainerError
from .results import Explanation

DEFAULT_METHODS = ("integrated_gradients", "gradient_shap", "occlusion")


def load_model(spec: str = "text", modality: str | None = None, *, checkpoint: str | None = None,
               data: str | None = None, labels: Sequence[str] | None = None,
               label_column: str | None = None) -> ModelAdapter:
    """Load a model once per process and wrap it in its modality's adapter.

    Args:
        spec: ``"text"``, ``"image"`` or ``"tabular"`` for the default models; otherwise a
            Hugging Face id or local directory (text), a timm model name (image), or a
            TorchScript file (tabular).
        modality: needed when ``spec`` alone does not say it.
        checkpoint: image only: a local ``.safetensors`` or state-dict file for the timm model.
        data: tabular only: a CSV with a header row of feature names.
        labels: class names, when the model does not carry them.
        label_column: tabular only: a CSV column to drop (the ground truth).

    Returns:
        A :class:`ModelAdapter` ready for :func:`explain`.
    """
    from cache.models import load
    return load(spec, modality, checkpoint=checkpoint, data=data, labels=labels, label_column=label_column)


def encode(model: ModelAdapter, inputs: Any, unit: str | None = None) -> Encoded:
    """``model.encode(inputs)``; ``unit`` (``"word"`` or ``"piece"``) is for text only.

    Raises:
        ExplainerError: for a unit given to an image or tabular model, or an unknown unit.
    """
    if unit is None:
        return model.encode(inputs)
    if model.modality != "text":
        raise ExplainerError(f"'unit' applies to text only, not to {model.modality} input")
    return model.encode(inputs, unit=unit)


def explain(model: ModelAdapter, inputs: Any, methods: Sequence[str] | None = None,
            params: dict[str, dict] | None = None, target: Any = None, use_cache: bool = True,
            metrics: Sequence[str] | None = None, metric_params: dict | None = None,
            progress: Progress | None = None, max_cost: int | None = None,
            store: Any = None, unit: str | None = None) -> Explanation:
    """Explain one prediction with several methods side by side.

    Args:
        model: from :func:`load_model`.
        inputs: a string (text); a path, bytes, PIL image or array (image); a row index or a
            mapping of feature name to value (tabular). An :class:`Encoded` is used as is.
        methods: registered method names; default IG, GradientSHAP and Occlusion.
        params: ``{method: {param: value}}``; missing values take the declared defaults.
        target: class index or label to explain; None means the predicted class.
        use_cache: read and write the SQLite attribution store.
        metrics: names from :data:`explainers.metrics.METRICS` to add to the result.
        metric_params: options for the metrics (see :func:`explainers.metrics.compute`).
        progress: ``progress(method, fraction)`` after each model batch.
        max_cost: refuse any method needing more forward passes than this.
        store: an explicit store (default: the process-wide one in the cache directory).
        unit: text only: ``"word"`` (default; word pieces merged, scores summed over a
            word's pieces) or ``"piece"`` (one feature per word piece).

    Returns:
        An :class:`Explanation`; ``to_dict()`` gives the CLI's JSON schema.
    """
    methods = list(methods or DEFAULT_METHODS)
    if len(set(methods)) != len(methods):
        raise ExplainerError(f"a method is listed twice: {methods}")
    params = dict(params or {})
    stray = sorted(set(params) - set(methods))
    if stray:
        raise ExplainerError(f"parameters given for method(s) not selected: {stray}")
    if metrics:
        from .metrics import check_names
        check_names(list(metrics))  # fail before the expensive part, not after it
    enc = inputs if isinstance(inputs, Encoded) else encode(model, inputs, unit)
    prediction = model.predict(enc)
    target_index = prediction.index if target is None else resolve_target(model, enc, target)
    if use_cache and store is None:
        from cache.store import default_store
        store = default_store()
    attributions = {
        name: run_method(model, enc, name, params.get(name), target_index,
                         store if use_cache else None, progress, max_cost)
        for name in methods
    }
    result = Explanation(
        model=model.name, modality=model.modality, features=model.features(enc),
        prediction=prediction, target={"index": target_index, "label": model.label(target_index)},
        attributions=attributions, warnings=list(model.warnings) + list(enc.warnings))
    if metrics:
        from .metrics import compute
        result.metrics = compute(model, enc, result, list(metrics), metric_params or {},
                                 params=params, store=store if use_cache else None,
                                 progress=progress)
    return result
