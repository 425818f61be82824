"""Benchmarks: seconds per method on each default model, as ratios to unavoidable work.

    python -m bench.run [--repeats 5] [--modalities text,image,tabular]

For each method the "floor" is the work it cannot avoid: one batched forward+backward of as
many inputs as it evaluates with gradients (IG steps, GradientSHAP samples), or one batched
forward of its perturbations (Occlusion, feature ablation). ratio = seconds / floor. The
text target (IG n=50 + GradientSHAP n=20 + Occlusion per token on a 20-token sentence,
all three warm) is printed against 0.6 s. Results go to stdout as a Markdown table.
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
from explainers.engine import check_method

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--modalities", default="text,image,tabular")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    from cache.models import gallery_image
    mods = args.modalities.split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, cuda={torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
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
