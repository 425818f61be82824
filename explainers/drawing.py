"""How attributions are drawn: colours, scales, token highlights, image overlays, bars, and
their PNG versions.

Shared by the dashboard (:mod:`dashboard.render` re-exports these), notebook cells
(:mod:`explainers.notebook`) and review reports, so a map looks the same everywhere. Pure
functions of numpy arrays, PIL and :func:`html.escape` (everything a user or a model can
influence is escaped); nothing here imports Streamlit or a model.
"""

from __future__ import annotations

import html
import io
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

POS = (214, 39, 40)    # red: pushes the target class up
NEG = (31, 119, 180)   # blue: pushes it down
POS_HEX, NEG_HEX = "#d62728", "#1f77b4"
AMBER = (255, 127, 14)  # neutral highlight (disagreement), not a sign

#: how the Image page draws a pixel map by default (README, "Reading image maps"): the
#: positive part, smoothed with sigma = 8 px, full colour at the 98th percentile (2 % clipped)
IMAGE_SIGN, IMAGE_CLIP_PERCENT, IMAGE_SMOOTH_PX = "positive", 2.0, 8.0


# -- scales ----------------------------------------------------------------------------------
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


# -- text ------------------------------------------------------------------------------------
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


def rgba(score: float, scale: float, colour: tuple | None = None) -> str:
    a = float(np.clip(abs(score) / scale, 0, 1)) if scale > 0 else 0.0
    rgb = colour or (POS if score >= 0 else NEG)
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{0.85 * a:.3f})"


def token_html(labels: Sequence[str], scores: Sequence[float] | None, scale: float,
               crossed: Sequence[int] = (), title_prefix: str = "", colour: tuple | None = None,
               spans: Sequence[tuple[int, int]] | None = None) -> str:
    """Highlighted tokens as HTML. Every token is escaped; scores go into a tooltip. With the
    tokens' character ``spans`` in the text, a space is drawn exactly where the text has one."""
    pills = []
    crossed = set(crossed)
    for i, (text, space) in enumerate(display_tokens(labels, spans)):
        s = float(scores[i]) if scores is not None and i < len(scores) else 0.0
        bg = rgba(s, scale, colour)
        deco = "text-decoration:line-through;opacity:.55;" if i in crossed else ""
        tip = html.escape(f"{title_prefix}{labels[i]}: {s:+.4f}", quote=True)
        # A plain space between words lets lines break there; a token never breaks inside.
        pills.append((" " if space else "")
                     + f"<span class='tok' title=\"{tip}\" style='background:{bg};{deco}"
                       f"padding:1px 3px;border-radius:3px;display:inline-block;line-height:1.5'>"
                       f"{html.escape(text)}</span>")
    return ("<div style='line-height:2.1;font-size:1.02rem;overflow-wrap:anywhere'>"
            + "".join(pills) + "</div>")


# -- images ----------------------------------------------------------------------------------
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


def png_bytes(arr: np.ndarray | Image.Image) -> bytes:
    img = arr if isinstance(arr, Image.Image) else Image.fromarray(np.asarray(arr, dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# -- tables ----------------------------------------------------------------------------------
def fmt_value(v: float) -> str:
    return f"{v:.4g}"


def tabular_frame(features: Sequence[str], scores: np.ndarray, values: dict | None) -> pd.DataFrame:
    df = pd.DataFrame({"feature": list(features), "score": np.asarray(scores, dtype=float)})
    df["value"] = [fmt_value(values[f]) if values and f in values else "" for f in features]
    df["label"] = [f"{f} = {v}" if v else f for f, v in zip(df["feature"], df["value"])]
    df["sign"] = np.where(df["score"] >= 0, "supports", "against")
    df["abs"] = df["score"].abs()
    return df.sort_values("abs", ascending=False)


# -- PNG exports -----------------------------------------------------------------------------
def default_font(size: int = 15):
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
    return default_font(size)


def rgb_over_white(score: float, scale: float) -> tuple[int, int, int]:
    a = 0.85 * float(np.clip(abs(score) / scale, 0, 1)) if scale > 0 else 0.0
    c = POS if score >= 0 else NEG
    return tuple(int(round(255 * (1 - a) + ch * a)) for ch in c)


def text_png(labels: Sequence[str], scores: Sequence[float], scale: float, title: str = "",
             width: int = 900, spans: Sequence[tuple[int, int]] | None = None) -> bytes:
    """The token highlight as a PNG (wrapped lines, coloured boxes, title line)."""
    font, tfont = default_font(18), default_font(15)
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
        d.rounded_rectangle([bx, by, bx + w, by + line_h - 6], radius=4, fill=rgb_over_white(s, scale))
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


def beeswarm_png(features: Sequence[str], points: Sequence[Sequence[float]], title: str = "",
                 width: int = 560) -> bytes:
    """A beeswarm of many inputs' attributions (shap's summary plot, in these colours): a
    row per feature in the order given, one dot per input at its attribution, red for, blue
    against, dots spread vertically where they crowd. ``points[i][j]``: input ``i``,
    feature ``j``."""
    values = np.asarray(points, dtype=np.float64).reshape(len(points), len(features)) if len(points) else \
        np.zeros((0, len(features)))
    font = font_for(list(features) + [title], 13)
    label_w = int(max([font.getlength(str(f)) for f in features] + [40])) + 14
    row_h, pad, top = 26, 10, 26 if title else 8
    plot_w = width - label_w - 2 * pad
    img = Image.new("RGB", (width, top + row_h * len(features) + 34), "white")
    d = ImageDraw.Draw(img)
    if title:
        d.text((pad, pad - 4), title, fill=(40, 40, 40), font=font)
    lim = float(np.max(np.abs(values))) if values.size and np.max(np.abs(values)) > 0 else 1.0
    zero = label_w + plot_w // 2
    d.line([zero, top, zero, top + row_h * len(features)], fill=(170, 170, 170))
    for j, name in enumerate(features):
        y0 = top + j * row_h
        d.text((pad, y0 + 6), str(name), fill=(30, 30, 30), font=font)
        xs = np.round(zero + values[:, j] / lim * (plot_w / 2 - 4)).astype(int)
        crowd: dict[int, int] = {}
        for x, v in sorted(zip(xs.tolist(), values[:, j].tolist())):
            k = crowd.get(x // 3, 0)
            crowd[x // 3] = k + 1
            dy = ((k + 1) // 2) * (1 if k % 2 else -1) * 3  # alternate above and below the row's axis
            y = y0 + row_h // 2 + max(-row_h // 2 + 3, min(row_h // 2 - 3, dy))
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=POS if v >= 0 else NEG)
    axis_y = top + row_h * len(features) + 4
    for frac, label in ((-1, f"{-lim:+.3g}"), (0, "0"), (1, f"{lim:+.3g}")):
        x = zero + frac * (plot_w / 2 - 4)
        d.text((x - font.getlength(label) / 2, axis_y), label, fill=(80, 80, 80), font=font)
    d.text((label_w, axis_y + 14), "attribution (one dot per input)", fill=(110, 110, 110), font=font)
    return png_bytes(img)
