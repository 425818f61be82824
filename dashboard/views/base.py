"""The protocol every modality view implements, and the registry that finds a view by the
adapter's ``modality``.

A *view* is the whole dashboard UI of one modality: where its model and input come from,
how one attribution is drawn, which colour-scale rule applies, the what-if editor and how a
Compare "flip" is loaded into it, the modality's sidebar options, the PNG/CSV export of a
panel, and the Review page's input choices. Everything else (prediction strip, panels,
Compare, downloads) is shared and lives in ``dashboard/layout.py``, ``panels.py`` and
``compare.py``, which never branch on the modality: they ask the view.

Adding a modality (see README, "Adding a modality"):

1. an adapter in ``explainers/adapters/`` (encode, forward, baselines, groups);
2. a view here: subclass :class:`ModalityView`, decorate it with :func:`register_view`;
3. sample inputs for its input picker and Review choices;
4. a page in ``pages/`` (title, caption, ``layout.modality_page(get_view("..."))``) and its
   entry in ``dashboard/app.py``;
5. tests: a tiny adapter in ``tests/conftest.py`` for the engine's contract tests and an
   AppTest of the page (``tests/app/test_views.py`` shows a toy 1-D signal modality).
"""

from __future__ import annotations

import csv
import io
import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import streamlit as st

from explainers import Attribution, ExplainerError
from explainers.review import InputSource, Item, ModelInfo

from .. import models, render
from ..state import BIND
from ..types import Apply, Caveat, Input
from ..widgets import Settings



@dataclass
class PickedInput:
    """What an input picker returns: the raw input, a hashable key that identifies it in
    per-session memos, and an id for downloads and links."""

    raw: Any
    key: Any
    input_id: Any


class ModalityView(ABC):
    """The dashboard UI of one modality. Subclasses set the class attributes and implement
    the abstract methods; the others have defaults that suit per-feature (1-D) scores."""

    #: the adapter's ``modality`` this view draws
    modality: ClassVar[str] = ""
    #: the sidebar's colour-scale default: "shared" or "per panel"
    default_scale: ClassVar[str] = "shared"
    #: Compare metrics computed without a click (the others wait for a button)
    auto_metrics: ClassVar[tuple[str, ...]] = ("agreement",)
    #: full colour at this percentile of |score| (None: at the maximum). Images use 99.5, so
    #: one hot pixel does not wash a map out.
    scale_percentile: ClassVar[float | None] = None
    #: the methods the page opens with (None: the engine's ``DEFAULT_METHODS``)
    default_methods: ClassVar[tuple[str, ...] | None] = None

    # -- sidebar and input -------------------------------------------------------------------
    @abstractmethod
    def model(self):
        """Draw the model picker in the sidebar and return the loaded adapter (the page stops
        with a message when the model cannot be loaded)."""

    def sidebar_options(self) -> dict:
        """Draw the modality's display options in the sidebar; returns them by name (they
        reach :meth:`draw`, :meth:`shown_scores` and :meth:`legend` as ``settings.options``)."""
        return {}

    @abstractmethod
    def input_picker(self, adapter) -> PickedInput:
        """Draw the input picker (samples, upload, row choice) above the prediction."""

    def encode(self, adapter, raw: Any):
        """Encode a raw input the way this view shows it (text: words or word pieces). The
        picked input's ``key`` must name every choice that changes the encoding."""
        return adapter.encode(raw)

    def caveat(self, adapter, inp: Input) -> Caveat | None:
        """A warning that undermines every explanation of ``inp`` (text: the model cannot
        read it), or None. The page shows it at the prediction and qualifies each verdict
        and export with it."""
        return None

    def prediction_strip(self, adapter, original: Input, edited: Input | None) -> int | None:
        """Draw the model's output above the panels and return the output every panel
        explains; None (the default) leaves it to the shared strip (class bars, a score's
        range). Generation draws its continuation and target tokens instead."""
        return None

    # -- what-if ---------------------------------------------------------------------------------
    @abstractmethod
    def what_if(self, adapter, original: Input) -> Input | None:
        """Draw the counterfactual editor; return the edited input, or None when unedited."""

    @abstractmethod
    def apply_flip(self, adapter, original: Input) -> Apply:
        """A callback that loads a Compare flip into the editor:
        ``apply(indices, feature_labels, baseline, perturbation, edited)``, where ``edited``
        is the edited input the metric scored when the modality has one (text), so that the
        editor shows exactly that edit."""

    # -- drawing -----------------------------------------------------------------------------------
    def shown_scores(self, a: Attribution, settings: Settings) -> np.ndarray:
        """The scores as drawn (a display transform such as smoothing; exports keep raw scores)."""
        return a.scores

    def robust_max(self, scores: np.ndarray, settings: Settings) -> float:
        """The magnitude mapped to full colour for one map as drawn (see :attr:`scale_percentile`)."""
        return render.robust_max(scores, self.scale_percentile)

    def legend(self, settings: Settings) -> tuple[tuple[str, ...], str]:
        """The signs the maps show and a note on their scaling, for the shared colour key."""
        return ("positive", "negative"), ""

    @abstractmethod
    def draw(self, adapter, inp: Input, a: Attribution, scale: float, settings: Settings) -> None:
        """Draw one attribution of ``inp`` with full colour at ``scale``."""

    def draw_disagreement(self, adapter, inp: Input, disagreement: np.ndarray, scale: float) -> None:
        """Draw the per-feature disagreement of the methods over the input (optional)."""

    def extra_sections(self, adapter, original: Input, edited: Input | None) -> None:
        """Sections of the modality's own, drawn below the panels (text: Attention); none by
        default."""

    def unit(self, adapter) -> str:
        """What the interpretable features are called, plural ("tokens", "16x16 patches")."""
        return f"{adapter.feature_unit}s"

    # -- exports -------------------------------------------------------------------------------------
    def scores_csv(self, adapter, enc, a: Attribution) -> bytes:
        """One row per feature: index, feature, value (when the input has named values), score."""
        buf = io.StringIO()
        w = csv.writer(buf)
        values = enc.raw if isinstance(enc.raw, dict) else {}
        w.writerow(["index", "feature", "value", "score"])
        for i, (f, s) in enumerate(zip(enc.feature_labels, np.asarray(a.scores).tolist())):
            w.writerow([i, f, values.get(f, ""), f"{s:.8g}"])
        return buf.getvalue().encode()

    @abstractmethod
    def panel_png(self, adapter, inp: Input, a: Attribution, scale: float, settings: Settings,
                  title: str) -> bytes:
        """The panel as a PNG (same colours as on screen), with ``title`` where it fits."""

    # -- review ---------------------------------------------------------------------------------------
    @abstractmethod
    def review_inputs(self, adapter) -> list[tuple[Any, Any] | Item]:
        """Draw the Review page's input choices; return ``(id, raw input)`` pairs, or
        :class:`~explainers.review.Item` s (with their label, or the error of a row that
        cannot be read) as :func:`read_review_file` reads an uploaded file."""

    def describe_input(self, adapter, ident: Any, raw: Any) -> Any:
        """The input itself as a review line records it (JSON-able): the text, the file
        name, the row's values."""
        return raw if isinstance(raw, str) else ident

    def true_label(self, adapter, ident: Any, raw: Any) -> str | None:
        """The ground-truth label of a review input, where the data has one."""
        return None

    def correct(self, record: dict) -> bool | None:
        """Whether a review line's prediction matches its ``true_label`` (None: no label):
        the predicted label equals it (generation: the continuation contains it)."""
        truth = record.get("true_label")
        if truth is None or "prediction" not in record:
            return None
        return record["prediction"]["label"] == truth

    def link_params(self, record: dict) -> dict | None:
        """URL parameters that open a review line's input on the modality's page (None:
        it cannot be linked, for example an upload)."""
        return None


# == registry ========================================================================================
#: the Review page's cap on inputs per batch (the views' row pickers stop there too)
MAX_REVIEW_INPUTS = 200
#: filled by the views themselves (``@register_view``); :mod:`dashboard.views` imports the
#: built-in ones, this registry imports none (timm's pattern)
_VIEWS: dict[str, type[ModalityView]] = {}
V = TypeVar("V", bound=type[ModalityView])


def register_view(cls: V) -> V:
    """Class decorator: register a view under its ``modality`` (replacing an earlier one,
    so a test or a plugin can swap a view)."""
    if not cls.modality:
        raise ValueError(f"{cls.__name__} sets no modality")
    _VIEWS[cls.modality] = cls
    return cls


def unregister_view(modality: str) -> None:
    """Remove a view (tests that register a toy modality clean up with this)."""
    _VIEWS.pop(modality, None)


def get_view(modality: str) -> ModalityView:
    """An instance of the view registered for ``modality``."""
    try:
        return _VIEWS[modality]()
    except KeyError:
        raise KeyError(f"no dashboard view for modality {modality!r}; registered: {sorted(_VIEWS)}") from None


def list_views() -> list[str]:
    """Modalities that have a view, in registration order."""
    return list(_VIEWS)


# == helpers the views share ==========================================================================
#: file types the Review page's uploaders take (what the CLI's reader reads)
REVIEW_FILE_TYPES = ["tsv", "txt", "csv", "jsonl", "ndjson", "json"]
#: where :func:`read_review_file` leaves the reader of the file being reviewed (for the report)
REVIEW_SOURCE = "_rv.source"


def read_review_file(modality: str, adapter, upload) -> list[Item]:
    """The first :data:`MAX_REVIEW_INPUTS` inputs of an uploaded file, read by the CLI's
    reader (:class:`~explainers.review.InputSource`: header detection, input, label and id
    columns, labels checked against the model's classes, an error item for each row that
    cannot be read), so the page's review of a file is ``review --file`` 's. The reader's
    one-line description is shown under the uploader; a file that cannot be read at all is a
    message and no inputs."""
    suffix = Path(upload.name).suffix.lower() or ".tsv"  # the reader tells the format by it
    path = models.save_upload(upload.getvalue(), suffix, upload.name)  # the reader streams a file
    try:
        source = InputSource(modality, path).check()
        spare = source.spare_columns()
        if spare:  # the CLI's --slice-by: each item carries these columns' values
            chosen = st.multiselect("Slice the summary by", spare, key="rv.slice_by",
                                    help="Columns of the file, besides its input, labels and ids: the "
                                         "summary is also given per value of each (review --slice-by).")
            if chosen:
                source = InputSource(modality, path, slice_by=[str(c) for c in chosen]).check()
        items = list(itertools.islice(source.items(ModelInfo.from_adapter(adapter)), MAX_REVIEW_INPUTS))
    except ExplainerError as e:
        st.session_state.pop(REVIEW_SOURCE, None)
        st.error(render.md(str(e)))
        return []
    st.session_state[REVIEW_SOURCE] = source
    st.caption(render.md(source.describe()) + (f"; {source.reported} row(s) cannot be read (each is "
                                               "listed as failed)" if source.reported else ""))
    return items


def prediction_change(original: Input, edited: Input) -> None:
    """One line under the editor: the edited prediction and the original class's change (for
    a score: the value before and after)."""
    p, q = original.prediction, edited.prediction
    if getattr(p, "output_kind", "softmax") == "score":
        before, after = p.value, q.outputs[p.index]
        st.markdown(f"Prediction on the edit: **{render.md(p.label)}** {render.fmt_score(before)} → "
                    f"{render.fmt_score(after)} (**{render.signed(after - before, '.4g')}**)")
        return
    before, after = p.probabilities[p.index], q.probabilities[p.index]
    flipped = q.index != p.index
    verdict = (f":red[**flipped to {render.md(q.label)}**]" if flipped
               else f"still **{render.md(q.label)}**")
    st.markdown(f"Prediction on the edit: {verdict} ({q.probabilities[q.index]:.1%}) · "
                f"P({render.md(p.label)}) {before:.1%} → {after:.1%} "
                f"(**{render.signed((after - before) * 100)}** pts)")


def model_source(label: str, own: str, own_caption: str, modality: str) -> str:
    """The sidebar's "Model" heading and the choice between the modality's default model and
    the user's own (``own`` names that option); returns the choice. Call inside the sidebar."""
    st.subheader("Model")
    return st.radio(label, ["default", own], key="model_src", bind=BIND,
                    captions=[models.DEFAULT_TITLES[modality], own_caption])


def class_names(text: str) -> tuple[str, ...] | None:
    """Comma-separated class names typed in the sidebar (None when empty)."""
    return tuple(s.strip() for s in text.split(",") if s.strip()) or None
