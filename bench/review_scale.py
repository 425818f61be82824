"""Review throughput: sentences per minute on SST-2 dev, one at a time vs batched across
inputs vs batched with adaptive IG vs the same on Ray with 2 local workers (IG +
GradientSHAP + Occlusion, metrics agreement, faithfulness and flip, no attribution store).

    nice -n 10 python -m bench.review_scale [--n 200] [--batch 16] [--ray-workers 2] [--dev ../shared/data/sst2/dev.tsv]

The Ray row is ``run_review(..., engine="ray")``: the review driver, Ray started locally
(its start-up and the workers' model loading are inside the time, and reported apart), each
worker pooling its micro-batches with adaptive IG, the review default. Its model calls
happen in the workers, so it has no forward count.

All rows run in one process on the same model and device (CUDA when present, so on a GPU
machine the same rows are the GPU's batched vs one-at-a-time figures). A warm-up sentence
runs first. Each row also reports how far its scores are from the one-at-a-time run (the
batched path must give the same results; adaptive IG differs by its own integration error).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from bench.adaptive_ig import DEV, read_dev
from explainers import load_model
from explainers.review import REVIEW_DEFAULT_PARAMS, review_chunk
from explainers.review import review_one

METHODS = ["integrated_gradients", "gradient_shap", "occlusion"]
METRICS = ["agreement", "faithfulness", "flip"]


def one_at_a_time(model, items, params) -> list[dict]:
    return [review_one(model, i, s, METHODS, params, METRICS, None, use_cache=False) for i, s in items]


def batched(model, items, params, batch: int) -> list[dict]:
    out = []
    for start in range(0, len(items), batch):
        out += review_chunk(model, items[start:start + batch], METHODS, params, METRICS, None,
                            use_cache=False)
    return out


def on_ray(items, workers: int, batch: int) -> tuple[list[dict], float]:
    """The review on Ray (``workers`` local actors, started and stopped inside); its lines in
    input order."""
    from explainers.review import ModelSpec, run_review
    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as quiet:
        out = os.path.join(tmp, "ray.jsonl")
        run_review(ModelSpec("text"), items, METHODS, None, METRICS, out=out, use_cache=False, log=quiet,
                   engine="ray", workers=workers, batch_size=batch)
        with open(out, encoding="utf-8") as fh:
            lines = [json.loads(line) for line in fh]
    order = {ident: i for i, (ident, _) in enumerate(items)}
    return sorted(lines, key=lambda r: order[r["id"]])


def max_diff(a: list[dict], b: list[dict], method: str) -> float:
    worst = 0.0
    for x, y in zip(a, b):
        if "error" in x or "error" in y:
            continue
        s, t = (np.asarray(r["attributions"][method]["scores"]) for r in (x, y))
        worst = max(worst, float(np.abs(s - t).max() / max(1e-9, np.abs(t).max())))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16, help="inputs per micro-batch")
    ap.add_argument("--ray-workers", type=int, default=2, help="0: no Ray row")
    ap.add_argument("--dev", default=str(DEV))
    args = ap.parse_args()
    from pathlib import Path
    sentences = read_dev(Path(args.dev), args.n)
    items = list(enumerate(sentences))
    model = load_model("text")
    review_one(model, -1, "A warm-up sentence.", METHODS, None, METRICS, None, use_cache=False)
    rows = []
    base = None
    calls: list[int] = []  # rows of each forward of the model: a count the machine's load cannot change
    hook = model.module.register_forward_pre_hook(
        lambda _m, args, kwargs: calls.append(int((kwargs.get("inputs_embeds") if kwargs.get("inputs_embeds")
                                                   is not None else args[0]).shape[0])), with_kwargs=True)
    paths = [("one at a time (n_steps=50)", lambda: one_at_a_time(model, items, None)),
             ("batched (n_steps=50)", lambda: batched(model, items, None, args.batch)),
             ("batched + adaptive IG", lambda: batched(model, items, REVIEW_DEFAULT_PARAMS, args.batch))]
    if args.ray_workers:
        paths.append((f"Ray, {args.ray_workers} workers, + adaptive IG",
                      lambda: on_ray(items, args.ray_workers, args.batch)))
    for name, run in paths:
        calls.clear()
        start = time.perf_counter()
        recs = run()
        seconds = time.perf_counter() - start
        n_calls, n_rows = len(calls), sum(calls)
        base = recs if base is None else base
        errors = sum("error" in r for r in recs)
        rows.append((name, seconds, len(items) / seconds * 60, errors, n_calls, n_rows / max(1, n_calls),
                     max_diff(recs, base, "integrated_gradients"), max_diff(recs, base, "occlusion")))
    hook.remove()
    print(f"{len(items)} SST-2 dev sentences on {model.device.type}, batch {args.batch}, "
          f"methods {', '.join(METHODS)}, metrics {', '.join(METRICS)}")
    print(f"{'path':36} {'seconds':>8} {'sent/min':>9} {'x':>6} {'errors':>6} {'forwards':>9} "
          f"{'rows/fwd':>9} {'IG diff':>9} {'occ diff':>9}")
    for name, seconds, rate, errors, n_calls, per, ig, occ in rows:
        fwd = f"{n_calls:9d} {per:9.1f}" if n_calls else f"{'-':>9} {'-':>9}"  # Ray: in the workers
        print(f"{name:36} {seconds:8.1f} {rate:9.1f} {rate / rows[0][2]:6.2f} {errors:6d} {fwd} "
              f"{ig:9.1e} {occ:9.1e}")
    print("forwards: calls of the model (each a batch of rows/fwd inputs), load-independent")
    print("diff: largest |score - one-at-a-time score| / max |one-at-a-time score| over the sentences")


if __name__ == "__main__":
    main()
