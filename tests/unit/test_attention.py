"""The attention methods on tiny random BERTs: equal to the weights the model itself returns,
rollout and Chefer relevance equal to independent re-implementations, no hook left anywhere,
the shared model never switched from SDPA, concurrent sessions equal to serial ones."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch

from explainers import ExplainerError, explain, get_method, run_method
from explainers.adapters.text_attention import attention_model, pooling

TEXT = "the soup was bland and the service was terrible !"


def hooks(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in module.modules())


def all_hooks(adapter) -> int:
    """Hooks on the shared model and on its eager-attention copy."""
    return hooks(adapter.module) + hooks(attention_model(adapter.module).module)


@pytest.fixture(scope="module")
def mean_pooled(tiny_text_dir):
    """A tiny BERT under the default model's own wrapper (attention-masked mean pooling)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from cache.text_model import SentimentClassifier
    from explainers.adapters import TextAdapter
    torch.manual_seed(1)
    config = BertConfig(vocab_size=35, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=37, max_position_embeddings=64)
    model = SentimentClassifier(BertModel(config), num_labels=2)
    tok = AutoTokenizer.from_pretrained(str(tiny_text_dir), local_files_only=True)
    return TextAdapter("tiny-mean", model, tok, ["negative", "positive"])


def reference_attentions(adapter, enc, grad_target: int | None = None):
    """What the model itself returns with ``output_attentions=True`` (an eager deep copy made
    here, independent of the code under test), and optionally d logit / d attention."""
    module = copy.deepcopy(adapter.module)
    inner = next(m for m in module.modules() if hasattr(m, "set_attn_implementation"))
    inner.set_attn_implementation("eager")
    mask = enc.context["attention_mask"]
    with torch.enable_grad():
        out = inner(inputs_embeds=enc.inputs.detach().clone().requires_grad_(True),
                    attention_mask=mask, output_attentions=True)
        att = out.attentions
        grads = None
        if grad_target is not None:
            if inner is module:  # a Hugging Face classifier: its own head
                logits = out.logits
            else:  # the mean-pooled wrapper: its head on the mean of every attended state
                from cache.text_model import mean_pool
                logits = module.head(mean_pool(out.last_hidden_state, mask))
            grads = torch.autograd.grad(logits[0, grad_target], att)
    to_np = lambda ts: np.stack([t[0].detach().double().numpy() for t in ts])  # noqa: E731
    return to_np(att), (to_np(grads) if grads is not None else None)


def rows_of(adapter, enc) -> list[int]:
    n = int(enc.context["attention_mask"].sum())
    return list(range(n)) if pooling(adapter.module) == "mean" else [0]


def to_features(per_position: np.ndarray, enc) -> np.ndarray:
    """Sum each feature's positions (a word's pieces), specials dropped."""
    group = enc.groups[:, 0].numpy()
    out = np.zeros(enc.n_features)
    for pos, g in enumerate(group):
        if g >= 0:
            out[g] += per_position[pos]
    return out


@pytest.mark.parametrize("which", ["tiny_text", "mean_pooled"])
@pytest.mark.parametrize("unit", ["piece", "word"])
def test_last_layer_equals_the_models_own_attention(request, which, unit):
    adapter = request.getfixturevalue(which)
    enc = adapter.encode("the films was great", unit=unit)  # "films" = film + ##s
    att, _ = reference_attentions(adapter, enc)
    expected = to_features(att[-1].mean(0)[rows_of(adapter, enc)].mean(0), enc)
    got = run_method(adapter, enc, "attention", target=0).scores
    assert got.shape == (enc.n_features,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    if unit == "word":  # "films" is one word whose score is its two pieces' sum
        assert enc.feature_labels == ["the", "films", "was", "great"]


def test_pooling_of_the_two_tiny_models(tiny_text, mean_pooled):
    assert pooling(tiny_text.module) == "cls"
    assert pooling(mean_pooled.module) == "mean"


def test_layer_and_head_choose_one_map(mean_pooled):
    enc = mean_pooled.encode(TEXT, unit="piece")
    att, _ = reference_attentions(mean_pooled, enc)
    rows = rows_of(mean_pooled, enc)
    got = run_method(mean_pooled, enc, "attention", {"layer": "2", "head": "3"}).scores
    np.testing.assert_allclose(got, to_features(att[1, 2][rows].mean(0), enc), rtol=1e-5, atol=1e-7)
    other = run_method(mean_pooled, enc, "attention", {"layer": "1", "head": "3"}).scores
    assert not np.allclose(got, other)


def numpy_rollout(att: np.ndarray) -> np.ndarray:
    """Abnar & Zuidema's reference code (attention_flow): heads averaged, identity added,
    rows renormalised, joint_i = aug_i . joint_{i-1}."""
    aug = att.mean(axis=1) + np.eye(att.shape[-1])[None]
    aug = aug / aug.sum(axis=-1)[..., None]
    joint = aug[0]
    for i in range(1, len(aug)):
        joint = aug[i].dot(joint)
    return joint


@pytest.mark.parametrize("which", ["tiny_text", "mean_pooled"])
def test_rollout_follows_the_paper(request, which):
    adapter = request.getfixturevalue(which)
    enc = adapter.encode(TEXT, unit="piece")
    att, _ = reference_attentions(adapter, enc)
    expected = to_features(numpy_rollout(att)[rows_of(adapter, enc)].mean(0), enc)
    got = run_method(adapter, enc, "attention", {"aggregation": "rollout"}).scores
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    # through layer 1 only, rollout is that layer's (A + I) / 2
    first = run_method(adapter, enc, "attention", {"aggregation": "rollout", "layer": "1"}).scores
    np.testing.assert_allclose(first, to_features(numpy_rollout(att[:1])[rows_of(adapter, enc)].mean(0), enc),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("which", ["tiny_text", "mean_pooled"])
@pytest.mark.parametrize("target", [0, 1])
def test_attention_x_gradient_follows_chefer(request, which, target):
    adapter = request.getfixturevalue(which)
    enc = adapter.encode(TEXT, unit="piece")
    att, grads = reference_attentions(adapter, enc, grad_target=target)
    rel = np.eye(att.shape[-1])
    for a, g in zip(att, grads):
        rel = rel + np.clip(g * a, 0, None).mean(axis=0) @ rel
    rel = rel - np.eye(att.shape[-1])
    expected = to_features(rel[rows_of(adapter, enc)].mean(0), enc)
    got = run_method(adapter, enc, "attention_x_gradient", target=target).scores
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    assert np.all(got >= 0) and got.sum() > 0


def test_attention_x_gradient_depends_on_the_class_and_attention_does_not(mean_pooled):
    enc = mean_pooled.encode(TEXT)
    a0, a1 = (run_method(mean_pooled, enc, "attention", target=t).scores for t in (0, 1))
    g0, g1 = (run_method(mean_pooled, enc, "attention_x_gradient", target=t).scores for t in (0, 1))
    np.testing.assert_array_equal(a0, a1)
    assert not np.allclose(g0, g1)


def test_rollout_with_one_head_is_refused_before_running(tiny_text):
    enc = tiny_text.encode(TEXT)
    with pytest.raises(ExplainerError, match="head = mean"):
        run_method(tiny_text, enc, "attention", {"aggregation": "rollout", "head": "1"})


def test_layer_and_head_choices_come_from_the_model(tiny_text, mean_pooled):
    specs = {s.name: s for s in get_method("attention").param_specs(mean_pooled)}
    assert specs["layer"].choices == ("last", "1", "2", "3")
    assert specs["head"].choices == ("mean", "1", "2", "3", "4")
    assert {s.name for s in get_method("attention").param_specs(tiny_text)} == {"aggregation", "layer", "head"}
    with pytest.raises(ExplainerError, match="must be one of"):
        run_method(tiny_text, tiny_text.encode(TEXT), "attention", {"layer": "3"})  # 2 layers


def test_the_copy_shares_weights_and_is_built_once(mean_pooled):
    am = attention_model(mean_pooled.module)
    assert attention_model(mean_pooled.module) is am
    shared = dict(mean_pooled.module.named_parameters())
    assert all(p is shared[n] for n, p in am.module.named_parameters())
    assert len(am.layers) == 3


@pytest.mark.parametrize("name", ["attention", "attention_x_gradient"])
def test_no_hook_left_after_success_invalid_target_and_abort(tiny_text, name):
    enc = tiny_text.encode(TEXT)
    run_method(tiny_text, enc, name, target=1)
    assert all_hooks(tiny_text) == 0
    # an invalid target: refused by the engine, and inside the method itself (hooks installed)
    with pytest.raises(ExplainerError, match="out of range"):
        run_method(tiny_text, enc, name, target=7)
    assert all_hooks(tiny_text) == 0
    method = get_method(name)
    params = method.param_specs(tiny_text)
    with pytest.raises((ExplainerError, IndexError)):
        with tiny_text.guarded():
            method.attribute(tiny_text, enc, 7, {s.name: s.default for s in params},
                             tiny_text.forward_fn(enc))
    assert all_hooks(tiny_text) == 0
    # aborted from the progress callback mid-run (Streamlit's rerun / the Stop button)
    seen = []

    def abort(_method, fraction):
        seen.append(fraction)
        if fraction < 1.0:
            raise RuntimeError("user changed a widget mid-run")

    with pytest.raises(RuntimeError, match="mid-run"):
        run_method(tiny_text, enc, name, target=1, progress=abort)
    assert seen and seen[0] < 1.0  # the abort came from inside the run
    assert all_hooks(tiny_text) == 0
    assert tiny_text.lock.acquire(timeout=5)
    tiny_text.lock.release()


def test_the_shared_model_keeps_sdpa_and_its_state(tiny_text):
    enc = tiny_text.encode(TEXT)
    before = {k: v.clone() for k, v in tiny_text.module.state_dict().items()}
    impl = tiny_text.module.config._attn_implementation
    for name in ("attention", "attention_x_gradient"):
        run_method(tiny_text, enc, name)
    assert tiny_text.module.config._attn_implementation == impl == "sdpa"
    assert attention_model(tiny_text.module).module.config._attn_implementation == "eager"
    assert not tiny_text.module.training
    assert all(not p.requires_grad for p in tiny_text.module.parameters())
    assert all(torch.equal(v, tiny_text.module.state_dict()[k]) for k, v in before.items())
    assert hooks(tiny_text.module) == 0


def test_concurrent_sessions_get_serial_results(tiny_text, mean_pooled):
    jobs = [(a, a.encode(TEXT), m, p) for a in (tiny_text, mean_pooled)
            for m, p in (("attention", None), ("attention", {"aggregation": "rollout"}),
                         ("attention_x_gradient", None), ("integrated_gradients", {"n_steps": 8}))]
    serial = [run_method(a, e, m, p, target=1).scores for a, e, m, p in jobs]
    out: dict[int, list] = {i: [] for i in range(len(jobs))}
    errors = []

    def work(offset: int) -> None:
        try:
            for k in range(len(jobs)):
                i = (k + offset) % len(jobs)
                a, e, m, p = jobs[i]
                out[i].append(run_method(a, e, m, p, target=1).scores)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(3 * k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, runs in out.items():
        assert len(runs) == 4
        for scores in runs:
            np.testing.assert_allclose(scores, serial[i], rtol=1e-5, atol=1e-7)
    assert all_hooks(tiny_text) == 0 and all_hooks(mean_pooled) == 0


def test_metrics_cost_and_cache_work_like_the_others(tiny_text):
    r = explain(tiny_text, TEXT, methods=["attention", "attention_x_gradient", "occlusion"],
                metrics=["agreement", "faithfulness", "flip"], use_cache=True)
    d = r.to_dict()
    assert set(d["metrics"]["faithfulness"]["methods"]) == {"attention", "attention_x_gradient", "occlusion"}
    assert {"attention", "attention_x_gradient"} <= set(d["metrics"]["flip"]["methods"])
    assert d["metrics"]["agreement"]["methods"] == ["attention", "attention_x_gradient", "occlusion"]
    again = explain(tiny_text, TEXT, methods=["attention", "attention_x_gradient"], use_cache=True)
    for m in ("attention", "attention_x_gradient"):
        assert again.attributions[m].cache_hit
        np.testing.assert_allclose(again.attributions[m].scores, r.attributions[m].scores, rtol=1e-6)
        assert again.attributions[m].notes == r.attributions[m].notes and r.attributions[m].notes
    rollout = explain(tiny_text, TEXT, methods=["attention"], use_cache=True,
                      params={"attention": {"aggregation": "rollout"}})
    assert not rollout.attributions["attention"].cache_hit  # the parameters are in the key
    from explainers.engine import estimate_cost
    assert estimate_cost(tiny_text, tiny_text.encode(TEXT), "attention") == 2


def test_a_randomized_copy_gets_its_own_attention_copy(mean_pooled):
    """The sanity metric's randomized deep copy: its attention comes from its own weights."""
    from explainers.metrics.sanity import randomized_copy, reinitialize
    enc = mean_pooled.encode(TEXT)
    clone = randomized_copy(mean_pooled)
    torch.manual_seed(0)
    for sub in clone.module.encoder.encoder.layer[-1].modules():  # the top layer, as the metric's first stage
        reinitialize(sub)
    assert attention_model(clone.module) is not attention_model(mean_pooled.module)
    for name in ("attention", "attention_x_gradient"):
        mine = run_method(mean_pooled, enc, name, target=0).scores
        theirs = run_method(clone, enc, name, target=0).scores
        assert not np.allclose(mine, theirs)
    assert all_hooks(mean_pooled) == 0 and hooks(clone.module) == 0


def test_not_offered_for_images_or_tables(tiny_image, tiny_image_input):
    with pytest.raises(ExplainerError, match="does not support image"):
        explain(tiny_image, tiny_image_input, methods=["attention"])
