"""Words from word pieces, and whole-word edits of the user's own text.

A user thinks in words, a tokenizer in pieces ("un", "##fl", "##in", "##ching", "##ly").
These pure functions decide which pieces form one word and rebuild an edited text from
character spans, so that deleting a word never fuses its neighbours ("production 's
austere" minus "'" is "production s austere", not "productions austere").

Word rules, in this order: a new word starts where the tokenizer's ``word_ids`` change,
where whitespace separates two pieces, and at every punctuation or symbol piece and every
CJK character (Chinese text has no spaces: each character is a word).
"""

from __future__ import annotations

import unicodedata
from typing import Sequence

Span = tuple[int, int]

#: CJK ideograph blocks (the ranges BERT's tokenizer splits into single characters)
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_cjk(text: str) -> bool:
    """True when ``text`` is non-empty and every character is a CJK ideograph."""
    return bool(text) and all(any(lo <= ord(c) <= hi for lo, hi in _CJK_RANGES) for c in text)


def is_punct(text: str) -> bool:
    """True when ``text`` is non-empty and made only of punctuation or symbol characters
    (Unicode categories P* and S*: ``.``, ``'``, ``$``, emoji)."""
    return bool(text) and all(unicodedata.category(c)[0] in "PS" for c in text)


def _standalone(text: str) -> bool:
    return is_punct(text) or is_cjk(text)


def piece_text(token: str) -> str:
    """A piece's surface form without WordPiece/SentencePiece/byte-BPE markers."""
    for marker in ("##", "\u2581", "\u0120"):
        if token.startswith(marker) and len(token) > len(marker):
            return token[len(marker):]
    return token


def group_words(texts: Sequence[str], word_ids: Sequence[int | None] | None = None,
                spans: Sequence[Span] | None = None, tokens: Sequence[str] | None = None
                ) -> list[int]:
    """The word index of each content piece.

    Args:
        texts: each piece's surface text (from the user's text where spans exist).
        word_ids: the fast tokenizer's word id per piece, or None.
        spans: character spans per piece, or None (then whitespace is not known).
        tokens: the raw tokens; without ``word_ids`` a WordPiece ``##`` prefix marks a
            continuation, and anything else starts a word.

    Returns:
        A list as long as ``texts``, starting at 0 and increasing by 0 or 1 per piece.
    """
    out: list[int] = []
    for i, text in enumerate(texts):
        if i == 0:
            out.append(0)
            continue
        if word_ids is not None:
            new = word_ids[i] != word_ids[i - 1]
        else:
            new = not (tokens is not None and tokens[i].startswith("##"))
        if spans is not None and spans[i][0] > spans[i - 1][1]:
            new = True  # whitespace (or a dropped character) between the pieces
        if _standalone(text) or _standalone(texts[i - 1]):
            new = True
        out.append(out[-1] + int(new))
    return out


def merge_spans(spans: Sequence[Span], word_of: Sequence[int]) -> list[Span]:
    """One character span per word: from its first piece's start to its last piece's end."""
    n = (max(word_of) + 1) if word_of else 0
    out: list[list[int]] = [[-1, -1] for _ in range(n)]
    for (s, e), w in zip(spans, word_of):
        if out[w][0] < 0:
            out[w][0] = s
        out[w][1] = e
    return [(s, e) for s, e in out]


def _separator(text: str, a: Span, b: Span, same_word: bool) -> str:
    """What joins kept item ``a`` to kept item ``b`` once everything between is deleted."""
    lo = a[1]
    k = b[0]
    while k > lo and text[k - 1].isspace():
        k -= 1
    if k < b[0]:  # whitespace right before b: keep it ("was bland ." -> "was .")
        return text[k:b[0]]
    j = a[1]
    while j < b[0] and text[j].isspace():
        j += 1
    b_text = text[b[0]:b[1]]
    if j > a[1]:  # whitespace after a only: punctuation attaches ("was bland," -> "was,")
        return "" if is_punct(b_text) else text[a[1]:j]
    a_text = text[a[0]:a[1]]
    if same_word or is_cjk(a_text) or is_cjk(b_text) or is_punct(a_text) or is_punct(b_text):
        return ""
    return " "  # two words that touched only through what was deleted: never fuse them


def edit_spans(text: str, spans: Sequence[Span], word_of: Sequence[int], delete: set[int],
               mask: set[int], mask_token: str) -> str:
    """``text`` with the items at ``spans`` deleted or replaced by ``mask_token``.

    Items are pieces or words (``word_of`` gives each item's word, so that pieces of one
    word rejoin without a space). Text between two kept items stays as it was; where
    items were deleted between them, :func:`_separator` decides the spacing. The result
    is stripped.
    """
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    out: list[str] = []
    prev: int | None = None
    pending = False
    for i in order:
        if i in delete:
            pending = True
            continue
        s, e = spans[i]
        if prev is None:
            out.append("" if pending else text[:s])
        elif pending:
            out.append(_separator(text, spans[prev], spans[i], word_of[prev] == word_of[i]))
        else:
            out.append(text[spans[prev][1]:s])
        out.append(mask_token if i in mask else text[s:e])
        prev, pending = i, False
    if prev is not None and not pending:
        out.append(text[spans[prev][1]:])
    return "".join(out).strip()
