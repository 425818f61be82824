"""Batch review: explain many inputs with metrics, one JSON line each, then a summary table.

``python -m explainers review`` calls :func:`run_review`; the dashboard reuses
:func:`summarize` and :func:`summary_table`. The package, from the ground up:

* :mod:`~explainers.review.inputs`: the input files (TSV, CSV, JSON lines), streamed;
* :mod:`~explainers.review.batched`: many inputs explained together (``explain_many``),
  their model work pooled;
* :mod:`~explainers.review.options`, :mod:`~explainers.review.local`: what a run loads and
  does, and one labelled micro-batch reviewed in this process;
* :mod:`~explainers.review.ray_engine`: the same micro-batches on Ray actors (imported only
  by ``engine="ray"``);
* :mod:`~explainers.review.summary`, :mod:`~explainers.review.outputs`: the summary and the
  output file (resume, writing);
* :mod:`~explainers.review.report`, :mod:`~explainers.review.trackers`: what a finished review
  publishes besides its lines (an HTML report, TensorBoard, MLflow);
* :mod:`~explainers.review.driver`: :func:`run_review`, which ties them together.
"""

from .batched import (DEFAULT_BATCH, REVIEW_DEFAULT_PARAMS, explain_many, review_chunk, review_one,
                      review_params)
from .driver import run_review
from .inputs import InputSource, Item, ModelInfo
from .local import review_items
from .options import BATCH_SIZE, EXPLAIN_TARGETS, ModelSpec, ReviewOptions
from .outputs import id_key
from .report import ReviewSummary
from .summary import COLUMNS, Summary, slim, summarize, summary_table

__all__ = [
    "BATCH_SIZE", "COLUMNS", "DEFAULT_BATCH", "EXPLAIN_TARGETS", "REVIEW_DEFAULT_PARAMS", "InputSource",
    "Item", "ModelInfo", "ModelSpec", "ReviewOptions", "ReviewSummary", "Summary", "explain_many", "id_key",
    "review_chunk", "review_items", "review_one", "review_params", "run_review", "slim", "summarize",
    "summary_table",
]
