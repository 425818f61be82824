"""The model adapter: everything the methods need to know about a model and a modality.

A method never sees text, images or tables. It sees an :class:`Encoded` input (the tensor
attributions are taken against, with a batch dimension of 1), a forward function that maps a
batch of such tensors to logits, a set of baselines, and a ``groups`` map that says which
interpretable feature (token, image patch, table column) each element belongs to.

Adding a modality is one adapter here (subclass :class:`ModelAdapter`) plus one dashboard
view in ``dashboard/views/`` (subclass ``ModalityView``), sample inputs and tests; the
README's "Adding a modality" has the checklist. Methods declared for any modality and the
Compare metrics need nothing else.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import hashlib
import inspect
import json
import marshal
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import ExplainerError
from ..precision import autocast_for
from ..results import OUTPUT_KINDS, Prediction
from ..rng import paused


@dataclass
class Encoded:
    """One input, encoded for attribution.

    Attributes:
        inputs: the tensor attributions are taken against, shape ``[1, ...]``, on the
            model's device (token embeddings, pixels in [0, 1], or standardized features).
        feature_labels: a display label per interpretable feature.
        groups: long tensor of shape ``inputs.shape[1:]`` giving the feature index of each
            element, or -1 for elements never perturbed (for example [CLS] and [SEP]).
        raw: the input as the user gave it, normalised (text, RGB array, feature values).
        context: modality extras the forward pass needs (attention mask, token ids).
        warnings: notes for the user (truncation, resizing).
        key: content hash of the encoded input, its feature groups and (text) its unit,
            used in cache keys: word and piece encodings of one text never share results.
        extra: adapter-private details that are not model inputs (text: ``unit``, pieces,
            words and their character spans).
    """

    inputs: torch.Tensor
    feature_labels: list[str]
    groups: torch.Tensor
    raw: Any
    context: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    key: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return len(self.feature_labels)

    def __post_init__(self) -> None:
        if not self.key:
            h = hashlib.sha256()
            h.update(self.inputs.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            for k in sorted(self.context):
                v = self.context[k]
                if isinstance(v, torch.Tensor):
                    h.update(k.encode() + v.detach().cpu().contiguous().numpy().tobytes())
            h.update(b"groups" + self.groups.detach().cpu().contiguous().numpy().tobytes())
            if self.extra.get("unit"):
                h.update(b"unit=" + str(self.extra["unit"]).encode())
            self.key = h.hexdigest()


def fingerprint_module(module: torch.nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers (names, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()


_SKIP_ATTRS = {"training", "name_or_path", "_name_or_path"}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def config_digest(config: Any) -> str | None:
    """SHA-256 of a model configuration (a Hugging Face ``PretrainedConfig`` or a dict),
    leaving out where it was loaded from; None when there is no configuration."""
    if config is None:
        return None
    as_dict = config.to_dict() if hasattr(config, "to_dict") else config
    if not isinstance(as_dict, dict):
        return _digest(repr(as_dict))
    return _digest({k: v for k, v in as_dict.items() if k not in _SKIP_ATTRS})


def _class_source(cls: type) -> str:
    """The source of a class (its code), or its methods' bytecode when there is no source."""
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):
        funcs = sorted((k, v) for k, v in vars(cls).items() if inspect.isfunction(v))
        return repr([(k, marshal.dumps(v.__code__)) for k, v in funcs])


def _script_code(module: torch.nn.Module) -> str | None:
    """The TorchScript code of a scripted module (None for eager modules)."""
    if not isinstance(module, torch.jit.ScriptModule):
        return None
    try:
        return module.code
    except RuntimeError:  # a scripted submodule without a forward
        return ""


def describe_module(module: torch.nn.Module) -> dict:
    """What a module computes beyond its weights, as digests: for every submodule its class,
    the source of that class (or its TorchScript code), its scalar settings (activation
    names, head counts, epsilons) and its configuration (Hugging Face ``config``, timm
    ``pretrained_cfg``).

    Two models with equal weights but a different ``hidden_act``, ``num_attention_heads``,
    forward code, or no weights at all, get different descriptions.
    """
    sources: dict[str, str] = {}
    parts = []
    for name, sub in module.named_modules():
        cls = type(sub)
        qual = getattr(sub, "original_name", None) or f"{cls.__module__}.{cls.__qualname__}"
        script = _script_code(sub)
        if script is None and qual not in sources:
            sources[qual] = hashlib.sha256(_class_source(cls).encode()).hexdigest()
        settings = {k: v for k, v in vars(sub).items()
                    if k not in _SKIP_ATTRS and not k.startswith("_")
                    and isinstance(v, (bool, int, float, str, tuple, type(None)))}
        parts.append({"name": name, "class": qual, "settings": settings,
                      "script": None if script is None else hashlib.sha256(script.encode()).hexdigest(),
                      "config": config_digest(getattr(sub, "config", None)),
                      "pretrained_cfg": config_digest(getattr(sub, "pretrained_cfg", None))})
    return {"class": parts[0]["class"], "modules": _digest(parts), "sources": _digest(sources)}


LOAD_TIMEOUT_ENV = "ATTRIBUTION_STUDIO_LOAD_TIMEOUT"
DEFAULT_LOAD_TIMEOUT = 30.0


def load_timeout() -> float:
    """Seconds a user model may take for its test forward at load time:
    ``$ATTRIBUTION_STUDIO_LOAD_TIMEOUT`` (default 30)."""
    raw = os.environ.get(LOAD_TIMEOUT_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_LOAD_TIMEOUT
    except ValueError:
        raise ExplainerError(f"{LOAD_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise ExplainerError(f"{LOAD_TIMEOUT_ENV} must be above 0, got {raw!r}")
    return value


def call_with_timeout(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """``fn()`` run in a daemon worker thread, or an ExplainerError after ``timeout`` seconds.

    Python cannot stop a thread: a model that never returns keeps its worker busy until it
    does, but the caller is released and the model is never used.
    """
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except Exception as e:  # handed to the caller below
            box["error"] = e

    worker = threading.Thread(target=work, name=f"probe: {what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ExplainerError(f"{what} did not finish within {timeout:g} s; the model is refused "
                             f"(raise {LOAD_TIMEOUT_ENV} if it is just slow)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def probe_logits(module: torch.nn.Module, inputs: torch.Tensor, n_classes: int | None = None,
                 timeout: float | None = None, source: str = "the reference data's") -> torch.Tensor:
    """Run a user model once on ``inputs`` (a few reference rows) and check what it returns.

    Args:
        module: the model, called as ``module(inputs)``.
        inputs: a batch ``[B, ...]``.
        n_classes: the number of classes expected, if known.
        timeout: seconds allowed (default :func:`load_timeout`).
        source: how error messages name the inputs ("the CSV's").

    Returns:
        The logits ``[B, C]``.

    Raises:
        ExplainerError: the forward fails, runs over time, or does not return finite logits
            of shape ``[B, C]`` (a tuple, a scalar, NaN).
    """
    def forward() -> Any:
        with torch.no_grad():  # grad mode is per thread
            return module(inputs)

    what = f"the model's test forward on {inputs.shape[0]} reference row(s)"
    try:
        out = call_with_timeout(forward, load_timeout() if timeout is None else timeout, what)
    except ExplainerError:
        raise
    except Exception as e:  # TorchScript raises RuntimeError for shape mismatches
        raise ExplainerError(f"the model does not accept {source} {inputs.shape[-1]} columns: "
                             f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}") from None
    out = getattr(out, "logits", out)
    if not isinstance(out, torch.Tensor):
        raise ExplainerError(f"the model must return a tensor of logits [batch, classes], "
                             f"got {type(out).__name__}")
    expected = f"[{inputs.shape[0]}, {n_classes if n_classes else 'classes'}]"
    if out.ndim != 2 or out.shape[0] != inputs.shape[0] or (n_classes and out.shape[1] != n_classes):
        raise ExplainerError(f"the model returns shape {list(out.shape)} on {inputs.shape[0]} rows; "
                             f"expected {expected}")
    if not bool(torch.isfinite(out).all()):
        raise ExplainerError(f"the model returns NaN or infinite logits on the reference rows "
                             f"(rows 0-{inputs.shape[0] - 1}); it cannot be explained")
    return out


def resolve_output_kind(requested: str | None, n_outputs: int, labels_given: bool = False) -> str:
    """The output kind of a model with ``n_outputs`` outputs.

    An explicit ``requested`` kind wins (checked against the outputs). Otherwise: one output
    with no class names is a ``score`` (regression, ranking); one output with a name is a
    binary ``sigmoid`` head; several outputs are a ``softmax`` classifier.

    Raises:
        ExplainerError: for an unknown kind, or ``softmax`` over a single output (always 1).
    """
    if requested is None or requested == "auto":
        if n_outputs == 1:
            return "sigmoid" if labels_given else "score"
        return "softmax"
    if requested not in OUTPUT_KINDS:
        raise ExplainerError(f"unknown output kind {requested!r}; choose from {list(OUTPUT_KINDS)}")
    if requested == "softmax" and n_outputs == 1:
        raise ExplainerError("a softmax over one output is always 1: use output='sigmoid' for a "
                             "binary single-logit head or output='score' for a raw value")
    return requested


def activate(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The model's outputs in its kind's space: softmax or sigmoid probabilities, or the raw
    scores themselves."""
    if kind == "softmax":
        return torch.softmax(logits, dim=-1)
    if kind == "sigmoid":
        return torch.sigmoid(logits)
    return logits


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def freeze(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Eval mode, no parameter gradients, on ``device``: the state every cached model keeps."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module.to(device)


class FairLock:
    """A re-entrant lock that hands itself over in arrival order (FIFO).

    ``threading.RLock`` lets the thread that releases it take it straight back, so a long
    run that locks once per batch could starve everyone else. Here a thread that asks while
    others wait joins the end of the queue, so each waiter gets the model after at most one
    batch of every session ahead of it.

    A thread that must wait pauses its seeded sections meanwhile (:func:`explainers.rng.paused`):
    the metrics take this lock and then the RNG lock, so a thread never waits here while
    holding the RNG lock, and the two cannot deadlock.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: collections.deque = collections.deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock (again, if this thread holds it); False on timeout or when busy and
        not ``blocking``."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._queue:
                self._owner, self._depth = me, 1
                return True
            if not blocking:
                return False
        with paused(), self._cond:
            return self._wait_turn(me, None if timeout is None or timeout < 0 else timeout)

    def _wait_turn(self, me: int, timeout: float | None) -> bool:
        ticket = object()
        self._queue.append(ticket)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._owner is not None or self._queue[0] is not ticket:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                self._queue.remove(ticket)
                self._cond.notify_all()
                return False
            self._cond.wait(remaining)
        self._queue.popleft()
        self._owner, self._depth = me, 1
        return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a FairLock held by another thread")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def waiting(self) -> int:
        """How many threads are queued for the lock."""
        with self._cond:
            return len(self._queue)

    def __enter__(self) -> "FairLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()



def sum_over_groups(attr: torch.Tensor, enc: Encoded) -> np.ndarray:
    """Per-feature scores of a token sequence: each position's attribution summed over the
    embedding, then over the feature's positions (``enc.groups[:, 0]``; -1: no feature, such
    as special tokens)."""
    per_pos = attr[0].sum(dim=-1).detach().float()
    group = enc.groups[:, 0].to(per_pos.device)
    valid = group >= 0
    out = torch.zeros(enc.n_features, dtype=per_pos.dtype, device=per_pos.device)
    out.index_add_(0, group[valid], per_pos[valid])
    return out.cpu().numpy()

#: text batches hold at most the default batch size x this many tokens per example, so one
#: batch of a 512-token input takes about as long as one of a typical sentence (see
#: :meth:`ModelAdapter.for_run`)
REFERENCE_WORK = {"text": 128}
#: one locked model call holds at most the default forward batch size x this many tokens of
#: text (rows x tokens: 4 rows of a 512-token input): a run's batches are cut into such calls
#: and the lock handed over between them (:meth:`ModelAdapter.locked_each_batch`), so another
#: session waits about one short call at each of its own batches. Cutting the calls, not
#: the batches, keeps Captum's batches (and a long run's speed); 128 let a short request
#: wait 9 x (32 rows x 512 tokens): 7-18x its time alone, where the goal is 5x (BENCHMARKS.md)
LOCKED_WORK = {"text": 16}


class ModelAdapter:
    """Base class for the per-modality adapters.

    Subclasses set ``modality``, ``name``, ``labels`` and ``module`` and implement
    :meth:`encode`, :meth:`_logits` and :meth:`baseline`; they may override the batch
    sizes and the occlusion window mapping.
    """

    modality: str = ""
    baseline_kinds: Sequence[str] = ()
    default_baselines: Sequence[str] = ()
    #: examples per forward+backward batch (IG steps, GradientSHAP samples)
    grad_batch_size: int = 64
    #: examples per no-grad forward batch (occlusion, metrics)
    eval_batch_size: int = 128
    #: occlusion window parameters, in the modality's unit
    occlusion_window_default: int = 1
    occlusion_stride_default: int = 1
    occlusion_window_max: int = 64
    #: what one interpretable feature is called (token, patch, feature)
    feature_unit: str = "feature"
    #: GradientSHAP's default baseline distribution (empty: ``default_baselines``)
    distribution_baselines: Sequence[str] = ()
    #: metric perturbations that edit the raw input instead of filling in a baseline
    edit_perturbations: Sequence[str] = ()
    #: rows per locked model call (None: a whole batch); set per run by :meth:`for_run`
    locked_rows: int | None = None
    #: what the outputs mean (:data:`~explainers.results.OUTPUT_KINDS`); set by the loader
    #: or :meth:`set_output_kind`. Attributions always explain the raw output (the logit).
    output_kind: str = "softmax"

    def __init__(self, name: str, module: torch.nn.Module, labels: Sequence[str],
                 device: torch.device | None = None) -> None:
        self.name = name
        self.device = device or default_device()
        self.module = freeze(module, self.device)
        self.labels = list(labels)
        self.lock = FairLock()
        self.warnings: list[str] = []
        self._fingerprint: str | None = None
        if self.device.type == "cuda":
            self.grad_batch_size *= 4
            self.eval_batch_size *= 4

    # -- identity -------------------------------------------------------------------------
    #: how the model was loaded, set by the loader: ``{"loader": ..., "spec": ...}`` plus,
    #: for a model file, ``{"archive": sha256 of the file}`` (see :mod:`cache.models`)
    source: dict | None = None

    @property
    def fingerprint(self) -> str:
        """Hash of the weights; part of every cache key."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_module(self.module)
        return self._fingerprint

    @property
    def code_fingerprint(self) -> str:
        """Hash of what the model computes beyond its weights (:func:`describe_module`)."""
        if getattr(self, "_code_fingerprint", None) is None:
            self._code_fingerprint = _digest(describe_module(self.module))
        return self._code_fingerprint

    def config(self) -> dict:
        """Settings outside the weights that change results (normalisation, reference data)."""
        return {}

    @property
    def result_key(self) -> str:
        """Everything about the model that a cached result depends on: how it was loaded
        (loader, spec, archive hash), its class, configuration and code, its weights, the
        adapter and its settings, and the device (the precision a result ran under is part
        of its own store key: :func:`explainers.engine.row_meta`)."""
        return _digest({"source": self.source or {}, "code": self.code_fingerprint,
                        "weights": self.fingerprint, "adapter": type(self).__qualname__,
                        "config": self.config(), "device": self.device.type})

    def score_shape(self, enc: Encoded) -> tuple[int, ...]:
        """Shape of the display scores :meth:`reduce` gives for ``enc`` (one per feature)."""
        return (enc.n_features,)

    def work_per_pass(self, enc: Encoded) -> int:
        """Work of one example through the model, in the modality's unit: tokens for text
        (special ones included), features for tables, pixels for images."""
        return int(enc.inputs.shape[1])

    def grad_work_per_pass(self, enc: Encoded) -> int:
        """Work of one gradient row (a forward and its backward), in :meth:`work_per_pass`'s
        unit: the same as a forward-only row, whose rate is measured apart (adapters whose
        gradient rows run more passes, generation's, say how many)."""
        return self.work_per_pass(enc)

    def for_run(self, enc: Encoded) -> "ModelAdapter":
        """A shallow copy for one run on ``enc``: same model, lock and settings, its own batch
        sizes. Above :data:`REFERENCE_WORK` per example the sizes shrink in proportion, so
        batches stay short (a fair share of the model) whatever the input's length; an
        out-of-memory retry halves the copy's sizes, never the shared adapter's."""
        run = copy.copy(self)
        reference = REFERENCE_WORK.get(self.modality)
        work = self.work_per_pass(enc)
        if reference and work > reference:
            run.grad_batch_size = max(1, self.grad_batch_size * reference // work)
            run.eval_batch_size = max(1, self.eval_batch_size * reference // work)
        locked = LOCKED_WORK.get(self.modality)
        if locked:
            run.locked_rows = max(1, self.eval_batch_size * locked // max(1, work))
        return run

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else str(index)

    # -- output kind ----------------------------------------------------------------------
    def set_output_kind(self, kind: str | None, labels_given: bool = True) -> "ModelAdapter":
        """Set :attr:`output_kind` (``None``/``"auto"``: inferred from the number of outputs,
        see :func:`resolve_output_kind`); returns the adapter."""
        self.output_kind = resolve_output_kind(kind, len(self.labels), labels_given)
        return self

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` to the kind's values: softmax / sigmoid probabilities or scores."""
        return activate(logits, self.output_kind)

    def make_prediction(self, outputs: Sequence[float]) -> Prediction:
        """A :class:`Prediction` from one input's activated outputs: the arg-max class
        (softmax), the most probable output (sigmoid), or the first output (score)."""
        values = [float(v) for v in outputs]
        idx = 0 if self.output_kind == "score" else int(np.argmax(values))
        return Prediction(idx, self.label(idx), values, self.output_kind)

    @property
    def single_output(self) -> bool:
        """True when the model has one output (no target to choose)."""
        return len(self.labels) == 1

    def reference_outputs(self) -> np.ndarray | None:
        """Activated outputs ``[N, C]`` on the adapter's reference data (tabular), or None
        when the adapter has no data (the strip then shows no range)."""
        return None

    # -- to implement -----------------------------------------------------------------------
    def encode(self, raw: Any) -> Encoded:
        raise NotImplementedError

    def _logits(self, inputs: torch.Tensor, enc: Encoded) -> torch.Tensor:
        """Logits ``[B, C]`` for a batch of encoded inputs ``[B, ...]``."""
        raise NotImplementedError

    def baseline(self, enc: Encoded, kind: str) -> torch.Tensor:
        """Baseline tensor(s) of shape ``[K, ...]`` (K >= 1) for ``enc``."""
        raise NotImplementedError

    def neutral_candidate_tensors(self, enc: Encoded) -> dict[str, torch.Tensor]:
        """``{name: [1, ...] tensor}``: what the ``neutral`` baseline is searched among
        (with pairwise mixes); empty when the modality has no neutral baseline."""
        return {}

    def describe_baseline(self, kind: str) -> str:
        """One line saying what a baseline kind is."""
        return kind

    def baseline_rows(self, kind: str) -> int:
        """How many rows :meth:`baseline` returns for ``kind`` (without building them)."""
        return 1

    def sliding_window(self, enc: Encoded, window: int, stride: int) -> tuple[tuple, tuple]:
        """Captum Occlusion ``sliding_window_shapes`` and ``strides`` for a window size."""
        raise NotImplementedError

    def reduce(self, attr: torch.Tensor, enc: Encoded) -> np.ndarray:
        """Collapse an attribution shaped like ``enc.inputs`` to display scores, summing each
        element's share over the embedding dimension or the colour channels."""
        raise NotImplementedError

    def features(self, enc: Encoded) -> Any:
        """What the JSON ``features`` field holds: labels, or image height and width."""
        return list(enc.feature_labels)

    # -- shared machinery -----------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, enc: Encoded) -> torch.Tensor:
        """Float32 logits; a pass without gradients runs under bf16 autocast when the
        request's precision policy says so (:mod:`explainers.precision`; Captum has no AMP
        flag of its own)."""
        with autocast_for(inputs):
            return self._logits(inputs, enc).float()

    def forward_fn(self, enc: Encoded, on_batch: Callable[[int], None] | None = None
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
        """A one-argument forward for Captum that also reports batch sizes for progress."""
        def fn(x: torch.Tensor) -> torch.Tensor:
            if on_batch is not None:
                on_batch(int(x.shape[0]))
            return self.forward(x, enc)
        return fn

    def locked_each_batch(self, forward: Callable[[torch.Tensor], torch.Tensor]
                          ) -> Callable[[torch.Tensor], torch.Tensor]:
        """``forward`` holding :meth:`guarded` for each call (one batch, cut into calls of at
        most :attr:`locked_rows` rows, the same cut whoever waits) only, so sessions sharing
        the model take turns call by call (the lock is FIFO). A seeded run lets go of the RNG
        lock for each call too (:func:`explainers.rng.paused`), so another session's seeded
        method waits about one call for it, not its whole run."""
        rows = self.locked_rows

        def call(x: torch.Tensor) -> torch.Tensor:
            with paused(), self.guarded():
                return forward(x)

        def fn(x: torch.Tensor) -> torch.Tensor:
            if rows is None or x.shape[0] <= rows:
                return call(x)
            return torch.cat([call(part) for part in torch.split(x, rows)])
        return fn

    # -- several inputs in one batch (explainers.pooling) ------------------------------------
    def stack_key(self, x: torch.Tensor) -> tuple:
        """Rows whose ``stack_key`` is equal can share a batch in :meth:`stack_inputs`
        (here: equal shape; text pads, so any length)."""
        return tuple(x.shape[1:])

    def stack_inputs(self, xs: Sequence[torch.Tensor], encs: Sequence[Encoded]) -> tuple[torch.Tensor, Any]:
        """One batch from ``xs[i]`` (``[B_i, ...]``, rows of input ``encs[i]``) and what
        :meth:`forward_stacked` needs besides it. Here the rows are concatenated (equal
        shapes); text pads them and masks the padding."""
        return torch.cat(list(xs)), encs[0]

    def forward_stacked(self, x: torch.Tensor, context: Any) -> torch.Tensor:
        """Float32 logits ``[B, C]`` of a :meth:`stack_inputs` batch."""
        return self.forward(x, context)

    @torch.inference_mode()
    def predict_batch(self, inputs: torch.Tensor, enc: Encoded) -> torch.Tensor:
        """Outputs ``[B, C]`` for a batch in the kind's space (:meth:`activate`: softmax or
        sigmoid probabilities, or raw scores), evaluated in chunks."""
        out = []
        for chunk in torch.split(inputs, self.eval_batch_size):
            out.append(self.activate(self.forward(chunk, enc)))
        return torch.cat(out)

    def predict(self, enc: Encoded) -> Prediction:
        with self.lock:
            outputs = self.predict_batch(enc.inputs, enc)[0].cpu().numpy().astype(float)
        return self.make_prediction(outputs.tolist())

    def baselines(self, enc: Encoded, kinds: Sequence[str]) -> torch.Tensor:
        """All baselines of the given kinds stacked into ``[K, ...]``."""
        if not kinds:
            raise ExplainerError(f"choose at least one baseline of {list(self.baseline_kinds)}")
        out = []
        for kind in kinds:
            if kind not in self.baseline_kinds:
                raise ExplainerError(
                    f"unknown baseline '{kind}' for {self.modality}; choose from {list(self.baseline_kinds)}")
            out.append(self.baseline(enc, kind).to(enc.inputs.dtype))
        return torch.cat(out)

    def feature_mask(self, enc: Encoded) -> torch.Tensor:
        """Captum ``feature_mask`` (``[1, ...]``): never-perturbed elements get their own id."""
        g = enc.groups.clone()
        g[g < 0] = enc.n_features
        return g.unsqueeze(0).expand_as(enc.inputs).to(enc.inputs.device)

    def group_scores(self, scores: np.ndarray, enc: Encoded) -> np.ndarray:
        """Per-feature scores (length ``n_features``) from display scores."""
        return np.asarray(scores, dtype=np.float64).reshape(-1)

    def perturb(self, enc: Encoded, keep: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
        """Inputs ``[B, ...]`` where feature ``j`` of row ``b`` is kept if ``keep[b, j]``.

        Removed features take the value of ``baseline`` (``[1, ...]``); elements whose group
        is -1 always stay as they are.
        """
        groups = enc.groups.to(keep.device)
        keep_full = torch.ones((keep.shape[0],) + tuple(groups.shape), dtype=torch.bool,
                               device=keep.device)
        valid = groups >= 0
        keep_full[:, valid] = keep[:, groups[valid]]
        view = keep_full.reshape((keep.shape[0],) + tuple(enc.inputs.shape[1:]))
        return torch.where(view.to(enc.inputs.device), enc.inputs, baseline.to(enc.inputs.device))

    @contextlib.contextmanager
    def guarded(self):
        """Hold the model lock; afterwards restore the train/eval mode and drop any grads."""
        with self.lock:
            was_training = self.module.training
            try:
                yield
            finally:
                self.module.train(was_training)
                self.module.zero_grad(set_to_none=True)
