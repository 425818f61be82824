"""Every IG setting against a converged reference, word by word, on SST-2 dev.

    python -m bench.adaptive_ig [--n 200] [--dev ../shared/data/sst2/dev.tsv] [--out ig.jsonl]
    python -m bench.adaptive_ig --table ig.jsonl [more.jsonl]   # the summary of finished runs
    python -m bench.adaptive_ig --start 100 --out ig_b.jsonl    # sentences 100.. in a second process

The reference is Gauss-Legendre IG with 512 steps, checked against 1024 steps on every
``--check-every``-th sentence (their per-word difference is printed: the reference is
converged when it is far below the errors measured). Each setting's error on a sentence is ``max_i |s_i - ref_i| / max_i |ref_i|`` over
its words: the per-feature error, never the setting's own stopping test. Settings: fixed
Gauss-Legendre 16 / 24 / 32 / 50 steps, the trapezoid rule at 50, adaptive IG
(``n_steps="auto"``) at rtol 1e-2 and 1e-3, and the old adaptive rule (stop on completeness
alone, rtol 1e-2), replayed with this module's quadrature: the first level whose
``|delta| <= rtol |f(x) - f(b)|``, integrated again with that level as the cap.

Evaluations are gradient points of the path (one forward + backward each); fixed IG also
runs two forward-only passes for its delta (counted: ``n + 2``), adaptive IG gets ``f(x)``
and ``f(b)`` from its path ends. Counts, not timings: the machine's load cannot change them.
Default text model, IG's default baseline (``neutral``), target = the predicted class. One
JSON line per sentence goes to ``--out`` as it finishes; a run resumes from that file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import numpy as np

from explainers import load_model, quadrature
from explainers.engine import run_method
from explainers.methods.base import repeat_for_baselines
from explainers.methods.integrated_gradients import feature_scores

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "dev.tsv"
REFERENCE, CHECK = 512, 1024
FIXED = (16, 24, 32, 50)
AUTO_RTOLS = (1e-2, 1e-3)
OLD_RTOL = 1e-2
#: the accuracy the issue asks of a default: per-word error within 1e-3 of the largest score
GOAL = 1e-3


def read_dev(path: Path, n: int) -> list[str]:
    """The first ``n`` sentences of an SST-2 TSV, read as ``review`` reads it (pandas, with
    header detection: this copy's ``text<TAB>label`` line, or GLUE's ``sentence<TAB>label``,
    is never taken for a sentence)."""
    from explainers.review import InputSource, ModelInfo
    source = InputSource("text", str(path), label_column="none").check()
    items = source.items(ModelInfo("text", ("negative", "positive")))
    return [raw for _, raw, *_ in itertools.islice(items, n)]


def error(scores: np.ndarray, ref: np.ndarray) -> float:
    """Per-feature error relative to the reference's largest score."""
    return float(np.abs(scores - ref).max() / max(np.abs(ref).max(), 1e-12))


def old_rule(model, enc, target: int, rtol: float, stats: dict) -> tuple[np.ndarray, int]:
    """The pre-fix adaptive IG (stop on completeness alone), from a new-rule run's levels:
    its stop is the first level within the tolerance, never after the new rule's (which
    also needs completeness); integrated again with that level's points as the cap."""
    gap, history = stats["history_gap"], stats["history"]
    stop = next((p for p, d in history if abs(d) <= quadrature.tolerance(gap, rtol)), history[-1][0])
    base = model.baselines(enc, ["neutral"])
    run = model.for_run(enc)
    evaluate = quadrature.straight_path(run.forward_fn(enc), repeat_for_baselines(enc, base), base, target,
                                        run.grad_batch_size)
    out = quadrature.integrate(evaluate, 1, rtol=0.0, max_points=stop)  # rtol 0: every level to the cap
    return feature_scores(model, enc, out.integral[0]).numpy().astype(np.float64), stop


def measure(model, sentence: str, check: bool) -> dict:
    """One sentence: every setting's evaluations and per-word error against the reference
    (and, when ``check``, the reference's own difference from :data:`CHECK` steps)."""
    enc = model.encode(sentence)
    target = model.predict(enc).index

    def ig(**p):
        return run_method(model, enc, "integrated_gradients", p, target)

    ref = ig(n_steps=REFERENCE).scores
    row = {"words": enc.n_features, "target": target,
           "reference_check": error(ref, ig(n_steps=CHECK).scores) if check else None, "settings": {}}
    for n in FIXED:
        row["settings"][f"fixed {n}"] = {"evaluations": n + 2, "error": error(ig(n_steps=n).scores, ref)}
    trap = ig(n_steps=50, method="riemann_trapezoid")
    row["settings"]["trapezoid 50"] = {"evaluations": 52, "error": error(trap.scores, ref)}
    for rtol in AUTO_RTOLS:
        a = ig(n_steps="auto", rtol=rtol)
        st = a.delta_stats
        row["settings"][f"auto {rtol:g}"] = {"evaluations": st["n_steps_used"], "error": error(a.scores, ref),
                                             "feature_change": st["feature_change"],
                                             "converged": st["converged"]}
        if rtol == OLD_RTOL:
            scores, stop = old_rule(model, enc, target, rtol, st)
            row["settings"][f"old auto {rtol:g}"] = {"evaluations": stop, "error": error(scores, ref)}
    return row


def table(rows: list[dict]) -> str:
    """The Markdown summary of measured sentences."""
    n = len(rows)
    check = [r["reference_check"] for r in rows if r["reference_check"] is not None]
    lines = [f"{n} sentences ({min(r['words'] for r in rows)}-{max(r['words'] for r in rows)} words, "
             f"median {statistics.median(r['words'] for r in rows):g}); reference GL {REFERENCE} steps, "
             f"against {CHECK} on {len(check)} of them: per-word difference median "
             f"{statistics.median(check):.1e}, max {max(check):.1e}",
             "", f"| setting | evaluations: median (mean, max) | per-word error: median | max | "
                 f"sentences within {GOAL:g} |", "|---|---|---|---|---|"]
    for name in rows[0]["settings"]:
        ev = [r["settings"][name]["evaluations"] for r in rows]
        err = [r["settings"][name]["error"] for r in rows]
        ok = sum(e <= GOAL for e in err)
        lines.append(f"| {name} | {statistics.median(ev):g} ({statistics.mean(ev):.1f}, {max(ev)}) | "
                     f"{statistics.median(err):.1e} | {max(err):.1e} | {ok}/{n} |")
    for name in [s for s in rows[0]["settings"] if s.startswith("auto")]:
        stops = {}
        for r in rows:
            e = r["settings"][name]["evaluations"]
            stops[e] = stops.get(e, 0) + 1
        lines.append(f"\n{name} stopped at: " + ", ".join(f"{p} ({c})" for p, c in sorted(stops.items())))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--dev", type=Path, default=DEV)
    ap.add_argument("--out", type=Path, default=Path("adaptive_ig.jsonl"))
    ap.add_argument("--check-every", type=int, default=10,
                    help=f"check the reference against {CHECK} steps on every k-th sentence")
    ap.add_argument("--start", type=int, default=0, help="skip the sentences before this one")
    ap.add_argument("--table", type=Path, nargs="+", help="summarise these finished runs and exit")
    args = ap.parse_args()
    if args.table:
        by_id = {r["id"]: r for f in args.table for r in map(json.loads, f.read_text().splitlines())}
        print(table([by_id[i] for i in sorted(by_id)]))
        return
    done = ({json.loads(line)["id"] for line in args.out.read_text().splitlines() if line.strip()}
            if args.out.exists() else set())
    model = load_model("text")
    sentences = read_dev(args.dev, args.n)
    start = time.perf_counter()
    with args.out.open("a") as f:
        for i, s in enumerate(sentences):
            if i in done or i < args.start:
                continue
            row = {"id": i, **measure(model, s, i % args.check_every == 0)}
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(f"{i + 1}/{len(sentences)} ({time.perf_counter() - start:.0f} s)", flush=True)
    rows = [json.loads(line) for line in args.out.read_text().splitlines() if line.strip()]
    print(table(rows))


if __name__ == "__main__":
    main()
