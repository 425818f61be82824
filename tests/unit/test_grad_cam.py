"""Grad-CAM and Guided Grad-CAM: the layer choice, values against Captum, cost, notes, and
the hook guarantees (none left after success, an invalid target or an aborted run; concurrent
sessions get the results of serial ones although these methods hook the shared model)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from explainers import ExplainerError, explain, get_method, list_methods, run_method
from explainers.adapters import ImageAdapter
from explainers.engine import check_method, estimate_cost
from explainers.pooling import shares_per_batch
from explainers.methods.cam import HOOK_DICTS, conv_stages, stage_names

CAMS = ("grad_cam", "guided_grad_cam")


class ReluCNN(torch.nn.Module):
    """Two stages of conv + ReLU modules (what guided backprop hooks), then a ReLU6 stage."""

    def __init__(self, n_classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
        self.blocks = torch.nn.Sequential(
            torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1, stride=2), torch.nn.ReLU(inplace=True)),
            torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1, stride=2), torch.nn.ReLU6()))
        self.head = torch.nn.Linear(8, n_classes)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def cnn():
    return ImageAdapter("relu-cnn", ReluCNN(), ["a", "b", "c"], size=32, patch=8)


@pytest.fixture(scope="module")
def img():
    return np.random.default_rng(1).integers(0, 255, size=(32, 32, 3), dtype=np.uint8)


def hook_count(module: torch.nn.Module) -> int:
    """Every module hook: forward, pre-forward, backward and full backward (``_backward_hooks``
    holds both kinds), backward pre-hooks, and the kwargs / always-called bookkeeping."""
    return sum(len(getattr(m, name, None) or {}) for m in module.modules() for name in HOOK_DICTS)


def global_hooks() -> int:
    from torch.nn.modules import module as mod
    return sum(len(getattr(mod, n)) for n in dir(mod) if n.startswith("_global_") and n.endswith("hooks"))


# -- layer choice -------------------------------------------------------------------------------
def test_stages_come_from_the_module_tree(cnn):
    assert stage_names(cnn.module) == ["stem", "blocks.0", "blocks.1"]
    assert conv_stages(cnn) == [("stem", (32, 32)), ("blocks.0", (16, 16)), ("blocks.1", (8, 8))]
    spec = {s.name: s for s in get_method("grad_cam").param_specs(cnn)}["layer"]
    assert spec.default == "blocks.1" and spec.choices == ("stem", "blocks.0", "blocks.1")
    assert hook_count(cnn.module) == 0  # the shape probe removed its hooks


def test_a_timm_model_lists_its_stages():
    """timm names its stages in feature_info; trailing conv modules (conv_head) follow."""
    import timm
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    adapter = ImageAdapter("resnet18", model, ["a", "b", "c"], size=64, patch=16)
    assert [n for n, _ in conv_stages(adapter)] == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert dict(conv_stages(adapter))["layer4"] == (2, 2)
    eff = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=3)
    assert stage_names(eff)[-2:] == ["blocks.6", "conv_head"]
    res = run_method(adapter, adapter.encode(np.full((64, 64, 3), 90, np.uint8)), "grad_cam", target=0)
    assert res.scores.shape == (64, 64) and hook_count(model) == 0


def test_unknown_layer_is_refused(cnn, img):
    enc = cnn.encode(img)
    with pytest.raises(ExplainerError, match="one of"):
        run_method(cnn, enc, "grad_cam", {"layer": "head"})


def test_only_for_images():
    for name in CAMS:
        assert name in list_methods("image")
        assert name not in list_methods("text") and name not in list_methods("tabular")


# -- values -------------------------------------------------------------------------------------
def test_grad_cam_is_captums_layer_grad_cam_upsampled(cnn, img):
    from captum.attr import LayerAttribution, LayerGradCam
    enc = cnn.encode(img)
    for layer in ("blocks.0", "blocks.1"):
        ours = run_method(cnn, enc, "grad_cam", {"layer": layer, "interpolation": "nearest"}, target=2).scores
        cam = LayerGradCam(cnn.forward_fn(enc), cnn.module.get_submodule(layer)).attribute(
            enc.inputs.clone(), target=2, relu_attributions=True)
        ref = LayerAttribution.interpolate(cam, (32, 32), "nearest")[0, 0].detach().numpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)
        assert ours.min() >= 0 and ours.max() > 0
    nearest = {"interpolation": "nearest"}  # bilinear upsampling and the ReLU do not commute
    signed = run_method(cnn, enc, "grad_cam", {**nearest, "relu_attributions": "false"}, target=2).scores
    relu = run_method(cnn, enc, "grad_cam", nearest, target=2).scores
    assert signed.min() < 0, "without the ReLU the map keeps its negative part"
    np.testing.assert_allclose(np.clip(signed, 0, None), relu, rtol=1e-5, atol=1e-7)


def test_guided_grad_cam_rectifies_relu6_too(cnn, img):
    """Our guided backprop also hooks ReLU6; Captum's own hooks ReLU only, so on a model
    with a ReLU6 the maps differ (by 25 % of the map's maximum here)."""
    from captum.attr import GuidedGradCam
    from explainers.methods.cam import ForwardModule
    enc = cnn.encode(img)
    ours = run_method(cnn, enc, "guided_grad_cam", {"interpolation": "nearest"}, target=0).scores
    plain = GuidedGradCam(ForwardModule(cnn.module, cnn.forward_fn(enc)), cnn.module.get_submodule("blocks.1"))
    ref = plain.attribute(enc.inputs.clone(), target=0)[0].sum(0).detach().numpy()
    assert np.isfinite(ours).all() and np.abs(ours).sum() > 0
    assert np.abs(ours - ref).max() > 0.05 * np.abs(ref).max(), "ReLU6 was not rectified"
    assert hook_count(cnn.module) == 0


def test_notes_say_the_resolution_and_an_earlier_stage(cnn, img):
    enc = cnn.encode(img)
    last = run_method(cnn, enc, "grad_cam", target=0)
    assert any("8 x 8 cells" in n for n in last.notes)
    assert not any("not the last" in n for n in last.notes)
    early = run_method(cnn, enc, "grad_cam", {"layer": "blocks.0"}, target=0)
    assert any("blocks.0 is not the last convolutional stage (blocks.1" in n for n in early.notes)
    assert not np.allclose(early.scores, last.scores)


def test_cost_estimate_counts_the_examples_run(cnn, img, monkeypatch):
    enc = cnn.encode(img)
    for name in CAMS:
        seen = []
        forward = cnn.forward_fn
        monkeypatch.setattr(cnn, "forward_fn",
                            lambda e, on_batch=None: forward(e, lambda n: (seen.append(n), on_batch(n))))
        calls = []
        run_method(cnn, enc, name, target=0, progress=lambda m, f: calls.append(f))
        monkeypatch.undo()
        assert sum(seen) == estimate_cost(cnn, enc, name) == {"grad_cam": 1, "guided_grad_cam": 2}[name]
        assert calls[-1] == 1.0 and all(0 < f <= 1 for f in calls)


def test_the_store_keys_on_the_layer(cnn, img, tmp_path):
    from cache.store import AttributionStore
    store = AttributionStore(tmp_path / "s.sqlite")
    enc = cnn.encode(img)
    a = run_method(cnn, enc, "grad_cam", {"layer": "blocks.0"}, 0, store)
    b = run_method(cnn, enc, "grad_cam", {"layer": "blocks.1"}, 0, store)
    again = run_method(cnn, enc, "grad_cam", {"layer": "blocks.0"}, 0, store)
    assert not a.cache_hit and not b.cache_hit and again.cache_hit
    np.testing.assert_allclose(again.scores, a.scores, rtol=1e-6)  # stored as float32
    assert not np.allclose(a.scores, b.scores)
    assert again.notes == a.notes  # the notes come back with a stored result


def test_compare_metrics_and_sanity_take_grad_cam(cnn, img):
    r = explain(cnn, img, methods=["grad_cam", "guided_grad_cam", "saliency"], target=0, use_cache=False,
                metrics=["agreement", "faithfulness", "flip", "sanity"],
                metric_params={"random_orders": 10})
    assert set(r.metrics["faithfulness"]["methods"]) >= set(CAMS)
    assert set(r.metrics["flip"]["methods"]) >= set(CAMS)
    assert "grad_cam" in r.metrics["agreement"]["methods"]
    assert set(r.metrics["sanity"]["methods"]) >= set(CAMS)
    assert hook_count(cnn.module) == 0


# -- hooks ----------------------------------------------------------------------------------------
def test_cam_methods_hold_the_model_for_the_whole_run(cnn):
    for name in CAMS:
        method, params = check_method(cnn, name, None)
        assert method.exclusive_model and not shares_per_batch(method, params)


class HookSpy(torch.nn.Module):
    """Records, at each forward, the hooks on the model it wraps: on its ReLUs (guided
    backprop's) and on all its modules (Grad-CAM's layer hook included)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.relu_hooks: list[int] = []
        self.all_hooks: list[int] = []

    def forward(self, x):
        self.relu_hooks.append(sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in self.model.modules()
                                   if isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6))))
        self.all_hooks.append(hook_count(self.model))
        return self.model(x)


@pytest.fixture()
def spied():
    spy = HookSpy(ReluCNN())
    return ImageAdapter("spied", spy, ["a", "b", "c"], size=32, patch=8), spy


def aborter(module: torch.nn.Module, at_last: bool, seen: list[int]):
    """A progress callback that raises at the first batch, or at the last one (Guided
    Grad-CAM: inside guided backprop's forward), noting the hooks on the model right then."""
    def cb(method, fraction):
        if not at_last or fraction >= 1.0:
            seen.append(hook_count(module))
            raise RuntimeError("the user changed a widget mid-run")
    return cb


@pytest.mark.parametrize("name", CAMS)
@pytest.mark.parametrize("case", ["success", "invalid target", "target out of range inside Captum",
                                  "aborted at the first batch", "aborted at the last batch"])
def test_no_hook_is_left(spied, img, name, case):
    adapter, spy = spied
    enc = adapter.encode(img)
    conv_stages(adapter)  # the one-off shape probe, before the spy starts counting
    spy.relu_hooks.clear()
    spy.all_hooks.clear()
    assert hook_count(adapter.module) == 0
    before_global = global_hooks()
    if case == "success":
        assert np.isfinite(run_method(adapter, enc, name, target=1).scores).all()
    elif case == "invalid target":
        with pytest.raises(ExplainerError, match="out of range"):
            run_method(adapter, enc, name, target=7)
    elif case == "target out of range inside Captum":  # fails while Captum's hooks are in place
        method, params = check_method(adapter, name, None)
        with adapter.guarded(), pytest.raises((IndexError, RuntimeError)):
            method.run(adapter, enc, 7, params, adapter.forward_fn(enc))
    else:
        abort = aborter(adapter.module, "last" in case, spy.all_hooks)
        with pytest.raises(RuntimeError, match="widget"):
            run_method(adapter, enc, name, target=1, progress=abort)
    assert hook_count(adapter.module) == 0, case
    assert global_hooks() == before_global
    assert not adapter.module.training and not enc.inputs.requires_grad
    # the test proves something only if the hooks were there when it stopped
    if case != "invalid target":
        assert max(spy.all_hooks) > 0, "no hook was ever registered"
    if name == "guided_grad_cam" and case == "aborted at the last batch":
        assert max(spy.all_hooks) >= 6, "guided backprop's two hooks on each of the 3 activations"
    if name == "guided_grad_cam" and case == "success":
        assert max(spy.relu_hooks) > 0, "guided backprop never hooked the ReLUs"
    assert adapter.lock.acquire(timeout=5)  # released
    adapter.lock.release()


def test_concurrent_sessions_get_serial_results(img):
    """Guided Grad-CAM rectifies every ReLU's gradient through hooks on the shared model;
    a gradient method running meanwhile without the lock would get rectified gradients.
    Threads mixing both, on one adapter, must get exactly what each gets alone."""
    adapter = ImageAdapter("shared", ReluCNN(), ["a", "b", "c"], size=32, patch=8)
    enc = adapter.encode(img)
    jobs = [("guided_grad_cam", None), ("grad_cam", {"layer": "blocks.0"}), ("saliency", {"absolute": "no"}),
            ("integrated_gradients", {"n_steps": 8}), ("input_x_gradient", None), ("grad_cam", None)]
    serial = {i: run_method(adapter, enc, n, p, target=1).scores for i, (n, p) in enumerate(jobs)}
    out, errors = {}, []

    def work(i, n, p, round_):
        try:
            out[(i, round_)] = run_method(adapter, enc, n, p, target=1).scores
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, n, p, r)) for r in range(3)
               for i, (n, p) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(out) == 3 * len(jobs)
    for (i, _), scores in out.items():
        np.testing.assert_allclose(scores, serial[i], rtol=1e-5, atol=1e-7, err_msg=jobs[i][0])
    assert hook_count(adapter.module) == 0


# -- the GPU script's Grad-CAM step ---------------------------------------------------------------
def test_device_check_skips_cleanly_without_cuda_and_its_grad_cam_step_runs(cnn, img, capsys, monkeypatch):
    """Without CUDA the script prints what it skipped and exits 0; its Grad-CAM step (fp32
    against bf16 autocast) runs on the CPU's autocast, so the GPU session meets no bug."""
    from bench import device_check
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_check.main() == 0
    assert "grad_cam fp32 vs bf16" in capsys.readouterr().out
    out = device_check.grad_cam_precision(cnn, cnn.encode(img), repeats=2)
    assert out["fp32_s"] > 0 and out["bf16_s"] > 0 and np.isfinite(out["speedup"])
    assert 0.5 < out["spearman"] <= 1.0  # bf16 keeps the map's ranking roughly
    assert cnn.forward.__func__ is ImageAdapter.forward  # the fp32/bf16 override was undone
    assert hook_count(cnn.module) == 0


# -- the image review table ----------------------------------------------------------------------
def test_image_review_set_and_table():
    from bench import image_review as ir
    comps = ir.composites()
    assert len(comps) == 24 and len({stem for stem, _ in comps}) == 24
    stem, arr = next((s, a) for s, a in comps if s.endswith("chelsea_grey_br"))
    assert arr.shape == (448, 448, 3) and (arr[:224, :224] == 128).all() and not (arr[224:, 224:] == 128).all()
    scores = np.zeros((224, 224))
    scores[112:, 112:] = 1.0  # all positive mass in the bottom-right quadrant
    scores[:10, :10] = -5.0   # negative mass does not count
    line = {"id": f"{stem}.png", "attributions": {m: {"scores": scores.tolist()} for m in ("a", "integrated_gradients")},
            "metrics": {"agreement": {"methods": ["a", "integrated_gradients"], "spearman": [[1, 0.25], [0.25, 1]]},
                        "faithfulness": {"methods": {"a": {"deletion_aopc": 0.5, "beats_random": True},
                                                     "integrated_gradients": {"deletion_aopc": 0.3,
                                                                              "beats_random": False}},
                                         "random": {"deletion_aopc": 0.2}},
                        "flip": {"methods": {"a": {"count": 3}, "integrated_gradients": {"count": None}},
                                 "random": {"count": 9}}}}
    table = ir.table([line, {"id": "x", "error": "boom"}])
    assert "1 images (1 failed)" in table
    assert "| a | 0.500 | 1/1 (3.0) | 1/1 | 0.25 | - | 1.00 |" in table
    assert "| integrated_gradients | 0.300 | 0/1 (-) | 0/1 | 1 (itself) | - | 1.00 |" in table
    assert "| (random control) | 0.200 | 1/1 (9.0) |" in table
