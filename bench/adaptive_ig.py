"""Adaptive IG on SST-2 dev: evaluations used and the share meeting the tolerance, against
fixed n_steps=50 Gauss-Legendre. Counts, not timings, so the machine's load does not matter.

    python -m bench.adaptive_ig [--n 200] [--dev ../shared/data/sst2/dev.tsv] [--rtol 0.01]

Evaluations: gradient points of the path (forward + backward each). Fixed n_steps=50 also
runs two forward-only passes (f(x), f(b)) for its delta; adaptive gets both from its path
ends. Baseline: IG's default (``neutral``).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from explainers import load_model
from explainers.engine import run_method

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "dev.tsv"


def read_dev(path: Path, n: int) -> list[str]:
    """The first ``n`` sentences of an SST-2 TSV, read as ``review`` reads it (pandas, with
    header detection: this copy's ``text<TAB>label`` line, or GLUE's ``sentence<TAB>label``,
    is never taken for a sentence)."""
    import itertools

    from explainers.review import InputSource, ModelInfo
    source = InputSource("text", str(path), label_column="none").check()
    items = source.items(ModelInfo("text", ("negative", "positive")))
    return [raw for _, raw, *_ in itertools.islice(items, n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--dev", type=Path, default=DEV)
    ap.add_argument("--rtol", type=float, default=0.01)
    args = ap.parse_args()
    model = load_model("text")
    sentences = read_dev(args.dev, args.n)
    used, ok_auto, ok_fixed, levels = [], 0, 0, {}
    for s in sentences:
        enc = model.encode(s)
        auto = run_method(model, enc, "integrated_gradients", {"n_steps": "auto", "rtol": args.rtol}, None)
        fixed = run_method(model, enc, "integrated_gradients", {"n_steps": 50}, None)
        st = auto.delta_stats
        used.append(st["n_steps_used"])
        levels[st["n_steps_used"]] = levels.get(st["n_steps_used"], 0) + 1
        gap_a = st["gaps"][0]
        gap_f = fixed.delta_stats["gaps"][0]
        ok_auto += abs(auto.convergence_delta) <= args.rtol * abs(gap_a)
        ok_fixed += abs(fixed.convergence_delta) <= args.rtol * abs(gap_f)
    n = len(sentences)
    print(f"{n} SST-2 dev sentences, baseline neutral, rtol {args.rtol}")
    print(f"adaptive: median evaluations {statistics.median(used):g}, mean {statistics.mean(used):.1f}, "
          f"stopped at {dict(sorted(levels.items()))}; meets tolerance {ok_auto}/{n} ({ok_auto / n:.1%})")
    print(f"fixed n_steps=50 gausslegendre: 50 evaluations + 2 forwards; meets tolerance "
          f"{ok_fixed}/{n} ({ok_fixed / n:.1%})")


if __name__ == "__main__":
    main()
