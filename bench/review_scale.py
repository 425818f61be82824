"""Review throughput: sentences per minute on SST-2 dev, one at a time vs batched across
inputs vs batched with adaptive IG vs the same on Ray with 2 local workers (IG +
GradientSHAP + Occlusion, metrics agreement, faithfulness and flip, no attribution store).

    nice -n 10 python -m bench.review_scale [--n 200] [--batch 16] [--ray-workers 2] [--dev ../shared/data/sst2/dev.tsv]
    nice -n 10 python -m bench.review_scale --control [--n 200] [--batch 16]

The Ray row is ``run_review(..., engine="ray")``: the review driver, Ray started locally
(its start-up and the workers' model loading are inside the time, and reported apart), each
worker pooling its micro-batches with adaptive IG, the review default. Its model calls
happen in the workers, so it has no forward count.

``--control`` (issue 18) measures instead what the random control costs a review, with IG
at ``n_steps=auto`` and at ``n_steps=50``: per micro-batch, interleaved in one process, the
attributions alone (no metrics), the review's default metrics (``REVIEW_METRIC_OPTIONS``: 3
random orders per input, dataset-level test) and the old per-input control (100 orders, all
drawn). It prints rows at the model's forward (the neutral baseline's search apart) and
seconds, their ratios to the attributions alone, and per method the dataset-level verdict
next to the 100-order per-input test's majority verdict.

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


def control(model, items, batch: int) -> None:
    """The ``--control`` comparison (see the module docstring)."""
    from explainers import baselines
    from explainers.metrics.common import review_metric_options
    from explainers.review import Summary, slim
    from explainers.review.summary import summary_table

    rows = {"all": 0, "search": 0}
    in_search = [False]

    def hook(_m, args, kwargs):
        x = kwargs.get("inputs_embeds") if kwargs.get("inputs_embeds") is not None else args[0]
        rows["search" if in_search[0] else "all"] += int(x.shape[0])

    search = baselines.neutral_search

    def counted_search(*a, **k):
        in_search[0] = True
        try:
            return search(*a, **k)
        finally:
            in_search[0] = False

    baselines.neutral_search = counted_search  # the bench counts the search's rows apart
    handle = model.module.register_forward_pre_hook(hook, with_kwargs=True)
    arms = []
    for ig, params in (("auto", REVIEW_DEFAULT_PARAMS), ("50", {"integrated_gradients": {"n_steps": 50}})):
        arms += [(ig, "attributions alone", params, [], None),
                 (ig, "review default metrics", params, METRICS, review_metric_options(None)),
                 (ig, "old control (100 orders)", params, METRICS,
                  review_metric_options({"random_orders": 100, "sequential": False}))]
    stats = {a[:2]: {"seconds": 0.0, "rows": 0, "search": 0, "summary": Summary()} for a in arms}
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        for ig, name, params, metrics, options in arms:
            st = stats[(ig, name)]
            rows["all"] = rows["search"] = 0
            t = time.perf_counter()
            recs = review_chunk(model, chunk, METHODS, params, metrics, options, use_cache=False)
            st["seconds"] += time.perf_counter() - t
            st["rows"] += rows["all"]
            st["search"] += rows["search"]
            for r in recs:
                st["summary"].add(slim(r))
        print(f"{start + len(chunk)}/{len(items)}", flush=True, end="\r")
    handle.remove()
    baselines.neutral_search = search
    n = len(items)
    print(f"\n{n} SST-2 dev sentences, batch {batch}, methods {', '.join(METHODS)}, metrics "
          f"{', '.join(METRICS)}; rows per sentence at the model's forward (+ the neutral search's)")
    print(f"{'IG':5} {'arm':26} {'rows':>7} {'+search':>8} {'rows x':>7} {'x w/o search':>12} {'seconds':>8} "
          f"{'sent/min':>9} {'time x':>7}")
    for ig, name, *_ in arms:
        st, base = stats[(ig, name)], stats[(ig, "attributions alone")]
        total, base_total = st["rows"] + st["search"], base["rows"] + base["search"]
        print(f"{ig:5} {name:26} {st['rows'] / n:7.1f} {st['search'] / n:8.1f} {total / base_total:7.2f} "
              f"{st['rows'] / base['rows']:12.2f} {st['seconds']:8.1f} {n / st['seconds'] * 60:9.1f} "
              f"{st['seconds'] / base['seconds']:7.2f}")
    for ig in ("auto", "50"):
        new = stats[(ig, "review default metrics")]["summary"].result()
        old = stats[(ig, "old control (100 orders)")]["summary"].result()
        speed = stats[(ig, "old control (100 orders)")]["seconds"] / stats[(ig, "review default metrics")]["seconds"]
        print(f"\nIG n_steps={ig}: review default vs old control, throughput x{speed:.2f}")
        for m in METHODS:
            ds = new["dataset"]["methods"][m]
            share = old["methods"][m]["beats_random_share"]
            print(f"  {m:22} dataset-level: {'beats' if ds['beats_random'] else 'does not beat'} random "
                  f"(p {ds['p_value']:.2g}, mean diff {ds['mean_difference']:.3f}, r {ds['effect_size']:.2f}); "
                  f"100-order per-input tests: {share:.0%} beat -> majority "
                  f"{'beats' if share > 0.5 else 'does not beat'}")
        print(summary_table(new))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16, help="inputs per micro-batch")
    ap.add_argument("--ray-workers", type=int, default=2, help="0: no Ray row")
    ap.add_argument("--dev", default=str(DEV))
    ap.add_argument("--control", action="store_true", help="the random control's cost (issue 18)")
    args = ap.parse_args()
    from pathlib import Path
    sentences = read_dev(Path(args.dev), args.n)
    items = list(enumerate(sentences))
    model = load_model("text")
    review_one(model, -1, "A warm-up sentence.", METHODS, None, METRICS, None, use_cache=False)
    if args.control:
        return control(model, items, args.batch)
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
