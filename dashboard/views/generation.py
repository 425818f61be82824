"""Generation view: why did the language model continue the prompt this way?

The prompt's units highlighted by their total attribution (to the log-probability of the
whole target), a matrix of units x target tokens under it, the greedy continuation and the
target's tokens in the strip above, and a what-if editor that deletes clicked units and
shows the new continuation beside the old.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Sequence

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from cache.generation_model import FACT_PROMPTS, TEMPLATE_SAMPLE
from explainers.adapters.generation import Prompt
from explainers.adapters.generation_units import fill

from .. import models, render
from ..inputs import prepare
from ..state import BIND, digest
from ..types import Input
from .base import Apply, ModalityView, PickedInput, model_source, register_view

#: what the panels explain (the options are their own labels: Streamlit binds a radio's label
#: to the URL, so links read ``gen.target_mode=typed+target``)
GREEDY, TYPED, CONTRAST = "greedy continuation", "typed target", "contrast (A vs B)"
UNITS = {"word": "words", "token": "tokens", "sentence": "sentences", "field": "template fields"}
WRAP_PILLS = ("<style>[data-testid='stButtonGroup'] [role='toolbar']"
              "{flex-wrap: wrap; overflow: visible; row-gap: .35rem}</style>")


def _selection_key(enc) -> str:
    return "gcf.sel." + digest(enc.key)


def _use_sample() -> None:
    sample = st.session_state.get("gen.sample")
    if sample is not None:
        prompt, target = FACT_PROMPTS[int(sample)]
        st.session_state["gen.prompt"] = prompt
        st.session_state["gen.target"] = target


def _pairs(text: str) -> dict[str, str]:
    """``name = value`` lines as a mapping (a line without ``=`` is skipped)."""
    out = {}
    for line in (text or "").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip():
            out[name.strip()] = value.strip()
    return out


def _lines(values: dict[str, str]) -> str:
    return "\n".join(f"{k} = {v}" for k, v in values.items())


def _pills_changed(enc) -> None:
    st.session_state[_selection_key(enc)] = sorted(st.session_state.get("gcf.pills." + digest(enc.key)) or [])


def _reset(enc) -> None:
    st.session_state[_selection_key(enc)] = []


def token_strip(tokens: Sequence[str], logps: Sequence[float] | None = None) -> str:
    """Target tokens as escaped chips, each with its probability when given."""
    chips = []
    for i, t in enumerate(tokens):
        shown = t.replace("\n", "\\n") or " "
        p = "" if logps is None else f"<sub style='color:#666'> {np.exp(logps[i]):.0%}</sub>"
        chips.append("<span style='border:1px solid #ccc;border-radius:4px;padding:1px 4px;"
                     f"margin:1px;white-space:pre;display:inline-block'>{render.md(shown)}{p}</span>")
    return "<div style='line-height:2'>" + "".join(chips) + "</div>"


@register_view
class GenerationView(ModalityView):
    """A causal LM's prompt, target and continuation; a unit x target-token matrix per method."""

    modality = "generation"
    default_scale = "per panel"
    auto_metrics = ("agreement",)  # faithfulness and flips re-run the LM hundreds of times
    default_methods = ("feature_ablation", "integrated_gradients", "target_attention")
    unit_choice = "word"
    chat = True
    max_new_tokens = 12

    # -- sidebar and input ----------------------------------------------------------------------
    def model(self):
        """Sidebar: the default SmolLM2-135M-Instruct, or a local causal-LM folder / GGUF file."""
        with st.sidebar:
            src = model_source("Language model", "custom", "a local Hugging Face folder or .gguf file",
                               self.modality)
            spec = "generation"
            if src == "custom":
                spec = st.text_input("Folder or GGUF file", key="model", bind=BIND,
                                     placeholder="e.g. /models/qwen2-0.5b").strip()
                st.caption("Llama, Mistral, Qwen2/3 or GPT-2 families; safetensors weights only, "
                           "no remote code.")
        if not spec:
            st.info("Type a local model folder or a .gguf file in the sidebar.")
            st.stop()
        return models.require_model(*models.get_model(spec, "generation"))

    def sidebar_options(self) -> dict:
        self.unit_choice = st.radio("Units", list(UNITS), key="gen.unit", bind=BIND,
                                    horizontal=True, help="What one attributed feature is. Template "
                                    "fields need a template prompt.")
        self.chat = st.toggle("Chat template", value=True, key="gen.chat", bind=BIND,
                              help="Wrap the prompt as one user message in the model's chat template "
                                   "(its tokens are never attributed).")
        self.max_new_tokens = int(st.number_input("Continuation length (tokens)", 1, 64, 12, key="gen.new",
                                                  bind=BIND, help="max_new_tokens of the greedy continuation"))
        return {"unit": self.unit_choice}

    def unit(self, adapter) -> str:
        return UNITS[self.unit_choice]

    def input_picker(self, adapter) -> PickedInput:
        mode = st.radio("Prompt", ["text", "template"], key="gen.mode", bind=BIND, horizontal=True,
                        help="template: a str.format template whose {name} fields are the units")
        if mode == "template":
            template, values, baselines = TEMPLATE_SAMPLE
            t = st.text_input("Template ({name} fields are the units)", value=template, key="gen.template",
                              bind=BIND)
            c1, c2 = st.columns(2)
            vals = _pairs(c1.text_area("Field values (name = value)", _lines(values), key="gen.values",
                                       height=100))
            base = _pairs(c2.text_area("Field baselines (what a removed field becomes; empty: deleted)",
                                       _lines(baselines), key="gen.baselines", height=100))
            prompt = Prompt(template=t, values=vals, baselines=base, chat=self.chat,
                            max_new_tokens=self.max_new_tokens)
        else:
            c1, c2 = st.columns([3, 1])
            c2.selectbox("Samples", range(len(FACT_PROMPTS)), index=None, key="gen.sample",
                         on_change=_use_sample, placeholder="(pick a sample)",
                         format_func=lambda i: FACT_PROMPTS[i][0][:40] + "…")
            text = c1.text_area("Prompt", value=FACT_PROMPTS[0][0], key="gen.prompt", bind=BIND, height=80)
            prompt = Prompt(text, chat=self.chat, max_new_tokens=self.max_new_tokens)
        c1, c2, c3 = st.columns([2, 2, 2])
        how = c1.radio("Explain", [GREEDY, TYPED, CONTRAST], key="gen.target_mode", bind=BIND,
                       help="the log-probability of the model's own greedy continuation, of a text you "
                            "type, or of A minus that of B")
        target = contrast = None
        if how in (TYPED, CONTRAST):
            target = c2.text_input("Target A (mind the leading space)", value=FACT_PROMPTS[0][1],
                                   key="gen.target", bind=BIND)
        if how == CONTRAST:
            contrast = c3.text_input("Contrast B", value=" Berlin", key="gen.contrast", bind=BIND)
        raw = {"prompt": prompt, "target": target, "contrast": contrast}
        key = (repr(prompt), target, contrast, self.unit_choice)
        return PickedInput(raw, key, prompt.text or prompt.template)

    def encode(self, adapter, raw: Any):
        return adapter.encode(raw["prompt"], unit=self.unit_choice, target=raw["target"],
                              contrast=raw["contrast"])

    # -- the strip ------------------------------------------------------------------------------
    def prediction_strip(self, adapter, original: Input, edited: Input | None) -> int:
        """The explained value, the target's tokens with their probabilities, the greedy
        continuation (and, for an edit, the new continuation and the change)."""
        enc, p = original.enc, original.prediction
        info = adapter.output_info(enc)
        c1, c2 = st.columns([1, 2])
        with c1:
            st.metric(info["explained"], f"{p.value:.3f}",
                      help="sum over the target's tokens of log p(token | prompt, earlier tokens); "
                           "every panel explains this number")
            if edited is not None:
                change = edited.prediction.value - p.value
                st.metric("On the edited prompt", f"{edited.prediction.value:.3f}", delta=f"{change:+.3f}",
                          delta_color="normal")
        with c2:
            n = adapter.n_target(enc)
            source = "greedy continuation" if info["target"]["source"] == "greedy" else "target"
            st.markdown(f"**Explained {source}** (probability of each token):")
            st.html(token_strip(info["target"]["tokens"], p.outputs[1:1 + n]))
            if info["contrast"]:
                st.markdown("**Contrast B:**")
                st.html(token_strip(info["contrast"]["tokens"], p.outputs[1 + n:-1]))
            st.markdown(f"**The model continues:** {render.md(info['continuation']['text'])}")
            if edited is not None:
                new = adapter.output_info(edited.enc)["continuation"]["text"]
                same = new == info["continuation"]["text"]
                st.markdown(f"**On the edit it continues:** {render.md(new)}"
                            + (" *(unchanged)*" if same else " :red[**(changed)**]"))
        for w in enc.warnings:
            st.caption(f":material/info: {render.md(w)}")
        return 0

    # -- what-if --------------------------------------------------------------------------------
    def what_if(self, adapter, original: Input) -> Input | None:
        """Click units to delete them; the prompt is re-encoded, the same target scored and the
        greedy continuation made again."""
        enc = original.enc
        sel_key, pill_key = _selection_key(enc), "gcf.pills." + digest(enc.key)
        selected = st.session_state.get(sel_key, [])
        st.session_state[pill_key] = list(selected)
        st.html(WRAP_PILLS)
        st.pills(f"Click {self.unit(adapter)} to delete them", list(range(enc.n_features)),
                 selection_mode="multi", format_func=lambda i: enc.feature_labels[i], key=pill_key,
                 on_change=_pills_changed, args=(enc,))
        st.button("Reset", on_click=_reset, args=(enc,), key="gcf.reset", icon=":material/restart_alt:")
        if not selected:
            st.caption("No edit yet: click units above to delete them from the prompt.")
            return None
        prompt = adapter.edit_units(enc, selected)
        shown = fill(prompt).text
        st.html(render.diff_html(enc.raw, shown))
        raw = {"prompt": prompt, "target": enc.context["target_ids"].tolist(),
               "contrast": enc.context["contrast_ids"].tolist() if adapter.n_contrast(enc) else None}
        labels = [enc.feature_labels[i] for i in selected]
        return prepare(adapter, raw, key=(repr(prompt), raw["target"], raw["contrast"], self.unit_choice),
                       name="edited", note="deleted: " + ", ".join(labels),
                       edit={"deleted_units": labels, "edited_prompt": shown},
                       encode=lambda r: self.encode(adapter, r))

    def apply_flip(self, adapter, original: Input) -> Apply:
        """Load a flip into the editor: its units, clicked (deleted)."""
        enc = original.enc

        def apply(indices: Sequence[int], *_args: Any, **_kwargs: Any) -> None:
            st.session_state[_selection_key(enc)] = sorted(int(i) for i in indices)
        return apply

    # -- drawing ----------------------------------------------------------------------------------
    def legend(self, settings) -> tuple[tuple[str, ...], str]:
        return ("positive", "negative"), ("attributions to log-probabilities (nats): red raises the "
                                          "target's probability, blue lowers it")

    def draw(self, adapter, inp, a, scale, settings) -> None:
        st.html(render.token_html(inp.enc.feature_labels, a.scores, scale))
        if a.matrix is not None:
            st.altair_chart(self.matrix_chart(adapter, inp.enc, a), width="stretch")

    def matrix_chart(self, adapter, enc, a) -> alt.Chart:
        """Units (rows) x target tokens (columns), diverging colours around 0."""
        columns = [f"{j + 1}: {t!r}"[:24] for j, t in enumerate(adapter.column_labels(enc))]
        units = [f"{i + 1}: {u}"[:28] for i, u in enumerate(enc.feature_labels)]
        m = np.asarray(a.matrix, dtype=np.float64)
        top = float(np.abs(m).max()) or 1.0
        frame = pd.DataFrame([{"unit": units[i], "token": columns[j], "score": float(m[j, i])}
                              for j in range(m.shape[0]) for i in range(m.shape[1])])
        return alt.Chart(frame).mark_rect().encode(
            x=alt.X("token:N", sort=columns, title="target token", axis=alt.Axis(labelAngle=-40, labelLimit=140)),
            y=alt.Y("unit:N", sort=units, title=None, axis=alt.Axis(labelLimit=160)),
            color=alt.Color("score:Q", scale=alt.Scale(domain=[-top, top], range=[render.NEG_HEX, "#ffffff",
                                                                                render.POS_HEX]),
                            legend=alt.Legend(title="score", orient="bottom")),
            tooltip=["unit", "token", alt.Tooltip("score:Q", format="+.4f")],
        ).properties(height=max(120, 16 * len(units)))

    def scores_csv(self, adapter, enc, a) -> bytes:
        """One row per unit: its total score, then one column per target token."""
        buf = io.StringIO()
        w = csv.writer(buf)
        tokens = adapter.column_labels(enc)
        w.writerow(["index", "unit", "total"] + tokens)
        m = np.asarray(a.matrix) if a.matrix is not None else np.zeros((0, enc.n_features))
        for i, (u, s) in enumerate(zip(enc.feature_labels, np.asarray(a.scores).tolist())):
            w.writerow([i, u, f"{s:.8g}"] + [f"{v:.8g}" for v in m[:, i]])
        return buf.getvalue().encode()

    def panel_png(self, adapter, inp, a, scale, settings, title) -> bytes:
        return render.text_png(inp.enc.feature_labels, a.scores, scale, title=title)

    # -- review ---------------------------------------------------------------------------------
    def review_inputs(self, adapter) -> list[tuple[Any, Any]]:
        default = "\n".join(f"{p}\t{t.strip()}" for p, t in FACT_PROMPTS)
        text = st.text_area("Prompts, one per line (optionally a tab and the expected answer)", default,
                            key="rv.prompts", height=150)
        items, expected = [], {}
        for i, line in enumerate(t for t in text.splitlines() if t.strip()):
            prompt, _, answer = line.partition("\t")
            items.append((i, prompt.strip()))
            expected[i] = answer.strip() or None
        st.session_state["rv.expected"] = expected
        return items

    def true_label(self, adapter, ident: Any, raw: Any) -> str | None:
        return (st.session_state.get("rv.expected") or {}).get(ident)

    def correct(self, record: dict) -> bool | None:
        """The greedy continuation contains the expected answer (ignoring case)."""
        truth = record.get("true_label")
        if not truth or "output" not in record:
            return None
        return truth.casefold() in record["output"]["continuation"]["text"].casefold()

    def link_params(self, record: dict) -> dict | None:
        return {"gen.prompt": record["input"]} if isinstance(record.get("input"), str) else None
