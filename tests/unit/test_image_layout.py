"""Channels-last image models (issue 22, item 8): the same scores as the default layout.

The default image models run on channels-last tensors because oneDNN's convolutions are
much faster that way on CPU (BENCHMARKS). Layout must never change what a method returns.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explainers.adapters import ImageAdapter
from explainers.engine import run_method

METHODS = {"integrated_gradients": {"n_steps": 8}, "gradient_shap": {"n_samples": 4},
           "occlusion": {"window": 8, "stride": 8}, "saliency": None, "grad_cam": None}


class TinyBNNet(torch.nn.Module):
    """Conv, batch norm, ReLU6 twice: the ops EfficientNet-Lite0 is made of."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, 3)

    def forward(self, x):
        x = torch.nn.functional.relu6(self.bn1(self.conv1(x)))
        x = torch.nn.functional.relu6(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


def _net() -> TinyBNNet:
    torch.manual_seed(0)
    net = TinyBNNet()
    with torch.no_grad():  # running statistics that are not the identity
        for bn in (net.bn1, net.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return net


def _pair() -> tuple[ImageAdapter, ImageAdapter]:
    plain = ImageAdapter("tiny-bn", _net(), ["a", "b", "c"], size=32, patch=8)
    fast = ImageAdapter("tiny-bn", _net(), ["a", "b", "c"], size=32, patch=8, channels_last=True)
    return plain, fast


@pytest.fixture(scope="module")
def picture():
    return np.random.default_rng(1).integers(0, 255, size=(32, 32, 3), dtype=np.uint8)


def test_the_module_sees_channels_last_inputs(picture):
    _, fast = _pair()
    seen = []
    handle = fast.module.register_forward_pre_hook(
        lambda mod, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    try:
        fast.predict(fast.encode(picture))
    finally:
        handle.remove()
    assert seen and all(seen)
    assert fast.module.conv1.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", list(METHODS))
def test_channels_last_gives_the_same_scores(picture, name):
    plain, fast = _pair()
    a = run_method(plain, plain.encode(picture), name, METHODS[name], 0, None).scores
    b = run_method(fast, fast.encode(picture), name, METHODS[name], 0, None).scores
    assert a.shape == b.shape
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * float(np.abs(a).max()))


def test_the_default_image_models_run_channels_last():
    from cache.models import default_image
    adapter = default_image()
    assert adapter.channels_last
    assert adapter.module.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
