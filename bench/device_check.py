"""One script for a session that has a GPU: ``python -m bench.device_check``.

Checks the CUDA path end to end and prints what to paste into BENCHMARKS.md:
1. every default model loads onto CUDA, frozen;
2. the bf16-autocast forward (``precision="bf16-forward"``) agrees with fp32 (top-1 class),
   and IG under the former CUDA autocast (forward in bf16, backward through it) against fp32
   IG (Spearman rank correlation per modality);
3. the OOM retry path keeps results identical at smaller batches;
4. Grad-CAM (the method the walkthrough times on a GPU in half precision) on the default
   image model: fp32 against bf16 autocast, median seconds and the Spearman rank
   correlation between the two maps (:func:`grad_cam_precision`);
5. the tables of ``bench.precision`` (perturbation methods and metrics under bf16-forward,
   gradient methods under the forced autocast) on the GPU, with ``--sentences`` inputs;
6. then runs ``bench.run`` on the GPU.
On a machine without CUDA it says so, skips every step and exits 0.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings

import numpy as np
import torch
from scipy.stats import spearmanr

from bench.precision import GRADIENT, PERTURBATION, forced_autocast, methods_table, metrics_table
from explainers import load_model, precision, run_method

INPUTS = {"text": "The soup was bland and the service was terrible.", "tabular": 3}


def fp32_forward(adapter, enc, x):
    with torch.autocast("cuda", enabled=False):
        return adapter._logits(x, enc).float()


def grad_cam_precision(adapter, enc, repeats: int = 5, layer: str | None = None) -> dict:
    """Grad-CAM in fp32 and under bf16 autocast on ``adapter``'s device.

    Returns:
        ``{"fp32_s", "bf16_s"}`` (median seconds of ``repeats`` warm runs), ``"speedup"``
        (fp32 / bf16), ``"spearman"`` between the two maps and ``"max_abs_diff"`` relative
        to the fp32 map's maximum.
    """
    device = adapter.device.type
    params = {"layer": layer} if layer else None

    def forward_in(bf16: bool):
        def fwd(x, e):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                return adapter._logits(x, e).float()
        return fwd

    out, maps = {}, {}
    saved = adapter.forward
    try:
        for name, bf16 in (("fp32", False), ("bf16", True)):
            adapter.forward = forward_in(bf16)  # type: ignore[method-assign]
            maps[name] = run_method(adapter, enc, "grad_cam", params).scores.ravel()  # warm-up
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                run_method(adapter, enc, "grad_cam", params)
                if device == "cuda":
                    torch.cuda.synchronize()
                seconds.append(time.perf_counter() - start)
            out[f"{name}_s"] = statistics.median(seconds)
    finally:
        adapter.forward = saved  # type: ignore[method-assign]
    out["speedup"] = out["fp32_s"] / out["bf16_s"]
    out["spearman"] = float(spearmanr(maps["fp32"], maps["bf16"]).statistic)
    out["max_abs_diff"] = float(np.abs(maps["fp32"] - maps["bf16"]).max() / max(np.abs(maps["fp32"]).max(), 1e-12))
    return out


def precision_tables(text, image, sentences: int) -> None:
    """``bench.precision``'s tables on this device (BENCHMARKS.md "Precision")."""
    from bench.adaptive_ig import DEV, read_dev
    from cache.models import IMAGE_GALLERY, gallery_image
    texts = read_dev(DEV, sentences)
    encs, imgs = [text.encode(t) for t in texts], [image.encode(gallery_image(n)) for n in IMAGE_GALLERY]
    for model, inputs in ((text, encs), (image, imgs)):
        print(f"precision, {model.modality}: perturbation methods under bf16-forward ({len(inputs)} inputs)")
        methods_table(model, inputs, PERTURBATION if model is text else ["occlusion", "feature_ablation"],
                      lambda m=model: precision.use("bf16-forward", m.device))
        print(f"precision, {model.modality}: gradient methods, bf16 forward and backward through it")
        methods_table(model, inputs, GRADIENT, lambda m=model: forced_autocast(m))
    print("precision, text: metrics under bf16-forward")
    metrics_table(text, texts)


def main() -> int:
    warnings.filterwarnings("ignore")
    from cache.models import gallery_image
    INPUTS["image"] = gallery_image("chelsea")
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check here (run this on the GPU machine); "
              "skipped: models on CUDA, bf16 vs fp32, batch-size invariance, grad_cam fp32 vs bf16, bench.run")
        return 0
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    ok = True
    for modality, raw in INPUTS.items():
        adapter = load_model(modality)
        on_gpu = all(p.is_cuda for p in adapter.module.parameters())
        frozen = not adapter.module.training and not any(p.requires_grad for p in adapter.module.parameters())
        enc = adapter.encode(raw)
        with torch.no_grad():
            with precision.use("bf16-forward", adapter.device):
                bf16 = adapter.forward(enc.inputs, enc)
            fp32 = fp32_forward(adapter, enc, enc.inputs)
        same_top1 = int(bf16.argmax()) == int(fp32.argmax())
        ig32 = run_method(adapter, enc, "integrated_gradients").scores.ravel()  # fp32: the default
        with forced_autocast(adapter):  # the former CUDA default: bf16 forward, backward through it
            ig = run_method(adapter, enc, "integrated_gradients").scores.ravel()
        small = adapter.grad_batch_size
        adapter.grad_batch_size = 4
        ig32_small = run_method(adapter, enc, "integrated_gradients").scores.ravel()
        adapter.grad_batch_size = small
        rho = spearmanr(ig, ig32).statistic
        batch_same = np.allclose(ig32, ig32_small, rtol=1e-3, atol=1e-5)
        print(f"{modality}: on_gpu={on_gpu} frozen={frozen} top1_bf16==fp32={same_top1} "
              f"IG spearman(bf16, fp32)={rho:.3f} IG batch-size invariant={batch_same} "
              f"max|logit diff|={float((bf16 - fp32).abs().max()):.4f}")
        ok &= on_gpu and frozen and same_top1 and rho > 0.9 and batch_same
    image = load_model("image")
    g = grad_cam_precision(image, image.encode(INPUTS["image"]))
    print(f"grad_cam (conv_head): fp32 {g['fp32_s'] * 1000:.1f} ms, bf16 autocast {g['bf16_s'] * 1000:.1f} ms "
          f"(x{g['speedup']:.2f}), spearman(fp32, bf16 maps)={g['spearman']:.3f}, "
          f"max |diff| / max = {g['max_abs_diff']:.3f}")
    ok &= g["spearman"] > 0.9
    precision_tables(load_model("text"), image, int(sys.argv[sys.argv.index("--sentences") + 1])
                     if "--sentences" in sys.argv else 100)
    from bench import run
    sys.argv = ["bench.run", "--repeats", "5"]
    run.main()
    print("device check:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
