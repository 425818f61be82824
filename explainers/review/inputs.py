"""Review inputs read the way data people write them: TSV, CSV or JSON lines, with or
without a header row, streamed in chunks with pandas.

:class:`InputSource` says what to read (the file, its columns); :meth:`InputSource.items`
yields :class:`Item` ``(id, raw input, label or None)`` one at a time, so a million-row file
never sits in memory. Labels stay as written (a class name or an index);
:func:`label_index` maps them to the model's classes.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ..adapters.tabular import check_frame
from ..errors import ExplainerError

#: column names that say "this is the input" / "this is the ground truth" (case-insensitive)
TEXT_NAMES = ("text", "sentence", "review", "content", "document", "comment", "body", "input",
              "utterance", "question", "passage")
IMAGE_NAMES = ("image", "image_path", "path", "file", "filename", "file_name", "filepath")
LABEL_NAMES = ("label", "labels", "target", "class", "gold", "y", "sentiment", "category")
ID_NAMES = ("id", "idx", "index", "guid", "uid")
#: generation: the prompt column, and the expected answer (the greedy answer should contain it)
PROMPT_NAMES = ("prompt",) + TEXT_NAMES
ANSWER_NAMES = ("answer", "expected", "expected_answer") + LABEL_NAMES
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
#: rows per pandas chunk: big enough to amortise the parser, small enough to stay flat
CHUNK_ROWS = 2048
#: rows read to decide whether the first line is a header
SNIFF_ROWS = 50
NONE_WORDS = ("none", "")


class Item(NamedTuple):
    """One review input: its id (row number, file name or ``--id-column`` value), the raw
    input :func:`explainers.explain` takes, and the ground-truth label as written (or None)."""
    id: Any
    raw: Any
    label: Any = None


@dataclass(frozen=True)
class ModelInfo:
    """What reading inputs needs to know of a model: small, so a Ray worker can send it to
    the driver (which never loads the model itself)."""
    modality: str
    labels: tuple[str, ...]
    feature_names: tuple[str, ...] | None = None
    n_rows: int | None = None
    true_labels: tuple[int, ...] | None = None
    #: labels are expected answers as text (generation), not classes
    free_labels: bool = False

    @classmethod
    def from_adapter(cls, model: Any) -> "ModelInfo":
        data = getattr(model, "data", None)
        truth = getattr(model, "true_labels", None)
        return cls(modality=model.modality, labels=tuple(model.labels),
                   feature_names=tuple(model.feature_names) if model.modality == "tabular" else None,
                   n_rows=len(data) if data is not None else None,
                   true_labels=tuple(int(v) for v in truth) if truth is not None else None,
                   free_labels=getattr(model, "label_kind", "class") == "answer")


def label_index(value: Any, classes: Sequence[str], ident: Any = None) -> int | None:
    """The class index of a ground-truth label written as a class name or an index.

    Args:
        value: the label as read (``"positive"``, ``1``, ``"1"``, ``1.0``); None, NaN or
            an empty string mean "no label".
        classes: the model's class names.
        ident: the input's id, for the error message.

    Returns:
        The index, or None for a missing label. A name is matched exactly first, then
        ignoring case; a whole number in range is an index.

    Raises:
        ExplainerError: for a value that is neither (with the model's classes in the message).
    """
    value = _native(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        raise _label_error(value, classes, ident)
    if isinstance(value, int):  # an index (JSON numbers, and what this function returns)
        if 0 <= value < len(classes):
            return value
        raise _label_error(value, classes, ident)
    text = str(value).strip()
    if not text:
        return None
    if text in classes:
        return list(classes).index(text)
    folded = [c.lower() for c in classes]
    if folded.count(text.lower()) == 1:
        return folded.index(text.lower())
    try:
        number = float(text)
    except ValueError:
        raise _label_error(value, classes, ident) from None
    if number.is_integer() and 0 <= number < len(classes):
        return int(number)
    raise _label_error(value, classes, ident)


def _label_error(value: Any, classes: Sequence[str], ident: Any) -> ExplainerError:
    where = f" (input {ident!r})" if ident is not None else ""
    shown = list(classes[:10]) + (["..."] if len(classes) > 10 else [])
    return ExplainerError(f"label {value!r}{where} is neither one of the model's classes {shown} "
                          f"nor a class index 0-{len(classes) - 1}; recode the label column "
                          "(or pass the model's class names with --labels)")


# -- files ---------------------------------------------------------------------------------------
def file_format(path: str | Path) -> str:
    """``"tsv"``, ``"csv"`` or ``"jsonl"`` from the file name (``.txt`` reads as TSV; a
    compression suffix is looked through), else from the first line."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    while suffixes and suffixes[-1] in COMPRESSION:
        suffixes.pop()
    last = suffixes[-1] if suffixes else ""
    if last in (".tsv", ".tab", ".txt"):
        return "tsv"
    if last == ".csv":
        return "csv"
    if last in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    with open(path, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    if first.lstrip().startswith("{"):
        return "jsonl"
    return "tsv" if "\t" in first or "," not in first else "csv"


def _csv_options(fmt: str) -> dict:
    # TSV as GLUE writes it: no quoting, so a review's own quote marks stay in the text
    if fmt == "tsv":
        return {"sep": "\t", "quoting": csv.QUOTE_NONE}
    return {"sep": ","}


def _is_number(value: Any) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def detect_header(first: Sequence[Any], rest: Sequence[Sequence[Any]]) -> bool:
    """Whether a first row is a header: one of its cells is a known column name (``text``,
    ``sentence``, ``label``, ...), or a column is numeric in every later row but not in the
    first (``label`` over ``0``/``1``)."""
    known = set(PROMPT_NAMES + IMAGE_NAMES + ANSWER_NAMES + ID_NAMES)
    if any(str(c).strip().lower() in known for c in first):
        return True
    for j, head in enumerate(first):
        later = [row[j] for row in rest if j < len(row) and str(row[j]).strip()]
        if later and all(_is_number(v) for v in later) and not _is_number(head):
            return True
    return False


@dataclass
class InputSource:
    """Where a review's inputs come from and which columns to read.

    Args:
        modality: ``"text"``, ``"image"`` or ``"tabular"``.
        file: text: a TSV/CSV/JSONL file (``.txt`` reads as TSV); image: a folder of
            images, or a table with a column of image paths (relative to the table's
            folder); tabular: a CSV/TSV/JSONL of feature columns (default: the model's
            own rows).
        text_column, image_column: the input column, by name or (no header) 0-based
            position; default: a column named like one of :data:`TEXT_NAMES` /
            :data:`IMAGE_NAMES`, else the first one.
        label_column: the ground truth; default: a column named like one of
            :data:`LABEL_NAMES` (with a header); ``"none"`` reads no labels.
        id_column: the row id; default: the row number (0-based, header excluded).
        header: True/False, or None to detect (:func:`detect_header`).
        model_csv: tabular with no ``file``: the CSV the model was loaded with, where
            ``label_column`` holds the ground truth of its rows.
        chunk_rows: rows per pandas chunk.
    """
    modality: str
    file: str | None = None
    text_column: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    id_column: str | None = None
    header: bool | None = None
    model_csv: str | None = None
    chunk_rows: int = CHUNK_ROWS
    _plan: dict | None = field(default=None, repr=False)

    # -- checks that need no model -------------------------------------------------------------
    def check(self) -> "InputSource":
        """Resolve the format, header and columns from the file's first rows, before any
        model is loaded. Raises ExplainerError for a missing file or an unknown column."""
        if self.modality not in ("text", "image", "tabular", "generation"):
            raise ExplainerError(f"unknown modality {self.modality!r}")
        if self.modality in ("text", "generation") and not self.file:
            raise ExplainerError(f"--file is required for {self.modality}")
        if self.modality == "image":
            if not self.file:
                raise ExplainerError("--file must be a folder of images, or a table with a column "
                                     "of image paths, for image")
            if Path(self.file).is_dir():
                if self.label_column not in (None, "none"):
                    raise ExplainerError("a folder of images carries no labels; list the images in a "
                                         "table with an image and a label column instead")
                self._plan = {"folder": True}
                return self
        if not self.file:  # tabular: the model's own rows
            self._plan = {"model_rows": True}
            return self
        path = Path(self.file)
        if not path.is_file():
            raise ExplainerError(f"file not found: {self.file}")
        fmt = file_format(path)
        plan: dict = {"format": fmt}
        if fmt == "jsonl":
            columns = list(self._sample_jsonl(path).columns)
            plan["header"] = True
        else:
            sample = self._sample_table(path, fmt)
            given_names = [c for c in (self.text_column, self.image_column, self.label_column,
                                       self.id_column) if c not in (None, "none") and not str(c).isdigit()]
            if self.header is not None:
                plan["header"] = self.header
            elif self.modality == "tabular" or given_names:
                plan["header"] = True  # feature names, or columns asked for by name
            else:
                rows = sample.values.tolist()
                plan["header"] = bool(rows) and detect_header(rows[0], rows[1:])
            columns = ([str(c).strip() for c in sample.iloc[0]] if plan["header"] and len(sample)
                       else list(range(sample.shape[1])))
        plan["columns"] = columns
        plan["label"] = self._pick(columns, self.label_column,
                                   ANSWER_NAMES if self.modality == "generation" else LABEL_NAMES,
                                   "label", plan["header"], required=False)
        plan["id"] = self._pick(columns, self.id_column, (), "id", plan["header"], required=False)
        if self.modality in ("text", "image", "generation"):
            given = self.image_column if self.modality == "image" else self.text_column
            names = {"text": TEXT_NAMES, "image": IMAGE_NAMES, "generation": PROMPT_NAMES}[self.modality]
            plan["input"] = self._pick(columns, given, names, "image" if self.modality == "image" else "text",
                                       plan["header"], required=True,
                                       exclude=(plan["label"], plan["id"]))
        if self.modality == "tabular" and self.label_column not in (None, "none") and plan["label"] is None:
            raise ExplainerError(f"--label-column {self.label_column!r} is not in {path.name}")
        self._plan = plan
        return self

    def _sample_table(self, path: Path, fmt: str):
        try:
            return pd.read_csv(path, header=None, nrows=SNIFF_ROWS, dtype=str, keep_default_na=False,
                               **_csv_options(fmt))
        except (OSError, ValueError, pd.errors.ParserError) as e:
            raise ExplainerError(f"could not read {path.name}: {str(e).splitlines()[0][:200]}") from None

    def _sample_jsonl(self, path: Path):
        try:
            return next(iter(self._json_reader(path, SNIFF_ROWS)))
        except StopIteration:
            return pd.DataFrame()
        except (OSError, ValueError) as e:
            raise ExplainerError(f"could not read {path.name} as JSON lines: "
                                 f"{str(e).splitlines()[0][:200]}") from None

    @staticmethod
    def _json_reader(path: Path, chunk_rows: int):
        # dtype=False, convert_dates=False: values stay as written ("01" is not 1)
        return pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False, convert_dates=False)

    def _pick(self, columns: list, given: str | None, names: Sequence[str], what: str, header: bool,
              required: bool, exclude: Sequence[Any] = ()) -> Any:
        flag = f"--{what}-column" if what != "image" else "--image-column"
        if given == "none" and not required:
            return None
        if given is not None:
            if given in columns:
                return given
            if str(given).isdigit() and not header and int(given) < len(columns):
                return int(given)
            where = ("the file has no header row, so give a 0-based position" if not header
                     else f"its columns are {columns[:20]}")
            raise ExplainerError(f"{flag} {given!r} is not a column of {Path(self.file).name}: {where}")
        if header:
            for name in names:
                for c in columns:
                    if str(c).strip().lower() == name and c not in exclude:
                        return c
        if not required:
            return None
        free = [c for c in columns if c not in exclude]
        if not free:
            raise ExplainerError(f"{Path(self.file).name} has no column left for the {what} input")
        return free[0]

    def describe(self) -> str:
        """One line saying what is read (shown on stderr, so a wrong guess is seen at once)."""
        plan = self._plan or self.check()._plan
        if plan.get("folder"):
            return f"reading images from folder {self.file} (no labels)"
        if plan.get("model_rows"):
            return "reading the model's own rows" + (" with their labels" if self.model_csv or
                                                      self.modality == "tabular" else "")
        head = "header row" if plan.get("header") else "no header row"
        parts = [f"reading {Path(self.file).name} ({plan.get('format')}, {head})"]
        if "input" in plan:
            parts.append(f"{self.modality} from column {plan['input']!r}")
        parts.append(f"labels from column {plan['label']!r}" if plan.get("label") is not None
                     else "no labels")
        if plan.get("id") is not None:
            parts.append(f"ids from column {plan['id']!r}")
        return ", ".join(parts)

    def estimate_rows(self) -> int | None:
        """About how many inputs there are (lines of the file less its header; exact unless
        quoted fields hold line breaks), for progress; None when unknown."""
        plan = self._plan or self.check()._plan
        if plan.get("folder"):
            return sum(1 for p in Path(self.file).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if plan.get("model_rows"):
            return None  # the model's row count (the driver knows it from ModelInfo)
        if any(s.lower() in COMPRESSION for s in Path(self.file).suffixes):
            return None
        lines, last = 0, b"\n"
        with open(self.file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                lines += block.count(b"\n")
                last = block[-1:]
        lines += last != b"\n"
        return max(0, lines - (1 if plan.get("header") and plan["format"] != "jsonl" else 0))

    @property
    def has_labels(self) -> bool:
        plan = self._plan or self.check()._plan
        if plan.get("model_rows"):
            return self.label_column != "none"
        return plan.get("label") is not None

    # -- streaming -----------------------------------------------------------------------------
    def frames(self) -> Iterator[Any]:
        """The file as pandas DataFrames of at most ``chunk_rows`` rows, with the header
        row's names as columns (or positions without one)."""
        plan = self._plan or self.check()._plan
        path = Path(self.file)
        if plan["format"] == "jsonl":
            reader = self._json_reader(path, self.chunk_rows)
        else:
            text_like = self.modality != "tabular"
            reader = pd.read_csv(path, header=0 if plan["header"] else None, chunksize=self.chunk_rows,
                                 dtype=str if text_like else None, keep_default_na=not text_like,
                                 **_csv_options(plan["format"]))
        try:
            with reader:
                for frame in reader:
                    if plan["header"] and plan["format"] != "jsonl":
                        frame.columns = [str(c).strip() for c in frame.columns]
                    yield frame
        except (ValueError, pd.errors.ParserError) as e:
            raise ExplainerError(f"could not read {path.name}: {str(e).splitlines()[0][:200]}") from None

    def items(self, info: ModelInfo) -> Iterator[Item]:
        """The inputs one at a time, streamed.

        Args:
            info: the model's classes and (tabular) feature names and rows.

        Yields:
            :class:`Item` ``(id, raw, label)``; the label as written in the file (map it
            with :func:`label_index`).
        """
        plan = self._plan or self.check()._plan
        if plan.get("folder"):
            for path in sorted(Path(self.file).iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    yield Item(path.name, str(path))
            return
        if plan.get("model_rows"):
            yield from self._model_rows(info)
            return
        row = 0
        base = Path(self.file).resolve().parent
        for frame in self.frames():
            labels = frame[plan["label"]].tolist() if plan["label"] is not None else [None] * len(frame)
            ids = (frame[plan["id"]].tolist() if plan["id"] is not None
                   else list(range(row, row + len(frame))))
            ids = [_native(v) for v in ids]
            labels = [_native(v) for v in labels]
            if self.modality == "tabular":
                drop = [c for c in (plan["label"], plan["id"]) if c is not None]
                values = check_frame(frame.drop(columns=drop), info.feature_names)
                for ident, rec, label in zip(ids, values.to_dict("records"), labels):
                    yield Item(ident, rec, label)
            else:
                for ident, raw, label in zip(ids, frame[plan["input"]].tolist(), labels):
                    raw = "" if raw is None or (isinstance(raw, float) and math.isnan(raw)) else str(raw)
                    if self.modality == "image" and raw and not Path(raw).is_absolute():
                        raw = str(base / raw)
                    yield Item(ident, raw if self.modality == "image" else raw.strip(), label)
            row += len(frame)

    def _model_rows(self, info: ModelInfo) -> Iterator[Item]:
        truth: Sequence[Any] | None = None
        if self.label_column not in (None, "none") and self.model_csv:
            try:
                truth = pd.read_csv(self.model_csv, usecols=[self.label_column])[self.label_column].tolist()
            except (OSError, ValueError) as e:
                raise ExplainerError(f"could not read labels {self.label_column!r} from "
                                     f"{Path(self.model_csv).name}: {str(e).splitlines()[0][:200]}") from None
        elif self.label_column != "none":
            truth = info.true_labels
        for i in range(info.n_rows or 0):
            yield Item(i, i, None if truth is None or i >= len(truth) else _native(truth[i]))


def _native(value: Any) -> Any:
    """numpy scalars as Python values, missing values (NaN, pandas NA) as None, whole
    floats as ints (ids and labels go into JSON and into sets)."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType":
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
