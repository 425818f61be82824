"""The public Python API: ``load_model`` and ``explain``."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from cache.store import default_store

from . import precision as precision_policy
from .adapters.base import Encoded, ModelAdapter
from .engine import Progress, check_method, resolve_target, run_method
from .errors import ExplainerError
from .metrics import check_names, compute
from .metrics.common import resolve_options
from .results import Attribution, Explanation

DEFAULT_METHODS = ("integrated_gradients", "gradient_shap", "occlusion")


def load_model(spec: str = "text", modality: str | None = None, *, checkpoint: str | None = None,
               data: str | None = None, labels: Sequence[str] | None = None,
               label_column: str | None = None, output: str | None = None) -> ModelAdapter:
    """Load a model once per process and wrap it in its modality's adapter.

    Args:
        spec: ``"text"``, ``"image"`` or ``"tabular"`` (breast cancer) for the default
            models, or ``"diabetes"`` (a regression default for tables); otherwise a Hugging
            Face id or local directory (text), a timm model name (image), or a
            ``torch.export`` program (``.pt2``) or TorchScript file (tabular).
        modality: needed when ``spec`` alone does not say it.
        checkpoint: image only: a local ``.safetensors`` or state-dict file for the timm model.
        data: tabular only: a CSV with a header row of feature names.
        labels: class names, when the model does not carry them.
        label_column: tabular only: a CSV column to drop (the ground truth).
        output: what the outputs mean: ``"softmax"`` (classes), ``"sigmoid"`` (independent
            probabilities: binary single-logit or multi-label heads) or ``"score"`` (raw
            values: regression, ranking). None infers it: a one-output model without
            ``labels`` is a score, with one label a sigmoid; several outputs a softmax
            (a Hugging Face config's ``problem_type`` is honoured).

    Returns:
        A :class:`ModelAdapter` ready for :func:`explain`.
    """
    # lazy: cache.models imports the adapters, and cache.loaders (which it imports) needs
    # explainers.errors; at the top, ``import cache.loaders`` would re-enter it half-loaded
    from cache.models import load
    return load(spec, modality, checkpoint=checkpoint, data=data, labels=labels, label_column=label_column,
                output=output)


def check_methods(methods: Sequence[str] | None) -> list[str]:
    """The method names as a list (default IG, GradientSHAP, Occlusion), each once."""
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods or DEFAULT_METHODS)
    if not all(isinstance(m, str) for m in methods):
        raise ExplainerError(f"methods must be names, got {methods!r:.120}")
    if len(set(methods)) != len(methods):
        raise ExplainerError(f"a method is listed twice: {methods}")
    return methods


def check_params(params: Any, methods: Sequence[str]) -> dict[str, Mapping]:
    """``params`` as ``{method: {name: value}}`` for selected methods, or an ExplainerError."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ExplainerError(f"params must map method names to parameter mappings, "
                             f"got {type(params).__name__}")
    stray = sorted(str(k) for k in set(params) - set(methods))
    if stray:
        raise ExplainerError(f"parameters given for method(s) not selected: {stray}")
    for name, value in params.items():
        if value is not None and not isinstance(value, Mapping):
            raise ExplainerError(f"params[{name!r}] must be a mapping of parameter name to value, "
                                 f"got {type(value).__name__} {value!r:.80}")
    return dict(params)


def check_text(text: str) -> str:
    """``text`` if it is valid Unicode that UTF-8 can hold (no lone surrogates, which is
    what undecodable bytes on a command line turn into)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ExplainerError(f"the text is not valid UTF-8: character {e.start} is "
                             f"{text[e.start]!r} (a lone surrogate or undecodable byte)") from None
    return text


def check_metric_options(model: ModelAdapter, enc: Encoded, options: Any) -> dict:
    """The metric options resolved by the metrics' own check
    (:func:`explainers.metrics.common.resolve_options`), run before any attribution so that
    ``k=-1`` fails in milliseconds rather than after the methods."""
    if options is not None and not isinstance(options, Mapping):
        raise ExplainerError(f"metric options must be a mapping of name to value, "
                             f"got {type(options).__name__}")
    return resolve_options(options, model, enc)


def collect_warnings(model: ModelAdapter, enc: Encoded, attributions: Iterable[Attribution]) -> list[str]:
    """The model's, the input's and every attribution's warnings, each once, in order."""
    notes = list(model.warnings) + list(enc.warnings) + [w for a in attributions for w in a.warnings]
    return list(dict.fromkeys(notes))


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
            store: Any = None, unit: str | None = None, precision: str | None = None) -> Explanation:
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
        precision: ``"fp32"`` (default), ``"bf16-forward"`` or ``"auto"``
            (:mod:`explainers.precision`): forward-only passes (perturbation methods, the
            metrics' re-predictions) in bf16 where the device has bf16 units; gradient
            methods, the prediction and every reported number stay float32.

    Returns:
        An :class:`Explanation`; ``to_dict()`` gives the CLI's JSON schema.
    """
    policy = precision_policy.check(precision) if precision is not None else None
    methods = check_methods(methods)
    params = check_params(params, methods)
    if metrics:
        check_names(list(metrics))  # fail before the expensive part, not after it
    if isinstance(inputs, str) and model.modality == "text":
        check_text(inputs)
    enc = inputs if isinstance(inputs, Encoded) else encode(model, inputs, unit)
    for name in methods:  # every method's parameters, before the first one runs
        check_method(model, name, params.get(name))
    if metrics:
        check_metric_options(model, enc, metric_params)
    with precision_policy.fp32():  # the prediction a user reads is always float32
        prediction = model.predict(enc)
    target_index = prediction.index if target is None else resolve_target(model, enc, target)
    if use_cache and store is None:
        store = default_store()
    with precision_policy.use(policy, model.device) as ran_as:
        attributions = {
            name: run_method(model, enc, name, params.get(name), target_index,
                             store if use_cache else None, progress, max_cost)
            for name in methods
        }
        result = Explanation(
            model=model.name, modality=model.modality, features=model.features(enc),
            prediction=prediction, target={"index": target_index, "label": model.label(target_index)},
            attributions=attributions, warnings=collect_warnings(model, enc, attributions.values()),
            precision=ran_as)
        if metrics:
            result.metrics = compute(model, enc, result, list(metrics), metric_params or {},
                                     params=params, store=store if use_cache else None,
                                     progress=progress)
    return result
