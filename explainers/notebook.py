"""Explanations drawn as HTML for Jupyter, and for review reports.

``Explanation._repr_html_`` (so an explanation shows itself as a cell's output) and the review
report draw through :func:`explanation_html`: the prediction, every method's map side by side
the way the dashboard page draws it, and the metrics' per-method verdicts.

* text: token highlights on one colour scale shared by every method (the Text page's default);
* images: each map blended over the picture on its own scale, the Image page's default view
  (the positive part, smoothed with sigma = 8 px except layer maps such as Grad-CAM, full
  colour at the 98th percentile);
* tables: bars sorted by |attribution|, one scale shared by every method.

The HTML is one block with inline styles and pictures as ``data:`` PNGs: it needs no network,
no JavaScript and no stylesheet, so it survives a notebook's HTML sanitizer and an offline
reader. Everything a user or a model can choose (tokens, labels, feature names, ids) is
escaped.
"""

from __future__ import annotations

import base64
import html
import io
import sys
import tempfile
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from . import results
from .drawing import (IMAGE_CLIP_PERCENT, IMAGE_SIGN, IMAGE_SMOOTH_PX, NEG_HEX, POS_HEX, bars_png, default_font,
                      legend_html, overlay, png_bytes, robust_max, signed_part, smooth, text_png, token_html)
from .registry import get_method, list_methods

#: panels per row before they wrap (the dashboard's balanced rows hold up to four)
PER_ROW = 4
#: features per tabular panel (the Tabular page's default)
TOP_FEATURES = 15
#: outputs listed in the prediction (classifiers with many classes: the most probable)
TOP_OUTPUTS = 5

BOX = "font-family:system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;font-size:14px;color:#222;line-height:1.4"
MUTED = "color:#666;font-size:12px"
CELL = "padding:2px 8px;border-bottom:1px solid #e5e5e5;text-align:right"


def esc(value: Any) -> str:
    """``value`` as HTML text (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def title(method: str) -> str:
    """A method's display title ("Integrated Gradients"), or its name if it is not registered."""
    return get_method(method).title if method in list_methods() else method


def _method_flag(method: str, flag: str) -> bool:
    return bool(getattr(get_method(method), flag, False)) if method in list_methods() else False


# -- prediction -----------------------------------------------------------------------------------
def prediction_text(prediction: Mapping) -> str:
    """One phrase for a prediction dict, by output kind (the pages' wording): ``label (87.0%)``,
    ``label (p 0.73)`` for a sigmoid output, ``label = 217.1`` for a score."""
    kind = prediction.get("output_kind", "softmax")
    label = prediction.get("label")
    if kind == "score":
        return f"{label} = {float(prediction['value']):.4g}"
    p = float(prediction["probabilities"][prediction["index"]])
    return f"{label} (p {p:.2f})" if kind == "sigmoid" else f"{label} ({p:.1%})"


def _bar(share: float, colour: str, width: int = 140) -> str:
    w = int(round(width * float(np.clip(share, 0.0, 1.0))))
    return (f"<span style='display:inline-block;width:{width}px;height:10px;background:#eee;"
            f"vertical-align:middle'><span style='display:block;width:{w}px;height:10px;"
            f"background:{colour}'></span></span>")


def prediction_html(record: Mapping, labels: Sequence[str] | None = None) -> str:
    """The prediction line, and for classifiers the most probable outputs as bars."""
    pred = record.get("prediction") or {}
    if not pred:
        return ""
    target = record.get("target") or {}
    parts = [f"<div><b>Prediction</b>: {esc(prediction_text(pred))}"]
    if target and target.get("index") != pred.get("index"):
        parts.append(f" &nbsp;·&nbsp; explained: <b>{esc(target.get('label'))}</b>")
    if record.get("true_label") is not None:
        mark = "" if record.get("correct") is None else (" ✓" if record["correct"] else " ✗ wrong")
        parts.append(f" &nbsp;·&nbsp; true label: <b>{esc(record['true_label'])}</b>{mark}")
    parts.append("</div>")
    probs = pred.get("probabilities")
    if pred.get("output_kind") != "score" and probs and len(probs) > 1:
        names = labels or [str(i) for i in range(len(probs))]
        order = np.argsort(-np.asarray(probs, dtype=float))[:TOP_OUTPUTS]
        rows = "".join(
            f"<tr><td style='padding:0 8px 0 0'>{esc(names[i] if i < len(names) else i)}</td>"
            f"<td>{_bar(probs[i], '#ff7f0e' if i == pred.get('index') else '#9aa5b1')}</td>"
            f"<td style='padding-left:6px'>{float(probs[i]):.1%}</td></tr>" for i in order)
        independent = " (independent outputs, sigmoid)" if pred.get("output_kind") == "sigmoid" else ""
        parts.append(f"<table style='border-collapse:collapse;{MUTED}'>{rows}</table>"
                     + (f"<div style='{MUTED}'>{independent.strip(' ()')}</div>" if independent else ""))
    return "".join(parts)


# -- maps ---------------------------------------------------------------------------------------------
def text_spans(text: str | None, words: Sequence[str]) -> list[tuple[int, int]] | None:
    """Each word's character span in ``text``, found left to right (so the highlight puts a
    space exactly where the text has one), or None when a word is not found in order."""
    if not isinstance(text, str):
        return None
    spans, pos, low = [], 0, text.lower()
    for w in words:
        w = str(w)
        at = text.find(w, pos)
        if at < 0:
            at = low.find(w.lower(), pos)  # uncased tokenizers lower-case their pieces
        if at < 0 or not w:
            return None
        spans.append((at, at + len(w)))
        pos = at + len(w)
    return spans


def _scores(record: Mapping, method: str) -> np.ndarray:
    return np.asarray(record["attributions"][method]["scores"], dtype=np.float64)


def _image_shown(scores: np.ndarray, method: str) -> np.ndarray:
    """The Image page's default view of a pixel map (layer maps are not smoothed again)."""
    s = scores if _method_flag(method, "coarse_map") else smooth(scores, IMAGE_SMOOTH_PX)
    return signed_part(s, IMAGE_SIGN)


def image_panel_png(record: Mapping, method: str, image: np.ndarray | None) -> tuple[bytes, float]:
    """One image map as the page draws it over ``image`` (or over grey, without one); returns
    the PNG and its full-colour magnitude."""
    scores = _scores(record, method)
    shown = _image_shown(scores, method)
    scale = robust_max(shown, 100.0 - IMAGE_CLIP_PERCENT)
    if image is None or np.asarray(image).shape[:2] != scores.shape:
        image = np.full(scores.shape + (3,), 200, np.uint8)
    return png_bytes(overlay(image, shown, scale)), scale


def bars_html(features: Sequence[str], scores: np.ndarray, scale: float,
              values: Mapping | None = None, top: int = TOP_FEATURES) -> str:
    """Signed horizontal bars, largest |attribution| first (the Tabular page's read-out)."""
    order = np.argsort(-np.abs(scores), kind="stable")[:top]
    half = 110
    rows = []
    for i in order:
        s = float(scores[i])
        w = int(round(half * min(1.0, abs(s) / scale))) if scale > 0 else 0
        colour = POS_HEX if s >= 0 else NEG_HEX
        left = f"<span style='display:inline-block;width:{w}px;height:11px;background:{colour}'></span>" if s < 0 else ""
        right = f"<span style='display:inline-block;width:{w}px;height:11px;background:{colour}'></span>" if s >= 0 else ""
        name = str(features[i])
        if values and name in values:
            name = f"{name} = {float(values[name]):.4g}"
        rows.append(f"<tr><td style='padding:0 6px 0 0;text-align:right;white-space:nowrap'>{esc(name)}</td>"
                    f"<td style='width:{half}px;text-align:right;padding:0'>{left}</td>"
                    f"<td style='width:{half}px;padding:0;border-left:1px solid #999'>{right}</td>"
                    f"<td style='padding-left:6px;{MUTED}'>{s:+.3g}</td></tr>")
    return f"<table style='border-collapse:collapse;font-size:12px'>{''.join(rows)}</table>"


def _panel_caption(record: Mapping, method: str) -> str:
    a = record["attributions"][method]
    bits = [f"{float(a.get('seconds') or 0):.2f} s"]
    if a.get("convergence_delta") is not None:
        bits.append(f"δ = {float(a['convergence_delta']):+.2e}")
    if _method_flag(method, "additive"):
        bits.append(f"Σ = {float(np.sum(_scores(record, method))):+.3g}")
    return f"<div style='{MUTED}'>{esc(' · '.join(bits))}</div>"


def panels_html(record: Mapping, methods: Sequence[str], image: np.ndarray | None = None,
                values: Mapping | None = None, scale: str | None = None) -> str:
    """Every method's map side by side, with the colour key.

    Args:
        record: an explanation dict (``Explanation.to_dict()``, or a review line).
        methods: which of its methods, in order.
        image: images only: the picture at model resolution (uint8 RGB), under the maps.
        values: tables only: the row's feature values, shown in the bar labels.
        scale: ``"shared"`` or ``"per panel"``; default the page's (shared for text and
            tables, per panel for images).
    """
    modality = record.get("modality")
    scale = scale or ("per panel" if modality == "image" else "shared")
    if scale not in ("shared", "per panel"):
        raise ValueError(f"scale must be 'shared' or 'per panel', got {scale!r}")
    cells, scales = [], {}
    for m in methods:
        if modality == "image":
            png, scales[m] = image_panel_png(record, m, image)
            body = (f"<img alt='{esc(title(m))} map' src='{data_uri(png)}' "
                    f"style='width:100%;max-width:260px;image-rendering:auto'>")
        else:
            scales[m] = robust_max(_scores(record, m))
            body = ""
        cells.append([m, body])
    shared = max(scales.values()) if scales else 1.0
    if modality != "image":
        features = list(record.get("features") or [])
        spans = text_spans(record.get("input"), features) if modality == "text" else None
        for cell in cells:
            m = cell[0]
            s = shared if scale == "shared" else scales[m]
            cell[1] = (token_html(features, _scores(record, m), s, spans=spans) if modality == "text"
                       else bars_html(features, _scores(record, m), s, values))
    width = 100 / max(1, min(PER_ROW, len(cells)))
    boxes = "".join(
        f"<div style='box-sizing:border-box;flex:1 1 calc({width:.1f}% - 12px);min-width:200px;max-width:100%;border:1px solid #e2e2e2;"
        f"border-radius:6px;padding:6px 8px;break-inside:avoid'><div style='font-weight:600'>{esc(title(m))}</div>"
        f"{body}{_panel_caption(record, m)}</div>" for m, body in cells)
    if modality == "image":
        key = legend_html(None, (IMAGE_SIGN,), f"full colour at the {100 - IMAGE_CLIP_PERCENT:g}th percentile of "
                          f"|score|; display smoothing σ = {IMAGE_SMOOTH_PX:g} px (not on layer maps)")
    else:
        key = legend_html(shared if scale == "shared" else None)
    return f"<div style='display:flex;flex-wrap:wrap;gap:12px;margin:6px 0'>{boxes}</div>{key}"


# -- metrics ------------------------------------------------------------------------------------------
def metrics_rows(metrics: Mapping, methods: Sequence[str]) -> list[dict]:
    """Per method (and the random control) the numbers the metrics computed on this input:
    ``deletion_aopc``, ``p_value``, ``beats_random``, ``flip_count`` (None: no flip short of
    deleting everything), ``spearman`` (mean to the other methods), ``sanity`` ("passes" /
    "fails"); a key is absent where its metric was not computed."""
    faith = metrics.get("faithfulness") or {}
    flips = metrics.get("flip") or {}
    agree = metrics.get("agreement") or {}
    sanity = (metrics.get("sanity") or {}).get("methods") or {}
    names, rho = list(agree.get("methods") or []), agree.get("spearman") or []
    rows = []
    for m in methods:
        row: dict = {"method": m}
        f = (faith.get("methods") or {}).get(m)
        if f:
            row.update(deletion_aopc=f.get("deletion_aopc"), p_value=f.get("p_value"),
                       beats_random=f.get("beats_random"))
        fl = (flips.get("methods") or {}).get(m)
        if fl is not None:
            row["flip_count"] = fl.get("count")
        if m in names and len(names) > 1 and rho:
            i = names.index(m)
            others = [rho[i][j] for j in range(len(names)) if j != i and rho[i][j] is not None]
            row["spearman"] = float(np.mean(others)) if others else None
        if m in sanity:
            row["sanity"] = "fails" if sanity[m].get("independent_of_model") else "passes"
        rows.append(row)
    control: dict = {"method": "(random control)"}
    if faith.get("random"):
        control["deletion_aopc"] = faith["random"].get("deletion_aopc")
    if flips.get("random"):
        control["flip_count"] = flips["random"].get("count")
    if len(control) > 1:
        rows.append(control)
    return rows


def _fmt(key: str, v: Any) -> str:
    if key == "beats_random":
        return "—" if v is None else ("✓ beats random" if v else "✗ not better than random")
    if key == "flip_count":
        return "no flip" if v is None else str(v)
    if v is None:
        return "—"
    if key == "p_value":
        return f"{float(v):.2g}"
    if key == "spearman":
        return f"{float(v):+.2f}"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


METRIC_COLUMNS = (("deletion_aopc", "deletion AOPC"), ("p_value", "p"), ("beats_random", "vs random orders"),
                  ("flip_count", "flip count"), ("spearman", "mean Spearman ρ"), ("sanity", "randomization check"))


def metrics_html(metrics: Mapping, methods: Sequence[str]) -> str:
    """The metrics' verdicts on this input, one row per method (and the random control)."""
    rows = metrics_rows(metrics or {}, methods)
    cols = [(k, t) for k, t in METRIC_COLUMNS if any(k in r for r in rows)]
    if not cols:
        return ""
    head = "".join(f"<th style='{CELL};font-weight:600'>{esc(t)}</th>" for _, t in cols)
    body = "".join(
        f"<tr><td style='{CELL};text-align:left'>{esc(title(r['method']) if r['method'] in methods else r['method'])}"
        "</td>" + "".join(f"<td style='{CELL}'>{esc(_fmt(k, r.get(k))) if k in r else ''}</td>" for k, _ in cols)
        + "</tr>" for r in rows)
    return (f"<table style='border-collapse:collapse;margin-top:6px;font-size:13px'><tr>"
            f"<th style='{CELL};text-align:left'>method</th>{head}</tr>{body}</table>")


# -- one explanation ---------------------------------------------------------------------------------
def explanation_html(record: Mapping, *, image: np.ndarray | None = None, values: Mapping | None = None,
                     labels: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                     scale: str | None = None, heading: str | None = None) -> str:
    """One explanation as an HTML block: what the page shows for it.

    Args:
        record: ``Explanation.to_dict()`` or a review line (``input``, ``true_label`` and
            ``correct`` are shown where present). A line with an ``error`` shows the error.
        image: images: the picture at model resolution, drawn under the maps.
        values: tables: the row's feature values.
        labels: the model's output names (for the outputs listed under the prediction).
        methods: a subset of the record's methods, in order (default: all).
        scale: ``"shared"`` or ``"per panel"`` (default: the page's for the modality).
        heading: a title line (a review report names the input).

    Returns:
        A ``<div>`` with inline styles only; pictures are ``data:`` PNGs.
    """
    head = f"<div style='font-weight:600;font-size:15px'>{esc(heading)}</div>" if heading else ""
    if "error" in record:
        return f"<div style='{BOX}'>{head}<div style='color:#a00'>error: {esc(record['error'])}</div></div>"
    attrs = record.get("attributions") or {}
    chosen = [m for m in (methods or attrs) if m in attrs]
    missing = [m for m in (methods or []) if m not in attrs]
    if missing:
        raise ValueError(f"not in this explanation: {missing}; it has {list(attrs)}")
    model = f"<div style='{MUTED}'>model {esc(record.get('model', ''))} · {esc(record.get('modality', ''))}</div>"
    warnings = "".join(f"<div style='color:#8a5300;font-size:12px'>⚠ {esc(w)}</div>"
                       for w in record.get("warnings") or [])
    return (f"<div style='{BOX}'>{head}{model}{prediction_html(record, labels)}{warnings}"
            f"{panels_html(record, chosen, image, values, scale) if chosen else ''}"
            f"{metrics_html(record.get('metrics') or {}, chosen)}</div>")


def _stack(pictures: Sequence[np.ndarray], axis: int, gap: int = 8) -> np.ndarray:
    """RGB pictures side by side (``axis=1``) or one under the other (``axis=0``), on white."""
    other = 1 - axis
    size = max(p.shape[other] for p in pictures)
    padded = []
    for i, p in enumerate(pictures):
        pad = [(0, 0), (0, 0), (0, 0)]
        pad[other] = (0, size - p.shape[other])
        pad[axis] = (0, gap if i < len(pictures) - 1 else 0)
        padded.append(np.pad(p, pad, constant_values=255))
    return np.concatenate(padded, axis=axis)


def _titled(picture: np.ndarray, text: str) -> np.ndarray:
    strip = Image.new("RGB", (picture.shape[1], 20), "white")
    ImageDraw.Draw(strip).text((2, 3), text, fill=(40, 40, 40), font=default_font(13))
    return np.concatenate([np.asarray(strip), picture], axis=0)


def _png_array(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def explanation_png(record: Mapping, *, image: np.ndarray | None = None, values: Mapping | None = None,
                    methods: Sequence[str] | None = None) -> np.ndarray:
    """Every method's map of one explanation as one RGB picture (``H x W x 3`` uint8), the way
    :func:`explanation_html` draws them: image maps side by side, each over the picture on
    its own scale; text highlights or tabular bars one under the other on a shared scale.
    For places that take pictures, not HTML (TensorBoard)."""
    attrs = record.get("attributions") or {}
    chosen = [m for m in (methods or attrs) if m in attrs]
    if not chosen:
        raise ValueError("the explanation has no attributions to draw")
    modality = record.get("modality")
    if modality == "image":
        return _stack([_titled(_png_array(image_panel_png(record, m, image)[0]), title(m)) for m in chosen], axis=1)
    features = list(record.get("features") or [])
    shared = max(robust_max(_scores(record, m)) for m in chosen)
    if modality == "text":
        spans = text_spans(record.get("input"), features)
        drawn = [text_png(features, _scores(record, m), shared, title=title(m), spans=spans) for m in chosen]
    else:
        drawn = [bars_png(features, _scores(record, m), dict(values) if values else None, shared,
                          title=title(m), top=TOP_FEATURES) for m in chosen]
    return _stack([_png_array(p) for p in drawn], axis=0)


def explanation_result_html(explanation: Any, **options: Any) -> str:
    """:func:`explanation_html` of an :class:`~explainers.results.Explanation` (its picture
    or feature values come from the input it explained)."""
    record = explanation.to_dict()
    raw = getattr(explanation, "input", None)
    if explanation.modality == "text" and isinstance(raw, str):
        record["input"] = raw
    if explanation.modality == "image" and isinstance(raw, np.ndarray):
        options.setdefault("image", raw)
    if explanation.modality == "tabular" and isinstance(raw, Mapping):
        options.setdefault("values", raw)
    if getattr(explanation, "labels", None):
        options.setdefault("labels", explanation.labels)
    return explanation_html(record, **options)


results.html_renderer = explanation_result_html  # Explanation._repr_html_ draws through this


# -- figures ------------------------------------------------------------------------------------------
class Figure:
    """An HTML figure: shown as a notebook cell's output (``_repr_html_``), or saved as a
    standalone page (``save``)."""

    def __init__(self, body: str, title: str = "Attribution Studio") -> None:
        self.body, self.title = body, title

    def _repr_html_(self) -> str:
        return self.body

    def page(self) -> str:
        """A whole HTML document (UTF-8, no external resources)."""
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(self.title)}</title></head>"
                f"<body style='margin:16px'>{self.body}</body></html>")

    def save(self, path: str) -> str:
        """Write :meth:`page` to ``path``; returns the path."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.page())
        return path


def figure(obj: Any, **options: Any) -> Figure:
    """A :class:`Figure` of ``obj``: an explanation (options as for :func:`explanation_html`),
    anything else that draws itself as HTML (a review summary), or a picture (PNG bytes, an
    RGB array or a PIL image)."""
    if isinstance(obj, (bytes, bytearray, np.ndarray, Image.Image)):
        png = bytes(obj) if isinstance(obj, (bytes, bytearray)) else png_bytes(obj)
        return Figure(f"<img alt='figure' src='{data_uri(png)}' style='max-width:100%'>")
    draw = getattr(obj, "_repr_html_", None)
    if draw is None:
        raise TypeError(f"cannot draw a {type(obj).__name__}: pass an Explanation, a review summary or a picture")
    return Figure(draw(**options) if options else draw())


def show(obj: Any, **options: Any) -> Figure | None:
    """Show ``obj`` (see :func:`figure`) as a notebook cell's output.

    In IPython/Jupyter the figure is displayed and None returned. Elsewhere it is saved to a
    temporary HTML file whose path is printed, and the :class:`Figure` returned.
    """
    fig = figure(obj, **options)
    try:
        from IPython import get_ipython  # optional: only notebooks and IPython have it
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(fig)
        return None
    path = fig.save(tempfile.NamedTemporaryFile(suffix=".html", prefix="attribution-", delete=False).name)
    print(f"not in a notebook: the figure is in {path}", file=sys.stderr)
    return fig
