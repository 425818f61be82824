"""Seeded sections that cannot interleave across threads.

Captum draws from torch's and numpy's process-wide generators. A per-model lock does not
stop two sessions on different models (or a sanity-check copy) from seeding and drawing
between each other's calls, so every seeded section takes this one process-wide lock.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import numpy as np
import torch

_RNG_LOCK = threading.RLock()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch and numpy, run the block alone, then restore both generators."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with _RNG_LOCK, torch.random.fork_rng(devices=devices):
        state = np.random.get_state()
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)
