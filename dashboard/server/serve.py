"""What ``attribution-studio serve`` runs: ``streamlit run dashboard/server/serve.py``.

The dashboard (``dashboard/app.py``) behind :class:`~dashboard.server.hosts.HostGuard`, the
Host allow-list on every route. This folder's ``.streamlit/config.toml`` links to the
repository's, and Streamlit reads a script's own ``.streamlit/config.toml`` wherever it is
started from, so the settings (loopback only, XSRF protection, no tracebacks in the browser,
the allowed hosts) are the same from any directory and from an installed package.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: the folder holding ``dashboard/`` (the repository, or site-packages when installed)
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `streamlit run` puts only this folder on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from dashboard.server.hosts import HostGuard  # noqa: E402

app = st.App(str(ROOT / "dashboard" / "app.py"), middleware=[Middleware(HostGuard)])
