"""Hardened ``.pt2`` loading (issue #19, first part): names, sizes, expressions, malformed files.

Each crafted archive carries a payload that creates a marker file under ``tmp_path``. Where
plain torch 2.14 runs the payload, a control test shows it (and skips, saying so, if a later
torch stops), then :func:`cache.loaders.load_exported` refuses the file with one
``ExplainerError`` line and the marker never appears. Bombs are built cheaply: a header that
declares gigabytes over a few bytes, or a small deflated entry with the caps lowered; the
refusal is bounded in time and in Python memory (``tracemalloc``).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
import torch

from cache import loaders
from cache.loaders import _check_sym_expr, check_pt2_archive, load_exported
from explainers import ExplainerError

PROGRAM = "models/model.json"
WEIGHTS = "data/weights/model_weights_config.json"
CONSTANTS = "data/constants/model_constants_config.json"
SAMPLES = "data/sample_inputs/model.pt"
GIB = 1 << 30


class Small(torch.nn.Module):
    """A parameter (``lin.*``), a buffer (``scale``) and a constant (``c``): one of each name kind."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)
        self.register_buffer("scale", torch.full((1,), 2.0))
        self.c = torch.tensor([0.5])

    def forward(self, x):
        return self.lin(x) * self.scale + self.c


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A plain dynamic-batch program, exported once for the module."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pt2") / "base.pt2"
    program = torch.export.export(Small().eval(), (torch.randn(4, 3),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return path


def craft(src: Path, dst: Path, edits: dict | None = None, raw: dict | None = None,
          add: dict | None = None) -> Path:
    """Copy an archive, applying ``edits[rel](doc) -> doc`` to JSON entries, replacing
    entries with ``raw[rel]`` bytes, and adding ``add[rel]`` bytes (``rel``: below the root)."""
    edits, raw, add = edits or {}, raw or {}, add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            rel = info.filename.split("/", 1)[1]
            data = zin.read(info.filename)
            if rel in edits:
                data = json.dumps(edits[rel](json.loads(data))).encode()
            zout.writestr(info.filename, raw.get(rel, data))
        for rel, data in add.items():
            zout.writestr(f"{root}/{rel}", data)
    return dst


def rename(doc, old: str, new: str):
    """``doc`` with every string and key equal to ``old`` replaced by ``new``."""
    if isinstance(doc, dict):
        return {(new if k == old else k): rename(v, old, new) for k, v in doc.items()}
    if isinstance(doc, list):
        return [rename(v, old, new) for v in doc]
    return new if doc == old else doc


def opens(marker: Path) -> str:
    """Python source that opens ``marker`` for writing, with no dot in it (torch splits
    attribute names on dots before pasting the parts)."""
    return f'open(str(bytes({list(str(marker).encode())}), "latin1"), "w")'


def getattr_payload(marker: Path) -> str:
    """The probe's name: pasted into ``getattr(self, "{name}")`` it opens the marker."""
    return f'x", {opens(marker)} and 0) or ("'


def refused(path: Path, match: str) -> str:
    """load_exported refuses ``path`` with one line matching ``match``; returns the message."""
    with pytest.raises(ExplainerError, match=match) as info:
        load_exported(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def run_plain_torch(path: Path) -> None:
    """What the loader did before: torch.export.load, .module(), one forward pass."""
    try:
        torch.export.load(str(path)).module()(torch.randn(2, 3))
    except Exception:  # noqa: BLE001  (payloads leave the program broken after they run)
        pass


# -- names torch pastes into source ----------------------------------------------------------

#: the name kinds torch 2.14 pastes into ``getattr(self, "<part>")`` when the module runs:
#: (entries to edit, the name in the base program, the crafted name)
NAME_ROUTES = {
    "buffer": ((PROGRAM, WEIGHTS), "scale", getattr_payload),
    "parameter": ((PROGRAM, WEIGHTS), "lin.bias", lambda m: "lin." + getattr_payload(m)),
    "constant": ((PROGRAM, CONSTANTS), "c", getattr_payload),
}


def name_route(base: Path, tmp_path: Path, route: str) -> tuple[Path, Path]:
    rels, old, new = NAME_ROUTES[route]
    marker = tmp_path / f"marker_{route}"
    evil = new(marker)
    crafted = craft(base, tmp_path / f"{route}.pt2", {rel: (lambda d: rename(d, old, evil)) for rel in rels})
    return crafted, marker


@pytest.mark.parametrize("route", sorted(NAME_ROUTES))
def test_plain_torch_runs_a_crafted_name(base, tmp_path, route):
    """The control: the probe's reproduction is live in this torch."""
    crafted, marker = name_route(base, tmp_path, route)
    run_plain_torch(crafted)
    if not marker.exists():
        pytest.skip(f"this torch no longer pastes {route} names into source")
    assert marker.exists()


@pytest.mark.parametrize("route", sorted(NAME_ROUTES))
def test_a_crafted_name_is_refused_and_runs_no_code(base, tmp_path, route):
    crafted, marker = name_route(base, tmp_path, route)
    message = refused(crafted, "not a plain identifier")
    assert "torch.export program refused" in message
    assert not marker.exists()


def test_the_probes_buffer_name_is_refused_through_the_tabular_loader(base, tmp_path):
    """The CLI, the API and the dashboard upload all go through file_tabular."""
    from cache.models import file_tabular
    crafted, marker = name_route(base, tmp_path, "buffer")
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b,c\n1,2,3\n4,5,6\n")
    with pytest.raises(ExplainerError, match="not a plain identifier"):
        file_tabular(str(crafted), str(csv))
    assert not marker.exists()


def set_forward_arg_names(doc, names):
    doc["graph_module"]["module_call_graph"][0]["signature"]["forward_arg_names"] = names
    return doc


def set_in_spec_keys(doc, keys):
    signature = doc["graph_module"]["module_call_graph"][0]["signature"]
    spec = json.loads(signature["in_spec"])
    spec[1]["children_spec"][1]["context"] = json.dumps(keys)
    signature["in_spec"] = json.dumps(spec)
    return doc


def set_first_input_name(doc, name):
    doc["graph_module"]["graph"]["nodes"][0]["inputs"][0]["name"] = name
    return doc


#: other places torch writes a name into source (node and placeholder names become
#: variables, forward_arg_names and the input spec's keys become parameters); each is held
#: to the identifier rule whether or not this torch's code generator happens to choke on it
OTHER_NAMES = {
    "node name": lambda d, m: rename(d, "linear", f"self[{opens(m)}]"),
    "placeholder name": lambda d, m: rename(d, "b_scale", f"b_scale: {opens(m)}"),
    "user input name": lambda d, m: rename(d, "x", f"x={opens(m)}"),
    "forward_arg_names": lambda d, m: set_forward_arg_names(d, [f"x={opens(m)}"]),
    "input spec key": lambda d, m: set_in_spec_keys(d, [f"k={opens(m)}"]),
    "module call path": lambda d, m: rename(d, "lin", f'lin", {opens(m)}'),
    "operator argument name": lambda d, m: set_first_input_name(d, f"input={opens(m)}"),
    "a keyword as a buffer name": lambda d, m: rename(d, "scale", "lambda"),
    "a non-ASCII identifier": lambda d, m: rename(d, "b_scale", "b_sc\uff41le"),
    "a dotted variable name": lambda d, m: rename(d, "linear", "torch.ops.aten.linear"),
}


@pytest.mark.parametrize("where", sorted(OTHER_NAMES))
def test_every_name_torch_could_paste_is_a_plain_identifier(base, tmp_path, where):
    marker = tmp_path / "marker"
    edit = OTHER_NAMES[where]
    rels = (PROGRAM, WEIGHTS) if where == "a keyword as a buffer name" else (PROGRAM,)
    crafted = craft(base, tmp_path / "evil.pt2", {rel: (lambda d: edit(d, marker)) for rel in rels})
    refused(crafted, "not (a )?plain identifiers?")
    assert not marker.exists()


class Deeper(torch.nn.Module):
    """Indexed names (``net.0.weight``), batch norm buffers and a symbolic size computation
    (``_operator.mul`` on the batch size): all legitimate, all must still load."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        self.bn = torch.nn.BatchNorm1d(6)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(6, 6) for _ in range(2)])

    def forward(self, x):
        for block in self.blocks:
            x = torch.relu(block(x))
        y = self.net(self.bn(x))
        z = x.reshape(-1)[: x.shape[0] * 2].reshape(x.shape[0], 2)
        return torch.cat([y, z], dim=1)


@pytest.mark.parametrize("dynamic", [True, False])
def test_indexed_names_and_symbolic_sizes_still_load(tmp_path, dynamic):
    torch.manual_seed(1)
    model = Deeper().eval()
    shapes = ({0: torch.export.Dim("batch", min=2, max=1024)},) if dynamic else None
    torch.export.save(torch.export.export(model, (torch.randn(8, 6),), dynamic_shapes=shapes),
                      str(tmp_path / "deeper.pt2"))
    names = json.dumps(json.loads(zipfile.ZipFile(tmp_path / "deeper.pt2").read("deeper/" + WEIGHTS)))
    assert "net.0.weight" in names  # the archive does carry indexed names
    module = load_exported(tmp_path / "deeper.pt2")
    x = torch.randn(8 if not dynamic else 5, 6)
    torch.testing.assert_close(module(x), model(x))


# -- operators -------------------------------------------------------------------------------

def insert_node(doc, node, value_name=None, meta=None):
    graph = doc["graph_module"]["graph"]
    if value_name:
        graph["tensor_values"][value_name] = meta
    graph["nodes"].insert(0, node)
    return doc


def from_file_node(doc, marker: Path):
    """A node calling ATen's ``from_file(marker, shared=True)``: it creates the file."""
    meta = json.loads(json.dumps(doc["graph_module"]["graph"]["tensor_values"]["b_scale"]))
    meta.update(dtype=1, sizes=[{"as_int": 4}], strides=[{"as_int": 1}])
    node = {"target": "torch.ops.aten.from_file.default", "inputs": [
        {"name": "filename", "arg": {"as_string": str(marker)}, "kind": 1},
        {"name": "shared", "arg": {"as_bool": True}, "kind": 1},
        {"name": "size", "arg": {"as_int": 4}, "kind": 1},
        {"name": "dtype", "arg": {"as_scalar_type": 1}, "kind": 2}],
        "outputs": [{"as_tensor": {"name": "opened"}}], "metadata": {},
        "is_hop_single_tensor_return": None, "name": "opened"}
    return insert_node(doc, node, "opened", meta)


def test_plain_torch_runs_a_from_file_node(base, tmp_path):
    """The control: an ATen node can create (and write) a file named in the program."""
    marker = tmp_path / "marker_from_file"
    crafted = craft(base, tmp_path / "evil.pt2", {PROGRAM: lambda d: from_file_node(d, marker)})
    run_plain_torch(crafted)
    if not marker.exists():
        pytest.skip("this torch no longer runs aten.from_file from an exported program")
    assert marker.exists()


def test_a_from_file_node_is_refused(base, tmp_path):
    marker = tmp_path / "marker_from_file"
    crafted = craft(base, tmp_path / "evil.pt2", {PROGRAM: lambda d: from_file_node(d, marker)})
    refused(crafted, "opens a file")
    assert not marker.exists()


@pytest.mark.parametrize("target", ["_operator.attrgetter", "_operator.methodcaller", "_operator.pow",
                                    "_operator.lshift", "builtins.eval", "torch.ops.higher_order.cond",
                                    "math.factorial", "torch.ops.aten.linear.default.__call__"])
def test_calls_outside_aten_and_size_arithmetic_are_refused(base, tmp_path, target):
    """``operator.attrgetter``/``methodcaller`` reach any Python object at run time; ``pow``
    and ``lshift`` grow without bound; the old check let every ``_operator``/``math`` call by."""
    def edit(doc):
        doc["graph_module"]["graph"]["nodes"][0]["target"] = target
        return doc
    refused(craft(base, tmp_path / "evil.pt2", {PROGRAM: edit}), "not an ATen operator")


def test_metadata_cannot_close_a_triple_quote(base, tmp_path):
    """Under FX_GRAPH_SHOW_META=1 torch pastes node metadata into a triple-quoted string."""
    def edit(doc):
        doc["graph_module"]["graph"]["nodes"][0]["metadata"]["stack_trace"] = '"""\nopen("m", "w")\n"""'
        return doc
    refused(craft(base, tmp_path / "evil.pt2", {PROGRAM: edit}), "triple quote")


def test_an_input_spec_of_another_type_is_refused(base, tmp_path):
    def edit(doc):
        signature = doc["graph_module"]["module_call_graph"][0]["signature"]
        signature["in_spec"] = signature["in_spec"].replace('"builtins.dict"', '"collections.namedtuple"')
        return doc
    refused(craft(base, tmp_path / "evil.pt2", {PROGRAM: edit}), "other than tuple, list or dict")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # the control's own pickle
def test_sample_inputs_are_never_unpickled(base, tmp_path):
    """torch retries sample inputs with weights_only=False; torch reads our copy, whose
    sample inputs are empty, so a code-running pickle there is never read."""
    marker = tmp_path / "marker_samples"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    crafted = craft(base, tmp_path / "evil.pt2", raw={SAMPLES: pickle.dumps(Payload())})
    module = load_exported(crafted)
    assert not marker.exists()
    x = torch.randn(3, 3)
    torch.testing.assert_close(module(x), load_exported(base)(x))
    try:  # the control: plain torch falls back to weights_only=False and runs it
        torch.export.load(str(crafted))
    except Exception:  # noqa: BLE001
        pass
    if not marker.exists():
        pytest.skip("this torch no longer unpickles sample inputs unsafely")


# -- sizes -----------------------------------------------------------------------------------

def lie_about_size(path: Path, rel: str, size: int) -> Path:
    """Patch the uncompressed size of entry ``rel`` in both its local header and its central
    directory record: the archive stays a few kilobytes and declares ``size`` bytes."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/" + rel))
        record = z.start_dir
    struct.pack_into("<I", data, info.header_offset + 22, size)  # local header: uncompressed size
    name = info.filename.encode()
    while data[record:record + 4] == b"PK\x01\x02":  # walk the central directory records
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, record + 28)
        if data[record + 46:record + 46 + name_len] == name:
            struct.pack_into("<I", data, record + 24, size)
            break
        record += 46 + name_len + extra_len + comment_len
    else:
        raise AssertionError(f"no central directory record for {rel}")
    path.write_bytes(bytes(data))
    return path


def bounded_refusal(path: Path, match: str, *, seconds: float = 2.0, peak_bytes: int = 1 << 20) -> str:
    """The refusal happens within ``seconds`` and ``peak_bytes`` of Python allocations."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ExplainerError, match=match) as info:
            load_exported(path)
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < seconds, f"refusal took {elapsed:.2f} s"
    assert peak < peak_bytes, f"refusal allocated {peak / 2**20:.1f} MiB"
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("rel", [PROGRAM, WEIGHTS, "data/weights/weight_0"])
def test_an_entry_declaring_2_gib_is_refused_before_reading(base, tmp_path, rel):
    """The probe's bombs at their real size (2 GiB in front of model.json or the weights
    config, a 2 GiB weight) with the default caps; nothing is inflated."""
    crafted = lie_about_size(craft(base, tmp_path / "bomb.pt2"), rel, 2 * GIB)
    assert crafted.stat().st_size < 64 << 10
    assert zipfile.ZipFile(crafted).getinfo(f"base/{rel}").file_size == 2 * GIB
    message = bounded_refusal(crafted, "over the")
    assert "2048.0 MiB" in message or "MiB+" in message


def deflated(src: Path, dst: Path, rel: str, data: bytes) -> Path:
    """``src`` with entry ``rel`` replaced by ``data``, deflated (a truthful, tiny bomb)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            body = data if info.filename.endswith("/" + rel) else zin.read(info.filename)
            zout.writestr(info.filename, body, compress_type=zipfile.ZIP_DEFLATED)
    return dst


def test_a_deflated_json_bomb_trips_the_cap(base, tmp_path, monkeypatch):
    """Spaces in front of model.json (the probe's 2 GiB, scaled to 8 MiB under a 1 MiB cap)."""
    monkeypatch.setattr(loaders, "PT2_MAX_JSON_BYTES", 1 << 20)
    program = zipfile.ZipFile(base).read("base/" + PROGRAM)
    crafted = deflated(base, tmp_path / "bomb.pt2", PROGRAM, b" " * (8 << 20) + program)
    assert crafted.stat().st_size < 64 << 10
    bounded_refusal(crafted, "models/model.json of 8.0 MiB")


def test_a_deflated_weight_bomb_trips_the_cap(base, tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "PT2_MAX_TENSOR_BYTES", 1 << 20)
    crafted = deflated(base, tmp_path / "bomb.pt2", "data/weights/weight_0", bytes(8 << 20))
    bounded_refusal(crafted, "of tensors")


def test_a_header_that_understates_the_size_is_read_no_further(base, tmp_path):
    """Declared: model.json's real size; held: 16 MiB of spaces first. Reading stops at the
    declared size and the CRC check fails: one line, bounded memory."""
    program = zipfile.ZipFile(base).read("base/" + PROGRAM)
    crafted = deflated(base, tmp_path / "liar.pt2", PROGRAM, b" " * (16 << 20) + program)
    lie_about_size(crafted, PROGRAM, len(program))
    bounded_refusal(crafted, "damaged|unreadable", peak_bytes=4 << 20)


def test_a_weight_that_fails_its_crc_is_refused(base, tmp_path):
    """Tensor entries are read through, in chunks, before torch sees them; check_pt2_archive
    alone reads them without keeping them."""
    assert check_pt2_archive(base) is None
    crafted = craft(base, tmp_path / "crc.pt2")
    data = bytearray(crafted.read_bytes())
    with zipfile.ZipFile(crafted) as z:
        info = z.getinfo("base/data/weights/weight_0")
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + name_len + extra_len] ^= 0xFF  # one weight byte flipped
    crafted.write_bytes(bytes(data))
    with pytest.raises(ExplainerError, match="damaged data/weights/weight_0"):
        check_pt2_archive(crafted)
    refused(crafted, "damaged data/weights/weight_0")


def test_a_zero_byte_weight_with_a_huge_shape_is_refused(base, tmp_path):
    """torch allocates a zero-byte weight with torch.zeros at its declared shape (4 TiB here)."""
    def edit(doc):
        meta = doc["config"]["lin.weight"]["tensor_meta"]
        meta["sizes"] = [{"as_int": 1 << 20}, {"as_int": 1 << 20}]
        meta["strides"] = [{"as_int": 1 << 20}, {"as_int": 1}]
        return doc
    crafted = craft(base, tmp_path / "zeros.pt2", {WEIGHTS: edit}, raw={"data/weights/weight_0": b""})
    bounded_refusal(crafted, "zero-filled")


def test_too_many_entries_are_refused_before_the_directory_is_parsed(base, tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "PT2_MAX_ENTRIES", 20)
    crafted = craft(base, tmp_path / "many.pt2", add={f"extra/f{i}": b"" for i in range(30)})
    refused(crafted, "lists 4[0-9] entries")


def test_an_entry_listed_twice_is_refused(base, tmp_path):
    """Zip readers disagree on which copy of a name they return."""
    crafted = craft(base, tmp_path / "twice.pt2")
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(crafted, "a") as z:
        z.writestr("base/" + PROGRAM, b"{}")
    refused(crafted, "twice")


def test_the_default_caps_fit_the_issue():
    """1 GiB of tensors, JSON entries of a few MiB (a 20 MB upload at the probe's ratio would
    inflate to about 50 GB)."""
    assert loaders.PT2_MAX_TENSOR_BYTES == GIB
    assert 1 << 20 <= loaders.PT2_MAX_JSON_BYTES <= 32 << 20


def test_element_sizes_match_torchs_dtype_table():
    from torch._export.serde.serialize import _SERIALIZE_TO_TORCH_DTYPE
    real = {int(code): dtype.itemsize for code, dtype in _SERIALIZE_TO_TORCH_DTYPE.items()}
    assert loaders._ELEMENT_BYTES == real


# -- shape expressions -----------------------------------------------------------------------

@pytest.mark.parametrize("expr", [
    "Symbol('s77', positive=True, integer=True)",
    "Mul(Integer(2), Symbol('s77', positive=True, integer=True))",
    "Add(Symbol('s0', positive=True, integer=True), Integer(-1))",
    "FloorDiv(Symbol('s0', integer=True), Integer(2))",
    "Max(Integer(1), Symbol('u3', integer=True))",
    "StrictLessThan(Integer(2), Symbol('s0', positive=True, integer=True))",
    "Float('1.5', precision=53)",
    "s0 + 1", "2*s0 // 3", "s0 % 4", "-s1",
])
def test_shape_expressions_torch_writes_are_accepted(expr):
    assert _check_sym_expr(expr) is None


@pytest.mark.parametrize("expr", [
    "9**9**9**9", "s0 ** 2", "9^9", "Pow(Integer(9), Pow(Integer(9), Integer(99)))",
    "PowByNatural(Integer(9), Integer(999999))", "LShift(Integer(1), Integer(10**18))",
    "Integer(10**30)", "Integer(123456789012345678901234567890)",
    "__import__('os')", "Symbol('s0').__class__", "Symbol('x; import os')", "(lambda: 0)()",
    "s0[0]", "open('m', 'w')", "Symbol('s0', positive=__import__('os'))",
    "Float('1e999999999')", "Mul(" * 100 + "s0" + ")" * 100, "s0 + " * 600 + "1",
])
def test_other_expressions_are_refused(expr):
    assert _check_sym_expr(expr) is not None


def set_batch_expr(doc, expr):
    doc["graph_module"]["graph"]["tensor_values"]["x"]["sizes"][0]["as_expr"]["expr_str"] = expr
    return doc


def test_the_probes_hanging_expression_is_refused_at_once(base, tmp_path):
    """``9**9**9**9`` spun a core at 800 MB until killed; now it is refused in milliseconds."""
    assert _check_sym_expr("9**9**9**9") is not None  # fail here, not hang in sympy below
    crafted = craft(base, tmp_path / "hang.pt2", {PROGRAM: lambda d: set_batch_expr(d, "9**9**9**9")})
    message = bounded_refusal(crafted, "shape expression", seconds=1.0)
    assert "Pow" in message


def test_shape_expression_code_is_refused_with_its_reason(base, tmp_path):
    marker = tmp_path / "marker"
    crafted = craft(base, tmp_path / "code.pt2",
                    {PROGRAM: lambda d: set_batch_expr(d, f"Symbol('s0') + 0*len({opens(marker)}.name)")})
    refused(crafted, "shape expression")
    assert not marker.exists()


# -- malformed archives ----------------------------------------------------------------------

@pytest.mark.parametrize("rel,edit,match", [
    (WEIGHTS, lambda d: {"config": []}, "without a config object"),
    (WEIGHTS, lambda d: [], "without a config object"),
    (CONSTANTS, lambda d: {"config": {"c": 5}}, "unreadable entry for 'c'"),
    (PROGRAM, lambda d: {**d, "range_constraints": 5}, "range_constraints that are not an object"),
    (PROGRAM, lambda d: {**d, "range_constraints": {"s0": 5}}, "range constraint"),
    (PROGRAM, lambda d: {**d, "graph_module": 5}, "graph_module"),
    (PROGRAM, lambda d: rename(d, "input_specs", "inputs_specs"), "no readable input signature"),
    (PROGRAM, lambda d: [], "not a JSON object"),
])
def test_malformed_configs_give_one_explainer_error(base, tmp_path, rel, edit, match):
    refused(craft(base, tmp_path / "bad.pt2", {rel: edit}), match)


def nested(depth: int) -> bytes:
    return b'{"graph_module": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize("depth,match", [(200_000, "nested too deeply"), (200, "nested more than 64")])
def test_deeply_nested_json_gives_one_explainer_error(base, tmp_path, depth, match):
    """Past the recursion limit json raises RecursionError; under it the depth cap trips."""
    crafted = craft(base, tmp_path / "deep.pt2", raw={PROGRAM: nested(depth)})
    bounded_refusal(crafted, match, seconds=2.0, peak_bytes=32 << 20)


def test_deeply_nested_json_inside_a_spec_string_is_refused(base, tmp_path):
    def edit(doc):
        doc["graph_module"]["module_call_graph"][0]["signature"]["in_spec"] = "[" * 100_000 + "]" * 100_000
        return doc
    refused(craft(base, tmp_path / "deep.pt2", {PROGRAM: edit}), "nested too deeply")


def test_bad_utf8_gives_one_explainer_error(base, tmp_path):
    crafted = craft(base, tmp_path / "latin.pt2", raw={PROGRAM: b'{"x": "\xff"}'})
    refused(crafted, "unreadable models/model.json")


def test_a_two_input_export_is_named_in_a_complete_sentence(tmp_path):
    """Torch's own message ('...exported input tree spec: ' and the spec on the next lines)
    was cut at its first line; the loader now says what is wrong before torch reads it."""
    class Two(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(3, 2)

        def forward(self, x, y):
            return self.lin(x) + y

    program = torch.export.export(Two(), (torch.randn(4, 3), torch.randn(4, 2)))
    torch.export.save(program, str(tmp_path / "two.pt2"))
    message = refused(tmp_path / "two.pt2", "takes 2 inputs")
    assert "(x, y)" in message
    assert message.endswith("a tabular model file must take one tensor of rows, [batch, features]")


def json_paths(doc, prefix=()):
    """Every path to a value in a parsed JSON document."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from json_paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from json_paths(v, prefix + (i,))


def replaced(doc, path, value):
    doc = json.loads(json.dumps(doc))
    if not path:
        return value
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return doc


def test_damaged_programs_always_give_one_explainer_line(base, tmp_path):
    """Every 7th value of model.json and every value of the weights config replaced by a
    wrong type: each archive loads (a harmless change) or is refused with one line; no
    other exception escapes."""
    failures, outcomes = [], {"loaded": 0, "refused": 0}
    with zipfile.ZipFile(base) as z:
        docs = {rel: json.loads(z.read("base/" + rel)) for rel in (PROGRAM, WEIGHTS)}
    cases = [(PROGRAM, p) for p in list(json_paths(docs[PROGRAM]))[::7]] + \
            [(WEIGHTS, p) for p in json_paths(docs[WEIGHTS])]
    for n, (rel, path) in enumerate(cases):
        value = [5, [], None, "x", {}][n % 5]
        crafted = craft(base, tmp_path / f"d{n}.pt2", {rel: lambda d: replaced(d, path, value)})
        try:
            load_exported(crafted)
            outcomes["loaded"] += 1
        except ExplainerError as e:
            outcomes["refused"] += 1
            if "\n" in str(e):
                failures.append((rel, path, "multi-line", str(e)))
        except Exception as e:  # noqa: BLE001  (what this test looks for)
            failures.append((rel, path, value, f"{type(e).__name__}: {e}"))
        os.remove(crafted)
    assert not failures, failures[:5]
    assert outcomes["refused"] > 40 and len(cases) > 60
