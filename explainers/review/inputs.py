"""Review inputs read the way data people write them: TSV, CSV or JSON lines, with or
without a header row, streamed one line at a time.

:class:`InputSource` says what to read (the file, its columns); :meth:`InputSource.items`
yields :class:`Item` ``(id, raw input, label or None, error or None)`` one at a time, so a
million-row file never sits in memory. Labels stay as written (a class name or an index);
:func:`label_index` maps them to the model's classes.

Every row knows the physical lines it came from. The file is read as bytes and decoded line
by line (Python's ``csv`` module for TSV/CSV, ``json`` for JSON lines), so a row that cannot
be read (bad UTF-8, a line over :data:`MAX_LINE_BYTES`, a JSON line that is no object, a
quoted field that runs over several lines, an unknown label) becomes an :class:`Item` with
its ``error`` naming the line: the review writes an error line for it and goes on, or stops
there with ``strict``. Lines in = rows out + rows reported; only blank lines and the
header row are not rows.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import hashlib
import itertools
import json
import lzma
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, NamedTuple, Sequence

import numpy as np
import pandas as pd

from ..adapters.tabular import FLOAT32_MAX, check_column_names
from ..api import MAX_TEXT_CHARS
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
#: rows read to decide whether the first line is a header
SNIFF_ROWS = 50
#: one physical line (and one CSV field) may hold at most this many bytes: a longer one is
#: reported, never read whole (a 50 MB one-line "text" would take gigabytes to tokenize)
MAX_LINE_BYTES = 1 << 20
#: bytes of the input file hashed for its identity (:meth:`InputSource.identity`)
HEAD_BYTES = 1 << 20
#: repeated ids named in the error
SHOWN_REPEATS = 5
NONE_WORDS = ("none", "")


class Item(NamedTuple):
    """One review input: its id (row number, file name or ``--id-column`` value), the raw
    input :func:`explainers.explain` takes, the ground-truth label as written (or None),
    for a row that could not be read, why (naming its line; ``raw`` is then None), and the
    values of the ``slice_by`` columns (``{column: value}``, or None)."""
    id: Any
    raw: Any
    label: Any = None
    error: str | None = None
    columns: dict | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What reading inputs needs to know of a model: small, so a Ray worker can send it to
    the driver (which never loads the model itself). ``key`` names the model (its class,
    code, weights and settings, not the device) for the resume check."""
    modality: str
    labels: tuple[str, ...]
    feature_names: tuple[str, ...] | None = None
    n_rows: int | None = None
    true_labels: tuple[int, ...] | None = None
    key: str | None = None
    #: labels are expected answers as text (generation), not classes
    free_labels: bool = False

    @classmethod
    def from_adapter(cls, model: Any) -> "ModelInfo":
        data = getattr(model, "data", None)
        truth = getattr(model, "true_labels", None)
        key = hashlib.sha256(json.dumps(
            [type(model).__qualname__, model.name, model.source or {}, model.fingerprint,
             model.code_fingerprint, model.config()], sort_keys=True, default=str).encode()).hexdigest()
        return cls(modality=model.modality, labels=tuple(model.labels),
                   feature_names=tuple(model.feature_names) if model.modality == "tabular" else None,
                   n_rows=len(data) if data is not None else None,
                   true_labels=tuple(int(v) for v in truth) if truth is not None else None, key=key,
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
    return ExplainerError(f"label {_short(value)}{where} is neither one of the model's classes {shown} "
                          f"nor a class index 0-{len(classes) - 1}; recode the label column "
                          "(or pass the model's class names with --labels)")


def _short(value: Any, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width - 3] + "..."


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
    first = next((text for _, text, _ in physical_lines(Path(path))), "")
    if first.lstrip().startswith("{"):
        return "jsonl"
    return "tsv" if "\t" in first or "," not in first else "csv"


def _open(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed by its suffix (a ``.zip`` holds exactly one file)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".gz":
            return gzip.open(path, "rb")
        if suffix == ".bz2":
            return bz2.open(path, "rb")
        if suffix == ".xz":
            return lzma.open(path, "rb")
        if suffix == ".zip":
            archive = zipfile.ZipFile(path)
            names = [n for n in archive.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise ExplainerError(f"{path.name} holds {len(names)} files; a .zip input holds exactly one")
            return archive.open(names[0])
        if suffix == ".zst":
            try:
                import zstandard  # third-party and optional: only a .zst input needs it
            except ImportError:
                raise ExplainerError(f"reading {path.name} needs the zstandard package "
                                     "(pip install zstandard), or decompress it first") from None
            return zstandard.open(path, "rb")
        return open(path, "rb")
    except (OSError, zipfile.BadZipFile) as e:
        raise ExplainerError(f"could not open {path.name}: {getattr(e, 'strerror', None) or e}") from None


def physical_lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """``(line number, text, problem)`` for each physical line, 1-based, the text with its
    ``\\n`` (``\\r\\n`` becomes ``\\n``). Bad UTF-8 is decoded with replacement characters
    and named as the line's problem; a line over :data:`MAX_LINE_BYTES` is skipped unread
    (its text empty) and named too. A UTF-8 byte-order mark is dropped."""
    number = 0
    try:
        with _open(path) as f:
            while True:
                raw = f.readline(MAX_LINE_BYTES + 1)
                if not raw:
                    return
                number += 1
                if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                    size = len(raw)
                    while not raw.endswith(b"\n"):  # skip the rest in bounded pieces
                        raw = f.readline(MAX_LINE_BYTES)
                        if not raw:
                            break
                        size += len(raw)
                    yield number, "\n", (f"the line has {size:,} bytes, over the limit of "
                                         f"{MAX_LINE_BYTES:,} for one input")
                    continue
                if number == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                problem = None
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    text = raw.decode("utf-8", errors="replace")
                    problem = f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line)"
                if text.endswith("\r\n"):
                    text = text[:-2] + "\n"
                yield number, text, problem
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise ExplainerError(f"could not read {path.name} after line {number}: {e}") from None


class Record(NamedTuple):
    """One row of a table (``fields`` a list) or JSON-lines file (a dict), the physical
    lines it spans, and why it cannot be read (``fields`` may then be None)."""
    first: int
    last: int
    fields: list | dict | None
    error: str | None = None

    @property
    def where(self) -> str:
        return f"line {self.first}" if self.first == self.last else f"lines {self.first}-{self.last}"


def records(path: Path, fmt: str, multiline: bool = False) -> Iterator[Record]:
    """The file's rows, blank lines skipped (see :func:`physical_lines` for what a line's
    problem can be). Tables: TSV unquoted (as GLUE writes it), CSV with ``"`` quotes; a
    row whose quoted field runs over several lines is reported unless ``multiline``.
    JSON lines: one object per line."""
    if fmt == "jsonl":
        yield from _json_records(path)
    else:
        yield from _table_records(path, fmt, multiline)


def _json_records(path: Path) -> Iterator[Record]:
    for number, text, problem in physical_lines(path):
        if problem:
            yield Record(number, number, None, problem)
            continue
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except RecursionError:
            yield Record(number, number, None, "the JSON is nested too deeply")
            continue
        except ValueError as e:
            yield Record(number, number, None, f"not JSON ({str(e).splitlines()[0][:120]})")
            continue
        if not isinstance(value, dict):
            yield Record(number, number, None, f"a JSON line must be an object such as "
                                               f'{{"text": ...}}, not {_json_kind(value)} {_short(value, 40)}')
            continue
        yield Record(number, number, value)


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _table_records(path: Path, fmt: str, multiline: bool) -> Iterator[Record]:
    problems: dict[int, str] = {}
    lines = physical_lines(path)

    def feed() -> Iterator[str]:
        for number, text, problem in lines:
            if problem:
                problems[number] = problem
            yield text

    # one field may hold at most one line's worth, so an unmatched quote cannot swallow the file
    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if fmt == "tsv" else {"delimiter": ","}
    reader = csv.reader(feed(), **options)
    done = 0
    while True:
        try:
            row: list | None = next(reader)
            error = None
        except StopIteration:
            return
        except csv.Error as e:
            row, error = None, str(e)
        first, last = done + 1, reader.line_num
        done = last
        found = [problems.pop(n) for n in range(first, last + 1) if n in problems]
        if found:
            error = found[0]
        elif error is None and last > first and not multiline:
            error = (f"one quoted field runs over lines {first}-{last}, {last - first + 1} lines "
                     "(an unmatched quote?); fix the quoting, or pass --multiline if the file's "
                     "fields hold line breaks")
        if error is None and not row:
            continue  # a blank line
        yield Record(first, last, row, error)


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
        id_column: the row id; default: the row number (0-based, header and blank lines
            excluded). Its values must be unique (checked before any model is loaded).
        header: True/False, or None to detect (:func:`detect_header`).
        model_csv: tabular with no ``file``: the CSV the model was loaded with, where
            ``label_column`` holds the ground truth of its rows.
        strict: stop at the first row that cannot be read (or has an unknown label)
            instead of reporting it and going on.
        multiline: accept CSV rows whose quoted fields hold line breaks (by default such a
            row is reported: it is what an unmatched quote looks like).
        slice_by: columns of the file whose values each item carries (:attr:`Item.columns`),
            for the summary's slices (``--slice-by``); by name, or (no header) 0-based position.
    """
    modality: str
    file: str | None = None
    text_column: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    id_column: str | None = None
    header: bool | None = None
    model_csv: str | None = None
    strict: bool = False
    multiline: bool = False
    slice_by: Sequence[str] = ()
    #: rows reported so far by :meth:`items` (the count, and the first few messages)
    reported: int = field(default=0, repr=False)
    examples: list[str] = field(default_factory=list, repr=False)
    _plan: dict | None = field(default=None, repr=False)

    # -- checks that need no model -------------------------------------------------------------
    def check(self) -> "InputSource":
        """Resolve the format, header and columns from the file's first rows, before any
        model is loaded. Raises ExplainerError for a missing or empty file, an empty image
        folder, an unknown or repeated column, or repeated ids."""
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
                if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in Path(self.file).iterdir()):
                    raise ExplainerError(f"no images in folder {self.file} (looked for "
                                         f"{', '.join(IMAGE_SUFFIXES)})")
                self._no_slice_columns("a folder of images")
                self._plan = {"folder": True}
                return self
        if not self.file:  # tabular: the model's own rows
            self._no_slice_columns("the model's own rows")
            self._plan = {"model_rows": True}
            return self
        path = Path(self.file)
        if not path.is_file():
            raise ExplainerError(f"{'a folder, not a file' if path.is_dir() else 'file not found'}: {self.file}")
        fmt = file_format(path)
        plan: dict = {"format": fmt}
        sample = [r for r in itertools.islice(records(path, fmt, self.multiline), SNIFF_ROWS)]
        good = [r for r in sample if r.error is None]
        if not sample:
            raise ExplainerError(f"{path.name} holds no rows")
        if fmt == "jsonl":
            columns = list(dict.fromkeys(k for r in good for k in r.fields))
            plan["header"] = True
        else:
            given_names = [c for c in (self.text_column, self.image_column, self.label_column,
                                       self.id_column) if c not in (None, "none") and not str(c).isdigit()]
            if self.header is not None:
                plan["header"] = self.header
            elif self.modality == "tabular" or given_names:
                plan["header"] = True  # feature names, or columns asked for by name
            else:
                rows = [r.fields for r in good]
                plan["header"] = bool(rows) and sample[0].error is None and detect_header(rows[0], rows[1:])
            if plan["header"]:
                if sample[0].error:
                    raise ExplainerError(f"{path.name}, {sample[0].where} (the header row): {sample[0].error}")
                columns = [str(c).strip() for c in sample[0].fields]
                check_column_names(columns, path.name)
                if len(sample) == 1:
                    raise ExplainerError(f"{path.name} has a header row and no rows below it")
            else:
                columns = list(range(len(good[0].fields) if good else 1))
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
        plan["slice"] = [(name, self._slice_column(columns, name, plan["header"], path.name))
                         for name in self.slice_by]
        self._plan = plan
        if plan["id"] is not None:
            self._check_unique_ids()
        return self

    def _no_slice_columns(self, what: str) -> None:
        if self.slice_by:
            raise ExplainerError(f"--slice-by {', '.join(map(str, self.slice_by))}: {what} has no columns; "
                                 "review a table (CSV/TSV/JSONL) to slice by its columns")

    @staticmethod
    def _slice_column(columns: list, name: str, header: bool, file: str) -> Any:
        if name in columns:
            return name
        if not header and str(name).isdigit() and int(name) < len(columns):
            return int(name)
        raise ExplainerError(f"--slice-by {name!r} is not a column of {file}; its columns are {columns[:20]}")

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

    def _check_unique_ids(self) -> None:
        """Resume skips inputs by id, so a repeated id would silently skip rows: refuse them
        up front, naming the first repeats and their lines (one pass over the file)."""
        seen: dict[Any, int] = {}
        repeats: list[str] = []
        n_repeats = 0
        for rec in self._data_records():
            if rec.fields is None:
                continue
            ident = _native(self._cell(rec, self._plan["id"]))
            key = json.dumps(ident, default=str)
            if key in seen:
                n_repeats += 1
                if len(repeats) < SHOWN_REPEATS:
                    repeats.append(f"{_short(ident, 40)} (lines {seen[key]} and {rec.first})")
            else:
                seen[key] = rec.first
        if n_repeats:
            more = f" and {n_repeats - len(repeats)} more" if n_repeats > len(repeats) else ""
            raise ExplainerError(f"ids repeat in column {self._plan['id']!r} of {Path(self.file).name}: "
                                 f"{', '.join(repeats)}{more}; a resumed review skips inputs by id, so "
                                 "ids must be unique: fix the column, or leave out --id-column to use "
                                 "row numbers")

    def spare_columns(self) -> list:
        """The file's columns that are neither its input, its labels nor its ids: what
        ``slice_by`` can name (by name; by 0-based position in a file without a header).
        Empty for an image folder or the model's own rows."""
        plan = self._plan or self.check()._plan
        used = {plan.get("input"), plan.get("label"), plan.get("id")}
        return [c for c in plan.get("columns", []) if c not in used]

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

    def identity(self) -> dict:
        """What the inputs are, for the resume check: the file's resolved path, size and the
        SHA-256 of its first :data:`HEAD_BYTES` (its mtime too, not compared), the format
        and columns read; or the image folder and its image names; or the model's rows."""
        plan = self._plan or self.check()._plan
        if plan.get("model_rows"):
            return {"model_rows": True, "label_column": self.label_column,
                    "model_csv": str(Path(self.model_csv).resolve()) if self.model_csv else None}
        path = Path(self.file).resolve()
        if plan.get("folder"):
            names = sorted(p.name for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            return {"folder": str(path), "images": len(names),
                    "names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}
        with open(path, "rb") as f:
            head = hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()
        stat = path.stat()
        return {"file": str(path), "size": stat.st_size, "head_sha256": head, "mtime": stat.st_mtime,
                "format": plan["format"], "header": plan["header"], "input": plan.get("input"),
                "label": plan["label"], "id": plan["id"], "multiline": self.multiline}

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
    def _data_records(self) -> Iterator[Record]:
        """The file's rows below the header row."""
        plan = self._plan or self.check()._plan
        rows = records(Path(self.file), plan["format"], self.multiline)
        if plan["header"] and plan["format"] != "jsonl":
            next(rows, None)
        return rows

    def _cell(self, rec: Record, column: Any) -> Any:
        if isinstance(rec.fields, dict):
            return rec.fields.get(column)
        index = self._plan["columns"].index(column) if self._plan["header"] else int(column)
        return rec.fields[index] if index < len(rec.fields) else None

    def items(self, info: ModelInfo) -> Iterator[Item]:
        """The inputs one at a time, streamed.

        Args:
            info: the model's classes and (tabular) feature names and rows.

        Yields:
            :class:`Item` ``(id, raw, label, error)``; the label as written in the file (map
            it with :func:`label_index`). A row that cannot be read, or whose label is none
            of ``info.labels``, comes with ``error`` set (naming its line) and ``raw`` None;
            with ``strict`` it raises instead.

        Raises:
            ExplainerError: for problems of the whole file (its columns do not match the
                model's features), and with ``strict`` for the first bad row.
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
        if self.modality == "tabular":
            self._check_features(info.feature_names or ())
        name = Path(self.file).name
        base = Path(self.file).resolve().parent
        for row, rec in enumerate(self._data_records()):
            ident = row if plan["id"] is None else (
                _native(self._cell(rec, plan["id"])) if rec.fields is not None else f"line {rec.first}")
            label = None
            error = rec.error
            if error is None and isinstance(rec.fields, list) and len(rec.fields) > len(plan["columns"]):
                error = (f"{len(rec.fields)} fields where the {'header has' if plan['header'] else 'first row has'} "
                         f"{len(plan['columns'])} (a stray {'tab' if plan['format'] == 'tsv' else 'comma'}?)")
            if error is None:
                label = _native(self._cell(rec, plan["label"])) if plan["label"] is not None else None
                try:
                    raw = self._raw(rec, info, base)
                    if label is not None and not info.free_labels:
                        label_index(label, info.labels, ident)
                except ExplainerError as e:
                    error = str(e)
            if error is None:
                cells = {n: _native(self._cell(rec, c)) for n, c in plan["slice"]} if plan["slice"] else None
                yield Item(ident, raw, label, None, cells)
                continue
            message = f"{name}, {rec.where}: {error}"
            if self.strict:
                raise ExplainerError(f"{message} (--strict stops at the first such row)")
            self.reported += 1
            if len(self.examples) < 3:
                self.examples.append(f"{rec.where}: {error[:100]}")
            yield Item(ident, None, label, message)

    def _check_features(self, names: Sequence[str]) -> None:
        plan = self._plan
        columns = [c for c in plan["columns"] if c not in (plan["label"], plan["id"])]
        missing = [c for c in names if c not in columns]
        extra = [c for c in columns if c not in names]
        if missing or extra:
            raise ExplainerError(f"{Path(self.file).name}: columns do not match the model: missing "
                                 f"{missing}, extra {extra}")

    def _raw(self, rec: Record, info: ModelInfo, base: Path) -> Any:
        """The row's input: a text, an image path or a ``{feature: value}`` mapping; an
        ExplainerError says why a value cannot be one."""
        plan = self._plan
        if self.modality == "tabular":
            if isinstance(rec.fields, dict):
                extra = [k for k in rec.fields if k not in info.feature_names and k not in (plan["label"], plan["id"])]
                if extra:
                    raise ExplainerError(f"key(s) {extra[:5]} are none of the model's features")
            return {c: _number(self._cell(rec, c), c) for c in info.feature_names}
        column = plan["input"]
        value = self._cell(rec, column)
        if value is None:
            value = ""
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        elif not isinstance(value, str):
            raise ExplainerError(f"the {column!r} value is {_json_kind(value)}, not a "
                                 f"{'path' if self.modality == 'image' else 'text'}: {_short(value, 40)}")
        if self.modality != "image":
            value = value.strip()
            if len(value) > MAX_TEXT_CHARS:
                raise ExplainerError(f"the text has {len(value):,} characters, over the limit of "
                                     f"{MAX_TEXT_CHARS:,}")
            return value
        if value and not Path(value).is_absolute():
            value = str(base / value)
        return value

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


def _number(value: Any, column: str) -> float:
    """A table cell as a finite float32-sized number, or an ExplainerError naming it."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ExplainerError(f"column {column!r} is empty")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ExplainerError(f"column {column!r} is {_short(value, 40)}, not a number")
    try:
        number = float(value)
    except ValueError:
        raise ExplainerError(f"column {column!r} is {_short(value, 40)}, not a number") from None
    if not math.isfinite(number) or abs(number) > FLOAT32_MAX:
        raise ExplainerError(f"column {column!r} is {value}: not a finite float32 number")
    return number


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


def _is_number(value: Any) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True


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
