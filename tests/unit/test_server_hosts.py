"""DNS rebinding: a foreign Host header is refused by a real server on 127.0.0.1.

Starts ``streamlit run`` on a free loopback port (time-bounded, killed afterwards) and sends
raw HTTP requests and WebSocket handshakes with chosen Host headers.
"""

from __future__ import annotations

import base64
import os
import socket

import pytest

from tests.servers import http_status, streamlit_server


def websocket_status(port: int, host: str) -> int:
    """Status code of a WebSocket handshake on ``/_stcore/stream`` (101 = accepted)."""
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET /_stcore/stream HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Protocol: streamlit\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request.encode())
        status_line = s.recv(4096).split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1])


def test_dashboard_refuses_foreign_host_on_the_websocket():
    """``streamlit run dashboard/app.py``: Streamlit's own check (server.allowedHosts in
    .streamlit/config.toml) refuses the handshake that every session needs."""
    with streamlit_server("dashboard/app.py") as port:
        assert websocket_status(port, "evil.example") == 403
        assert websocket_status(port, "evil.example:%d" % port) == 403
        assert websocket_status(port, f"localhost:{port}") == 101
        assert websocket_status(port, f"127.0.0.1:{port}") == 101


def test_serve_refuses_foreign_host_on_http_and_websocket():
    with streamlit_server("serve.py") as port:
        for path in ("/", "/_stcore/health", "/_stcore/host-config"):
            assert http_status(port, "evil.example", path) == 400
        assert http_status(port, f"evil.example:{port}") == 400
        assert websocket_status(port, "evil.example") == 403
        assert http_status(port, f"localhost:{port}") == 200
        assert http_status(port, f"127.0.0.1:{port}") == 200
        assert websocket_status(port, f"localhost:{port}") == 101


def test_allowed_hosts_are_configurable_for_a_deployment():
    env = {"STREAMLIT_SERVER_ALLOWED_HOSTS": "studio.internal *.corp.example"}
    with streamlit_server("serve.py", env, probe_host="studio.internal") as port:
        assert http_status(port, "studio.internal") == 200
        assert http_status(port, "a.corp.example") == 200
        assert websocket_status(port, "studio.internal") == 101
        assert http_status(port, f"localhost:{port}") == 400
        assert websocket_status(port, f"localhost:{port}") == 403
        assert http_status(port, "evil.example") == 400


@pytest.mark.parametrize("host,ok", [
    ("localhost", True), ("LOCALHOST:8501", True), ("127.0.0.1:1", True), ("localhost.", True),
    ("evil.example", False), ("localhost.evil.example", False), ("user@localhost", False),
    ("localhost:notaport", False), ("", False), (None, False),
])
def test_host_allowed_rules(host, ok):
    from serve import host_allowed
    assert host_allowed(host, ["localhost", "127.0.0.1"]) is ok
