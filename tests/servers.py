"""A real ``streamlit run`` on a free loopback port, for the tests that need a server (the
browser tests, the Host allow-list tests). Time-bounded and always stopped afterwards."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(port: int, host: str, path: str = "/") -> int:
    """Status of ``GET path`` on 127.0.0.1:``port`` sent with the ``Host`` header ``host``."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        con.putrequest("GET", path, skip_host=True)
        con.putheader("Host", host)
        con.endheaders()
        return con.getresponse().status
    finally:
        con.close()


@contextmanager
def streamlit_server(entry: str, extra_env: dict | None = None, log: IO | None = None,
                     probe_host: str = "127.0.0.1") -> Iterator[int]:
    """``streamlit run entry`` on 127.0.0.1 and a free port; yields the port once
    ``/_stcore/health`` answers 200 to a request with Host ``probe_host``.

    Args:
        entry: the script, relative to the repository root.
        extra_env: variables added to this process's environment (the repository root is
            put on ``PYTHONPATH``).
        log: where its output goes (default: a pipe, quoted if it fails to start).
        probe_host: the Host header of the health probe.
    """
    port = free_port()
    env = {**os.environ, **(extra_env or {}), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "streamlit", "run", entry, "--server.address", "127.0.0.1",
           "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                out = "" if log else proc.stdout.read().decode()[-2000:]
                raise AssertionError(f"streamlit exited: {out}")
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
