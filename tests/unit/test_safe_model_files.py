"""Crafted model files cannot run code when loaded.

Each crafted file carries a payload that creates a marker file. The tests show the payload
is live (plain ``pickle.loads`` / plain ``torch.export.load`` runs it), then that our loaders
refuse the file and the marker never appears.

What ``torch.export.load`` does (torch 2.14, read from its source): a weight or constant
flagged ``use_pickle`` is read with ``torch.load(weights_only=False)``; "opaque" constants
with ``pickle.loads``; sample inputs retry with ``weights_only=False`` when the safe read
fails; shape expressions go through ``sympy.sympify`` (``eval``); ``guards_code`` is
compiled into Python; ``data/aotinductor/`` holds native libraries. So
:func:`cache.loaders.check_pt2_archive` inspects the archive before torch reads it.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from pathlib import Path

import pytest
import torch

from cache.loaders import check_pt2_archive, load_exported, load_torchscript
from explainers import ExplainerError


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears if code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def good_pt2(path: Path) -> Path:
    lin = torch.nn.Linear(3, 1).eval()
    program = torch.export.export(lin, (torch.randn(2, 3),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return path


def rewrite(src: Path, dst: Path, change) -> Path:
    """Copy a zip, letting ``change(name, data) -> data | None`` edit (or drop) each entry;
    ``change(None, None)`` may return extra ``{name: data}`` to add."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
        for name, data in (change(None, None) or {}).items():
            zout.writestr(name, data)
    return dst


def pickled_weights(src: Path, dst: Path, marker: Path) -> Path:
    """The first weight stored as a pickle (``use_pickle``) whose unpickling runs code."""
    def change(name, data):
        if name is None:
            return None
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("/data/weights/weight_0"):
            return pickle.dumps(Payload(marker))
        return data
    return rewrite(src, dst, change)


def sympy_eval(src: Path, dst: Path, marker: Path) -> Path:
    """A symbolic shape expression that ``sympy.sympify`` would evaluate as Python."""
    def change(name, data):
        if name is None or "/models/" not in name:
            return data
        text = data.decode()
        symbol = re.search(r'"expr_str": "(Symbol\(\'(\w+)\'[^"]*)"', text)
        assert symbol, "the exported program has no symbolic batch size"
        evil = f"__import__('builtins').open('{marker}', 'w') and {symbol.group(1)}"
        return text.replace(symbol.group(1), evil).encode()
    return rewrite(src, dst, change)


def test_good_program_loads_and_runs(tmp_path):
    module = load_exported(good_pt2(tmp_path / "ok.pt2"))
    assert module(torch.randn(5, 3)).shape == (5, 1)


def test_pickled_weight_is_refused_and_runs_no_code(tmp_path):
    marker = tmp_path / "marker_pickle"
    crafted = pickled_weights(good_pt2(tmp_path / "ok.pt2"), tmp_path / "evil.pt2", marker)
    with pytest.raises(ExplainerError, match="pickle"):
        load_exported(crafted)
    assert not marker.exists()


def test_torch_export_load_alone_would_run_the_pickle(tmp_path):
    """The control: without our check, torch.export.load runs the payload (if a later torch
    stops doing so, this says so instead of failing)."""
    marker = tmp_path / "marker_control"
    crafted = pickled_weights(good_pt2(tmp_path / "ok.pt2"), tmp_path / "evil.pt2", marker)
    try:
        torch.export.load(str(crafted))
    except Exception:  # noqa: BLE001  (the payload returns a file object, not a tensor)
        pass
    if not marker.exists():
        pytest.skip("this torch no longer unpickles use_pickle weights unsafely")
    assert marker.exists()


def test_shape_expression_code_is_refused(tmp_path):
    marker = tmp_path / "marker_sympy"
    crafted = sympy_eval(good_pt2(tmp_path / "ok.pt2"), tmp_path / "evil.pt2", marker)
    with pytest.raises(ExplainerError, match="shape expression"):
        load_exported(crafted)
    assert not marker.exists()
    try:  # the control: torch's deserializer evaluates the expression
        torch.export.load(str(crafted))
    except Exception:  # noqa: BLE001
        pass
    if not marker.exists():
        pytest.skip("this torch no longer evaluates shape expressions as Python")


@pytest.mark.parametrize("what,edit,message", [
    ("guard code", lambda p: p.update(guards_code=["__import__('os')"]), "guard code"),
    ("a non-ATen call", lambda p: p["graph_module"]["graph"]["nodes"][0].update(target="torch.os.system"),
     "not an ATen operator"),
])
def test_program_level_tricks_are_refused(tmp_path, what, edit, message):
    def change(name, data):
        if name is None or "/models/" not in name:
            return data
        program = json.loads(data)
        edit(program)
        return json.dumps(program).encode()
    crafted = rewrite(good_pt2(tmp_path / "ok.pt2"), tmp_path / "evil.pt2", change)
    with pytest.raises(ExplainerError, match=message):
        load_exported(crafted)


@pytest.mark.parametrize("extra", ["data/aotinductor/model/model.so", "serialized_state_dict.pt",
                                   "data/weights/model.pt", "data/constants/opaque_obj_0"])
def test_files_outside_a_plain_program_are_refused(tmp_path, extra):
    src = good_pt2(tmp_path / "ok.pt2")
    root = zipfile.ZipFile(src).namelist()[0].split("/")[0]
    crafted = rewrite(src, tmp_path / "evil.pt2",
                      lambda n, d: {f"{root}/{extra}": pickle.dumps(Payload(tmp_path / "m"))} if n is None else d)
    with pytest.raises(ExplainerError, match="plain exported program"):
        check_pt2_archive(crafted)
    assert not (tmp_path / "m").exists()


def test_not_a_zip_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(pickle.dumps(Payload(tmp_path / "m")))
    with pytest.raises(ExplainerError, match="not a torch.export program"):
        load_exported(junk)
    assert not (tmp_path / "m").exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit itself is deprecated
def test_torchscript_with_a_code_running_pickle_is_refused(tmp_path):
    marker = tmp_path / "marker_ts"
    path = tmp_path / "ok.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 1)), str(path))
    evil_pickle = pickle.dumps(Payload(marker), protocol=2)
    pickle.loads(evil_pickle)  # the payload is live: plain pickle runs it
    assert marker.exists()
    marker.unlink()
    crafted = rewrite(path, tmp_path / "evil.pt", lambda n, d: None if n is None else
                      (evil_pickle if n.endswith("/data.pkl") else d))
    with pytest.raises(ExplainerError, match="not a TorchScript model"):
        load_torchscript(crafted)
    assert not marker.exists()
    # and through the user-model loader, which picks the reader by suffix
    from cache.models import file_tabular
    csv = tmp_path / "rows.csv"
    csv.write_text("a,b,c\n1,2,3\n4,5,6\n")
    with pytest.raises(ExplainerError):
        file_tabular(str(crafted), str(csv))
    assert not marker.exists()
