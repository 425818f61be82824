"""The model adapter: everything the methods need to know about a model and a modality.

A method never sees text, images or tables. It sees an :class:`Encoded` input (the tensor
attributions are taken against, with a batch dimension of 1), a forward function that maps a
batch of such tensors to logits, a set of baselines, and a ``groups`` map that says which
interpretable feature (token, image patch, table column) each element belongs to. Adding a
modality is one adapter plus one renderer.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import ExplainerError
from ..results import Prediction


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


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def freeze(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Eval mode, no parameter gradients, on ``device``: the state every cached model keeps."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module.to(device)


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

    def __init__(self, name: str, module: torch.nn.Module, labels: Sequence[str],
                 device: torch.device | None = None) -> None:
        self.name = name
        self.device = device or default_device()
        self.module = freeze(module, self.device)
        self.labels = list(labels)
        self.lock = threading.RLock()
        self.warnings: list[str] = []
        self._fingerprint: str | None = None
        if self.device.type == "cuda":
            self.grad_batch_size *= 4
            self.eval_batch_size *= 4

    # -- identity -------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """Hash of the weights; part of every cache key."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint_module(self.module)
        return self._fingerprint

    def config(self) -> dict:
        """Settings outside the weights that change results (normalisation, reference data)."""
        return {}

    @property
    def result_key(self) -> str:
        """Everything about the model that a cached result depends on: weights, adapter
        settings, device and precision (CUDA runs under bf16 autocast)."""
        precision = "bf16-autocast" if self.device.type == "cuda" else "fp32"
        return f"{self.fingerprint}|{self.device.type}|{precision}|{sorted(self.config().items())}"

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else str(index)

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
        """Float32 logits; bf16 autocast on CUDA (Captum has no AMP flag of its own)."""
        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self._logits(inputs, enc).float()
        return self._logits(inputs, enc).float()

    def forward_fn(self, enc: Encoded, on_batch: Callable[[int], None] | None = None
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
        """A one-argument forward for Captum that also reports batch sizes for progress."""
        def fn(x: torch.Tensor) -> torch.Tensor:
            if on_batch is not None:
                on_batch(int(x.shape[0]))
            return self.forward(x, enc)
        return fn

    @torch.inference_mode()
    def predict_batch(self, inputs: torch.Tensor, enc: Encoded) -> torch.Tensor:
        """Softmax probabilities ``[B, C]`` for a batch, evaluated in chunks."""
        out = []
        for chunk in torch.split(inputs, self.eval_batch_size):
            out.append(torch.softmax(self.forward(chunk, enc), dim=-1))
        return torch.cat(out)

    def predict(self, enc: Encoded) -> Prediction:
        with self.lock:
            probs = self.predict_batch(enc.inputs, enc)[0].cpu().numpy().astype(float)
        idx = int(probs.argmax())
        return Prediction(idx, self.label(idx), probs.tolist())

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
