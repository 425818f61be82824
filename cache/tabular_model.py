"""The default tabular model: an MLP on scikit-learn's breast-cancer data.

Trained on first use with a fixed seed (a few seconds on a CPU), stored as safetensors in
the cache directory, and reloaded from there afterwards.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from explainers.rng import seeded

SEED = 0
TEST_FRACTION = 0.25
WEIGHTS_NAME = "breast_cancer_mlp_v2.safetensors"


class BreastCancerMLP(nn.Module):
    """Standardisation inside the model, then a 3-layer MLP: raw feature rows -> logits."""

    def __init__(self, n_features: int = 30, hidden: int = 32, n_classes: int = 2) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


def dataset() -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Features (real column names), targets and class names of the breast-cancer data."""
    from sklearn.datasets import load_breast_cancer
    bunch = load_breast_cancer(as_frame=True)
    return bunch.data.astype(np.float32), bunch.target.to_numpy(), [str(n) for n in bunch.target_names]


def split_indices(n: int, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train / held-out row indices, fixed by ``SEED``."""
    from sklearn.model_selection import train_test_split
    return train_test_split(np.arange(n), test_size=TEST_FRACTION, random_state=SEED, stratify=y)


def train(x: pd.DataFrame, y: np.ndarray, epochs: int = 300) -> BreastCancerMLP:
    """Full-batch Adam on the given rows, with the seed fixed.

    The small learning rate and strong weight decay keep the probabilities away from 0/1
    (median top-1 0.996 on held-out rows instead of 1.0), so deletion curves and flips
    have a slope to measure.
    """
    with seeded(SEED):
        return _fit(x, y, epochs)


def _fit(x: pd.DataFrame, y: np.ndarray, epochs: int) -> BreastCancerMLP:
    xt = torch.tensor(x.to_numpy(), dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    model = BreastCancerMLP(xt.shape[1])
    model.mean.copy_(xt.mean(0))
    model.std.copy_(xt.std(0).clamp_min(1e-6))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: pd.DataFrame, y: np.ndarray) -> float:
    with torch.inference_mode():
        pred = model(torch.tensor(x.to_numpy(), dtype=torch.float32)).argmax(1).numpy()
    return float((pred == y).mean())


def glossary(columns: list[str]) -> dict[str, str]:
    """What each breast-cancer column measures, from the data set's own description.

    The 30 columns are the mean, the standard error and the "worst" (mean of the three
    largest) of ten measurements of the cell nuclei in a digitised image; the data set
    states no units (lengths and areas are in pixels of that image).
    """
    from sklearn.datasets import load_breast_cancer
    base = {}
    for line in load_breast_cancer().DESCR.splitlines():
        line = line.strip()
        if line.startswith("- ") and not line.startswith("- class"):
            name, _, rest = line[2:].partition(" (")
            base[name.strip()] = rest.rstrip(")").strip()
    out = {}
    for col in columns:
        kind, measure = ("mean", col[5:]) if col.startswith("mean ") else \
            ("worst (mean of the 3 largest)", col[6:]) if col.startswith("worst ") else \
            ("standard error", col[: -len(" error")]) if col.endswith(" error") else ("", col)
        if measure in base:
            what = f"{measure}: {base[measure]}" if base[measure] else measure
            out[col] = f"{kind} of the nuclei's {what}"
    return out


# -- the regression default: scikit-learn's diabetes data -------------------------------------
DIABETES_WEIGHTS_NAME = "diabetes_mlp_v1.safetensors"
#: what the diabetes model's one output is called
DIABETES_LABEL = "disease progression"


class DiabetesMLP(BreastCancerMLP):
    """Regression MLP: standardised features in, one score out in the target's own units
    (disease progression one year after baseline, 25-346 in the data)."""

    def __init__(self, n_features: int = 10, hidden: int = 32) -> None:
        super().__init__(n_features, hidden, n_classes=1)
        self.register_buffer("y_mean", torch.zeros(1))
        self.register_buffer("y_std", torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.y_std + self.y_mean


def diabetes_dataset() -> tuple[pd.DataFrame, np.ndarray]:
    """The 442 rows of scikit-learn's diabetes data in their raw units (age in years, sex 1/2,
    bmi, blood pressure, six serum measurements) and the target (disease progression)."""
    from sklearn.datasets import load_diabetes
    bunch = load_diabetes(as_frame=True, scaled=False)
    return bunch.data.astype(np.float32), bunch.target.to_numpy(dtype=np.float64)


def diabetes_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Train / held-out row indices (25 % held out), fixed by ``SEED``."""
    from sklearn.model_selection import train_test_split
    return train_test_split(np.arange(n), test_size=TEST_FRACTION, random_state=SEED)


def train_regressor(x: pd.DataFrame, y: np.ndarray, epochs: int = 300) -> DiabetesMLP:
    """Full-batch Adam on standardised targets (mean squared error), seed fixed. Strong weight
    decay and few epochs keep the network from memorising 331 rows: longer training or
    weaker decay raised the training R² and lowered the held-out one."""
    with seeded(SEED):
        xt = torch.tensor(x.to_numpy(), dtype=torch.float32)
        yt = torch.tensor(y, dtype=torch.float32)[:, None]
        model = DiabetesMLP(xt.shape[1])
        model.mean.copy_(xt.mean(0))
        model.std.copy_(xt.std(0).clamp_min(1e-6))
        model.y_mean.copy_(yt.mean(0))
        model.y_std.copy_(yt.std(0))
        target = (yt - model.y_mean) / model.y_std
        opt = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-1)
        for _ in range(epochs):
            opt.zero_grad()
            loss = nn.functional.mse_loss(BreastCancerMLP.forward(model, xt), target)
            loss.backward()
            opt.step()
    return model.eval()


def r2_score(model: nn.Module, x: pd.DataFrame, y: np.ndarray) -> float:
    """Coefficient of determination of the model's scores on ``(x, y)``."""
    with torch.inference_mode():
        pred = model(torch.tensor(x.to_numpy(), dtype=torch.float32))[:, 0].double().numpy()
    y = np.asarray(y, dtype=np.float64)
    return float(1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def diabetes_glossary(columns: list[str]) -> dict[str, str]:
    """What each diabetes column measures, from the data set's own description (sex is coded
    1/2 in the raw data; the description names no coding)."""
    from sklearn.datasets import load_diabetes
    out = {}
    for line in load_diabetes().DESCR.splitlines():
        parts = line.strip().split(None, 2)
        if len(parts) >= 2 and parts[0] == "-" and parts[1] in columns:
            out[parts[1]] = parts[2].strip() if len(parts) > 2 else ""
    if "sex" in columns:
        out["sex"] = "sex, coded 1 or 2 in the raw data"
    return {k: v for k, v in out.items() if v}
