"""A review's report: one self-contained HTML file a reviewer can hand on.

``review ... --report report.html`` (and ``run_review(..., report=...)``) writes it from the
summary dict and the JSON lines, after the run:

* the model (name, weights fingerprint, output kind), the data (file, inputs, accuracy) and
  the settings (methods with their resolved parameters, metrics and their options, seeds,
  package versions);
* the per-method table over the dataset (the CLI's summary table), and the same table within
  the wrong and the correct predictions;
* the inputs worth a look, drawn as the pages draw them (:func:`explainers.notebook.explanation_html`):
  where the methods disagree most, the flips with the fewest edits, and the most confident
  wrong predictions.

The file loads nothing: inline CSS, pictures as ``data:`` PNGs, no script but the summary and
the run card as a JSON data block (``<script type="application/json" id="review-data">``, never
run), so it opens offline and its numbers can be read back. Its print stylesheet keeps the
colours and does not split a table or an input across pages. The lines are read once,
streamed, keeping only the few inputs drawn.
"""

from __future__ import annotations

import heapq
import json
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from ..adapters.image import load_image, to_model_resolution
from ..drawing import beeswarm_png
from ..errors import ExplainerError
from ..notebook import data_uri, esc, explanation_html, explanation_png, title
from .overview import method_pairs
from .slices import slicing_title
from .summary import COLUMNS, summary_table, verdict_caption

#: inputs drawn per kind
DRAWN = 3
#: what each kind of drawn input is, in the report's order
KINDS = {
    "disagreement": "Where the methods disagree most (1 - mean pairwise Spearman of their maps)",
    "fewest_flips": "Flipped with the fewest edits (the fewest removals any method needs)",
    "wrong": "Wrong predictions, the most confident first",
}
#: the packages whose versions a report names
PACKAGES = ("attribution-studio", "torch", "captum", "transformers", "timm", "numpy", "scikit-learn")


class ReviewSummary(dict):
    """A review's summary (:func:`~explainers.review.summary.summarize`'s dict, what
    :func:`~explainers.review.run_review` returns), drawn as HTML tables in a notebook."""

    def _repr_html_(self) -> str:
        return f"<div style='font-family:system-ui,sans-serif;font-size:14px'>{summary_html(self)}</div>"


# -- what was reviewed ---------------------------------------------------------------------------------
def model_card(model: Any) -> dict:
    """What identifies a loaded model in a report: ``name``, ``modality``, ``output_kind``,
    ``fingerprint`` (hash of the weights, part of every cache key), ``outputs`` and their
    ``labels``, ``source`` (how it was loaded) and ``device``."""
    return {"name": model.name, "modality": model.modality,
            "output_kind": getattr(model, "output_kind", "softmax"), "fingerprint": model.fingerprint,
            "outputs": len(model.labels), "labels": list(model.labels), "source": getattr(model, "source", None),
            "device": str(getattr(model, "device", "cpu"))}


def versions() -> dict[str, str]:
    """Python, the platform and :data:`PACKAGES` (``"not installed"`` where absent: a source
    checkout run without ``pip install``)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_card(model: Mapping, *, source: Any = None, methods: Sequence[str] | None, params: Mapping | None,
             metrics: Sequence[str], metric_params: Mapping | None, explain: str, unit: str | None,
             limit: int | None, engine: str, out: str | Path | None) -> dict:
    """The run's description for the report and the trackers: ``model`` (:func:`model_card`),
    ``data``, ``settings`` (as asked; the resolved values are read from the lines),
    ``versions`` and the ``created`` time (UTC)."""
    file = getattr(source, "file", None)
    data = {"file": str(file) if file else None, "read": source.describe() if hasattr(source, "describe") else None,
            "limit": limit, "lines": str(out) if out else None}
    settings = {"methods": list(methods) if methods else None, "params": dict(params or {}),
                "metrics": list(metrics), "metric_params": dict(metric_params or {}), "explain": explain,
                "unit": unit, "engine": engine}
    return {"model": dict(model), "data": data, "settings": settings, "versions": versions(),
            "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


# -- the inputs worth a look ---------------------------------------------------------------------------
def disagreement(line: Mapping) -> float | None:
    """1 - the mean pairwise Spearman of the methods' maps (the Review page's column)."""
    rho = ((line.get("metrics") or {}).get("agreement") or {}).get("spearman") or []
    pairs = [v for a, row in enumerate(rho) for b, v in enumerate(row) if a < b and v is not None]
    return 1 - sum(pairs) / len(pairs) if pairs else None


def fewest_flips(line: Mapping) -> int | None:
    counts = [b.get("count") for b in (((line.get("metrics") or {}).get("flip") or {}).get("methods") or {}).values()
              if b.get("count") is not None]
    return min(counts) if counts else None


def confidence(line: Mapping) -> float | None:
    pred = line.get("prediction") or {}
    probs = pred.get("probabilities")
    return float(probs[pred["index"]]) if probs else None


@dataclass
class Drawn:
    """The few inputs a report draws, chosen while the lines stream past (at most
    :data:`DRAWN` full lines per kind are kept), and the run's resolved settings, read off
    the first line that has them."""
    heaps: dict[str, list] = field(default_factory=lambda: {k: [] for k in KINDS})
    params: dict[str, dict] = field(default_factory=dict)
    metric_options: dict[str, dict] = field(default_factory=dict)
    seen: int = 0

    def add(self, line: Mapping) -> None:
        if "error" in line:
            return
        self.seen += 1
        if not self.params:
            self.params = {m: a.get("params") or {} for m, a in (line.get("attributions") or {}).items()}
        if not self.metric_options and line.get("metrics"):
            self.metric_options = {name: {k: v for k, v in block.items()
                                          if not isinstance(v, (dict, list)) or k == "baselines"}
                                   for name, block in line["metrics"].items() if isinstance(block, dict)}
        d, f = disagreement(line), fewest_flips(line)
        keys = {"disagreement": d, "fewest_flips": None if f is None else -f,
                "wrong": confidence(line) if line.get("correct") is False else None}
        if line.get("correct") is False and keys["wrong"] is None:
            keys["wrong"] = 0.0  # a wrong score-model line: no probability to rank by
        for kind, key in keys.items():
            if key is None:
                continue
            heap = self.heaps[kind]
            item = (key, -self.seen, dict(line))  # ties: the earlier line
            if len(heap) < DRAWN:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:
                heapq.heapreplace(heap, item)

    def chosen(self, kind: str) -> list[dict]:
        """The drawn lines of ``kind``, best first."""
        return [line for *_, line in sorted(self.heaps[kind], key=lambda t: t[:2], reverse=True)]


def read_lines(path: str | Path) -> Iterator[dict]:
    """The review lines of ``path``, one at a time (a line cut short by a killed run is skipped)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec


def scan(lines: Iterator[Mapping]) -> Drawn:
    drawn = Drawn()
    for line in lines:
        drawn.add(line)
    return drawn


def picture(line: Mapping) -> np.ndarray | None:
    """An image line's picture at model resolution, read again from its path (None when the
    line is not an image's or the file cannot be read any more)."""
    feats = line.get("features")
    path = line.get("input")
    if line.get("modality") != "image" or not isinstance(path, str) or not isinstance(feats, dict):
        return None
    try:
        return to_model_resolution(load_image(path), int(feats["height"]))
    except (ExplainerError, OSError, KeyError, ValueError):
        return None


def line_png(line: Mapping) -> np.ndarray:
    """One drawn input as a picture (for TensorBoard)."""
    return explanation_png(line, image=picture(line))


# -- HTML ------------------------------------------------------------------------------------------------
def _number(key: str, fmt: str, v: Any) -> str:
    shown = "-" if v is None else fmt.format(v)
    return f"<td class='num' data-key='{esc(key)}' data-value='{esc(json.dumps(v))}'>{esc(shown)}</td>"


def method_table(summary: Mapping, name: str = "all") -> str:
    """The per-method table (the CLI's columns), each cell carrying its exact value in
    ``data-value``; ``name`` labels the table (``all``, ``wrong``, ``correct``)."""
    rows = list((summary.get("methods") or {}).items())
    rand = summary.get("random") or {}
    if any(v is not None for k, v in rand.items() if k != "n"):
        rows.append(("(random control)", rand))
    head = "".join(f"<th>{esc(t)}</th>" for _, t, _ in COLUMNS)
    body = "".join(f"<tr data-method='{esc(m)}'><td>{esc(title(m) if not m.startswith('(') else m)}</td>"
                   + "".join(_number(k, fmt, vals.get(k)) for k, _, fmt in COLUMNS) + "</tr>" for m, vals in rows)
    return (f"<table class='summary' data-table='{esc(name)}'><thead><tr><th>method</th>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


#: the dataset-level verdict's columns: (key in the method's test result, title, format)
VERDICT_COLUMNS = (("beats_random", "beats random", "{}"), ("n", "inputs", "{}"),
                   ("mean_difference", "AOPC - random", "{:+.3f}"), ("ci95", "95% CI", "[{0[0]:+.3f}, {0[1]:+.3f}]"),
                   ("effect_size", "effect r", "{:+.2f}"), ("p_value", "p", "{:.2g}"))


def _shown(fmt: str, v: Any) -> str:
    if v is None or (isinstance(v, list) and None in v):
        return "-"
    return fmt.format(v)


def verdict_html(summary: Mapping, name: str = "all") -> str:
    """The dataset-level verdict per method (the CLI's first table: is each method better
    than random orders over the inputs?), each cell with its exact value; empty without one."""
    tests = (summary.get("dataset") or {}).get("methods") or {}
    if not tests:
        return ""
    head = "".join(f"<th>{esc(t)}</th>" for _, t, _ in VERDICT_COLUMNS)
    body = "".join(f"<tr data-method='{esc(m)}'><td>{esc(title(m))}</td>"
                   + "".join(f"<td class='num' data-key='{esc(k)}' data-value='{esc(json.dumps(v.get(k)))}'>"
                             f"{esc(_shown(fmt, v.get(k)))}</td>" for k, _, fmt in VERDICT_COLUMNS)
                   + "</tr>" for m, v in tests.items())
    return (f"<table class='summary verdict' data-table='verdict-{esc(name)}'><thead><tr><th>method</th>{head}"
            f"</tr></thead><tbody>{body}</tbody></table><p class='note'>{esc(verdict_caption(summary))}.</p>")


def summary_html(summary: Mapping) -> str:
    """The summary's tables (the dataset-level verdict, then the per-method table over every
    input, then both within the wrong and the correct predictions) with the counts line and
    the column notes of :func:`summary_table`."""
    parts = [verdict_html(summary), method_table(summary)]
    for name in ("wrong", "correct"):
        part = (summary.get("outcomes") or {}).get(name)
        if part is not None:
            parts.append(f"<h3>{esc(name.capitalize())} predictions: {part['inputs']} input(s)</h3>")
            parts.append(verdict_html(part, name) + method_table(part, name) if part["inputs"] else "<p>(none)</p>")
    tail, notes = summary_table(summary).splitlines()[-2:]
    parts.append(f"<p class='tail'>{esc(tail)}.</p><p class='note'>{esc(notes)}.</p>")
    return "".join(parts)


def slices_html(summary: Mapping) -> str:
    """Per slicing, the method table of each slice (with its inputs and accuracy)."""
    parts = []
    for slicing, slices in (summary.get("slices") or {}).items():
        parts.append(f"<h3>By {esc(slicing_title(slicing))}</h3>")
        for part in slices:
            acc = f", accuracy {part['accuracy']:.1%}" if part.get("accuracy") is not None else ""
            name = f"{slicing}={part['value']}"
            parts.append(f"<div class='slice'><h4>{esc(part['value'])}: {part['inputs']} input(s){esc(acc)}</h4>"
                         f"{method_table(part, name)}</div>")
    return "".join(parts) or "<p>No slice: the lines have no labels, and no --slice-by column was given.</p>"


def global_html(view: Mapping | None) -> str:
    """The global view: a ranked table of features (each method's mean |attribution| and mean
    attribution, the inputs it rests on), the methods' agreement on the ranking, and for
    tables a beeswarm per method."""
    if not view:
        return "<p>No global view: images have no features shared across inputs.</p>"
    rows = view.get("features") or []
    if not rows:
        return f"<p>No feature appears in {view.get('min_inputs')} inputs or more.</p>"
    methods = list(rows[0]["methods"])
    what = (f"words seen in at least {view['min_inputs']} inputs (lower-cased; a word's attribution in an "
            "input is the sum over its occurrences there)" if view["modality"] == "text" else "every column")
    head = "".join(f"<th>{esc(title(m))}<br><span class='note'>mean |attr.| (mean)</span></th>" for m in methods)
    body = "".join(
        f"<tr data-feature='{esc(r['feature'])}'><td>{esc(r['feature'])}</td><td class='num'>{r['inputs']}</td>"
        + "".join(f"<td class='num' data-method='{esc(m)}' data-value='{esc(json.dumps(r['methods'][m]))}'>"
                  + ("-" if r["methods"][m]["mean_abs"] is None
                     else f"{r['methods'][m]['mean_abs']:.3g} ({r['methods'][m]['mean']:+.3g})") + "</td>"
                  for m in methods) + "</tr>" for r in rows)
    pairs = "".join(f"<li>{esc(title(a))} vs {esc(title(b))}: Spearman "
                    f"{'-' if rho is None else f'{rho:+.2f}'}, top-{view['agreement']['k']} overlap "
                    f"{'-' if o is None else f'{o:.0%}'}</li>" for a, b, rho, o in method_pairs(view["agreement"]))
    out = (f"<p class='note'>Over {view['inputs']} input(s), {esc(what)}; ranked by the methods' mean weight "
           "(each method's scaled to its largest).</p>"
           f"<table class='summary global'><thead><tr><th>feature</th><th>inputs</th>{head}</tr></thead>"
           f"<tbody>{body}</tbody></table><p>Do the methods agree on what matters?</p><ul>{pairs}</ul>")
    points = view.get("points")
    if points:
        columns = points["columns"]
        order = [columns.index(r["feature"]) for r in rows if r["feature"] in columns]
        pictures = "".join(
            f"<img alt='{esc(title(m))} beeswarm' src='"
            + data_uri(beeswarm_png([columns[j] for j in order], [[p[j] for j in order] for p in pts],
                                    title=f"{title(m)}: {len(pts)} input(s)"))
            + "' style='max-width:100%'>" for m, pts in points["methods"].items())
        out += f"<div class='swarm'>{pictures}</div>"
    if view.get("dropped_words"):
        out += f"<p class='note'>{view['dropped_words']} word occurrence(s) past the first 50,000 words not counted.</p>"
    return out


def _dl(pairs: Sequence[tuple[str, Any]]) -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in pairs if v not in (None, "")) + "</dl>"


def _kv(values: Mapping) -> str:
    return ", ".join(f"{k} = {json.dumps(v, default=str)}" for k, v in values.items()) or "defaults"


def model_html(card: Mapping) -> str:
    m = card.get("model") or {}
    labels = m.get("labels") or []
    shown = ", ".join(map(str, labels[:12])) + (f", … ({len(labels)} in all)" if len(labels) > 12 else "")
    return _dl([("name", esc(m.get("name"))), ("modality", esc(m.get("modality"))),
                ("output kind", esc(m.get("output_kind"))),
                ("weights fingerprint", f"<code>{esc(m.get('fingerprint'))}</code>"),
                ("outputs", esc(shown)), ("loaded", esc(json.dumps(m.get("source"), default=str)) if m.get("source") else None),
                ("device", esc(m.get("device")))])


def data_html(card: Mapping, summary: Mapping, drawn: Drawn) -> str:
    d, s = card.get("data") or {}, card.get("settings") or {}
    count = f"{summary.get('inputs', 0)} explained" + (f", {summary['errors']} failed" if summary.get("errors") else "")
    acc = None
    if summary.get("labelled"):
        wrong = summary["outcomes"]["wrong"]["inputs"]
        acc = f"{summary['accuracy']:.1%} on {summary['labelled']} labelled input(s) ({wrong} wrong)"
    return _dl([("file", f"<code>{esc(d.get('file'))}</code>" if d.get("file") else "the model's own rows"),
                ("read as", esc(d.get("read"))), ("inputs", esc(count)),
                ("limit", esc(d.get("limit")) if d.get("limit") is not None else None),
                ("accuracy", esc(acc)), ("JSON lines", f"<code>{esc(d.get('lines'))}</code>" if d.get("lines") else None),
                ("methods", esc(", ".join(title(m) for m in drawn.params) or ", ".join(s.get("methods") or []))),
                ("metrics", esc(", ".join(s.get("metrics") or []) or "none")
                 + " &nbsp;<span class='note'>(parameters and options: Settings, below)</span>")])


def settings_html(card: Mapping, drawn: Drawn) -> str:
    s = card.get("settings") or {}
    methods = "".join(f"<li><b>{esc(title(m))}</b> (<code>{esc(m)}</code>): {esc(_kv(p))}</li>"
                      for m, p in drawn.params.items())
    metrics = "".join(f"<li><b>{esc(name)}</b>: {esc(_kv(opts))}</li>" for name, opts in drawn.metric_options.items())
    seeds = {f"{m}.seed": p["seed"] for m, p in drawn.params.items() if "seed" in p}
    seeds["metrics.seed"] = (s.get("metric_params") or {}).get("seed", 0)
    vers = card.get("versions") or {}
    return (_dl([("explained", esc("the ground-truth label" if s.get("explain") == "true" else "the predicted output")),
                 ("text unit", esc(s.get("unit") or "word (the default)")
                 if (card.get("model") or {}).get("modality") == "text" else None),
                ("engine", esc(s.get("engine"))),
                 ("metric options given", esc(_kv(s.get("metric_params") or {})) if s.get("metric_params") else None),
                 ("seeds", esc(_kv(seeds)))])
            + f"<h3>Methods, as run</h3><ul>{methods or '<li>none</li>'}</ul>"
            + (f"<h3>Metrics, as run</h3><ul>{metrics}</ul>" if metrics else "")
            + f"<h3>Versions</h3><p class='note'>{esc(_kv(vers))}</p>")


def inputs_html(drawn: Drawn, labels: Sequence[str]) -> str:
    parts = []
    for kind, what in KINDS.items():
        lines = drawn.chosen(kind)
        if not lines:
            continue
        parts.append(f"<h3>{esc(what)}</h3>")
        for line in lines:
            d, f = disagreement(line), fewest_flips(line)
            facts = [f"id {line.get('id')}"] + ([f"disagreement {d:.2f}"] if d is not None else []) \
                + ([f"fewest flips {f}"] if f is not None else [])
            parts.append("<div class='input' data-kind='{}' data-id='{}'>{}</div>".format(
                esc(kind), esc(json.dumps(line.get("id"))),
                explanation_html(line, image=picture(line), labels=labels, heading=" · ".join(facts))))
    return "".join(parts) or "<p>No input had the metrics that choose them (agreement, flip, labels).</p>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;color:#222;max-width:1180px;
 margin:24px auto;padding:0 16px;line-height:1.45;font-size:14px}
h1{font-size:22px;margin-bottom:2px} h2{font-size:18px;border-bottom:2px solid #ddd;padding-bottom:3px;margin-top:28px}
h3{font-size:15px;margin:16px 0 6px}
table.summary{border-collapse:collapse;margin:6px 0;font-size:13px}
table.summary th,table.summary td{padding:3px 9px;border-bottom:1px solid #e3e3e3;text-align:left}
table.summary td.num{text-align:right;font-variant-numeric:tabular-nums}
table.summary tr:last-child td{border-bottom:1px solid #bbb}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;margin:6px 0} dt{color:#555} dd{margin:0}
.note,.tail{color:#555;font-size:12.5px} code{font-size:12.5px;word-break:break-all}
.input{border-top:1px solid #eee;padding:10px 0}
h4{font-size:13.5px;margin:10px 0 2px} .swarm{display:flex;flex-wrap:wrap;gap:12px}
@page{margin:14mm}
@media print{
 *{-webkit-print-color-adjust:exact;print-color-adjust:exact}
 body{max-width:none;margin:0;padding:0;font-size:11.5px}
 h2,h3,h4{break-after:avoid} table,.input,dl,.slice{break-inside:avoid}
}
"""


def report_html(summary: Mapping, card: Mapping, drawn: Drawn) -> str:
    """The whole report document (see the module docstring)."""
    model = (card.get("model") or {}).get("name", "model")
    data = json.dumps({"summary": summary, "card": card}, default=str).replace("</", "<\\/").replace("<!--", "<\\!--")
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>Review of {esc(model)}</title><style>{CSS}</style></head><body>"
        f"<h1>Attribution review: {esc(model)}</h1>"
        f"<p class='note'>Attribution Studio, {esc(card.get('created', ''))}. Every number below is in the "
        "summary JSON at the end of this file and in the review's JSON lines.</p>"
        f"<h2>Model</h2>{model_html(card)}"
        f"<h2>Data</h2>{data_html(card, summary, drawn)}"
        f"<h2>Methods over the dataset</h2>{summary_html(summary)}"
        f"<h2>Slices</h2>{slices_html(summary)}"
        f"<h2>Global view: what drives the model</h2>{global_html(summary.get('global'))}"
        f"<h2>Inputs worth a look</h2>{inputs_html(drawn, (card.get('model') or {}).get('labels') or [])}"
        f"<h2>Settings</h2>{settings_html(card, drawn)}"
        f"<script type='application/json' id='review-data'>{data}</script>"
        "</body></html>")


def write_report(path: str | Path, summary: Mapping, card: Mapping, lines: str | Path,
                 drawn: Drawn | None = None) -> Drawn:
    """Write the report of the review whose JSON lines are in ``lines`` to ``path``.

    Args:
        path: the HTML file to write.
        summary: the review's summary (what :func:`~explainers.review.run_review` returns).
        card: :func:`run_card`'s description of the run.
        lines: the review's JSON lines file.
        drawn: the lines already scanned (:func:`scan`), to read the file only once.

    Returns:
        The inputs drawn (for the trackers).
    """
    drawn = drawn or scan(read_lines(lines))
    Path(path).write_text(report_html(summary, card, drawn), encoding="utf-8")
    return drawn
