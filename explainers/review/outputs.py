"""A review's output file: what makes it resumable, the lines already written (resume), and
the writer that appends each micro-batch's lines as soon as they are back, with progress on
stderr.

Beside ``OUT`` the review writes ``OUT.meta.json``: this tool's format, the input (its file's
path, size and the hash of its first MiB), the model and every setting that shapes a line
(:func:`run_meta`). An existing ``OUT`` is resumed only when that sidecar matches the run
and every line is a review line of it (:func:`read_existing`); anything else is refused and
left as it is. The one repair: a last line cut short by a killed run is dropped, and said.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import ExplainerError
from .summary import Summary, slim

#: what the sidecar's "tool" and "format" say; a file of another format is not resumed
TOOL = "attribution-studio review"
FORMAT = 1
#: settings compared on resume, in the order a mismatch is reported
SETTINGS = ("methods", "params", "metrics", "metric_params", "unit", "explain")
#: settings a run's sidecar carries only when set (so the files of runs without them still resume)
OPTIONAL_SETTINGS = ("precision", "slice_by")
REFUSE = "use another --out, or --overwrite to replace it"


def id_key(ident: Any) -> int | str:
    """How ids are compared on resume: as JSON writes them (``3`` and ``"3"`` differ);
    whole-number ids stay ints, the smallest key for the common case of row numbers."""
    if isinstance(ident, int) and not isinstance(ident, bool):
        return ident
    return json.dumps(ident, default=str)


def meta_path(out: str | Path) -> Path:
    """The sidecar of ``out``: ``OUT.meta.json``."""
    return Path(str(out) + ".meta.json")


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def run_meta(inputs: dict, model: dict, settings: dict) -> dict:
    """The sidecar of a run: ``{"tool", "format", "input", "model", "settings"}``.

    Args:
        inputs: what the inputs are (:meth:`~explainers.review.inputs.InputSource.identity`,
            or ``{"iterable": True}`` for inputs given from Python).
        model: ``{"name", "key"}`` (:class:`~explainers.review.inputs.ModelInfo`'s key).
        settings: :data:`SETTINGS`: the methods, their parameters, the metrics and their
            options, the text unit and which class is explained; and those of
            :data:`OPTIONAL_SETTINGS` that were set (a precision other than fp32, the
            ``slice_by`` columns).
    """
    keys = SETTINGS + tuple(k for k in OPTIONAL_SETTINGS if k in settings)  # absent: older files match
    return {"tool": TOOL, "format": FORMAT, "input": _plain(inputs), "model": _plain(model),
            "settings": _plain({k: settings.get(k) for k in keys})}


def check_out(out: str | Path, input_file: str | None) -> Path:
    """``out`` as a path a review can write: not a folder, not the input file itself, in a
    folder that exists."""
    path = Path(out)
    if path.is_dir():
        raise ExplainerError(f"--out {out} is a folder; give a file name such as {path / 'review.jsonl'}")
    if not path.parent.is_dir():
        raise ExplainerError(f"--out {out}: folder {path.parent} does not exist")
    if input_file and path.exists() and Path(input_file).exists() and path.samefile(input_file):
        raise ExplainerError(f"--out {out} is the input file itself; write the review elsewhere")
    return path


@dataclass
class Resumed:
    """What an existing output file already holds."""
    done: set[int | str] = field(default_factory=set)
    rows: int = 0
    methods: tuple[str, ...] | None = None
    truncated: bool = False
    #: where the lines end (a cut-off last line starts there) and that line's number
    good_end: int = 0
    cut_line: int | None = None


def read_existing(path: str | Path, meta: dict, summary: Summary) -> Resumed:
    """Check that ``path`` is this run's review output, and read its lines' ids into the
    result (and the lines into ``summary``). Nothing is changed here: a cut-off last line
    is only noted (:func:`drop_cut_line` drops it once the model is known to match).

    A missing or empty file is nothing to resume. Otherwise ``OUT.meta.json`` must exist,
    be this tool's format and match ``meta``, and every line must be a review line of
    these methods (an id, and an error or a prediction with these methods' attributions)
    with an id not seen before; the last line may be cut short (no newline, not JSON).

    Raises:
        ExplainerError: naming what does not match (the file is left as it is).
    """
    found = Resumed()
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return found
    old = _read_meta(path)
    _compare(path, old, meta, skip=("model",))
    methods = set(meta["settings"]["methods"] or ())
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            why = _not_a_line(line, methods)
            if why is not None:
                if not line.endswith(b"\n") and why == "not JSON":
                    found.cut_line = number  # the last line, cut short by a killed run
                    break
                raise ExplainerError(f"{path.name}: line {number} is not a review line of this run "
                                     f"({why}); not resuming it: {REFUSE}")
            rec = json.loads(line)
            key = id_key(rec["id"])
            if key in found.done:
                raise ExplainerError(f"{path.name}: line {number} repeats id {rec['id']!r:.60}; not "
                                     f"resuming it: {REFUSE}")
            found.good_end += len(line)
            found.done.add(key)
            found.rows += 1
            if found.methods is None and "attributions" in rec:
                found.methods = tuple(rec["attributions"])
            summary.add(slim(rec))
    return found


def check_model(path: str | Path, meta: dict) -> None:
    """The model part of the resume check (the driver knows the model only once its engine
    has loaded it): ``OUT.meta.json``'s model must be ``meta``'s."""
    path = Path(path)
    if path.is_file() and path.stat().st_size:
        _compare(path, _read_meta(path), meta, skip=("input", "settings"))


def drop_cut_line(path: str | Path, found: Resumed) -> str:
    """Cut a killed run's half-written last line off ``path`` (so that input is explained
    again), or add the newline a whole last line lacks; returns what was done, for the log."""
    path = Path(path)
    if found.cut_line is not None:
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.truncate(found.good_end)
        found.truncated = True
        return f" (its cut-off last line {found.cut_line}, {size - found.good_end:,} bytes, dropped)"
    if found.good_end and not _ends_with_newline(path):
        with open(path, "ab") as f:
            f.write(b"\n")
    return ""


def write_meta(out: str | Path, meta: dict) -> None:
    """Write ``OUT.meta.json`` (whole or not at all)."""
    target = meta_path(out)
    tmp = target.with_name(target.name + ".tmp")
    try:
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(target)
    except OSError as e:
        raise ExplainerError(f"could not write {target}: {e.strerror or e}") from None


def _read_meta(path: Path) -> dict:
    side = meta_path(path)
    if not side.is_file():
        raise ExplainerError(f"{path.name} exists but has no {side.name} beside it, so it is not a review "
                             f"output this tool can resume (or one from before resume checks); {REFUSE}")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or meta.get("tool") != TOOL:
        raise ExplainerError(f"{side.name} is not this tool's review sidecar; {REFUSE}")
    if meta.get("format") != FORMAT:
        raise ExplainerError(f"{path.name} was written in review format {meta.get('format')!r}, this "
                             f"version writes {FORMAT}; {REFUSE}")
    return meta


def _compare(path: Path, old: dict, new: dict, skip: Iterable[str]) -> None:
    """Raise, naming the first difference, unless ``old`` (the sidecar) and ``new`` (this
    run) agree on the input, the model and every setting not in ``skip``."""
    if "input" not in skip:
        was, now = dict(old.get("input") or {}), dict(new["input"])
        was.pop("mtime", None)
        now.pop("mtime", None)
        if was != now:
            raise ExplainerError(f"{path.name} was written for other inputs ({_describe(was)}; now "
                                 f"{_describe(now)}): not resuming it; {REFUSE}")
    if "model" not in skip and (old.get("model") or {}).get("key") != new["model"].get("key"):
        raise ExplainerError(f"{path.name} was written by another model ({(old.get('model') or {}).get('name')!r}, "
                             f"now {new['model'].get('name')!r}, weights or settings differ): not resuming "
                             f"it; {REFUSE}")
    if "settings" in skip:
        return
    was, now = old.get("settings") or {}, new["settings"]
    for key in SETTINGS + OPTIONAL_SETTINGS:  # an absent optional one is None on both sides
        if was.get(key) != now.get(key):
            if key == "methods":
                raise ExplainerError(f"{path.name} holds lines explained with {was.get(key)}, not "
                                     f"{now.get(key)}: {REFUSE}")
            raise ExplainerError(f"{path.name} was written with other {key.replace('_', ' ')} "
                                 f"({_json(was.get(key))}, now {_json(now.get(key))}): {REFUSE}")


def _describe(inputs: dict) -> str:
    if "file" in inputs:
        return f"{inputs['file']}, {inputs.get('size', 0):,} bytes, columns {inputs.get('input')!r}/" \
               f"{inputs.get('label')!r}/{inputs.get('id')!r}"
    if "folder" in inputs:
        return f"folder {inputs['folder']}, {inputs.get('images')} images"
    return _json(inputs)


def _json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 160 else text[:157] + "..."


def _not_a_line(line: bytes, methods: set[str]) -> str | None:
    """Why ``line`` is not a review line of a run with ``methods``, or None."""
    try:
        rec = json.loads(line)
    except (ValueError, RecursionError):
        return "not JSON"
    if not isinstance(rec, dict) or "id" not in rec:
        return "no id"
    if "error" in rec:
        return None if isinstance(rec["error"], str) else "its error is not a message"
    attrs = rec.get("attributions")
    if not isinstance(rec.get("prediction"), dict) or not isinstance(attrs, dict):
        return "neither an error nor a prediction with attributions"
    if methods and set(attrs) != methods:
        return f"attributions of {sorted(attrs)}"
    return None


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class Writer:
    """Writes each line as soon as its batch is back (flushed, so a killed run keeps it),
    adds it to the summary, and reports progress on stderr.

    Args:
        out: the file (appended to when ``append``), or None for stdout.
        summary: the running :class:`Summary`.
        skipped: inputs of this run's stream already written by an earlier run (a one-item
            list, counted by the driver as it reads).
        total: the inputs expected, for the progress line (None: unknown).
    """

    def __init__(self, out: str | Path | None, summary: Summary, skipped: list[int], total: int | None,
                 append: bool) -> None:
        self.summary, self.skipped, self.total = summary, skipped, total
        self.tty = getattr(sys.stderr, "isatty", lambda: False)()
        try:
            self.sink = open(out, "a" if append else "w", encoding="utf-8") if out else nullcontext(sys.stdout)
        except OSError as e:
            raise ExplainerError(f"could not write {out}: {e.strerror or e}") from None
        self.fh = self.sink.__enter__()
        self.start = time.perf_counter()
        self.new = 0

    def add(self, records: list[dict]) -> None:
        self.fh.write("".join(json.dumps(r, default=str) + "\n" for r in records))
        self.fh.flush()
        for r in records:
            self.summary.add(slim(r))
        self.new += len(records)
        done = self.skipped[0] + self.new  # inputs of this run's stream handled so far
        rate = self.new / max(time.perf_counter() - self.start, 1e-9)
        left = f"/{self.total}" if self.total is not None else ""
        eta = (f", about {_duration((self.total - done) / rate)} left"
               if self.total is not None and self.total > done else "")
        cr = "\r" if self.tty else ""  # one line on a terminal
        print(f"{cr}review {done}{left} ({rate * 60:.1f} inputs/min{eta})",
              end="" if cr else "\n", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.sink.__exit__(None, None, None)
        if self.new and self.tty:
            print(file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
