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
import io
import re
from typing import Sequence

import altair as alt
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

POS = (214, 39, 40)    # red: pushes the target class up
NEG = (31, 119, 180)   # blue: pushes it down
POS_HEX, NEG_HEX = "#d62728", "#1f77b4"
AMBER = (255, 127, 14)  # neutral highlight (disagreement), not a sign


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


# -- scales ------------------------------------------------------------------------------------
def robust_max(scores: np.ndarray, percentile: float | None = None, positive_only: bool = False) -> float:
    """The magnitude mapped to full colour: the max |score|, or its ``percentile`` (views of
    pixel maps use 99.5, so one hot pixel does not wash the whole map out)."""
    s = np.asarray(scores, dtype=np.float64)
    s = np.clip(s, 0, None) if positive_only else np.abs(s)
    if s.size == 0:
        return 1.0
    m = float(np.percentile(s, percentile)) if percentile is not None else float(s.max())
    if not np.isfinite(m) or m <= 0:
        m = float(s.max()) if s.size and np.isfinite(s.max()) else 0.0
    return m if m > 0 else 1.0


def legend_html(scale: float | None, signs: Sequence[str] = ("positive", "negative"), note: str = "") -> str:
    """Colour key. ``scale`` is the shared full-colour magnitude, or None for per-panel;
    ``signs`` the parts drawn ("positive", "negative", or "absolute" for |score|); ``note``
    a line on how the colours were scaled (clipping, smoothing)."""
    full = f"{scale:.3g}" if scale is not None else "max"
    chip = "padding:0 .4em;border-radius:3px;color:white"
    keys = {"positive": f"<span style='background:rgba{POS + (0.85,)};{chip}'>+{full}</span> supports the target",
            "negative": f"<span style='background:rgba{NEG + (0.85,)};{chip}'>-{full}</span> speaks against it",
            "absolute": f"<span style='background:rgba{POS + (0.85,)};{chip}'>|{full}|</span> "
                        "importance either way (sign dropped)"}
    which = ("one colour scale shared by all panels and by before/after" if scale is not None
             else "colour scale per panel (each method's own maximum, shared by its before/after)")
    parts = [keys[s] for s in signs if s in keys]
    extra = f" &nbsp;·&nbsp; {html.escape(note)}" if note else ""
    return (f"<div style='font-size:.85rem;color:#555'>{' &nbsp; '.join(parts)} "
            f"&nbsp;·&nbsp; {html.escape(which)}{extra}</div>")


# -- text --------------------------------------------------------------------------------------
def display_tokens(labels: Sequence[str], spans: Sequence[tuple[int, int]] | None = None
                   ) -> list[tuple[str, bool]]:
    """(text, space_before) per token: WordPiece ``##``, SentencePiece ``▁`` and BPE ``Ġ``
    continuation marks become joins, so the highlighted text reads like the input. With the
    features' character ``spans`` in the user's text, a space is drawn exactly where the text
    has one (no space before a comma, none inside "don't")."""
    out = []
    use_spans = spans is not None and len(spans) == len(labels)
    for i, t in enumerate(labels):
        t = str(t)
        space = i > 0
        if t.startswith("##"):
            t, space = t[2:], False
        elif t.startswith(("▁", "Ġ")):
            t, space = t[1:], i > 0
        if use_spans and i > 0:
            space = spans[i][0] > spans[i - 1][1]
        out.append((t, space))
    return out


def _rgba(score: float, scale: float, colour: tuple | None = None) -> str:
    a = float(np.clip(abs(score) / scale, 0, 1)) if scale > 0 else 0.0
    rgb = colour or (POS if score >= 0 else NEG)
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{0.85 * a:.3f})"


def token_html(labels: Sequence[str], scores: Sequence[float] | None, scale: float,
               crossed: Sequence[int] = (), title_prefix: str = "", colour: tuple | None = None,
               spans: Sequence[tuple[int, int]] | None = None) -> str:
    """Highlighted tokens as HTML. Every token is escaped; scores go into a tooltip."""
    spans = []
    crossed = set(crossed)
    for i, (text, space) in enumerate(display_tokens(labels, spans)):
        s = float(scores[i]) if scores is not None and i < len(scores) else 0.0
        bg = _rgba(s, scale, colour)
        deco = "text-decoration:line-through;opacity:.55;" if i in crossed else ""
        tip = html.escape(f"{title_prefix}{labels[i]}: {s:+.4f}", quote=True)
        # A plain space between words lets lines break there; a token never breaks inside.
        spans.append((" " if space else "")
                     + f"<span class='tok' title=\"{tip}\" style='background:{bg};{deco}"
                       f"padding:1px 3px;border-radius:3px;display:inline-block;line-height:1.5'>"
                       f"{html.escape(text)}</span>")
    return ("<div style='line-height:2.1;font-size:1.02rem;overflow-wrap:anywhere'>"
            + "".join(spans) + "</div>")


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
def smooth(scores: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smoothed copy of an H x W map, for display only (pixel maps such as IG's are
    speckled; smoothing shows which regions carry the attribution). ``sigma`` in pixels."""
    s = np.asarray(scores, dtype=np.float64)
    if sigma <= 0 or s.ndim != 2:
        return s
    from scipy.ndimage import gaussian_filter
    return gaussian_filter(s, sigma=float(sigma), mode="nearest")


def overlay(image: np.ndarray, scores: np.ndarray, scale: float, positive_only: bool = False,
            box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The heat map blended over a dimmed copy of the image (uint8 RGB, same size).

    Red = positive (supports the target), blue = negative; opacity grows with |score| /
    ``scale``. ``positive_only`` hides the negative part. ``box`` draws an outline.
    """
    img = np.asarray(image, dtype=np.float32)
    s = np.asarray(scores, dtype=np.float32)
    if s.shape != img.shape[:2]:
        s = np.asarray(Image.fromarray(s).resize((img.shape[1], img.shape[0]), Image.BILINEAR))
    gray = img.mean(axis=2, keepdims=True)
    base = 0.55 * img + 0.45 * gray  # desaturate so the colours of the map stand out
    a = np.clip(np.abs(s) / max(scale, 1e-12), 0, 1)
    if positive_only:
        a = np.where(s > 0, a, 0)
    a = (a ** 0.8)[..., None] * 0.85
    colour = np.where((s >= 0)[..., None], np.array(POS, np.float32), np.array(NEG, np.float32))
    out = base * (1 - a) + colour * a
    out = np.clip(out, 0, 255).astype(np.uint8)
    if box is not None and box[2] > box[0] and box[3] > box[1]:
        pil = Image.fromarray(out)
        ImageDraw.Draw(pil).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], outline=(255, 200, 0), width=2)
        out = np.asarray(pil)
    return out


def signed_part(scores: np.ndarray, sign: str) -> np.ndarray:
    """The part of a map that is drawn (Captum ``visualize_image_attr``'s ``sign``):
    "all" as is, "positive" / "negative" only that side (others 0), "absolute" |score|."""
    s = np.asarray(scores, dtype=np.float64)
    if sign == "positive":
        return np.clip(s, 0, None)
    if sign == "negative":
        return np.clip(s, None, 0)
    if sign == "absolute":
        return np.abs(s)
    return s


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
def fmt_value(v: float) -> str:
    return f"{v:.4g}"


def tabular_frame(features: Sequence[str], scores: np.ndarray, values: dict | None) -> pd.DataFrame:
    df = pd.DataFrame({"feature": list(features), "score": np.asarray(scores, dtype=float)})
    df["value"] = [fmt_value(values[f]) if values and f in values else "" for f in features]
    df["label"] = [f"{f} = {v}" if v else f for f, v in zip(df["feature"], df["value"])]
    df["sign"] = np.where(df["score"] >= 0, "supports", "against")
    df["abs"] = df["score"].abs()
    return df.sort_values("abs", ascending=False)


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
def _font(size: int = 15):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


#: fonts with CJK glyphs, tried in order when a PNG must draw text beyond Latin (Pillow's
#: built-in font draws boxes for it); ``$ATTRIBUTION_STUDIO_FONT`` names one explicitly
WIDE_FONTS = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
              "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
              "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
              "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
              "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
              "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
              "/usr/share/fonts/truetype/arphic/uming.ttc")


def wide_font_path() -> str | None:
    """A font file that can draw CJK text, or None when the system has none."""
    import os
    for path in (os.environ.get("ATTRIBUTION_STUDIO_FONT", ""),) + WIDE_FONTS:
        if path and os.path.isfile(path):
            return path
    return None


def font_for(texts: Sequence[str], size: int = 15):
    """Pillow's default font, or a CJK-capable system font (:data:`WIDE_FONTS`) when any of
    ``texts`` has characters beyond Latin, so exported PNGs keep names such as 浏览时长."""
    if any(ord(ch) > 0x24F for t in texts for ch in str(t)):
        path = wide_font_path()
        if path:
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                pass
    return _font(size)


def png_bytes(arr: np.ndarray | Image.Image) -> bytes:
    img = arr if isinstance(arr, Image.Image) else Image.fromarray(np.asarray(arr, dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


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


def _rgb_over_white(score: float, scale: float) -> tuple[int, int, int]:
    a = 0.85 * float(np.clip(abs(score) / scale, 0, 1)) if scale > 0 else 0.0
    c = POS if score >= 0 else NEG
    return tuple(int(round(255 * (1 - a) + ch * a)) for ch in c)


def text_png(labels: Sequence[str], scores: Sequence[float], scale: float, title: str = "",
             width: int = 900, spans: Sequence[tuple[int, int]] | None = None) -> bytes:
    """The token highlight as a PNG (wrapped lines, coloured boxes, title line)."""
    font, tfont = _font(18), _font(15)
    pad, line_h = 12, 30
    x, y = pad, pad + (26 if title else 0)
    boxes = []
    for i, (text, space) in enumerate(display_tokens(labels, spans)):
        w = int(font.getlength(text)) + 6
        gap = 6 if space else 1
        if x + gap + w > width - pad and x > pad:
            x, y = pad, y + line_h
            gap = 0
        x += gap
        boxes.append((x, y, w, text, float(scores[i]) if i < len(scores) else 0.0))
        x += w
    img = Image.new("RGB", (width, y + line_h + pad), "white")
    d = ImageDraw.Draw(img)
    if title:
        d.text((pad, pad), title, fill=(40, 40, 40), font=tfont)
    for bx, by, w, text, s in boxes:
        d.rounded_rectangle([bx, by, bx + w, by + line_h - 6], radius=4, fill=_rgb_over_white(s, scale))
        d.text((bx + 3, by + 2), text, fill=(0, 0, 0), font=font)
    return png_bytes(img)


def bars_png(features: Sequence[str], scores: np.ndarray, values: dict | None, scale: float,
             title: str = "", top: int = 30, ranked: bool = False) -> bytes:
    """Horizontal bar chart PNG (sorted by |score|) for tabular attributions; ``ranked``
    draws |score| from a left axis (the read-out ranked by magnitude), colour still the sign.
    Names beyond Latin (Chinese feature names) use a CJK-capable font when the system has one."""
    df = tabular_frame(features, scores, values).head(top)
    font = font_for(list(df["label"]) + [title], 14)
    label_w = int(max([font.getlength(str(t)) for t in df["label"]] + [50])) + 16
    bar_w, row_h, pad, top_h = 360, 20, 12, 30 if title else 8
    width = max(label_w + bar_w + 80, int(font.getlength(title)) + 2 * pad if title else 0)
    img = Image.new("RGB", (width, top_h + row_h * len(df) + 2 * pad), "white")
    d = ImageDraw.Draw(img)
    if title:
        d.text((pad, pad), title, fill=(40, 40, 40), font=font)
    zero = label_w + (0 if ranked else bar_w // 2)
    half = bar_w if ranked else bar_w // 2
    d.line([zero, top_h + pad - 2, zero, top_h + pad + row_h * len(df)], fill=(150, 150, 150))
    for r, row in enumerate(df.itertuples()):
        y = top_h + pad + r * row_h
        d.text((pad, y + 2), str(row.label), fill=(30, 30, 30), font=font)
        length = int(round(half * min(1.0, abs(row.score) / scale)))
        x0, x1 = (zero, zero + length) if (row.score >= 0 or ranked) else (zero - length, zero)
        d.rectangle([x0, y + 3, max(x0 + 1, x1), y + row_h - 3], fill=POS if row.score >= 0 else NEG)
        shown = f"{abs(row.score):.3g}" if ranked else f"{row.score:+.3g}"
        d.text((label_w + bar_w + 6, y + 2), shown, fill=(60, 60, 60), font=font)
    return png_bytes(img)
