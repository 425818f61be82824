"""Fair sharing of one model between sessions (issue 9, item 2).

    python -m bench.fair_share [--tokens 512] [--sessions 5] [--delay 2]

Two figures, on the default text model, default methods (IG n=50, GradientSHAP n=20,
Occlusion per token), no store, every session a thread calling :func:`explainers.explain`:

1. with one long (``--tokens``) session running, the wall time of a second session
   explaining a short sentence (started ``--delay`` s after the long one); the long session
   is then stopped through its progress callback, as the dashboard does;
2. the total wall time of ``--sessions`` concurrent short sessions, against one session
   alone x sessions / cores;
3. (issue 19) the short session's wall time while a ``--heavy-words`` text runs the
   perturbation methods (KernelSHAP, LIME, Occlusion, feature ablation) in one call, as a
   multiple of the short session alone measured just before it, in the same process: now
   (seeded runs share the model per batch; a locked call holds at most 16 tokens x the
   batch size, :data:`explainers.adapters.base.LOCKED_WORK`), and as before (a seeded run
   held the model for its whole run; a whole batch per locked call), the arms taking turns;
   the goal is at most 5x.

Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import warnings

import torch

from explainers import engine, explain, load_model
from explainers.adapters import base
from explainers.pooling import shares_per_batch

#: seeded ones first: the short session starts while they run
HEAVY_METHODS = ["kernel_shap", "lime", "occlusion", "feature_ablation"]

SHORT = "The soup was bland, the service was slow, and the dessert was far too sweet for us."
PASSAGE = ("The film opens with a long, quiet shot of a harbour at dawn, and for a while nothing "
           "happens: boats drift, gulls circle, a man mends a net. Some viewers will find this "
           "patient and beautiful; others will check their watches. ")


class Stop(Exception):
    """Raised from a progress callback to abandon a run."""


def long_text(adapter, tokens: int) -> str:
    """A text of at least ``tokens`` tokens (the adapter truncates to its maximum)."""
    text = PASSAGE
    while len(adapter.tokenizer(text)["input_ids"]) < tokens:
        text += PASSAGE
    return text


def one_session(adapter, text: str) -> float:
    start = time.perf_counter()
    explain(adapter, text, use_cache=False)
    return time.perf_counter() - start




def old_rule(method, params) -> bool:
    """The rule before issue 19: a seeded run (or a noise tunnel) held the model lock for its
    whole run, as did a method that hooks the model."""
    if getattr(method, "exclusive_model", False):
        return False
    return "seed" not in params and params.get("noise_tunnel", "none") in (None, "none")


def short_during_long(adapter, text: str, delay: float, methods: list[str] | None = None
                      ) -> tuple[float, float]:
    """Seconds of a short session started ``delay`` s into a long one (``methods``, default
    the default three), and how long the long one had run when it was stopped."""
    stop = threading.Event()
    long_started = time.perf_counter()
    long_ran = []

    def progress(method: str, fraction: float) -> None:
        if stop.is_set():
            raise Stop()

    def long_session() -> None:
        try:
            explain(adapter, text, methods=methods, use_cache=False, progress=progress)
        except Stop:
            pass
        long_ran.append(time.perf_counter() - long_started)

    worker = threading.Thread(target=long_session)
    worker.start()
    time.sleep(delay)
    short_seconds = one_session(adapter, SHORT)
    stop.set()
    worker.join()
    return short_seconds, long_ran[0]


def heavy_perturbation(adapter, text: str, delay: float, repeats: int) -> dict[str, list[tuple[float, float]]]:
    """``(seconds, seconds alone just before)`` of the short session while ``text`` runs
    :data:`HEAVY_METHODS`, now and as before issue 19 (the old lock rule, whole batches per
    locked call), the two arms taking turns."""
    waits: dict[str, list] = {"now": [], "before (whole-run seeded lock, a whole batch per locked call)": []}
    now = dict(base.LOCKED_WORK)
    for _ in range(repeats):
        for arm, share, locked in zip(waits, (shares_per_batch, old_rule), (now, {})):
            base.LOCKED_WORK.clear()
            base.LOCKED_WORK.update(locked)
            engine.shares_per_batch = share  # the engine's name for the rule, swapped for this arm
            try:
                alone = one_session(adapter, SHORT)
                waits[arm].append((short_during_long(adapter, text, delay, HEAVY_METHODS)[0], alone))
            finally:
                engine.shares_per_batch = shares_per_batch
                base.LOCKED_WORK.update(now)
    return waits


def concurrent_sessions(adapter, n: int) -> float:
    times: list[float] = []
    threads = [threading.Thread(target=lambda: times.append(one_session(adapter, SHORT)))
               for _ in range(n)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--heavy-words", type=int, default=400,
                        help="words of the text that runs the perturbation methods (item 3)")
    parser.add_argument("--only-heavy", action="store_true", help="only figure 3")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    adapter = load_model("text")
    text = long_text(adapter, args.tokens)
    enc = adapter.encode(text)
    one_session(adapter, SHORT)  # warm-up
    alone = statistics.median(one_session(adapter, SHORT) for _ in range(args.repeats))
    cores = torch.get_num_threads()
    print(f"| torch threads | {cores} (os.cpu_count {os.cpu_count()}, load {os.getloadavg()[0]:.1f}) |")
    print(f"| short session alone (median of {args.repeats}) | {alone:.2f} s |")
    words = " ".join((PASSAGE * (1 + args.heavy_words // 40)).split()[:args.heavy_words])
    heavy = heavy_perturbation(adapter, words, args.delay, args.repeats)
    for arm, runs in heavy.items():
        print(f"| short session while a {args.heavy_words}-word text runs {', '.join(HEAVY_METHODS)} "
              f"({arm}) | {', '.join(f'{s:.2f} s ({a:.2f} alone)' for s, a in runs)} = "
              f"{', '.join(f'{s / a:.1f}' for s, a in runs)} x alone (goal <= 5x) |")
    print(f"| load average after figure 3 | {os.getloadavg()[0]:.1f} |")
    if args.only_heavy:
        return
    waits = [short_during_long(adapter, text, args.delay) for _ in range(args.repeats)]
    total = concurrent_sessions(adapter, args.sessions)
    goal = 1.5 * alone * args.sessions / cores
    print(f"| long input | {enc.inputs.shape[1]} tokens |")
    print(f"| short session while the long one runs | "
          f"{', '.join(f'{s:.2f}' for s, _ in waits)} s (long session stopped after "
          f"{', '.join(f'{r:.1f}' for _, r in waits)} s) |")
    print(f"| {args.sessions} concurrent short sessions, total | {total:.2f} s "
          f"(goal 1.5 x {alone:.2f} x {args.sessions} / {cores} = {goal:.2f} s) |")


if __name__ == "__main__":
    main()
