"""A review's output file: the lines already written (resume) and the writer that appends
each micro-batch's lines as soon as they are back, with progress on stderr."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import ExplainerError
from .summary import Summary, slim


def id_key(ident: Any) -> int | str:
    """How ids are compared on resume: as JSON writes them (``3`` and ``"3"`` differ);
    whole-number ids stay ints, the smallest key for the common case of row numbers."""
    if isinstance(ident, int) and not isinstance(ident, bool):
        return ident
    return json.dumps(ident, default=str)


@dataclass
class Resumed:
    """What an existing output file already holds."""
    done: set[int | str] = field(default_factory=set)
    rows: int = 0
    methods: tuple[str, ...] | None = None
    truncated: bool = False


def read_existing(path: str | Path, summary: Summary) -> Resumed:
    """Read the lines a previous run wrote to ``path``: their ids, added to ``summary``.

    A last line cut short by a killed run (no newline and not JSON) is cut off the file, so
    that input is explained again; a last line that is whole JSON but lacks its newline gets
    one. Any other line that is not JSON stops with an error (not a review file).
    """
    found = Resumed()
    path = Path(path)
    if not path.is_file():
        return found
    good_end = 0
    bad: tuple[int, bytes] | None = None
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if bad is not None:
                raise ExplainerError(f"{path.name}: line {bad[0]} is not a JSON review line; "
                                     "not a review output (use another --out, or --overwrite)")
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict) or "id" not in rec:
                    raise ValueError("no id")
            except ValueError:
                if line.endswith(b"\n"):
                    raise ExplainerError(f"{path.name}: line {number} is not a JSON review line; not a "
                                         "review output (use another --out, or --overwrite)") from None
                bad = (number, line)
                continue
            good_end += len(line)
            found.done.add(id_key(rec["id"]))
            found.rows += 1
            if found.methods is None and "attributions" in rec:
                found.methods = tuple(rec["attributions"])
            summary.add(slim(rec))
    if bad is not None:
        with open(path, "r+b") as f:
            f.truncate(good_end)
        found.truncated = True
    elif good_end and not _ends_with_newline(path):
        with open(path, "ab") as f:
            f.write(b"\n")
    return found


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"




def write_lines(batches: Iterator[list[dict]], out: str | Path | None, summary: Summary, skipped: list[int],
           total: int | None, append: bool) -> None:
    """Write each line as soon as its batch is back (flushed, so a killed run keeps it)."""
    tty = getattr(sys.stderr, "isatty", lambda: False)()
    cr = "\r" if tty else ""  # one line on a terminal
    sink = open(out, "a" if append else "w", encoding="utf-8") if out else nullcontext(sys.stdout)
    start = time.perf_counter()
    new = 0
    with sink as fh:
        for records in batches:
            fh.write("".join(json.dumps(r, default=str) + "\n" for r in records))
            fh.flush()
            for r in records:
                summary.add(slim(r))
            new += len(records)
            done = skipped[0] + new  # inputs of this run's stream handled so far
            rate = new / max(time.perf_counter() - start, 1e-9)
            left = f"/{total}" if total is not None else ""
            eta = (f", about {_duration((total - done) / rate)} left"
                   if total is not None and total > done else "")
            print(f"{cr}review {done}{left} ({rate * 60:.1f} inputs/min{eta})",
                  end="" if cr else "\n", file=sys.stderr, flush=True)
    if new and cr:
        print(file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
