"""Generation's cost estimates and speed, before and after, in one process (issues 20, 22).

    git archive 472e137 explainers | tar -x -C /tmp/before      # the code before, read-only
    nice -n 10 python -m bench.generation_speed --before /tmp/before [--quick]

The page's defaults on the default model (SmolLM2-135M-Instruct): the first sample prompt,
the chat template, word units, the greedy continuation of 12 tokens; feature ablation (word
deletion) and Integrated Gradients (50 Gauss-Legendre steps, the unknown-token baseline),
each with its total and per-token matrix. The code before is loaded from ``--before`` as a
second package (``explainers_before``) on the same model; every arm runs in this process,
before and after interleaved, one intra-op thread (bench/generation.py: two threads on a
shared 2-core machine spin-wait on each other).

Parts, each printed as a Markdown table:

* ``estimates``: per method and code, the estimate shown before any run (calibrated), the
  seconds the estimate itself took, the run's seconds, and their ratio; then, with the
  rates those runs taught, the estimate and the run on another prompt with a 6-token
  target (the transfer the page relies on). The matrices before and after are compared
  (max |difference|): the speed work must not move a number.
* ``captum``: IG on the same prompt, plain (Captum's ``TextTokenInput`` replaces every token
  by the baseline, a chat template's too, so only a plain prompt is the same computation),
  its greedy target, token units, against Captum's ``LLMGradientAttribution(LayerIntegratedGradients(embed_tokens))`` at equal
  steps, the independent reference for the numbers (max |difference| of the per-token
  matrices) and the time the same work takes there.
* ``budget``: a run past the per-token Jacobian's memory budget (what a long prompt with a
  long target meets; emulated by lowering ``MAX_JACOBIAN_BYTES`` to one row in both codes):
  before, every run recomputed the Jacobian it could not keep and then scored its rows
  again; after, each run scores its rows once with one backward.
* ``threads``: feature ablation and a short IG with one and two intra-op threads.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cache.generation_model import FACT_PROMPTS
from explainers import engine, load_model
from explainers.adapters import generation
from explainers.adapters.generation import Prompt

IG = "integrated_gradients"
FA = "feature_ablation"


def load_before(root: Path):
    """The package under ``root/explainers`` imported as ``explainers_before`` (its imports
    are relative, so it runs its own engine, methods and adapters)."""
    spec = importlib.util.spec_from_file_location(
        "explainers_before", root / "explainers" / "__init__.py",
        submodule_search_locations=[str(root / "explainers")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["explainers_before"] = module
    spec.loader.exec_module(module)
    import explainers_before.adapters.generation as gen_before  # noqa: F401  (registered above)
    import explainers_before.engine as engine_before
    return engine_before, sys.modules["explainers_before.adapters.generation"]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def estimates(codes: dict, steps: int, new_tokens: int) -> list[str]:
    lines = ["| method | code | estimate before any run (s) | the estimate took (s) | run (s) | run / estimate |",
             "|---|---|---|---|---|---|"]
    params = {FA: None, IG: {"n_steps": steps}}
    results: dict = {}
    for name in (FA, IG):
        for code, (eng, adapter, enc, _) in codes.items():  # before, after, interleaved
            took, est = timed(lambda: eng.estimate_seconds(adapter, enc, name, params[name]))
            seconds, res = timed(lambda: eng.run_method(adapter, enc, name, params[name], 0))
            results[name, code] = res
            lines.append(f"| {name} | {code} | {est:.3g} | {took:.1f} | {seconds:.1f} | {seconds / est:.3g} |")
        diff = np.abs(results[name, "before"].matrix - results[name, "after"].matrix).max()
        lines.append(f"| {name} | max \\|matrix after - before\\| | {diff:.1e} | | | |")
    lines += ["", "Another prompt, a 6-token target, with the rates the runs above taught:", "",
              "| method | code | estimate (s) | run (s) | run / estimate |", "|---|---|---|---|---|"]
    for name in (FA, IG):
        est = {code: eng.estimate_seconds(adapter, other, name, params[name])
               for code, (eng, adapter, _, other) in codes.items()}  # both before either run
        ran = {}
        for code, (eng, adapter, _, other) in codes.items():
            if code == "after" or name == FA:  # IG before: the same work, timed once (after)
                ran[code], _ = timed(lambda: eng.run_method(adapter, other, name, params[name], 0))
        for code in codes:
            seconds = ran.get(code, ran["after"])
            lines.append(f"| {name} | {code} | {est[code]:.3g} | {seconds:.1f} | {seconds / est[code]:.3g} |")
    return lines


def captum(adapter, steps: int, new_tokens: int) -> list[str]:
    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput
    prompt = FACT_PROMPTS[0][0]
    enc = adapter.encode(Prompt(prompt, chat=False, max_new_tokens=new_tokens), unit="token")
    tok = adapter.tokenizer
    inp = TextTokenInput(prompt, tok, baselines=tok.unk_token_id)
    ids = enc.context["input_ids"][0].tolist()
    assert inp.inp_tensor[0].tolist() == ids, "Captum reads other tokens than we do"
    target = enc.context["target_ids"]
    lig = LLMGradientAttribution(LayerIntegratedGradients(adapter.module, adapter.module.get_input_embeddings()), tok)
    ours_s, ours = timed(lambda: engine.run_method(adapter, enc, IG, {"n_steps": steps}, 0))
    theirs_s, theirs = timed(lambda: lig.attribute(inp, target=target, n_steps=steps))
    cols = (enc.groups[:, 0] >= 0).nonzero().flatten().tolist()  # the units' tokens
    diff = float(np.abs(theirs.token_attr.detach().numpy()[:, cols] - ours.matrix).max())
    return ["| arm | seconds | × ours | max \\|difference\\| to ours (nats) |", "|---|---|---|---|",
            f"| ours: IG, {steps} steps, total + {adapter.n_target(enc)}-token matrix | {ours_s:.1f} | 1.00 | 0 |",
            f"| Captum LLMGradientAttribution(LayerIntegratedGradients), {steps} steps | {theirs_s:.1f} | "
            f"{theirs_s / ours_s:.2f} | {diff:.1e} |",
            f"| (scale of the matrix: max \\|value\\|) | | | {np.abs(ours.matrix).max():.2f} |"]


def budget(codes: dict, gen_before, steps: int) -> list[str]:
    lines = ["| code | seconds | × after | max \\|difference\\| to the in-budget run |", "|---|---|---|---|"]
    out = {}
    for code, (eng, adapter, _, _) in codes.items():
        prompt = (gen_before if code == "before" else generation).Prompt(FACT_PROMPTS[0][0], chat=True)
        enc = adapter.encode(prompt, unit="word", target=" Lisbon, Portugal")
        params = {"n_steps": steps}
        kept = eng.run_method(adapter, enc, IG, params, 0)
        module = gen_before if code == "before" else generation
        saved = module.MAX_JACOBIAN_BYTES
        module.MAX_JACOBIAN_BYTES = 4 * adapter.n_columns(enc) * int(np.prod(enc.inputs.shape[1:]))  # one row
        try:
            seconds, res = timed(lambda: eng.run_method(adapter, enc, IG, params, 0))
        finally:
            module.MAX_JACOBIAN_BYTES = saved
        out[code] = (seconds, float(np.abs(res.matrix - kept.matrix).max()))
    for code, (seconds, diff) in out.items():
        lines.append(f"| {code} | {seconds:.1f} | {seconds / out['after'][0]:.2f} | {diff:.1e} |")
    return lines


def threads(adapter, enc, steps: int) -> list[str]:
    lines = ["| method | 1 thread (s) | 2 threads (s) | 2 / 1 |", "|---|---|---|---|"]
    for name, params in ((FA, None), (IG, {"n_steps": steps})):
        secs = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            secs[n], _ = timed(lambda: engine.run_method(adapter, enc, name, params, 0))
        torch.set_num_threads(1)
        lines.append(f"| {name}{'' if params is None else f' ({steps} steps)'} | {secs[1]:.1f} | {secs[2]:.1f} | "
                     f"{secs[2] / secs[1]:.2f} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="a checkout holding the code before (explainers/)")
    p.add_argument("--part", choices=["estimates", "captum", "budget", "threads", "all"], default="all")
    p.add_argument("--quick", action="store_true", help="few steps and tokens: checks the script runs")
    args = p.parse_args()
    torch.set_num_threads(1)
    steps, new_tokens, short = (4, 3, 2) if args.quick else (50, 12, 4)
    print(f"load average at the start {load()}, torch {torch.__version__}, 1 intra-op thread")
    eng_before, gen_before = load_before(args.before)
    after = load_model("generation")
    before = gen_before.GenerationAdapter(after.name, after.module, after.tokenizer, after.device)
    codes = {}
    for code, eng, adapter, prompt in (("before", eng_before, before, gen_before.Prompt),
                                       ("after", engine, after, Prompt)):
        enc = adapter.encode(prompt(FACT_PROMPTS[0][0], chat=True, max_new_tokens=new_tokens), unit="word")
        other = adapter.encode(prompt(FACT_PROMPTS[1][0], chat=True, max_new_tokens=max(1, new_tokens // 2)),
                               unit="word")
        codes[code] = (eng, adapter, enc, other)
    enc = codes["after"][2]
    print(f"prompt {FACT_PROMPTS[0][0]!r}: {enc.inputs.shape[1]} tokens with the chat template, "
          f"{enc.n_features} words, greedy target {after.n_target(enc)} tokens; other prompt "
          f"{FACT_PROMPTS[1][0]!r}, target {after.n_target(codes['after'][3])} tokens")
    parts = {"estimates": lambda: estimates(codes, steps, new_tokens),
             "captum": lambda: captum(after, short if args.quick else 10, new_tokens),
             "budget": lambda: budget(codes, gen_before, short),
             "threads": lambda: threads(after, enc, short)}
    for name, fn in parts.items():
        if args.part in (name, "all"):
            print(f"\n## {name} (load average {load()})\n")
            print("\n".join(fn()), flush=True)
    print(f"\nload average at the end {load()}")


if __name__ == "__main__":
    main()
