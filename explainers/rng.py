"""Seeded sections that cannot interleave across threads, and that pause while they wait.

Captum draws from torch's and numpy's process-wide generators. A per-model lock does not
stop two sessions on different models (or a sanity-check copy) from seeding and drawing
between each other's calls, so every seeded section takes this one process-wide lock.

A seeded run that held the lock from start to end would make every other seeded request
wait for all of it (a 400-word KernelSHAP run: tens of seconds). So a section *pauses*
while it waits for the model or runs one model batch (:func:`paused`, called by the model
lock and by the per-batch forward, :mod:`explainers.adapters.base`): its generators' states
are saved, the lock is let go, and when the batch is done the lock is taken back and the
states restored. The section then draws exactly the numbers it would have drawn alone,
whatever other threads seeded and drew meanwhile (the model's forward draws nothing: every
cached model is in eval mode). Pausing while waiting for the model lock also keeps the
lock order of the metrics, which take the model lock and then this one: no thread waits for
the model while it holds this lock, so the two never deadlock.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import numpy as np
import torch

_RNG_LOCK = threading.RLock()
#: per thread: how deep in seeded sections it is, and the CUDA devices they fork
_LOCAL = threading.local()


def _depth() -> int:
    return getattr(_LOCAL, "depth", 0)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch and numpy, run the block alone (but for :func:`paused` stretches), then
    restore both generators."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with _RNG_LOCK, torch.random.fork_rng(devices=devices):
        state = np.random.get_state()
        torch.manual_seed(seed)
        np.random.seed(seed)
        outer = getattr(_LOCAL, "devices", ())
        _LOCAL.depth, _LOCAL.devices = _depth() + 1, tuple(sorted(set(outer) | set(devices)))
        try:
            yield
        finally:
            _LOCAL.depth, _LOCAL.devices = _LOCAL.depth - 1, outer
            np.random.set_state(state)


def _states() -> tuple[Any, ...]:
    cuda = [torch.cuda.get_rng_state(d) for d in getattr(_LOCAL, "devices", ())]
    return torch.get_rng_state(), np.random.get_state(), cuda


def _restore(states: tuple[Any, ...]) -> None:
    cpu, numpy_state, cuda = states
    torch.set_rng_state(cpu)
    np.random.set_state(numpy_state)
    for d, s in zip(getattr(_LOCAL, "devices", ()), cuda):
        torch.cuda.set_rng_state(s, d)


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Let other threads seed and draw during the block (a wait for the model, one model
    batch): this thread's seeded sections, if any, give up the RNG lock and resume
    afterwards with their generators exactly where they were. The block must draw no
    random numbers. Outside a seeded section this does nothing."""
    depth = _depth()
    if not depth:
        yield
        return
    states = _states()
    _LOCAL.depth = 0  # a pause within the pause (the model lock's wait) does nothing
    for _ in range(depth):
        _RNG_LOCK.release()
    try:
        yield
    finally:
        for _ in range(depth):
            _RNG_LOCK.acquire()
        _LOCAL.depth = depth
        _restore(states)
