"""The installable package: its dependency files, the console script, ``serve`` from any
directory, and the README's recommender example run from outside the repository."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.servers import free_port, http_status

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirement_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def test_pyproject_reads_the_requirement_files():
    # one source of truth: the dependencies are requirements.txt, each extra one file of requirements/
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]
    assert set(PYPROJECT["project"]["dynamic"]) == {"dependencies", "optional-dependencies"}
    assert dynamic["dependencies"] == {"file": ["requirements.txt"]}
    extras = {name: spec["file"] for name, spec in dynamic["optional-dependencies"].items()}
    assert extras == {p.stem: [f"requirements/{p.name}"] for p in sorted((ROOT / "requirements").glob("*.txt"))}
    assert {"ray", "test", "tracking"} <= set(extras)


@pytest.mark.parametrize("path", [ROOT / "requirements.txt", *sorted((ROOT / "requirements").glob("*.txt"))],
                         ids=lambda p: p.name)
def test_each_requirement_line_is_one_requirement(path):
    # setuptools reads the files as they are: an inline comment or a pip option would break the build
    lines = requirement_lines(path)
    assert lines
    for line in lines:
        req = Requirement(line)
        assert str(req.specifier).startswith(">="), f"{path.name}: {line} has no lower bound"


def test_the_extras_hold_what_their_paths_import():
    names = {Requirement(ln).name for p in (ROOT / "requirements").glob("*.txt") for ln in requirement_lines(p)}
    core = {Requirement(ln).name for ln in requirement_lines(ROOT / "requirements.txt")}
    assert {"ray", "pytest", "playwright", "tensorboard", "mlflow-skinny"} <= names
    assert not names & core  # an extra is optional: never also a run-time dependency
    assert {"torch", "captum", "streamlit", "transformers"} <= core


def test_the_console_script_and_its_packages_are_declared():
    assert PYPROJECT["project"]["scripts"] == {"attribution-studio": "dashboard.console:main"}
    found = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {"explainers", "cache", "dashboard", "pages"} <= set(found)
    data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert all(list(ROOT.joinpath(pkg).glob(pattern)) for pkg, patterns in data.items() for pattern in patterns)


def _run_console(argv: list[str]) -> tuple[int, str]:
    from dashboard.console import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue()


def test_console_runs_the_same_commands_as_python_m_explainers():
    from explainers.cli import main as cli_main
    code, console = _run_console(["methods"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["methods"]) == 0
    assert code == 0
    assert json.loads(console) == json.loads(out.getvalue())
    assert "integrated_gradients" in json.loads(console)


def test_console_refuses_unknown_options_but_serve_passes_them_to_streamlit(capsys):
    from dashboard.console import SERVE_SCRIPT, serve_command
    with pytest.raises(SystemExit) as e:
        _run_console(["methods", "--bogus"])
    assert e.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    cmd = serve_command(8600, ["--server.allowedHosts", "studio.internal"])
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(SERVE_SCRIPT)]
    assert cmd[5:] == ["--server.address", "127.0.0.1", "--server.port", "8600",
                       "--server.allowedHosts", "studio.internal"]
    # the script-level config Streamlit reads next to the served script is the repository's
    assert (SERVE_SCRIPT.parent / ".streamlit" / "config.toml").read_bytes() == \
        (ROOT / ".streamlit" / "config.toml").read_bytes()


def test_serve_from_another_directory_keeps_the_host_guard_and_the_config(tmp_path):
    """``attribution-studio serve`` from a folder with no .streamlit/: a foreign Host is refused
    on plain HTTP, which needs both the middleware and the config's allow-list (Streamlit's
    default allow-list is empty: every host)."""
    port = free_port()
    code = "import sys; from dashboard.console import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATTRIBUTION_STUDIO_CACHE": str(tmp_path / "cache")}
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, "serve", "--port", str(port)], cwd=tmp_path,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                if http_status(port, "127.0.0.1", "/_stcore/health") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.5)
        assert http_status(port, "127.0.0.1", "/") == 200
        assert http_status(port, "localhost", "/") == 200
        assert http_status(port, "evil.example", "/") == 400
        assert http_status(port, "evil.example", "/_stcore/health") == 400
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def readme_block(heading: str) -> str:
    """The first ```python block under ``heading`` in the README."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def installed_python_env(tmp_path: Path) -> dict:
    """The environment of a user outside the repository: no PYTHONPATH, offline, a fresh cache."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ATTRIBUTION_STUDIO_CACHE=str(tmp_path / "cache"))
    return env


def test_the_recommender_example_runs_from_outside_the_repository(tmp_path):
    env = installed_python_env(tmp_path)
    where = subprocess.run([sys.executable, "-c", "import explainers; print(explainers.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True)
    if where.returncode != 0:
        pytest.skip("attribution-studio is not installed in this interpreter (make setup runs pip install -e .)")
    if not Path(where.stdout.strip()).resolve().is_relative_to(ROOT):
        pytest.skip(f"this interpreter's attribution-studio is another checkout's ({where.stdout.strip()})")
    code = readme_block("### The recommender example, end to end")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "rows.csv").is_file() and (tmp_path / "rec.pt2").is_file()
    printed = done.stdout.strip().splitlines()[-1]
    names = ["浏览时长", "收藏次数", "历史消费", "年龄", "性别"]
    pairs = [p.split(": ") for p in printed.split(", ")]
    assert sorted(n for n, _ in pairs) == sorted(names)
    magnitudes = [float(v) for _, v in pairs]
    assert magnitudes == sorted(magnitudes, reverse=True)  # ranked by |attribution|, as printed
