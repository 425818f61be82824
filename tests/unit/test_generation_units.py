"""Prompts and units as pure string functions: template filling, sentences, words from
tokens, and the edited prompt a deletion makes."""

from __future__ import annotations

import pytest

from explainers import ExplainerError
from explainers.adapters.generation_units import Prompt, edit, fill, sentence_spans, units


def spans_of(text: str, pieces: list[str]) -> list[tuple[int, int]]:
    """Character spans of consecutive pieces (as a byte-level BPE gives them: leading spaces in)."""
    out, pos = [], 0
    for p in pieces:
        out.append((pos, pos + len(p)))
        pos += len(p)
    assert pos == len(text)
    return out


def test_fill_records_each_fields_spans():
    f = fill(Prompt(template="{name} was born in {city}; {name} left.", values={"name": "Ana", "city": "Porto"}))
    assert f.text == "Ana was born in Porto; Ana left."
    assert [[f.text[s:e] for s, e in sp] for sp in f.spans] == [["Ana", "Ana"], ["Porto"]]
    assert f.baselines == ["", ""] and f.refill(["X", "Y"]) == "X was born in Y; X left."
    g = fill(Prompt(template="{} and {}", values=["tea", "milk"]))
    assert g.names == ["0", "1"] and g.text == "tea and milk"


def test_sentences_end_at_terminal_punctuation_and_line_breaks():
    text = "Maria was born in Lisbon. She moved!  Why?\nA list"
    assert [text[s:e] for s, e in sentence_spans(text)] == ["Maria was born in Lisbon.", "She moved!",
                                                              "Why?", "A list"]
    other = "v1.2 is out"
    assert [other[s:e] for s, e in sentence_spans(other)] == ["v1.2 is out"]


def test_words_group_tokens_and_split_punctuation():
    text = "Maria's SmolLM was born."
    pieces = ["Maria", "'s", " Sm", "ol", "LM", " was", " born", "."]
    u = units(fill(Prompt(text)), "word", spans_of(text, pieces), pieces)
    assert u.labels == ["Maria's", "SmolLM", "was", "born", "."]
    assert u.unit_of_token == [0, 0, 1, 1, 1, 2, 3, 4]
    t = units(fill(Prompt(text)), "token", spans_of(text, pieces), pieces)
    assert t.labels == ["Maria", "'s", "Sm", "ol", "LM", "was", "born", "."]


def test_deleting_words_keeps_the_rest_of_the_text_as_written():
    text = "Maria was born in Lisbon, Portugal."
    pieces = ["Maria", " was", " born", " in", " Lisbon", ",", " Portugal", "."]
    f = fill(Prompt(text))
    u = units(f, "word", spans_of(text, pieces), pieces)
    assert edit(f, u, {4}) == "Maria was born in, Portugal."  # punctuation keeps hugging its word
    assert edit(f, u, {0}) == "was born in Lisbon, Portugal."
    assert edit(f, u, set(range(8))) == ""


def test_a_deleted_field_takes_its_baseline_and_literal_text_is_no_unit():
    f = fill(Prompt(template="{name} lives in {city}.", values={"name": "Tom", "city": "Oslo"},
                    baselines={"name": "Someone"}))
    pieces = ["Tom", " lives", " in", " Oslo", "."]
    u = units(f, "field", spans_of(f.text, pieces), pieces)
    assert u.unit_of_token == [0, -1, -1, 1, -1] and u.labels == ["name=Tom", "city=Oslo"]
    assert edit(f, u, {0}) == "Someone lives in Oslo."
    assert edit(f, u, {3}) == "Tom lives in ."


def test_baselines_must_match_the_fields():
    with pytest.raises(ExplainerError, match="no field for"):
        fill(Prompt(template="{a}", values={"a": "x"}, baselines={"b": "y"}))
    with pytest.raises(ExplainerError, match="format specs"):
        fill(Prompt(template="{a:>3}", values={"a": "x"}))
    with pytest.raises(ExplainerError, match="takes its values as a list"):
        fill(Prompt(template="{}", values={"a": "x"}))


def test_a_template_read_by_words_is_its_filled_text(tiny_lm):
    from explainers.adapters.generation import Prompt as P
    enc = tiny_lm.encode(P(template="{name} lives in {city}.", values={"name": "Tom", "city": "Oslo"}),
                         unit="word", target=" fish")
    assert enc.feature_labels == ["Tom", "lives", "in", "Oslo", "."]
    assert tiny_lm.deleted_text(enc, {1}) == "Tom in Oslo."
