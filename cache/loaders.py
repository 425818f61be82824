"""Safe weight loading: the only code in the project that reads checkpoint files.

Pickled checkpoints are read with ``torch.load(weights_only=True)``, which refuses any
object that is not a tensor or a plain container, so a malicious pickle cannot run code.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from explainers.errors import ExplainerError


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a pickled state dict.

    A checkpoint that nests its weights under ``state_dict`` or ``model`` is unwrapped.

    Raises:
        ExplainerError: if the file is missing, is not a checkpoint, or holds anything but
            tensors (for example a pickle that would run code when loaded).
    """
    path = Path(path)
    if not path.is_file():
        raise ExplainerError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise ExplainerError(f"not a valid safetensors file: {path.name} ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ExplainerError(
            f"checkpoint refused: {path.name} holds objects other than tensors, which could run "
            f"code when loaded ({str(e).splitlines()[0][:160]})") from None
    except Exception as e:  # junk (a text file) makes the unpickler fail in many ways
        raise ExplainerError(f"not a readable PyTorch checkpoint: {path.name} "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ExplainerError(f"checkpoint {path.name} is not a state dict of tensors")
    return obj


def load_torchscript(path: str | Path) -> torch.nn.Module:
    """A TorchScript module (tabular user models). TorchScript archives hold code in
    TorchScript, not Python pickles of arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise ExplainerError(f"model file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated, still the format asked for
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as e:  # torch.jit raises RuntimeError or its own types
        raise ExplainerError(f"not a TorchScript model: {path.name} ({str(e).splitlines()[0][:160]})") from None
