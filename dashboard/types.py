"""The dashboard's shared types: an input as the pages hold it, what the panels computed on
one rerun, and the hook that loads a Compare flip into a view's editor. Views, panels, Compare
and the exports import them from here, so no view imports a section for a type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from explainers import Attribution
from explainers.adapters.base import Encoded
from explainers.results import Prediction


@dataclass
class Input:
    """An encoded input and the model's prediction on it."""

    enc: Encoded
    prediction: Prediction
    name: str = "original"          # "original" or "edited"
    box: tuple | None = None        # image: the erased rectangle, drawn as an outline
    note: str = ""                  # one line describing the edit
    edit: dict = field(default_factory=dict)  # the edit itself, as the JSON download records it


@dataclass(frozen=True)
class Caveat:
    """A warning that undermines every explanation of one input (text the model cannot
    read): shown at the prediction, and attached to each verdict and export of the input."""

    short: str    # a few words for verdict lines and PNG titles: "18 of 29 tokens are [UNK]"
    message: str  # the whole warning, with the rule that raised it


@dataclass
class PanelRun:
    """Everything the panels computed on this rerun (the Compare section and the exports
    read it)."""

    methods: list[str]
    params: dict[str, dict]
    target: int
    original: dict[str, Attribution] = field(default_factory=dict)
    edited: dict[str, Attribution] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    costs: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> list[str]:
        return [m for m in self.methods if m in self.original]


#: loads a flip into the what-if editor:
#: ``apply(indices, feature_labels, baseline, perturbation, edited)`` (see ModalityView.apply_flip)
Apply = Callable[..., None]
