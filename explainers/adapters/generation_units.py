"""Prompts and their interpretable units: tokens, words, sentences, template fields.

Pure functions on strings and character spans (no model, no tokenizer calls): how a template
is filled, where each unit of a prompt lies, which unit each token belongs to, and the
prompt that results when some units (or tokens) are deleted. Deletion works on the user's
text, as on the text page (:func:`explainers.adapters.words.edit_spans`): the rest keeps
its spacing and punctuation, and the edited prompt is tokenized afresh. A deleted template
field takes its baseline value instead (Captum's ``TextTemplateInput``: "" by default).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..errors import ExplainerError
from .words import edit_spans, group_words

Span = tuple[int, int]
#: the interpretable units of a prompt
UNITS = ("token", "word", "sentence", "field")
#: a sentence ends after ., !, ? (or their CJK forms) followed by whitespace, and at a line break
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f]+[\"'\u201d\u2019)\]]*(?=\s|$)|\n")


@dataclass(frozen=True)
class Prompt:
    """What the user asks the model: a text, or a template with fields.

    Args:
        text: the prompt (ignored when ``template`` is given).
        template: a ``str.format`` template whose fields are the units, e.g.
            ``"{name} was born in {city}."`` (positional ``{}`` fields take ``values`` as a list).
        values: the field values (a mapping, or a list for positional fields).
        baselines: what a removed field becomes (same shape as ``values``; default "": the
            field is deleted).
        chat: wrap the prompt in the tokenizer's chat template as one user message (None:
            whenever the tokenizer has one).
        max_new_tokens: length of the greedy continuation (None: the adapter's default).
    """

    text: str = ""
    template: str | None = None
    values: Mapping[str, str] | Sequence[str] | None = None
    baselines: Mapping[str, str] | Sequence[str] | None = None
    chat: bool | None = None
    max_new_tokens: int | None = None


@dataclass
class Filled:
    """A prompt's text and its template fields.

    Attributes:
        text: the prompt as the model reads it (before any chat template).
        names: one name per field ("name", or "0", "1" for positional fields).
        values, baselines: each field's value and removal value.
        spans: per field, the character spans of its occurrences in ``text``.
        parts: the template as literal strings and field indices, in order, so that an edit
            can refill it.
    """

    text: str
    names: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=list)
    spans: list[list[Span]] = field(default_factory=list)
    parts: list[str | int] = field(default_factory=list)

    @property
    def is_template(self) -> bool:
        return bool(self.names)

    def refill(self, values: Sequence[str]) -> str:
        """The template filled with ``values`` (one per field)."""
        return "".join(p if isinstance(p, str) else values[p] for p in self.parts)


def _as_list(what: str, given, names: list[str], positional: bool, default: str | None) -> list[str]:
    if given is None:
        if default is None:
            raise ExplainerError(f"the template has fields {names} but no {what}")
        return [default] * len(names)
    if positional:
        if isinstance(given, Mapping) or isinstance(given, str):
            raise ExplainerError(f"a template with {{}} fields takes its {what} as a list")
        given = [str(v) for v in given]
        if len(given) != len(names):
            raise ExplainerError(f"the template has {len(names)} fields but {len(given)} {what}")
        return given
    if not isinstance(given, Mapping):
        raise ExplainerError(f"a template with named fields takes its {what} as a mapping")
    missing = [n for n in names if n not in given and default is None]  # a baseline defaults to ""
    extra = sorted(str(k) for k in given if k not in names)
    if missing or extra:
        raise ExplainerError(f"the template's fields and its {what} disagree: "
                             + "; ".join(s for s in (f"no {what[:-1]} for {missing}" if missing else "",
                                                     f"no field for {extra}" if extra else "") if s))
    return [str(given.get(n, default)) for n in names]


def fill(prompt: Prompt) -> Filled:
    """The prompt's text and, for a template, where each field's value lies in it.

    Raises:
        ExplainerError: a template that does not parse, uses format specs or conversions,
            mixes ``{}`` with named fields, or whose fields and values disagree.
    """
    if prompt.template is None:
        if not isinstance(prompt.text, str):
            raise ExplainerError(f"the prompt must be a string, got {type(prompt.text).__name__}")
        return Filled(prompt.text)
    try:
        parsed = list(string.Formatter().parse(prompt.template))
    except ValueError as e:
        raise ExplainerError(f"the template does not parse: {e}") from None
    raw_parts: list[tuple[str, str]] = []  # ("text", literal) or ("field", name)
    auto = 0
    kinds = set()
    for literal, name, spec, conversion in parsed:
        if literal:
            raw_parts.append(("text", literal))
        if name is None:
            continue
        if spec or conversion:
            raise ExplainerError(f"template field {{{name}}}: format specs and conversions are not supported")
        if name == "":
            kinds.add("positional")
            name = str(auto)
            auto += 1
        elif name.isdigit():
            kinds.add("positional")
        elif name.isidentifier():
            kinds.add("named")
        else:
            raise ExplainerError(f"template field {{{name}}} is not a plain name")
        raw_parts.append(("field", name))
    if not kinds:
        raise ExplainerError("the template has no {} fields: give the prompt as text instead")
    if len(kinds) > 1:
        raise ExplainerError("the template mixes {} fields with named ones")
    positional = "positional" in kinds
    names = list(dict.fromkeys(n for kind, n in raw_parts if kind == "field"))
    if positional:  # values[i] fills {i}: every index from 0 up must be used
        names = sorted(names, key=int)
        if names != [str(i) for i in range(len(names))]:
            raise ExplainerError(f"the template's positional fields must be {{0}} to {{{len(names) - 1}}}")
    index = {n: i for i, n in enumerate(names)}
    parts: list[str | int] = [v if kind == "text" else index[v] for kind, v in raw_parts]
    values = _as_list("values", prompt.values, names, positional, None)
    baselines = _as_list("baselines", prompt.baselines, names, positional, "")
    text, spans = _render(parts, values, len(names))
    return Filled(text, names, values, baselines, spans, parts)


def _render(parts: Sequence[str | int], values: Sequence[str], n: int) -> tuple[str, list[list[Span]]]:
    out, spans, pos = [], [[] for _ in range(n)], 0
    for p in parts:
        piece = p if isinstance(p, str) else values[p]
        if not isinstance(p, str):
            spans[p].append((pos, pos + len(piece)))
        out.append(piece)
        pos += len(piece)
    return "".join(out), spans


# -- tokens and units --------------------------------------------------------------------------
def trim(text: str, span: Span) -> Span:
    """``span`` without the whitespace at its ends (byte-level BPE tokens carry their leading
    space: ``" Lisbon"``); an all-whitespace span becomes empty."""
    s, e = span
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return (s, e)


def word_of_tokens(text: str, spans: Sequence[Span]) -> list[int]:
    """The word of each (trimmed, non-empty) token span: a new word starts after whitespace,
    at punctuation and at each CJK character (:func:`explainers.adapters.words.group_words`)."""
    if not spans:
        return []
    gaps = [0] + [int(spans[i][0] > spans[i - 1][1]) for i in range(1, len(spans))]
    ids, total = [], 0
    for g in gaps:
        total += g
        ids.append(total)
    return group_words([text[s:e] for s, e in spans], ids, list(spans))


def sentence_spans(text: str) -> list[Span]:
    """Sentences of ``text`` (trimmed spans): a sentence ends after terminal punctuation that
    is followed by whitespace, and at every line break."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        s, e = trim(text, (start, m.end()))
        if e > s:
            out.append((s, e))
        start = m.end()
    s, e = trim(text, (start, len(text)))
    if e > s:
        out.append((s, e))
    return out


@dataclass
class Units:
    """The units of one prompt and the unit of each of its tokens.

    Attributes:
        labels: a display label per unit.
        unit_of_token: per token of the prompt (in order), its unit or -1 (whitespace, or
            a template's literal text: never perturbed).
        word_of_token: per token, its word (-1 as above); decides the spacing of edits.
        spans: per token, its trimmed character span in the prompt text.
        shared: unit pairs that share a token (a token baseline replaces it for both).
    """

    labels: list[str]
    unit_of_token: list[int]
    word_of_token: list[int]
    spans: list[Span]
    shared: list[tuple[int, int]] = field(default_factory=list)


def _overlap(a: Span, b: Span) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def units(filled: Filled, unit: str, token_spans: Sequence[Span], token_labels: Sequence[str]) -> Units:
    """Group the prompt's tokens into units.

    Args:
        filled: the prompt.
        unit: one of :data:`UNITS` (``field`` needs a template).
        token_spans: each prompt token's character span in ``filled.text`` (before trimming).
        token_labels: each token's display form (used for ``token`` units without text).

    Raises:
        ExplainerError: an unknown unit, ``field`` without a template, or a prompt with no
            unit at all (only whitespace).
    """
    if unit not in UNITS:
        raise ExplainerError(f"generation unit must be one of {list(UNITS)}, got {unit!r}")
    if unit == "field" and not filled.is_template:
        raise ExplainerError("unit 'field' needs a template prompt (template=..., values=...)")
    text = filled.text
    spans = [trim(text, s) for s in token_spans]
    real = [i for i, (s, e) in enumerate(spans) if e > s]
    words = word_of_tokens(text, [spans[i] for i in real])
    word_of = [-1] * len(spans)
    for i, w in zip(real, words):
        word_of[i] = w
    unit_of = [-1] * len(spans)
    shared: list[tuple[int, int]] = []
    if unit == "token":
        labels = []
        for i in real:
            unit_of[i] = len(labels)
            labels.append(text[spans[i][0]:spans[i][1]] or token_labels[i])
    elif unit == "word":
        labels = []
        for i, w in zip(real, words):
            if w >= len(labels):
                labels.append("")
            unit_of[i] = w
        for w in range(len(labels)):
            members = [spans[i] for i in real if word_of[i] == w]
            labels[w] = text[members[0][0]:members[-1][1]]
    else:
        targets = sentence_spans(text) if unit == "sentence" else None
        if unit == "sentence":
            regions = [[s] for s in targets]
            labels = [text[s:e] for s, e in targets]
        else:
            regions = filled.spans
            labels = [f"{n}={v}" for n, v in zip(filled.names, filled.values)]
        for i in real:
            hits = [u for u, rs in enumerate(regions) if any(_overlap(spans[i], r) for r in rs)]
            if hits:
                unit_of[i] = hits[0]
                shared += [(hits[0], h) for h in hits[1:]]
    if all(u < 0 for u in unit_of):
        what = "field values are empty" if unit == "field" else "prompt has no words"
        raise ExplainerError(f"nothing to attribute: the {what}")
    return Units(labels, unit_of, word_of, spans, sorted(set(shared)))


def edit(filled: Filled, parts: Units, deleted_tokens: set[int]) -> str:
    """The prompt text with the tokens ``deleted_tokens`` deleted.

    A template field whose tokens are all deleted takes its baseline value; a field partly
    deleted loses those characters only. Other text loses the deleted tokens' characters,
    with :func:`explainers.adapters.words.edit_spans`'s spacing (no two words fused, no
    double spaces).
    """
    if not deleted_tokens:
        return filled.text
    real = [i for i, (s, e) in enumerate(parts.spans) if e > s]
    if not filled.is_template:
        return edit_spans(filled.text, [parts.spans[i] for i in real], [parts.word_of_token[i] for i in real],
                          {k for k, i in enumerate(real) if i in deleted_tokens}, set(), "")
    values = list(filled.values)
    for f, occurrences in enumerate(filled.spans):
        everywhere = [i for i in real if any(_overlap(parts.spans[i], o) for o in occurrences)]
        gone = [i for i in everywhere if i in deleted_tokens]
        if not gone:
            continue
        if len(gone) == len(everywhere):
            values[f] = filled.baselines[f]
            continue
        # part of a field (an occlusion window): those characters of its first occurrence go
        start = occurrences[0][0]
        inside = [i for i in everywhere if _overlap(parts.spans[i], occurrences[0])]
        local = [(max(parts.spans[i][0], start) - start, min(parts.spans[i][1], occurrences[0][1]) - start)
                 for i in inside]
        values[f] = edit_spans(filled.values[f], local, [parts.word_of_token[i] for i in inside],
                               {k for k, i in enumerate(inside) if i in deleted_tokens}, set(), "")
    return filled.refill(values)
