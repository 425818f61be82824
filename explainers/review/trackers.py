"""Where a finished review goes besides its JSON lines: the HTML report, TensorBoard, MLflow.

TensorBoard and MLflow are optional (the ``tracking`` extra: ``pip install
"attribution-studio[tracking]"``) and imported only here, on their own path:

* :func:`write_tensorboard`: per method the summary's figures as scalars (``METHOD/deletion_aopc``,
  ``METHOD/beats_random_share``, ``METHOD/agreement``, ``METHOD/seconds``, ...; within the wrong
  and the correct predictions under ``wrong/`` and ``correct/``), at step = the inputs
  reviewed, the summary table as text, and the inputs the report draws as images;
* :func:`log_mlflow`: one run with the settings as params, the same figures as metrics, the
  model's fingerprint as a tag, and the report, the JSON lines and the summary as artifacts.

:func:`publish` does what a review asked for, in that order, after the lines are written.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import ExplainerError
from .report import KINDS, Drawn, line_png, read_lines, scan, write_report
from .slices import overview_table
from .summary import COLUMNS, summary_table

#: the MLflow experiment reviews are logged under
EXPERIMENT = "attribution-studio review"
#: MLflow takes at most this many params / metrics per batch call
BATCH = 100


def check_publish(out: Any, report: Any, tensorboard: Any, mlflow: Any) -> None:
    """Fail before a long run, not after it: the outputs need the lines file, and
    TensorBoard / MLflow their packages."""
    asked = [flag for flag, v in (("--report", report), ("--tensorboard", tensorboard), ("--mlflow", mlflow))
             if v is not None and v is not False]
    if asked and not out:
        raise ExplainerError(f"{', '.join(asked)} read the JSON lines back: give --out FILE as well")
    if report and not Path(report).resolve().parent.is_dir():
        raise ExplainerError(f"--report: folder {Path(report).resolve().parent} does not exist")
    for flag, value, module in (("--tensorboard", tensorboard, "tensorboard"), ("--mlflow", mlflow, "mlflow")):
        if value is not None and importlib.util.find_spec(module) is None:
            raise ExplainerError(f"{flag} needs the {module} package: pip install \"attribution-studio[tracking]\"")


#: the dataset-level verdict's figures logged per method (``METHOD/dataset_KEY``; beats_random as 0/1)
DATASET_FIGURES = ("beats_random", "p_value", "mean_difference", "effect_size", "n")


def figures(summary: Mapping) -> dict[str, float]:
    """The summary's numbers by name: ``METHOD/COLUMN`` for each method and the random control
    (``random/...``), the dataset-level verdict's ``METHOD/dataset_...``, the same under ``wrong/`` and ``correct/`` and per slice
    (``slices/SLICING/VALUE/...``), and ``review/inputs``, ``review/errors``, ``review/accuracy``."""
    out: dict[str, float] = {}

    def add(part: Mapping, prefix: str) -> None:
        rows = dict(part.get("methods") or {})
        rows["random"] = part.get("random") or {}
        for name, row in rows.items():
            for key, _, _ in COLUMNS:
                if row.get(key) is not None:
                    out[f"{prefix}{name}/{key}"] = float(row[key])
        for name, test in ((part.get("dataset") or {}).get("methods") or {}).items():
            for key in DATASET_FIGURES:
                if test.get(key) is not None:
                    out[f"{prefix}{name}/dataset_{key}"] = float(test[key])

    add(summary, "")
    for name, part in (summary.get("outcomes") or {}).items():
        add(part, f"{name}/")
    for slicing, parts in (summary.get("slices") or {}).items():
        for part in parts:
            add(part, f"slices/{_tag(slicing)}/{_tag(part['value'])}/")
    for key in ("inputs", "errors", "accuracy"):
        if summary.get(key) is not None:
            out[f"review/{key}"] = float(summary[key])
    return out


def _tag(text: Any) -> str:
    """``text`` with only the characters MLflow allows in a metric name (TensorBoard takes them too)."""
    return re.sub(r"[^A-Za-z0-9_\-. ]", "_", str(text)) or "_"


def _preformatted(summary: Mapping) -> str:
    """The CLI's summary table (and the global view's) as a Markdown code block (TensorBoard's
    text plugin renders Markdown)."""
    text = summary_table(summary)
    view = overview_table(summary.get("global"))
    return "\n".join("    " + line for line in (text + ("\n\n" + view if view else "")).splitlines())


def write_tensorboard(logdir: str | Path, summary: Mapping, card: Mapping, drawn: Drawn) -> None:
    """Write the review to a TensorBoard log folder (see the module docstring)."""
    from torch.utils.tensorboard import SummaryWriter  # optional: the tracking extra's tensorboard
    step = int(summary.get("inputs") or 0)
    writer = SummaryWriter(str(logdir))
    try:
        for tag, value in figures(summary).items():
            writer.add_scalar(tag, value, step)
        writer.add_text("summary", _preformatted(summary), step)
        model = card.get("model") or {}
        writer.add_text("run", "    " + json.dumps({"model": {k: model.get(k) for k in ("name", "fingerprint",
                                                                                    "output_kind")},
                                                    "data": card.get("data"), "settings": card.get("settings")},
                                                   indent=1, default=str).replace("\n", "\n    "), step)
        for kind in KINDS:
            for rank, line in enumerate(drawn.chosen(kind), 1):
                writer.add_image(f"inputs/{kind}/{rank}", line_png(line), step, dataformats="HWC")
    finally:
        writer.close()
    print(f"TensorBoard log written to {logdir} (tensorboard --logdir {logdir})", file=sys.stderr, flush=True)


@contextmanager
def _mlflow_env(uri: str) -> Iterator[None]:
    """MLflow offline: no telemetry; a local file store allowed (MLflow 3 keeps file stores in
    maintenance mode and refuses them unless told), for this call only."""
    keep = {k: os.environ.get(k) for k in ("MLFLOW_DISABLE_TELEMETRY", "MLFLOW_ALLOW_FILE_STORE")}
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if uri.startswith("file:") or "://" not in uri:
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        yield
    finally:
        for k, v in keep.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def mlflow_uri(given: str | None, out: str | Path) -> str:
    """The tracking URI: as given, a folder path made a ``file:`` URI, or (empty) a file store
    ``mlruns/`` next to the JSON lines."""
    if not given:
        return (Path(out).resolve().parent / "mlruns").as_uri()
    if "://" not in given and not given.startswith(("file:", "databricks", "sqlite:")):
        return Path(given).resolve().as_uri()
    return given


def params_of(card: Mapping, drawn: Drawn) -> dict[str, str]:
    """The run's settings as MLflow params: the methods' resolved parameters
    (``METHOD.NAME``), the metrics and their options, the data, the model."""
    s, d, m = card.get("settings") or {}, card.get("data") or {}, card.get("model") or {}
    out = {"methods": ",".join(drawn.params) or ",".join(s.get("methods") or []),
           "metrics": ",".join(s.get("metrics") or []), "explain": s.get("explain"), "unit": s.get("unit"),
           "engine": s.get("engine"), "file": d.get("file"), "limit": d.get("limit"),
           "model": m.get("name"), "output_kind": m.get("output_kind")}
    for method, values in drawn.params.items():
        for k, v in values.items():
            out[f"{method}.{k}"] = v
    for k, v in (s.get("metric_params") or {}).items():
        out[f"metric.{k}"] = v
    return {k: (v if isinstance(v, str) else json.dumps(v, default=str))[:500]
            for k, v in out.items() if v is not None}


def log_mlflow(uri: str, summary: Mapping, card: Mapping, drawn: Drawn, lines: str | Path,
               report: str | Path) -> str:
    """Log the review as one MLflow run (see the module docstring); returns its run id.

    A client bound to ``uri`` does the logging, so the caller's own MLflow settings (the
    process's tracking URI, an active run) are left as they were.
    """
    from mlflow import MlflowClient  # optional: the tracking extra's mlflow-skinny
    from mlflow.entities import Metric, Param, RunTag
    with _mlflow_env(uri):
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(EXPERIMENT)
        experiment = found.experiment_id if found else client.create_experiment(EXPERIMENT)
        model = card.get("model") or {}
        tags = {"model.fingerprint": model.get("fingerprint"), "model.name": model.get("name"),
                "model.output_kind": model.get("output_kind"), "model.modality": model.get("modality"),
                "attribution_studio.version": (card.get("versions") or {}).get("attribution-studio")}
        run = client.create_run(experiment, run_name=f"review of {model.get('name')}",
                                tags={k: str(v) for k, v in tags.items() if v is not None})
        run_id = run.info.run_id
        try:
            now, step = int(time.time() * 1000), int(summary.get("inputs") or 0)
            params = [Param(k, v) for k, v in params_of(card, drawn).items()]
            metrics = [Metric(k, v, now, step) for k, v in figures(summary).items()]
            for i in range(0, max(len(params), len(metrics)), BATCH):
                client.log_batch(run_id, metrics=metrics[i:i + BATCH], params=params[i:i + BATCH],
                                 tags=[RunTag("mlflow.note.content", "Attribution Studio review")] if i == 0 else [])
            client.log_artifact(run_id, str(report))
            client.log_artifact(run_id, str(lines))
            client.log_dict(run_id, {"summary": dict(summary), "card": dict(card)}, "summary.json")
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id)
    print(f"MLflow run {run_id} logged to {uri}", file=sys.stderr, flush=True)
    return run_id


def publish(summary: Mapping, card: Mapping, lines: str | Path, *, report: str | Path | None = None,
            tensorboard: str | Path | None = None, mlflow: str | None = None) -> dict:
    """Write what a review asked for, after its lines: the report, the TensorBoard log, the
    MLflow run (``mlflow=""``: the default local store). The lines are read once.

    Returns:
        ``{"report": path, "tensorboard": folder, "mlflow": {"uri", "run_id"}}`` for those written.
    """
    drawn = scan(read_lines(lines))
    done: dict[str, Any] = {}
    if report:
        write_report(report, summary, card, lines, drawn)
        print(f"report written to {report}", file=sys.stderr, flush=True)
        done["report"] = str(report)
    if tensorboard:
        write_tensorboard(tensorboard, summary, card, drawn)
        done["tensorboard"] = str(tensorboard)
    if mlflow is not None:
        uri = mlflow_uri(mlflow, lines)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(report) if report else Path(tmp) / "report.html"
            if not report:  # the run carries a report either way
                write_report(path, summary, card, lines, drawn)
            done["mlflow"] = {"uri": uri, "run_id": log_mlflow(uri, summary, card, drawn, lines, path)}
    return done
