"""Tabular adapter: attributions on standardised features, one score per column.

Attributions are taken in z-space (``(x - mean) / std`` of the reference data) and the
forward pass maps back to raw values before calling the model. That keeps GradientSHAP's
``stdevs`` and the baselines comparable across columns whose raw scales differ by 10^4,
while the model still sees exactly the raw row.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..errors import ExplainerError
from .base import Encoded, ModelAdapter, probe_logits

N_BASELINE_SAMPLES = 16
#: the model runs in float32: larger magnitudes become infinity
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_column_names(names: Sequence[str], where: str) -> None:
    """Refuse a header row whose names repeat (pandas would rename the second ``a`` to
    ``a.1`` without a word, and the model would read a column nobody named)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise ExplainerError(f"{where}: column name {name!r} appears twice in the header row "
                                 f"(columns {seen[name] + 1} and {i + 1}); column names must be unique")
        seen[name] = i


def csv_header(path: str | Path) -> list[str]:
    """The names in a CSV file's first row, as pandas reads them (a UTF-8 byte-order mark
    dropped); [] for an unreadable or empty file (the CSV reader reports those)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return next(csv.reader(f), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def check_frame(df: pd.DataFrame, feature_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Validate reference data: numeric, no NaN, and (if given) exactly ``feature_names``."""
    if df.empty:
        raise ExplainerError("the table has no rows")
    if feature_names is not None:
        missing = [c for c in feature_names if c not in df.columns]
        extra = [c for c in df.columns if c not in feature_names]
        if missing or extra:
            raise ExplainerError(f"CSV columns do not match the model: missing {missing}, extra {extra}")
        df = df[list(feature_names)]
    non_numeric = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise ExplainerError(f"non-numeric column(s) {non_numeric}; encode them as numbers first")
    nan_cols = df.columns[df.isna().any()].tolist()
    if nan_cols:
        raise ExplainerError(f"the table has missing values (NaN) in column(s) {nan_cols}")
    values = df.to_numpy(dtype=np.float64)
    inf_cols = df.columns[~np.isfinite(values).all(axis=0)].tolist()
    if inf_cols:
        raise ExplainerError(f"the table has infinite values in column(s) {inf_cols}")
    huge_cols = df.columns[(np.abs(values) > FLOAT32_MAX).any(axis=0)].tolist()
    if huge_cols:
        raise ExplainerError(f"values beyond float32's range (|x| > {FLOAT32_MAX:.3g}) in column(s) "
                             f"{huge_cols}; rescale them")
    return df.astype(np.float32)


class TabularAdapter(ModelAdapter):
    """Adapter for models over a row of numeric features: classifiers, multi-label heads and
    score (regression, ranking, recommender) models.

    Args:
        name: display name.
        module: maps raw float rows ``[B, F]`` to outputs ``[B, C]`` (logits or scores).
        data: reference rows (columns = feature names): the source of rows to explain,
            the standardisation and the baselines.
        labels: one name per output (class names, or the score's name).
        output: the output kind (``softmax``, ``sigmoid``, ``score``); None infers it:
            one output is a score, several a softmax classifier (loaders that know whether
            the user named the classes refine this, see
            :func:`~explainers.adapters.base.resolve_output_kind`).
    """

    modality = "tabular"
    baseline_kinds = ("train_mean", "train_median", "train_samples")
    default_baselines = ("train_mean",)
    grad_batch_size = 512
    eval_batch_size = 2048
    occlusion_window_default = 1
    occlusion_window_max = 64
    feature_unit = "feature"

    def __init__(self, name: str, module: torch.nn.Module, data: pd.DataFrame,
                 labels: Sequence[str], device: torch.device | None = None,
                 output: str | None = None) -> None:
        super().__init__(name, module, labels, device)
        self.data = check_frame(data)
        if len(self.data) < 2:
            raise ExplainerError(f"the reference data has {len(self.data)} row; it needs at least 2, since "
                                 "each column's spread over them standardises the features")
        self.feature_names = [str(c) for c in self.data.columns]
        self.data_hash = hashlib.sha256(
            pd.util.hash_pandas_object(self.data, index=False).to_numpy().tobytes()
            + "|".join(self.feature_names).encode()).hexdigest()
        values = torch.tensor(self.data.to_numpy(), dtype=torch.float32, device=self.device)
        self.mean = values.mean(0, keepdim=True)
        self.std = values.std(0, keepdim=True).clamp_min(1e-6)
        self.z_data = (values - self.mean) / self.std
        if not bool(torch.isfinite(self.std).all() & torch.isfinite(self.mean).all()):
            raise ExplainerError("the reference data's scale overflows float32 when standardised; "
                                 "rescale its columns")
        probe_logits(self.module, values[:2], n_classes=len(self.labels))
        self.set_output_kind(output, labels_given=False)
        self._reference_outputs: np.ndarray | None = None

    def reference_outputs(self) -> np.ndarray:
        """The model's outputs ``[N, C]`` on every reference row (in the kind's space:
        probabilities or raw scores), computed once: the range a score is shown against and
        the median a score flip's threshold defaults to."""
        if self._reference_outputs is None or self._reference_kind != self.output_kind:
            enc = self.encode(0)  # the forward needs an encoded input; a table has no context
            with self.lock:
                out = self.predict_batch(self.z_data, enc).float().cpu().numpy()
            self._reference_outputs, self._reference_kind = out.astype(np.float64), self.output_kind
        return self._reference_outputs

    def row(self, raw: Any) -> dict[str, float]:
        """The raw feature values of ``raw`` (a row index or a name -> value mapping)."""
        if isinstance(raw, (int, np.integer)) and not isinstance(raw, bool):
            if not 0 <= raw < len(self.data):
                raise ExplainerError(f"row {raw} out of range: the data has {len(self.data)} rows")
            return {k: float(v) for k, v in self.data.iloc[int(raw)].items()}
        if isinstance(raw, pd.Series):
            raw = raw.to_dict()
        if isinstance(raw, Mapping):
            missing = [c for c in self.feature_names if c not in raw]
            extra = [c for c in raw if c not in self.feature_names]
            if missing or extra:
                raise ExplainerError(f"row does not match the model: missing {missing}, extra {extra}")
            try:
                values = {c: float(raw[c]) for c in self.feature_names}
            except (TypeError, ValueError) as e:
                raise ExplainerError(f"feature values must be numbers: {e}") from None
            bad = [c for c, v in values.items() if not np.isfinite(v)]
            if bad:
                raise ExplainerError(f"feature value(s) missing or not finite: {bad}")
            return values
        raise ExplainerError("a tabular input is a row index or a mapping of feature name to value")

    def encode(self, raw: Any) -> Encoded:
        values = self.row(raw)
        x = torch.tensor([[values[c] for c in self.feature_names]], dtype=torch.float32,
                         device=self.device)
        z = (x - self.mean) / self.std
        groups = torch.arange(len(self.feature_names), device=self.device)
        return Encoded(inputs=z, feature_labels=list(self.feature_names), groups=groups, raw=values)

    def config(self) -> dict:
        # the reference data defines the standardisation and the baselines
        return {"data": self.data_hash}

    def describe_baseline(self, kind: str) -> str:
        return {"train_mean": "every feature at its reference-data mean",
                "train_median": "every feature at its reference-data median",
                "train_samples": f"{N_BASELINE_SAMPLES} reference rows (seed 0)"}.get(kind, kind)

    def baseline_rows(self, kind: str) -> int:
        return min(N_BASELINE_SAMPLES, len(self.z_data)) if kind == "train_samples" else 1

    def _logits(self, inputs: torch.Tensor, enc: Encoded) -> torch.Tensor:
        out = self.module(inputs * self.std + self.mean)
        return out.logits if hasattr(out, "logits") else out

    def baseline(self, enc: Encoded, kind: str) -> torch.Tensor:
        if kind == "train_mean":
            return torch.zeros_like(enc.inputs)
        if kind == "train_median":
            return self.z_data.median(0, keepdim=True).values
        if kind == "train_samples":
            gen = torch.Generator().manual_seed(0)
            idx = torch.randperm(len(self.z_data), generator=gen)[:N_BASELINE_SAMPLES]
            return self.z_data[idx.to(self.z_data.device)]
        raise ExplainerError(f"unknown tabular baseline {kind!r}")

    def baseline_values(self, enc: Encoded, baseline: torch.Tensor, removed: Sequence[int]
                        ) -> dict[str, float]:
        """The raw values that removed features take under ``baseline`` (z-space
        ``[1, F]``): the edit a metric scored, in the user's units."""
        raw = (baseline.reshape(1, -1) * self.std + self.mean)[0].detach().cpu().double()
        return {self.feature_names[int(i)]: float(raw[int(i)]) for i in removed}

    def sliding_window(self, enc: Encoded, window: int, stride: int) -> tuple[tuple, tuple]:
        return (min(window, enc.inputs.shape[1]),), (stride,)

    def reduce(self, attr: torch.Tensor, enc: Encoded) -> np.ndarray:
        return attr[0].detach().float().cpu().numpy()
