"""``review --engine ray``: the same lines as the local engine on 2 local workers and on a
2-node cluster, a killed run resumed without gaps, and no Ray on any other path.

Cheap on purpose: a small TorchScript MLP over a CSV (each actor loads it from those two
files: the spec, never pickled weights), a few dozen rows, labels from the CSV. Ray's own
start (a few seconds) and the actors' start dominate.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from explainers.review import ModelSpec, run_review
from explainers.review import InputSource

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
N_ROWS = 16
OPTIONS = {"methods": ["integrated_gradients", "gradient_shap", "occlusion"],
           "params": {"integrated_gradients": {"n_steps": 8}, "gradient_shap": {"n_samples": 4}},
           "metrics": ["agreement", "faithfulness", "flip"], "metric_params": {"random_orders": 3},
           "use_cache": False, "batch_size": 3}
CLI_OPTIONS = ["--methods", "integrated_gradients,gradient_shap,occlusion",
               "--param", "integrated_gradients.n_steps=8", "--param", "gradient_shap.n_samples=4",
               "--metrics", "agreement,faithfulness,flip", "--metric-param", "random_orders=3",
               "--no-cache", "--batch-size", "1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A TorchScript MLP and its CSV of rows with a ground-truth column ``y``."""
    d = tmp_path_factory.mktemp("ray_review")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(N_ROWS, 4)) * [1, 10, 100, 0.1], columns=list("abcd"))
    frame["y"] = rng.integers(0, 2, N_ROWS)
    frame.to_csv(d / "rows.csv", index=False)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(mlp), str(d / "mlp.pt"))
    return d


def spec(d: Path) -> ModelSpec:
    return ModelSpec(str(d / "mlp.pt"), "tabular", data=str(d / "rows.csv"), label_column="y")


def source(d: Path) -> InputSource:
    return InputSource("tabular", label_column="y", model_csv=str(d / "rows.csv"))


@pytest.fixture(scope="module")
def local_lines(files):
    out = files / "local.jsonl"
    run_review(spec(files), source(files), out=str(out), **OPTIONS)
    return read(out)


def read(path: Path) -> dict:
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    by_id = {x["id"]: x for x in lines}
    assert len(by_id) == len(lines), "duplicate ids"
    return by_id


def numbers(value, prefix=""):
    """Every leaf of a line, by path (timings left out: they differ between runs)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in ("seconds", "cache_hit"):
                yield from numbers(v, f"{prefix}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from numbers(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def assert_same_lines(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want) == list(range(N_ROWS))  # no gap, no duplicate
    for ident, line in want.items():
        a, b = dict(numbers(got[ident])), dict(numbers(line))
        assert a.keys() == b.keys()
        for key, v in b.items():
            if isinstance(v, float):
                assert a[key] == pytest.approx(v, abs=1e-5), (ident, key)
            else:
                assert a[key] == v, (ident, key)


def test_two_local_ray_workers_write_the_local_engines_lines(files, local_lines, capsys):
    import ray
    out = files / "ray.jsonl"
    summary = run_review(spec(files), source(files), out=str(out), engine="ray", workers=2, **OPTIONS)
    assert "ray engine: 2 worker(s) on 1 node(s), 1 CPU each" in capsys.readouterr().err
    assert_same_lines(read(out), local_lines)
    assert summary["inputs"] == N_ROWS and summary["labelled"] == N_ROWS
    assert not ray.is_initialized()  # the Ray it started is shut down


@pytest.fixture(scope="module")
def cluster():
    """Two logical Ray nodes of one CPU each, shared by the tests below (Ray's start is
    the slow part)."""
    from ray.cluster_utils import Cluster
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        c.add_node(num_cpus=1)
        yield c
    finally:
        c.shutdown()


def test_a_two_node_cluster_spreads_the_workers_and_writes_the_same_lines(files, local_lines, cluster, capsys):
    out = files / "cluster.jsonl"
    run_review(spec(files), source(files), out=str(out), engine="ray", address=cluster.address, workers=2,
               **OPTIONS)
    # one CPU per node and per worker: Ray must place one worker on each node
    assert "2 worker(s) on 2 node(s)" in capsys.readouterr().err
    assert_same_lines(read(out), local_lines)


def test_a_killed_ray_run_resumes_without_duplicates_or_gaps(files, local_lines, cluster, isolated_cache):
    from explainers.cli import main
    out = files / "killed.jsonl"
    args = ["review", "--modality", "tabular", "--model", str(files / "mlp.pt"), "--csv",
            str(files / "rows.csv"), "--label-column", "y", "--out", str(out), *CLI_OPTIONS]
    env = {**os.environ, "ATTRIBUTION_STUDIO_CACHE": str(isolated_cache), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "explainers", *args, "--engine", "ray", "--workers", "2",
                             "--address", cluster.address],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.is_file() and out.read_text().count("\n") >= 2:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # no clean-up at all, as a crash or an OOM kill
        proc.wait(timeout=30)
    written = out.read_text().count("\n")
    assert 2 <= written < N_ROWS, f"the run was not stopped midway ({written} lines)"
    with warnings.catch_warnings():  # main() silences warnings process-wide
        assert main(args) == 0  # the local engine resumes what the Ray workers wrote
    assert_same_lines(read(out), local_lines)


def test_the_local_engine_and_the_dashboard_never_import_ray(tmp_path):
    code = """
import sys
from explainers.review import run_review
from explainers.adapters import TabularAdapter
import numpy as np, pandas as pd, torch
frame = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 3)), columns=list("abc"))
model = TabularAdapter("t", torch.nn.Sequential(torch.nn.Linear(3, 2)), frame, ["no", "yes"])
run_review(model, [(0, 0, 1), (1, 1, 0)], methods=["saliency"], metrics=["faithfulness"],
           metric_params={"random_orders": 2}, use_cache=False, out=sys.argv[1])
import explainers.cli, dashboard.review, dashboard.models, dashboard.views.text
print("ray" in sys.modules)
"""
    env = {**os.environ, "ATTRIBUTION_STUDIO_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.jsonl")], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "r.jsonl").read_text().count("\n") == 2
