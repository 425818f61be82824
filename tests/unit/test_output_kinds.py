"""Output kinds (softmax / sigmoid / score): the walkthrough's recommender as a known linear
model exported with torch.export, sigmoid and multi-label heads, and score flips and
faithfulness on a hand-made model whose answers are known.

Models are built in the test (a few parameters each) and loaded the way a user's are: a
``.pt2`` from ``torch.export.save`` plus a CSV with a header row.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from explainers import ExplainerError, explain, load_model
from explainers.adapters import TabularAdapter
from explainers.adapters.base import resolve_output_kind

#: the walkthrough's feature names: browsing time, favourites, past spend, age, gender
NAMES = ["浏览时长", "收藏次数", "历史消费", "年龄", "性别"]
W = torch.tensor([0.8, -0.5, 0.03, 0.1, 2.0])
B = 0.25


def rows(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"浏览时长": rng.uniform(0, 30, n), "收藏次数": rng.integers(0, 12, n).astype(float),
                         "历史消费": rng.uniform(0, 900, n), "年龄": rng.integers(18, 70, n).astype(float),
                         "性别": rng.integers(0, 2, n).astype(float)})


def export(module: torch.nn.Module, path, n_features: int = 5) -> str:
    """``torch.export`` with a dynamic batch dimension, saved as ``.pt2``."""
    module.eval()
    program = torch.export.export(module, (torch.randn(4, n_features),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return str(path)


def linear(w: torch.Tensor, b) -> torch.nn.Linear:
    lin = torch.nn.Linear(w.shape[-1], 1 if w.ndim == 1 else w.shape[0])
    with torch.no_grad():
        lin.weight.copy_(w.reshape(lin.weight.shape))
        lin.bias.copy_(torch.as_tensor(b, dtype=torch.float32).reshape(lin.bias.shape))
    return lin


@pytest.fixture(scope="module")
def recommender(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec")
    frame = rows()
    csv = d / "rows.csv"
    frame.to_csv(csv, index=False, encoding="utf-8")
    return load_model(export(linear(W, B), d / "rec.pt2"), "tabular", data=str(csv)), frame


# -- the known linear model -----------------------------------------------------------------------
def test_linear_recommender_attributions_are_exact(recommender):
    """feature_ablation, IG and occlusion (window 1) all equal w_i (x_i - b_i) against the
    train-mean baseline, in the model's own units (score points)."""
    model, frame = recommender
    assert model.output_kind == "score" and model.feature_names == NAMES
    row = 7
    x = frame.iloc[row].to_numpy(dtype=np.float64)
    base = frame.to_numpy(dtype=np.float32).mean(0).astype(np.float64)
    expected = W.double().numpy() * (x - base)
    r = explain(model, row, methods=["feature_ablation", "integrated_gradients", "occlusion"],
                params={"occlusion": {"window": 1, "stride": 1}}, use_cache=False)
    for name, a in r.attributions.items():
        np.testing.assert_allclose(a.scores, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max(),
                                   err_msg=name)
    value = float(W.double() @ torch.tensor(x) + B)
    pred = r.to_dict()["prediction"]
    assert pred["output_kind"] == "score" and "probabilities" not in pred
    assert pred["value"] == pytest.approx(value, rel=1e-5)
    assert pred["label"] == "score" and r.target == {"index": 0, "label": "score"}
    assert model.predict(model.encode(row)).value == pytest.approx(value, rel=1e-5)


def test_unicode_feature_names_round_trip_json(recommender):
    model, frame = recommender
    r = explain(model, {k: float(v) for k, v in frame.iloc[2].items()}, methods=["feature_ablation"],
                use_cache=False)
    back = json.loads(json.dumps(r.to_dict()))
    assert back["features"] == NAMES
    assert json.loads(json.dumps(r.to_dict(), ensure_ascii=False))["features"] == NAMES


# -- sigmoid and multi-label heads ----------------------------------------------------------------
def strip_values(model, row: int) -> dict[str, float]:
    """What the dashboard's prediction strip draws for ``row``: one bar per output."""
    from dashboard.panels import strip_frame
    pred = model.predict(model.encode(row))
    df = strip_frame(model, pred, None)
    return dict(zip(df["output"], df["value"]))


def test_sigmoid_head_strip_matches_torch_sigmoid(tmp_path):
    frame = rows()
    frame.to_csv(tmp_path / "rows.csv", index=False)
    lin = linear(W * 0.05, -0.3)
    model = load_model(export(lin, tmp_path / "click.pt2"), "tabular", data=str(tmp_path / "rows.csv"),
                       labels=["click"])
    assert model.output_kind == "sigmoid"  # one output with a name: a binary sigmoid head
    for row in (0, 5):
        x = torch.tensor(frame.iloc[row].to_numpy(), dtype=torch.float32)[None]
        want = torch.sigmoid(lin(x))[0].detach().numpy()
        got = strip_values(model, row)
        assert list(got) == ["click"]
        assert got["click"] == pytest.approx(float(want[0]), abs=1e-6)
        pred = model.predict(model.encode(row)).to_dict()
        assert pred["output_kind"] == "sigmoid" and pred["probabilities"] == pytest.approx([float(want[0])], abs=1e-6)


def test_multilabel_head_strip_matches_torch_sigmoid(tmp_path):
    frame = rows()
    frame.to_csv(tmp_path / "rows.csv", index=False)
    torch.manual_seed(1)
    lin = torch.nn.Linear(5, 3)
    with torch.no_grad():
        lin.weight.mul_(0.05)
    model = load_model(export(lin, tmp_path / "tags.pt2"), "tabular", data=str(tmp_path / "rows.csv"),
                       labels=["sports", "music", "travel"], output="sigmoid")
    x = torch.tensor(frame.iloc[3].to_numpy(), dtype=torch.float32)[None]
    want = torch.sigmoid(lin(x))[0].detach().numpy()
    got = strip_values(model, 3)
    assert list(got) == ["sports", "music", "travel"]  # every output, in model order
    np.testing.assert_allclose([got[k] for k in ("sports", "music", "travel")], want, atol=1e-6)
    assert abs(sum(got.values()) - 1.0) > 1e-3  # independent probabilities, no shared 100 %
    # the same model read as a softmax would sum to one: the kind decides, not the weights
    soft = strip_values(load_model(str(tmp_path / "tags.pt2"), "tabular", data=str(tmp_path / "rows.csv"),
                                   labels=["sports", "music", "travel"]), 3)
    assert sum(soft.values()) == pytest.approx(1.0, abs=1e-6)


def test_output_kind_rules():
    assert resolve_output_kind(None, 1, labels_given=False) == "score"
    assert resolve_output_kind(None, 1, labels_given=True) == "sigmoid"
    assert resolve_output_kind(None, 3) == "softmax"
    assert resolve_output_kind("score", 3) == "score"
    with pytest.raises(ExplainerError, match="always 1"):
        resolve_output_kind("softmax", 1)
    with pytest.raises(ExplainerError, match="unknown output kind"):
        resolve_output_kind("probit", 2)


def test_classifier_json_stays_backward_compatible(tiny_tabular):
    pred = tiny_tabular.predict(tiny_tabular.encode(0)).to_dict()
    assert set(pred) == {"index", "label", "probabilities", "output_kind"}
    assert pred["output_kind"] == "softmax" and sum(pred["probabilities"]) == pytest.approx(1, abs=1e-5)


# -- flip and faithfulness on a hand-made score model ---------------------------------------------
class Known(torch.nn.Module):
    """f(x) = 3 x0 + 2 x1 - 1 x2 (no bias)."""

    def forward(self, x):
        return (x * torch.tensor([3.0, 2.0, -1.0])).sum(-1, keepdim=True)


@pytest.fixture(scope="module")
def known():
    # symmetric data: every column's mean is 0, so the train-mean baseline is x = 0
    data = pd.DataFrame([[1, 1, -1], [-1, -1, 1], [2, 0, 0], [-2, 0, 0], [0, 3, 3], [0, -3, -3]],
                        columns=["a", "b", "c"], dtype=float)
    return TabularAdapter("known", Known(), data, ["score"])


def test_score_flip_counts_the_removals_across_the_threshold(known):
    # x = (1, 1, -1): contributions 3, 2, 1; f = 6
    r = explain(known, {"a": 1, "b": 1, "c": -1}, methods=["feature_ablation"], use_cache=False,
                metrics=["flip"], metric_params={"threshold": 2.5})
    fl = r.metrics["flip"]
    m = fl["methods"]["feature_ablation"]
    # removing a (3) leaves 3 >= 2.5; removing b too leaves 1 < 2.5: two removals
    assert m["count"] == 2 and m["features"] == ["a", "b"]
    assert m["new_value"] == pytest.approx(1.0) and m["new_label"] == "score < 2.5"
    assert fl["original_value"] == pytest.approx(6.0) and fl["original_label"] == "score >= 2.5"
    assert fl["threshold"] == 2.5 and fl["threshold_source"] == "set by the user"
    assert fl["random"]["count"] is None or fl["random"]["count"] >= 2  # 2 is the fewest possible
    # below the threshold, the features holding it down go first
    r = explain(known, {"a": -1, "b": 0, "c": 2}, methods=["feature_ablation"], use_cache=False,
                metrics=["flip"], metric_params={"threshold": -2.5})
    m = r.metrics["flip"]["methods"]["feature_ablation"]  # f = -5: contributions -3, 0, -2
    assert r.metrics["flip"]["original_label"] == "score < -2.5"
    assert m["count"] == 1 and m["features"] == ["a"] and m["new_value"] == pytest.approx(-2.0)
    # a threshold nothing can reach short of emptying the row
    r = explain(known, {"a": 1, "b": 1, "c": -1}, methods=["feature_ablation"], use_cache=False,
                metrics=["flip"], metric_params={"threshold": -10})
    assert r.metrics["flip"]["methods"]["feature_ablation"]["count"] is None


def test_score_flip_threshold_defaults_to_the_data_median(known):
    r = explain(known, 2, methods=["feature_ablation"], use_cache=False, metrics=["flip"])
    scores = Known()(torch.tensor(known.data.to_numpy())).numpy()[:, 0]
    assert r.metrics["flip"]["threshold"] == pytest.approx(float(np.median(scores)))
    assert "median" in r.metrics["flip"]["threshold_source"]


def test_score_faithfulness_follows_the_raw_score(known):
    r = explain(known, {"a": 1, "b": 1, "c": -1}, methods=["feature_ablation"], use_cache=False,
                metrics=["faithfulness"], metric_params={"random_orders": 20, "sequential": False})
    f = r.metrics["faithfulness"]
    assert f["measure"] == "score" and f["output_kind"] == "score"
    m = f["methods"]["feature_ablation"]
    # removing a, b, c in turn: 6 -> 3 -> 1 -> 0 (the baseline is x = 0)
    assert m["deletion"] == pytest.approx([6.0, 3.0, 1.0, 0.0], abs=1e-5)
    assert m["deletion_aopc"] == pytest.approx(np.mean([0, 3, 5, 6]), abs=1e-5)
    assert m["insertion"] == pytest.approx([0.0, 3.0, 5.0, 6.0], abs=1e-5)
    assert f["random"]["orders"] == 20 and f["random"]["deletion_aopc"] < m["deletion_aopc"]


def test_sigmoid_flip_defaults_to_one_half(tmp_path):
    data = pd.DataFrame([[1, 1, -1], [-1, -1, 1], [2, 0, 0], [-2, 0, 0]], columns=["a", "b", "c"], dtype=float)
    model = TabularAdapter("known", Known(), data, ["click"], output="sigmoid")
    r = explain(model, {"a": 1, "b": 0.5, "c": 1}, methods=["feature_ablation"], use_cache=False,
                metrics=["flip", "faithfulness"], metric_params={"random_orders": 10})
    fl = r.metrics["flip"]
    assert fl["threshold"] == 0.5 and fl["output_kind"] == "sigmoid"
    # logit 3 (contributions 3, 1, -1): removing a leaves 0 (p 0.5, not below 0.5 yet),
    # removing b too leaves -1 (p 0.27): two removals
    m = fl["methods"]["feature_ablation"]
    assert m["count"] == 2 and m["new_probability"] == pytest.approx(float(torch.sigmoid(torch.tensor(-1.0))))
    curve = r.metrics["faithfulness"]["methods"]["feature_ablation"]["deletion"]
    assert curve == pytest.approx(torch.sigmoid(torch.tensor([3.0, 0.0, -1.0, 0.0])).tolist(), abs=1e-6)
    assert r.metrics["faithfulness"]["measure"] == "probability"


def test_review_summary_works_for_score_records(known):
    from explainers.review import review_one, summarize
    records = [review_one(known, i, i, ["feature_ablation", "integrated_gradients"], None,
                          ["agreement", "faithfulness", "flip"], {"random_orders": 10}) for i in range(4)]
    assert not [r for r in records if "error" in r]
    summary = summarize(records)
    assert summary["inputs"] == 4
    for m in ("feature_ablation", "integrated_gradients"):
        row = summary["methods"][m]
        assert row["deletion_aopc"] is not None and row["flipped_share"] is not None


def test_output_override_on_a_default_model_leaves_the_cached_one_alone(known):
    from cache.models import with_output
    other = with_output(known, "sigmoid")
    assert other is not known and other.output_kind == "sigmoid" and known.output_kind == "score"
    assert with_output(known, None) is known


def test_no_deprecation_warnings_from_our_export_path(tmp_path):
    frame = rows(12)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    path = export(linear(W, B), tmp_path / "quiet.pt2")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", FutureWarning)
        from cache.models import file_tabular
        model = file_tabular(path, str(tmp_path / "rows.csv"))
        explain(model, 1, methods=["integrated_gradients", "feature_ablation"], use_cache=False,
                metrics=["faithfulness", "flip"], metric_params={"random_orders": 5})


def test_multilabel_text_head_is_a_sigmoid_everywhere(tmp_path):
    """A Hugging Face multi-label head (``problem_type``) is read as a sigmoid: predictions,
    re-predicted edited texts (flip, faithfulness under ``delete``) all use torch.sigmoid."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    from cache.models import hf_text
    from tests.conftest import TINY_VOCAB
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64, num_labels=3,
                        problem_type="multi_label_classification",
                        id2label={0: "toxic", 1: "insult", 2: "threat"})
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    BertTokenizer(vocab={w: i for i, w in enumerate(TINY_VOCAB)}).save_pretrained(tmp_path)
    model = hf_text(str(tmp_path))
    assert model.output_kind == "sigmoid"
    text = "the food was bad and the service was terrible"
    enc = model.encode(text)
    with torch.no_grad():
        logits = model.forward(enc.inputs, enc)[0]
    pred = model.predict(enc)
    np.testing.assert_allclose(pred.outputs, torch.sigmoid(logits).numpy(), atol=1e-6)
    np.testing.assert_allclose(model.predict_texts([text])[0].numpy(), torch.sigmoid(logits).numpy(), atol=1e-5)
    r = explain(model, text, methods=["occlusion"], use_cache=False, metrics=["flip", "faithfulness"],
                metric_params={"random_orders": 5})
    assert r.metrics["flip"]["threshold"] == 0.5 and r.metrics["faithfulness"]["measure"] == "probability"
    curve = r.metrics["faithfulness"]["methods"]["occlusion"]["deletion"]
    assert curve[0] == pytest.approx(pred.outputs[pred.index], abs=1e-5)
