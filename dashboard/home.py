"""Content of the home page, generated from the method registry where possible."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cache.store import store_stats
from explainers import DEFAULT_METHODS, get_method, list_methods
from explainers.methods.base import ANY_MODALITY

from . import render

ROOT = Path(__file__).resolve().parents[1]
PAGES = (("text", "Text", ":material/notes:", "a sentiment classifier (MiniLM-L6 on SST-2) or your own "
          "Hugging Face model: highlight tokens, delete or mask them"),
         ("image", "Image", ":material/image:", "EfficientNet-Lite0 on ImageNet: heat maps over the "
          "gallery or your upload, erase a rectangle"),
         ("tabular", "Tabular", ":material/table_chart:", "an MLP on the breast-cancer data (30 "
          "features), a diabetes regression, or your CSV + model (a torch.export .pt2 or TorchScript): "
          "what-if values"),
         ("generation", "Generation", ":material/chat:", "a small chat LM (SmolLM2-135M, offline): which "
          "prompt words made it answer, per output token; delete words, see the new answer"),
         ("review", "Review", ":material/fact_check:", "a batch of inputs explained with metrics: "
          "which method is most faithful across all of them"))

#: when to trust each method, beyond its one-line summary
TRUST = {
    "integrated_gradients": "Check |δ| (completeness error) against Σ: a large ratio means too few "
                            "n_steps. The map answers 'compared with the baseline', so try two baselines.",
    "gradient_shap": "Random: look at the seed intervals in Compare › Stability; features whose "
                     "interval contains 0 have no reliable sign.",
    "occlusion": "Trust the big blocks, not single pixels: the window spreads the drop evenly. "
                 "Misses features that only matter together.",
    "saliency": "A sensitivity map, not a contribution: large where a small change would move the "
                "score. No baseline, no completeness.",
    "input_x_gradient": "A one-step approximation of IG; fine for near-linear models, misleading where "
                        "the model saturates.",
    "feature_ablation": "Removes one feature (token, patch, column) at a time; exact for that "
                        "question, blind to interactions.",
    "smoothgrad": "Steadier than Saliency, still a sensitivity map; the noise level (stdevs) sets "
                  "how much detail survives.",
    "kernel_shap": "Noisy with few samples: rerun with another seed or more n_samples and check "
                   "the ranking holds (Compare › Agreement).",
    "lime": "The surrogate is only locally linear: trust the top few features, and check them "
            "against a second seed.",
    "grad_cam": "Read it as 'which region', never 'which pixel': the map has the layer's grid "
                "(7 x 7 on the default model), stated under the panel. An earlier stage is finer "
                "but less class-specific. Measured on our images, it found the right quarter of the "
                "image in 18 of 24 composites, but as an order of patches it beat random "
                "deletion on only 3 of 35 (IG: 17): trust the region, not the ranking.",
    "guided_grad_cam": "Its edges come from guided backpropagation, which Adebayo et al. 2018 "
                       "found nearly unchanged when the model's weights are randomized: run the "
                       "Sanity check before reading detail into it; the region is Grad-CAM's.",
    "attention": "Where the model looks, not what moved it. On 100 SST-2 dev sentences, deleting "
                 "words in last-layer attention order beat the random control on only 30 % of "
                 "them (IG: 81 %), its word ranking barely follows IG's (Spearman 0.23), and "
                 "rollout was close to random (6 %). Read it next to an attribution panel and "
                 "its Compare numbers, never alone.",
    "shapley_sampling": "Averages each feature's marginal effect over random orders: noisy with few "
                        "n_samples (rerun with another seed), costs a forward per feature and sample.",
    "target_attention": "Where the language model reads while producing the target, not what "
                        "changes its answer: weights are non-negative, and what lands on the first "
                        "token or the chat template is not shown. See BENCHMARKS.md for where it ranks "
                        "the fact word.",
    "attention_x_gradient": "Class-specific, and on the default (mean-pooled) model only slightly "
                            "more faithful than raw attention: it beat the random control on 34 % "
                            "of 100 SST-2 sentences (IG: 81 %). Trust it on an input only where "
                            "Compare › Faithfulness says it beats random.",
}


#: what each card opens: an input that shows something worth seeing, explained on arrival
EXAMPLES = {
    "text": {"text": "The plot was predictable, but the acting kept me watching."},
    "image": {"img": "coffee"},
    "tabular": {"row": "13"},
    "generation": {"gen.target_mode": "typed target"},
    "review": {"rv.modality": "tabular"},
}


def _link(name: str, label: str, icon: str | None = None) -> None:
    try:
        st.page_link(str(ROOT / "pages" / f"{name}.py"), label=label, icon=icon,
                     query_params=EXAMPLES.get(name))
    except Exception:  # noqa: BLE001  (page run on its own, outside st.navigation)
        st.markdown(f"**{label}**")


def page_links() -> None:
    cols = st.columns(len(PAGES))
    for col, (name, title, icon, text) in zip(cols, PAGES):
        with col.container(border=True):
            _link(name, f"Open {title}", icon)  # short: a card is a quarter of the width
            st.caption(f"{text[0].upper()}{text[1:]}. Opens on an example.")


def first_explanation() -> None:
    """Three steps for someone who has never used an attribution method."""
    st.markdown("**Never used attribution methods? Three steps, two minutes:**")
    c1, c2, c3 = st.columns(3)
    with c1.container(border=True):
        st.markdown("**1. Look.** Open a sentence: three methods colour its words. Red pushes the "
                    "model toward its answer, blue against it.")
        _link("text", "Open the example sentence", ":material/notes:")
    with c2.container(border=True):
        st.markdown("**2. Ask 'what if'.** Under *What if…*, click the reddest word to delete it. "
                    "The prediction and every map update: did the model change its mind?")
    with c3.container(border=True):
        st.markdown("**3. Check.** In *Compare methods*, the one-line verdicts say which maps beat "
                    "a random guess on this input. Trust those; question the others (and all of them where "
                    "the page says the model cannot read the input).")


def methods_table() -> None:
    names = list_methods()
    ordered = [m for m in DEFAULT_METHODS if m in names] + [m for m in names if m not in DEFAULT_METHODS]
    cols = st.columns(3)
    for i, name in enumerate(ordered):
        m = get_method(name)
        with cols[i % 3].container(border=True):
            default = " · default panel" if name in DEFAULT_METHODS else ""
            st.markdown(f"#### {m.title}")
            where = "any modality" if ANY_MODALITY in m.modalities else ", ".join(m.modalities)
            st.caption(f"`{name}` · {where}{default}"
                       + (" · reports a convergence delta" if m.has_convergence_delta else ""))
            st.markdown(m.summary)
            if name in TRUST:
                st.markdown(f"**When to trust it.** {TRUST[name]}")
            st.caption(m.paper)


def reading_guide() -> None:
    st.markdown(
        """
**Colours.** Red marks features that push the explained class *up*, blue those that push it
*down*; stronger colour, larger share. On the text and tabular pages every panel (and the
before/after rows) uses **one shared colour scale** by default, so equal colours mean equal
scores across methods. Images default to a per-panel scale, because pixel maps differ in how
concentrated they are (IG is spiky, occlusion spreads a drop over its window). The sidebar
switches between the two, and the legend under the panels says which one is in use.

**Under each panel.** :material/timer: seconds of the computation (of the original run when the result came
from the cache) · `δ` the convergence delta (IG, GradientSHAP): how far the scores' sum is from
f(input) − f(baseline); small relative to `Σ` (the sum of the scores) means the
integral converged · `cache hit` when the attribution store answered without running the model.
Scores, `Σ` and `δ` are in the explained output's own units: logits for a classifier (the
output before the softmax or sigmoid), the score itself for a score model (regression,
ranking), as the legend under the panels says.

**Cost.** Each panel shows the forward passes its settings need before it runs. Anything above
the cap in the sidebar is refused with a message instead of tying up the machine.

**Compare section** (bottom of each page):
- *Agreement*: Spearman/Kendall rank correlation, top-k Jaccard overlap and sign agreement
  between every pair of methods. Low agreement means at least one map is misleading you.
- *Faithfulness*: remove features in a method's order and watch the target probability
  (deletion) or add them to a baseline (insertion). A good method beats the **random control**.
- *Flips*: the fewest deletions that change the prediction; one click loads that edit.
- *Stability*: IG sum and δ against n_steps (with a suggested n_steps), GradientSHAP seed
  intervals, and how much each map depends on the baseline.
- *Sanity* (on demand): randomize the model layer by layer; a map that does not change
  explains the input, not the model.
- *Robustness* (on demand): infidelity and max-sensitivity, lower is better.

**Sharing.** The address bar mirrors the view (model, input, methods, parameters, target and
edit): copy it to share. Every page offers JSON (the engine's schema), CSV and PNG downloads.
"""
    )


def store_size() -> None:
    """How much the attribution store holds, against its cap (or why it is not in use)."""
    s = store_stats()
    if s.get("error") or s.get("rows") is None:
        st.caption(f":material/database: Attribution store not in use: {render.md(s.get('error') or 'unknown')}. "
                   "Results are computed each time.")
        return
    mb = (s.get("bytes") or 0) / 1e6
    cap = (s.get("cap_bytes") or 0) / 1e6
    st.caption(f":material/database: Attribution store: {s['rows']:,} result(s), {mb:,.1f} MB of a "
               f"{cap:,.0f} MB cap (least recently used results go first; `ATTRIBUTION_STUDIO_CACHE_MB` "
               f"sets it) at `{render.md(s.get('path'))}`. `make clean-cache` empties it.")
