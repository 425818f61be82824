"""The model's own attention weights: one layer's, or rolled out through the layers
(Abnar & Zuidema, 2020, https://arxiv.org/abs/2005.00928)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..adapters.base import Encoded
from ..adapters.text_attention import (attention_model, capture, check_logits, describe_pooling,
                                       eager_adapter, n_layers_heads, pieces_and_specials, pooled_positions)
from ..errors import ExplainerError
from ..params import ParamSpec
from ..registry import register_method
from .base import Method

AGGREGATIONS = ("last_layer", "rollout")


def attention_maps(adapter, enc: Encoded, forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   target: int | None = None, grad: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The attention weights of every layer for ``enc``, from the model's eager copy.

    Args:
        adapter: a text adapter around a Hugging Face transformer.
        enc: the encoded text; its ``inputs`` (word embeddings) are what the copy reads.
        forward: the run's forward on the shared model. When given it runs first, under the
            same hooks, to report progress and to give the logits the copy must reproduce
            (:func:`~explainers.adapters.text_attention.check_logits`).
        target: the class explained, checked against the model's outputs (None: unchecked).
        grad: also the gradient of ``target``'s logit with respect to every attention map
            (one forward + backward through the copy).

    Returns:
        ``(weights, grads)``: float32 ``[layers, heads, T, T]`` (rows are queries, columns
        keys; each row sums to 1 over the attended keys) and, with ``grad``, the gradients
        of the same shape, else None. Hold the model lock around the call.

    Raises:
        ExplainerError: the model has no readable attention, the copy disagrees with the
            shared model, or ``target`` is not a class of the model.
    """
    am = attention_model(adapter.module)
    view = eager_adapter(adapter, am)
    grads = None
    with capture(am) as maps:  # hooks on the private copy only; removed in finally
        with torch.no_grad():
            reference = forward(enc.inputs) if forward is not None else None
        x = enc.inputs.detach().clone().requires_grad_(grad)
        with torch.set_grad_enabled(grad):
            logits = view.forward(x, enc)
            if target is not None and not 0 <= int(target) < logits.shape[-1]:
                raise ExplainerError(f"target {target} out of range: the model has "
                                     f"{logits.shape[-1]} classes")
            if grad:
                grads = torch.autograd.grad(logits[0, int(target)], maps)
    if reference is not None:
        check_logits(reference, logits)
    n = n_layers_heads(adapter.module)
    if n is not None and len(maps) != n[0]:
        raise ExplainerError(f"read {len(maps)} attention maps from a model with {n[0]} layers")
    weights = torch.stack([m[0].detach().float() for m in maps])
    if grads is not None:
        grads = torch.stack([g[0].detach().float() for g in grads])
    return weights, grads


def rollout(weights: torch.Tensor, upto: int | None = None) -> torch.Tensor:
    r"""Attention rollout (Abnar & Zuidema 2020), as their reference code computes it.

    Heads are averaged; the residual connection is modelled by adding the identity to each
    layer's matrix, whose rows are then renormalised to sum to 1 (``(A + I) / 2`` when A's
    rows sum to 1); the layers are multiplied from the first up, later layers on the left:
    ``R = Â_l ··· Â_2 Â_1``.

    Args:
        weights: ``[layers, heads, T, T]`` attention weights.
        upto: roll out through layers ``1 .. upto`` (default: all).

    Returns:
        ``[T, T]``: row i is how much each input token flows into position i's state.
    """
    a = weights[:upto].mean(dim=1)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    aug = a + eye
    aug = aug / aug.sum(dim=-1, keepdim=True)
    joint = aug[0]
    for layer in aug[1:]:
        joint = layer @ joint
    return joint


def per_position(adapter, enc: Encoded, scores: torch.Tensor) -> torch.Tensor:
    """A ``[T]`` score per token position as an attribution shaped like ``enc.inputs``: the
    score on the first embedding element, zeros elsewhere, so the adapter's ``reduce`` (sum
    over the embedding, then over a word's pieces) gives each word the sum of its pieces'
    scores exactly. [CLS]/[SEP] positions are dropped by ``reduce`` (they are no feature)."""
    attr = torch.zeros_like(enc.inputs, dtype=torch.float32)
    attr[0, :, 0] = scores.to(attr.device)
    return attr


def layer_head_specs(adapter, layer_help: str, with_head: bool = True) -> list[ParamSpec]:
    n = n_layers_heads(adapter.module)
    layers = ("last",) + tuple(str(i) for i in range(1, n[0] + 1)) if n else ("last",)
    specs = [ParamSpec("layer", "choice", "last", layer_help, choices=layers)]
    if with_head:
        heads = ("mean",) + tuple(str(i) for i in range(1, n[1] + 1)) if n else ("mean",)
        specs.append(ParamSpec("head", "choice", "mean", "one attention head (1 = first), or the "
                               "mean over the layer's heads", choices=heads))
    return specs


def layer_index(params: dict, n_layers: int) -> int:
    """0-based index of the ``layer`` parameter ("last" or 1-based)."""
    return n_layers - 1 if params["layer"] == "last" else int(params["layer"]) - 1


@register_method
class Attention(Method):
    r"""The attention the model's pooled query row(s) pay to each token.

    ``aggregation="last_layer"``: one layer's attention weights (the last unless ``layer``
    says otherwise), averaged over heads (or one ``head``), read off the query row(s) the
    classifier pools: the [CLS] row for a [CLS]-pooled model, the mean of every row
    ([CLS] and [SEP] included) for a mean-pooled one such as the default model. These are
    exactly the weights ``model(..., output_attentions=True)`` returns.

    ``aggregation="rollout"``: attention rollout (Abnar & Zuidema 2020) through layers
    1 .. ``layer``, read off the same row(s); see :func:`rollout`.

    A word's score is the sum of its pieces' weights (the share of the row's attention that
    lands on the word); the weight on [CLS]/[SEP] is not shown. Scores are non-negative by
    construction and the same for every class: attention says where the model looks, not
    which way a word pushes the prediction.

    The weights come from a private eager-attention copy that shares the model's weights
    (:mod:`explainers.adapters.text_attention`); the shared model never changes.
    """

    name = "attention"
    title = "Attention"
    modalities = ("text",)
    uses_baselines = False
    #: hooks sit on the model's (shared) eager copy during the run: hold the lock throughout
    exclusive_model = True
    takes_gradients = False  # weights read in a forward pass (the cost estimate's forward rows)
    additive = False
    summary = ("The model's own attention weights from the pooled token(s) to each word, one "
               "layer or rolled out through all. Where the model looks, not what moves the "
               "prediction: non-negative and the same for every class.")
    paper = ("Abnar, Zuidema. Quantifying Attention Flow in Transformers. ACL 2020 (rollout); "
             "raw weights as read in Clark, Khandelwal, Levy, Manning. What Does BERT Look At? "
             "BlackboxNLP 2019.")

    def own_params(self, adapter):
        return [ParamSpec("aggregation", "choice", "last_layer",
                          "last_layer: one layer's weights; rollout: Abnar & Zuidema's product "
                          "through the layers (identity added for the residual)",
                          choices=AGGREGATIONS),
                *layer_head_specs(adapter, "last_layer: the layer read (1 = first); rollout: "
                                           "rolled out through layers 1 .. this one")]

    def cost(self, adapter, enc, params):
        if params["aggregation"] == "rollout" and params["head"] != "mean":
            raise ExplainerError("attention rollout averages every layer's heads (Abnar & "
                                 "Zuidema 2020); choose head = mean, or last_layer for one head")
        return 2  # the shared model's forward (progress, logits check) + the copy's

    def notes(self, adapter, enc, params):
        rows = describe_pooling(adapter.module)
        layer = "the last layer" if params["layer"] == "last" else f"layer {params['layer']}"
        if params["aggregation"] == "rollout":
            what = f"attention rollout through {layer}, heads averaged"
        else:
            head = "mean over heads" if params["head"] == "mean" else f"head {params['head']}"
            what = f"{layer}'s attention weights ({head})"
        return [f"Attention, not attribution: {what}, read off {rows}. Non-negative by "
                "construction and the same for every class; a word's score is the sum of its "
                "pieces' weights."]

    def attribute(self, adapter, enc, target, params, forward):
        weights, _ = attention_maps(adapter, enc, forward, target)
        rows = pooled_positions(adapter.module, enc).to(weights.device)
        upto = layer_index(params, weights.shape[0])
        if params["aggregation"] == "rollout":
            matrix = rollout(weights, upto + 1)
        else:
            layer = weights[upto]
            matrix = layer.mean(0) if params["head"] == "mean" else layer[int(params["head"]) - 1]
        return per_position(adapter, enc, matrix[rows].mean(0)), None


def attention_matrix(adapter, enc: Encoded) -> tuple[np.ndarray, list[str], list[int]]:
    """Every layer's attention for the dashboard's heat map, under the model lock.

    Returns:
        ``(weights [layers, heads, T, T], tokens, pooled positions)``; tokens include the
        special ones, as the model sees them.
    """
    with adapter.guarded():
        weights, _ = attention_maps(adapter, enc)
    rows = pooled_positions(adapter.module, enc).tolist()
    return weights.cpu().numpy(), pieces_and_specials(adapter, enc), rows
