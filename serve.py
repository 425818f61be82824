"""``streamlit run serve.py`` from the repository: the dashboard behind the Host allow-list on
every route (:mod:`dashboard.server.hosts`). The same app as ``dashboard/server/serve.py``,
which ``attribution-studio serve`` and ``make run`` start from any directory; Streamlit finds an
``st.App`` only in the file it runs, so this file builds its own."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from dashboard.server.hosts import HostGuard, host_allowed

__all__ = ["HostGuard", "app", "host_allowed"]

app = st.App(str(Path(__file__).resolve().parent / "dashboard" / "app.py"), middleware=[Middleware(HostGuard)])
