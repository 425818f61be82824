"""Gradient-weighted attention relevance (Chefer, Gur, Wolf, 2021,
https://arxiv.org/abs/2103.15679): "attention x gradient"."""

from __future__ import annotations

import torch

from ..adapters.text_attention import describe_pooling, pooled_positions
from ..registry import register_method
from .attention import attention_maps, per_position
from .base import Method


def relevance(weights: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    r"""Chefer et al.'s relevance map for a self-attention encoder (their self-attention rule).

    ``R = I``; for each layer from the first: ``Ā = mean_heads((∇A ⊙ A)^+)`` and
    ``R = R + Ā R``, where ∇A is the gradient of the target class's logit with respect to
    the layer's attention map A.

    Args:
        weights, grads: ``[layers, heads, T, T]``.

    Returns:
        ``[T, T]`` relevance; row i says how much each token is relevant to position i.
    """
    t = weights.shape[-1]
    rel = torch.eye(t, dtype=weights.dtype, device=weights.device)
    for a, g in zip(weights, grads):
        cam = (g * a).clamp(min=0).mean(dim=0)
        rel = rel + cam @ rel
    return rel


@register_method
class AttentionXGradient(Method):
    r"""Gradient-weighted attention relevance (Chefer, Gur, Wolf 2021, "Generic
    attention-model explainability for interpreting bi-modal and encoder-decoder
    transformers"), for the self-attention encoder of a text classifier.

    Follows the paper's self-attention rules: relevance starts as the identity (each token
    is relevant to itself), and every layer adds ``mean_heads((∇A ⊙ A)^+) R``, with ∇A the
    gradient of the target logit (the paper's ``y_t``) with respect to that layer's
    attention weights. Differences from the paper, named:

    - the scores are read off the query row(s) the classifier pools: the paper reads the
      [CLS] row, which is what happens for a [CLS]-pooled model; for a mean-pooled model
      (the default) the rows of every token are averaged, [CLS] and [SEP] included;
    - the identity's own share is left out (``R - I``). For a [CLS]-pooled model this changes
      nothing shown (the identity only touches the [CLS] column, which is no feature); for
      a mean-pooled model it removes the same ``1 / T`` from every token, which changes no
      ranking, curve or flip but would otherwise drown the map (on the default model the
      attention part is about a tenth of that offset);
    - a word's score is the sum of its pieces' relevance; [CLS]/[SEP] are not shown.

    Non-negative by construction. One forward and one backward pass through the model's
    eager-attention copy (the shared model is never changed).
    """

    name = "attention_x_gradient"
    title = "Attention x Gradient"
    modalities = ("text",)
    uses_baselines = False
    #: hooks sit on the model's (shared) eager copy during the run: hold the lock throughout
    exclusive_model = True
    additive = False
    summary = ("Attention weighted by its gradient and propagated through the layers (Chefer et "
               "al.): which tokens the target class's score flows from through attention. "
               "Class-specific, non-negative; one forward + backward.")
    paper = ("Chefer, Gur, Wolf. Generic Attention-model Explainability for Interpreting "
             "Bi-Modal and Encoder-Decoder Transformers. ICCV 2021.")

    def cost(self, adapter, enc, params):
        return 2  # the shared model's forward (progress, logits check) + the copy's, with backward

    def notes(self, adapter, enc, params):
        return [f"Relevance R = I + Σ_layers mean_heads((∇A ⊙ A)⁺) R (Chefer et al. 2021) less "
                f"the identity's own share, read off {describe_pooling(adapter.module)}. "
                "Non-negative by construction: it says "
                "how much a word matters to the class's score, not in which direction; a word's "
                "score is the sum of its pieces'."]

    def attribute(self, adapter, enc, target, params, forward):
        weights, grads = attention_maps(adapter, enc, forward, target, grad=True)
        rows = pooled_positions(adapter.module, enc).to(weights.device)
        rel = relevance(weights, grads)
        rel = rel - torch.eye(rel.shape[-1], dtype=rel.dtype, device=rel.device)  # the identity's share
        return per_position(adapter, enc, rel[rows].mean(0)), None
