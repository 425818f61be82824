"""Text adapter: attributions on word embeddings, one score per word (or word piece).

Attributing against ``inputs_embeds`` (not a hooked embedding layer) means no hook ever
sits on the shared model, so concurrent sessions cannot read each other's activations.
The model adds position and token-type embeddings itself.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..baselines import neutral_baseline
from ..errors import ExplainerError
from ..precision import autocast_for
from .base import Encoded, ModelAdapter, sum_over_groups
from .words import edit_spans, group_words, merge_spans, piece_text

#: interpretable units of text: whole words (default) or the tokenizer's word pieces
UNITS = ("word", "piece")
#: warn when more than this share of the content tokens are the unknown token
UNK_WARN_SHARE = 0.2


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
    baseline_kinds = ("pad", "mask", "unk", "zero", "neutral")
    default_baselines = ("neutral",)
    #: GradientSHAP's default: a baseline distribution, so that it estimates SHAP values
    distribution_baselines = ("neutral", "pad", "mask", "unk")
    #: the candidates the ``neutral`` baseline is searched among (plus the sample average)
    neutral_candidates = ("pad", "mask", "unk")
    default_unit = "word"
    edit_perturbations = ("delete", "mask")
    grad_batch_size = 64
    eval_batch_size = 128
    occlusion_window_default = 1
    occlusion_window_max = 32
    feature_unit = "token"
    #: Occlusion windows count words (or pieces, with ``unit="piece"``), never token
    #: positions: hiding a word hides all of its pieces at once
    occludes_features = True

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
        self._sample_average: torch.Tensor | None = None
        self._neutral_reference: tuple[str, np.ndarray] | None = None

    def check_unit(self, unit: str | None) -> str:
        """``unit`` or the default (``"word"``), checked against :data:`UNITS`."""
        unit = self.default_unit if unit is None else unit
        if unit not in UNITS:
            raise ExplainerError(f"text unit must be one of {list(UNITS)}, got {unit!r}")
        return unit

    def encode(self, raw: Any, unit: str | None = None) -> Encoded:
        """Tokenize ``raw`` and look up its word embeddings.

        Args:
            raw: the text.
            unit: ``"word"`` (default): the interpretable features are words, word pieces
                merged (a word's score is the sum of its pieces'); ``"piece"``: one feature
                per word piece, as the tokenizer sees the text. The unit is part of
                :attr:`Encoded.key`, so word and piece results never share a cache entry.

        Returns:
            The :class:`Encoded` input; ``extra`` holds ``unit``, the pieces, the words,
            their character spans (fast tokenizers) and each piece's word.
        """
        unit = self.check_unit(unit)
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
        pos = content.tolist()
        pieces = [tokens[i] for i in pos]
        piece_spans = None
        if fast:  # character spans of the content tokens, for edits that keep the user's text
            offsets = enc["offset_mapping"][0].tolist()
            piece_spans = [tuple(offsets[p]) for p in pos]
            if any(e <= s for s, e in piece_spans) or any(
                    piece_spans[i][0] < piece_spans[i - 1][1] for i in range(1, len(piece_spans))):
                piece_spans = None
        word_ids = None
        if fast and piece_spans is not None:
            all_ids = enc.word_ids(0)
            word_ids = [all_ids[p] for p in pos]
        surface = ([text[s:e] for s, e in piece_spans] if piece_spans is not None
                   else [piece_text(t) for t in pieces])
        word_of_piece = group_words(surface, word_ids, piece_spans, pieces)
        word_spans = merge_spans(piece_spans, word_of_piece) if piece_spans is not None else None
        words = self._word_labels(text, pieces, word_of_piece, word_spans)
        warnings += self.unknown_warning(ids[0].tolist())
        if unit == "word":
            feature_of_piece, labels, spans = word_of_piece, words, word_spans
        else:
            feature_of_piece, labels, spans = list(range(len(pieces))), pieces, piece_spans
        group_of_pos = torch.full((ids.shape[1],), -1, dtype=torch.long, device=self.device)
        group_of_pos[content] = torch.tensor(feature_of_piece, dtype=torch.long, device=self.device)
        groups = group_of_pos[:, None].expand(-1, embeds.shape[-1])
        return Encoded(
            inputs=embeds,
            feature_labels=labels,
            groups=groups,
            raw=text,
            context={"input_ids": ids, "attention_mask": mask, "content_positions": content},
            warnings=warnings,
            extra={"unit": unit, "spans": spans, "pieces": pieces, "piece_spans": piece_spans,
                   "words": words, "word_spans": word_spans, "word_of_piece": word_of_piece},
        )

    def _word_labels(self, text: str, pieces: list[str], word_of_piece: list[int],
                     word_spans: list[tuple[int, int]] | None) -> list[str]:
        """Each word as the user wrote it (from its span), else its pieces joined."""
        if word_spans is not None:
            return [text[s:e] for s, e in word_spans]
        out: list[list[str]] = [[] for _ in range(max(word_of_piece) + 1)]
        for p, w in zip(pieces, word_of_piece):
            out[w].append(p)
        return [self.tokenizer.convert_tokens_to_string(ps).strip() or "".join(ps) for ps in out]

    def unknown_warning(self, ids: Sequence[int]) -> list[str]:
        """A warning when more than :data:`UNK_WARN_SHARE` of the content tokens are the
        tokenizer's unknown token: the model cannot read that text."""
        unk = getattr(self.tokenizer, "unk_token_id", None)
        content = [i for i in ids if i not in self.special_ids]
        if unk is None or not content:
            return []
        n_unk = sum(1 for i in content if i == unk)
        if n_unk < 2 or n_unk / len(content) <= UNK_WARN_SHARE:
            return []
        name = self.tokenizer.unk_token or "[UNK]"
        what = ("this model does not read this script" if n_unk / len(content) >= 0.5
                else "the model cannot read part of this text")
        return [f"{n_unk} of {len(content)} tokens are {name}: {what}; its explanation is "
                f"about unknown-token placeholders, not the words"]

    def _logits(self, inputs: torch.Tensor, enc: Encoded) -> torch.Tensor:
        return self._logits_masked(inputs, enc.context["attention_mask"].expand(inputs.shape[0], -1))

    def _logits_masked(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.module(inputs_embeds=embeds, attention_mask=attention_mask)
        return out.logits if hasattr(out, "logits") else out

    # -- several texts in one batch (explainers.pooling) -------------------------------------
    def stack_key(self, x: torch.Tensor) -> tuple:
        return tuple(x.shape[2:])  # any length: shorter rows are padded

    def stack_inputs(self, xs: Sequence[torch.Tensor], encs: Sequence[Encoded]) -> tuple[torch.Tensor, Any]:
        """Rows of texts of different lengths, right-padded with zero vectors to the longest,
        and the attention mask that hides the padding (each text's own mask, then 0).

        Real tokens keep their positions, and no real token attends to a padded one, so a
        padded row's logits are the unpadded row's (up to float rounding), and the
        gradient at a padded position is zero; :mod:`explainers.pooling` cuts every row
        back to its own length before anything is attributed."""
        length = max(int(x.shape[1]) for x in xs)
        out, masks = [], []
        for x, enc in zip(xs, encs):
            pad = length - int(x.shape[1])
            mask = enc.context["attention_mask"].expand(x.shape[0], -1)
            if pad:
                x = torch.nn.functional.pad(x, (0, 0, 0, pad))
                mask = torch.nn.functional.pad(mask, (0, pad))
            out.append(x)
            masks.append(mask)
        return torch.cat(out), torch.cat(masks)

    def forward_stacked(self, x: torch.Tensor, context: Any) -> torch.Tensor:
        with autocast_for(x):
            return self._logits_masked(x, context).float()

    def _token_id(self, kind: str) -> int | None:
        tok = self.tokenizer
        token_id = {"pad": tok.pad_token_id, "mask": tok.mask_token_id, "unk": tok.unk_token_id}[kind]
        if token_id is None:
            raise ExplainerError(f"this tokenizer has no [{kind.upper()}] token; choose another baseline")
        return int(token_id)

    def _fill(self, enc: Encoded, vec: torch.Tensor | None) -> torch.Tensor:
        """``enc.inputs`` with every content position set to ``vec`` (zeros if None)."""
        base = enc.inputs.clone()
        pos = enc.context["content_positions"]
        base[0, pos] = 0.0 if vec is None else vec.to(base.dtype)
        return base

    def baseline(self, enc: Encoded, kind: str) -> torch.Tensor:
        """Every content token replaced by [PAD]/[MASK]/[UNK] or a zero vector, specials
        kept; ``neutral``: the candidate or mix whose prediction is the most neutral for the
        output kind (see :func:`explainers.baselines.neutral_search`), searched once per
        model and text length."""
        if kind == "neutral":
            return neutral_baseline(self, enc)
        if kind == "zero":
            return self._fill(enc, None)
        with torch.no_grad():
            vec = self.embeddings(torch.tensor([self._token_id(kind)], device=self.device))
        return self._fill(enc, vec)

    def describe_baseline(self, kind: str) -> str:
        return {"pad": "every word replaced by [PAD]", "mask": "every word replaced by [MASK]",
                "unk": "every word replaced by [UNK]", "zero": "every word embedding set to 0",
                "sample average": "every word replaced by the mean word embedding of "
                                  f"{len(sample_sentences())} shipped everyday sentences"}.get(kind, kind)

    def sample_average(self) -> torch.Tensor:
        """The mean content-token embedding of :func:`sample_sentences` (``[1, hidden]``)."""
        if self._sample_average is None:
            with self.tokenizer_lock:
                ids = self.tokenizer(list(sample_sentences()), add_special_tokens=False)["input_ids"]
            flat = torch.tensor([i for row in ids for i in row if i not in self.special_ids],
                                device=self.device)
            with torch.no_grad():
                self._sample_average = self.embeddings(flat).float().mean(0, keepdim=True)
        return self._sample_average

    def neutral_key(self, enc: Encoded) -> tuple:
        """What the neutral search of ``enc`` depends on (:func:`explainers.baselines.memo_key`):
        every candidate replaces all content tokens and keeps the rest, so only the length,
        the kept tokens and where they sit, and the attention mask matter; two texts of one
        length share their search."""
        ids = enc.context["input_ids"][0].tolist()
        content = enc.context["content_positions"].tolist()
        replaced = set(content)
        kept = tuple((i, t) for i, t in enumerate(ids) if i not in replaced)
        return len(ids), kept, tuple(content), tuple(enc.context["attention_mask"][0].tolist())

    def neutral_reference_outputs(self) -> tuple[np.ndarray, str]:
        """A text score model has no data to place a score in: its neutrality is measured
        against its scores on the shipped everyday sentences (:func:`sample_sentences`),
        computed once per output kind."""
        cached = self._neutral_reference
        if cached is None or cached[0] != self.output_kind:
            with self.lock:
                out = self.predict_texts(list(sample_sentences())).double().numpy()
            cached = self._neutral_reference = (self.output_kind, out)
        return cached[1], f"its scores on {len(sample_sentences())} shipped everyday sentences"

    def neutral_candidate_tensors(self, enc: Encoded) -> dict[str, torch.Tensor]:
        out = {}
        for kind in self.neutral_candidates:
            try:
                out[kind] = self.baseline(enc, kind)
            except ExplainerError:  # a tokenizer without that special token
                continue
        out["sample average"] = self._fill(enc, self.sample_average())
        return out

    def config(self) -> dict:
        return {"max_length": self.max_length, "samples": sample_hash()}

    def reduce(self, attr: torch.Tensor, enc: Encoded) -> np.ndarray:
        """Per-feature scores: each position's attribution summed over the embedding, then
        summed over the feature's positions (a word's pieces)."""
        return sum_over_groups(attr, enc)

    # -- counterfactual edits --------------------------------------------------------------
    def _check_indices(self, enc: Encoded, name: str, indices: Sequence[int], n: int, unit: str) -> set[int]:
        out = set()
        for i in indices:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
                raise ExplainerError(f"{name}: {unit} indices must be integers, got {i!r}")
            if not 0 <= int(i) < n:
                raise ExplainerError(f"{name}: {unit} index {int(i)} is out of range; this text has "
                                     f"{n} {unit}s (0 to {n - 1})")
            out.add(int(i))
        return out

    def edit_words(self, enc: Encoded, delete: Sequence[int] = (), mask: Sequence[int] = ()) -> str:
        """The user's text with whole words deleted or replaced by one [MASK] each.

        Indices count words (``enc.extra["words"]``), whatever ``enc``'s unit. Edits work on
        character spans, so the rest of the text keeps its case, punctuation and spacing;
        two words that touched only through a deleted word are kept apart by a space
        (never fused), punctuation keeps hugging its word ("The soup was bland, ..." minus
        "bland" is "The soup was, ..."). Without spans (slow tokenizers) the text is
        rebuilt from the tokens.

        Raises:
            ExplainerError: for an index that is not a word of ``enc``.
        """
        words = enc.extra.get("words") or list(enc.feature_labels)
        delete_set = self._check_indices(enc, "edit_words", delete, len(words), "word")
        mask_set = self._check_indices(enc, "edit_words", mask, len(words), "word") - delete_set
        spans = enc.extra.get("word_spans")
        if spans:
            return edit_spans(enc.raw, spans, list(range(len(spans))), delete_set, mask_set,
                              self.mask_text)
        word_of = enc.extra.get("word_of_piece") or list(range(len(words)))
        pieces = enc.extra.get("pieces") or list(enc.feature_labels)
        out, last = [], None
        for p, w in zip(pieces, word_of):
            if w in delete_set:
                continue
            if w in mask_set:
                if w != last:
                    out.append(self.mask_text)
            else:
                out.append(p)
            last = w
        return self.tokenizer.convert_tokens_to_string(out).strip()

    def edit_tokens(self, enc: Encoded, delete: Sequence[int] = (), mask: Sequence[int] = ()) -> str:
        """The text with features ``delete`` removed and ``mask`` replaced by [MASK].

        Indices count ``enc``'s features: words when ``enc`` was encoded with
        ``unit="word"`` (then this is :meth:`edit_words`), word pieces with
        ``unit="piece"`` (a deleted piece leaves the rest of its word: "unflinchingly"
        minus "un" is "flinchingly").

        Raises:
            ExplainerError: for an index that is not a feature of ``enc``.
        """
        if enc.extra.get("unit", "word") == "word":
            return self.edit_words(enc, delete, mask)
        n = enc.n_features
        delete_set = self._check_indices(enc, "edit_tokens", delete, n, "token")
        mask_set = self._check_indices(enc, "edit_tokens", mask, n, "token") - delete_set
        spans = enc.extra.get("piece_spans")
        if spans:
            return edit_spans(enc.raw, spans, enc.extra["word_of_piece"], delete_set, mask_set,
                              self.mask_text)
        tokens = [self.mask_text if i in mask_set else t for i, t in enumerate(enc.feature_labels)]
        kept = [t for i, t in enumerate(tokens) if i not in delete_set]
        return self.tokenizer.convert_tokens_to_string(kept).strip()

    def edit(self, enc: Encoded, removed: Sequence[int], perturbation: str) -> str:
        """The text a metric scores when ``removed`` features go by ``perturbation``
        (``"delete"`` or ``"mask"``): :meth:`edit_tokens` on ``enc``'s features."""
        if perturbation == "delete":
            return self.edit_tokens(enc, delete=removed)
        if perturbation == "mask":
            return self.edit_tokens(enc, mask=removed)
        raise ExplainerError(f"text edits are 'delete' or 'mask', got {perturbation!r}")

    @property
    def mask_text(self) -> str:
        return self.tokenizer.mask_token or "[MASK]"

    # -- re-prediction of edited texts ------------------------------------------------------
    @torch.inference_mode()
    def predict_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Outputs ``[B, C]`` (see :meth:`activate`) for raw texts, tokenized as :meth:`encode` does.

        Texts of equal token length are batched together (no padding), so each row is the
        same computation as ``predict(encode(text))``. An empty text is [CLS] [SEP].
        """
        texts = [t.strip() for t in texts]
        with self.tokenizer_lock:
            ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        by_len: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            by_len.setdefault(len(row), []).append(i)
        out = torch.empty((len(texts), len(self.labels)), dtype=torch.float32)
        for rows in by_len.values():
            for start in range(0, len(rows), self.eval_batch_size):
                chunk = rows[start:start + self.eval_batch_size]
                t = torch.tensor([ids[r] for r in chunk], device=self.device)
                embeds = self.embeddings(t)
                mask = torch.ones_like(t)
                with autocast_for(embeds):
                    logits = self._logits_masked(embeds, mask).float()
                out[chunk] = self.activate(logits).cpu()
        return out


@functools.lru_cache(maxsize=1)
def sample_sentences() -> tuple[str, ...]:
    """The shipped everyday sentences behind the ``sample average`` candidate."""
    path = Path(__file__).resolve().parent.parent / "data" / "neutral_sentences.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@functools.lru_cache(maxsize=1)
def sample_hash() -> str:
    return hashlib.sha256("\n".join(sample_sentences()).encode()).hexdigest()[:16]
