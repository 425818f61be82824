"""What a review loads and does: the model's spec (what a Ray worker loads), the options every
input is reviewed with, and the size of a micro-batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api import load_model
from ..errors import ExplainerError

#: inputs per micro-batch (a Ray task; the local engine writes after each)
BATCH_SIZE = 8
EXPLAIN_TARGETS = ("predicted", "true")


@dataclass(frozen=True)
class ModelSpec:
    """The arguments of :func:`explainers.load_model`: what a Ray worker loads the model
    from (the spec travels, never the weights).

    Args:
        spec, modality, checkpoint, data, labels, label_column, output: as for
            :func:`explainers.load_model`. Paths must exist on every machine that runs a
            worker.
    """
    spec: str = "text"
    modality: str | None = None
    checkpoint: str | None = None
    data: str | None = None
    labels: tuple[str, ...] | None = None
    label_column: str | None = None
    output: str | None = None

    def load(self) -> Any:
        return load_model(self.spec, self.modality, checkpoint=self.checkpoint, data=self.data,
                          labels=list(self.labels) if self.labels else None,
                          label_column=self.label_column, output=self.output)


@dataclass(frozen=True)
class ReviewOptions:
    """How each input is reviewed (the same for every input of a run).

    Args:
        methods, params, metrics, metric_params, use_cache, unit: as for
            :func:`explainers.explain`.
        explain: ``"predicted"`` explains the predicted class; ``"true"`` the ground-truth
            label (inputs without one get an error line).
        precision: as for :func:`explainers.explain` (None: ``"fp32"``); each worker resolves
            it for its own device.
    """
    methods: tuple[str, ...] | None = None
    params: dict | None = None
    metrics: tuple[str, ...] = ()
    metric_params: dict | None = None
    unit: str | None = None
    use_cache: bool = True
    explain: str = "predicted"
    precision: str | None = None


def as_spec(model: Any) -> ModelSpec:
    """A :class:`ModelSpec` from a spec, a ``load_model`` string or its keyword arguments."""
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, str):
        return ModelSpec(model)
    if isinstance(model, dict):
        return ModelSpec(**model)
    raise ExplainerError("engine='ray' loads the model on each worker from its spec: pass a "
                         "ModelSpec (the load_model arguments), not a loaded model; weights are "
                         "never shipped from the driver")
