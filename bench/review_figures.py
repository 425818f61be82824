"""Figures from a review's JSON lines that the summary table does not show.

    python -m explainers review --modality text --file dev.tsv --limit 100 --out review.jsonl
    python -m bench.review_figures review.jsonl [--no-apply]

Prints, per method: the summary table row; the flip-equals-apply share (each reported
``edited`` text encoded and predicted again, as "Apply flip" does); the completeness error
``|convergence_delta| / max(|f(x) - f(b)|, 0.1)`` (mean, median, max, share above 5 %);
and the median permutation-test p-value.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import warnings

from explainers.review import slim, summarize, summary_table
from explainers.metrics.stability import MIN_REFERENCE


def relative_completeness(attr: dict) -> float | None:
    """``|delta| / max(|sum - delta|, 0.1)``: the completeness error relative to
    f(x) - f(baseline) (for GradientSHAP: minus the mean over its baselines)."""
    delta = attr.get("convergence_delta")
    if delta is None:
        return None
    gap = sum(attr["scores"]) - delta
    return abs(delta) / max(abs(gap), MIN_REFERENCE)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("jsonl")
    p.add_argument("--no-apply", action="store_true", help="skip re-predicting the edits")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    records = [json.loads(line) for line in open(args.jsonl, encoding="utf-8") if line.strip()]
    ok = [r for r in records if "error" not in r]
    print(summary_table(summarize(slim(r) for r in records)))
    model = None
    if not args.no_apply:
        from explainers import load_model
        model = load_model("text")
    methods = list(ok[0]["attributions"]) if ok else []
    print("\n| method | flips | apply confirms | completeness error mean / median / max | > 5 % | median p |")
    print("|---|---|---|---|---|---|")
    for m in methods:
        flips = confirmed = 0
        for r in ok:
            block = (r.get("metrics", {}).get("flip", {}).get("methods", {}) or {}).get(m) or {}
            if block.get("count") is None:
                continue
            flips += 1
            if model is not None and block.get("edited"):
                again = model.predict(model.encode(block["edited"]))
                confirmed += again.label == block["new_label"]
        rel = [v for v in (relative_completeness(r["attributions"][m]) for r in ok) if v is not None]
        ps = [r["metrics"]["faithfulness"]["methods"][m]["p_value"] for r in ok
              if "faithfulness" in r.get("metrics", {})]
        ps = [v for v in ps if v is not None and math.isfinite(v)]
        comp = (f"{statistics.mean(rel):.1%} / {statistics.median(rel):.1%} / {max(rel):.0%}"
                if rel else "-")
        over = f"{sum(v > 0.05 for v in rel)}/{len(rel)}" if rel else "-"
        apply = f"{confirmed}/{flips}" if model is not None else "-"
        med_p = f"{statistics.median(ps):.3f}" if ps else "-"
        print(f"| {m} | {flips}/{len(ok)} | {apply} | {comp} | {over} | {med_p} |")


if __name__ == "__main__":
    main()
