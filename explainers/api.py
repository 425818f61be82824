"""The public Python API: ``load_model`` and ``explain``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from cache.store import default_store

from . import precision as precision_policy
from .adapters.base import Encoded, ModelAdapter
from .adapters.tabular import check_column_names, csv_header
from .engine import Progress, check_method, record_metric_run, resolve_target, run_method
from .errors import ExplainerError
from .metrics import check_names, compute, metric_costs
from .metrics.common import resolve_options
from .results import Attribution, Explanation

DEFAULT_METHODS = ("integrated_gradients", "gradient_shap", "occlusion")
#: the longest text accepted, in characters: far beyond any model's window (512 tokens are a
#: few thousand characters), and bounded so that a runaway input (a 50 MB one-line file)
#: fails in a millisecond instead of taking gigabytes to tokenize
MAX_TEXT_CHARS = 100_000


def load_model(spec: str = "text", modality: str | None = None, *, checkpoint: str | None = None,
               data: str | None = None, labels: Sequence[str] | None = None,
               label_column: str | None = None, output: str | None = None) -> ModelAdapter:
    """Load a model once per process and wrap it in its modality's adapter.

    Args:
        spec: ``"text"``, ``"image"``, ``"tabular"`` (breast cancer) or ``"generation"``
            (SmolLM2-135M-Instruct) for the default models, or ``"diabetes"`` (a regression
            default for tables); otherwise a Hugging Face id or local directory (text), a
            timm model name (image), a ``torch.export`` program (``.pt2``) or TorchScript
            file (tabular), or a local causal-LM folder or ``.gguf`` file (generation).
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
    if not isinstance(spec, (str, os.PathLike)) or not str(spec).strip():
        raise ExplainerError(f"load_model needs a model: 'text', 'image', 'tabular', 'diabetes', a Hugging "
                             f"Face id or directory, a timm name or a model file; got {spec!r:.80}")
    if data is not None and Path(data).is_file():
        check_column_names(csv_header(data), Path(data).name)
    # lazy: cache.models imports the adapters, and cache.loaders (which it imports) needs
    # explainers.errors; at the top, ``import cache.loaders`` would re-enter it half-loaded
    from cache.models import load
    spec = os.fspath(spec)
    return load(spec, modality, checkpoint=checkpoint, data=data, labels=labels, label_column=label_column,
                output=output)


def check_methods(methods: Sequence[str] | None) -> list[str]:
    """The method names as a list (None: IG, GradientSHAP, Occlusion), each once; a string
    is one name; an empty list is refused (it would mean "no attribution at all")."""
    if methods is None:
        return list(DEFAULT_METHODS)
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, Mapping) or not hasattr(methods, "__iter__"):
        raise ExplainerError(f"methods must be a list of names, got {type(methods).__name__}")
    methods = list(methods)
    if not methods:
        raise ExplainerError("no method given: name at least one (python -m explainers methods lists "
                             "them), or pass None for the defaults")
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


def check_metric_names(metrics: Any) -> list[str]:
    """The metric names as a list (None: none); a string is one name, as for methods."""
    if metrics is None:
        return []
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(metrics, Mapping) or not hasattr(metrics, "__iter__"):
        raise ExplainerError(f"metrics must be a list of names, got {type(metrics).__name__}")
    metrics = list(metrics)
    return check_names(metrics) if metrics else []


def check_text(text: str) -> str:
    """``text`` if it is valid Unicode that UTF-8 can hold (no lone surrogates, which is
    what undecodable bytes on a command line turn into) and at most :data:`MAX_TEXT_CHARS`
    characters long."""
    if len(text) > MAX_TEXT_CHARS:
        raise ExplainerError(f"the text has {len(text):,} characters, over the limit of {MAX_TEXT_CHARS:,} "
                             "(the model reads only its first few thousand); cut it")
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


def encode(model: ModelAdapter, inputs: Any, unit: str | None = None, **options: Any) -> Encoded:
    """``model.encode(inputs)``; ``unit`` (text: ``"word"`` or ``"piece"``; generation:
    ``"token"``, ``"word"``, ``"sentence"``, ``"field"``) and the other ``options`` (generation:
    ``target`` and ``contrast`` texts) go to adapters that declare them in ``encode_options``.

    Raises:
        ExplainerError: for an option the model does not take, or an unknown unit.
    """
    accepted = tuple(getattr(model, "encode_options", ()) or (("unit",) if model.modality == "text" else ()))
    given = {k: v for k, v in {"unit": unit, **options}.items() if v is not None}
    for name in given:
        if name not in accepted:
            where = "text and generation" if name == "unit" else "generation"
            raise ExplainerError(f"'{name}' applies to {where} only, not to {model.modality} input")
    return model.encode(inputs, **given)


def target_in_input(model: ModelAdapter) -> bool:
    """True when the model's target is part of its input (generation: the continuation whose
    log-probability is explained), so ``explain``'s ``target`` goes to :func:`encode`."""
    return "target" in tuple(getattr(model, "encode_options", ()))


def explain(model: ModelAdapter, inputs: Any, methods: Sequence[str] | None = None,
            params: dict[str, dict] | None = None, target: Any = None, use_cache: bool = True,
            metrics: Sequence[str] | None = None, metric_params: dict | None = None,
            progress: Progress | None = None, max_cost: int | None = None,
            store: Any = None, unit: str | None = None, contrast: Any = None,
            precision: str | None = None) -> Explanation:
    """Explain one prediction with several methods side by side.

    Args:
        model: from :func:`load_model`.
        inputs: a string (text); a path, bytes, PIL image or array (image); a row index or a
            mapping of feature name to value (tabular). An :class:`Encoded` is used as is.
        methods: registered method names (a string is one name); None: IG, GradientSHAP
            and Occlusion.
        params: ``{method: {param: value}}``; missing values take the declared defaults.
        target: class index or label to explain; None means the predicted class.
            Generation: the continuation whose log-probability is explained, as text (None:
            the model's greedy continuation).
        use_cache: read and write the SQLite attribution store.
        metrics: names from :data:`explainers.metrics.METRICS` to add to the result (a
            string is one name).
        metric_params: options for the metrics (see :func:`explainers.metrics.compute`).
        progress: ``progress(method, fraction)`` after each model batch.
        max_cost: refuse any method needing more forward passes than this.
        store: an explicit store (default: the process-wide one in the cache directory).
        unit: text: ``"word"`` (default; word pieces merged, scores summed over a
            word's pieces) or ``"piece"`` (one feature per word piece); generation:
            ``"token"``, ``"word"`` (default), ``"sentence"`` or ``"field"`` (templates).
        contrast: generation only: a second continuation B; the explained value is then
            ``log p(target) - log p(contrast)`` ("why the target rather than B").
        precision: ``"fp32"`` (default), ``"bf16-forward"`` or ``"auto"``
            (:mod:`explainers.precision`): forward-only passes (perturbation methods, the
            metrics' re-predictions) in bf16 where the device has bf16 units; gradient
            methods, the prediction and every reported number stay float32.

    Returns:
        An :class:`Explanation`; ``to_dict()`` gives the CLI's JSON schema (generation adds
        each method's per-token ``matrix`` and the ``output`` block).
    """
    policy = precision_policy.check(precision) if precision is not None else None
    methods = check_methods(methods)
    params = check_params(params, methods)
    metrics = check_metric_names(metrics)  # fail before the expensive part, not after it
    if isinstance(inputs, str) and model.modality in ("text", "generation"):
        check_text(inputs)
    options = {}
    if target_in_input(model):  # the target is part of the input: encoded with it
        options, target = {"target": target}, None
    if contrast is not None:
        options["contrast"] = contrast
    enc = inputs if isinstance(inputs, Encoded) else encode(model, inputs, unit, **options)
    searched = enc.extra.get("baseline_seconds", 0.0)  # an Encoded may come with earlier searches
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
            baseline_seconds=enc.extra.get("baseline_seconds", 0.0) - searched,
            output=model.output_info(enc) if hasattr(model, "output_info") else {},
            input=enc.raw, labels=list(model.labels), precision=ran_as)
        if metrics:
            start = time.perf_counter()
            result.metrics = compute(model, enc, result, list(metrics), metric_params or {},
                                     params=params, store=store if use_cache else None,
                                     progress=progress)
            rows = sum(metric_costs(model, enc, list(metrics), {m: a.params for m, a in attributions.items()},
                                    metric_params).values())
            record_metric_run(model, enc, rows, time.perf_counter() - start)  # refreshes the estimates
    return result
