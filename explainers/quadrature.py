"""Nested Clenshaw-Curtis quadrature on [0, 1] that refines until every feature has settled.

Adaptive Integrated Gradients integrates ``g(a) = grad f(b + a (x - b)) * (x - b)`` over
``a in [0, 1]``. Two error signals are at hand, and a row stops only when both are small:

* the error of the *sum* is known exactly: the completeness delta
  ``sum(integral) - (f(x) - f(b))``. Alone it is not enough: per-feature errors of opposite
  signs cancel in the sum (on SST-2 a 7-point run met 1 % completeness with 11 % error on one
  word), so
* each feature's integral must also agree between two successive nested levels:
  ``max_i |I_n[i] - I_{n/2}[i]| <= rtol * max_i |I_n[i]|`` over the interpretable features
  (words, pixels, columns: ``features``). The difference estimates the coarser level's
  error; Clenshaw-Curtis converges fast on smooth integrands, so the finer level that is
  returned is usually well inside it.

Clenshaw-Curtis puts nodes at
``(1 - cos(j pi / n)) / 2``; the nodes of ``n`` are among those of ``2 n``, so doubling
``n`` reuses every point already evaluated, and ``a = 0`` and ``a = 1`` are nodes, so
``f(b)`` and ``f(x)`` come with the first level at no extra cost. Its accuracy on smooth
integrands is close to Gauss-Legendre with the same number of points (Trefethen, *Is
Gauss quadrature better than Clenshaw-Curtis?*, SIAM Review 2008).

Levels start at ``n = 3`` and double: 4, 7, 13, 25, 49, 97 points, so a run stops at
one of those counts, never at the first (it has no level to agree with). Each row (one input and one baseline) refines on its own, and every
round asks for the new points of all unfinished rows at once, so a caller can evaluate
them as one batch across rows and across inputs.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

#: the first level's n (n + 1 points); each further level doubles it
BASE = 3
#: the most points a row may use (level n = 96): about twice fixed 50-step IG, at worst
MAX_POINTS = 97
#: relative tolerance (per-feature change and |delta| / |f(x) - f(b)|) when none is given:
#: 1e-3 is where every one of 200 SST-2 dev sentences is within 1e-3 per word of a converged
#: reference (0.01 left one at 4.5e-3; BENCHMARKS.md, "Adaptive IG")
DEFAULT_RTOL = 0.001
#: |f(x) - f(b)| below this (logits) is treated as this, so a baseline that the model scores
#: like the input needs |delta| <= rtol * GAP_FLOOR rather than an unreachable 0
GAP_FLOOR = 1e-3

#: ``evaluate(rows, alphas) -> (g [m, ...], f [m])``: the integrand and the scalar output
#: at path position ``alphas[i]`` of row ``rows[i]``
Evaluate = Callable[[np.ndarray, np.ndarray], tuple[torch.Tensor, torch.Tensor]]
#: ``features(row, integral) -> [F]``: the row's integral as the interpretable features the
#: user reads (IG: a word's pieces and embedding summed, an image's channels summed)
Features = Callable[[int, torch.Tensor], torch.Tensor]


def flat(_row: int, integral: torch.Tensor) -> torch.Tensor:
    """Every element of the integral is a feature (the default of :func:`integrate`)."""
    return integral.reshape(-1)


def levels(base: int = BASE, max_points: int = MAX_POINTS) -> list[int]:
    """The ``n`` of each level (``n + 1`` points): ``base``, ``2 base``, ... up to ``max_points``."""
    out = [base]
    while out[-1] * 2 + 1 <= max_points:
        out.append(out[-1] * 2)
    return out


@functools.lru_cache(maxsize=32)
def clenshaw_curtis(n: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Nodes and weights of the ``n + 1``-point Clenshaw-Curtis rule on [0, 1].

    Nodes ``a_j = (1 - cos(j \pi / n)) / 2``, ``j = 0..n`` (so ``a_0 = 0``, ``a_n = 1``);
    weights from the cosine series of the rule (Waldvogel 2006, eq. 2.4), exact for
    polynomials of degree ``n``.
    """
    if n < 1:
        raise ValueError("Clenshaw-Curtis needs n >= 1")
    j = np.arange(n + 1)
    theta = j * math.pi / n
    nodes = (1.0 - np.cos(theta)) / 2.0
    weights = np.ones(n + 1)
    for k in range(1, n // 2 + 1):
        b = 1.0 if 2 * k == n else 2.0
        weights -= b / (4 * k * k - 1) * np.cos(2 * k * theta)
    c = np.full(n + 1, 2.0)
    c[0] = c[-1] = 1.0
    weights = c * weights / n / 2.0  # / 2: from [-1, 1] to [0, 1]
    return nodes, weights


@dataclass
class Outcome:
    """What :func:`integrate` found, one entry per row.

    Attributes:
        integral: ``[R, ...]`` the integral of ``g`` at the level each row stopped (a list
            of R tensors when the rows differ in shape).
        f0, f1: ``[R]`` the scalar output at ``a = 0`` and ``a = 1``.
        delta: ``[R]`` ``sum(integral) - (f1 - f0)``, the error of the sum.
        points: ``[R]`` evaluations each row used (the points of its last level).
        converged: ``[R]`` whether the row met the tolerance (False: stopped at the cap).
        history: per row, ``[(points, delta), ...]`` at every level it went through.
        evaluations: total points evaluated over all rows (each exactly once).
        change: ``[R]`` the per-feature change reached at the row's last level,
            ``max_i |I_n[i] - I_{n/2}[i]| / max(max_i |I_n[i]|, GAP_FLOOR)`` (nan when the
            row stopped at the first level, which only a cap of 4 points allows).
        changes: per row, that change at every level (nan at the first).
    """

    integral: torch.Tensor | list[torch.Tensor]
    f0: torch.Tensor
    f1: torch.Tensor
    delta: torch.Tensor
    points: list[int]
    converged: list[bool]
    history: list[list[tuple[int, float]]] = field(default_factory=list)
    evaluations: int = 0
    change: list[float] = field(default_factory=list)
    changes: list[list[float]] = field(default_factory=list)

    def select(self, rows: list[int]) -> "Outcome":
        """The outcome of some rows only (``evaluations``: the points those rows used)."""
        idx = torch.as_tensor(rows)
        return Outcome(torch.stack([self.integral[r] for r in rows]), self.f0[idx], self.f1[idx], self.delta[idx],
                       [self.points[r] for r in rows], [self.converged[r] for r in rows],
                       [self.history[r] for r in rows], sum(self.points[r] for r in rows),
                       [self.change[r] for r in rows], [self.changes[r] for r in rows])


def tolerance(gap: float, rtol: float) -> float:
    """The |delta| a row may keep: ``rtol * max(|gap|, GAP_FLOOR)``."""
    return rtol * max(abs(gap), GAP_FLOOR)


def feature_change(now: torch.Tensor, before: torch.Tensor) -> float:
    """``max_i |now_i - before_i| / max(max_i |now_i|, GAP_FLOOR)``: how much any feature
    moved between two levels, relative to the largest feature (float64)."""
    now, before = now.detach().double().cpu(), before.detach().double().cpu()
    scale = max(float(now.abs().max()) if now.numel() else 0.0, GAP_FLOOR)
    return float((now - before).abs().max()) / scale if now.numel() else 0.0


def integrate(evaluate: Evaluate, n_rows: int, rtol: float = DEFAULT_RTOL,
              base: int = BASE, max_points: int = MAX_POINTS, features: Features = flat) -> Outcome:
    """Integrate each row's ``g`` over [0, 1], refining by doubling until its error is small.

    Args:
        evaluate: ``evaluate(rows, alphas) -> (g, f)`` for any set of (row, position)
            pairs; called once per level with every new pair of the unfinished rows.
        n_rows: how many independent integrals.
        rtol: stop a row at the first level (after the first) where both
            ``|delta| <= rtol * max(|f1 - f0|, GAP_FLOOR)`` (completeness) and
            :func:`feature_change` from the level before ``<= rtol`` (every feature settled).
        base, max_points: the first level's ``n`` and the cap on points per row.
        features: the row's integral as the features that must settle (default: every
            element; IG passes the display scores: words, pixels, columns).

    Returns:
        An :class:`Outcome`. A point is never evaluated twice: level ``2n`` asks only for
        the ``n`` nodes level ``n`` lacks.
    """
    ns = levels(base, max_points)
    finest = ns[-1]
    values: list[dict[int, torch.Tensor]] = [{} for _ in range(n_rows)]
    outputs: list[dict[int, float]] = [{} for _ in range(n_rows)]
    result: list[torch.Tensor | None] = [None] * n_rows
    delta = torch.zeros(n_rows, dtype=torch.float64)
    points = [0] * n_rows
    converged = [False] * n_rows
    history: list[list[tuple[int, float]]] = [[] for _ in range(n_rows)]
    changes: list[list[float]] = [[] for _ in range(n_rows)]
    previous: list[torch.Tensor | None] = [None] * n_rows  # each row's features one level down
    active = list(range(n_rows))
    evaluations = 0
    for level, n in enumerate(ns):
        step = finest // n
        nodes, weights = clenshaw_curtis(n)
        todo = [(r, j) for r in active for j in range(n + 1) if j * step not in values[r]]
        if todo:
            rows = np.array([r for r, _ in todo])
            alphas = np.array([nodes[j] for _, j in todo])
            g, f = evaluate(rows, alphas)
            f = f.detach().double().cpu()
            for i, (r, j) in enumerate(todo):
                values[r][j * step] = g[i]  # g: a tensor [m, ...] or a list of m tensors
                outputs[r][j * step] = float(f[i])
            evaluations += len(todo)
        still = []
        for r in active:
            stack = torch.stack([values[r][j * step] for j in range(n + 1)])
            w = torch.as_tensor(weights, dtype=stack.dtype, device=stack.device)
            integral = torch.tensordot(w, stack, dims=1)
            gap = outputs[r][finest] - outputs[r][0]
            d = float(integral.double().sum()) - gap
            result[r], delta[r], points[r] = integral, d, n + 1
            history[r].append((n + 1, d))
            now = features(r, integral)
            change = math.nan if previous[r] is None else feature_change(now, previous[r])
            previous[r] = now
            changes[r].append(change)
            if abs(d) <= tolerance(gap, rtol) and change <= rtol:
                converged[r] = True
            elif level < len(ns) - 1:
                still.append(r)
        active = still
        if not active:
            break
    f0 = torch.tensor([outputs[r][0] for r in range(n_rows)], dtype=torch.float64)
    f1 = torch.tensor([outputs[r][finest] for r in range(n_rows)], dtype=torch.float64)
    same = len({tuple(t.shape) for t in result}) == 1  # rows of texts of different lengths: a list
    return Outcome(torch.stack(result) if same else result, f0, f1, delta, points, converged,
                   history, evaluations, [c[-1] for c in changes], changes)


def straight_path(forward: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor,
                  baselines: torch.Tensor, target: int | torch.Tensor, batch_size: int) -> Evaluate:
    """The IG integrand along straight paths, as an :data:`Evaluate` for :func:`integrate`.

    Row ``r`` runs from ``baselines[r]`` to ``inputs[r]``; at position ``a`` the integrand
    is ``grad_z f_t(z) * (x - b)`` with ``z = b + a (x - b)``, and the scalar is ``f_t(z)``.
    Points are evaluated ``batch_size`` at a time.

    Args:
        forward: a batch ``[B, ...]`` to logits ``[B, C]``.
        inputs, baselines: ``[R, ...]``.
        target: the class, or ``[R]`` classes (one per row).
        batch_size: points per forward + backward.
    """
    diff = inputs - baselines
    targets = (torch.as_tensor(target).reshape(-1).expand(inputs.shape[0])
               if not isinstance(target, int) else torch.full((inputs.shape[0],), target))

    def evaluate(rows: np.ndarray, alphas: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        gs, fs = [], []
        for start in range(0, len(rows), batch_size):
            r = torch.as_tensor(rows[start:start + batch_size], device=inputs.device)
            a = torch.as_tensor(alphas[start:start + batch_size], dtype=inputs.dtype,
                                device=inputs.device).reshape((-1,) + (1,) * (inputs.dim() - 1))
            z = (baselines[r] + a * diff[r]).detach().requires_grad_(True)
            with torch.enable_grad():
                out = forward(z).gather(1, targets.to(z.device)[r].reshape(-1, 1)).reshape(-1)
                (grad,) = torch.autograd.grad(out.sum(), z)
            gs.append(grad.detach() * diff[r])
            fs.append(out.detach())
        return torch.cat(gs), torch.cat(fs)

    return evaluate
