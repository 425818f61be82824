"""DNS rebinding: a foreign Host header is refused by a real server on 127.0.0.1.

Starts ``streamlit run`` on a free loopback port (time-bounded, killed afterwards) and sends
raw HTTP requests and WebSocket handshakes with chosen Host headers.
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(port: int, host: str, path: str = "/") -> int:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        con.putrequest("GET", path, skip_host=True)
        con.putheader("Host", host)
        con.endheaders()
        return con.getresponse().status
    finally:
        con.close()


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


@contextmanager
def streamlit_server(entry: str, extra_env: dict | None = None, probe_host: str = "127.0.0.1"):
    """``streamlit run entry`` on 127.0.0.1 and a free port; yields the port once
    ``/_stcore/health`` answers 200 to a request with Host ``probe_host``."""
    port = free_port()
    env = {**os.environ, **(extra_env or {}), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "streamlit", "run", entry, "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"streamlit exited: {proc.stdout.read().decode()[-2000:]}")
            try:
                if http_status(port, probe_host, "/_stcore/health") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"streamlit did not start within {START_TIMEOUT} s")
            time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


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
