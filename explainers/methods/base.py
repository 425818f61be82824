"""Base class for attribution methods and the helpers they share."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from ..params import ParamSpec
from ..pooling import Pool, deferred, looped
from . import noise_tunnel

if TYPE_CHECKING:
    from ..adapters.base import Encoded, ModelAdapter

#: ``modalities`` value of a method that works on any adapter (it needs only what every
#: adapter gives: an input tensor, a forward function, baselines and feature groups)
ANY_MODALITY = "any"


class Method:
    """One attribution method, modality-agnostic.

    Subclasses set the class attributes and implement :meth:`attribute`. A method sees the
    model only through the adapter: the encoded input tensor, a forward function, the
    baselines and the feature groups.
    """

    name: str = ""
    title: str = ""
    #: one line for the dashboard's home page: what it computes and when to trust it
    summary: str = ""
    paper: str = ""
    #: the adapters' ``modality`` values this method supports, or ``(ANY_MODALITY,)``
    modalities: Sequence[str] = (ANY_MODALITY,)
    has_convergence_delta: bool = False
    uses_baselines: bool = True
    #: scores scale with (input - baseline): gradient x (input - baseline) methods, and
    #: methods that move features to a baseline. Part of such a map is the input itself,
    #: whatever the model (the input-factor caveat of Adebayo et al. 2018)
    input_factor: bool = False
    #: the scores split the output's change among the features, so their sum means something
    #: (compare it with f(x) - f(baseline)); False for maps that are weights or relevances
    #: (Grad-CAM, attention), whose sum the dashboard does not show
    additive: bool = True
    #: gradient methods can be smoothed through Captum's NoiseTunnel (see ``noise_tunnel``)
    supports_noise_tunnel: bool = False
    #: the method evaluates points between the input and a baseline (IG's path,
    #: GradientSHAP's samples), so it is offered only baselines that are points of the
    #: input space: not an adapter's ``edit_baselines`` (generation's deleted words)
    interpolates: bool = False
    #: the scores are the mean of ``n_samples`` independent random draws (GradientSHAP,
    #: SmoothGrad, Shapley sampling), so fewer draws give the same estimate, only noisier
    #: (the dashboard's first pass uses that); not regressions on samples (LIME, KernelSHAP)
    averages_samples: bool = False
    #: the method's control flow never depends on the model's outputs and it reaches the
    #: model only through the ``forward`` it is given (no hooks), so
    #: :meth:`attribute_many` may record its model calls and pool them across inputs
    #: (:func:`explainers.pooling.deferred`); otherwise it loops over the inputs
    defer_model_calls: bool = False
    #: the method takes no gradient and reads only the model's outputs, so under the
    #: ``bf16-forward`` precision its passes may run in bf16 (:mod:`explainers.precision`);
    #: every other method (gradients, hooks on attention or activations) runs in float32
    forward_only: bool = False
    #: False for a method that runs forwards only but reads more than the outputs (the
    #: attention weights), so it is not ``defer_model_calls``: the cost estimates price its
    #: rows as forward rows instead of counting every row of such a method as a gradient row
    takes_gradients: bool = True

    @classmethod
    def supports(cls, modality: str) -> bool:
        """Whether the method applies to inputs of ``modality`` (LIT's ``is_compatible``)."""
        return ANY_MODALITY in cls.modalities or modality in cls.modalities

    def param_specs(self, adapter: "ModelAdapter") -> list[ParamSpec]:
        """The parameters of this method for ``adapter``'s modality."""
        specs = self.own_params(adapter)
        if self.uses_baselines:
            specs.append(baseline_spec(adapter, self.default_baselines(adapter), self.interpolates))
        if self.supports_noise_tunnel:
            specs.extend(noise_tunnel.specs())
        return specs

    def own_params(self, adapter: "ModelAdapter") -> list[ParamSpec]:
        return []

    def default_baselines(self, adapter: "ModelAdapter") -> Sequence[str] | None:
        """The default of the ``baselines`` parameter (None: the adapter's default)."""
        return None

    def notes(self, adapter: "ModelAdapter", enc: "Encoded", params: dict) -> list[str]:
        """Sentences the user should read next to this result (what it really computed)."""
        return []

    def cost(self, adapter: "ModelAdapter", enc: "Encoded", params: dict) -> int:
        """Examples passed through the model (forward passes of one input)."""
        raise NotImplementedError

    def total_cost(self, adapter: "ModelAdapter", enc: "Encoded", params: dict) -> int:
        """Forward passes of a whole run: :meth:`cost`, times the noise tunnel's copies."""
        return noise_tunnel.cost(self.cost(adapter, enc, params), params)

    def run(self, adapter: "ModelAdapter", enc: "Encoded", target: int, params: dict,
            forward: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, float | None]:
        """:meth:`attribute`, through the noise tunnel when its parameters ask for it."""
        if noise_tunnel.active(params):
            return noise_tunnel.attribute(self, adapter, enc, target, params, forward)
        return self.attribute(adapter, enc, target, params, forward)

    def attribute_many(self, adapter: "ModelAdapter", encs: Sequence["Encoded"], targets: Sequence[int],
                       params: dict, pool: Pool) -> list:
        """:meth:`run` on many inputs, the model work pooled across them where possible.

        Args:
            adapter: the shared model adapter (each input runs on its ``for_run`` copy).
            encs: the encoded inputs.
            targets: one class per input.
            params: the resolved parameters (the same for every input).
            pool: a :class:`explainers.pooling.Pool` over ``encs``, which evaluates model
                batches of many inputs together.

        Returns:
            Per input, what :meth:`run` returns (``(attr, delta)``) or the exception that
            stopped it. The default pools the model calls of methods that set
            :attr:`defer_model_calls` and otherwise runs one input at a time, so a new
            method works unchanged; override it for a batched algorithm of your own.
        """
        if self.defer_model_calls:
            return deferred(self, adapter, encs, targets, params, pool)
        return looped(self, adapter, encs, targets, params, pool)

    def attribute(self, adapter: "ModelAdapter", enc: "Encoded", target: int, params: dict,
                  forward: Callable[[torch.Tensor], torch.Tensor]
                  ) -> tuple[torch.Tensor, float | dict | None]:
        """Attribution shaped like ``enc.inputs`` and the convergence delta: None, a float,
        or a dict with ``convergence_delta`` and further statistics (several baselines)."""
        raise NotImplementedError


def baseline_spec(adapter: "ModelAdapter", default: Sequence[str] | None = None,
                  interpolates: bool = False) -> ParamSpec:
    """The ``baselines`` parameter. For a method that ``interpolates``, the adapter's
    ``edit_baselines`` (edits of the raw input, no point to interpolate toward) are left out
    and the default is the adapter's ``path_baselines`` where it declares them."""
    kinds = tuple(adapter.baseline_kinds)
    if interpolates:
        edits = set(getattr(adapter, "edit_baselines", ()))
        kinds = tuple(k for k in kinds if k not in edits)
        default = default or tuple(getattr(adapter, "path_baselines", ())) or None
    return ParamSpec(
        "baselines", "multichoice", list(adapter.default_baselines if default is None else default),
        "reference input(s); several are averaged (IG, occlusion) or sampled (GradientSHAP)",
        choices=kinds, cost=True)


def seed_spec() -> ParamSpec:
    """The ``seed`` parameter of every sampling method (seeded via :func:`explainers.rng.seeded`)."""
    return ParamSpec("seed", "int", 0, "random seed (results are reproducible per seed)",
                     min=0, max=2**31 - 1)


def repeat_for_baselines(enc: "Encoded", baselines: torch.Tensor) -> torch.Tensor:
    """The input repeated once per baseline row, so Captum runs all baselines in one call."""
    return enc.inputs.expand((baselines.shape[0],) + tuple(enc.inputs.shape[1:])).contiguous()


def n_baselines(adapter: "ModelAdapter", enc: "Encoded", params: dict) -> int:
    return sum(adapter.baseline_rows(kind) for kind in params["baselines"])


def share_by_group(attr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Divide each element by its feature group's size.

    Perturbation methods over groups (feature ablation, KernelSHAP, LIME) give every element
    of a group the group's whole effect; this turns that into each element's share, so a
    feature's summed score is its effect.
    """
    sizes = torch.bincount(mask[0].flatten()).to(attr.dtype)
    return attr / sizes[mask[:1]]


def n_windows(shape: Sequence[int], window: Sequence[int], stride: Sequence[int]) -> int:
    """Number of occlusion windows Captum slides over ``shape`` (it rounds up)."""
    return math.prod(math.ceil((d - w) / s) + 1 for d, w, s in zip(shape, window, stride))
