"""Model-parameter randomization test (Adebayo et al., *Sanity Checks for Saliency Maps*,
NeurIPS 2018, https://arxiv.org/abs/1810.03292).

An explanation of a model's decision should change when the model's weights are destroyed.
Layers are re-initialized in a cascade from the output side (top layer, then more and more
layers), each method is recomputed on the damaged model, and its scores are compared with
the original ones by Spearman correlation (of absolute and of signed scores). A method
whose scores stay similar after every layer was re-initialized does not explain the model
(Adebayo et al. found this for Guided Backprop; gradient x input methods keep some
similarity through the input factor).

The shared, cached model is never touched: the test runs on a deep copy of the module, in
a shallow copy of the adapter with its own lock.
"""

from __future__ import annotations

import copy
import math
import threading
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..adapters.base import Encoded, ModelAdapter
from ..engine import run_method
from ..registry import get_method
from ..rng import seeded
from .agreement import rank_agreement


def parameter_layers(module: torch.nn.Module, run: Callable[[], Any] | None = None
                     ) -> list[tuple[str, torch.nn.Module]]:
    """The submodules that own parameters, in the order the forward pass calls them.

    With ``run`` (a zero-argument function running one forward pass of ``module``),
    forward hooks record the call order, and modules never called (for example the word
    embeddings of a text model fed ``inputs_embeds``) are left out. Without it, or when
    hooks are unsupported (TorchScript), registration order is used.
    """
    owners = [(name, m) for name, m in module.named_modules()
              if any(True for _ in m.parameters(recurse=False))]
    if run is None:
        return owners
    seen: dict[int, int] = {}
    handles = []

    def record(i: int) -> Callable:
        def hook(mod, inp, out) -> None:  # must return None, or it would replace the output
            seen.setdefault(i, len(seen))
        return hook

    try:
        for i, (_, m) in enumerate(owners):
            handles.append(m.register_forward_hook(record(i)))
        with torch.no_grad():
            run()
    except Exception:  # TorchScript modules refuse hooks; fall back to registration order
        return owners
    finally:
        for h in handles:
            h.remove()
    if not seen:
        return owners
    return [owners[i] for i in sorted(seen, key=seen.get)]


def cascade_stages(n_layers: int, n_stages: int) -> list[int]:
    """Cumulative numbers of top layers randomized at each stage.

    Stage 1 re-initializes only the output layer (with a single stage, all of them); the
    last stage re-initializes all ``n_layers``; stages in between are evenly spaced. Fewer
    stages when there are fewer layers than stages.
    """
    if n_layers <= 0:
        return []
    if n_stages <= 1:
        return [n_layers]
    counts = [1 + int(round((n_layers - 1) * i / (n_stages - 1))) for i in range(n_stages)]
    return sorted(set(counts))


def reinitialize(module: torch.nn.Module) -> None:
    """Re-initialize ``module``'s own parameters (uses the global torch RNG).

    ``reset_parameters()`` when the module has one (the layer's own initialisation: Kaiming
    uniform for linear and convolution layers, ones and zeros for normalization layers);
    otherwise Gaussian noise with each tensor's original standard deviation.
    """
    with torch.no_grad():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            try:
                reset()
                return
            except Exception:  # some wrappers define it but cannot run it
                pass
        for p in module.parameters(recurse=False):
            std = float(p.float().std()) if p.numel() > 1 else 0.0
            p.copy_(torch.randn_like(p) * (std if std > 0 else 0.02))


def model_independent(spearman_abs: Sequence[float | None], threshold: float = 0.5) -> bool:
    """True when the similarity to the original after the last (full) randomization stage
    is still above ``threshold``: the method did not notice the model was destroyed."""
    if not spearman_abs:
        return False
    last = spearman_abs[-1]
    return bool(last is not None and math.isfinite(last) and last > threshold)


#: shown where a method that carries an (input - baseline) factor is flagged
INPUT_FACTOR_CAVEAT = (
    "This method's scores are multiplied by (input - baseline), or come from moving features "
    "to a baseline, so a large part of the map is the input's own distance from the baseline "
    "and survives any damage to the weights. Adebayo et al. (2018) discuss this input "
    "factor: a high similarity after randomization does not by itself prove the method "
    "ignores the model, but it does mean the map cannot be read as the model's reasoning "
    "alone. Compare with Saliency (no input factor), or look at the signed rank "
    "correlation, which the input factor affects less.")


def caveat(name: str, independent: bool) -> str | None:
    """:data:`INPUT_FACTOR_CAVEAT` for a flagged method with an input factor, else None."""
    if not independent:
        return None
    try:
        method = get_method(name)
    except Exception:  # an unregistered name: no capability flags to read
        return None
    return INPUT_FACTOR_CAVEAT if getattr(method, "input_factor", False) else None


def randomized_copy(adapter: ModelAdapter) -> ModelAdapter:
    """A shallow copy of ``adapter`` around a deep copy of its module, with its own lock.

    The original module, and so the model shared across sessions, stays untouched.
    """
    with adapter.lock:
        module = copy.deepcopy(adapter.module)
    clone = copy.copy(adapter)
    clone.module = module
    clone.lock = threading.RLock()
    clone.warnings = list(adapter.warnings)
    clone._fingerprint = "sanity-check-copy"  # never stored; saves hashing the weights
    return clone


def _similarity(original: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    return rank_agreement(np.abs(original), np.abs(new))[0], rank_agreement(original, new)[0]


def sanity(adapter: ModelAdapter, enc: Encoded, target: int, original: dict[str, np.ndarray],
           methods: dict[str, dict], n_stages: int = 3, threshold: float = 0.5, seed: int = 0,
           progress: Callable[[float], None] | None = None) -> dict:
    """The ``sanity`` block of the metrics JSON.

    Args:
        original: ``{method: per-feature scores}`` on the intact model.
        methods: ``{method: parameters it ran with}``, registered methods only.
        n_stages: cascade stages (see :func:`cascade_stages`).
        threshold: flag level for :func:`model_independent`.
        seed: seed of the re-initialization.

    Returns:
        ``{"stages": [label per stage], "methods": {m: {"spearman_abs", "spearman",
        "independent_of_model", "caveat"}}, "threshold"}``; lists hold one value per stage.
        ``caveat`` is a text for the user where a flagged method has an input factor
        (:data:`INPUT_FACTOR_CAVEAT`), else None.
    """
    clone = randomized_copy(adapter)
    layers = parameter_layers(clone.module, lambda: clone.forward(enc.inputs, enc))
    top_first = list(reversed(layers))
    counts = cascade_stages(len(top_first), n_stages)
    result = {name: {"spearman_abs": [], "spearman": []} for name in methods}
    labels = []
    done = 0
    total = max(1, len(counts) * max(1, len(methods)))
    randomized = 0
    for stage, count in enumerate(counts):
        # seed only the re-initialisation: the method runs take their own seeded sections
        with clone.lock, seeded(seed + stage, enc.inputs.device):
            for _, layer in top_first[randomized:count]:
                reinitialize(layer)
        randomized = count
        deepest = top_first[count - 1][0] or "(root)"
        labels.append(f"{deepest} ({count}/{len(top_first)} layers)" if count == 1
                      else f"{deepest} and above ({count}/{len(top_first)} layers)")
        for name, params in methods.items():
            a = run_method(clone, enc, name, params, target, store=None)
            s_abs, s = _similarity(original[name], clone.group_scores(a.scores, enc))
            result[name]["spearman_abs"].append(s_abs)
            result[name]["spearman"].append(s)
            done += 1
            if progress:
                progress(done / total)
    for name in result:
        flagged = model_independent(result[name]["spearman_abs"], threshold)
        result[name]["independent_of_model"] = flagged
        result[name]["caveat"] = caveat(name, flagged)
    return {"stages": labels, "methods": result, "threshold": threshold}
