"""Renderers: token highlights, image overlays, tabular bars, probability charts.

Everything a user or a model can influence (tokens, labels, feature names, text) is put
into HTML only through :func:`html.escape`; charts are Altair (Vega-Lite escapes its own
text). The same functions draw every panel, so maps differ only by their scores, and a
``scale`` argument lets the caller share one colour scale across panels.

The PNG exports are drawn with PIL (no browser, no vl-convert needed).
"""

from __future__ import annotations

import difflib
import html
import re
from typing import Sequence

import altair as alt
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

# The colours, scales, token highlights and image overlays live in the engine
# (explainers.drawing), so a notebook cell and a review report draw what these pages draw.
from explainers.drawing import (AMBER, NEG, NEG_HEX, POS, POS_HEX, WIDE_FONTS, bars_png,  # noqa: F401
                                display_tokens, fmt_value, font_for, legend_html, overlay, png_bytes, robust_max,
                                signed_part, smooth, tabular_frame, text_png, token_html, wide_font_path)
from explainers.drawing import default_font as _font


def md(value) -> str:
    """``value`` as literal text inside Streamlit markdown: HTML-escaped, with markdown
    syntax (links, emphasis, code) backslash-escaped, and bare URLs, ``www.`` names and
    e-mail addresses kept from auto-linking. For model labels, feature names, tokens and
    anything else a model or an upload can choose."""
    text = html.escape(str(value), quote=False)  # quotes are safe in markdown text; &#x27; is not
    text = re.sub(r"([\\`*_{}\[\]()#+!|~$>-])", r"\\\1", text)
    # GFM auto-links "scheme://", "www." and "a@b" in plain text; a character reference
    # reads the same but no longer matches (the text stays text, nothing is fetched).
    text = re.sub(r":(?=//)", "&#58;", text)
    text = re.sub(r"(?i)\b(www)\.", r"\1&#46;", text)
    return text.replace("@", "&#64;")


# -- text --------------------------------------------------------------------------------------
def diff_html(before: str, after: str) -> str:
    """Word-level diff of two texts, escaped, with ``<del>`` and ``<ins>`` marks.

    Words, punctuation marks and runs of whitespace are the units, so deleting a word before
    a full stop marks just that word.
    """
    unit = re.compile(r"\s+|\w+|[^\w\s]")
    a, b = unit.findall(before), unit.findall(after)
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html.escape("".join(a[i1:i2])))
            continue
        if i2 > i1:
            out.append("<del style='background:#fde2e1;color:#8a1c1c'>"
                       + html.escape("".join(a[i1:i2])) + "</del>")
        if j2 > j1:
            out.append("<ins style='background:#dcf5e3;color:#135c2a;text-decoration:none'>"
                       + html.escape("".join(b[j1:j2])) + "</ins>")
    return "<div style='line-height:1.9;white-space:pre-wrap'>" + "".join(out) + "</div>"


# -- images ------------------------------------------------------------------------------------
def masked(image: np.ndarray, scores: np.ndarray, keep_percent: float,
           box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The image with only the ``keep_percent`` % of pixels of largest |score| kept; the rest
    dimmed to a quarter (Captum's "masked_image"), so the map reads as "what the method looked at"."""
    img = np.asarray(image, dtype=np.float32)
    s = np.abs(np.asarray(scores, dtype=np.float32))
    if s.shape != img.shape[:2]:
        s = np.asarray(Image.fromarray(s).resize((img.shape[1], img.shape[0]), Image.BILINEAR))
    cut = np.percentile(s, 100.0 - float(np.clip(keep_percent, 0.1, 100.0)))
    keep = (s >= cut) & (s > 0)
    out = np.where(keep[..., None], img, 0.25 * img).astype(np.uint8)
    return outline(out, box)


def outline(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    if box is None or box[2] <= box[0] or box[3] <= box[1]:
        return image
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    ImageDraw.Draw(pil).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=(255, 200, 0), width=2)
    return np.asarray(pil)


def patch_grid(values: Sequence[float], n: int, size: int) -> np.ndarray:
    """Per-patch values (row-major, n x n) expanded to a size x size map."""
    v = np.asarray(values, dtype=np.float32)[: n * n].reshape(n, n)
    rep = int(np.ceil(size / n))
    return np.kron(v, np.ones((rep, rep), np.float32))[:size, :size]


# -- tables --------------------------------------------------------------------------------------
def tabular_chart(features: Sequence[str], scores: np.ndarray, values: dict | None, scale: float,
                  top: int = 15) -> alt.Chart:
    """Sorted horizontal bars (largest |score| on top), feature values in the labels."""
    df = tabular_frame(features, scores, values).head(top)
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("score:Q", scale=alt.Scale(domain=[-scale, scale]), title="attribution"),
        y=alt.Y("label:N", sort=list(df["label"]), title=None,
                axis=alt.Axis(labelLimit=220, labelOverlap=False)),
        color=alt.Color("sign:N", scale=alt.Scale(domain=["supports", "against"], range=[POS_HEX, NEG_HEX]),
                        legend=None),
        tooltip=["feature", "value", alt.Tooltip("score:Q", format="+.4f")],
    ).properties(height=alt.Step(20))


def signed(value: float, spec: str = ".1f") -> str:
    """``value`` formatted with its sign (``spec`` without the sign), except that a value that
    rounds to zero is shown unsigned: an edit that moves nothing reads "0.0", never "-0.0"."""
    text = format(float(value), "+" + spec)
    return format(0.0, spec) if float(text) == 0 else text


#: what attribution scores are measured in, by output kind: every method explains the raw
#: output, so for the additive ones their sum is f(input) - f(baseline) in these units
OUTPUT_UNITS = {
    "softmax": "logits of the explained class (the output before the softmax)",
    "sigmoid": "logits of the explained output (before the sigmoid)",
    "score": "the score's own units (the model's raw output)",
}


def output_units(kind: str) -> str:
    """The unit of attribution scores (and of Σ, δ) for a model of output ``kind``."""
    return OUTPUT_UNITS.get(kind, OUTPUT_UNITS["softmax"])


def fmt_score(v: float) -> str:
    """A raw score for display: four significant digits."""
    return f"{float(v):.4g}"


def prediction_summary(pred) -> str:
    """One plain-text phrase for a prediction, by output kind: ``label (87.0%)`` (softmax),
    ``label (p 0.73)`` (sigmoid: its own probability), ``label = 217.1`` (score)."""
    kind = getattr(pred, "output_kind", "softmax")
    if kind == "score":
        return f"{pred.label} = {fmt_score(pred.value)}"
    if kind == "sigmoid":
        return f"{pred.label} (p {pred.value:.2f})"
    return f"{pred.label} ({pred.value:.1%})"


def ranked_text(features: Sequence[str], scores: np.ndarray, top: int | None = None) -> str:
    """The features ranked by |attribution|, as the walkthrough prints them:
    ``"浏览时长: 0.412, 历史消费: 0.305, ..."`` (magnitudes; the signed bars show direction)."""
    df = tabular_frame(features, scores, None)
    if top is not None:
        df = df.head(top)
    return ", ".join(f"{f}: {a:.3g}" for f, a in zip(df["feature"], df["abs"]))


def ranked_chart(features: Sequence[str], scores: np.ndarray, values: dict | None, scale: float,
                 top: int = 15) -> alt.Chart:
    """Bars of |attribution|, largest first (the sign is in the tooltip and the colour)."""
    df = tabular_frame(features, scores, values).head(top)
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("abs:Q", scale=alt.Scale(domain=[0, scale]), title="|attribution|"),
        y=alt.Y("label:N", sort=list(df["label"]), title=None, axis=alt.Axis(labelLimit=220, labelOverlap=False)),
        color=alt.Color("sign:N", scale=alt.Scale(domain=["supports", "against"], range=[POS_HEX, NEG_HEX]),
                        legend=None),
        tooltip=["feature", "value", alt.Tooltip("score:Q", format="+.4f")],
    ).properties(height=alt.Step(20))


def probability_chart(labels: Sequence[str], probs: Sequence[float], top: int = 10,
                      highlight: int | None = None, other: Sequence[float] | None = None,
                      kind: str = "softmax") -> alt.Chart:
    """Output probabilities as sorted horizontal bars; ``other`` adds the edited input's.

    ``kind="sigmoid"``: each bar is its own output's probability (they do not share 100 %),
    with a tick at 0.5; ``softmax``: the classes' shares of one distribution.
    """
    p = np.asarray(probs, dtype=float)
    order = list(np.argsort(-p)[:top])
    if other is not None:
        q = np.asarray(other, dtype=float)
        order = list(dict.fromkeys(list(np.argsort(-p)[:min(top, 6)]) + list(np.argsort(-q)[:3])))
    rows = []
    for i in order:
        rows.append({"class": str(labels[i]), "probability": float(p[i]), "input": "original",
                     "predicted": bool(i == highlight)})
        if other is not None:
            rows.append({"class": str(labels[i]), "probability": float(other[i]), "input": "edited",
                         "predicted": bool(i == highlight)})
    df = pd.DataFrame(rows)
    title = "probability of each output (independent, sigmoid)" if kind == "sigmoid" else "probability"
    enc = dict(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title=title),
        y=alt.Y("class:N", sort=[str(labels[i]) for i in order], title=None, axis=alt.Axis(labelLimit=200, labelOverlap=False)),
        tooltip=["class", "input", alt.Tooltip("probability:Q", format=".2%")],
    )
    if other is not None:
        enc["color"] = alt.Color("input:N", scale=alt.Scale(domain=["original", "edited"],
                                                            range=["#9aa5b1", "#ff7f0e"]),
                                 legend=alt.Legend(orient="bottom", title=None))
        enc["yOffset"] = "input:N"
    else:
        enc["color"] = alt.condition(alt.datum.predicted, alt.value("#ff7f0e"), alt.value("#9aa5b1"))
    bars = alt.Chart(df).mark_bar().encode(**enc)
    if kind == "sigmoid":  # each output is on or off at 0.5: show the line
        bars = bars + alt.Chart(pd.DataFrame({"x": [0.5]})).mark_rule(strokeDash=[3, 3], color="#555").encode(x="x:Q")
    return bars.properties(height=alt.Step(13 if other is not None else 18))


#: pixels of the score histogram (Streamlit sizes layered charts small unless told)
SCORE_CHART_HEIGHT = 170


def score_chart(reference: Sequence[float] | None, value: float, edited: float | None = None,
                label: str = "score", threshold: float | None = None) -> alt.Chart:
    """A score against the model's range on its data: a histogram of the reference rows'
    scores with this row's value marked (orange), the edited value (blue) and a flip
    threshold (dashed) when given."""
    marks = [{"score": float(value), "what": "this row"}]
    if edited is not None:
        marks.append({"score": float(edited), "what": "edited"})
    if threshold is not None:
        marks.append({"score": float(threshold), "what": "threshold"})
    lines = pd.DataFrame(marks)
    palette = {"this row": "#ff7f0e", "edited": "#1f77b4", "threshold": "#555555"}
    shown = [m["what"] for m in marks]
    colour = alt.Color("what:N", scale=alt.Scale(domain=shown, range=[palette[w] for w in shown]),
                       legend=alt.Legend(orient="bottom", title=None))
    with_hist = reference is not None and len(reference) > 0
    rule = alt.Chart(lines).mark_rule(strokeWidth=3).encode(
        x=alt.X("score:Q", title=None if with_hist else label), color=colour,
        strokeDash=alt.condition(alt.datum.what == "threshold", alt.value([4, 3]), alt.value([1, 0])),
        tooltip=["what", alt.Tooltip("score:Q", format=".4g")])
    if not with_hist:
        return rule.properties(height=60)
    ref = pd.DataFrame({"score": np.asarray(reference, dtype=float)})
    hist = alt.Chart(ref).mark_bar(color="#c7ccd1").encode(
        x=alt.X("score:Q", bin=alt.Bin(maxbins=30), title=f"{label} (histogram: the model's scores on its data)"),
        y=alt.Y("count():Q", title="rows"))
    return (hist + rule).properties(height=SCORE_CHART_HEIGHT)


# -- PNG exports ------------------------------------------------------------------------------
def titled_image_png(image: np.ndarray, title: str, scale: float,
                     signs: Sequence[str] = ("positive", "negative"), note: str = "") -> bytes:
    """An image map with a title line and a colour key above it (what the screen's legend
    says), so a downloaded PNG explains itself."""
    arr = np.asarray(image, dtype=np.uint8)
    font = _font(13)
    pad, line = 8, 18
    lines = [title] + ([note] if note else [])
    width = max(arr.shape[1], int(max(font.getlength(t) for t in lines)) + 2 * pad, 420)
    top = pad + line * (len(lines) + 1) + pad
    img = Image.new("RGB", (width, top + arr.shape[0]), "white")
    d = ImageDraw.Draw(img)
    for i, t in enumerate(lines):
        d.text((pad, pad + i * line), t, fill=(40, 40, 40), font=font)
    y = pad + len(lines) * line
    labels = {"positive": (POS, f"+{scale:.3g} supports the target"),
              "negative": (NEG, f"-{scale:.3g} against it"),
              "absolute": (POS, f"|{scale:.3g}| importance, either sign")}
    keys = [labels[s] for s in signs if s in labels]
    x = pad
    for colour, label in keys:
        d.rectangle([x, y + 2, x + 12, y + 14], fill=colour)
        d.text((x + 16, y), label, fill=(60, 60, 60), font=font)
        x += 16 + int(font.getlength(label)) + 18
    img.paste(Image.fromarray(arr), (0, top))
    return png_bytes(img)
