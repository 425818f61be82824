"""The Text page's Attention section: one layer's query x key attention as an Altair heat map.

The weights come from :func:`explainers.methods.attention.attention_matrix` (the model's own
weights, from its private eager-attention copy under the model lock); this module only
picks the layer and head and draws. Tokens reach the chart as data (Vega-Lite draws labels
as text) and captions through :func:`render.md`, never as raw HTML.
"""

from __future__ import annotations

from typing import Sequence

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from explainers import ExplainerError
from explainers.adapters.text_attention import describe_pooling
from explainers.methods.attention import attention_matrix

from . import render
from .types import Input
from .state import BIND, memo

#: at most this many tokens on each axis (Altair draws every cell; 60 x 60 stays quick)
MAX_TOKENS = 60
HIGHLIGHT = "#e4572e"


def _weights(adapter, inp: Input):
    """Every layer's weights for ``inp``, memoised per session (one forward pass)."""
    return memo("attention", (adapter.result_key, inp.enc.key),
                lambda: attention_matrix(adapter, inp.enc), size=8)


def heatmap_frame(matrix: np.ndarray, tokens: Sequence[str], start: int = 0) -> pd.DataFrame:
    """Long-form cells of a ``[T, T]`` matrix; axis labels ``"i token"`` keep repeated
    tokens apart and sort in position order."""
    labels = [f"{start + i} {t}" for i, t in enumerate(tokens)]
    q, k = np.meshgrid(np.arange(len(tokens)), np.arange(len(tokens)), indexing="ij")
    return pd.DataFrame({"query": [labels[i] for i in q.ravel()], "key": [labels[j] for j in k.ravel()],
                         "weight": matrix.ravel().astype(float), "is_cls": (q.ravel() + start) == 0})


def cell_size(n: int) -> int:
    """Pixels per cell: big enough to hover, small enough for 60 tokens."""
    return 26 if n <= 20 else 18 if n <= 40 else 13


def heatmap(frame: pd.DataFrame, order: Sequence[str], title: str) -> alt.LayerChart:
    """Query rows x key columns, darker = more attention; the [CLS] row outlined."""
    step = cell_size(len(order))
    base = alt.Chart(frame).encode(
        x=alt.X("key:N", sort=list(order), title="key (attended to)",
                axis=alt.Axis(labelAngle=-45, labelLimit=120, orient="top", labelOverlap=False)),
        y=alt.Y("query:N", sort=list(order), title="query (attending)",
                axis=alt.Axis(labelLimit=120, labelOverlap=False)))
    cells = base.mark_rect().encode(
        color=alt.Color("weight:Q", scale=alt.Scale(scheme="blues", domain=[0, float(frame["weight"].max()) or 1.0]),
                        title="weight"),
        tooltip=[alt.Tooltip("query:N"), alt.Tooltip("key:N"), alt.Tooltip("weight:Q", format=".3f")])
    cls_row = base.transform_filter(alt.datum.is_cls).mark_rect(
        fill=None, stroke=HIGHLIGHT, strokeWidth=1.5)
    return alt.layer(cells, cls_row).properties(width=step * len(order), height=step * len(order),
                                               title=title)


def _layer_label(i: int, n: int) -> str:
    return f"{i} (last)" if i == n else str(i)


def attention_section(adapter, original: Input, edited: Input | None) -> None:
    """Draw the section: input choice (original or edit), layer and head pickers, the heat
    map with the [CLS] row outlined, and a caption on which rows this model pools."""
    st.subheader("Attention")
    inp = original
    if edited is not None:
        which = st.radio("Attention of", ["original", "edited"], key="att.input", horizontal=True)
        inp = edited if which == "edited" else original
    try:
        weights, tokens, pooled = _weights(adapter, inp)
    except ExplainerError as e:
        st.info(f"No attention view for this model: {render.md(str(e))}")
        return
    n_layers, n_heads = weights.shape[:2]
    c1, c2, c3 = st.columns([1, 1, 2])
    layer = c1.selectbox("Layer", list(range(1, n_layers + 1)), index=n_layers - 1, key="att.layer",
                         bind=BIND, format_func=lambda i: _layer_label(i, n_layers))
    head = c2.selectbox("Head", ["mean"] + [str(h) for h in range(1, n_heads + 1)], key="att.head",
                        bind=BIND, format_func=lambda h: "mean of heads" if h == "mean" else f"head {h}")
    matrix = weights[layer - 1].mean(0) if head == "mean" else weights[layer - 1][int(head) - 1]
    t = len(tokens)
    start = 0
    if t > MAX_TOKENS:
        start = c3.number_input(f"First token shown ({MAX_TOKENS} of {t})", 0, t - MAX_TOKENS, 0,
                                step=10, key="att.start")
    shown = slice(start, start + MAX_TOKENS)
    frame = heatmap_frame(matrix[shown, shown], tokens[shown], start)
    order = list(dict.fromkeys(frame["key"]))
    what = "mean of heads" if head == "mean" else f"head {head}"
    side = cell_size(len(order)) * len(order)
    # explicit pixels: Streamlit fits charts to their box, and the cells should stay square
    st.altair_chart(heatmap(frame, order, f"Layer {_layer_label(layer, n_layers)}, {what}"),
                    width=side + 230, height=side + 150)
    rows = describe_pooling(adapter.module)
    n_rows = f" ({len(pooled)} rows)" if len(pooled) > 1 else ""
    st.caption(
        ":material/info: Each row is one token's attention over all tokens (it sums to 1); the "
        f"[CLS] row is outlined. The **Attention** method reads off {render.md(rows)}{n_rows}: "
        "its `last_layer` score of a word is the weight there on the word's pieces. Attention "
        "says where the model looks, not which way a word pushes the prediction; compare it "
        "with the attribution panels and their faithfulness in *Compare methods*.")
