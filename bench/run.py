"""Benchmarks: seconds per method on each default model, as ratios to unavoidable work.

    python -m bench.run [--repeats 5] [--modalities text,image,tabular] [--only floor,estimates]

For each method the "floor" is the work it cannot avoid: one batched forward+backward of as
many inputs as it evaluates with gradients (IG steps, GradientSHAP samples), or one batched
forward of its perturbations (Occlusion, feature ablation). ratio = seconds / floor. The
text target (IG n=50 + GradientSHAP n=20 + Occlusion per token on a 20-token sentence,
all three warm) is printed against 0.6 s. Results go to stdout as a Markdown table.

``--only floor``: the three default methods side by side with their default baselines on a
20-token sentence against the raw floor (one batched forward+backward of all their gradient
rows + one batched forward of all their forward-only rows), a new encoding each time (the
neutral search remembered per length), next to the same with the search forgotten each time
and with ``pad`` baselines, interleaved in one run. ``--only estimates``: the seconds a
panel shows before a run against what the run took, on text of 10 / 60 / 300 words, an
uploaded image and a table row, first from the calibration alone, then refreshed by one run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import torch

from cache.store import AttributionStore
from explainers import explain, load_model, run_method
from explainers.baselines import forget_neutral
from explainers.engine import (COSTS, ESTIMATE_RESOLUTION, check_method, estimate_cost, estimate_metric_seconds,
                               estimate_seconds, grad_share, record_metric_run)

SENTENCE_20 = "The soup was bland, the service was slow, and the dessert was far too sweet for us."
METHODS = ("integrated_gradients", "gradient_shap", "occlusion", "saliency", "input_x_gradient",
           "feature_ablation", "smoothgrad", "kernel_shap", "lime")


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def floor_seconds(adapter, enc, n: int, backward: bool, repeats: int) -> float:
    """One batched forward (+backward) of ``n`` copies of the input."""
    def run():
        x = enc.inputs.expand((n,) + tuple(enc.inputs.shape[1:])).clone()
        if backward:
            x.requires_grad_(True)
            out = adapter.forward(x, enc)[:, 0].sum()
            torch.autograd.grad(out, x)
        else:
            with torch.inference_mode():
                adapter.forward(x, enc)
    return timed(run, repeats)


def examples(adapter, enc, name: str, params: dict) -> tuple[int, bool]:
    method, resolved = check_method(adapter, name, params)
    grad = name in ("integrated_gradients", "gradient_shap", "saliency", "input_x_gradient", "smoothgrad")
    n = {"integrated_gradients": resolved.get("n_steps", 1),
         "gradient_shap": resolved.get("n_samples", 1),
         "smoothgrad": resolved.get("n_samples", 1)}.get(name)
    if n is None:
        n = method.cost(adapter, enc, resolved) if not grad else 1
    return int(n), grad


def bench_model(modality: str, raw, params: dict, repeats: int) -> list[dict]:
    adapter = load_model(modality)
    enc = adapter.encode(raw)
    rows = []
    for name in METHODS:
        p = params.get(name, {})
        secs = timed(lambda: run_method(adapter, enc, name, p), repeats)
        n, grad = examples(adapter, enc, name, p)
        floor = floor_seconds(adapter, enc, n, grad, repeats)
        rows.append({"model": adapter.name, "method": name, "params": p, "examples": n,
                     "seconds": secs, "floor": floor, "ratio": secs / floor})
    return rows


def captum_alone(adapter, enc) -> None:
    """The same three attributions as plain Captum calls on the same forward (no engine)."""
    from captum.attr import GradientShap, IntegratedGradients, Occlusion
    fwd = lambda x: adapter.forward(x, enc)  # noqa: E731
    base = adapter.baseline(enc, "pad")
    target = adapter.predict(enc).index
    IntegratedGradients(fwd).attribute(enc.inputs, base, target=target, n_steps=50,
                                       return_convergence_delta=True)
    GradientShap(fwd).attribute(enc.inputs, base, target=target, n_samples=20,
                                return_convergence_delta=True)
    Occlusion(fwd).attribute(enc.inputs, sliding_window_shapes=(1, enc.inputs.shape[-1]),
                             strides=(1, enc.inputs.shape[-1]), baselines=base, target=target,
                             perturbations_per_eval=64)


def text_target(repeats: int) -> dict:
    adapter = load_model("text")
    enc = adapter.encode(SENTENCE_20)
    methods = ["integrated_gradients", "gradient_shap", "occlusion"]
    params = {"integrated_gradients": {"n_steps": 50}, "gradient_shap": {"n_samples": 20},
              "occlusion": {"window": 1}}
    together = timed(lambda: explain(adapter, enc, methods=methods, params=params, use_cache=False),
                     repeats)
    captum = timed(lambda: captum_alone(adapter, enc), repeats)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        store = AttributionStore(f"{d}/bench.sqlite")
        explain(adapter, enc, methods=methods, params=params, store=store)
        cached = timed(lambda: explain(adapter, enc, methods=methods, params=params, store=store), repeats)
    return {"tokens": int(enc.inputs.shape[1]), "seconds": together, "cached": cached, "captum": captum}


DEFAULTS = ("integrated_gradients", "gradient_shap", "occlusion")


def rows_by_kind(adapter, enc, methods, params: dict) -> tuple[int, int]:
    """Gradient rows and forward-only rows the methods send the model (their estimate split
    by what a counting run of each sees)."""
    grad = fwd = 0.0
    for m in methods:
        n = estimate_cost(adapter, enc, m, params.get(m))
        share = grad_share(adapter, enc, m, params.get(m))
        grad, fwd = grad + n * share, fwd + n * (1 - share)
    return round(grad), round(fwd)


def side_by_side_floor(repeats: int) -> dict:
    """The three default methods on a 20-token sentence, default baselines, against the floor."""
    adapter = load_model("text")
    enc = adapter.encode(SENTENCE_20)
    grad, fwd = rows_by_kind(adapter, enc, DEFAULTS, {})
    pad = {m: {"baselines": ["pad"]} for m in DEFAULTS}

    def floor() -> None:
        x = enc.inputs.expand((grad,) + tuple(enc.inputs.shape[1:])).clone().requires_grad_(True)
        torch.autograd.grad(adapter.forward(x, enc)[:, 0].sum(), x)
        with torch.inference_mode():
            adapter.forward(enc.inputs.expand((fwd,) + tuple(enc.inputs.shape[1:])), enc)

    def cold() -> None:  # the search every time, as before it was remembered per length
        forget_neutral(adapter)
        explain(adapter, SENTENCE_20, methods=list(DEFAULTS), use_cache=False)

    arms = {"floor": floor,
            "default baselines": lambda: explain(adapter, SENTENCE_20, methods=list(DEFAULTS), use_cache=False),
            "default, neutral searched each time": cold,
            "pad baselines": lambda: explain(adapter, SENTENCE_20, methods=list(DEFAULTS), params=pad,
                                             use_cache=False)}
    times: dict[str, list[float]] = {k: [] for k in arms}
    for fn in arms.values():
        fn()  # warm-up
    for _ in range(repeats):  # interleaved: every arm sees the same machine state
        for name, fn in arms.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"tokens": int(enc.inputs.shape[1]), "grad_rows": grad, "forward_rows": fwd, "seconds": med}


def _words(n: int) -> list[str]:
    """Texts of ``n`` words from SST-2 dev sentences joined (two different ones)."""
    from bench.adaptive_ig import DEV, read_dev
    words = " ".join(read_dev(DEV, 400)).split()
    return [" ".join(words[:n]), " ".join(words[n:2 * n])]


def _png(name: str) -> bytes:
    import io

    import skimage.data
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(getattr(skimage.data, name)()).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def agrees(estimate: float, actual: float) -> bool:
    """Within 2x, or both under the resolution a panel shows ("under 0.1 s")."""
    if estimate < ESTIMATE_RESOLUTION and actual < ESTIMATE_RESOLUTION:
        return True
    return 0.5 <= estimate / max(actual, 1e-9) <= 2.0


def estimate_rows():
    """Yields, per case and method: the estimate shown before the first run (calibration only), what
    it took, then the refreshed estimate on a second input and what that took; the metrics
    (faithfulness + flip) on the short texts likewise."""
    from explainers import metrics
    from explainers.metrics import metric_costs
    cases = [("text, 10 words", "text", _words(10)), ("text, 60 words", "text", _words(60)),
             ("text, 300 words", "text", _words(300)),
             ("image, uploaded PNG", "image", [_png("camera"), _png("coins")]),
             ("tabular row", "tabular", [3, 7])]
    for label, modality, inputs in cases:
        adapter = load_model(modality)
        COSTS.forget(adapter)  # a fresh process: nothing measured on this model yet
        encs = [adapter.encode(x) for x in inputs]
        first = {m: estimate_seconds(adapter, encs[0], m) for m in DEFAULTS}  # all shown before any run
        took = {m: run_method(adapter, encs[0], m).seconds for m in DEFAULTS}
        for m in DEFAULTS:
            second = estimate_seconds(adapter, encs[1], m)
            took2 = run_method(adapter, encs[1], m).seconds
            yield {"case": label, "what": m, "first": first[m], "took": took[m], "second": second,
                   "took2": took2}
        if modality == "text" and encs[0].n_features <= 100:
            names = ["faithfulness", "flip"]
            rows = []
            for enc in encs:
                expl = explain(adapter, enc, methods=list(DEFAULTS), use_cache=True)
                params = {m: a.params for m, a in expl.attributions.items()}
                n = sum(metric_costs(adapter, enc, names, params).values())
                est = estimate_metric_seconds(adapter, enc, n)
                t = time.perf_counter()
                metrics.compute(adapter, enc, expl, names, {}, params=params)
                secs = time.perf_counter() - t
                record_metric_run(adapter, enc, n, secs)
                rows.append((est, secs))
            yield {"case": label, "what": "metrics (faithfulness, flip)", "first": rows[0][0],
                   "took": rows[0][1], "second": rows[1][0], "took2": rows[1][1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modalities", default="text,image,tabular")
    parser.add_argument("--only", default="", help="floor, estimates: just those sections")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    from cache.models import gallery_image
    mods = args.modalities.split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, cuda={torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
    only = [x for x in args.only.split(",") if x]
    if "floor" in only:
        f = side_by_side_floor(args.repeats)
        sec = f["seconds"]
        print(f"\nIG + GradientSHAP + Occlusion (defaults), {f['tokens']} tokens; floor = forward+backward "
              f"of {f['grad_rows']} rows + forward of {f['forward_rows']} rows, medians of {args.repeats}:")
        print("\n| | seconds | x floor |\n|---|---|---|")
        for name, v in sec.items():
            print(f"| {name} | {v:.3f} | {v / sec['floor']:.2f} |")
    if "estimates" in only:
        rows = []
        print("\n| case | what | shown first | took | ratio | shown after one run | took | ratio |\n"
              "|---|---|---|---|---|---|---|---|")
        for r in estimate_rows():
            rows.append(r)
            marks = ["" if agrees(e, t) else " (off)" for e, t in ((r["first"], r["took"]), (r["second"], r["took2"]))]
            print(f"| {r['case']} | {r['what']} | {r['first']:.2f} s | {r['took']:.2f} s | "
                  f"{r['first'] / max(r['took'], 1e-9):.2f}{marks[0]} | {r['second']:.2f} s | {r['took2']:.2f} s | "
                  f"{r['second'] / max(r['took2'], 1e-9):.2f}{marks[1]} |", flush=True)
        ok = sum(agrees(r["first"], r["took"]) + agrees(r["second"], r["took2"]) for r in rows)
        print(f"\nwithin 2x (or both under {ESTIMATE_RESOLUTION:g} s): {ok}/{2 * len(rows)}")
    if only:
        return
    if "text" in mods:
        t = text_target(args.repeats)
        print(f"\ntext target: IG n=50 + GradientSHAP n=20 + Occlusion (1 token), {t['tokens']} tokens: "
              f"{t['seconds']:.3f} s warm (target < 0.6 s); plain Captum, same settings: "
              f"{t['captum']:.3f} s (ratio {t['seconds'] / t['captum']:.2f}); "
              f"from the store: {t['cached'] * 1000:.1f} ms")
    inputs = {"text": SENTENCE_20, "image": gallery_image("chelsea"), "tabular": 3}
    print("\n| model | method | params | examples | seconds | floor s | ratio |\n|---|---|---|---|---|---|---|")
    for modality in mods:
        for r in bench_model(modality, inputs[modality], {}, args.repeats if modality != "image" else 1):
            print(f"| {r['model']} | {r['method']} | {r['params'] or 'defaults'} | {r['examples']} | "
                  f"{r['seconds']:.3f} | {r['floor']:.3f} | {r['ratio']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
