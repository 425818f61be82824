"""Attribution Studio's engine: explain PyTorch predictions on text, images and tables.

    >>> from explainers import load_model, explain
    >>> m = load_model("text")
    >>> r = explain(m, "The soup was bland.", methods=["integrated_gradients", "occlusion"])
    >>> r.to_dict()["prediction"]["label"]
    'negative'

Importable without Streamlit; the dashboard is a thin layer on top.

Layers, from the ground up (a module imports only its own layer and those below it; a test,
``tests/unit/test_layers.py``, checks every import):

1. foundations: ``errors``, ``params``, ``results``, ``rng``, ``quadrature``, ``drawing`` (and
   ``cache.store``, ``cache.loaders``);
2. ``adapters/`` (one per modality) and ``baselines`` (the reference inputs they offer);
3. ``pooling``: model calls recorded, pooled across inputs and replayed;
4. ``registry`` and ``methods/`` (one file each; the package imports them, they register);
5. ``engine``: one method on one input (checks, locks, the store);
6. ``metrics/``: agreement, faithfulness, flips, stability, sanity, robustness;
   ``notebook``: explanations drawn as HTML (Jupyter, reports);
7. ``api``: ``load_model`` (through ``cache.models``) and ``explain``;
8. ``review/``: many inputs (batched, local or Ray), their summary and output file;
9. ``cli``: ``python -m explainers``.
"""

from .api import DEFAULT_METHODS, explain, load_model
from .baselines import BaselinePrediction, baseline_predictions, neutrality
from .engine import estimate_cost, estimate_work, run_method
from .errors import ExplainerError
from .notebook import Figure, figure, show
from .registry import get_method, list_methods, register_method
from .results import Attribution, Explanation, Prediction

__all__ = [
    "DEFAULT_METHODS", "Attribution", "BaselinePrediction", "Explanation", "ExplainerError", "Figure",
    "Prediction", "baseline_predictions", "estimate_cost", "estimate_work", "explain", "figure", "get_method",
    "list_methods", "load_model", "neutrality", "register_method", "run_method", "show",
]
