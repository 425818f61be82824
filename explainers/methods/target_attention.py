"""Attention to the prompt from the positions that predict a causal LM's target."""

from __future__ import annotations

import torch

from ..params import ParamSpec
from ..registry import register_method
from .base import Method


@register_method
class TargetAttention(Method):
    r"""The attention the positions that predict the target pay to each prompt unit.

    For target token ``j``, the attention row of the position that predicts it (the last
    prompt token for the first target token, then each target token in turn), in one
    layer (the last by default), averaged over heads (or one head); a unit's score is the
    sum of its tokens' weights. The total (scores) is the mean of the target tokens' rows.

    Attention says where the model reads, not what moves its answer: the weights are
    non-negative whatever the unit does to the target, and much of each row goes to the
    first token and to the chat template, which are no unit and are not shown (so a unit's
    share is of the whole row, and the shares sum to less than 1). Weights come from a
    private eager-attention copy of the model that shares its weights
    (:mod:`explainers.adapters.text_attention`).
    """

    name = "target_attention"
    title = "Attention (last layer)"
    modalities = ("generation",)
    uses_baselines = False
    #: hooks sit on the model's (shared) eager copy during the run: hold the lock throughout
    exclusive_model = True
    takes_gradients = False  # weights read in a forward pass (the cost estimate's forward rows)
    additive = False
    summary = ("The model's own attention from the positions that predict the target to each "
               "prompt unit. Where the model reads, not what changes its answer.")
    paper = ("Jain, Wallace. Attention is not Explanation. NAACL 2019 (the caveat); raw weights "
             "as read in Clark, Khandelwal, Levy, Manning. What Does BERT Look At? 2019.")

    def own_params(self, adapter):
        layers, heads = adapter.n_layers_heads()
        return [ParamSpec("layer", "choice", "last", "the layer read (1 = first)",
                          choices=("last",) + tuple(str(i) for i in range(1, layers + 1))),
                ParamSpec("head", "choice", "mean", "one attention head (1 = first), or the mean "
                          "over the layer's heads",
                          choices=("mean",) + tuple(str(i) for i in range(1, heads + 1)))]

    def cost(self, adapter, enc, params):
        return 2  # the eager copy's forward and the shared model's, which checks it

    def notes(self, adapter, enc, params):
        layer = "the last layer" if params["layer"] == "last" else f"layer {params['layer']}"
        head = "mean over heads" if params["head"] == "mean" else f"head {params['head']}"
        return [f"Attention, not attribution: {layer}'s weights ({head}) from the positions that "
                "predict the target. Non-negative by construction; weight on the first token and "
                "the chat template is not shown."]

    def attribute(self, adapter, enc, target, params, forward):
        layer = None if params["layer"] == "last" else int(params["layer"]) - 1
        head = None if params["head"] == "mean" else int(params["head"]) - 1
        rows = adapter.attention_rows(enc, layer, head)
        attr = torch.zeros_like(enc.inputs, dtype=torch.float32)
        attr[0, :, 0] = rows[int(target)].to(attr.device)  # reduce() sums it per unit
        return attr, None
