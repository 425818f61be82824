"""The views protocol: a modality's whole UI is one view, found by the adapter's modality.

A toy fourth modality (a 1-D signal over a tiny conv net) is added here, in the test alone:
its adapter, its view and its page script. The page must render with IG and Occlusion
panels and a Compare section without any file of the dashboard knowing about it.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from explainers import ExplainerError
from explainers.adapters.base import Encoded, ModelAdapter

ROOT = Path(__file__).resolve().parents[2]
PANEL = re.compile(r"δ = (\S+) · Σ = (\S+) · (computed|cache hit)")
LENGTH = 24


class SignalAdapter(ModelAdapter):
    """A 1-D signal of ``LENGTH`` samples; each sample is one interpretable feature."""

    modality = "signal"
    baseline_kinds = ("zero", "mean")
    default_baselines = ("zero",)
    occlusion_window_default = 2
    occlusion_stride_default = 2
    occlusion_window_max = LENGTH
    feature_unit = "sample"

    def encode(self, raw) -> Encoded:
        x = np.asarray(raw, dtype=np.float32).reshape(-1)
        if x.size != LENGTH:
            raise ExplainerError(f"a signal has {LENGTH} samples, got {x.size}")
        inputs = torch.from_numpy(x).view(1, 1, LENGTH).to(self.device)
        return Encoded(inputs=inputs, feature_labels=[f"t{i}" for i in range(LENGTH)],
                       groups=torch.arange(LENGTH, device=self.device).view(1, LENGTH), raw=x)

    def _logits(self, inputs, enc):
        return self.module(inputs)

    def baseline(self, enc, kind):
        if kind == "zero":
            return torch.zeros_like(enc.inputs)
        return enc.inputs.mean().expand_as(enc.inputs).clone()

    def sliding_window(self, enc, window, stride):
        return (1, min(window, LENGTH)), (1, stride)

    def reduce(self, attr, enc):
        return attr[0].sum(0).detach().float().cpu().numpy()


def signal_model() -> SignalAdapter:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv1d(4, 4, 3, padding=1), torch.nn.Tanh(),
                              torch.nn.AdaptiveAvgPool1d(1), torch.nn.Flatten(), torch.nn.Linear(4, 2))
    return SignalAdapter("tiny-signal-cnn", net, ["low", "high"])


SAMPLES = {"sine": np.sin(np.linspace(0, 3 * np.pi, LENGTH)),
           "ramp": np.linspace(-1, 1, LENGTH)}


def define_signal_view():
    """The toy modality's view: a line chart of the scores, a sample picker, no editor."""
    import altair as alt
    import pandas as pd
    import streamlit as st

    from dashboard import render
    from dashboard.views import ModalityView, PickedInput, register_view

    @register_view
    class SignalView(ModalityView):
        modality = "signal"

        def model(self):
            return _adapter()

        def input_picker(self, adapter):
            name = st.selectbox("Signal", list(SAMPLES), key="sig")
            return PickedInput(SAMPLES[name], name, name)

        def what_if(self, adapter, original):
            return None

        def apply_flip(self, adapter, original):
            return lambda indices, features, baseline=None: None

        def draw(self, adapter, inp, a, scale, settings):
            df = pd.DataFrame({"t": np.arange(LENGTH), "score": a.scores})
            st.altair_chart(alt.Chart(df).mark_bar().encode(x="t:O", y="score:Q"), width="stretch")

        def panel_png(self, adapter, inp, a, scale, settings, title):
            return render.bars_png(inp.enc.feature_labels, a.scores, None, scale, title=title)

        def review_inputs(self, adapter):
            return list(SAMPLES.items())

    return SignalView


_ADAPTER: list[SignalAdapter] = []


def _adapter() -> SignalAdapter:
    if not _ADAPTER:
        _ADAPTER.append(signal_model())
    return _ADAPTER[0]


PAGE = """
import streamlit as st
from dashboard import layout
from dashboard.views import get_view
from tests.app.test_views import define_signal_view

define_signal_view()
st.title("Signal")
layout.modality_page(get_view("signal"))
"""


@pytest.fixture
def signal_page(tmp_path):
    path = tmp_path / "signal.py"
    path.write_text(textwrap.dedent(PAGE))
    yield path
    from dashboard.views import unregister_view
    unregister_view("signal")


def test_a_fourth_modality_needs_only_an_adapter_and_a_view(signal_page):
    at = AppTest.from_file(str(signal_page), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.metric[0].value in ("low", "high")
    stats = [m.groups() for c in at.caption if (m := PANEL.search(c.value))]
    assert len(stats) == 3, stats  # IG, GradientSHAP and Occlusion panels, all computed
    assert stats[0][0] != "n/a" and stats[2][0] == "n/a"  # IG reports a delta, Occlusion none
    assert [t.label for t in at.tabs] == ["Agreement", "Faithfulness", "Flips", "Stability",
                                          "Sanity & robustness"]
    captions = "\n".join(c.value for c in at.caption)
    assert f"over {LENGTH} interpretable samples" in captions
    assert "Where the methods disagree most" in "\n".join(m.value for m in at.markdown)
    # the other sample re-explains: the view's picker drives the page
    before = stats
    at.selectbox(key="sig").set_value("ramp")
    at.run()
    assert not at.exception
    assert [m.groups() for c in at.caption if (m := PANEL.search(c.value))] != before


def test_the_toy_modality_is_registered_by_the_test_alone(signal_page):
    from dashboard.views import get_view, list_views
    assert "signal" not in list_views()
    define_signal_view()
    assert get_view("signal").modality == "signal" and "signal" in list_views()


def test_no_module_outside_the_views_tests_the_modality():
    pattern = re.compile(r"modality (==|!=|in \()")
    offenders = [f"{p.relative_to(ROOT)}:{i}" for folder in ("dashboard", "pages")
                 for p in (ROOT / folder).rglob("*.py") if "views" not in p.parts
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not offenders, offenders


def test_every_built_in_modality_has_a_view():
    from dashboard.views import get_view, list_views
    assert list_views()[:3] == ["text", "image", "tabular"]
    for modality in ("text", "image", "tabular"):
        assert get_view(modality).modality == modality
    with pytest.raises(KeyError, match="no dashboard view"):
        get_view("audio")
