"""Words, not word pieces: merging, edits on the user's text, the [UNK] warning, and the
flip that carries its own edit (issue 8, issue 11 item 2), on the tiny BERT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from explainers import ExplainerError, explain, run_method
from explainers.adapters.words import edit_spans, group_words, is_cjk, is_punct, merge_spans

CHINESE = "这家餐厅的服务太差了,等了两个小时都没上菜"


# -- pure helpers ----------------------------------------------------------------------------
def test_group_words_splits_punctuation_and_cjk_even_inside_one_tokenizer_word():
    # a SentencePiece-like tokenizer that calls "餐厅!" one word: each character is a word
    texts = ["餐", "厅", "!", "good", "ness"]
    spans = [(0, 1), (1, 2), (2, 3), (4, 8), (8, 12)]
    assert group_words(texts, [0, 0, 0, 1, 1], spans) == [0, 1, 2, 3, 3]
    # without word ids, WordPiece's ## marks a continuation; whitespace always separates
    assert group_words(["un", "##fl", "bleak"], None, None, ["un", "##fl", "bleak"]) == [0, 0, 1]
    assert group_words(["a", "b"], [0, 0], [(0, 1), (2, 3)]) == [0, 1]
    assert merge_spans([(0, 2), (2, 4), (5, 9)], [0, 0, 1]) == [(0, 4), (5, 9)]
    assert is_cjk("餐厅") and not is_cjk("a餐") and is_punct(",.!") and is_punct("😀") and not is_punct("a,")


def test_edit_spans_never_fuses_words():
    text = "don't stop"
    spans = [(0, 3), (3, 4), (4, 5), (6, 10)]
    assert edit_spans(text, spans, [0, 1, 2, 3], {1}, set(), "[MASK]") == "don t stop"
    # pieces of one word rejoin without a space (piece mode)
    assert edit_spans("unflinching bleak", [(0, 2), (2, 11), (12, 17)], [0, 0, 1], {0}, set(),
                      "[MASK]") == "flinching bleak"
    # punctuation keeps hugging its word; whitespace before a kept word is kept
    text = "was bland, then"
    spans = [(0, 3), (4, 9), (9, 10), (11, 15)]
    assert edit_spans(text, spans, [0, 1, 2, 3], {1}, set(), "[MASK]") == "was, then"
    assert edit_spans(text, spans, [0, 1, 2, 3], {2}, set(), "[MASK]") == "was bland then"
    assert edit_spans(text, spans, [0, 1, 2, 3], set(), {1}, "[MASK]") == "was [MASK], then"
    assert edit_spans(text, spans, [0, 1, 2, 3], {0, 1, 2, 3}, set(), "[MASK]") == ""


# -- encoding ---------------------------------------------------------------------------------
def test_words_merge_pieces_and_scores_sum_over_pieces(tiny_text):
    text = "the films was bland, i love it"
    words = tiny_text.encode(text)
    pieces = tiny_text.encode(text, unit="piece")
    assert pieces.feature_labels == ["the", "film", "##s", "was", "bland", ",", "i", "love", "it"]
    assert words.feature_labels == ["the", "films", "was", "bland", ",", "i", "love", "it"]
    assert words.extra["unit"] == "word" and pieces.extra["unit"] == "piece"
    assert words.key != pieces.key  # word and piece results never share a cache entry
    piece_scores = run_method(tiny_text, pieces, "integrated_gradients", {"n_steps": 16}, 0).scores
    word_scores = run_method(tiny_text, words, "integrated_gradients", {"n_steps": 16}, 0).scores
    expected = np.array([piece_scores[0], piece_scores[1] + piece_scores[2], *piece_scores[3:]])
    np.testing.assert_allclose(word_scores, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ExplainerError, match="unit"):
        tiny_text.encode(text, unit="sentence")


def test_cache_keeps_word_and_piece_results_apart(tiny_text, tmp_path):
    from cache.store import AttributionStore
    store = AttributionStore(tmp_path / "s.sqlite")
    text = "the films was bland"
    w = explain(tiny_text, text, methods=["saliency"], store=store)
    p = explain(tiny_text, text, methods=["saliency"], store=store, unit="piece")
    assert not p.attributions["saliency"].cache_hit
    assert len(w.attributions["saliency"].scores) == 4 and len(p.attributions["saliency"].scores) == 5
    assert explain(tiny_text, text, methods=["saliency"], store=store).attributions["saliency"].cache_hit
    with pytest.raises(ExplainerError, match="applies to text and generation only"):
        from explainers.api import encode
        encode(type("M", (), {"modality": "image"})(), None, unit="word")


def test_chinese_characters_are_words_and_unknown_tokens_are_reported(tiny_text):
    enc = tiny_text.encode(CHINESE)
    assert enc.feature_labels == list(CHINESE)  # every character (and the comma) is a word
    ids = tiny_text.tokenizer(CHINESE)["input_ids"][1:-1]
    n_unk = sum(i == tiny_text.tokenizer.unk_token_id for i in ids)
    assert n_unk >= len(ids) // 2  # the tiny vocabulary has no CJK characters
    expected = f"{n_unk} of {len(ids)} tokens are [UNK]: this model does not read this script"
    assert any(expected in w for w in enc.warnings)
    result = explain(tiny_text, CHINESE, methods=["saliency"], use_cache=False).to_dict()
    assert any(expected in w for w in result["warnings"])
    assert not tiny_text.encode("the soup was bland").warnings  # readable text: no warning


# -- word-level occlusion ---------------------------------------------------------------------
def _drops_by_hand(tiny_text, text: str, hidden_words: list[set[int]], target: int,
                   fill: str = "pad") -> list[float]:
    """The target logit minus the logit with each set of words' pieces all replaced by the
    ``fill`` token, straight from the Hugging Face model on token ids (no adapter code)."""
    enc = tiny_text.encode(text)
    word_of = enc.extra["word_of_piece"]
    ids = enc.context["input_ids"][0].tolist()
    content = enc.context["content_positions"].tolist()
    fill_id = getattr(tiny_text.tokenizer, f"{fill}_token_id")
    rows = [ids] + [[fill_id if p in content and word_of[content.index(p)] in hide
                     else i for p, i in enumerate(ids)] for hide in hidden_words]
    with torch.no_grad():
        logits = tiny_text.module(input_ids=torch.tensor(rows), attention_mask=torch.ones(len(rows), len(ids),
                                                                                          dtype=torch.long)).logits
    return [float(logits[0, target] - logits[k, target]) for k in range(1, len(rows))]


def test_occlusion_scores_a_word_by_hiding_all_of_its_pieces(sharp_text):
    """On the tiny BERT ("soups" = soup + ##s): each word's Occlusion score (window 1) is the
    logit drop from hiding the whole word, computed directly from token ids."""
    text = "the soups was bland"
    enc = sharp_text.encode(text)
    assert enc.extra["pieces"] == ["the", "soup", "##s", "was", "bland"] and enc.n_features == 4
    with torch.no_grad():
        scale = float(sharp_text.forward(enc.inputs, enc).abs().max())
    # float32 logits from other batch shapes differ by rounding: 16 ulps of their magnitude
    tol = 16 * float(np.finfo(np.float32).eps) * scale
    # [MASK] fill: on this model the word's drop and its pieces' summed drops differ by ~6e-4
    a = run_method(sharp_text, enc, "occlusion", {"window": 1, "stride": 1, "baselines": ["mask"]}, 0)
    hand = _drops_by_hand(sharp_text, text, [{j} for j in range(4)], 0, fill="mask")
    np.testing.assert_allclose(a.scores, hand, atol=tol)


class _BothPieces(torch.nn.Module):
    """Logit 1 = 5 relu(n - 1), n = how many of the pieces "soup" and "##s" are in the text:
    only the whole word matters (the two pieces interact); [PAD] embeds to 0."""

    def __init__(self, vocab_size: int, ids: list[int]) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(vocab_size, 1)
        with torch.no_grad():
            self.emb.weight.zero_()
            self.emb.weight[ids] = 1.0

    def get_input_embeddings(self):
        return self.emb

    def forward(self, inputs_embeds, attention_mask):
        n = (inputs_embeds[..., 0] * attention_mask).sum(1)
        return torch.stack([torch.zeros_like(n), 5.0 * torch.relu(n - 1.0)], dim=-1)


def test_occlusion_windows_count_words_not_pieces(tiny_text):
    """Hiding "soups" drops the logit by 5; hiding either piece alone also drops it by 5, so
    summing the pieces' drops (the old word score) would say 10. Windows of two words."""
    from explainers.adapters.text import TextAdapter
    tok = tiny_text.tokenizer
    model = _BothPieces(len(tok), tok.convert_tokens_to_ids(["soup", "##s"]))
    adapter = TextAdapter("both-pieces", model, tok, ["no", "yes"])
    enc = adapter.encode("the soups was bland")
    fill = {"baselines": ["pad"], "stride": 1}
    # integers in float32, one division by the window: exact up to 1 ulp
    one = run_method(adapter, enc, "occlusion", {"window": 1, **fill}, 1).scores
    np.testing.assert_allclose(one, [0.0, 5.0, 0.0, 0.0], atol=1e-6)
    pieces = run_method(adapter, adapter.encode("the soups was bland", unit="piece"), "occlusion",
                        {"window": 1, **fill}, 1).scores
    np.testing.assert_allclose(pieces, [0.0, 5.0, 5.0, 0.0, 0.0], atol=1e-6)
    # window 2, stride 1 over 4 words: {the, soups} and {soups, was} drop 5, {was, bland} 0;
    # each word gets the mean drop of the windows covering it, shared between their 2 words
    two = run_method(adapter, enc, "occlusion", {"window": 2, **fill}, 1).scores
    np.testing.assert_allclose(two, [2.5, 2.5, 1.25, 0.0], atol=1e-6)
    from explainers import estimate_cost
    assert estimate_cost(adapter, enc, "occlusion", {"window": 2, **fill}) == 1 + 3  # windows in words


# -- edits ------------------------------------------------------------------------------------
SENTENCES = ["The soup was bland, the service was terrible!", "i love the film's food.",
             "not very good ... not bad either", CHINESE]


@pytest.mark.parametrize("text", SENTENCES)
def test_deleting_or_masking_words_leaves_exactly_the_other_words(tiny_text, text):
    """Property: re-encoding an edit gives the original words minus the deleted ones (no
    fused words, nothing split), or one [MASK] per masked word."""
    enc = tiny_text.encode(text)
    words = enc.feature_labels
    rng = np.random.default_rng(0)
    subsets = [[i] for i in range(len(words))] + [
        sorted(rng.choice(len(words), size=k, replace=False).tolist())
        for k in range(2, len(words)) for _ in range(2)]
    for d in subsets:
        edited = tiny_text.edit_words(enc, delete=d)
        assert tiny_text.encode(edited).feature_labels == [w for j, w in enumerate(words) if j not in d], d
        masked = tiny_text.edit_words(enc, mask=d)
        assert tiny_text.encode(masked).feature_labels == [
            "[MASK]" if j in d else w for j, w in enumerate(words)], d


def test_piece_edits_act_on_pieces(tiny_text):
    enc = tiny_text.encode("the films was bland", unit="piece")
    assert tiny_text.edit_tokens(enc, delete=[enc.feature_labels.index("##s")]) == "the film was bland"
    assert tiny_text.edit_words(enc, delete=[1]) == "the was bland"  # word 1 is "films"


@pytest.mark.parametrize("unit", ["word", "piece"])
def test_out_of_range_edits_raise_a_clear_error(tiny_text, unit):
    enc = tiny_text.encode("the soup was bland", unit=unit)
    for bad in ([999], [-1], [len(enc.feature_labels)]):
        with pytest.raises(ExplainerError, match="out of range"):
            tiny_text.edit_tokens(enc, delete=bad)
        with pytest.raises(ExplainerError, match="out of range"):
            tiny_text.edit_tokens(enc, mask=bad)
    with pytest.raises(ExplainerError, match="out of range"):
        tiny_text.edit_words(enc, delete=[4])
    with pytest.raises(ExplainerError, match="integers"):
        tiny_text.edit_words(enc, delete=["1"])


# -- the delete perturbation ------------------------------------------------------------------
def _prob(adapter, text: str, cls: int) -> float:
    return adapter.predict(adapter.encode(text)).probabilities[cls] if text.strip() else float(
        adapter.predict_texts([""])[0, cls])


def test_deletion_curve_is_the_prediction_of_the_edited_texts(tiny_text):
    text = "the soup was bland, and the service was terrible !"
    r = explain(tiny_text, text, methods=["saliency", "occlusion"], use_cache=False,
                metrics=["faithfulness"], metric_params={"random_orders": 5})
    f = r.metrics["faithfulness"]
    assert f["perturbation"] == "delete" and "re-tokenised" in f["perturbation_note"]
    enc = tiny_text.encode(text)
    t = r.target["index"]
    for name, block in f["methods"].items():
        order = np.argsort(-np.asarray(r.attributions[name].scores), kind="stable")
        for step, p in zip(f["steps"], block["deletion"]):
            edited = tiny_text.edit_words(enc, delete=order[:step].tolist())
            assert p == pytest.approx(_prob(tiny_text, edited, t), abs=1e-5)


@pytest.fixture(scope="module")
def sharp_text(tiny_text_dir, tmp_path_factory):
    """The tiny BERT with its head scaled up and centred: random weights give an almost
    constant prediction (p 0.4881-0.4883), so no edit could ever flip it."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from cache.models import hf_text
    from tests.conftest import TINY_VOCAB
    model = AutoModelForSequenceClassification.from_pretrained(tiny_text_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_text_dir)
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(TINY_VOCAB[5:29], size=6)) for _ in range(64)]
    with torch.no_grad():
        model.classifier.weight.mul_(2000.0)
        logits = model(**tok(texts, return_tensors="pt", padding=True)).logits
        margin = float((logits[:, 1] - logits[:, 0]).median())
        model.classifier.bias[1] -= margin  # half of these texts on each side
    d = tmp_path_factory.mktemp("sharp_bert")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return hf_text(str(d))


def test_flip_reports_the_edit_that_was_scored(sharp_text):
    """Flip-equals-apply: re-predicting ``edited`` gives the reported label and
    probability; no flip needs every word; the mask edit carries one [MASK] per word."""
    tiny_text = sharp_text
    texts = ["the soup was bland and the service was terrible !", "i love the good food",
             "a great movie , not bad", "the film was very good and i love it"]
    flips = 0
    for perturbation in ("delete", "mask"):
        for text in texts:
            r = explain(tiny_text, text, methods=["saliency", "integrated_gradients", "occlusion"],
                        use_cache=False, metrics=["flip"], metric_params={"perturbation": perturbation})
            f = r.metrics["flip"]
            n = len(r.features)
            for block in [*f["methods"].values(), f["random"]]:
                if block["count"] is None:
                    assert block["reason"] in ("no flip short of deleting everything",
                                               "removing every feature does not change the class")
                    assert block["edited"] is None
                    continue
                flips += 1
                assert 1 <= block["count"] <= n - 1
                again = tiny_text.predict(tiny_text.encode(block["edited"]))
                assert again.label == block["new_label"] != f["original_label"]
                assert again.probabilities[again.index] == pytest.approx(block["new_probability"], abs=1e-5)
                if perturbation == "mask":
                    assert block["edited"].count("[MASK]") == block["count"]
    assert flips > 0  # the property was exercised


def test_mask_and_baseline_perturbations_and_bad_values(tiny_text, tiny_image, tiny_image_input):
    text = "the soup was bland"
    r = explain(tiny_text, text, methods=["saliency"], use_cache=False, metrics=["flip", "faithfulness"],
                metric_params={"perturbation": "baseline", "random_orders": 3})
    assert r.metrics["flip"]["perturbation"] == "baseline"
    assert all(b["edited"] is None for b in r.metrics["flip"]["methods"].values())
    with pytest.raises(ExplainerError, match="perturbation"):
        explain(tiny_text, text, methods=["saliency"], metrics=["flip"], use_cache=False,
                metric_params={"perturbation": "erase"})
    img = explain(tiny_image, tiny_image_input, methods=["saliency"], use_cache=False,
                  metrics=["faithfulness"], metric_params={"perturbation": "delete", "random_orders": 3})
    f = img.metrics["faithfulness"]
    assert f["perturbation"] == "baseline" and "no meaning for image" in f["perturbation_note"]


# -- ERASER compatibility ---------------------------------------------------------------------
def eraser_reference(model_dir, text: str, scores: np.ndarray, target: int,
                     bins=(0.01, 0.05, 0.1, 0.2, 0.5)) -> tuple[float, float]:
    """DeYoung et al. (2020), written from the paper: for each bin, the rationale r_k is the
    top ceil(bin x n) tokens by score; comprehensiveness = mean_k p(x) - p(x minus r_k),
    sufficiency = mean_k p(x) - p(r_k alone); tokens are deleted from the text. Uses the
    Hugging Face model directly, not the adapter."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()

    def p(words: list[str]) -> float:
        with torch.no_grad():
            logits = model(**tok(" ".join(words), return_tensors="pt")).logits
        return float(torch.softmax(logits, -1)[0, target])

    words = text.split()
    n = len(words)
    p0 = p(words)
    comp, suff = [], []
    for b in bins:
        top = set(np.argsort(-scores, kind="stable")[:math.ceil(b * n)].tolist())
        comp.append(p0 - p([w for i, w in enumerate(words) if i not in top]))
        suff.append(p0 - p([w for i, w in enumerate(words) if i in top]))
    return float(np.mean(comp)), float(np.mean(suff))


@pytest.mark.parametrize("text", ["the soup was bland and the service was terrible !",
                                  "i love the food , the service and the film"])
def test_comprehensiveness_and_sufficiency_match_an_independent_eraser(tiny_text, tiny_text_dir, text):
    r = explain(tiny_text, text, methods=["integrated_gradients", "occlusion"], use_cache=False,
                metrics=["faithfulness"], metric_params={"random_orders": 3})
    f = r.metrics["faithfulness"]
    assert f["perturbation"] == "delete" and len(f["eraser_k"]) == 5
    for name, block in f["methods"].items():
        comp, suff = eraser_reference(tiny_text_dir, text, np.asarray(r.attributions[name].scores),
                                      r.target["index"])
        assert block["comprehensiveness"] == pytest.approx(comp, abs=1e-5)
        assert block["sufficiency"] == pytest.approx(suff, abs=1e-5)


def test_metric_cost_bounds_the_texts_the_delete_perturbation_predicts(tiny_text, monkeypatch):
    from explainers.metrics import compute, metric_costs
    text = "the soup was bland , and the service was terrible ! i love the food"
    enc = tiny_text.encode(text)
    methods = {"saliency": {}, "occlusion": {}}
    expl = explain(tiny_text, enc, methods=list(methods), use_cache=False)
    options = {"random_orders": 30}
    costs = metric_costs(tiny_text, enc, ["faithfulness", "flip"], methods, options)
    seen = []
    original = type(tiny_text).predict_texts

    def counting(self, texts):
        seen.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(type(tiny_text), "predict_texts", counting)
    for name in ("faithfulness", "flip"):
        seen.clear()
        compute(tiny_text, enc, expl, [name], options)
        assert 0 < sum(seen) <= costs[name], name
