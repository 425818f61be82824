"""Attribution Studio's engine: explain PyTorch predictions on text, images and tables.

    >>> from explainers import load_model, explain
    >>> m = load_model("text")
    >>> r = explain(m, "The soup was bland.", methods=["integrated_gradients", "occlusion"])
    >>> r.to_dict()["prediction"]["label"]
    'negative'

Importable without Streamlit; the dashboard is a thin layer on top.
"""

from .api import DEFAULT_METHODS, explain, load_model
from .baselines import BaselinePrediction, baseline_predictions, neutrality
from .engine import estimate_cost, estimate_work, run_method
from .errors import ExplainerError
from .registry import get_method, list_methods, register_method
from .results import Attribution, Explanation, Prediction

__all__ = [
    "DEFAULT_METHODS", "Attribution", "BaselinePrediction", "Explanation", "ExplainerError",
    "Prediction", "baseline_predictions", "estimate_cost", "estimate_work", "explain", "get_method",
    "list_methods", "load_model", "neutrality", "register_method", "run_method",
]
