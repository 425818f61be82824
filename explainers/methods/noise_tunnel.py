"""NoiseTunnel for any gradient method: SmoothGrad, SmoothGrad-squared or VarGrad over the
method's own attribution (Smilkov et al. 2017, *SmoothGrad: removing noise by adding
noise*; Adebayo et al. 2018 for VarGrad), through Captum's ``NoiseTunnel``.

A method opts in with ``supports_noise_tunnel = True``; it then gets three parameters
(``noise_tunnel``, ``nt_samples``, ``nt_stdevs``), and :meth:`Method.run` averages its
attribution over ``nt_samples`` noisy copies of the input. The noise's standard deviation is
``nt_stdevs`` times the input's own range (max - min), so one setting means the same on
pixels in [0, 1], on embeddings and on standardised table columns. The noise is seeded
(seed 0), so a cached result equals a recomputed one. Baselines that depend on the input
(image blur) are taken from each noisy copy.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Protocol

import torch
from captum.attr import NoiseTunnel

from ..params import ParamSpec
from ..rng import seeded

if TYPE_CHECKING:
    from ..adapters.base import Encoded, ModelAdapter


class Attributes(Protocol):
    """What the tunnel needs of a method (:class:`explainers.methods.base.Method`, which
    imports this module): its plain attribution of one input."""

    def attribute(self, adapter: "ModelAdapter", enc: "Encoded", target: int, params: dict,
                  forward: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, Any]: ...

TYPES = ("none", "smoothgrad", "smoothgrad_sq", "vargrad")
SEED = 0


def specs() -> list[ParamSpec]:
    """The three parameters a method that supports the noise tunnel adds to its own."""
    return [
        ParamSpec("noise_tunnel", "choice", "none",
                  "average the map over noisy copies of the input: smoothgrad (mean), smoothgrad_sq "
                  "(mean of squares, sign dropped) or vargrad (variance); none = off",
                  choices=TYPES, cost=True),
        ParamSpec("nt_samples", "int", 8, "noisy copies (each costs one full run of the method)",
                  min=2, max=200, cost=True),
        ParamSpec("nt_stdevs", "float", 0.1, "noise standard deviation, as a share of the input's range",
                  min=0.0, max=2.0),
    ]


def active(params: dict) -> bool:
    return params.get("noise_tunnel", "none") not in (None, "none")


def cost(base: int, params: dict) -> int:
    """Forward passes with the tunnel: the method's own cost once per noisy copy."""
    return base * int(params["nt_samples"]) if active(params) else base


def attribute(method: Attributes, adapter: "ModelAdapter", enc: "Encoded", target: int, params: dict,
              forward: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, float | None]:
    """``method``'s attribution through Captum's NoiseTunnel (no convergence delta: the
    smoothed map is no longer an integral of one path)."""
    inner = _AsCaptum(method, adapter, enc, target, params, forward)
    spread = float((enc.inputs.max() - enc.inputs.min()).item()) or 1.0
    with seeded(SEED):
        attr = NoiseTunnel(inner).attribute(
            enc.inputs, nt_type=params["noise_tunnel"], nt_samples=int(params["nt_samples"]),
            nt_samples_batch_size=1, stdevs=float(params["nt_stdevs"]) * spread)
    return attr, None


class _AsCaptum:
    """One of our methods seen as a Captum attribution, for ``NoiseTunnel``: it attributes
    one noisy copy at a time (``nt_samples_batch_size=1``), as an :class:`Encoded` that
    shares the original's context (attention mask, token ids)."""

    def __init__(self, method, adapter, enc, target, params, forward) -> None:
        self.method, self.adapter, self.enc, self.target = method, adapter, enc, target
        self.params = {k: v for k, v in params.items() if k != "noise_tunnel"}
        self.forward_func = forward
        self.multiplies_by_inputs = False

    def has_convergence_delta(self) -> bool:
        return False

    def attribute(self, inputs: torch.Tensor, **_: object) -> torch.Tensor:
        noisy = dataclasses.replace(self.enc, inputs=inputs.detach(), key=f"{self.enc.key}|noisy")
        with torch.enable_grad():  # NoiseTunnel runs its loop under no_grad
            attr, _ = self.method.attribute(self.adapter, noisy, self.target, self.params, self.forward_func)
        return attr.detach()

    attribute.__wrapped__ = attribute  # NoiseTunnel calls ``attribute.__wrapped__(self, ...)``
