"""Inputs as the pages hold them: encoded and predicted once per session and key, with an
error shown in place of a traceback."""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from explainers import ExplainerError
from explainers.adapters.base import Encoded

from . import render
from .state import digest, memo
from .types import Input


def prepare(adapter, raw: Any, key: Any, name: str = "original", box=None, note: str = "",
            edit: dict | None = None, encode: Callable[[Any], Encoded] | None = None) -> Input | None:
    """Encode (with ``encode``, default ``adapter.encode``) and predict ``raw``, memoised per
    session under ``key``; an error is shown, not raised."""
    try:
        enc, pred = memo("encode", (id(adapter), adapter.name, name, digest(key)),
                         lambda: _encode_predict(adapter, raw, encode))
    except ExplainerError as e:
        st.error(f"Cannot use this {name} input: {render.md(e)}")
        return None
    except Exception as e:  # noqa: BLE001
        st.error(f"Cannot use this {name} input ({type(e).__name__}).")
        return None
    return Input(enc, pred, name, box, note, dict(edit or {}))


def _encode_predict(adapter, raw, encode=None):
    enc = (encode or adapter.encode)(raw)
    return enc, adapter.predict(enc)
