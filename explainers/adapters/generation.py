"""Generation adapter: why did a causal language model continue a prompt this way?

The explained output is the log-probability of a target continuation given the prompt:
by default the model's own greedy continuation, or a text the user types, or a contrast
("why A rather than B": ``log p(A) - log p(B)``). One teacher-forced forward of
``prompt + target`` scores every target token at once (Captum's ``LLMAttribution`` decodes
them one by one), so the adapter's outputs for a batch of prompts are, per row::

    column 0            the explained value: sum_j log p(t_j | prompt, t_<j)
                        (contrast: that sum for A minus the same sum for B)
    columns 1 .. T      log p(t_j | prompt, t_<j), one per target token (then B's tokens)
    last column         the first-token margin: log p(t_0) - max_{v != t_0} log p(v)

Attributions are taken against the prompt's input embeddings (``inputs_embeds``), so no
hook ever sits on the shared model. The units (tokens, words, sentences or template fields,
:mod:`explainers.adapters.generation_units`) are the feature groups. The baseline
``delete`` removes a unit from the prompt *text*, which is tokenized afresh: its embedding
rows are filled with :data:`DELETED`, a value no embedding takes, which perturbation methods
(feature ablation, KernelSHAP, LIME, Shapley sampling, occlusion) copy into place exactly
(``x * 0 + DELETED * 1``) and the forward turns back into an edited prompt. Methods that
interpolate toward a baseline (IG, GradientSHAP) are offered the token baselines only.

Within one run (:meth:`GenerationAdapter.for_run`) the forward remembers every row it
scored, with the gradient of every output column where the method took gradients, so the
engine's matrix (one attribution per target token) re-runs the method per column without
running the model again.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import threading
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..errors import ExplainerError
from .base import Encoded, ModelAdapter, sum_over_groups
from .generation_units import UNITS, Filled, Prompt, edit, fill, units
from .text_attention import attention_model, capture, check_logits

#: what a deleted unit's embedding rows hold: no embedding is ever this (float32 max is 3.4e38)
DELETED = -3.0e38
#: values this large in an embedding row can only come from the deletion marker
_MARKER_SCALE = 1e37
#: the longest greedy continuation the dashboard and API make by default
DEFAULT_MAX_NEW_TOKENS = 12
MAX_NEW_TOKENS = 256
#: a run stops keeping gradients (the per-token matrix then re-runs the model per column)
#: once they would take more memory than this
MAX_JACOBIAN_BYTES = 512 * 2**20


def as_prompt(raw: Any) -> Prompt:
    """A :class:`~explainers.adapters.generation_units.Prompt` from a string, a mapping of
    its fields (``{"template": ..., "values": ...}``) or a Prompt."""
    if isinstance(raw, Prompt):
        return raw
    if isinstance(raw, str):
        return Prompt(text=raw)
    if isinstance(raw, Mapping):
        known = {f for f in Prompt.__dataclass_fields__}
        unknown = sorted(str(k) for k in raw if k not in known)
        if unknown:
            raise ExplainerError(f"unknown prompt field(s) {unknown}; known: {sorted(known)}")
        return Prompt(**{("text" if k == "prompt" else k): v for k, v in raw.items()})
    raise ExplainerError(f"a prompt must be a string or a template mapping, got {type(raw).__name__}")


class _Replay(torch.autograd.Function):
    """Outputs whose gradient is a stored Jacobian: ``d out[b, c] / d x[b]`` = ``jac[b, c]``."""

    @staticmethod
    def forward(ctx, x, outputs, jac):  # noqa: D401  (autograd's signature)
        ctx.save_for_backward(jac)
        return outputs.clone()

    @staticmethod
    def backward(ctx, grad):
        (jac,) = ctx.saved_tensors
        return torch.einsum("bc,bc...->b...", grad.to(jac.dtype), jac), None, None


class _Memo:
    """What one run's forward has scored: row digest -> outputs, and the Jacobian of every
    output column where gradients were taken (until :data:`MAX_JACOBIAN_BYTES`)."""

    def __init__(self) -> None:
        self.outputs: dict[bytes, torch.Tensor] = {}
        self.jacobians: dict[bytes, torch.Tensor] = {}
        self.jacobian_bytes = 0
        self.computed = 0
        self.attention: dict[Any, torch.Tensor] = {}

    @staticmethod
    def key(row: torch.Tensor) -> bytes:
        data = row.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
        return hashlib.blake2b(data, digest_size=16).digest()


class GenerationAdapter(ModelAdapter):
    """Adapter for a Hugging Face causal LM (Llama, Mistral, Qwen2/3, GPT-2 families).

    Args:
        name: display name of the model.
        module: a ``*ForCausalLM`` whose ``base_model`` maps ``inputs_embeds`` to the final
            hidden states and whose ``get_output_embeddings()`` is the LM head.
        tokenizer: its fast tokenizer (character offsets are needed for the units).
        device: where the model runs (default: CUDA when available).
        max_new_tokens: the default length of the greedy continuation.
    """

    modality = "generation"
    output_kind = "score"
    feature_unit = "token"
    default_unit = "word"
    encode_options = ("unit", "target", "contrast")
    #: baselines that are no point of the input space: perturbation methods only
    edit_baselines = ("delete",)
    #: a review's labels are expected answers (correct: the greedy continuation contains it)
    label_kind = "answer"
    #: reviews explain one prompt at a time (:func:`explainers.explain`), each with its own
    #: target, per-token matrix and continuation
    poolable = False
    grad_batch_size = 16
    eval_batch_size = 32
    occlusion_window_default = 1
    occlusion_window_max = 32

    def __init__(self, name: str, module: torch.nn.Module, tokenizer: Any,
                 device: torch.device | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS) -> None:
        super().__init__(name, module, ["log p(target)"], device)
        if not getattr(tokenizer, "is_fast", False):
            raise ExplainerError("the generation page needs a fast tokenizer (tokenizer.json): "
                                 "units are found through character offsets")
        self.tokenizer = tokenizer
        self.tokenizer_lock = threading.Lock()
        if self.head is None or self.decoder is self.module:
            raise ExplainerError(f"{type(module).__name__} has no separate decoder and LM head")
        cfg = module.config
        limits = [getattr(cfg, "max_position_embeddings", None), getattr(cfg, "n_positions", None),
                  getattr(tokenizer, "model_max_length", None)]
        self.max_length = int(min(v for v in limits if isinstance(v, int) and 0 < v < 10**7) or 2048)
        self.max_new_tokens = int(max_new_tokens)
        self.chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.token_ids = {k: int(v) for k, v in (("unk", tokenizer.unk_token_id),
                                                 ("eos", tokenizer.eos_token_id),
                                                 ("pad", tokenizer.pad_token_id)) if v is not None}
        tokens = tuple(self.token_ids)
        self.baseline_kinds = ("delete",) + tokens + ("zero",)
        self.default_baselines = ("delete",)
        #: the default of IG and GradientSHAP: the first token baseline (Captum's
        #: ``TextTokenInput`` replaces tokens by id 0, the unknown token of most vocabularies)
        self.path_baselines = (tokens + ("zero",))[:1]
        self.distribution_baselines = tokens + ("zero",)
        self.check_head()

    # the model's parts, read from ``module`` (a sanity check's randomized copy swaps it)
    @property
    def embeddings(self) -> torch.nn.Module:
        return self.module.get_input_embeddings()

    @property
    def head(self) -> torch.nn.Module:
        return self.module.get_output_embeddings()

    @property
    def decoder(self) -> torch.nn.Module:
        return self.module.base_model

    # -- identity ------------------------------------------------------------------------------
    def config(self) -> dict:
        return {"max_length": self.max_length, "max_new_tokens": self.max_new_tokens,
                "chat_template": hashlib.sha256(str(getattr(self.tokenizer, "chat_template", "")).encode()
                                                ).hexdigest()[:16], "forward": "teacher-forced v1"}

    def check_head(self) -> None:
        """The decoder + LM head path equals the model's own logits (a model that scales or
        caps its logits would be explained wrongly otherwise).

        Raises:
            ExplainerError: the two disagree beyond float tolerance.
        """
        ids = torch.arange(3, device=self.device).unsqueeze(0) % max(2, self.embeddings.num_embeddings)
        with torch.no_grad():
            ref = self.module(input_ids=ids).logits.float()
            ours = self.head(self.decoder(inputs_embeds=self.embeddings(ids)).last_hidden_state).float()
        gap = float((ref - ours).abs().max())
        if not gap <= 1e-3 * (1.0 + float(ref.abs().max())):
            raise ExplainerError(f"{type(self.module).__name__}'s logits are not its LM head on its "
                                 f"decoder's states (difference {gap:.3g}); it cannot be explained here")

    # -- prompts --------------------------------------------------------------------------------
    @functools.cached_property
    def _chat_frame(self) -> tuple[str, str]:
        """What the chat template puts before and after one user message."""
        mark = "\u0000PROMPT\u0000"
        with self.tokenizer_lock:
            rendered = self.tokenizer.apply_chat_template([{"role": "user", "content": mark}],
                                                          tokenize=False, add_generation_prompt=True)
        if rendered.count(mark) != 1:
            raise ExplainerError("this tokenizer's chat template does not hold the prompt verbatim")
        before, after = rendered.split(mark)
        return before, after

    def frame(self, chat: bool) -> tuple[str, str]:
        """``(before, after)``: the text around the prompt (the chat template's, or nothing)."""
        if not chat:
            return "", ""
        if not self.chat_template:
            raise ExplainerError("this tokenizer has no chat template: turn 'chat template' off")
        return self._chat_frame

    def tokenize(self, text: str, chat: bool) -> tuple[list[int], list[tuple[int, int]], int]:
        """Token ids of ``text`` as the model reads it (chat-wrapped or plain, with the
        tokenizer's special tokens for a plain prompt), their character spans in ``text``
        (``(-1, -1)`` for tokens outside it) and where ``text`` starts in the full string."""
        before, after = self.frame(chat)
        full = before + text + after
        with self.tokenizer_lock:
            enc = self.tokenizer(full, add_special_tokens=not chat, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        lo, hi = len(before), len(before) + len(text)
        spans = []
        for s, e in enc["offset_mapping"]:
            s, e = max(s, lo), min(e, hi)
            spans.append((s - lo, e - lo) if e > s else (-1, -1))
        return ids, spans, lo

    def target_ids(self, value: Any, what: str) -> list[int]:
        """Token ids of a typed target or contrast (no special tokens, as Captum's
        ``LLMAttribution`` encodes a target string), or a list of ids as given.

        Raises:
            ExplainerError: text that tokenizes to nothing, or ids outside the vocabulary.
        """
        if isinstance(value, str):
            with self.tokenizer_lock:
                ids = list(self.tokenizer(value, add_special_tokens=False)["input_ids"])
            if not ids:
                raise ExplainerError(f"the {what} {value!r} tokenizes to nothing: type some text")
            return ids
        if isinstance(value, (list, tuple, np.ndarray, torch.Tensor)):
            ids = [int(i) for i in (value.tolist() if hasattr(value, "tolist") else value)]
            vocab = self.embeddings.num_embeddings
            if not ids or any(not 0 <= i < vocab for i in ids):
                raise ExplainerError(f"the {what} must be text or token ids below {vocab}")
            return ids
        raise ExplainerError(f"the {what} must be text, got {type(value).__name__}")

    def show_tokens(self, ids: Sequence[int]) -> list[str]:
        """Each token as text (``" Lisbon"``), one per id."""
        with self.tokenizer_lock:
            return [self.tokenizer.decode([int(i)]) for i in ids]

    @torch.inference_mode()
    def generate(self, ids: Sequence[int], max_new_tokens: int) -> list[int]:
        """The greedy continuation of the token ids ``ids`` (stops at the end-of-text token,
        which it includes, as Captum's ``LLMAttribution`` does)."""
        x = torch.tensor([list(ids)], device=self.device)
        eos = self.tokenizer.eos_token_id
        with self.guarded():
            out = self.module.generate(input_ids=x, attention_mask=torch.ones_like(x),
                                       max_new_tokens=int(max_new_tokens), do_sample=False,
                                       temperature=None, top_p=None, top_k=None,
                                       pad_token_id=eos if eos is not None else 0)
        return out[0, x.shape[1]:].tolist()

    # -- encoding ---------------------------------------------------------------------------------
    def encode(self, raw: Any, unit: str | None = None, target: Any = None, contrast: Any = None) -> Encoded:
        """Tokenize a prompt, find its units and the target the attributions explain.

        Args:
            raw: the prompt: a string, a :class:`Prompt` (template, values, baselines, chat,
                max_new_tokens) or a mapping of those fields.
            unit: ``"token"``, ``"word"`` (default), ``"sentence"`` or ``"field"`` (the
                default for a template).
            target: None (the model's greedy continuation of ``max_new_tokens`` tokens), a
                text, or token ids.
            contrast: None, or a second target B: the explained value becomes
                ``log p(target) - log p(contrast)``.

        Returns:
            The :class:`Encoded` prompt: ``inputs`` are the input embeddings ``[1, L, d]``
            (chat template included), ``groups`` map each position to its unit (-1: chat
            template, special tokens, whitespace, a template's literal text), ``context``
            holds ``input_ids``, ``target_ids`` and (contrast) ``contrast_ids``.

        Raises:
            ExplainerError: an empty prompt, a prompt past the context length, a target
                that tokenizes to nothing, a template whose fields and values disagree, a
                contrast equal to the target, an unknown unit.
        """
        prompt = as_prompt(raw)
        unit = unit or ("field" if prompt.template is not None else self.default_unit)
        if unit not in UNITS:
            raise ExplainerError(f"generation unit must be one of {list(UNITS)}, got {unit!r}")
        filled = fill(prompt)
        if filled.is_template and unit != "field":  # words of the filled text: a plain prompt
            filled = Filled(filled.text)
        text = filled.text.strip() if not filled.is_template else filled.text
        if not text.strip():
            raise ExplainerError("the prompt is empty: type what to ask the model")
        if text != filled.text:
            filled = Filled(text)
        chat = self.chat_template if prompt.chat is None else bool(prompt.chat)
        ids, spans, _ = self.tokenize(text, chat)
        inside = [i for i, s in enumerate(spans) if s[0] >= 0]
        parts = units(filled, unit, [spans[i] for i in inside], self.show_tokens([ids[i] for i in inside]))
        new_tokens = self.max_new_tokens if prompt.max_new_tokens is None else int(prompt.max_new_tokens)
        if not 1 <= new_tokens <= MAX_NEW_TOKENS:
            raise ExplainerError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}, got {new_tokens}")
        continuation = None
        if target is None:
            self._check_length(ids, [0] * new_tokens)
            continuation = self.generate(ids, new_tokens)
            target_ids = list(continuation)
        else:
            target_ids = self.target_ids(target, "target")
        contrast_ids = None if contrast is None else self.target_ids(contrast, "contrast")
        if contrast_ids is not None and contrast_ids == target_ids:
            raise ExplainerError("the contrast equals the target: choose two different continuations")
        self._check_length(ids, target_ids, contrast_ids)
        x = torch.tensor([ids], device=self.device)
        with torch.no_grad():
            embeds = self.embeddings(x).detach().float()
        group_of_pos = torch.full((len(ids),), -1, dtype=torch.long)
        for k, i in enumerate(inside):
            group_of_pos[i] = parts.unit_of_token[k]
        context = {"input_ids": x, "target_ids": torch.tensor(target_ids, device=self.device)}
        if contrast_ids is not None:
            context["contrast_ids"] = torch.tensor(contrast_ids, device=self.device)
        warnings = []
        if parts.shared:
            pairs = ", ".join(f"{parts.labels[a]!r}/{parts.labels[b]!r}" for a, b in parts.shared[:3])
            warnings.append(f"units share a token ({pairs}); token baselines and gradients count "
                            "that token for the first unit only")
        enc = Encoded(
            inputs=embeds, feature_labels=list(parts.labels),
            groups=group_of_pos.to(self.device)[:, None].expand(-1, embeds.shape[-1]), raw=text,
            context=context, warnings=warnings,
            extra={"unit": unit, "prompt": prompt, "filled": filled, "units": parts, "chat": chat,
                   "prompt_positions": inside, "max_new_tokens": new_tokens,
                   "target_source": "greedy" if target is None else "given",
                   "continuation": continuation})
        spec = {"text": text, "template": prompt.template, "baselines": filled.baselines, "chat": chat}
        enc.key = hashlib.sha256((enc.key + json.dumps(spec, sort_keys=True)).encode()).hexdigest()
        return enc

    def _check_length(self, ids: Sequence[int], target: Sequence[int],
                      contrast: Sequence[int] | None = None) -> None:
        longest = len(ids) + max(len(target), len(contrast or ()))
        if longest > self.max_length:
            raise ExplainerError(f"the prompt ({len(ids)} tokens) and its continuation "
                                 f"({longest - len(ids)}) exceed the model's context of "
                                 f"{self.max_length} tokens; shorten the prompt")

    # -- what the outputs are ------------------------------------------------------------------------
    @staticmethod
    def n_target(enc: Encoded) -> int:
        return int(enc.context["target_ids"].numel())

    @staticmethod
    def n_contrast(enc: Encoded) -> int:
        c = enc.context.get("contrast_ids")
        return 0 if c is None else int(c.numel())

    def n_columns(self, enc: Encoded) -> int:
        return 2 + self.n_target(enc) + self.n_contrast(enc)

    def margin_column(self, enc: Encoded) -> int:
        return self.n_columns(enc) - 1

    def matrix_columns(self, enc: Encoded) -> list[int]:
        """The output columns the engine attributes besides column 0: one per target token
        (then one per contrast token); each is one row of the per-token matrix."""
        return list(range(1, self.n_columns(enc) - 1))

    def column_labels(self, enc: Encoded) -> list[str]:
        """A label per matrix column: the target's tokens, then ``"B: "`` and the
        contrast's tokens."""
        out = self.show_tokens(enc.context["target_ids"].tolist())
        if self.n_contrast(enc):
            out += [f"B:{t}" if t[:1].isspace() else f"B: {t}"
                    for t in self.show_tokens(enc.context["contrast_ids"].tolist())]
        return out

    def continuation(self, enc: Encoded) -> list[int]:
        """The model's greedy continuation of the prompt (generated once, then kept)."""
        if enc.extra.get("continuation") is None:
            enc.extra["continuation"] = self.generate(enc.context["input_ids"][0].tolist(),
                                                      enc.extra["max_new_tokens"])
        return list(enc.extra["continuation"])

    def text_of(self, ids: Sequence[int]) -> str:
        with self.tokenizer_lock:
            return self.tokenizer.decode(list(ids))

    def output_info(self, enc: Encoded) -> dict:
        """The prompt, units, target, contrast and greedy continuation, for the JSON."""
        cont = self.continuation(enc)
        target = enc.context["target_ids"].tolist()
        info = {"prompt": enc.raw, "chat_template": enc.extra["chat"], "unit": enc.extra["unit"],
                "explained": "log p(target) - log p(contrast)" if self.n_contrast(enc) else "log p(target)",
                "target": {"source": enc.extra["target_source"], "text": self.text_of(target),
                           "tokens": self.show_tokens(target), "ids": target},
                "contrast": None, "columns": self.column_labels(enc),
                "continuation": {"text": self.text_of(cont), "tokens": self.show_tokens(cont), "ids": cont}}
        if self.n_contrast(enc):
            ids = enc.context["contrast_ids"].tolist()
            info["contrast"] = {"text": self.text_of(ids), "tokens": self.show_tokens(ids), "ids": ids}
        return info

    def flip_rule(self, enc: Encoded) -> tuple[int, float, str, str]:
        """What a flip is here: ``(output column, threshold, its name, what crossing means)``.

        A contrast flips when B becomes the more probable continuation (column 0 crosses 0);
        otherwise when the target's first token stops (or starts) being the model's most
        probable next token (the first-token margin crosses 0): for the greedy target, the
        greedy continuation then starts differently."""
        if self.n_contrast(enc):
            return 0, 0.0, "log p(target) - log p(contrast)", "the contrast becomes the more probable"
        return (self.margin_column(enc), 0.0, "first-token margin",
                "the target's first token stops (or starts) being the most probable next token")

    # -- baselines ---------------------------------------------------------------------------------
    def _unit_positions(self, enc: Encoded) -> torch.Tensor:
        return (enc.groups[:, 0] >= 0).nonzero().flatten()

    def baseline(self, enc: Encoded, kind: str) -> torch.Tensor:
        """Every unit's embedding rows deleted (:data:`DELETED`), replaced by one token's
        embedding (``unk``, ``eos``, ``pad``) or zeroed; chat template and specials kept."""
        base = enc.inputs.clone()
        pos = self._unit_positions(enc)
        if kind == "delete":
            base[0, pos] = DELETED
        elif kind == "zero":
            base[0, pos] = 0.0
        else:
            with torch.no_grad():
                vec = self.embeddings(torch.tensor([self.token_ids[kind]], device=self.device)).float()
            base[0, pos] = vec
        return base

    def describe_baseline(self, kind: str) -> str:
        if kind == "delete":
            return ("each unit deleted from the prompt text, which is tokenized afresh (a template "
                    "field takes its baseline value)")
        if kind == "zero":
            return "every unit token's embedding set to 0"
        token = self.show_tokens([self.token_ids[kind]])[0]
        return f"every unit token replaced by {token!r} (the {kind} token, id {self.token_ids[kind]})"

    def neutral_candidate_tensors(self, enc: Encoded) -> dict[str, torch.Tensor]:
        return {}

    def sliding_window(self, enc: Encoded, window: int, stride: int) -> tuple[tuple, tuple]:
        hidden = enc.inputs.shape[-1]
        return (min(window, enc.inputs.shape[1]), hidden), (stride, hidden)

    def reduce(self, attr: torch.Tensor, enc: Encoded) -> np.ndarray:
        """Per-unit scores: each position's attribution summed over the embedding, then over
        the unit's positions."""
        return sum_over_groups(attr, enc)

    def work_per_pass(self, enc: Encoded) -> int:
        """Tokens of one forward: the prompt and the target (and the contrast) it scores."""
        return int(enc.inputs.shape[1]) + self.n_target(enc) + self.n_contrast(enc)

    def grad_work_per_pass(self, enc: Encoded) -> int:
        """Work of one gradient row (:func:`explainers.engine.pass_work`): its forward and
        one backward pass per target (and contrast) token, the per-token Jacobian a run
        remembers (:meth:`_jacobian`), each pass counted as :meth:`work_per_pass` tokens.
        A backward costs about 0.75 of a forward on CPU, so this over-counts by at most a
        third; a run past :data:`MAX_JACOBIAN_BYTES` re-runs the model per matrix column
        and costs about twice this."""
        return self.work_per_pass(enc) * (1 + len(self.matrix_columns(enc)))

    # -- edits -------------------------------------------------------------------------------------
    def deleted_text(self, enc: Encoded, tokens: set[int]) -> str:
        """The prompt text with the prompt tokens ``tokens`` (indices among its prompt
        tokens) deleted; see :func:`explainers.adapters.generation_units.edit`."""
        return edit(enc.extra["filled"], enc.extra["units"], tokens)

    def edit_units(self, enc: Encoded, delete: Sequence[int]) -> Prompt:
        """The prompt with whole units deleted (template fields take their baseline), as a
        :class:`Prompt` to encode again (chat setting and length kept).

        Raises:
            ExplainerError: an index that is not a unit of ``enc``.
        """
        n = enc.n_features
        bad = [i for i in delete if isinstance(i, bool) or not isinstance(i, (int, np.integer))
               or not 0 <= int(i) < n]
        if bad:
            raise ExplainerError(f"unit index {bad[0]!r} is out of range: this prompt has {n} units")
        gone = {int(i) for i in delete}
        parts, filled, prompt = enc.extra["units"], enc.extra["filled"], enc.extra["prompt"]
        tokens = {k for k, u in enumerate(parts.unit_of_token) if u in gone}
        if filled.is_template and enc.extra["unit"] == "field":
            values = [filled.baselines[f] if f in gone else v for f, v in enumerate(filled.values)]
            named = not filled.names[0].isdigit()
            return replace(prompt, values=dict(zip(filled.names, values)) if named else values)
        return replace(prompt, text=self.deleted_text(enc, tokens), template=None, values=None,
                       baselines=None, chat=enc.extra["chat"])

    # -- the forward -------------------------------------------------------------------------------
    def for_run(self, enc: Encoded) -> "GenerationAdapter":
        run = super().for_run(enc)
        run._memo = _Memo()
        return run

    _memo: _Memo | None = None

    def forward_fn(self, enc: Encoded, on_batch: Callable[[int], None] | None = None
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
        """As the base's, reporting only the rows the model actually ran (remembered rows
        cost nothing)."""
        def fn(x: torch.Tensor) -> torch.Tensor:
            before = self._memo.computed if self._memo is not None else 0
            out = self.forward(x, enc)
            if on_batch is not None:
                on_batch(self._memo.computed - before if self._memo is not None else int(x.shape[0]))
            return out
        return fn

    def _logits(self, inputs: torch.Tensor, enc: Encoded) -> torch.Tensor:
        """Output columns ``[B, C]`` (see the module docstring) for prompt embeddings
        ``[B, L, d]``, rows with :data:`DELETED` positions being edited prompts."""
        memo = self._memo
        grad = inputs.requires_grad and torch.is_grad_enabled()
        if memo is None:
            return self._score_rows(inputs, enc, grad)
        keys = [memo.key(row) for row in inputs]
        store = memo.jacobians if grad else memo.outputs
        todo = [i for i, k in enumerate(keys) if k not in store]
        if grad and todo and memo.jacobian_bytes + len(todo) * self._jacobian_bytes(inputs, enc) \
                > MAX_JACOBIAN_BYTES:  # over the memory budget: the caller's one backward, no Jacobian
            memo.computed += int(inputs.shape[0])
            return self._score_rows(inputs, enc, grad)
        if todo:
            idx = torch.tensor(todo, device=inputs.device)
            sub = inputs.detach()[idx].requires_grad_(grad)
            with torch.enable_grad() if grad else torch.no_grad():
                out = self._score_rows(sub, enc, grad)
            jac = self._jacobian(out, sub, enc) if grad else None
            for j, i in enumerate(todo):
                memo.outputs[keys[i]] = out[j].detach()
                if jac is not None:
                    memo.jacobians[keys[i]] = jac[j]
                    memo.jacobian_bytes += jac[j].numel() * jac[j].element_size()
            memo.computed += len(todo)
        outputs = torch.stack([memo.outputs[k] for k in keys])
        if not grad:
            return outputs
        return _Replay.apply(inputs, outputs, torch.stack([memo.jacobians[k] for k in keys]))

    def _jacobian_bytes(self, x: torch.Tensor, enc: Encoded) -> int:
        """Bytes of one row's Jacobian (float32, every output column)."""
        return 4 * self.n_columns(enc) * int(np.prod(x.shape[1:]))

    def _jacobian(self, out: torch.Tensor, x: torch.Tensor, enc: Encoded) -> torch.Tensor:
        """``d out[b, c] / d x[b]`` for every column ``[B, C, L, d]``: one backward pass per
        target token; column 0 follows by linearity. The margin column (read by the flip
        metric only, never a target: it is not among ``labels``) gets zeros."""
        cols = self.matrix_columns(enc)
        jac = torch.zeros((x.shape[0], out.shape[1]) + tuple(x.shape[1:]), dtype=torch.float32,
                          device=x.device)
        for n, c in enumerate(cols):
            (g,) = torch.autograd.grad(out[:, c].sum(), x, retain_graph=n < len(cols) - 1)
            jac[:, c] = g.float()
        na = self.n_target(enc)
        jac[:, 0] = jac[:, 1:1 + na].sum(1) - jac[:, 1 + na:1 + na + self.n_contrast(enc)].sum(1)
        return jac

    def _rows(self, x: torch.Tensor, enc: Encoded) -> list[torch.Tensor]:
        """Each row as the prompt embeddings the model reads: as given, or (rows with
        :data:`DELETED` positions) the embeddings of the edited prompt, tokenized afresh."""
        marker = x.detach().abs() >= _MARKER_SCALE
        deleted = (x.detach() == DELETED).all(-1)
        out = []
        for b in range(x.shape[0]):
            if not bool(marker[b].any()):
                out.append(x[b])
                continue
            if bool((marker[b].any(-1) & ~deleted[b]).any()):
                raise ExplainerError("the 'delete' baseline removes units from the prompt text; it "
                                     "cannot be interpolated or mixed (choose a token baseline)")
            keep = ~deleted[b]
            if x.requires_grad or not torch.equal(x[b][keep], enc.inputs[0][keep].to(x.dtype)):
                raise ExplainerError("a row both deletes units and changes other embeddings; the "
                                     "'delete' baseline only works alone (choose a token baseline)")
            out.append(self._edited_embeddings(enc, deleted[b]))
        return out

    def _edited_embeddings(self, enc: Encoded, deleted: torch.Tensor) -> torch.Tensor:
        positions = enc.extra["prompt_positions"]
        gone = {k for k, p in enumerate(positions) if bool(deleted[p])}
        text = self.deleted_text(enc, gone)
        ids, _, _ = self.tokenize(text, enc.extra["chat"])
        if not ids:  # nothing left and no special tokens: the model needs one token of context
            ids = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None
                   else self.tokenizer.eos_token_id]
        with torch.no_grad():
            return self.embeddings(torch.tensor(ids, device=self.device)).float()

    def _score_rows(self, x: torch.Tensor, enc: Encoded, grad: bool) -> torch.Tensor:
        rows = self._rows(x, enc)
        targets = [enc.context["target_ids"]]
        if self.n_contrast(enc):
            targets.append(enc.context["contrast_ids"])
        per_target = [self._log_probs(rows, t) for t in targets]
        a = per_target[0]
        total = a[0].sum(1) - (per_target[1][0].sum(1) if len(per_target) > 1 else 0.0)
        cols = [total[:, None], a[0]] + ([per_target[1][0]] if len(per_target) > 1 else []) + [a[1][:, None]]
        return torch.cat(cols, dim=1)

    def _log_probs(self, rows: list[torch.Tensor], target: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced ``log p(t_j | row, t_<j)`` ``[B, T]`` and the first-token margin
        ``[B]`` for prompt embeddings of any lengths, right-padded into one batch (a causal
        model's real positions never see padding to their right, so no mask is needed)."""
        with torch.no_grad():
            tail = self.embeddings(target[:-1].unsqueeze(0))[0].float()
        lengths = [int(r.shape[0]) for r in rows]
        t = int(target.numel())
        width = max(lengths) + t - 1
        seqs = []
        for r in rows:
            seq = torch.cat([r.to(tail.dtype), tail])
            if seq.shape[0] < width:
                seq = torch.nn.functional.pad(seq, (0, 0, 0, width - seq.shape[0]))
            seqs.append(seq)
        states = self.decoder(inputs_embeds=torch.stack(seqs), use_cache=False).last_hidden_state
        at = torch.tensor([[n - 1 + j for j in range(t)] for n in lengths], device=states.device)
        picked = torch.gather(states, 1, at[..., None].expand(-1, -1, states.shape[-1]))
        logp = torch.log_softmax(self.head(picked).float(), dim=-1)
        ids = target.to(logp.device)
        chosen = logp.gather(2, ids.view(1, t, 1).expand(logp.shape[0], -1, -1))[..., 0]
        first = logp[:, 0].clone()
        first[:, ids[0]] = float("-inf")
        margin = chosen[:, 0] - first.max(dim=-1).values
        return chosen, margin

    # -- attention ----------------------------------------------------------------------------------
    def attention_rows(self, enc: Encoded, layer: int | None = None, head: int | None = None) -> torch.Tensor:
        """Attention from the positions that predict the target to every prompt position.

        Args:
            enc: the encoded prompt.
            layer: 0-based layer (None: the last).
            head: 0-based head (None: the mean over the layer's heads).

        Returns:
            ``[C, L]`` float32, one row per output column (see the module docstring): for
            target token ``j`` the attention row of the position that predicts it (contrast
            tokens: in the contrast's sequence); column 0 the mean of the target tokens' rows;
            the margin column the first token's row. Rows sum to at most 1 (the rest falls on
            the target tokens already read). Weights come from the model's private eager
            copy (:mod:`explainers.adapters.text_attention`), hooked only inside this call;
            its log-probabilities are checked against the shared model's. Hold the model lock.

        Raises:
            ExplainerError: the model's attention cannot be read, or the copy disagrees.
        """
        memo = self._memo
        cache_key = (enc.key, layer, head)
        if memo is not None and cache_key in memo.attention:
            return memo.attention[cache_key]
        am = attention_model(self.module)
        view = copy.copy(self)
        view.module = am.module
        view._memo = None
        prompt = [enc.inputs[0]]
        length = int(enc.inputs.shape[1])
        blocks = []
        targets = [enc.context["target_ids"]] + ([enc.context["contrast_ids"]] if self.n_contrast(enc) else [])
        with torch.no_grad():
            for t in targets:
                with capture(am) as maps:
                    logp, _ = view._log_probs(prompt, t)
                reference, _ = self._log_probs(prompt, t)
                check_logits(reference, logp)
                chosen = maps[-1 if layer is None else layer][0].float()  # [heads, S, S]
                weights = chosen.mean(0) if head is None else chosen[head]
                blocks.append(weights[length - 1:length - 1 + int(t.numel()), :length])
        a = blocks[0]
        rows = torch.cat([a.mean(0, keepdim=True)] + blocks + [a[:1]])
        if memo is not None:
            memo.attention[cache_key] = rows
        return rows

    def n_layers_heads(self) -> tuple[int, int]:
        cfg = self.module.config
        return (int(getattr(cfg, "num_hidden_layers", None) or cfg.n_layer),
                int(getattr(cfg, "num_attention_heads", None) or cfg.n_head))

    # -- several prompts in one pooled batch (explainers.pooling) ------------------------------
    def stack_key(self, x: torch.Tensor) -> tuple:
        return (id(self), tuple(x.shape[1:]))

    def stack_inputs(self, xs: Sequence[torch.Tensor], encs: Sequence[Encoded]) -> tuple[torch.Tensor, Any]:
        """Rows of several prompts, each scored against its own target (the context)."""
        return torch.cat(list(xs)), [(enc, int(x.shape[0])) for x, enc in zip(xs, encs)]

    def forward_stacked(self, x: torch.Tensor, context: Any) -> torch.Tensor:
        outs, start = [], 0
        for enc, n in context:
            outs.append(self.forward(x[start:start + n], enc))
            start += n
        width = max(o.shape[1] for o in outs)  # prompts with longer targets have more columns
        return torch.cat([torch.nn.functional.pad(o, (0, width - o.shape[1]), value=float("nan"))
                          for o in outs])


__all__ = ["DELETED", "GenerationAdapter", "Prompt", "as_prompt"]
