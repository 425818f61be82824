"""Bad input gets a clear ExplainerError, never a crash."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from explainers import ExplainerError, explain
from explainers.adapters.image import MAX_PIXELS, load_image


def test_empty_text(tiny_text):
    for text in ("", "   \n\t"):
        with pytest.raises(ExplainerError, match="empty"):
            tiny_text.encode(text)


def test_non_string_text(tiny_text):
    with pytest.raises(ExplainerError, match="string"):
        tiny_text.encode(42)


def test_long_text_is_truncated_with_warning(tiny_text):
    text = " ".join(["the film was good"] * 40)  # 160 words > 64 positions
    enc = tiny_text.encode(text)
    assert enc.inputs.shape[1] == tiny_text.max_length == 64
    assert any("truncated" in w for w in enc.warnings)
    result = explain(tiny_text, text, methods=["saliency"], use_cache=False)
    assert any("truncated" in w for w in result.to_dict()["warnings"])


def test_unknown_words_are_content_not_special(tiny_text):
    pieces = tiny_text.encode("zebra quux", unit="piece")
    assert pieces.feature_labels == ["[UNK]", "[UNK]"]
    words = tiny_text.encode("zebra quux")  # words keep the user's spelling ...
    assert words.feature_labels == ["zebra", "quux"]
    assert (words.groups[:, 0] >= 0).sum() == 2  # ... and are content, never fixed
    assert any("2 of 2 tokens are [UNK]" in w for w in words.warnings)  # ... with a warning


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image")
    with pytest.raises(ExplainerError, match="not an image"):
        load_image(path)


def test_truncated_image(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 120).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ExplainerError, match="truncated or corrupt"):
        load_image(path)


def test_decompression_bomb(tmp_path):
    """A tiny file that declares a huge canvas is refused before it is decoded."""
    side = int((MAX_PIXELS * 1.5) ** 0.5)
    img = Image.new("1", (side, side))  # 1-bit: the PNG compresses to a few kB
    path = tmp_path / "bomb.png"
    img.save(path)
    assert os.path.getsize(path) < 2_000_000
    with pytest.raises(ExplainerError, match="pixels"):
        load_image(path)


def test_missing_image_file():
    with pytest.raises(ExplainerError, match="not found"):
        load_image("/no/such/file.png")


def test_image_input_types(tiny_image, tiny_image_input, tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(tiny_image_input).save(path)
    from_path = tiny_image.encode(str(path)).inputs
    from_pil = tiny_image.encode(Image.open(path)).inputs
    from_array = tiny_image.encode(tiny_image_input).inputs
    from_bytes = tiny_image.encode(path.read_bytes()).inputs
    for other in (from_pil, from_array, from_bytes):
        assert torch.equal(from_path, other)
    assert from_path.shape == (1, 3, 32, 32)
    assert float(from_path.min()) >= 0 and float(from_path.max()) <= 1


def test_tabular_row_errors(tiny_tabular):
    with pytest.raises(ExplainerError, match="out of range"):
        tiny_tabular.encode(10_000)
    row = tiny_tabular.row(0)
    with pytest.raises(ExplainerError, match="missing \\['f0'\\]"):
        tiny_tabular.encode({k: v for k, v in row.items() if k != "f0"})
    with pytest.raises(ExplainerError, match="extra \\['bogus'\\]"):
        tiny_tabular.encode({**row, "bogus": 1.0})
    with pytest.raises(ExplainerError, match="not finite"):
        tiny_tabular.encode({**row, "f1": float("nan")})
    with pytest.raises(ExplainerError, match="numbers"):
        tiny_tabular.encode({**row, "f1": "abc"})


def _scripted_linear(tmp_path, n_in=3, n_out=2):
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(n_in, n_out)), str(path))
    return path


def test_csv_errors(tmp_path):
    from cache.models import torchscript_tabular
    model = _scripted_linear(tmp_path)
    good = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.1, 0.2], "c": [3.0, 1.0, 2.0]})
    cases = {
        "nan.csv": (good.assign(b=[0.5, None, 0.2]), "NaN"),
        "missing.csv": (good[["a", "b"]], "does not accept the CSV's 2 columns"),
        "extra.csv": (good.assign(d=[1.0, 1.0, 1.0]), "does not accept the CSV's 4 columns"),
        "text.csv": (good.assign(c=["x", "y", "z"]), "non-numeric"),
    }
    for name, (frame, message) in cases.items():
        frame.to_csv(tmp_path / name, index=False)
        with pytest.raises(ExplainerError, match=message):
            torchscript_tabular(str(model), str(tmp_path / name))
    (tmp_path / "good.csv").write_text(good.to_csv(index=False))
    adapter = torchscript_tabular(str(model), str(tmp_path / "good.csv"))
    assert adapter.feature_names == ["a", "b", "c"]
    assert adapter.labels == ["class 0", "class 1"]
    res = explain(adapter, 1, methods=["integrated_gradients"], use_cache=False)
    assert res.attributions["integrated_gradients"].scores.shape == (3,)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/attribution_studio_pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    from cache.loaders import load_state_dict
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"weight": _Evil()}, f)
    if os.path.exists("/tmp/attribution_studio_pwned"):
        os.remove("/tmp/attribution_studio_pwned")
    with pytest.raises(ExplainerError, match="refused"):
        load_state_dict(path)
    assert not os.path.exists("/tmp/attribution_studio_pwned")


def test_state_dict_checkpoint_for_timm(tmp_path):
    """A user image checkpoint (safetensors or a plain state dict) loads into timm."""
    import timm
    from safetensors.torch import save_file
    from cache.models import timm_image
    model = timm.create_model("resnet10t", pretrained=False, num_classes=4)
    save_file(model.state_dict(), str(tmp_path / "r.safetensors"))
    torch.save({"state_dict": model.state_dict()}, tmp_path / "r.pth")
    for name in ("r.safetensors", "r.pth"):
        adapter = timm_image("resnet10t", str(tmp_path / name), ("w", "x", "y", "z"))
        assert adapter.labels == ["w", "x", "y", "z"]
        assert torch.equal(adapter.module.fc.weight.cpu(), model.fc.weight)
    with pytest.raises(ExplainerError, match="does not fit"):
        timm_image("resnet18", str(tmp_path / "r.safetensors"))


def test_bad_hf_model_path(tmp_path):
    from cache.models import hf_text
    with pytest.raises(ExplainerError, match="could not load text model"):
        hf_text(str(tmp_path))


def test_explain_rejects_stray_params(tiny_text):
    with pytest.raises(ExplainerError, match="not selected"):
        explain(tiny_text, "the film", methods=["saliency"], params={"occlusion": {"window": 2}})


def test_edit_text_keeps_the_users_spelling(tiny_text):
    enc = tiny_text.encode("The soup was bland, the service was terrible!")
    labels = enc.feature_labels
    out = tiny_text.edit_tokens(enc, delete=[labels.index("bland")])
    assert out == "The soup was, the service was terrible!"
    masked = tiny_text.edit_tokens(enc, mask=[labels.index("soup")])
    assert masked == "The [MASK] was bland, the service was terrible!"
    assert tiny_text.edit_tokens(enc, delete=[0]).startswith("soup was")


def test_image_patch_scores_cover_every_pixel():
    """At a size that is not a multiple of the patch, edge pixels join the last patch both
    when perturbing and when summing scores."""
    from explainers.adapters import ImageAdapter
    from tests.conftest import TinyCNN
    adapter = ImageAdapter("odd", TinyCNN(), ["a", "b", "c"], size=36, patch=8)
    enc = adapter.encode(np.zeros((36, 36, 3), np.uint8))
    assert enc.n_features == 16
    scores = np.ones((36, 36))
    per_patch = adapter.group_scores(scores, enc)
    assert per_patch.sum() == 36 * 36
    assert per_patch[-1] == 12 * 12 and per_patch[0] == 64


def test_tabular_reference_data_is_part_of_the_cache_key(tiny_tabular):
    from explainers.adapters import TabularAdapter
    from tests.conftest import tiny_frame
    other = TabularAdapter("tiny-mlp", tiny_tabular.module, tiny_frame(seed=1), ["no", "yes"])
    assert other.fingerprint == tiny_tabular.fingerprint
    assert other.result_key != tiny_tabular.result_key
