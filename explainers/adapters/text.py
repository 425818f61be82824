"""Text adapter: attributions on word embeddings, one score per token.

Attributing against ``inputs_embeds`` (not a hooked embedding layer) means no hook ever
sits on the shared model, so concurrent sessions cannot read each other's activations.
The model adds position and token-type embeddings itself.
"""

from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ExplainerError
from .base import Encoded, ModelAdapter


class TextAdapter(ModelAdapter):
    """Adapter for sequence classifiers that accept ``inputs_embeds`` and ``attention_mask``.

    Args:
        name: display name of the model.
        module: a classifier whose forward takes ``inputs_embeds=`` and ``attention_mask=``
            and returns logits (or an output object with ``.logits``), and that has
            ``get_input_embeddings()``.
        tokenizer: the matching Hugging Face tokenizer.
        labels: class names.
    """

    modality = "text"
    baseline_kinds = ("pad", "mask", "unk", "zero")
    default_baselines = ("pad",)
    grad_batch_size = 64
    eval_batch_size = 128
    occlusion_window_default = 1
    occlusion_window_max = 32
    feature_unit = "token"

    def __init__(self, name: str, module: torch.nn.Module, tokenizer: Any,
                 labels: Sequence[str], device: torch.device | None = None) -> None:
        super().__init__(name, module, labels, device)
        self.tokenizer = tokenizer
        # Fast tokenizers are not safe to call from two threads at once ("Already borrowed");
        # a lock of their own, so encoding never waits for a long attribution.
        self.tokenizer_lock = threading.Lock()
        self.embeddings = module.get_input_embeddings()
        limits = [getattr(tokenizer, "model_max_length", 512) or 512,
                  getattr(getattr(module, "config", None), "max_position_embeddings", 512) or 512]
        self.max_length = int(min(limits))
        # Only structural tokens stay fixed; [UNK] or [MASK] in the text are real content.
        self.special_ids = {getattr(tokenizer, f"{t}_token_id", None)
                            for t in ("cls", "sep", "pad", "bos", "eos")} - {None}

    def encode(self, raw: Any) -> Encoded:
        if not isinstance(raw, str):
            raise ExplainerError(f"text input must be a string, got {type(raw).__name__}")
        text = raw.strip()
        if not text:
            raise ExplainerError("the text is empty: type a sentence to explain")
        fast = bool(getattr(self.tokenizer, "is_fast", False))
        with self.tokenizer_lock:
            n_tokens = len(self.tokenizer(text, add_special_tokens=True)["input_ids"])
            enc = self.tokenizer(text, truncation=True, max_length=self.max_length,
                                 return_tensors="pt", return_offsets_mapping=fast)
        warnings = []
        if n_tokens > self.max_length:
            warnings.append(
                f"text has {n_tokens} tokens; truncated to the model's maximum of {self.max_length}")
        ids = enc["input_ids"].to(self.device)
        mask = enc["attention_mask"].to(self.device)
        with torch.no_grad():
            embeds = self.embeddings(ids).detach()
        tokens = self.tokenizer.convert_ids_to_tokens(ids[0].tolist())
        special = torch.tensor([i in self.special_ids for i in ids[0].tolist()], device=self.device)
        content = (~special).nonzero().flatten()
        if content.numel() == 0:
            raise ExplainerError("the text has no tokens besides special ones")
        group_of_pos = torch.full((ids.shape[1],), -1, dtype=torch.long, device=self.device)
        group_of_pos[content] = torch.arange(content.numel(), device=self.device)
        groups = group_of_pos[:, None].expand(-1, embeds.shape[-1])
        spans = None
        if fast:  # character spans of the content tokens, for edits that keep the user's text
            offsets = enc["offset_mapping"][0].tolist()
            spans = [tuple(offsets[p]) for p in content.tolist()]
            if any(e <= s for s, e in spans):
                spans = None
        return Encoded(
            inputs=embeds,
            feature_labels=[tokens[i] for i in content.tolist()],
            groups=groups,
            raw=text,
            context={"input_ids": ids, "attention_mask": mask, "content_positions": content},
            warnings=warnings,
            extra={"spans": spans},
        )

    def _logits(self, inputs: torch.Tensor, enc: Encoded) -> torch.Tensor:
        mask = enc.context["attention_mask"].expand(inputs.shape[0], -1)
        out = self.module(inputs_embeds=inputs, attention_mask=mask)
        return out.logits if hasattr(out, "logits") else out

    def _token_id(self, kind: str) -> int | None:
        tok = self.tokenizer
        token_id = {"pad": tok.pad_token_id, "mask": tok.mask_token_id, "unk": tok.unk_token_id}[kind]
        if token_id is None:
            raise ExplainerError(f"this tokenizer has no [{kind.upper()}] token; choose another baseline")
        return int(token_id)

    def baseline(self, enc: Encoded, kind: str) -> torch.Tensor:
        """Every content token replaced by [PAD]/[MASK]/[UNK] or a zero vector; specials kept."""
        base = enc.inputs.clone()
        pos = enc.context["content_positions"]
        if kind == "zero":
            base[0, pos] = 0.0
        else:
            with torch.no_grad():
                vec = self.embeddings(torch.tensor([self._token_id(kind)], device=self.device))
            base[0, pos] = vec.to(base.dtype)
        return base

    def config(self) -> dict:
        return {"max_length": self.max_length}

    def sliding_window(self, enc: Encoded, window: int, stride: int) -> tuple[tuple, tuple]:
        hidden = enc.inputs.shape[-1]
        window = min(window, enc.inputs.shape[1])
        return (window, hidden), (stride, hidden)

    def reduce(self, attr: torch.Tensor, enc: Encoded) -> np.ndarray:
        per_token = attr[0].sum(dim=-1)
        return per_token[enc.context["content_positions"]].detach().float().cpu().numpy()

    # -- counterfactual edits --------------------------------------------------------------
    def edit_tokens(self, enc: Encoded, delete: Sequence[int] = (), mask: Sequence[int] = ()) -> str:
        """The text with content tokens ``delete`` removed and ``mask`` replaced by [MASK].

        With a fast tokenizer the edit works on the tokens' character spans, so the rest of
        the text keeps its case, punctuation and spacing ("The soup was terrible." minus
        "terrible" is "The soup was."). Otherwise the text is rebuilt from the tokens
        (lower-cased for uncased models).
        """
        delete = {int(i) for i in delete}
        mask = {int(i) for i in mask} - delete
        mask_token = self.tokenizer.mask_token or "[MASK]"
        spans = enc.extra.get("spans")
        if not spans:
            tokens = [mask_token if i in mask else t for i, t in enumerate(enc.feature_labels)]
            kept = [t for i, t in enumerate(tokens) if i not in delete]
            return self.tokenizer.convert_tokens_to_string(kept).strip()
        text = enc.raw
        keep = [True] * len(text)
        insert: dict[int, str] = {}
        for i in mask:
            s, e = spans[i]
            keep[s:e] = [False] * (e - s)
            insert[s] = mask_token
        for i in delete:
            s, e = spans[i]
            if s > 0 and text[s - 1].isspace():  # a word takes the space before it
                while s > 0 and text[s - 1].isspace():
                    s -= 1
            elif s == 0:  # the first word takes the space after it
                while e < len(text) and text[e].isspace():
                    e += 1
            keep[s:e] = [False] * (e - s)  # mid-word pieces (##ing) take no space
        out = [insert.get(k, "") + (ch if keep[k] else "") for k, ch in enumerate(text)]
        return "".join(out).strip()
