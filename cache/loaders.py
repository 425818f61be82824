"""Safe weight loading: the only code in the project that reads checkpoint files.

Pickled checkpoints are read with ``torch.load(weights_only=True)``, which refuses any
object that is not a tensor or a plain container, so a malicious pickle cannot run code.
"""

from __future__ import annotations

import io
import pickle
import re
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


# -- torch.export programs (.pt2) ------------------------------------------------------------
# ``torch.export.load`` is not safe on an untrusted file by itself (checked in torch 2.14):
# weights or constants flagged ``use_pickle`` are read with ``torch.load(weights_only=False)``,
# "opaque" constants with ``pickle.loads``; the sample inputs fall back to
# ``weights_only=False`` when the safe read fails; the pre-2.7 layout reads
# ``serialized_*.pt`` the same way; symbolic shape expressions are parsed with
# ``sympy.sympify`` (which calls ``eval``); ``guards_code`` strings are compiled into Python
# by ``ExportedProgram.module()``; and ``data/aotinductor/`` holds shared libraries that are
# loaded as native code. So the archive is checked before torch reads it: only the files a
# plain exported program has, no pickled payloads, every pickle-format file readable with
# ``weights_only=True`` (so torch's own fallback is never taken), shape expressions made of
# symbol names, numbers and sympy's ``Symbol(...)`` only, no guard code, and every graph node
# an ATen/``operator``/``math`` call.

#: files (below the archive's root folder) a plain exported program consists of
_PT2_FILES = re.compile(
    r"(archive_format|archive_version|byteorder|version|\.data/version|\.data/serialization_id"
    r"|models/[\w.-]+\.json|data/weights/[\w.-]+_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/[\w.-]+_constants_config\.json|data/constants/tensor_\d+"
    r"|data/sample_inputs/[\w.-]+\.pt|extra/[\w.-]+)")
#: tokens allowed in a symbolic shape expression: names, numbers, operators, quoted
#: symbol names; every name must be a symbol (``s0``, ``u3``) or one of these
_SYM_TOKEN = re.compile(r"\s+|[A-Za-z_]\w*|\d+(\.\d+)?|'[a-z]+\d+'|[-+*/%(),<>=!]")
_SYM_NAMES = {"Symbol", "Integer", "Rational", "Float", "positive", "integer", "real", "nonnegative",
              "True", "False", "oo", "Max", "Min", "Mod", "FloorDiv", "CeilDiv", "CleanDiv",
              "ModularIndexing", "PythonMod", "Where", "IntTrueDiv", "FloatTrueDiv", "ToFloat",
              "TruncToInt", "TruncToFloat", "RoundToInt", "FloorToInt", "CeilToInt", "PowByNatural",
              "FloatPow", "Abs"}
_SYM_SYMBOL = re.compile(r"[a-z]+\d+")
#: operator modules a graph node may call: ATen operators (``torch.ops.aten.linear.default``)
#: and Python's ``operator`` / ``math`` functions (symbolic sizes); nothing else
_SAFE_TARGET = re.compile(r"(torch\.ops\.aten\.[\w.]+|_operator\.\w+|math\.\w+)")


def _pt2_refuse(path: Path, why: str) -> ExplainerError:
    return ExplainerError(f"torch.export program refused: {path.name} {why}; loading it could run "
                          f"code. Re-export the model with torch.export.export and torch.export.save")


def _safe_sym_expr(expr: str) -> bool:
    pos = 0
    while pos < len(expr):
        m = _SYM_TOKEN.match(expr, pos)
        if m is None:
            return False
        token = m.group(0)
        if (token[0].isalpha() or token[0] == "_") and token not in _SYM_NAMES \
                and not _SYM_SYMBOL.fullmatch(token):
            return False
        pos = m.end()
    return "__" not in expr


def _walk_json(value, key: str = ""):
    """Every ``(key, value)`` pair of a parsed JSON document, depth first."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from _walk_json(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _walk_json(v, key)


def check_pt2_archive(path: str | Path) -> None:
    """Refuse a ``.pt2`` archive that ``torch.export.load`` could run code from (see the
    comment above); return None for a plain exported program.

    Raises:
        ExplainerError: naming what was found.
    """
    import json
    import zipfile
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ExplainerError(f"not a torch.export program: {path.name} ({e})") from None
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or any("/" not in n for n in names):
            raise ExplainerError(f"not a torch.export program: {path.name} has no single root folder")
        inner = {n: n.split("/", 1)[1] for n in names}
        odd = sorted(rel for rel in inner.values() if not _PT2_FILES.fullmatch(rel))
        if odd:
            raise _pt2_refuse(path, f"holds files a plain exported program does not ({odd[:5]}: "
                                    "pickled state, compiled libraries or another format)")
        if not any(rel.startswith("models/") for rel in inner.values()):
            raise ExplainerError(f"not a torch.export program: {path.name} has no models/ entry "
                                 "(an archive from torch.export.save is expected)")
        for name, rel in inner.items():
            if rel.endswith("_config.json"):
                try:
                    config = json.loads(archive.read(name)).get("config", {})
                except (ValueError, AttributeError):
                    raise _pt2_refuse(path, f"has an unreadable {rel}") from None
                for fqn, meta in config.items():
                    if not isinstance(meta, dict) or meta.get("use_pickle") \
                            or not str(meta.get("path_name", "")).startswith(("weight_", "tensor_")):
                        raise _pt2_refuse(path, f"stores {fqn!r} as a pickle or a Python object")
            elif rel.startswith("data/sample_inputs/"):
                try:
                    torch.load(io.BytesIO(archive.read(name)), map_location="cpu", weights_only=True)
                except Exception:  # noqa: BLE001  (any failure: torch would retry unsafely)
                    raise _pt2_refuse(path, f"has sample inputs ({rel}) that are not plain tensors") from None
            elif rel.startswith("models/"):
                try:
                    program = json.loads(archive.read(name))
                except ValueError:
                    raise _pt2_refuse(path, f"has an unreadable {rel}") from None
                _check_program(path, program)


def _check_program(path: Path, program: dict) -> None:
    """Graph-level checks of one serialized ExportedProgram (see :func:`check_pt2_archive`)."""
    if not isinstance(program, dict):
        raise _pt2_refuse(path, "has a program that is not a JSON object")
    if program.get("guards_code"):
        raise _pt2_refuse(path, "carries guard code (compiled into Python when the program runs)")
    for symbol in (program.get("range_constraints") or {}):
        if not _SYM_SYMBOL.fullmatch(str(symbol)):
            raise _pt2_refuse(path, f"has a shape constraint on {str(symbol)[:60]!r}, not a symbol")
    for key, value in _walk_json(program):
        if key == "expr_str" and not (isinstance(value, str) and _safe_sym_expr(value)):
            raise _pt2_refuse(path, f"has a shape expression that is not plain arithmetic: {str(value)[:80]!r}")
    nodes = (((program.get("graph_module") or {}).get("graph") or {}).get("nodes")) or []
    for node in nodes:
        target = str(node.get("target", "")) if isinstance(node, dict) else ""
        if not _SAFE_TARGET.fullmatch(target):
            raise _pt2_refuse(path, f"calls {target[:80]!r}, which is not an ATen operator")


def load_exported(path: str | Path) -> torch.nn.Module:
    """A ``torch.export`` program (``.pt2``, from ``torch.export.save``) as a callable module,
    after :func:`check_pt2_archive`; its graph is checked again once loaded.

    Raises:
        ExplainerError: for a missing file, an archive that could run code, or one that torch
            cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise ExplainerError(f"model file not found: {path}")
    check_pt2_archive(path)
    try:
        program = torch.export.load(str(path))
        module = program.module()
    except Exception as e:  # torch raises many types for damaged or foreign archives
        raise ExplainerError(f"not a readable torch.export program: {path.name} "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None
    import math
    import operator
    for node in module.graph.nodes:
        if node.op == "call_function" and not (
                isinstance(node.target, torch._ops.OpOverload)
                or getattr(node.target, "__module__", None) in (operator.__name__, "_operator", math.__name__)):
            raise _pt2_refuse(path, f"calls {node.target!r}, which is not an ATen operator")
    return ExportedModule(module, _static_batch(program))


def _static_batch(program) -> int | None:
    """The batch size an exported program was specialised to (exported without a dynamic
    first dimension), or None when its batch dimension is dynamic."""
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs:
            val = node.meta.get("val")
            shape = getattr(val, "shape", None)
            if shape is not None and len(shape) >= 1 and isinstance(shape[0], int):
                return int(shape[0])
            return None
    return None


class ExportedModule(torch.nn.Module):
    """A loaded ``torch.export`` program as an ordinary module.

    The program's module refuses ``train()``/``eval()`` (an exported graph has its mode
    baked in), which every cached model goes through, so this wrapper keeps the flag to
    itself. A program exported for a fixed batch size ``batch`` runs on any batch: rows go
    through in chunks of ``batch``, the last one padded with copies of its first row (the
    padding's outputs dropped). Exporting with ``dynamic_shapes={"x": {0:
    torch.export.Dim("batch")}}`` avoids the chunking.
    """

    def __init__(self, module: torch.nn.Module, batch: int | None = None) -> None:
        super().__init__()
        self.program = module
        self.batch = None if batch is None else int(batch)

    def train(self, mode: bool = True) -> "ExportedModule":
        self.training = bool(mode)  # the graph's own mode is fixed at export
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n = self.batch, x.shape[0]
        if b is None or n == b:
            return self.program(x)
        outs = []
        for start in range(0, n, b):
            chunk = x[start:start + b]
            real = chunk.shape[0]
            if real < b:
                chunk = torch.cat([chunk, chunk[:1].expand(b - real, *chunk.shape[1:])])
            outs.append(self.program(chunk)[:real])
        return torch.cat(outs)
