"""The numeric precision of the model's passes: one policy, chosen per request.

Policies (:data:`POLICIES`):

* ``"fp32"`` (the default): every pass in float32.
* ``"bf16-forward"``: passes that take no gradient (perturbation methods, faithfulness curves
  and their random control, flip searches, baseline predictions, the prediction itself) run
  under ``torch.autocast(dtype=torch.bfloat16)`` on a device with bf16 units (CUDA, or a CPU
  with AMX-BF16 / AVX512-BF16); a pass that takes a gradient runs without autocast, in
  float32. Logits leave the model as float32, so softmax, sums and every reported score are
  float32. On a CPU without bf16 units the policy runs as ``fp32``: there bf16 is emulated
  and slower (BENCHMARKS.md, "Precision").
* ``"auto"``: ``bf16-forward`` only where this project measured it to be faster and within
  tolerance: CPUs with AMX-BF16 (issue 23: 2.39x on 256 perturbed rows of the default text
  model, class probabilities within 0.021, the same class on 256/256 rows); everywhere else
  ``fp32``: a CPU without bf16 units emulates bf16 (an AVX2 EPYC: 6.5x slower, BENCHMARKS.md);
  AVX512-BF16 without AMX and CUDA have not been timed on this project's models
  (``bench/device_check.py`` does on a GPU), so a speed-up is not assumed there.

Decisions are confirmed in float32 (:mod:`explainers.metrics`): a flip found with bf16
forwards is re-predicted in fp32 before it is reported, and a ``beats_random`` verdict
whose p-value lies within the bf16 noise of alpha (:data:`BF16_PROB_TOLERANCE`) is
recomputed in fp32.

A request sets its policy with :func:`use` (a context variable: each thread, so each
dashboard session, has its own) and the adapters read it in :func:`autocast_for`.
"""

from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path
from typing import Iterator

import torch

from .errors import ExplainerError

POLICIES = ("fp32", "bf16-forward", "auto")
DEFAULT = "fp32"
#: the largest change of a class probability that bf16 forwards are taken to cause: the
#: largest measured on the default models (issue 23: 0.0207 text, 0.0138 image; the bench
#: reports it again, BENCHMARKS.md "Precision"), rounded up. A deletion AOPC is a mean of
#: differences of two such probabilities, so it moves by at most twice this.
BF16_PROB_TOLERANCE = 0.03
#: what runs: the policy after :func:`resolve` ("fp32" or "bf16-forward")
_ACTIVE: contextvars.ContextVar[str] = contextvars.ContextVar("precision", default="fp32")


def cpu_bf16_units() -> dict[str, bool]:
    """Which bf16 units this CPU has: ``{"amx_bf16", "avx512_bf16"}``, from torch's own
    probes where they exist, else from ``/proc/cpuinfo``'s flags."""
    probes = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    found = {}
    for name, probe in probes.items():
        fn = getattr(torch.cpu, probe, None)
        try:
            found[name] = bool(fn()) if callable(fn) else _cpuinfo_flag(name)
        except Exception:  # noqa: BLE001 - a probe that fails says nothing: read the flags
            found[name] = _cpuinfo_flag(name)
    return found


def _cpuinfo_flag(flag: str) -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in line.split() for line in text.splitlines() if line.startswith("flags"))


def has_bf16_units(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 in hardware (so autocast can be faster, not emulated)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return any(cpu_bf16_units().values())
    return False


def check(policy: str | None) -> str:
    """``policy`` (None: :data:`DEFAULT`) if it is one of :data:`POLICIES`."""
    policy = DEFAULT if policy is None else policy
    if policy not in POLICIES:
        raise ExplainerError(f"unknown precision {policy!r}; choose one of {list(POLICIES)}")
    return policy


def resolve(policy: str | None, device: torch.device) -> str:
    """What ``policy`` runs as on ``device``: ``"fp32"`` or ``"bf16-forward"`` (see the
    module docstring for ``"auto"`` and for devices without bf16 units)."""
    policy = check(policy)
    if policy == "fp32":
        return "fp32"
    if policy == "auto":
        return "bf16-forward" if device.type == "cpu" and cpu_bf16_units()["amx_bf16"] else "fp32"
    return "bf16-forward" if has_bf16_units(device) else "fp32"


def active() -> str:
    """The resolved policy of the running request (``"fp32"`` outside :func:`use`)."""
    return _ACTIVE.get()


@contextlib.contextmanager
def use(policy: str | None, device: torch.device, emulate: bool = False) -> Iterator[str]:
    """Run the block under ``policy`` resolved for ``device``; yields what it resolved to.
    ``None`` keeps the policy already in force (``"fp32"`` outside any :func:`use`).
    ``emulate=True`` runs ``bf16-forward`` as asked even on a device without bf16 units
    (slow there, but the same arithmetic: the bench and the tests measure its accuracy on
    any CPU)."""
    if emulate and policy is not None and check(policy) == "bf16-forward":
        resolved = "bf16-forward"
    else:
        resolved = active() if policy is None else resolve(policy, device)
    token = _ACTIVE.set(resolved)
    try:
        yield resolved
    finally:
        _ACTIVE.reset(token)


@contextlib.contextmanager
def fp32() -> Iterator[None]:
    """A block that runs in float32 whatever the request's policy (decisions confirmed in
    fp32: a flip's re-prediction, a verdict near alpha)."""
    token = _ACTIVE.set("fp32")
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def autocast_for(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """The autocast a model pass over ``x`` runs under: bf16 when the request's policy is
    ``bf16-forward`` and the pass takes no gradient (grad disabled, or ``x`` does not require
    one); otherwise none (float32)."""
    grad = torch.is_grad_enabled() and x.requires_grad
    if _ACTIVE.get() != "bf16-forward" or grad:
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, dtype=torch.bfloat16)
