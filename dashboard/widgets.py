"""Widgets generated from the engine's declarations.

A method's parameter widgets come from its ``param_specs(adapter)`` (LIT's ``config_spec``
idea): int/float -> number input, choice -> select box, multichoice -> multiselect. Adding
a method to the registry adds its panel and its widgets here without touching the UI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from explainers import DEFAULT_METHODS, get_method, list_methods, precision

from .state import BIND, param_key

DEFAULT_MAX_COST = 20_000


@dataclass
class Settings:
    """Sidebar settings shared by every panel of a page.

    Attributes:
        max_cost: refuse a method whose settings need more forward passes than this.
        shared_scale: one colour scale for every panel (else one per panel).
        options: the view's own display options (from ``view.sidebar_options()``).
        live: re-run on every change; off, runs wait for "Apply changes".
    """

    max_cost: int
    shared_scale: bool
    options: dict = field(default_factory=dict)
    live: bool = True
    #: the precision policy of the page's model work (:mod:`explainers.precision`)
    precision: str = precision.DEFAULT
    #: a placeholder at the top of the page for the "Running … Stop" line
    status: Any = None


def sidebar_settings(view) -> Settings:
    """Cost cap, colour-scale mode and the view's own display options (in the sidebar)."""
    with st.sidebar:
        st.subheader("Run settings")
        # not bound to the URL: a link copied after Stop must not open the view paused
        live = st.toggle("Live updates", value=True, key="live",
                         help="On: every change re-runs the panels at once. Off: make several changes, "
                              "then press 'Apply changes' for one run. 'Stop' switches it off. A "
                              "setting of this session, never part of a shared link.")
        cap = st.number_input(
            "Cost cap (forward passes per method)", min_value=1, max_value=10_000_000,
            value=DEFAULT_MAX_COST, step=1000, key="cap", bind=BIND,
            help="A method whose settings need more forward passes than this is refused "
                 "before it runs. The estimate is shown in each panel.")
        scales = ["shared", "per panel"]
        scale = st.radio("Colour scale", scales, key="scale", bind=BIND, horizontal=True,
                         index=scales.index(view.default_scale),
                         help="Shared: one scale for every panel (and for before/after), so "
                              "colours compare across methods. Per panel: each map uses its own "
                              "maximum (the default for images, whose maps differ in concentration).")
        policy = precision_select("precision")
        options = view.sidebar_options()
    return Settings(int(cap), scale == "shared", options, live=bool(live), precision=policy)


PRECISION_HELP = ("fp32 (default): every pass in float32. bf16-forward: the passes without "
                  "gradients (Occlusion, ablation, KernelSHAP, LIME, the metrics' re-predictions) "
                  "in bf16 where the device has bf16 units (CUDA, a CPU with AMX-BF16 / AVX512-BF16; "
                  "elsewhere they run in fp32, bf16 being emulated and slower); gradients, the "
                  "prediction and every reported number stay float32, and flips and verdicts near "
                  "alpha are confirmed in fp32. auto: bf16-forward only where it was measured faster.")


def precision_select(key: str, where: Any = st) -> str:
    """The precision policy select box (:data:`explainers.precision.POLICIES`)."""
    return where.selectbox("Precision", list(precision.POLICIES), key=key, bind=BIND, help=PRECISION_HELP)


def precision_caption(policy: str | None, device) -> str:
    """What ``policy`` runs as on ``device``, in one line."""
    policy = precision.check(policy)
    ran = precision.resolve(policy, device)
    why = {("auto", "fp32"): " (auto: no measured bf16 speed-up on this device)",
           ("auto", "bf16-forward"): " (auto: a CPU with AMX-BF16, where bf16 was measured faster)",
           ("bf16-forward", "fp32"): " (bf16-forward asked: this device has no bf16 units, so bf16 "
                                     "would be emulated and slower)"}.get((policy, ran), "")
    return f"Model passes: {ran}{why}."


def method_picker(modality: str, default_methods=None) -> list[str]:
    """Multiselect of the registered methods for ``modality`` (default ``default_methods``,
    else IG, GradientSHAP, Occlusion); one panel per selected method, in the order picked."""
    names = list_methods(modality)
    default = [m for m in (default_methods or DEFAULT_METHODS) if m in names]
    return st.multiselect(
        "Methods (one panel each)", names, default=default, key="methods", bind=BIND,
        format_func=lambda n: get_method(n).title,
        help="Each method gets its own column, its own parameters and the same renderer.")


def param_widgets(adapter, method: str) -> dict:
    """One widget per declared parameter of ``method``; returns ``{param: value}``."""
    values = {}
    for spec in get_method(method).param_specs(adapter):
        key = param_key(method, spec.name)
        label = spec.name.replace("_", " ")
        if spec.type == "int" and getattr(spec, "auto", False) and st.checkbox(
                f"{label}: auto", value=spec.default == "auto", key=f"{key}.auto", bind=BIND,
                help="the method chooses it (IG: refines until its convergence delta meets rtol)"):
            values[spec.name] = "auto"
        elif spec.type == "int":
            lo = int(spec.min) if spec.min is not None else None
            hi = int(spec.max) if spec.max is not None else None
            values[spec.name] = st.number_input(label, min_value=lo, max_value=hi, value=int(spec.default),
                                                step=1, key=key, bind=BIND, help=spec.help)
        elif spec.type == "float":
            lo = float(spec.min) if spec.min is not None else None
            hi = float(spec.max) if spec.max is not None else None
            small = 0 < abs(float(spec.default)) < 0.01  # IG's rtol 0.001: steps of its own size
            values[spec.name] = st.number_input(label, min_value=lo, max_value=hi, value=float(spec.default),
                                                step=abs(float(spec.default)) if small else 0.01,
                                                format="%.4f" if small else "%.3f", key=key, bind=BIND,
                                                help=spec.help)
        elif spec.type == "choice":
            choices = list(spec.choices)
            values[spec.name] = st.selectbox(label, choices, index=choices.index(spec.default),
                                             key=key, bind=BIND, help=spec.help)
        elif spec.type == "multichoice":
            values[spec.name] = st.multiselect(label, list(spec.choices), default=list(spec.default),
                                               key=key, bind=BIND, help=spec.help)
        else:  # a type the UI does not know: keep the default, say so
            st.caption(f"{label}: {spec.default!r} (no widget for type {spec.type})")
    return values


def params_caption(values: dict) -> str:
    """``name=value · ...`` under a panel; the noise tunnel's settings only when it is on."""
    if values.get("noise_tunnel", "none") == "none":
        values = {k: v for k, v in values.items() if k not in ("noise_tunnel", "nt_samples", "nt_stdevs")}

    def fmt(v):
        return "+".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
    return " · ".join(f"{k}={fmt(v)}" for k, v in values.items())


def target_picker(adapter, prediction) -> int:
    """Class to explain: the predicted class by default, or any label."""
    n = len(adapter.labels)
    choice = st.selectbox(
        "Explain class", [-1] + list(range(n)), index=0, key="target", bind=BIND,
        format_func=lambda i: "the predicted class" if i == -1 else f"{adapter.labels[i]}",
        help="Attributions explain the score of this class; the default follows the prediction.")
    return prediction.index if choice == -1 else int(choice)
