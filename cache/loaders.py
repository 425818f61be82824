"""Safe weight loading: the only code in the project that reads checkpoint files.

Pickled checkpoints are read with ``torch.load(weights_only=True)``, which refuses any
object that is not a tensor or a plain container, so a malicious pickle cannot run code.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import keyword
import math
import operator
import pickle
import re
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import torch

from explainers.errors import ExplainerError


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (an archive: its code as well as its
    weights; the cache keys of loaded models)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def first_line(error: BaseException) -> str:
    """``Type: the message's first line`` (at most 200 characters), for one-line errors."""
    text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


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
# ``torch.export.load`` is not safe on an untrusted file by itself (read from torch 2.14's
# source; ``tests/unit/test_safe_model_files.py`` and ``test_pt2_hardening.py`` show each
# route with a crafted file):
# - pickles: weights or constants flagged ``use_pickle`` are read with
#   ``torch.load(weights_only=False)``, "opaque" constants with ``pickle.loads``, sample
#   inputs fall back to ``weights_only=False``, the pre-2.7 layout reads ``serialized_*.pt``;
# - source code: torch writes Python source and ``exec``s it. FX's code generator pastes
#   node and placeholder names (set raw by the deserializer), ``forward_arg_names``, the
#   input spec's keyword names and ``getattr(self, "<part>")`` for every part of a
#   parameter, buffer or constant name into ``forward``; ``guards_code`` (and guards built
#   from the sample inputs) is compiled into a ``_guards_fn``; shape expressions go through
#   ``sympy.sympify``, an ``eval``;
# - native code: ``data/aotinductor/`` holds shared libraries;
# - resources: entries are inflated whole in memory (a small zip can hold gigabytes), a
#   zero-byte weight is allocated with ``torch.zeros`` at its declared size, and sympy
#   evaluates ``9**9**9**9`` eagerly;
# - run time: ATen's ``from_file`` maps (and creates) a file named by a string argument,
#   and ``operator.attrgetter``/``methodcaller`` would reach any Python object.
# So the archive is checked, and torch never reads the user's file: it reads a copy we write
# from the checked entries (re-serialised JSON, tensor bytes read in bounded chunks, empty
# sample inputs so no pickle is read and no guard function is generated, no extra files).
# Every name torch could paste into source is a plain identifier (a dotted path of them for
# attribute names), every expression passes an allow-list grammar, every node calls an ATen
# operator or a symbolic-size operator, and sizes are bounded before anything is inflated.

#: the largest tensor payload (weights, constants and zero-filled tensors together), bytes
PT2_MAX_TENSOR_BYTES = 1 << 30
#: the largest JSON entry (the program, a weights or constants config), bytes
PT2_MAX_JSON_BYTES = 16 << 20
#: the largest marker entry (``archive_format``, ``version``, ``byteorder``...), bytes
PT2_MAX_MARKER_BYTES = 64
#: the most entries an archive may list (each costs memory before any check can run)
PT2_MAX_ENTRIES = 100_000
#: the deepest nesting of a JSON document (a plain program nests about 12 levels)
PT2_MAX_JSON_DEPTH = 64
#: the longest symbolic shape expression, characters, and the most terms in one
PT2_MAX_EXPR_CHARS = 2000
PT2_MAX_EXPR_TERMS = 200
#: how much of an entry is read at a time
_PT2_CHUNK = 1 << 20
#: the entries (below the archive's root folder) a plain exported program consists of
_PT2_MARKERS = ("archive_format", "archive_version", "byteorder", "version", ".data/version",
                ".data/serialization_id")
_PT2_PROGRAM = "models/model.json"  # torch.export.load returns the program named "model"
_PT2_WEIGHTS_CONFIG = "data/weights/model_weights_config.json"
_PT2_CONSTANTS_CONFIG = "data/constants/model_constants_config.json"
_PT2_SAMPLE_INPUTS = "data/sample_inputs/model.pt"
_PT2_FILES = re.compile(r"(archive_format|archive_version|byteorder|version|\.data/version"
                        r"|\.data/serialization_id|models/model\.json"
                        r"|data/weights/model_weights_config\.json|data/weights/weight_\d{1,9}"
                        r"|data/constants/model_constants_config\.json|data/constants/tensor_\d{1,9}"
                        r"|data/sample_inputs/model\.pt|extra/[A-Za-z0-9_.-]+)")
#: what a marker entry may hold ("pt2", "0", "little", "6\n", a decimal id)
_PT2_MARKER_TEXT = re.compile(rb"[A-Za-z0-9_.]*\n?")
#: a Python identifier in ASCII (non-ASCII identifiers are NFKC-normalised by Python, so two
#: different names could become one variable)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: the symbols torch.export writes: sizes (s0), unbacked ints (u0), floats (zf0, zuf0)
_SYM_SYMBOL = re.compile(r"(s|u|zf|zuf)\d{1,9}")
#: symbolic-size operators a graph may call: torch's own list less ``pow`` and ``lshift``
#: (``1 << n`` and ``n ** n`` grow without bound); pre- and post-load checks share it
_SYM_CALLS = (operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv,
              operator.mod, operator.neg, operator.pos, operator.eq, operator.ne, operator.lt,
              operator.le, operator.gt, operator.ge, operator.and_, operator.or_, operator.rshift,
              math.trunc, torch.sym_not, torch.sym_int, torch.sym_float, torch.sym_ite,
              torch.sym_max, torch.sym_min, torch.sym_sqrt)
_SYM_TARGETS = frozenset(f"{f.__module__}.{f.__name__}" for f in _SYM_CALLS)
_ATEN_TARGET = re.compile(r"torch\.ops\.aten\.([A-Za-z_][A-Za-z0-9_]*)\.[A-Za-z_][A-Za-z0-9_]*")
#: ATen operators that open a file named by a string argument (``from_file`` with
#: ``shared=True`` creates it and writes the tensor back)
_ATEN_FILE_OPS = frozenset({"from_file", "save"})
#: sympy functions a shape expression may call (``srepr`` output: ``Mul(Integer(2),
#: Symbol('s0', positive=True, integer=True))``); no Pow, PowByNatural, FloatPow, LShift
_SYM_FUNCTIONS = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Max", "Min", "Mod", "FloorDiv",
    "CeilDiv", "CleanDiv", "ModularIndexing", "PythonMod", "Where", "IntTrueDiv",
    "FloatTrueDiv", "ToFloat", "TruncToInt", "TruncToFloat", "RoundToInt", "FloorToInt",
    "CeilToInt", "Identity", "Abs", "Equality", "Unequality", "StrictLessThan", "LessThan",
    "StrictGreaterThan", "GreaterThan", "And", "Or", "Not"})
_SYM_CONSTANTS = frozenset({"oo", "true", "false", "nan", "zoo"})
_SYM_ASSUMPTIONS = frozenset({"positive", "negative", "nonnegative", "nonpositive", "integer",
                              "real", "finite", "zero", "nonzero", "even", "odd"})
_SYM_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.Div)
_SYM_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_SYM_MAX_INT = 1 << 64  # integer constants: sizes and strides fit in 64 bits
_FLOAT_TEXT = re.compile(r"-?\d{1,30}(\.\d{1,30})?")
#: JSON keys whose string values torch never pastes into source: string arguments (FX
#: writes them with ``repr``) and the exporting torch's version
_FREE_TEXT_KEYS = frozenset({"as_string", "as_strings", "torch_version"})
#: JSON keys whose values become Python variable names (tensor, node, symbol names)
_VARIABLE_KEYS = frozenset({"name", "as_name", "user_input_name", "forward_arg_names"})
#: JSON objects whose keys are variable names (the graph's value tables)
_VARIABLE_TABLES = frozenset({"tensor_values", "sym_int_values", "sym_bool_values",
                              "sym_float_values", "custom_obj_values", "range_constraints"})
#: node metadata that torch parses as JSON
_JSON_METADATA = frozenset({"custom", "from_node"})
#: pytree node types an input or output spec may use
_SPEC_TYPES = frozenset({None, "builtins.tuple", "builtins.list", "builtins.dict"})
#: bytes per element for each serialised ``ScalarType`` (``torch._export.serde.schema``)
_ELEMENT_BYTES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 2, 7: 4, 8: 8, 9: 4, 10: 8, 11: 16, 12: 1,
                  13: 2, 28: 2, 29: 1, 30: 1, 31: 1, 32: 1, 33: 1, 34: 4, 35: 8}


def _pt2_refuse(path: Path, why: str) -> ExplainerError:
    return ExplainerError(f"torch.export program refused: {path.name} {why}; loading it could run "
                          f"code. Re-export the model with torch.export.export and torch.export.save")


def _pt2_bad(path: Path, why: str) -> ExplainerError:
    return ExplainerError(f"not a torch.export program: {path.name} {why}")


def _pt2_too_big(path: Path, why: str, limit: int) -> ExplainerError:
    return ExplainerError(f"torch.export program refused: {path.name} {why}, over the "
                          f"{_size(limit)} this loader reads (cache.loaders.PT2_MAX_*)")


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def _one_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one line: its type and its whole message, lines joined (torch's
    messages often put the useful part after a line break), cut with an ellipsis."""
    text = " ".join(str(e).split())
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


# ---- names ---------------------------------------------------------------------------------

def _is_identifier(name: object, keywords: bool = False) -> bool:
    """A plain ASCII identifier, not a keyword (unless ``keywords``): safe as a Python
    variable name and after a dot."""
    return isinstance(name, str) and _IDENTIFIER.fullmatch(name) is not None \
        and (keywords or not keyword.iskeyword(name))


def _is_path(name: object) -> bool:
    """Dotted identifiers, where a part may also be a decimal index (``net.0.weight``: FX
    writes ``getattr(self.net, "0")``, and digits cannot close the quote)."""
    return isinstance(name, str) and bool(name) and all(
        _is_identifier(part) or (part.isascii() and part.isdigit()) for part in name.split("."))


def _is_call_path(name: object) -> bool:
    """A module-call path: ``""`` for the root, or a path with an optional ``@n`` call index."""
    if name == "":
        return True
    base, _, index = str(name).partition("@") if isinstance(name, str) else ("", "", "")
    return _is_path(base) and (index == "" or (index.isascii() and index.isdigit()))


# ---- JSON ----------------------------------------------------------------------------------

def _parse_json(path: Path, data: bytes | str, what: str) -> object:
    """A JSON document, nesting bounded by :data:`PT2_MAX_JSON_DEPTH`; ExplainerError for
    anything unreadable (torch's own parser would raise RecursionError or ValueError)."""
    try:
        doc = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except RecursionError:
        raise _pt2_bad(path, f"has {what} nested too deeply to read") from None
    except ValueError as e:  # bad UTF-8 or bad JSON
        raise _pt2_bad(path, f"has an unreadable {what} ({_one_line(e, 120)})") from None
    if _json_depth(doc) > PT2_MAX_JSON_DEPTH:
        raise _pt2_bad(path, f"has {what} nested more than {PT2_MAX_JSON_DEPTH} levels deep")
    return doc


def _json_depth(doc: object) -> int:
    """The nesting depth of a parsed JSON document, counted without recursion (stops
    counting past the cap)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > PT2_MAX_JSON_DEPTH:
                return deepest
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return deepest


# ---- shape expressions ---------------------------------------------------------------------

def _check_sym_expr(expr: object) -> str | None:
    """None if ``expr`` is a shape expression of the allow-list grammar, else why not.

    Accepted: ``sympy.srepr`` output over torch's symbols (``Mul(Integer(2), Symbol('s0',
    positive=True, integer=True))``) and plain arithmetic (``s0 + 1``, ``2*s0 // 3``):
    calls of :data:`_SYM_FUNCTIONS`, integers below 2**64, ``+ - * / // %``, comparisons.
    Refused: exponentiation in any spelling (``**``, ``^``, ``Pow``), shifts, any other name,
    attribute, subscript or lambda, and anything over the length or term bounds, so
    ``sympy.sympify`` (an ``eval``) can neither run code nor spin on a huge number.
    """
    if not isinstance(expr, str):
        return "not a string"
    if len(expr) > PT2_MAX_EXPR_CHARS:
        return f"longer than {PT2_MAX_EXPR_CHARS} characters"
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "not an expression"
    nodes = list(ast.walk(tree))
    if len(nodes) > PT2_MAX_EXPR_TERMS:
        return f"more than {PT2_MAX_EXPR_TERMS} terms"
    allowed_strings: set[int] = set()
    for node in nodes:
        why = _check_sym_node(node, allowed_strings)
        if why:
            return why
    return None


def _check_sym_node(node: ast.AST, allowed_strings: set[int]) -> str | None:
    """One node of :func:`_check_sym_expr`'s grammar; ``allowed_strings`` collects the ids
    of string constants that a ``Symbol(...)``/``Float(...)`` call may carry."""
    if isinstance(node, (ast.Expression, ast.Load, ast.keyword, *_SYM_BINOPS, *_SYM_COMPARE,
                         ast.USub, ast.UAdd)):
        return None
    if isinstance(node, ast.BinOp):
        return None if isinstance(node.op, _SYM_BINOPS) else f"uses {type(node.op).__name__}"
    if isinstance(node, ast.UnaryOp):
        return None if isinstance(node.op, (ast.USub, ast.UAdd)) else f"uses {type(node.op).__name__}"
    if isinstance(node, ast.Compare):
        return None if all(isinstance(op, _SYM_COMPARE) for op in node.ops) else "uses an odd comparison"
    if isinstance(node, ast.Name):
        return None if node.id in _SYM_FUNCTIONS or node.id in _SYM_CONSTANTS \
            or _SYM_SYMBOL.fullmatch(node.id) else f"names {node.id[:40]!r}"
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or (isinstance(value, int) and abs(value) < _SYM_MAX_INT):
            return None
        if isinstance(value, float) and math.isfinite(value):
            return None
        if isinstance(value, str) and id(node) in allowed_strings:
            return None
        return f"has the constant {str(value)[:40]!r}"
    if isinstance(node, ast.Call):
        return _check_sym_call(node, allowed_strings)
    return f"uses {type(node).__name__}"


def _check_sym_call(node: ast.Call, allowed_strings: set[int]) -> str | None:
    """A call in a shape expression: an allow-listed function by name, ``Symbol`` with a
    torch symbol name and boolean assumptions, ``Float`` with a decimal string."""
    if not (isinstance(node.func, ast.Name) and node.func.id in _SYM_FUNCTIONS):
        return "calls something that is not a sympy shape function"
    name = node.func.id
    first = node.args[0] if node.args else None
    if name == "Symbol":
        if not (len(node.args) == 1 and isinstance(first, ast.Constant)
                and isinstance(first.value, str) and _SYM_SYMBOL.fullmatch(first.value)):
            return "has a Symbol that is not a torch size symbol"
        allowed_strings.add(id(first))
        for kw in node.keywords:
            if kw.arg not in _SYM_ASSUMPTIONS or not (
                    isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, bool)):
                return "has a Symbol with an odd assumption"
        return None
    if name == "Float" and isinstance(first, ast.Constant) and isinstance(first.value, str):
        if not _FLOAT_TEXT.fullmatch(first.value):
            return "has an odd Float"
        allowed_strings.add(id(first))
        if any(kw.arg != "precision" for kw in node.keywords):
            return "has a Float with an odd option"
        return None
    return "passes keywords to a shape function" if node.keywords else None


# ---- the program and its configs -----------------------------------------------------------

def _check_names(path: Path, doc: object, what: str) -> None:
    """Walk a program or config (without recursion) and check every string by the key it
    sits under; a string no rule knows is held to the dotted-name rule (default deny).

    Raises:
        ExplainerError: naming the first offending string.
    """
    stack: list[tuple[str, object, object]] = [("", doc, None)]
    while stack:
        key, value, parent = stack.pop()
        if isinstance(value, dict):
            if key == "metadata":
                _check_metadata(path, value, what)
                continue
            variables = key in _VARIABLE_TABLES  # tensor_values etc.: keys are variable names
            for k, v in value.items():
                if not (_is_identifier(k) if variables else _is_path(k)):
                    raise _pt2_refuse(path, f"has a name that is not a plain identifier in {what} "
                                            f"(a key of {key or 'the document'}: {k[:80]!r})")
                stack.append((k, v, value))
        elif isinstance(value, list):
            stack.extend((key, item, parent) for item in value)
        elif isinstance(value, str):
            _check_string(path, key, value, parent, what)


def _check_string(path: Path, key: str, value: str, parent: object, what: str) -> None:
    """One string of :func:`_check_names`, by the key it sits under."""
    if key in _FREE_TEXT_KEYS:
        return
    if key == "expr_str":
        why = _check_sym_expr(value)
        if why:
            raise _pt2_refuse(path, f"has a shape expression that is not plain arithmetic ({why}): "
                                    f"{value[:80]!r}")
        return
    if key in ("in_spec", "out_spec"):
        _check_treespec(path, value, key)
        return
    if key in ("target", "as_operator"):
        _check_target(path, value)
        return
    if key == "guards_code":
        raise _pt2_refuse(path, "carries guard code (compiled into Python when the program runs)")
    if key in _VARIABLE_KEYS:
        # an operator schema's argument name may be a keyword (aten's random_.from), which
        # torch passes positionally; "" marks a higher-order op's positional argument
        named_argument = key == "name" and isinstance(parent, dict) and "arg" in parent
        ok = _is_identifier(value, keywords=named_argument) or (named_argument and value == "")
    elif key == "fqn":
        ok = _is_call_path(value)
    else:
        ok = _is_path(value)
    if not ok:
        raise _pt2_refuse(path, f"has a name that is not a plain identifier in {what} "
                                f"({key}: {value[:80]!r})")


def _check_metadata(path: Path, metadata: dict, what: str) -> None:
    """Node metadata (stack traces, module paths) is text torch keeps, not source; it is
    pasted into source only under ``FX_GRAPH_SHOW_META=1``, inside a triple-quoted string, so
    no value may hold a triple quote. ``custom`` and ``from_node`` are JSON torch parses."""
    for k, v in metadata.items():
        if not _is_identifier(k) or not isinstance(v, str):
            raise _pt2_bad(path, f"has node metadata that is not text in {what} ({str(k)[:40]!r})")
        if '"""' in v or "'''" in v:
            raise _pt2_refuse(path, f"has node metadata with a triple quote in {what} ({k})")
        if k in _JSON_METADATA:
            _parse_json(path, v, f"node metadata ({k})")


def _check_target(path: Path, target: str) -> None:
    """A node calls an ATen operator (not one that opens files) or a symbolic-size operator."""
    aten = _ATEN_TARGET.fullmatch(target)
    if aten and aten.group(1) in _ATEN_FILE_OPS:
        raise _pt2_refuse(path, f"calls {target[:80]!r}, which opens a file named by the program")
    if not aten and target not in _SYM_TARGETS:
        raise _pt2_refuse(path, f"calls {target[:80]!r}, which is not an ATen operator")


def _check_treespec(path: Path, text: str, what: str) -> None:
    """An input or output spec (pytree JSON inside a string): tuples, lists and dicts whose
    keys are identifiers (the input spec's keys become ``forward``'s parameter names)."""
    doc = _parse_json(path, text, what)
    if not (isinstance(doc, list) and len(doc) == 2 and isinstance(doc[1], dict)):
        raise _pt2_bad(path, f"has an unreadable {what}")
    stack = [doc[1]]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict) or node.get("type") not in _SPEC_TYPES \
                or not isinstance(node.get("children_spec"), list):
            raise _pt2_refuse(path, f"has an {what} with a type other than tuple, list or dict")
        context = node.get("context")
        if node["type"] == "builtins.dict":
            keys = _parse_json(path, context, what) if isinstance(context, str) else None
            if not (isinstance(keys, list) and all(_is_identifier(k) for k in keys)):
                raise _pt2_refuse(path, f"has an {what} whose keys are not plain identifiers "
                                        f"({str(context)[:80]!r})")
        elif context not in (None, "null"):
            raise _pt2_refuse(path, f"has an {what} with an odd context ({str(context)[:80]!r})")
        stack.extend(node["children_spec"])


def _check_program(path: Path, program: object) -> None:
    """Checks of one serialized ExportedProgram (``models/model.json``), before torch reads it."""
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        raise _pt2_bad(path, "has a program that is not a JSON object with a graph_module")
    _check_user_inputs(path, program)  # before the guard check: a two-input export has guards
    guards = program.get("guards_code", [])
    if guards:
        raise _pt2_refuse(path, "carries guard code (compiled into Python when the program runs)")
    constraints = program.get("range_constraints", {})
    if not isinstance(constraints, dict):
        raise _pt2_bad(path, f"has range_constraints that are not an object ({type(constraints).__name__})")
    for symbol, bounds in constraints.items():
        if not _SYM_SYMBOL.fullmatch(symbol):
            raise _pt2_refuse(path, f"has a shape constraint on {symbol[:60]!r}, not a symbol")
        if not (isinstance(bounds, dict) and all(
                type(bounds.get(k)) in (int, type(None)) for k in ("min_val", "max_val"))):
            raise _pt2_bad(path, f"has an unreadable range constraint for {symbol}")
    _check_names(path, program, _PT2_PROGRAM)


def _check_user_inputs(path: Path, program: object) -> None:
    """The program takes one tensor (the loaded module is called with a batch of rows); said
    before torch reads anything, with the inputs' names."""
    try:
        specs = program["graph_module"]["signature"]["input_specs"]
        names = [str(s["user_input"]["arg"].get("as_tensor", {}).get("name", "?"))
                 for s in specs if "user_input" in s]
    except (KeyError, TypeError, AttributeError):
        raise _pt2_bad(path, "has no readable input signature") from None
    if len(names) != 1:
        raise ExplainerError(f"torch.export program {path.name} takes {len(names)} inputs "
                             f"({', '.join(n[:40] for n in names[:8]) or 'none'}); a tabular model "
                             "file must take one tensor of rows, [batch, features]")


def _check_payload_config(path: Path, doc: object, rel: str, record_bytes: dict[str, int]) -> int:
    """A weights or constants config: every entry a plain tensor stored in a file of the
    archive (no pickle), its metadata readable; returns the bytes torch will allocate for
    zero-byte records (``torch.zeros`` at the declared size).

    Raises:
        ExplainerError: for a pickle, a missing file or an unreadable entry.
    """
    if not (isinstance(doc, dict) and isinstance(doc.get("config"), dict)):
        raise _pt2_bad(path, f"has a {rel} without a config object")
    prefix = "weight_" if "weights" in rel else "tensor_"
    folder = rel.rsplit("/", 1)[0]
    zero_filled = 0
    for fqn, meta in doc["config"].items():
        if not isinstance(meta, dict):
            raise _pt2_bad(path, f"has an unreadable entry for {str(fqn)[:80]!r} in {rel}")
        if meta.get("use_pickle") is not False \
                or not re.fullmatch(prefix + r"\d{1,9}", str(meta.get("path_name"))):
            raise _pt2_refuse(path, f"stores {fqn[:80]!r} as a pickle or a Python object")
        record = f"{folder}/{meta['path_name']}"
        if record not in record_bytes:
            raise _pt2_bad(path, f"has no {record} for {fqn[:80]!r}")
        numel, element = _tensor_meta_size(path, meta.get("tensor_meta"), fqn)
        if record_bytes[record] == 0:
            zero_filled += numel * element
            if zero_filled > PT2_MAX_TENSOR_BYTES:
                raise _pt2_too_big(path, "declares zero-filled tensors", PT2_MAX_TENSOR_BYTES)
    _check_names(path, doc, rel)
    return zero_filled


def _tensor_meta_size(path: Path, meta: object, fqn: str) -> tuple[int, int]:
    """``(numel, bytes per element)`` of a config's tensor metadata: static sizes and strides."""
    def ints(value: object) -> list[int] | None:
        if not isinstance(value, list) or not all(
                isinstance(d, dict) and type(d.get("as_int")) is int for d in value):
            return None
        return [d["as_int"] for d in value]
    sizes = ints(meta.get("sizes")) if isinstance(meta, dict) else None
    strides = ints(meta.get("strides")) if isinstance(meta, dict) else None
    offset = ints([meta.get("storage_offset")]) if isinstance(meta, dict) else None
    dtype = meta.get("dtype") if isinstance(meta, dict) else None
    element = _ELEMENT_BYTES.get(dtype) if type(dtype) is int else None
    if sizes is None or strides is None or offset is None or element is None \
            or len(sizes) != len(strides) or any(s < 0 for s in sizes + offset):
        raise _pt2_bad(path, f"has unreadable tensor metadata for {fqn[:80]!r}")
    numel = 1
    for s in sizes:  # stop multiplying once past the cap: sizes are unbounded JSON integers
        numel = min(numel * s, PT2_MAX_TENSOR_BYTES + 1)
    return numel, element


# ---- the archive ---------------------------------------------------------------------------

def _open_pt2(path: Path) -> zipfile.ZipFile:
    """The archive, its central directory bounded before Python's zipfile parses it."""
    end_record = getattr(zipfile, "_EndRecData", None)  # private, in every Python 3 so far
    try:
        with open(path, "rb") as f:
            end = end_record(f) if end_record else [0] * 10  # entry count and directory size
    except OSError as e:
        raise _pt2_bad(path, f"({_one_line(e, 120)})") from None
    if end is None:
        raise _pt2_bad(path, "(not a zip archive)")
    entries, directory = end[4], end[5]  # zipfile._ECD_ENTRIES_TOTAL, zipfile._ECD_SIZE
    if entries > PT2_MAX_ENTRIES:
        raise _pt2_too_big(path, f"lists {entries} entries", PT2_MAX_ENTRIES)
    if directory > PT2_MAX_ENTRIES * 512:  # a plain entry's record is under 100 bytes
        raise _pt2_too_big(path, f"has a zip directory of {_size(directory)}", PT2_MAX_ENTRIES * 512)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise _pt2_bad(path, f"({_one_line(e, 120)})") from None


def _entries(path: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's entries by path below its single root folder, each of a known kind,
    stored or deflated, unencrypted and listed once, with declared sizes within the caps.

    Raises:
        ExplainerError: for anything else, before any entry is read.
    """
    infos = [i for i in archive.infolist() if not i.filename.endswith("/")]
    if len(infos) > PT2_MAX_ENTRIES:
        raise _pt2_too_big(path, f"lists {len(infos)} entries", PT2_MAX_ENTRIES)
    roots = {i.filename.split("/", 1)[0] for i in infos}
    if len(roots) != 1 or any("/" not in i.filename for i in infos):
        raise _pt2_bad(path, "has no single root folder")
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        rel = info.filename.split("/", 1)[1]
        if rel in entries:  # zip readers disagree on which copy of a name they read
            raise _pt2_refuse(path, f"lists {rel!r} twice")
        entries[rel] = info
    odd = sorted(rel for rel in entries if not _PT2_FILES.fullmatch(rel))
    if odd:
        raise _pt2_refuse(path, f"holds files a plain exported program does not ({odd[:5]}: "
                                "pickled state, compiled libraries or another format)")
    if _PT2_PROGRAM not in entries:
        raise _pt2_bad(path, f"has no {_PT2_PROGRAM} entry (an archive from torch.export.save is expected)")
    tensors = 0
    for rel, info in entries.items():
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _pt2_bad(path, f"has {rel} encrypted or compressed in a way torch does not read")
        if rel.endswith(".json") and info.file_size > PT2_MAX_JSON_BYTES:
            raise _pt2_too_big(path, f"has a {rel} of {_size(info.file_size)}", PT2_MAX_JSON_BYTES)
        if rel in _PT2_MARKERS and info.file_size > PT2_MAX_MARKER_BYTES:
            raise _pt2_too_big(path, f"has a {rel} of {_size(info.file_size)}", PT2_MAX_MARKER_BYTES)
        if _is_tensor_entry(rel):
            tensors += info.file_size
            if tensors > PT2_MAX_TENSOR_BYTES:
                raise _pt2_too_big(path, f"holds {_size(tensors)}+ of tensors", PT2_MAX_TENSOR_BYTES)
    return entries


def _is_tensor_entry(rel: str) -> bool:
    return rel.startswith(("data/weights/weight_", "data/constants/tensor_"))


def _copy_entry(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, out) -> int:
    """Stream one entry into ``out`` (a file, or None to only read it) in chunks of
    :data:`_PT2_CHUNK`, never past its declared size; returns the bytes read.

    Raises:
        ExplainerError: when the entry inflates to more or fewer bytes than declared or
            fails its CRC (a header that lies about its size).
    """
    done = 0
    try:
        with archive.open(info) as src:
            while chunk := src.read(min(_PT2_CHUNK, info.file_size - done + 1)):
                done += len(chunk)
                if done > info.file_size:
                    break
                if out is not None:
                    out.write(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as e:
        rel = info.filename.split("/", 1)[-1]
        raise _pt2_bad(path, f"has a damaged {rel} ({_one_line(e, 120)})") from None
    if done != info.file_size:
        raise _pt2_bad(path, f"has {info.filename.split('/', 1)[-1]} declared as {info.file_size} "
                             f"bytes that holds {'more' if done > info.file_size else done}")
    return done


def _read_entry(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """One (size-checked) entry's bytes, read as :func:`_copy_entry` reads."""
    buffer = io.BytesIO()
    _copy_entry(path, archive, info, buffer)
    return buffer.getvalue()


_Checked = tuple[dict[str, zipfile.ZipInfo], dict[str, object], dict[str, bytes]]


def _checked_pt2(path: Path, archive: zipfile.ZipFile) -> _Checked:
    """All checks of an opened archive that need no tensor bytes: the entries, the parsed
    (checked) JSON documents by path, and the marker entries' bytes."""
    entries = _entries(path, archive)
    markers: dict[str, bytes] = {}
    for rel in _PT2_MARKERS:
        if rel in entries:
            markers[rel] = _read_entry(path, archive, entries[rel])
            if not _PT2_MARKER_TEXT.fullmatch(markers[rel]):
                raise _pt2_bad(path, f"has an unreadable {rel}")
    docs: dict[str, object] = {}
    for rel in (_PT2_PROGRAM, _PT2_WEIGHTS_CONFIG, _PT2_CONSTANTS_CONFIG):
        if rel in entries:
            docs[rel] = _parse_json(path, _read_entry(path, archive, entries[rel]), rel)
    _check_program(path, docs[_PT2_PROGRAM])
    record_bytes = {rel: info.file_size for rel, info in entries.items() if _is_tensor_entry(rel)}
    zero_filled = sum(_check_payload_config(path, docs[rel], rel, record_bytes)
                      for rel in (_PT2_WEIGHTS_CONFIG, _PT2_CONSTANTS_CONFIG) if rel in docs)
    if zero_filled + sum(record_bytes.values()) > PT2_MAX_TENSOR_BYTES:
        raise _pt2_too_big(path, "holds or declares too many tensor bytes", PT2_MAX_TENSOR_BYTES)
    return entries, docs, markers


def check_pt2_archive(path: str | Path, copy_to: str | Path | None = None) -> None:
    """Refuse a ``.pt2`` archive that ``torch.export.load`` could run code from or that
    would inflate past the caps (see the comment above); return None for a plain exported
    program. With ``copy_to``, write the archive torch may read there: the checked entries
    only, JSON re-serialised, tensors copied in bounded chunks, sample inputs emptied.

    Raises:
        ExplainerError: naming what was found, as one line.
    """
    path = Path(path)
    with _open_pt2(path) as archive:
        try:
            entries, docs, markers = _checked_pt2(path, archive)
            if copy_to is None:
                for rel, info in entries.items():
                    if _is_tensor_entry(rel):
                        _copy_entry(path, archive, info, None)  # CRC and sizes, nothing kept
            else:
                _write_pt2(path, archive, entries, docs, markers, Path(copy_to))
        except ExplainerError:
            raise
        except Exception as e:  # noqa: BLE001  (a malformed archive must still be one line)
            raise _pt2_bad(path, f"could not be checked ({_one_line(e, 160)})") from None


def _write_pt2(path: Path, archive: zipfile.ZipFile, entries: dict[str, zipfile.ZipInfo],
               docs: dict[str, object], markers: dict[str, bytes], dst: Path) -> None:
    """The archive torch reads, written from what was checked: torch reads the bytes we read
    (two zip parsers cannot disagree about the user's file), no sample-input pickle, no
    extra files."""
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for rel, data in markers.items():
            out.writestr(f"archive/{rel}", data)
        for rel, doc in docs.items():
            out.writestr(f"archive/{rel}", json.dumps(doc))
        # empty sample inputs: torch then unpickles nothing and builds no guard function
        out.writestr(f"archive/{_PT2_SAMPLE_INPUTS}", b"")
        for rel, info in entries.items():
            if _is_tensor_entry(rel):
                with out.open(zipfile.ZipInfo(f"archive/{rel}"), "w",
                              force_zip64=info.file_size >= 1 << 31) as sink:
                    _copy_entry(path, archive, info, sink)


def load_exported(path: str | Path) -> torch.nn.Module:
    """A ``torch.export`` program (``.pt2``, from ``torch.export.save``) taking one tensor of
    rows, as a callable module. Torch reads the copy :func:`check_pt2_archive` writes; the
    loaded graph is checked again.

    Raises:
        ExplainerError: for a missing file, an archive that could run code or is too large,
            one that torch cannot read, or a program that does not take one tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise ExplainerError(f"model file not found: {path}")
    with tempfile.TemporaryDirectory(prefix="pt2-") as tmp:
        clean = Path(tmp) / "program.pt2"
        check_pt2_archive(path, copy_to=clean)
        try:
            program = _torch_load_pt2(clean)
            module = program.module()
        except Exception as e:  # torch raises many types for damaged or foreign archives
            raise ExplainerError(f"not a readable torch.export program: {path.name} "
                                 f"({_one_line(e, 200)})") from None
    _check_loaded_graph(path, module)
    return ExportedModule(module, _static_batch(program))


def _torch_load_pt2(path: Path):
    """``torch.export.load`` without its fallback: on a RuntimeError it logs a traceback and
    retries the pre-2.7 layout (which unpickles with ``weights_only=False``), then raises
    "check the warnings above". Its own reader gives the real error; torch.export.load is
    the fallback should that module move."""
    try:
        from torch.export.pt2_archive._package import load_pt2
    except ImportError:  # a later torch
        return torch.export.load(str(path))
    return load_pt2(str(path)).exported_programs["model"]


def _check_loaded_graph(path: Path, module: torch.fx.GraphModule) -> None:
    """The loaded graph holds only inputs, attributes, the allowed calls and the output."""
    for node in module.graph.nodes:
        if node.op in ("placeholder", "get_attr", "output"):
            continue
        target = node.target
        aten = isinstance(target, torch._ops.OpOverload) and target.namespace == "aten"
        if node.op != "call_function" or not (aten or target in _SYM_CALLS) \
                or (aten and target._schema.name.split("::")[-1] in _ATEN_FILE_OPS):
            raise _pt2_refuse(path, f"calls {target!r}, which is not an ATen operator")


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
