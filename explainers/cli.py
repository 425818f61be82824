"""Command line: ``python -m explainers {explain,predict,review,methods}``.

Every command prints JSON (one object, or one object per line). Errors exit with code 2 and
one line on stderr, never a traceback. The console script ``attribution-studio`` runs the same
commands, plus ``serve`` (the dashboard; :mod:`dashboard.console`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from cache.models import DEFAULT_LOADERS, read_csv

from .adapters.generation_units import Prompt
from .adapters.tabular import check_column_names, check_frame, csv_header
from .api import check_text, explain
from .errors import ExplainerError
from .precision import POLICIES
from .registry import get_method, list_methods
from .review import InputSource, ModelInfo, ModelSpec, run_review
from .review.outputs import check_out
from .review.slices import check_columns
from .review.trackers import check_publish


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--modality", required=True, choices=["text", "image", "tabular", "generation"])
    p.add_argument("--model", help="HF id or directory (text), timm name (image), torch.export "
                                   "(.pt2) or TorchScript file (tabular), or 'diabetes' (the "
                                   "regression default for tables), a causal-LM folder or .gguf "
                                   "file (generation); default: the modality's default model")
    p.add_argument("--checkpoint", help="image: local .safetensors or state-dict file for --model")
    p.add_argument("--csv", help="tabular: CSV with a header row; with --model, the model's "
                                 "reference rows; without, rows for the default model")
    p.add_argument("--labels", help="comma-separated class names, if the model has none")
    p.add_argument("--label-column", help="the column holding the ground truth (tabular: dropped from "
                                          "the features; review: the labels, 'none' for none)")
    p.add_argument("--output", choices=["softmax", "sigmoid", "score"],
                   help="what the model's outputs are: softmax (classes), sigmoid (independent "
                        "probabilities, multi-label), score (raw values: regression, ranking); "
                        "default: inferred (one output without --labels is a score)")


@dataclass(frozen=True)
class Command:
    """A subcommand a front end adds to this parser (the console script adds ``serve``).

    Args:
        name, help: as for ``add_parser``.
        arguments: adds the subcommand's arguments to its parser.
        run: runs it; returns the exit code.
        passthrough: unknown options are handed on (in ``args.passthrough``) instead of refused.
    """
    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    passthrough: bool = False


def build_parser(prog: str = "python -m explainers", extra: Sequence[Command] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    e = sub.add_parser("explain", help="attribute one input with several methods")
    _add_model_args(e)
    e.add_argument("--text")
    e.add_argument("--image", help="image file path")
    e.add_argument("--row", type=int, help="tabular: row index of the data")
    e.add_argument("--methods", help="comma list (default: integrated_gradients,gradient_shap,occlusion; "
                                     "generation: feature_ablation,integrated_gradients)")
    e.add_argument("--target", help="class index or label (default: predicted class); generation: "
                                    "the continuation to explain (default: the greedy one)")
    e.add_argument("--contrast", help="generation: a second continuation B; explains "
                                      "log p(target) - log p(B)")
    e.add_argument("--template", help="generation: a prompt template with {name} fields (the units); "
                                      "values and baselines from --values / --baselines (JSON)")
    e.add_argument("--values", help="generation: the template's field values, a JSON object or list")
    e.add_argument("--baselines", help="generation: what a removed field becomes, a JSON object or "
                                       "list (default: deleted)")
    e.add_argument("--max-new-tokens", type=int, help="generation: length of the greedy continuation")
    e.add_argument("--no-chat", action="store_true", help="generation: the prompt as plain text, "
                                                          "without the tokenizer's chat template")
    e.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE")
    e.add_argument("--metrics", default="", help="comma list of agreement,faithfulness,flip,"
                                                 "stability,sanity,robustness")
    e.add_argument("--metric-param", action="append", default=[], metavar="NAME=VALUE")
    e.add_argument("--no-cache", action="store_true")
    e.add_argument("--precision", choices=list(POLICIES), default=None,
                   help="fp32 (default), bf16-forward (forward-only passes in bf16 where the device "
                        "has bf16 units; gradients and reported numbers fp32) or auto")
    e.add_argument("--unit", choices=["word", "piece", "token", "sentence", "field"],
                   help="text: words (default) or word pieces; generation: token, word (default), "
                        "sentence or field (templates)")

    p = sub.add_parser("predict", help="predict every row of a file, one JSON line each")
    _add_model_args(p)
    p.add_argument("--file", help="text: TSV/TXT (first column = text); image: folder; "
                                  "tabular: CSV (default: the model's data)")

    r = sub.add_parser("review", help="explain + metrics over a file of inputs, with a summary")
    _add_model_args(r)
    r.add_argument("--file", help="text: TSV/CSV/JSON lines, header row detected; image: a folder, or a "
                                  "table with a column of image paths; tabular: CSV/TSV/JSON lines "
                                  "(default: the model's own rows)")
    r.add_argument("--text-column", help="text: the column of texts, by name or (no header) 0-based "
                                         "position; default: text/sentence/review/..., else the first")
    r.add_argument("--image-column", help="image tables: the column of image paths (relative to the "
                                          "table's folder); default: image/path/file/..., else the first")
    r.add_argument("--id-column", help="a column of unique ids for the JSON lines (default: row number)")
    r.add_argument("--header", choices=["auto", "yes", "no"], default="auto",
                   help="whether the file's first row names the columns (default: detected)")
    r.add_argument("--explain", choices=["predicted", "true"], default="predicted",
                   help="explain the predicted class (default) or the ground-truth label")
    r.add_argument("--limit", type=int, default=None, help="first N inputs only")
    r.add_argument("--methods", help="comma list (default: integrated_gradients,gradient_shap,occlusion; "
                                     "generation: feature_ablation,integrated_gradients)")
    r.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE")
    r.add_argument("--metrics", default="agreement,faithfulness,flip")
    r.add_argument("--metric-param", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("--out", help="write the JSON lines here instead of stdout (and OUT.meta.json beside "
                                 "it); an existing review of the same inputs, model and settings is "
                                 "resumed (its ids are skipped), anything else is refused")
    r.add_argument("--overwrite", action="store_true", help="start --out over instead of resuming it")
    r.add_argument("--strict", action="store_true",
                   help="stop at the first row that cannot be read (bad UTF-8, a broken line, an unknown "
                        "label); default: it gets an error line and the run goes on")
    r.add_argument("--multiline", action="store_true",
                   help="CSV: accept quoted fields that hold line breaks (default: such a row is reported, "
                        "as an unmatched quote would swallow the lines after it)")
    r.add_argument("--no-cache", action="store_true")
    r.add_argument("--unit", choices=["word", "piece", "token", "sentence"],
                   help="text: words (default) or word pieces; generation: token, word or sentence")
    r.add_argument("--precision", choices=list(POLICIES), default=None,
                   help="fp32 (default), bf16-forward (forward-only passes in bf16 where the device "
                        "has bf16 units; gradients and reported numbers fp32) or auto")
    r.add_argument("--batch-size", type=int, default=8, help="inputs per task (default 8)")
    r.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process (default); ray: workers on a Ray cluster")
    r.add_argument("--address", help="ray: an existing cluster, 'auto' or HOST:PORT (default: start "
                                     "Ray on this machine's cores)")
    r.add_argument("--workers", type=int, help="ray: workers, each loading the model once "
                                               "(default: as many as the CPUs/GPUs allow)")
    r.add_argument("--cpus-per-worker", type=float, help="ray: CPUs (torch threads) per worker")
    r.add_argument("--gpus-per-worker", type=float, help="ray: GPUs per worker (0.5: two share one)")

    r.add_argument("--slice-by", metavar="COLUMN", action="append",
                   help="also summarize per value of this input-file column (repeat, or comma-separate, "
                        "for several); the true and predicted label and (text) the length are always sliced")
    r.add_argument("--report", metavar="HTML", help="write a self-contained HTML report of the review "
                                                    "(opens offline, prints); needs --out")
    r.add_argument("--tensorboard", metavar="DIR", help="write the summary to a TensorBoard log folder "
                                                        "(scalars per method, the table, the drawn inputs); "
                                                        "needs --out and the 'tracking' extra")
    r.add_argument("--mlflow", metavar="URI", nargs="?", const="", default=None,
                   help="log an MLflow run (params, metrics, the report and the JSON lines); URI: a "
                        "tracking server or store (default: a local file store, mlruns/ next to "
                        "--out); needs --out and the 'tracking' extra")

    sub.add_parser("methods", help="list methods: modalities, paper, summary, convergence delta")
    for command in extra:
        command.arguments(sub.add_parser(command.name, help=command.help))
    return parser


def parse_params(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``["integrated_gradients.n_steps=64"]`` -> ``{"integrated_gradients": {"n_steps": "64"}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not method or not name:
            raise ExplainerError(f"--param must look like method.name=value, got {item!r}")
        out.setdefault(method.strip(), {})[name.strip()] = value.strip()
    return out


def parse_metric_params(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ExplainerError(f"--metric-param must look like name=value, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def methods_from_args(args: argparse.Namespace) -> list[str]:
    """``--methods`` (:func:`method_list`), or the modality's default list when the flag is
    left out."""
    if args.methods is not None:
        return method_list(args.methods)
    if args.modality == "generation":
        return ["feature_ablation", "integrated_gradients"]
    return ["integrated_gradients", "gradient_shap", "occlusion"]


def _json_arg(flag: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise ExplainerError(f"{flag} must be JSON (an object or a list): {e}") from None


def prompt_from_args(args: argparse.Namespace) -> Any:
    """A generation prompt: ``--text``, or ``--template`` with ``--values`` / ``--baselines``."""
    if args.template is None and args.text is None:
        raise ExplainerError("--text (or --template with --values) is required for --modality generation")
    return Prompt(text=args.text or "", template=args.template, values=_json_arg("--values", args.values),
                  baselines=_json_arg("--baselines", args.baselines),
                  chat=False if args.no_chat else None, max_new_tokens=args.max_new_tokens)


def method_list(value: str) -> list[str]:
    """``--methods a,b``: the names; an empty list is refused rather than read as "the
    defaults" (leave the flag out for those)."""
    names = split_list(value)
    if not names:
        raise ExplainerError(f"--methods {value!r} names no method; leave the flag out for the defaults "
                             "(python -m explainers methods lists them)")
    return names


def load_from_args(args: argparse.Namespace):
    return spec_from_args(args).load()


def csv_rows(model, path: str):
    """Rows of a CSV checked against ``model``'s feature names (missing/extra/NaN and
    repeated column names refused)."""
    check_column_names(csv_header(path), os.path.basename(path))
    return check_frame(read_csv(path), model.feature_names)


def input_from_args(args: argparse.Namespace, model) -> Any:
    if args.modality == "tabular" and args.csv and (not args.model or args.model in DEFAULT_LOADERS):
        frame = csv_rows(model, args.csv)
        if args.row is None or not 0 <= args.row < len(frame):
            raise ExplainerError(f"--row must index the CSV's {len(frame)} rows")
        return frame.iloc[args.row].to_dict()
    if args.modality == "generation":
        return prompt_from_args(args)
    given = {"text": args.text, "image": args.image, "tabular": args.row}[args.modality]
    if given is None:
        flag = {"text": "--text", "image": "--image", "tabular": "--row"}[args.modality]
        raise ExplainerError(f"{flag} is required for --modality {args.modality}")
    return given


def iter_inputs(model, modality: str, file: str | None) -> Iterator[tuple[Any, Any, str | None]]:
    """``(id, input, error)`` from a table of texts, a folder of images or a CSV of rows
    (read by :class:`explainers.review.InputSource`: header detected, streamed); ``error``
    names the line of a row that cannot be read (its input is then None)."""
    source = InputSource(modality, file, label_column="none").check()
    for item in source.items(ModelInfo.from_adapter(model)):
        yield item.id, item.raw, item.error


def spec_from_args(args: argparse.Namespace):
    """The :class:`explainers.review.ModelSpec` the model arguments name (what
    :func:`load_from_args` loads, and what a Ray worker loads)."""
    output = getattr(args, "output", None)
    if not args.model:
        if args.checkpoint:
            raise ExplainerError("--checkpoint needs --model as well")
        return ModelSpec(args.modality, args.modality, output=output)
    default = args.model in DEFAULT_LOADERS and not args.checkpoint  # --csv: rows, not model data
    labels = tuple(split_list(args.labels)) if args.labels else None
    return ModelSpec(args.model, args.modality, checkpoint=args.checkpoint,
                     data=None if default else args.csv, labels=labels,
                     label_column=args.label_column if args.modality == "tabular" else None,
                     output=output)


def review_source(args: argparse.Namespace):
    """The review's :class:`explainers.review.InputSource`, checked (before any model
    is loaded)."""
    file = args.file
    if args.modality == "tabular" and not file and args.csv and not args.model:
        file = args.csv  # rows for the default model
    header = {"auto": None, "yes": True, "no": False}[args.header]
    source = InputSource(args.modality, file, text_column=args.text_column, image_column=args.image_column,
                         label_column=args.label_column, id_column=args.id_column, header=header,
                         model_csv=args.csv if args.model else None, strict=args.strict,
                         multiline=args.multiline, slice_by=check_columns(args.slice_by)).check()
    if args.explain == "true" and not source.has_labels:
        raise ExplainerError("--explain true needs ground-truth labels: name their column with "
                             "--label-column")
    return source


def check_args(args: argparse.Namespace) -> None:
    """Checks that need no model, run before loading one (undecodable ``--text`` bytes reach
    Python as lone surrogates, which no tokenizer accepts)."""
    if getattr(args, "text", None) is not None:
        try:
            check_text(args.text)
        except ExplainerError as e:
            raise ExplainerError(f"--text: {e}") from None


def cmd_explain(args: argparse.Namespace) -> None:
    check_args(args)
    methods = methods_from_args(args)  # before the model loads
    model = load_from_args(args)
    result = explain(model, input_from_args(args, model), methods=methods,
                     params=parse_params(args.param), target=args.target,
                     use_cache=not args.no_cache, metrics=split_list(args.metrics),
                     metric_params=parse_metric_params(args.metric_param), unit=args.unit,
                     contrast=args.contrast, precision=args.precision)
    print(json.dumps(result.to_dict()))


def cmd_predict(args: argparse.Namespace) -> None:
    if args.file:
        InputSource(args.modality, args.file, label_column="none").check()  # an empty file or folder: before loading
    model = load_from_args(args)
    for ident, raw, error in iter_inputs(model, args.modality, args.file):
        if error is not None:
            print(json.dumps({"index": ident, "error": error}), flush=True)
            continue
        try:
            if isinstance(raw, str) and args.modality in ("text", "generation"):
                check_text(raw)
            enc = model.encode(raw)
            p = model.predict(enc)
            d = p.to_dict()  # probabilities (classifiers) or value and values (scores)
            line = {"index": ident, "label": p.label, "class_index": p.index,
                    **{k: v for k, v in d.items() if k not in ("index", "label")}}
            if hasattr(model, "output_info"):  # generation: the greedy continuation it scored
                line["continuation"] = model.output_info(enc)["continuation"]["text"]
        except ExplainerError as e:
            line = {"index": ident, "error": str(e)}
        print(json.dumps(line), flush=True)


def cmd_review(args: argparse.Namespace) -> None:
    check_publish(args.out, args.report, args.tensorboard, args.mlflow)  # before loading anything
    methods = methods_from_args(args)
    source = review_source(args)
    if args.out:
        check_out(args.out, source.file)  # before the model loads
    spec = spec_from_args(args)
    ray_args = {"workers": args.workers, "address": args.address, "cpus_per_worker": args.cpus_per_worker,
                "gpus_per_worker": args.gpus_per_worker}
    if args.engine == "local":
        given = [f"--{k.replace('_', '-')}" for k, v in ray_args.items() if v is not None]
        if given:
            raise ExplainerError(f"{', '.join(given)} need(s) --engine ray")
        ray_args = {}
    model = spec if args.engine == "ray" else spec.load()  # ray: each worker loads the spec
    run_review(model, source, methods=methods, params=parse_params(args.param),
               metrics=split_list(args.metrics), metric_params=parse_metric_params(args.metric_param),
               limit=args.limit, out=args.out, use_cache=not args.no_cache, unit=args.unit,
               explain=args.explain, engine=args.engine, batch_size=args.batch_size,
               resume=not args.overwrite, strict=args.strict, report=args.report,
               tensorboard=args.tensorboard, mlflow=args.mlflow, precision=args.precision, **ray_args)


def cmd_methods(args: argparse.Namespace) -> None:
    out = {}
    for name in list_methods():
        m = get_method(name)
        out[name] = {"title": m.title, "modalities": list(m.modalities), "paper": m.paper,
                     "summary": m.summary, "convergence_delta": m.has_convergence_delta}
    print(json.dumps(out, indent=2))


def main(argv: Sequence[str] | None = None, *, prog: str = "python -m explainers",
         extra: Sequence[Command] = ()) -> int:
    """Run one command; returns the exit code (2 and one line on stderr for an error).

    Args:
        argv: the arguments (default ``sys.argv[1:]``).
        prog: the program name shown in help and usage lines.
        extra: further subcommands (the console script's ``serve``).
    """
    parser = build_parser(prog, extra)
    args, rest = parser.parse_known_args(argv)
    added = {c.name: c for c in extra}
    if rest and not (args.command in added and added[args.command].passthrough):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.passthrough = rest
    if args.command in added:
        return added[args.command].run(args)
    warnings.filterwarnings("ignore")  # library chatter would garble the JSON on stderr readers
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # stderr: one error line, no bars
    try:
        {"explain": cmd_explain, "predict": cmd_predict, "review": cmd_review,
         "methods": cmd_methods}[args.command](args)
    except ExplainerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # last resort: one line, never a traceback
        print(f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", file=sys.stderr)
        return 2
    return 0
