"""A text model's own attention weights, taken without touching the shared model.

Hugging Face models run SDPA attention by default, which returns no weights
(``output_attentions=True`` gives an empty tuple). Switching the cached model to the eager
implementation would change what every other session computes, so the weights come from
a **private copy**: the module tree deep-copied with every parameter and buffer *shared*
(no weights are duplicated), set to ``attn_implementation="eager"``, built once per model
under a lock and cached while the model lives. Its logits equal the shared model's (same
weights; only the attention kernel differs), and the methods check that on every run.

The weights are read by forward hooks on the copy's attention modules (the ones the
model's class declares in ``_can_record_outputs["attentions"]``, the list transformers
itself records from). The hooks exist only inside :func:`capture`, which removes them in
``finally``; callers hold the model lock for the whole capture (the copy is shared by
every session on that model), which is what ``exclusive_model = True`` asks the engine for.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import threading
import weakref
from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import ExplainerError
from .base import Encoded

#: how a sequence classifier turns token states into one vector: the first token's state
#: ("cls": BERT, DistilBERT, RoBERTa, ELECTRA ...), the last real token's ("last": XLNet,
#: decoder-only models) or the mean over every attended position ("mean")
POOLINGS = ("cls", "last", "mean")
_DECODER_TYPES = {"gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "opt", "bloom",
                  "falcon", "qwen2", "phi", "gemma"}


@dataclass
class AttentionModel:
    """The eager copy of one model and where its attention weights come out.

    Attributes:
        module: the copy (shares every parameter and buffer with the shared model).
        layers: its attention modules in forward order, one per layer.
        index: position of the weights ``[B, heads, T, T]`` in each module's output tuple.
    """

    module: torch.nn.Module
    layers: list[torch.nn.Module]
    index: int


_COPIES: "weakref.WeakKeyDictionary[torch.nn.Module, AttentionModel]" = weakref.WeakKeyDictionary()
_BUILD_LOCK = threading.Lock()


def _transformer(module: torch.nn.Module):
    """The first Hugging Face ``PreTrainedModel`` in ``module``'s tree (itself, or a wrapped
    encoder such as the default model's ``encoder``), or None."""
    try:  # lazy: transformers (the text models' package) loads only when a text model does
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a requirement
        return None
    return next((m for m in module.modules() if isinstance(m, PreTrainedModel)), None)


def _attention_modules(model) -> tuple[list[torch.nn.Module], int]:
    """The attention modules ``model`` declares (``_can_record_outputs["attentions"]``, as
    transformers' own output capture reads it) and the output index of their weights."""
    spec = (getattr(type(model), "_can_record_outputs", None) or {}).get("attentions")
    specs = spec if isinstance(spec, list) else [spec] if spec is not None else []
    for s in specs:
        target = getattr(s, "target_class", None) if not isinstance(s, (type, str)) else None
        target = s if isinstance(s, type) else target
        suffix = s if isinstance(s, str) else getattr(s, "class_name", None)
        layer_name = getattr(s, "layer_name", None)
        index = int(getattr(s, "index", 1)) if not isinstance(s, (type, str)) else 1
        found = []
        for name, sub in model.named_modules():
            hit = (target is not None and isinstance(sub, target)) or (suffix and name.endswith(suffix))
            if hit and (layer_name is None or f".{layer_name.strip('.')}." in f".{name}."):
                found.append(sub)
        if found:
            return found, index
    return [], 1


def attention_model(module: torch.nn.Module) -> AttentionModel:
    """The cached eager-attention copy of ``module`` (built on first use, under a lock).

    Raises:
        ExplainerError: the model is not a Hugging Face transformer, declares no attention
            modules, or has no eager attention implementation.
    """
    with _BUILD_LOCK:
        cached = _COPIES.get(module)
        if cached is not None:
            return cached
        if _transformer(module) is None:
            raise ExplainerError("attention methods need a Hugging Face transformer; this model "
                                 "has no attention weights to read")
        # share every tensor: only the module objects (and their config) are copied
        memo = {id(t): t for t in list(module.parameters()) + list(module.buffers())}
        clone = copy.deepcopy(module, memo)
        inner = _transformer(clone)
        try:
            inner.set_attn_implementation("eager")
        except (ValueError, AttributeError) as e:
            raise ExplainerError(f"this model cannot run eager attention, so its attention "
                                 f"weights cannot be read: {str(e).splitlines()[0][:160]}") from None
        if getattr(inner.config, "_attn_implementation", None) != "eager":
            raise ExplainerError("this model did not switch to eager attention; its attention "
                                 "weights cannot be read")
        layers, index = _attention_modules(inner)
        if not layers:
            raise ExplainerError(f"{type(inner).__name__} declares no attention modules; its "
                                 "attention weights cannot be read")
        clone.eval()
        built = AttentionModel(clone, layers, index)
        _COPIES[module] = built
        return built


def n_layers_heads(module: torch.nn.Module) -> tuple[int, int] | None:
    """Layers and heads per layer from the model's configuration (no forward pass), or None."""
    inner = _transformer(module)
    cfg = getattr(inner, "config", None)
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layers", None)
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_heads", None)
    return (int(layers), int(heads)) if layers and heads else None


@contextlib.contextmanager
def capture(am: AttentionModel) -> Iterator[list[torch.Tensor]]:
    """Hooks on the copy's attention modules for the duration of the block; yields the list
    the weights of each forward are appended to (one ``[B, heads, T, T]`` per layer).
    Every hook is removed in ``finally``. Hold the model lock around it."""
    maps: list[torch.Tensor] = []

    def hook(_mod, _inputs, output) -> None:
        weights = output[am.index] if isinstance(output, (tuple, list)) else None
        if weights is None:
            raise ExplainerError("the attention module returned no weights")
        maps.append(weights)

    handles = []
    try:
        for layer in am.layers:
            handles.append(layer.register_forward_hook(hook))
        yield maps
    finally:
        for h in handles:
            h.remove()


def eager_adapter(adapter, am: AttentionModel):
    """A shallow copy of ``adapter`` whose module is the eager copy: its ``forward`` is the
    adapter's own (same masks, same autocast), through the copy."""
    view = copy.copy(adapter)
    view.module = am.module
    return view


def pooling(module: torch.nn.Module) -> str:
    """How ``module`` pools token states into the vector its classifier reads.

    A module may declare it (``pooling = "cls" | "last" | "mean"``). The default text model
    (``cache.text_model.SentimentClassifier``) averages every attended position, [CLS] and
    [SEP] included (``mean_pool``). Hugging Face models: ``config.summary_type`` where it
    exists (XLNet: last), the last real token for decoder-only families, else the first
    token ([CLS] / ``<s>``), as BERT's pooler and the RoBERTa, DistilBERT, ELECTRA and
    DeBERTa heads read it.
    """
    declared = getattr(module, "pooling", None)
    if declared in POOLINGS:
        return declared
    text_model = sys.modules.get("cache.text_model")  # imported if and only if it is in use
    if text_model is not None and isinstance(module, text_model.SentimentClassifier):
        return "mean"
    cfg = getattr(_transformer(module), "config", None)
    summary = getattr(cfg, "summary_type", None)
    if summary in ("last", "first", "mean"):
        return {"first": "cls"}.get(summary, summary)
    if getattr(cfg, "is_decoder", False) or getattr(cfg, "model_type", "") in _DECODER_TYPES:
        return "last"
    return "cls"


def pooled_positions(module: torch.nn.Module, enc: Encoded) -> torch.Tensor:
    """Token positions whose final states the classifier pools (see :func:`pooling`)."""
    mask = enc.context["attention_mask"][0].bool()
    attended = mask.nonzero().flatten()
    kind = pooling(module)
    if kind == "mean":
        return attended
    if kind == "last":
        return attended[-1:]
    return attended[:1]


def describe_pooling(module: torch.nn.Module) -> str:
    """The pooled query rows in words, for notes and the dashboard."""
    return {"cls": "the first token's row ([CLS]), the state this classifier reads",
            "last": "the last token's row, the state this classifier reads",
            "mean": "the mean of every token's row ([CLS] and [SEP] included), as this "
                    "classifier averages every token's state"}[pooling(module)]


def check_logits(reference: torch.Tensor, logits: torch.Tensor) -> None:
    """The eager copy must predict what the shared model predicts; the attention would
    describe another computation otherwise.

    Raises:
        ExplainerError: the logits differ beyond float tolerance (bf16 on CUDA).
    """
    reference, logits = reference.detach().float(), logits.detach().float()
    scale = 1.0 + float(reference.abs().max())
    tol = (5e-2 if reference.is_cuda else 1e-3) * scale
    gap = float((reference - logits).abs().max())
    if not gap <= tol:
        raise ExplainerError(f"the eager-attention copy of this model gives other logits "
                             f"(max difference {gap:.3g}); its attention weights would not "
                             f"describe this model's prediction")


def pieces_and_specials(adapter, enc: Encoded) -> list[str]:
    """Every token of ``enc`` as the tokenizer names it, special tokens included (the axes of
    an attention matrix)."""
    with adapter.tokenizer_lock:
        return adapter.tokenizer.convert_ids_to_tokens(enc.context["input_ids"][0].tolist())
