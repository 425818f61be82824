"""Pooled model work: the model calls of many inputs' attributions, evaluated together.

A method reaches the model only through the ``forward`` it is given. Here that forward can
be a recording (:class:`Tape`), and the recorded batches of many inputs are evaluated in a
few large batches (:class:`Pool`) before the method is played again against the results.
The methods build on this layer (:meth:`explainers.methods.base.Method.attribute_many`),
and so do the metrics' re-predictions and reviews across inputs
(:mod:`explainers.review.batched`).

* **Deferred model calls** (IG with fixed ``n_steps``, GradientSHAP, Saliency, Input x
  Gradient, SmoothGrad, Occlusion, Feature ablation, KernelSHAP, LIME, and any method that
  sets ``defer_model_calls``). These methods never branch on the model's outputs, so each
  input's run is played twice: a *record* pass runs the method's own code (Captum's, with
  its seeding) with a forward that only notes the batches it is given and answers zeros;
  the noted batches of every input are then evaluated together in large batches
  (:class:`Pool`), with gradients of each input's target where the method asked for
  them; a *replay* pass runs the same code again and the forward answers each batch with
  the logits computed for it, carrying the pooled gradient (``logits + (x - x.detach()) *
  grad`` on the target). The replayed calls are checked against the recorded ones; a
  mismatch (a method that does branch on outputs) falls back to one-at-a-time.
* Anything else (methods that hook the model, such as Grad-CAM) runs one input at a time
  (:func:`looped`), locked as :func:`explainers.engine.run_method` locks it.

Text rows of different lengths share a batch padded to the longest, with the attention
mask hiding the padding (:meth:`TextAdapter.stack_inputs`); each row is cut back to its own
length before anything is attributed, so padded positions never carry attribution.
Batches hold at most the adapter's batch budget (``grad_batch_size`` / ``eval_batch_size``
rows, fewer for long texts, as :meth:`ModelAdapter.for_run` gives), rows sorted by length so
that little is padded.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch

from .adapters.base import Encoded, ModelAdapter


class Runs(Protocol):
    """What this layer needs of a method (:class:`explainers.methods.base.Method`, which
    sits above it): one run on one input through the given forward."""

    def run(self, adapter: ModelAdapter, enc: Encoded, target: int, params: dict,
            forward: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, Any]: ...


def shares_per_batch(method: Any, params: dict) -> bool:
    """Whether ``method`` with resolved ``params`` may hold the model lock per batch instead
    of for its whole run.

    Safe when nothing outlives a batch on the shared model: every registered method
    attributes through the adapter's forward (text against ``inputs_embeds``), with no
    hooks. Only a method that sets ``exclusive_model`` (one that hooks the model) keeps the
    whole-run lock. Seeded runs (a ``seed`` parameter, a noise tunnel) share per batch too:
    their seeded section lets go of the RNG lock while it waits for the model or runs a
    batch and resumes with its generators where they were (:func:`explainers.rng.paused`),
    so they draw the same numbers as alone, and never hold the RNG lock while waiting for
    the model lock (the metrics take the model lock first: no deadlock).
    """
    return not getattr(method, "exclusive_model", False)


class ReplayMismatch(RuntimeError):
    """A method's replay asked the model something its record pass did not."""


# -- pooled model work -------------------------------------------------------------------------
@dataclass
class Request:
    """One batch a method gave the forward: input ``index``'s rows ``x``; ``target`` set
    when the method takes gradients of that class (else forward only)."""

    index: int
    x: torch.Tensor
    target: int | None
    logits: torch.Tensor | None = None
    grad: torch.Tensor | None = None


class Pool:
    """Evaluates :class:`Request` s of many inputs together, within the batch budget.

    Args:
        adapter: the model adapter.
        encs: the inputs (a request's ``index`` points here).
        on_rows: called with the number of rows after each batch (progress).
    """

    def __init__(self, adapter: ModelAdapter, encs: Sequence[Encoded],
                 on_rows: Callable[[int], None] | None = None) -> None:
        self.adapter, self.encs, self.on_rows = adapter, list(encs), on_rows
        self.batches = 0
        self.rows = 0

    def budget(self, index: int, grad: bool) -> int:
        run = self.adapter.for_run(self.encs[index])
        return max(1, run.grad_batch_size if grad else run.eval_batch_size)

    def run(self, requests: Sequence[Request]) -> None:
        """Fill every request's ``logits`` (and ``grad`` where it has a target)."""
        for grad in (True, False):
            todo = [r for r in requests if (r.target is not None) == grad and r.x.shape[0]]
            groups: dict[tuple, list[Request]] = {}
            for r in todo:
                groups.setdefault(self.adapter.stack_key(r.x), []).append(r)
            for group in groups.values():
                self._run_group(group, grad)

    def _run_group(self, requests: list[Request], grad: bool) -> None:
        # rows sorted by their input's size, so a batch pads little; segments of a request
        # are split where a batch is full
        requests = sorted(requests, key=lambda r: self.adapter.work_per_pass(self.encs[r.index]))
        for r in requests:
            r.logits = torch.empty((r.x.shape[0], len(self.adapter.labels)), dtype=torch.float32,
                                   device=r.x.device)
            if grad:
                r.grad = torch.zeros_like(r.x)
        batch: list[tuple[Request, int, int]] = []
        size = 0
        for r in requests:
            start = 0
            while start < r.x.shape[0]:
                cap = self.budget(r.index, grad)  # the longest input so far sets the budget
                if size >= cap:
                    self._run_batch(batch, grad)
                    batch, size = [], 0
                take = min(r.x.shape[0] - start, cap - size)
                batch.append((r, start, start + take))
                size += take
                start += take
        if batch:
            self._run_batch(batch, grad)

    def _run_batch(self, batch: list[tuple[Request, int, int]], grad: bool) -> None:
        adapter = self.adapter
        xs = [r.x[a:b] for r, a, b in batch]
        encs = [self.encs[r.index] for r, _, _ in batch]
        with adapter.guarded():
            x, context = adapter.stack_inputs(xs, encs)
            if grad:
                x = x.detach().requires_grad_(True)
                with torch.enable_grad():
                    logits = adapter.forward_stacked(x, context)
                    targets = torch.cat([torch.full((b - a,), r.target, dtype=torch.long)
                                         for r, a, b in batch]).to(logits.device)
                    (g,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
            else:
                with torch.inference_mode():
                    logits = adapter.forward_stacked(x, context)
        logits = logits.detach()
        offset = 0
        for r, a, b in batch:
            n = b - a
            r.logits[a:b] = logits[offset:offset + n]
            if grad:
                own = tuple(slice(0, s) for s in r.x.shape[1:])  # cut the padding off
                r.grad[a:b] = g[(slice(offset, offset + n),) + own]
            offset += n
        self.batches += 1
        self.rows += offset
        if self.on_rows:
            self.on_rows(offset)

    def outputs(self, index_xs: Sequence[tuple[int, torch.Tensor]]) -> list[torch.Tensor]:
        """The model's outputs in its kind's space (:meth:`ModelAdapter.activate`: softmax or
        sigmoid probabilities, or raw scores) for forward-only batches ``(input index, rows)``."""
        reqs = [Request(i, x, None) for i, x in index_xs]
        self.run(reqs)
        return [self.adapter.activate(r.logits) if r.logits is not None
                else torch.zeros((0, len(self.adapter.labels))) for r in reqs]


class Tape:
    """The forward of one input's deferred run: records in the first pass, replays pooled
    results in the second."""

    def __init__(self, index: int, target: int, n_classes: int) -> None:
        self.index, self.target, self.n_classes = index, target, n_classes
        self.requests: list[Request] = []
        self.replaying = False
        self.position = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wants_grad = torch.is_grad_enabled() and x.requires_grad
        if not self.replaying:
            self.requests.append(Request(self.index, x.detach().clone(),
                                         self.target if wants_grad else None))
            out = x.new_zeros((x.shape[0], self.n_classes))
            return out + 0 * x.flatten(1).sum(1, keepdim=True) if wants_grad else out
        if self.position >= len(self.requests):
            raise ReplayMismatch("the replay made more model calls than the record")
        req = self.requests[self.position]
        self.position += 1
        if req.x.shape != x.shape or (req.target is not None) != wants_grad \
                or not torch.equal(req.x, x.detach()):
            raise ReplayMismatch("the replay asked for another batch than the record")
        out = req.logits.to(x.dtype)
        if wants_grad:
            onehot = torch.nn.functional.one_hot(torch.tensor(self.target), self.n_classes).to(x)
            out = out + ((x - x.detach()) * req.grad).flatten(1).sum(1, keepdim=True) * onehot
        return out


def deferred(method: Runs, adapter: ModelAdapter, encs: Sequence[Encoded], targets: Sequence[int],
             params: dict, pool: Pool) -> list[Any]:
    """:meth:`Method.run` on each input, its model calls pooled across inputs (see the
    module docstring). Returns ``(attr, delta)`` or the exception, per input."""
    tapes, out = [], [None] * len(encs)
    for i, (enc, t) in enumerate(zip(encs, targets)):
        tape = Tape(i, t, len(adapter.labels))
        try:
            method.run(adapter.for_run(enc), enc, t, params, tape.forward)
            tapes.append(tape)
        except Exception as e:  # noqa: BLE001 - this input fails, the others go on
            out[i] = e
            tapes.append(None)
    pool.run([r for tape in tapes if tape is not None for r in tape.requests])
    for i, tape in enumerate(tapes):
        if tape is None:
            continue
        tape.replaying = True
        try:
            out[i] = method.run(adapter.for_run(encs[i]), encs[i], targets[i], params, tape.forward)
            if tape.position != len(tape.requests):
                raise ReplayMismatch("the replay made fewer model calls than the record")
        except ReplayMismatch:  # the method branched on outputs: run it on its own
            out[i] = looped(method, adapter, [encs[i]], [targets[i]], params, pool, offset=i)[0]
        except Exception as e:  # noqa: BLE001
            out[i] = e
    return out


def looped(method: Runs, adapter: ModelAdapter, encs: Sequence[Encoded], targets: Sequence[int],
           params: dict, pool: Pool, offset: int = 0) -> list[Any]:
    """:meth:`Method.run` one input at a time, locked as :func:`explainers.engine.run_method`
    locks it (per batch, or for the whole run when it hooks the model)."""
    out: list[Any] = []
    for enc, t in zip(encs, targets):
        run = adapter.for_run(enc)
        forward = run.forward_fn(enc, pool.on_rows)
        per_batch = shares_per_batch(method, params)
        if per_batch:
            forward = run.locked_each_batch(forward)
        try:
            with contextlib.nullcontext() if per_batch else adapter.guarded():
                out.append(method.run(run, enc, t, params, forward))
        except Exception as e:  # noqa: BLE001
            out.append(e)
    return out
