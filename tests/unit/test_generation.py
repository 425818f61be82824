"""Generation on tiny random-weight causal LMs: our numbers equal Captum's LLMAttribution and
LLMGradientAttribution, the matrix has one row per target token, a contrast is the difference
of its two targets, no hook or state outlives a run, concurrent runs equal serial ones,
template fields map to their tokens, and every bad input is one clear error."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from captum.attr import (FeatureAblation, LayerIntegratedGradients, LLMAttribution,
                         LLMGradientAttribution, TextTemplateInput, TextTokenInput)

from explainers import ExplainerError, explain, list_methods, run_method
from explainers.adapters.generation import DELETED, Prompt

PROMPT = "the soup was bland and the service was terrible"
FACT = "Maria was born in Lisbon and studied chemistry in Berlin. Which city was Maria born in?"
TARGET = " Lisbon and"
#: float32 log-probabilities of a few units: rounding of ~1e-6 per value; Captum decodes token
#: by token, we in one teacher-forced pass (different kernels), so the bound is 1e-4
TOL = 1e-4


def plain(text: str) -> Prompt:
    return Prompt(text, chat=False)


def captum_ids(adapter, text: str) -> torch.Tensor:
    return torch.tensor(adapter.tokenizer(text, add_special_tokens=False)["input_ids"])


# -- equal to Captum ---------------------------------------------------------------------------
def test_feature_ablation_with_word_deletion_equals_captum(tiny_lm):
    """Word deletion = Captum's TextTemplateInput over the words, "" as each baseline. Captum is
    run token by token without its KV cache: with transformers 5 its cached path scores the
    second and later target tokens differently from an uncached forward (see BENCHMARKS.md)."""
    enc = tiny_lm.encode(plain(PROMPT), unit="word", target=TARGET)
    ours = run_method(tiny_lm, enc, "feature_ablation", {"baselines": ["delete"]})
    words = PROMPT.split()
    assert enc.feature_labels == words
    inp = TextTemplateInput(lambda *v: " ".join(w for w in v if w), values=words)
    ref = LLMAttribution(FeatureAblation(tiny_lm.module), tiny_lm.tokenizer).attribute(
        inp, target=TARGET, use_cached_outputs=False)
    assert ours.matrix.shape == tuple(ref.token_attr.shape) == (len(captum_ids(tiny_lm, TARGET)), len(words))
    np.testing.assert_allclose(ours.scores, ref.seq_attr.numpy(), atol=TOL)
    np.testing.assert_allclose(ours.matrix, ref.token_attr.numpy(), atol=TOL)
    assert np.abs(ours.scores).max() > 100 * TOL  # a map the tolerance can tell apart


def test_feature_ablation_with_a_baseline_token_equals_captum(tiny_lm):
    enc = tiny_lm.encode(plain(PROMPT), unit="token", target=TARGET)
    ours = run_method(tiny_lm, enc, "feature_ablation", {"baselines": ["unk"]})
    inp = TextTokenInput(PROMPT, tiny_lm.tokenizer, baselines=tiny_lm.tokenizer.unk_token_id)
    ref = LLMAttribution(FeatureAblation(tiny_lm.module), tiny_lm.tokenizer).attribute(
        inp, target=TARGET, use_cached_outputs=False)
    np.testing.assert_allclose(ours.scores, ref.seq_attr.numpy(), atol=TOL)
    np.testing.assert_allclose(ours.matrix, ref.token_attr.numpy(), atol=TOL)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_integrated_gradients_equal_captum_llm_gradient_attribution(request, arch):
    adapter = request.getfixturevalue("tiny_lm" if arch == "llama" else "tiny_gpt2")
    enc = adapter.encode(plain(PROMPT), unit="token", target=TARGET)
    ours = run_method(adapter, enc, "integrated_gradients", {"baselines": ["unk"], "n_steps": 20})
    layer = adapter.module.get_input_embeddings()
    inp = TextTokenInput(PROMPT, adapter.tokenizer, baselines=adapter.tokenizer.unk_token_id)
    ref = LLMGradientAttribution(LayerIntegratedGradients(adapter.module, layer), adapter.tokenizer).attribute(
        inp, target=TARGET, n_steps=20)
    np.testing.assert_allclose(ours.scores, ref.seq_attr.numpy(), atol=TOL)
    np.testing.assert_allclose(ours.matrix, ref.token_attr.numpy(), atol=TOL)
    assert np.abs(ours.scores).max() > 100 * TOL


def test_template_fields_equal_captum_text_template_input(tiny_lm):
    prompt = Prompt(template="{name} was born in {city}. Which city was {name} born in?",
                    values={"name": "Maria", "city": "Lisbon"}, baselines={"name": "Tom", "city": ""},
                    chat=False)
    enc = tiny_lm.encode(prompt, target=" Lisbon")
    assert enc.extra["unit"] == "field" and enc.feature_labels == ["name=Maria", "city=Lisbon"]
    ours = run_method(tiny_lm, enc, "feature_ablation", {"baselines": ["delete"]})
    inp = TextTemplateInput(prompt.template, values=dict(prompt.values), baselines=dict(prompt.baselines))
    ref = LLMAttribution(FeatureAblation(tiny_lm.module), tiny_lm.tokenizer).attribute(
        inp, target=" Lisbon", use_cached_outputs=False)
    np.testing.assert_allclose(ours.scores, ref.seq_attr.numpy(), atol=TOL)


def test_template_fields_map_to_their_tokens(tiny_lm):
    prompt = Prompt(template="{name} lives in {city}.", values={"name": "Tom", "city": "Oslo"})
    enc = tiny_lm.encode(prompt, target=" fish")
    ids = enc.context["input_ids"][0].tolist()
    group = enc.groups[:, 0].tolist()
    decoded = {u: tiny_lm.tokenizer.decode([i for i, g in zip(ids, group) if g == u]).strip() for u in (0, 1)}
    assert decoded == {0: "Tom", 1: "Oslo"}
    # everything else (chat template, " lives in ", ".") is never perturbed
    rest = tiny_lm.tokenizer.decode([i for i, g in zip(ids, group) if g < 0])
    assert "lives in" in rest and "Tom" not in rest and "Oslo" not in rest
    edited = tiny_lm.edit_units(enc, [1])
    assert edited.values == {"name": "Tom", "city": ""}


# -- the matrix ----------------------------------------------------------------------------------
LINEAR = ("feature_ablation", "integrated_gradients", "input_x_gradient", "occlusion", "kernel_shap",
          "lime", "shapley_sampling")
FAST = {"integrated_gradients": {"n_steps": 8}, "gradient_shap": {"n_samples": 4}, "kernel_shap": {"n_samples": 40},
        "lime": {"n_samples": 40}, "shapley_sampling": {"n_samples": 2}, "smoothgrad": {"n_samples": 3}}


def hooks(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in module.modules())


@pytest.mark.parametrize("name", list_methods("generation"))
def test_every_method_gives_a_matrix_and_leaves_the_model_as_it_was(tiny_lm, name):
    enc = tiny_lm.encode(FACT, unit="word", target=TARGET)
    before = {k: v.clone() for k, v in tiny_lm.module.state_dict().items()}
    params = FAST.get(name)
    res = run_method(tiny_lm, enc, name, params)
    n_tokens = len(captum_ids(tiny_lm, TARGET))
    assert res.scores.shape == (enc.n_features,)
    assert res.matrix.shape == (n_tokens, enc.n_features)
    assert np.all(np.isfinite(res.matrix)) and np.abs(res.matrix).sum() > 0
    if name in LINEAR:  # the total's attribution is the sum of the tokens' (float32 sums)
        np.testing.assert_allclose(res.matrix.sum(0), res.scores, atol=1e-5 * max(1.0, np.abs(res.matrix).sum()))
    assert hooks(tiny_lm.module) == 0 and not tiny_lm.module.training
    assert all(torch.equal(before[k], v) for k, v in tiny_lm.module.state_dict().items())
    again = run_method(tiny_lm, enc, name, params)
    np.testing.assert_array_equal(res.matrix, again.matrix)


def test_one_teacher_forced_forward_scores_every_target_token(tiny_lm, monkeypatch):
    """The matrix costs no model work beyond the total's run: every row is remembered."""
    enc = tiny_lm.encode(plain(PROMPT), unit="word", target=TARGET)
    calls = []
    real = tiny_lm.decoder.forward
    monkeypatch.setattr(tiny_lm.decoder, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    for name, params in (("feature_ablation", None), ("integrated_gradients", {"n_steps": 8})):
        calls.clear()
        res = run_method(tiny_lm, enc, name, params, target=0)
        assert res.matrix.shape[0] == 2
        # what the total's run alone takes: FA the input, then its 10 ablations (9 words and
        # the never-perturbed group) in one batch; IG its 8 steps in one batch, then f(x)
        # and f(baseline) for the delta. The two matrix rows add no call.
        assert len(calls) == (2 if name == "feature_ablation" else 3), name


def test_contrast_is_the_difference_of_the_two_targets(tiny_lm):
    a, b = " Lisbon", " Berlin"
    runs = {}
    for key, kwargs in (("a", {"target": a}), ("b", {"target": b}), ("ab", {"target": a, "contrast": b})):
        enc = tiny_lm.encode(FACT, unit="word", **kwargs)
        runs[key] = run_method(tiny_lm, enc, "feature_ablation", {"baselines": ["delete"]})
    np.testing.assert_allclose(runs["ab"].scores, runs["a"].scores - runs["b"].scores, atol=TOL)
    np.testing.assert_allclose(runs["ab"].matrix, np.vstack([runs["a"].matrix, runs["b"].matrix]), atol=TOL)


def test_concurrent_sessions_are_bit_identical_to_serial(tiny_lm):
    jobs = [("feature_ablation", FACT, None), ("integrated_gradients", PROMPT, {"n_steps": 8}),
            ("kernel_shap", FACT, {"n_samples": 40}), ("target_attention", PROMPT, None)] * 2
    encs = [tiny_lm.encode(text, target=TARGET) for _, text, _ in jobs]
    serial = [run_method(tiny_lm, e, m, p).matrix for (m, _, p), e in zip(jobs, encs)]
    out: list = [None] * len(jobs)

    def work(i: int) -> None:
        m, _, p = jobs[i]
        out[i] = run_method(tiny_lm, encs[i], m, p).matrix

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, out):
        np.testing.assert_array_equal(a, b)
    assert hooks(tiny_lm.module) == 0


def test_deletion_is_a_text_edit_and_refused_by_interpolating_methods(tiny_lm):
    enc = tiny_lm.encode(plain(PROMPT), unit="word", target=TARGET)
    base = tiny_lm.baseline(enc, "delete")
    assert bool((base == DELETED).all(-1).any())
    # deleting every word leaves an empty prompt, scored from one start token
    assert np.isfinite(tiny_lm.predict_batch(base, enc).numpy()).all()
    assert tiny_lm.deleted_text(enc, {1, 2}) == "the bland and the service was terrible"
    with pytest.raises(ExplainerError, match="parameter 'baselines' accepts"):
        run_method(tiny_lm, enc, "integrated_gradients", {"baselines": ["delete"]})
    mixed = enc.inputs + 0.5 * (base - enc.inputs)  # what a path toward 'delete' would evaluate
    with pytest.raises(ExplainerError, match="cannot be interpolated"):
        tiny_lm.predict_batch(mixed, enc)


# -- API, JSON, store, flip --------------------------------------------------------------------------
def test_explain_json_carries_matrix_units_target_tokens_and_continuation(tiny_lm, tmp_path):
    from cache.store import AttributionStore
    store = AttributionStore(tmp_path / "s.sqlite")
    r = explain(tiny_lm, FACT, methods=["feature_ablation", "integrated_gradients"],
                params={"integrated_gradients": {"n_steps": 8}}, target=TARGET, store=store)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["modality"] == "generation"
    assert d["features"][:3] == ["Maria", "was", "born"]
    out = d["output"]
    assert out["target"]["tokens"] == tiny_lm.show_tokens(captum_ids(tiny_lm, TARGET).tolist())
    assert out["columns"] == out["target"]["tokens"] and out["continuation"]["tokens"]
    fa = d["attributions"]["feature_ablation"]
    assert len(fa["matrix"]) == len(out["columns"]) and len(fa["matrix"][0]) == len(d["features"])
    assert d["prediction"]["value"] == pytest.approx(sum(d["prediction"]["values"][1:-1]), abs=1e-4)
    again = explain(tiny_lm, FACT, methods=["feature_ablation"], target=TARGET, store=store)
    assert again.attributions["feature_ablation"].cache_hit
    np.testing.assert_allclose(again.attributions["feature_ablation"].matrix, fa["matrix"], atol=1e-6)


def test_the_greedy_target_is_the_continuation(tiny_lm):
    r = explain(tiny_lm, Prompt(PROMPT, max_new_tokens=4), methods=["feature_ablation"], use_cache=False)
    out = r.output
    assert out["target"]["source"] == "greedy" and out["target"]["ids"] == out["continuation"]["ids"]
    assert 1 <= len(out["target"]["ids"]) <= 4
    assert r.attributions["feature_ablation"].matrix.shape[0] == len(out["target"]["ids"])


def test_the_flip_is_the_fewest_deletions_that_change_the_first_token(tiny_lm):
    r = explain(tiny_lm, Prompt(FACT, max_new_tokens=3), methods=["feature_ablation"], metrics=["flip"],
                use_cache=False)
    block = r.metrics["flip"]
    assert block["target_label"] == "first-token margin" and block["threshold"] == 0.0
    first = r.output["continuation"]["ids"][0]
    for b in [block["methods"]["feature_ablation"], block["random"]]:
        if b["count"] is None:
            continue
        enc = tiny_lm.encode(FACT)
        edited = tiny_lm.edit_units(enc, b["indices"])
        new = tiny_lm.encode(edited, target=r.output["target"]["ids"])
        assert tiny_lm.continuation(new)[0] != first  # the greedy answer starts differently
        assert b["new_value"] < 0


# -- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,kwargs,message", [
    ("   ", {}, "the prompt is empty"),
    ("Paris " * 200, {"target": " x"}, "exceed the model's context"),
    (PROMPT, {"target": ""}, "tokenizes to nothing"),
    (PROMPT, {"target": " Oslo", "contrast": " Oslo"}, "the contrast equals the target"),
    (PROMPT, {"unit": "paragraph"}, "unit must be one of"),
    (PROMPT, {"unit": "field"}, "needs a template"),
    ({"template": "{name} lives in {city}", "values": {"name": "Tom"}}, {}, "fields and its values disagree"),
    ({"template": "{name} lives", "values": {"name": "Tom", "town": "Oslo"}}, {}, "no field for"),
    ({"template": "{} and {name}", "values": ["a"]}, {}, "mixes"),
    ({"template": "no fields", "values": {}}, {}, "has no {} fields"),
    ({"text": PROMPT, "colour": "red"}, {}, "unknown prompt field"),
    (Prompt(PROMPT, max_new_tokens=0), {}, "max_new_tokens"),
])
def test_bad_input_is_one_clear_error(tiny_lm, raw, kwargs, message):
    with pytest.raises(ExplainerError, match=message) as e:
        tiny_lm.encode(raw, **kwargs)
    assert "\n" not in str(e.value)


def test_options_of_other_modalities_are_refused(tiny_text, tiny_lm):
    with pytest.raises(ExplainerError, match="'contrast' applies to generation only"):
        explain(tiny_text, "the soup was bland", contrast="good")
    with pytest.raises(ExplainerError, match="unit must be one of"):
        explain(tiny_lm, PROMPT, unit="piece", target=" x")


def test_a_folder_without_safetensors_or_of_another_architecture_is_refused(tmp_path, tiny_text_dir):
    from cache.generation_model import load_folder
    with pytest.raises(ExplainerError, match="explains LlamaForCausalLM"):
        load_folder(tiny_text_dir)  # a BERT classifier
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ExplainerError, match="only safetensors"):
        load_folder(tmp_path)
