"""The Host allow-list on every route: an ASGI middleware for the dashboard's ``st.App``.

Streamlit 1.67 checks ``server.allowedHosts`` on the WebSocket handshake only, so with
``streamlit run dashboard/app.py`` a page fetched under a rebound DNS name still loads
(the static shell, with no session and no data). ``serve.py`` (this folder's, which
``attribution-studio serve`` and ``make run`` run, and the repository's) serves the same
dashboard through ``st.App`` with :class:`HostGuard`, which applies the same allow-list to
every HTTP request as well: a DNS-rebinding page gets ``400`` for everything.

The allow-list is Streamlit's own option, so there is one setting for both checks:
``.streamlit/config.toml`` sets ``localhost`` and ``127.0.0.1``; a deployment overrides it
with ``--server.allowedHosts NAME`` (repeatable) or ``STREAMLIT_SERVER_ALLOWED_HOSTS``
(space-separated). Ports are ignored, ``*.example.com`` matches subdomains, and ``*``
accepts any host.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import streamlit as st

Scope = dict
ASGIApp = Callable[[Scope, Callable, Callable], Awaitable[None]]


def host_allowed(host: str | None, patterns: Sequence[str]) -> bool:
    """Whether a ``Host`` header value is in the allow-list (Streamlit's rules).

    Args:
        host: the header value, possibly with a port.
        patterns: hostnames, ``*.suffix`` wildcards or ``*``; an empty list allows all.

    Returns:
        True when the host (without its port, case-insensitive) matches a pattern.
    """
    if not patterns:
        return True
    if not host:
        return False
    try:
        parts = urlsplit(f"//{host}")
        name, _ = parts.hostname, parts.port  # .port validates the port
    except ValueError:
        return False
    if not name or parts.username or parts.password or parts.path or parts.query or parts.fragment:
        return False
    name = name.lower().rstrip(".")
    for raw in patterns:
        pattern = raw.strip().lower().rstrip(".")
        if pattern == "*" or name == pattern or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


class HostGuard:
    """ASGI middleware: ``400`` on HTTP and a closed WebSocket for a Host outside
    ``server.allowedHosts`` (read on each request, so command-line flags apply)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] in ("http", "websocket"):
            headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1") or None
            if not host_allowed(host, st.get_option("server.allowedHosts")):
                await self._refuse(scope, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # handshake answered 403
            return
        body = b"Host not allowed\n"
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

