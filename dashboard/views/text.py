"""Text view: highlighted tokens; click tokens to delete or mask them, or type an edit."""

from __future__ import annotations

from typing import Any, Sequence

import streamlit as st

from cache.models import TEXT_SAMPLES
from explainers.adapters.text import UNK_WARN_SHARE

from .. import models, render
from ..attention_view import attention_section
from ..inputs import prepare
from ..state import BIND, digest
from ..types import Caveat, Input
from .base import Apply, ModalityView, PickedInput, model_source, prediction_change, register_view


#: above this many tokens, the token pills are paged and the disagreement text folds away
LONG_TEXT = 60
#: Streamlit lays pills out as one row that scrolls sideways; a text's words should wrap
#: like the text (a static style, no user content)
WRAP_PILLS = ("<style>[data-testid='stButtonGroup'] [role='toolbar']"
              "{flex-wrap: wrap; overflow: visible; row-gap: .35rem}</style>")


def _token_key(enc) -> str:
    return "cf.tok." + digest(enc.raw, enc.extra.get("unit"))


def _selection_key(enc) -> str:
    # a plain state key, not a widget's: it outlives the pills of pages not on screen
    return "cf.sel." + digest(enc.raw, enc.extra.get("unit"))


def _pages(enc) -> list[range]:
    n = enc.n_features
    return [range(i, min(i + LONG_TEXT, n)) for i in range(0, n, LONG_TEXT)] or [range(0)]


def _apply_selection(adapter, enc, selected) -> None:
    """Store the clicked tokens and write the edit they make into the edit box."""
    sel = sorted({int(i) for i in selected})
    st.session_state[_selection_key(enc)] = sel
    if not sel:
        st.session_state["edit"] = ""
    elif st.session_state.get("cf.action", "delete") == "delete":
        st.session_state["edit"] = adapter.edit_tokens(enc, delete=sel)
    else:
        st.session_state["edit"] = adapter.edit_tokens(enc, mask=sel)


def _tokens_changed(adapter, enc, page: int) -> None:
    shown = set(_pages(enc)[page])
    others = [i for i in st.session_state.get(_selection_key(enc), []) if i not in shown]
    _apply_selection(adapter, enc, others + list(st.session_state.get(f"{_token_key(enc)}.{page}") or []))


def _action_changed(adapter, enc) -> None:
    _apply_selection(adapter, enc, st.session_state.get(_selection_key(enc), []))


def _reset(enc) -> None:
    st.session_state["edit"] = ""
    st.session_state[_selection_key(enc)] = []


def _start(text: str) -> None:
    st.session_state["edit"] = text


def _use_sample() -> None:
    sample = st.session_state.get("sample")
    if sample:
        st.session_state["text"] = sample


def text_lines(data: str) -> list[str]:
    """Texts from a TSV/TXT (first column; a ``text`` header row is skipped)."""
    lines = data.splitlines()
    if lines and lines[0].lower().startswith("text\t"):
        lines = lines[1:]
    return [t for t in (line.split("\t")[0].strip() for line in lines) if t]


@register_view
class TextView(ModalityView):
    """Token highlights (one shared colour scale), token-click and free-text what-if edits."""

    modality = "text"
    auto_metrics = ("agreement", "faithfulness", "flip")
    samples: Sequence[str] = TEXT_SAMPLES

    def model(self):
        """Sidebar: the default sentiment model or any Hugging Face id / local folder."""
        with st.sidebar:
            src = model_source("Text model", "custom", "a Hugging Face id or a local folder", self.modality)
            spec = "text"
            if src == "custom":
                spec = st.text_input("Model id or folder", key="model", bind=BIND,
                                     placeholder="e.g. /models/my-bert-classifier").strip()
                st.caption("A sequence classifier loadable by transformers (no remote code). "
                           "Hub ids need the files in the local Hugging Face cache (offline).")
        if not spec:
            st.info("Type a Hugging Face model id or a local folder in the sidebar.")
            st.stop()
        return models.require_model(*models.get_model(spec, "text"))

    text_unit = "word"  # set by the sidebar: "word" or "piece"

    def sidebar_options(self) -> dict:
        units = {"word": "words", "piece": "word pieces"}
        self.text_unit = st.radio("Features", list(units), format_func=units.get, key="unit", bind=BIND,
                             horizontal=True,
                             help="Words: word pieces merged, each word's score the sum of its pieces; "
                                  "clicks, deletions and the Compare metrics act on whole words. Word "
                                  "pieces: the tokenizer's own units.")
        return {"unit": self.text_unit}

    def unit(self, adapter) -> str:
        return "words" if self.text_unit == "word" else "word pieces"

    def encode(self, adapter, raw: Any):
        return adapter.encode(raw, unit=self.text_unit)

    def caveat(self, adapter, inp: Input) -> Caveat | None:
        """Text the model cannot read: more than :data:`UNK_WARN_SHARE` of its content
        tokens (and at least 2) are the unknown token (the adapter's rule,
        ``unknown_warning``); its maps are then about [UNK] placeholders, not the words."""
        ids = inp.enc.context["input_ids"][0].tolist()
        found = adapter.unknown_warning(ids)
        if not found:
            return None
        name = adapter.tokenizer.unk_token or "[UNK]"
        content = [i for i in ids if i not in adapter.special_ids]
        n_unk = sum(1 for i in content if i == adapter.tokenizer.unk_token_id)
        return Caveat(f"{n_unk} of {len(content)} tokens are {name}",  # markdown-escaped where shown
                      f"**The model cannot read this text.** {render.md(found[0])}. Every map, verdict "
                      f"and export of it below is about {render.md(name)} placeholders. (The rule: more "
                      f"than {UNK_WARN_SHARE:.0%} of the content tokens, and at least 2, are "
                      f"{render.md(name)}.)")

    def input_picker(self, adapter) -> PickedInput:
        c1, c2 = st.columns([3, 1])
        with c2:
            st.selectbox("Samples", [""] + list(self.samples), key="sample", on_change=_use_sample,
                         format_func=lambda s: s if s else "(pick a sample)")
        with c1:
            text = st.text_area("Text to explain", value=self.samples[0], key="text", bind=BIND, height=80)
        return PickedInput(text, (text, self.text_unit), text)

    def what_if(self, adapter, original: Input) -> Input | None:
        """Click tokens to delete or mask them, or type an edited text freely."""
        enc = original.enc
        shown = render.display_tokens(enc.feature_labels, enc.extra.get("spans"))
        c1, c2 = st.columns([4, 1])
        with c2:
            st.radio(f"Clicked {self.text_unit}s are", ["delete", "mask"], key="cf.action", on_change=_action_changed,
                     args=(adapter, enc),
                     format_func=lambda a: "deleted" if a == "delete" else "replaced by [MASK]")
        with c1:
            self._token_pills(adapter, enc, shown)
        edit = st.text_area("Edited text (clicks fill it in; you can also type freely)", key="edit", bind=BIND,
                            height=68, placeholder="No edit yet: click tokens above, or type a variant of the text.")
        b1, b2, _ = st.columns([1, 1, 4])
        b1.button("Copy original", on_click=_start, args=(enc.raw,), key="cf.start",
                  icon=":material/content_copy:")
        b2.button("Reset", on_click=_reset, args=(enc,), key="cf.reset", icon=":material/restart_alt:")
        edit = (edit or "").strip()
        if not edit or edit == enc.raw:
            st.caption("Original and edited inputs are the same; edit to see before/after maps.")
            return None
        st.html(render.diff_html(enc.raw, edit))
        edited = prepare(adapter, edit, key=(edit, self.text_unit), name="edited", note="text edited",
                         edit={"original_text": enc.raw, "edited_text": edit},
                         encode=lambda raw: self.encode(adapter, raw))
        if edited is not None:
            prediction_change(original, edited)
        return edited

    @staticmethod
    def _token_pills(adapter, enc, shown) -> None:
        """The tokens as clickable pills; a long text is paged (LONG_TEXT tokens a page), and
        the selection spans pages."""
        pages = _pages(enc)
        page = 0
        if len(pages) > 1:
            page = st.selectbox("Features", range(len(pages)), key="cf.page",
                                format_func=lambda p: f"{pages[p].start + 1}-{pages[p].stop} of {enc.n_features}")
        key = f"{_token_key(enc)}.{page}"
        selected = st.session_state.get(_selection_key(enc), [])
        st.html(WRAP_PILLS)
        st.session_state[key] = [i for i in selected if i in pages[page]]
        st.pills(f"Click {enc.extra.get('unit', 'token')}s to edit them", list(pages[page]), selection_mode="multi",
                 format_func=lambda i: shown[i][0] or enc.feature_labels[i], key=key,
                 on_change=_tokens_changed, args=(adapter, enc, page))
        if len(pages) > 1 and selected:
            st.caption(f"{len(selected)} selected across pages.")

    def apply_flip(self, adapter, original: Input) -> Apply:
        """Load the flip's edit: the words it removes, clicked, and the very text the metric
        scored in the edit box (so the edited prediction is the one the metric reported)."""
        enc = original.enc

        def apply(indices: Sequence[int], _features: Sequence[str], _baseline: str | None = None,
                  perturbation: str | None = None, edited: str | None = None) -> None:
            st.session_state["cf.action"] = "mask" if perturbation == "mask" else "delete"
            _apply_selection(adapter, enc, indices)
            if edited is not None:
                st.session_state["edit"] = edited
        return apply

    def extra_sections(self, adapter, original: Input, edited: Input | None) -> None:
        """The Attention section: the model's own query x key weights (``attention_view``)."""
        attention_section(adapter, original, edited)

    def draw(self, adapter, inp, a, scale, settings) -> None:
        st.html(render.token_html(inp.enc.feature_labels, a.scores, scale, spans=inp.enc.extra.get("spans")))

    def draw_disagreement(self, adapter, inp, disagreement, scale) -> None:
        html = render.token_html(inp.enc.feature_labels, disagreement, scale, title_prefix="disagreement ",
                                 colour=render.AMBER, spans=inp.enc.extra.get("spans"))
        if inp.enc.n_features <= LONG_TEXT:
            st.html(html)
        else:  # hundreds of tokens would run far past the rest of the page
            with st.expander(f"Disagreement over all {inp.enc.n_features} tokens"):
                st.html(html)

    def panel_png(self, adapter, inp, a, scale, settings, title) -> bytes:
        return render.text_png(inp.enc.feature_labels, a.scores, scale, title=title,
                               spans=inp.enc.extra.get("spans"))

    def review_inputs(self, adapter) -> list[tuple[Any, Any]]:
        upload = st.file_uploader("Texts (TSV or TXT; first column, one per line)", type=["tsv", "txt"],
                                  key="rv.file")
        if upload is not None:
            texts = text_lines(upload.getvalue().decode("utf-8", errors="replace"))
        else:
            texts = text_lines(st.text_area("Or type texts, one per line", "\n".join(self.samples),
                                            key="rv.texts", height=150))
        return list(enumerate(texts))

    def link_params(self, record: dict) -> dict | None:
        return {"text": record["input"]}
