"""Shared fixtures: tiny random-weight models of every modality, and an isolated cache.

Nothing here touches the network: the tiny BERT and its tokenizer are written to a
temporary folder and loaded back through the same code path as a user's local model.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "soup", "was", "bland", "good",
              "bad", "film", "a", "great", "terrible", "movie", "not", "very", ".", ",", "!", "i",
              "it", "and", "##s", "love", "hate", "service", "food", "<", ">", "img", "src", "=", "x"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Every test writes its models and results under a per-session temporary cache."""
    path = tmp_path_factory.getbasetemp() / "cache"
    path.mkdir(exist_ok=True)
    monkeypatch.setenv("ATTRIBUTION_STUDIO_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def tiny_text_dir(tmp_path_factory):
    """A 2-layer, hidden-32 BERT classifier and its tokenizer, saved to a folder."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer
    d = tmp_path_factory.mktemp("tiny_bert")
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(TINY_VOCAB)}, do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(TINY_VOCAB), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=64,
                        num_labels=2, id2label={0: "negative", 1: "positive"},
                        label2id={"negative": 0, "positive": 1})
    BertForSequenceClassification(config).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def tiny_text(tiny_text_dir):
    from cache.models import hf_text
    return hf_text(str(tiny_text_dir))


class TinyCNN(torch.nn.Module):
    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, n_classes)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean(dim=(2, 3)))


@pytest.fixture(scope="session")
def tiny_image():
    from explainers.adapters import ImageAdapter
    torch.manual_seed(0)
    return ImageAdapter("tiny-cnn", TinyCNN(), ["a", "b", "c"], size=32, patch=8)


@pytest.fixture(scope="session")
def tiny_image_input():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)


def tiny_frame(n_rows: int = 64, n_features: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scales = np.logspace(-1, 3, n_features)  # columns on very different scales
    return pd.DataFrame(rng.normal(size=(n_rows, n_features)) * scales,
                        columns=[f"f{i}" for i in range(n_features)])


@pytest.fixture(scope="session")
def tiny_tabular():
    from explainers.adapters import TabularAdapter
    torch.manual_seed(0)
    frame = tiny_frame()
    mlp = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16),
                              torch.nn.Tanh(), torch.nn.Linear(16, 2))
    scale = torch.tensor(frame.std().to_numpy(), dtype=torch.float32)

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mlp = mlp
            self.register_buffer("scale", scale)

        def forward(self, x):
            return self.mlp(x / self.scale)

    return TabularAdapter("tiny-mlp", Scaled(), frame, ["no", "yes"])


@pytest.fixture(scope="session")
def tiny_adapters(tiny_text, tiny_image, tiny_tabular, tiny_image_input):
    """(adapter, raw input) for every modality."""
    return {
        "text": (tiny_text, "the soup was bland and the service was terrible !"),
        "image": (tiny_image, tiny_image_input),
        "tabular": (tiny_tabular, 5),
    }


#: the tiny causal LMs' tokenizer corpus: its BPE merges make words of these sentences
LM_CORPUS = ("Maria was born in Lisbon and studied chemistry in Berlin. Which city was Maria born in?",
             "the soup was bland and the service was terrible", "Tom lives in Oslo. He likes fish.",
             "Paris is the capital of France. Rome is in Italy.")


def tiny_lm_folder(folder, arch: str = "llama", seed: int = 0):
    """A 2-layer random-weight causal LM (Llama or GPT-2) and a byte-level BPE tokenizer
    trained on :data:`LM_CORPUS` (with a chat template), saved as safetensors to ``folder``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                              PreTrainedTokenizerFast)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    bpe.train_from_iterator(list(LM_CORPUS) * 4, trainers.BpeTrainer(
        vocab_size=420, special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tok.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
                         "{% if add_generation_prompt %}<s>assistant\n{% endif %}")
    torch.manual_seed(seed)
    if arch == "llama":  # initializer_range 0.2: log-probabilities that move with the prompt
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=160,
            initializer_range=0.2, bos_token_id=1, eos_token_id=2))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4,
                                           n_positions=160, initializer_range=0.2, bos_token_id=1,
                                           eos_token_id=2))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory):
    return tiny_lm_folder(tmp_path_factory.mktemp("tiny_llama"), "llama")


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_dir):
    """The tiny Llama through the user-model loader (a local folder of safetensors)."""
    from cache.models import causal_lm
    return causal_lm(str(tiny_lm_dir))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    from cache.models import causal_lm
    return causal_lm(str(tiny_lm_folder(tmp_path_factory.mktemp("tiny_gpt2"), "gpt2")))
