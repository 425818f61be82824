"""The "attention is not attribution" pitfall, measured: a review of the first SST-2 dev
sentences with attention (last layer and rollout), attention x gradient, IG, GradientSHAP
and Occlusion on the default text model.

    nice -n 10 python -m bench.attention_pitfall [--file ../shared/data/sst2/dev.tsv] [--limit 100]

Two reviews (``explainers.review.run_review``, what ``python -m explainers review`` runs),
metrics agreement, faithfulness and flip with their defaults, every method at its default
parameters: (1) every method, attention at ``aggregation=last_layer``; (2) attention at
``aggregation=rollout`` alone (faithfulness and flip; its Spearman to IG is computed here
with the agreement metric's own ``rank_agreement`` against IG's scores from review 1, the
same features). ``--part last_layer`` / ``--part rollout`` runs one review and ``--start N`` begins it at
sentence N (so several processes can share the sentences), ``--part table`` only prints the
table from the JSON lines in ``--out-dir``. Torch runs one intra-op thread: on a shared 2-core machine two threads
spin-wait on each other; no count below depends on it.

The table, per method: mean deletion AOPC; inputs flipped and the mean flip count over
those; the share of inputs where the method beats the random control (permutation test,
p <= 0.05); the median effect size; the mean Spearman to IG over the inputs. Only real
sentences are read: the header line is skipped whatever its first column is called.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from explainers import load_model
from explainers.metrics.agreement import rank_agreement
from explainers.review import run_review

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "sst2" / "dev.tsv"
METHODS = ["attention", "attention_x_gradient", "integrated_gradients", "gradient_shap", "occlusion"]
METRICS = ["agreement", "faithfulness", "flip"]


def sentences(path: Path, limit: int) -> list[tuple[int, str]]:
    """The first ``limit`` sentences of a ``sentence<TAB>label`` file, header skipped."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 2 or not parts[-1].strip().isdigit():  # the header (or a stray line)
            continue
        if parts[0].strip():
            out.append((len(out), parts[0].strip()))
        if len(out) == limit:
            break
    return out


def records(out_dir: Path, stem: str) -> list[dict]:
    """The review lines of ``stem*.jsonl`` in ``out_dir`` (one file per ``--start``), one per
    input id (the files grow line by line; an input two runs reached counts once)."""
    seen: dict = {}
    for path in sorted(out_dir.glob(f"{stem}*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a stopped process
                continue
            seen.setdefault(rec["id"], rec)
    return [seen[k] for k in sorted(seen)]


def ids_in(recs: list[dict]) -> set:
    """Ids of the inputs explained without error."""
    return {r["id"] for r in recs if "error" not in r}


def rows(recs: list[dict], name: str | None = None, ig_scores: dict | None = None,
         ids: set | None = None) -> dict[str, dict[str, list]]:
    """Per method: deletion AOPC, flip count (None: no flip), beats random, effect size and
    Spearman to IG, one entry per input. ``name`` renames the attention row; ``ig_scores``
    (``{input id: IG scores}``) gives the Spearman where the review had no IG; ``ids``
    keeps only those inputs (both reviews' tables then cover the same sentences)."""
    per: dict[str, dict[str, list]] = {}
    random: dict[str, list] = {"aopc": [], "flip": []}
    for rec in recs:
        if "error" in rec or (ids is not None and rec["id"] not in ids):
            continue
        m = rec["metrics"]
        scores = {k: v["scores"] for k, v in rec["attributions"].items()}
        ig = scores.get("integrated_gradients") or (ig_scores or {}).get(rec["id"])
        for method in rec["attributions"]:
            d = per.setdefault(name if name and method == "attention" else method,
                               {k: [] for k in ("aopc", "flip", "beats", "effect", "rho")})
            f = m["faithfulness"]["methods"][method]
            d["aopc"].append(f["deletion_aopc"])
            d["beats"].append(bool(f["beats_random"]))
            d["effect"].append(f["effect_size"])
            d["flip"].append(m["flip"]["methods"][method]["count"])
            d["rho"].append(rank_agreement(np.asarray(scores[method]), np.asarray(ig))[0])
        random["aopc"].append(m["faithfulness"]["random"]["deletion_aopc"])
        random["flip"].append(m["flip"]["random"]["count"])
    per["(random control)"] = {"aopc": random["aopc"], "flip": random["flip"]}
    return per


def ig_by_input(recs: list[dict]) -> dict:
    return {r["id"]: r["attributions"]["integrated_gradients"]["scores"] for r in recs if "error" not in r}


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.mean(vals) if vals else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(per: dict[str, dict[str, list]]) -> str:
    lines = ["| method | deletion AOPC | flipped | flip count (mean, flipped) | beats random "
             "| effect (median) | Spearman to IG (mean) |", "|---|---|---|---|---|---|---|"]
    for name, d in per.items():
        flips = [c for c in d["flip"] if c is not None]
        beats = d.get("beats") or []
        effect = [e for e in d.get("effect", []) if e is not None]
        rho = None if name == "integrated_gradients" else _mean(d.get("rho", []))
        cells = [name, _fmt(_mean(d["aopc"]), ".3f"), f"{len(flips)}/{len(d['flip'])}",
                 _fmt(statistics.mean(flips) if flips else None, ".1f"),
                 _fmt(sum(beats) / len(beats) if beats else None, ".0%"),
                 _fmt(statistics.median(effect) if effect else None, ".2f"), _fmt(rho, ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", type=Path, default=DEV)
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--out-dir", type=Path, default=Path("/tmp"))
    p.add_argument("--part", choices=("all", "last_layer", "rollout", "table"), default="all")
    p.add_argument("--start", type=int, default=0,
                   help="begin at this sentence (another process can take the others)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    suffix = f".from{args.start}" if args.start else ""
    first = args.out_dir / f"attention_last_layer{suffix}.jsonl"
    second = args.out_dir / f"attention_rollout{suffix}.jsonl"
    items = sentences(args.file, args.limit)[args.start:]
    start = time.perf_counter()
    if args.part in ("all", "last_layer"):
        run_review(load_model("text"), items, methods=METHODS, params={}, metrics=METRICS,
                   metric_params=None, out=first)
    if args.part in ("all", "rollout"):
        run_review(load_model("text"), items, methods=["attention"],
                   params={"attention": {"aggregation": "rollout"}},
                   metrics=["faithfulness", "flip"], metric_params=None, out=second)
    if args.part in ("last_layer", "rollout"):
        print(f"{args.part}: {len(items)} sentences, {time.perf_counter() - start:.0f} s")
        return
    last, roll = records(args.out_dir, "attention_last_layer"), records(args.out_dir, "attention_rollout")
    both = ids_in(last) & ids_in(roll)
    per = rows(last, "attention (last_layer)", ids=both)
    rollout = rows(roll, "attention (rollout)", ig_by_input(last), ids=both)
    per = {"attention (last_layer)": per.pop("attention (last_layer)"),
           "attention (rollout)": rollout["attention (rollout)"], **per}
    print(f"\n{len(both)} of the first {args.limit} sentences of {args.file.name} "
          f"(those both reviews explained)\n")
    print(table(per))


if __name__ == "__main__":
    main()
