"""The console script ``attribution-studio``: the subcommands of ``python -m explainers``
(explain, predict, review, methods) plus ``serve``, which starts the dashboard.

``serve`` runs ``streamlit run dashboard/server/serve.py`` on 127.0.0.1, as ``make run`` does:
the Host allow-list middleware on every route and the repository's ``.streamlit/config.toml``
settings (read as the script's own config, so the working directory does not matter). Options
it does not know go to ``streamlit run`` (``--server.allowedHosts studio.internal``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from explainers import cli

#: the script ``serve`` runs (inside the package, next to its ``.streamlit/config.toml``)
SERVE_SCRIPT = Path(__file__).resolve().parent / "server" / "serve.py"
DEFAULT_PORT = 8501


def serve_command(port: int, passthrough: Sequence[str] = ()) -> list[str]:
    """The ``streamlit run`` command line ``serve`` starts (this interpreter's Streamlit)."""
    return [sys.executable, "-m", "streamlit", "run", str(SERVE_SCRIPT), "--server.address", "127.0.0.1",
            "--server.port", str(port), *passthrough]


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", DEFAULT_PORT)),
                   help=f"port on 127.0.0.1 (default {DEFAULT_PORT}, or $PORT); further options go to "
                        "streamlit run, e.g. --server.allowedHosts NAME")


def _serve(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        print(f"error: --port must be 1-65535, got {args.port}", file=sys.stderr)
        return 2
    command = serve_command(args.port, args.passthrough)
    if os.name == "posix":  # become Streamlit: signals (Ctrl+C, a service manager's TERM) reach it
        os.execv(command[0], command)
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:  # Ctrl+C reaches Streamlit too; it stops on its own
        return 130


SERVE = cli.Command("serve", "start the dashboard on http://127.0.0.1:PORT (as make run does)",
                    _serve_arguments, _serve, passthrough=True)


def main(argv: Sequence[str] | None = None) -> int:
    """``attribution-studio ARGS``; returns the exit code."""
    return cli.main(argv, prog="attribution-studio", extra=[SERVE])
