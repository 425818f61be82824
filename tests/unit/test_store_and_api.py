"""The attribution store, the public API and the CLI's JSON schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cache.store import AttributionStore, make_key
from explainers import explain, list_methods

ROOT = Path(__file__).resolve().parents[2]


def test_store_roundtrip(tmp_path):
    store = AttributionStore(tmp_path / "s.sqlite")
    key = make_key("model", "input", "ig", {"n_steps": 3}, 1)
    assert store.get(key) is None
    store.put(key, {"scores": [1.0, 2.0]})
    assert store.get(key) == {"scores": [1.0, 2.0]}
    assert len(store) == 1
    # a fresh handle on the same file sees it: results survive the process
    assert AttributionStore(tmp_path / "s.sqlite").get(key) == {"scores": [1.0, 2.0]}
    assert make_key("model", "input", "ig", {"n_steps": 4}, 1) != key


def test_explain_uses_store(tiny_text, tmp_path):
    store = AttributionStore(tmp_path / "a.sqlite")
    params = {"integrated_gradients": {"n_steps": 8}}
    first = explain(tiny_text, "the film was bad", methods=["integrated_gradients", "occlusion"],
                    params=params, store=store)
    second = explain(tiny_text, "the film was bad", methods=["integrated_gradients", "occlusion"],
                     params=params, store=store)
    for name in ("integrated_gradients", "occlusion"):
        assert not first.attributions[name].cache_hit
        assert second.attributions[name].cache_hit
        np.testing.assert_allclose(first.attributions[name].scores, second.attributions[name].scores,
                                   rtol=1e-6)
    changed = explain(tiny_text, "the film was bad", methods=["integrated_gradients"],
                      params={"integrated_gradients": {"n_steps": 9}}, store=store)
    assert not changed.attributions["integrated_gradients"].cache_hit
    other_target = explain(tiny_text, "the film was bad", methods=["occlusion"], target=0, store=store)
    other_target2 = explain(tiny_text, "the film was bad", methods=["occlusion"], target=1, store=store)
    assert not np.allclose(other_target.attributions["occlusion"].scores,
                           other_target2.attributions["occlusion"].scores)


def test_explanation_schema(tiny_text):
    r = explain(tiny_text, "the soup was bland", target="negative", use_cache=False).to_dict()
    assert set(r) >= {"model", "modality", "features", "prediction", "target", "attributions"}
    assert r["modality"] == "text" and r["features"] == ["the", "soup", "was", "bland"]
    assert r["target"] == {"index": 0, "label": "negative"}
    assert abs(sum(r["prediction"]["probabilities"]) - 1) < 1e-6
    assert set(r["attributions"]) == {"integrated_gradients", "gradient_shap", "occlusion"}
    for name, a in r["attributions"].items():
        assert len(a["scores"]) == 4
        assert set(a) >= {"scores", "convergence_delta", "seconds", "params"}
    assert r["attributions"]["occlusion"]["convergence_delta"] is None
    assert isinstance(r["attributions"]["integrated_gradients"]["convergence_delta"], float)
    json.dumps(r)  # plain JSON, no numpy types


def test_image_schema_is_height_by_width(tiny_image, tiny_image_input):
    r = explain(tiny_image, tiny_image_input, methods=["saliency"], use_cache=False).to_dict()
    assert r["features"]["height"] == 32 and r["features"]["width"] == 32
    scores = r["attributions"]["saliency"]["scores"]
    assert len(scores) == 32 and all(len(row) == 32 for row in scores)


def run_cli(*args, env_cache):
    import os
    env = {**os.environ, "ATTRIBUTION_STUDIO_CACHE": str(env_cache), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "explainers", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def test_cli_explain_user_text_model(tiny_text_dir, isolated_cache):
    p = run_cli("explain", "--modality", "text", "--model", str(tiny_text_dir), "--text",
                "the soup was bland", "--param", "integrated_gradients.n_steps=12", "--target", "1",
                env_cache=isolated_cache)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["attributions"]["integrated_gradients"]["params"]["n_steps"] == 12
    assert out["target"]["index"] == 1


@pytest.mark.parametrize("args,message", [
    (["explain", "--modality", "tabular", "--row", "1", "--methods", "nope"], "unknown method"),
    (["explain", "--modality", "tabular", "--row", "1", "--param", "integrated_gradients.n_steps=0"], ">= 2"),
    (["explain", "--modality", "tabular", "--row", "9999"], "out of range"),
    (["explain", "--modality", "tabular"], "--row is required"),
    (["explain", "--modality", "image", "--image", "/no/such.png"], "not found"),
    (["explain", "--modality", "tabular", "--row", "1", "--param", "oops"], "method.name=value"),
])
def test_cli_errors_are_one_line(args, message, isolated_cache):
    p = run_cli(*args, env_cache=isolated_cache)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_cli_methods_lists_registry(isolated_cache):
    p = run_cli("methods", env_cache=isolated_cache)
    assert p.returncode == 0
    assert set(json.loads(p.stdout)) == set(list_methods())
