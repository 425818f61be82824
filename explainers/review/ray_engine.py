"""Reviews on a Ray cluster: ``run_review(..., engine="ray")``.

Imported only on that path, so Ray costs nothing to the dashboard, the local engine or the
tests that do not ask for it.

Each worker is an actor that loads the model once, from the :class:`~explainers.review.options.ModelSpec`
(the ``load_model`` arguments: a model name or a path that exists on every node); weights
are never pickled from the driver. A task is one micro-batch, reviewed by
:func:`~explainers.review.local.review_items`, exactly as the local engine does. The driver keeps
at most :data:`IN_FLIGHT_PER_WORKER` batches per worker in flight and pulls inputs only as
it submits them, so neither the inputs nor the results pile up in memory; it hands each
batch's lines back as soon as that batch is done (in the order batches finish).
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
from typing import Any, Iterator

import ray

import torch

from ..errors import ExplainerError
from .inputs import Item, ModelInfo
from .local import review_items
from .options import ModelSpec, ReviewOptions
from .report import model_card

#: batches queued per worker: one running, one waiting, so a worker never idles on the driver
IN_FLIGHT_PER_WORKER = 2
#: the object store of a Ray started here: batches and lines are small, and a small store
#: fits a container's /dev/shm (Ray falls back to /tmp, slower, where /dev/shm is smaller)
OBJECT_STORE_BYTES = 256 * 1024 ** 2


class ReviewWorker:
    """A Ray actor: one model, loaded once from its spec, reviewing micro-batches."""

    def __init__(self, spec: ModelSpec, threads: int) -> None:
        torch.set_num_threads(max(1, threads))  # the CPUs Ray gave this actor, no more
        self.node = ray.get_runtime_context().get_node_id()
        self.model: Any = None
        self.error: str | None = None
        try:
            self.model = spec.load()
        except Exception as e:  # noqa: BLE001 - reported by info() as one line
            first = str(e).splitlines()[0] if str(e) else ""
            self.error = first if isinstance(e, ExplainerError) else f"{type(e).__name__}: {first}"

    def info(self) -> dict:
        if self.error is not None:
            return {"node": self.node, "error": self.error}
        return {"node": self.node, "info": ModelInfo.from_adapter(self.model), "card": model_card(self.model)}

    def review(self, items: list[Item], options: ReviewOptions) -> list[dict]:
        return review_items(self.model, items, options)


def start(address: str | None) -> bool:
    """Connect to the cluster at ``address`` (``"auto"``: the one ``ray start`` runs on this
    machine), or start Ray on this machine's cores when None. Returns whether Ray was
    started or connected here (and so is shut down at the end); a Ray already initialised
    in this process is used as it is."""
    if ray.is_initialized():
        return False
    common = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address:
            ray.init(address=address, **common)
        else:  # "local": a new instance even where RAY_ADDRESS points elsewhere
            ray.init(address="local", num_cpus=os.cpu_count() or 1,
                     object_store_memory=OBJECT_STORE_BYTES, **common)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise ExplainerError(f"could not start or reach {where}: {str(e).splitlines()[0][:200]}") from None
    return True


class RayEngine:
    """Reviews micro-batches on Ray actors; see the module docstring.

    Args:
        spec: what each worker loads.
        workers: how many actors; default: as many as the cluster's CPUs (or GPUs, with
            ``gpus_per_worker``) allow.
        address: an existing cluster (``"auto"`` or ``HOST:PORT``); None starts Ray here.
        cpus_per_worker: CPUs (and torch threads) per actor; default: this machine's cores
            shared among ``workers`` when Ray starts here, else 1.
        gpus_per_worker: GPUs per actor (fractions share one GPU); default none.
    """

    def __init__(self, spec: ModelSpec, *, workers: int | None = None, address: str | None = None,
                 cpus_per_worker: float | None = None, gpus_per_worker: float | None = None) -> None:
        if workers is not None and workers < 1:
            raise ExplainerError(f"--workers must be >= 1, got {workers}")
        for name, v in (("--cpus-per-worker", cpus_per_worker), ("--gpus-per-worker", gpus_per_worker)):
            if v is not None and v < 0:
                raise ExplainerError(f"{name} must be >= 0, got {v}")
        self.actors: list = []
        self.nodes: set[str] = set()
        self.started = start(address)
        try:
            self._launch(spec, workers, address, cpus_per_worker, gpus_per_worker)
        except BaseException:
            self.close()
            raise

    def _launch(self, spec: ModelSpec, workers: int | None, address: str | None,
                cpus: float | None, gpus: float | None) -> None:
        total = ray.cluster_resources()
        n_cpus, n_gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        if cpus is None:
            cpus = max(1, int(n_cpus // workers)) if workers and not address else 1
        if workers is None:
            fits = [n_cpus // cpus if cpus else float("inf")]
            if gpus:
                fits.append(n_gpus // gpus)
            workers = max(1, int(min(fits)))
        if gpus and n_gpus < gpus * workers or cpus * workers > n_cpus:
            msg = (f"{workers} worker(s) x ({cpus:g} CPU, {gpus or 0:g} GPU) is more than the "
                   f"cluster's {n_cpus:g} CPU, {n_gpus:g} GPU")
            if not address:
                raise ExplainerError(msg + "; ask for fewer --workers or less per worker")
            print(f"warning: {msg}; workers wait until the cluster grows", file=sys.stderr, flush=True)
        self.cpus, self.gpus = cpus, gpus or 0
        actor = ray.remote(ReviewWorker).options(num_cpus=cpus, num_gpus=gpus or 0, max_restarts=1,
                                                 max_task_retries=1)
        self.actors = [actor.remote(spec, int(cpus)) for _ in range(workers)]

    def info(self) -> ModelInfo:
        """The model's classes etc., from the workers once each has loaded it."""
        try:
            answers = ray.get([a.info.remote() for a in self.actors])
        except ray.exceptions.RayError as e:
            raise ExplainerError(f"a Ray worker failed to start: {_first_line(e)}") from None
        errors = [a["error"] for a in answers if "error" in a]
        if errors:
            raise ExplainerError(f"a Ray worker could not load the model: {errors[0]}")
        self.nodes = {a["node"] for a in answers}
        self.model_card = answers[0]["card"]  # what a report names (the driver never loads the model)
        return answers[0]["info"]

    def describe(self) -> str:
        gpu = f", {self.gpus:g} GPU" if self.gpus else ""
        return (f"ray engine: {len(self.actors)} worker(s) on {len(self.nodes)} node(s), "
                f"{self.cpus:g} CPU{gpu} each")

    def run(self, items: Iterator[Item], options: ReviewOptions, batch_size: int) -> Iterator[list[dict]]:
        """Each micro-batch's lines, as batches finish; inputs are pulled only to keep every
        worker's queue at :data:`IN_FLIGHT_PER_WORKER`."""
        opts = ray.put(options)
        pending: dict[Any, tuple[int, list]] = {}
        load = [0] * len(self.actors)
        exhausted = False
        while True:
            while not exhausted and min(load) < IN_FLIGHT_PER_WORKER:
                chunk = list(itertools.islice(items, batch_size))
                if not chunk:
                    exhausted = True
                    break
                i = load.index(min(load))
                pending[self.actors[i].review.remote(chunk, opts)] = (i, [c.id for c in chunk])
                load[i] += 1
            if not pending:
                return
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i, ids = pending.pop(ref)
                load[i] -= 1
                try:
                    records = ray.get(ref)
                except ray.exceptions.RayError as e:
                    shown = ids[:5] + (["..."] if len(ids) > 5 else [])
                    raise ExplainerError(f"a Ray worker failed on inputs {shown}: {_first_line(e)}; "
                                         "the lines written so far are kept, re-run to resume") from None
                yield records

    def close(self) -> None:
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []
        if self.started and ray.is_initialized():
            ray.shutdown()
            self.started = False


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:300]}" if text else type(error).__name__
