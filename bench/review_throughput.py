"""Review throughput as a user gets it: the ``review`` command of this tree against the same
command of an older tree (a git worktree), same inputs, same methods and metrics, runs
alternating (after, before, after, ...) so both see the same machine.

    nice -n 10 python -m bench.review_throughput --before /work/wt-before [--n 200] [--rounds 1]

Each run is one ``python -m explainers review`` process (model loading included, no
attribution store): IG + GradientSHAP + Occlusion, metrics agreement + faithfulness + flip,
each tree's own review defaults (its IG setting, its random control, its micro-batch). The
seconds are the process's wall time; the ratio is sentences per minute of this tree over the
older tree's, within one run. It also prints, per tree, the dataset-level verdict where the
tree's lines allow one and the share of inputs whose per-input test beats random, both
read from the lines by this tree's summary code.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.adaptive_ig import DEV
from explainers.review.summary import summarize

ROOT = Path(__file__).resolve().parents[1]
METHODS = "integrated_gradients,gradient_shap,occlusion"
METRICS = "agreement,faithfulness,flip"


def review_once(tree: Path, dev: Path, n: int, out: Path) -> float:
    """One review process in ``tree``; its wall time in seconds."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, "-m", "explainers", "review", "--modality", "text", "--file", str(dev),
           "--limit", str(n), "--methods", METHODS, "--metrics", METRICS, "--no-cache",
           "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def lines(out: Path) -> int:
    with open(out, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip() and "error" not in json.loads(line))


def verdicts(out: Path) -> dict[str, str]:
    """Per method: the dataset-level verdict and the share of inputs whose own test beats
    random, from the review's lines (summarised by this tree's :func:`summarize`, so both
    trees are read the same way)."""
    with open(out, encoding="utf-8") as fh:
        summary = summarize(json.loads(line) for line in fh if line.strip())
    dataset = summary.get("dataset", {}).get("methods", {})
    res = {}
    for m, row in summary.get("methods", {}).items():
        share, ds = row.get("beats_random_share"), dataset.get(m)
        text = f"per-input tests: {share:.0%} beat" if share is not None else "no per-input test"
        if ds and ds.get("p_value") is not None:
            text = (f"dataset-level {'beats' if ds['beats_random'] else 'does not beat'} random "
                    f"(p {ds['p_value']:.2g}); " + text)
        res[m] = text
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True, help="an older worktree of this repository")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1, help="runs per tree (after, before, after, ...)")
    ap.add_argument("--dev", type=Path, default=DEV)
    args = ap.parse_args()
    trees = {"after": ROOT, "before": args.before.resolve()}
    seconds: dict[str, list[float]] = {"after": [], "before": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for arm in ("after", "before"):
                out = Path(tmp) / f"{arm}{r}.jsonl"
                s = review_once(trees[arm], args.dev, args.n, out)
                seconds[arm].append(s)
                print(f"round {r + 1} {arm:6} {s:7.1f} s, {lines(out)} lines, {args.n / s * 60:5.1f} "
                      f"sentences/min", flush=True)
                for m, text in verdicts(out).items():
                    print(f"    {m:22} {text}")
        after, before = (statistics.median(seconds[a]) for a in ("after", "before"))
        print(f"\n{args.n} SST-2 dev sentences; median of {args.rounds}: before {before:.1f} s "
              f"({args.n / before * 60:.1f}/min), after {after:.1f} s ({args.n / after * 60:.1f}/min): "
              f"throughput x{before / after:.2f}")


if __name__ == "__main__":
    main()
