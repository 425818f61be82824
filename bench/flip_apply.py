"""Flip-equals-apply: does re-predicting the edit a flip reports give the flipped class?

    python -m bench.flip_apply --file ../shared/data/sst2/dev.tsv --limit 100 [--methods a,b]

For each sentence and method, the ``flip`` metric (default settings: words, ``delete``)
reports a flip and the edited text; the edited text is encoded and predicted again, as the
dashboard's "Apply" does, and counted as agreeing when the label is the one reported.
``--legacy`` measures the behaviour before issue 8 instead: word pieces, removal by the
[PAD] embedding (``perturbation=baseline``, ``baseline=pad``, methods on [PAD]), and
"Apply" deleting those pieces from the text. Prints one Markdown row per method.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from explainers import explain, list_methods, load_model

DEFAULT_METHODS = ",".join(list_methods())


def sentences(path: str, limit: int) -> list[str]:
    """The first ``limit`` texts of a TSV, skipping a ``sentence``/``text`` header row."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if lines and lines[0].split("\t")[0].strip().lower() in ("sentence", "text"):
        lines = lines[1:]
    return [line.split("\t")[0].strip() for line in lines if line.strip()][:limit]


def measure(model, texts: list[str], methods: list[str], legacy: bool) -> dict[str, list[int]]:
    """``{method: [flips reported, flips that the re-predicted edit confirms]}``."""
    counts = {m: [0, 0] for m in methods}
    params = {m: {"baselines": ["pad"]} for m in methods if legacy and m in (
        "integrated_gradients", "gradient_shap", "occlusion", "feature_ablation", "kernel_shap", "lime")}
    options = {"perturbation": "baseline", "baseline": "pad"} if legacy else {}
    unit = "piece" if legacy else "word"
    for text in texts:
        r = explain(model, text, methods=methods, params=params, metrics=["flip"],
                    metric_params=options, use_cache=False, unit=unit)
        flip = r.metrics["flip"]
        enc = model.encode(text, unit=unit)
        for m, block in flip["methods"].items():
            if block["count"] is None:
                continue
            counts[m][0] += 1
            edited = block["edited"] if not legacy else model.edit_tokens(enc, delete=block["indices"])
            if edited and model.predict(model.encode(edited)).label == block["new_label"]:
                counts[m][1] += 1
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", required=True)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--methods", default=DEFAULT_METHODS)
    p.add_argument("--legacy", action="store_true")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    model = load_model("text")
    texts = sentences(args.file, args.limit)
    counts = measure(model, texts, [m for m in args.methods.split(",") if m], args.legacy)
    print(f"{len(texts)} sentences, {'legacy (pieces, [PAD] embedding)' if args.legacy else 'words, delete'}")
    print("| method | flips reported | confirmed by re-predicting the edit | share |")
    print("|---|---|---|---|")
    for m, (n, ok) in counts.items():
        print(f"| {m} | {n} | {ok} | {ok / n:.0%} |" if n else f"| {m} | 0 | 0 | - |")


if __name__ == "__main__":
    main()
