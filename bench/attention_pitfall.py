"""The "attention is not attribution" pitfall, measured: a review of the first SST-2 dev
sentences with attention (last layer and rollout), attention x gradient, IG, GradientSHAP
and Occlusion on the default text model.

    nice -n 10 python -m bench.attention_pitfall [--file ../shared/data/sst2/dev.tsv] [--limit 100]

Two reviews (``explainers.review.run_review``, what ``python -m explainers review`` runs),
default metrics agreement, faithfulness, flip and default parameters: one with every method
(attention at ``aggregation=last_layer``), one with attention at ``aggregation=rollout`` and
IG (IG again, for its Spearman; served from the attribution store). Their JSON lines go to
``--out-dir``. Prints one markdown table: per method, mean deletion AOPC, flips (inputs
flipped, and the mean count over those), the share of inputs where the method beats the
random control (permutation test, p <= 0.05), the median effect size and the mean Spearman
to IG over the inputs. Only real sentences are read: the header line is skipped whatever
its first column is called.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import warnings
from pathlib import Path

from explainers import load_model
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


def rows(path: Path, rename: dict[str, str] | None = None) -> dict[str, dict[str, list]]:
    """Per method: deletion AOPC, flip count (None: no flip), beats random, effect size and
    Spearman to IG, one entry per input."""
    per: dict[str, dict[str, list]] = {}
    random: dict[str, list] = {"aopc": [], "flip": []}
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if "error" in rec:
            continue
        m = rec["metrics"]
        order = m["agreement"]["methods"]
        ig = order.index("integrated_gradients")
        for name in rec["attributions"]:
            d = per.setdefault((rename or {}).get(name, name), {k: [] for k in
                                                                ("aopc", "flip", "beats", "effect", "rho")})
            f = m["faithfulness"]["methods"][name]
            d["aopc"].append(f["deletion_aopc"])
            d["beats"].append(bool(f["beats_random"]))
            d["effect"].append(f["effect_size"])
            d["flip"].append(m["flip"]["methods"][name]["count"])
            d["rho"].append(m["agreement"]["spearman"][order.index(name)][ig])
        random["aopc"].append(m["faithfulness"]["random"]["deletion_aopc"])
        random["flip"].append(m["flip"]["random"]["count"])
    per["(random control)"] = {"aopc": random["aopc"], "flip": random["flip"]}
    return per


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
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    items = sentences(args.file, args.limit)
    model = load_model("text")
    first, second = args.out_dir / "attention_last_layer.jsonl", args.out_dir / "attention_rollout.jsonl"
    start = time.perf_counter()
    run_review(model, items, methods=METHODS, params={}, metrics=METRICS, metric_params=None,
               out=first)
    run_review(model, items, methods=["attention", "integrated_gradients"],
               params={"attention": {"aggregation": "rollout"}}, metrics=METRICS,
               metric_params=None, out=second)
    per = rows(first, {"attention": "attention (last_layer)"})
    rollout = rows(second, {"attention": "attention (rollout)"})
    per = {"attention (last_layer)": per.pop("attention (last_layer)"),
           "attention (rollout)": rollout["attention (rollout)"], **per}
    print(f"\n{len(items)} sentences from {args.file.name}, "
          f"{time.perf_counter() - start:.0f} s in all\n")
    print(table(per))


if __name__ == "__main__":
    main()
