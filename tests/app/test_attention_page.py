"""AppTest of the Text page's Attention section (the tiny random BERT of conftest, loaded as a
user's local model): the heat map holds the model's own weights for the chosen layer and
head, the [CLS] row is marked, user tokens never reach HTML, and the attention methods run
as panels with their note."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
XSS = "<img src=x>"
TEXT = f"the soup was bland {XSS}"


def page(tiny_text_dir, **params) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / "text.py"), default_timeout=240)
    for k, v in {"model_src": "custom", "model": str(tiny_text_dir), "text": TEXT, **params}.items():
        at.query_params[k] = v
    return at


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def attention_chart(at: AppTest):
    """(title, cells) of the attention heat map."""
    for c in at.get("vega_lite_chart"):
        title = json.loads(c.proto.spec).get("title")
        if isinstance(title, str) and title.startswith("Layer "):
            cells = pa.ipc.open_stream(c.proto.datasets[0].data.data).read_all().to_pandas()
            return title, cells
    raise AssertionError("no attention heat map on the page")


def own_attentions(tiny_text, text: str) -> np.ndarray:
    """The model's own ``output_attentions`` (an eager copy made here): [layers, heads, T, T]."""
    module = copy.deepcopy(tiny_text.module)
    module.set_attn_implementation("eager")
    enc = tiny_text.encode(text)
    with torch.no_grad():
        out = module(inputs_embeds=enc.inputs, attention_mask=enc.context["attention_mask"],
                     output_attentions=True)
    return np.stack([a[0].numpy() for a in out.attentions])


def test_attention_section_shows_the_models_own_weights(tiny_text_dir, tiny_text):
    at = run(page(tiny_text_dir))
    assert "Attention" in [h.value for h in at.subheader]
    layer, head = at.selectbox(key="att.layer"), at.selectbox(key="att.head")
    assert layer.options == ["1", "2 (last)"] and layer.value == 2  # the last layer by default
    assert head.options == ["mean of heads", "head 1", "head 2"] and head.value == "mean"
    title, cells = attention_chart(at)
    assert title == "Layer 2 (last), mean of heads"
    att = own_attentions(tiny_text, TEXT)
    t = att.shape[-1]
    assert len(cells) == t * t
    np.testing.assert_allclose(cells["weight"].to_numpy().reshape(t, t), att[1].mean(0), rtol=1e-5, atol=1e-7)
    # tokens on both axes, in position order, specials included; the [CLS] row marked
    keys = list(dict.fromkeys(cells["key"]))
    assert keys[0] == "0 [CLS]" and keys[-1] == f"{t - 1} [SEP]" and "6 img" in keys
    assert set(cells.loc[cells["is_cls"], "query"]) == {"0 [CLS]"}
    assert any("[CLS] row is outlined" in c.value for c in at.caption)
    # another layer and head: that map
    layer.set_value(1)
    head.set_value("2")
    run(at)
    title, cells = attention_chart(at)
    assert title == "Layer 1, head 2"
    np.testing.assert_allclose(cells["weight"].to_numpy().reshape(t, t), att[0, 1], rtol=1e-5, atol=1e-7)


def test_user_tokens_never_reach_html_unescaped(tiny_text_dir):
    at = run(page(tiny_text_dir))
    assert not [h.value for h in at.get("html") if "<img" in h.value]
    assert not [m.value for m in list(at.markdown) + list(at.caption) if "<img" in m.value]


def test_attention_methods_as_panels_with_their_note(tiny_text_dir):
    at = run(page(tiny_text_dir))
    at.multiselect(key="methods").set_value(["attention", "attention_x_gradient"])
    run(at)
    notes = [c.value for c in at.caption if "negative by construction" in c.value]
    assert len(notes) == 2, [c.value for c in at.caption]
    assert any("read off the first token's row" in n for n in notes)
    assert at.selectbox(key="attention.aggregation").value == "last_layer"
