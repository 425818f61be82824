"""What the Grad-CAM methods share: the choice of convolutional stage and hook hygiene.

Grad-CAM explains the output of one convolutional layer, so the methods need the model's
stages by name. They are found from the module tree, never from a hard-coded list, so a
user's timm model works as well as the default EfficientNet-Lite0:

1. a timm model names its stages in ``feature_info`` (EfficientNet: ``blocks.0`` ...
   ``blocks.6``; ResNet: ``act1``, ``layer1`` ... ``layer4``);
2. any other model: its top-level children that hold a ``Conv2d``, a ``Sequential`` or
   ``ModuleList`` of such blocks expanded one level;
3. then the convolutional modules after the last stage (EfficientNet's ``conv_head``);

and only those whose output, on one probe forward at the model's resolution, is a spatial
map ``[1, C, h, w]`` stay. The last one is the default (Selvaraju et al. use the last
convolutional layer).

Hooks: Captum's layer methods hook the shared model for the whole call. The methods that
use them set ``exclusive_model`` (the engine then holds the model lock for the whole run,
see :func:`explainers.engine.shares_per_batch`) and run inside :func:`no_hooks_left`, which
removes any hook added during the call, whatever raised.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator

import torch

from ..errors import ExplainerError
from ..params import ParamSpec

if TYPE_CHECKING:
    from ..adapters.base import ModelAdapter

#: the per-module dicts a hook lives in (forward, pre-forward, backward, full backward)
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
              "_forward_pre_hooks_with_kwargs")
_CACHE_ATTR = "_cam_stages"


def has_conv(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for m in module.modules())


def _feature_info_names(module: torch.nn.Module) -> list[str]:
    info = getattr(module, "feature_info", None)
    if info is None:
        return []
    try:
        dicts = info.get_dicts() if hasattr(info, "get_dicts") else list(info)
        return [str(d["module"]) for d in dicts if d.get("module")]
    except (TypeError, KeyError, AttributeError):
        return []


def _top_level_stages(module: torch.nn.Module) -> list[str]:
    names = []
    for name, child in module.named_children():
        if not has_conv(child):
            continue
        if isinstance(child, (torch.nn.Sequential, torch.nn.ModuleList)):
            inner = [f"{name}.{n}" for n, c in child.named_children() if has_conv(c)]
            if len(inner) > 1:
                names.extend(inner)
                continue
        names.append(name)
    return names


def _backbone(module: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """The module the stages are read from, and its name prefix: a wrapper whose only
    convolutional child is one model (``Wrapper(model=timm_model)``) is looked through."""
    prefix = ""
    while True:
        convs = [(n, c) for n, c in module.named_children() if has_conv(c)]
        if len(convs) != 1:
            return module, prefix
        name, child = convs[0]
        if isinstance(child, (torch.nn.modules.conv._ConvNd, torch.nn.Sequential, torch.nn.ModuleList)):
            return module, prefix
        module, prefix = child, f"{prefix}{name}."


def stage_names(module: torch.nn.Module) -> list[str]:
    """Candidate stages by name, in forward order (before the shape probe filters them)."""
    root, prefix = _backbone(module)
    modules = dict(root.named_modules())
    # timm's stages are taken as named (ResNet's act1 holds no conv but outputs conv1's map);
    # the probe then keeps those with a spatial output
    names = [n for n in _feature_info_names(root) if n in modules] or _top_level_stages(root)
    if names:
        # convolutional top-level modules registered after the last stage (conv_head)
        order = [n for n, _ in root.named_modules()]
        last = max(order.index(n) for n in names)
        top_of_last = names[-1].split(".")[0]
        for name, child in root.named_children():
            if name != top_of_last and order.index(name) > last and has_conv(child):
                names.append(name)
    return [prefix + n for n in dict.fromkeys(names)]


def _probe(adapter: "ModelAdapter", names: list[str]) -> dict[str, tuple[int, int]]:
    """Each named module's output grid ``(h, w)`` on one forward of a grey image, for the
    modules whose output is a ``[1, C, h, w]`` map. The forward hooks live on the shared
    model only under its lock, and are removed before it is released."""
    modules = dict(adapter.module.named_modules())
    size = int(getattr(adapter, "size", 224))
    grids: dict[str, tuple[int, int]] = {}

    def record(name: str) -> Callable:
        def hook(mod, inp, out) -> None:  # returns None: the output is left as it is
            if isinstance(out, torch.Tensor) and out.ndim == 4:
                grids[name] = (int(out.shape[2]), int(out.shape[3]))
        return hook

    x = torch.full((1, 3, size, size), 0.5, device=adapter.device)
    with adapter.guarded(), no_hooks_left(adapter.module):
        handles = [modules[n].register_forward_hook(record(n)) for n in names]
        try:
            with torch.no_grad():
                adapter.forward(x, None)  # the image adapter's forward needs no encoding
        finally:
            for h in handles:
                h.remove()
    return grids


def conv_stages(adapter: "ModelAdapter") -> list[tuple[str, tuple[int, int]]]:
    """``[(stage name, (h, w) of its output at the model's resolution)]`` in forward order.

    Computed once per adapter (one probe forward) and kept on it; copies of the adapter
    (a run's, the sanity check's) share it, their module trees have the same names.
    """
    cached = adapter.__dict__.get(_CACHE_ATTR)
    if cached is not None:
        return cached
    names = stage_names(adapter.module)
    try:
        grids = _probe(adapter, names) if names else {}
    except Exception:  # noqa: BLE001 - a model that cannot be probed has no usable stage
        grids = {}
    stages = [(n, grids[n]) for n in names if n in grids and grids[n][0] * grids[n][1] > 1]
    adapter.__dict__[_CACHE_ATTR] = stages
    return stages


def layer_spec(adapter: "ModelAdapter") -> ParamSpec:
    """The ``layer`` parameter: one of the adapter's convolutional stages, the last by default."""
    stages = conv_stages(adapter)
    if not stages:
        return ParamSpec("layer", "choice", "none", "no convolutional stage with a spatial "
                         "output was found in this model", choices=("none",))
    grids = ", ".join(f"{n} {h}x{w}" for n, (h, w) in stages)
    return ParamSpec("layer", "choice", stages[-1][0],
                     f"convolutional stage whose output is explained (grid at the model's "
                     f"resolution: {grids}); the last is the default, earlier ones are finer "
                     f"but less class-specific", choices=tuple(n for n, _ in stages))


def interpolation_spec() -> ParamSpec:
    return ParamSpec("interpolation", "choice", "bilinear",
                     "how the layer's coarse map is upsampled to the input (Captum "
                     "LayerAttribution.interpolate)", choices=("bilinear", "nearest"))


def resolve_layer(adapter: "ModelAdapter", name: str) -> torch.nn.Module:
    """The submodule ``name`` of the adapter's model (a copy's own module for a copy)."""
    if name == "none" or name not in dict(conv_stages(adapter)):
        raise ExplainerError(f"Grad-CAM needs a convolutional stage with a spatial output; "
                             f"'{name}' is not one of this model's "
                             f"({[n for n, _ in conv_stages(adapter)] or 'none found'})")
    return adapter.module.get_submodule(name)


def layer_notes(adapter: "ModelAdapter", params: dict) -> list[str]:
    """The map's resolution, and a word when the stage is not the last one."""
    stages = conv_stages(adapter)
    grids = dict(stages)
    layer = params.get("layer")
    if layer not in grids:
        return []
    h, w = grids[layer]
    size = int(getattr(adapter, "size", 224))
    notes = [f"Grad-CAM map of {layer}: {h} x {w} cells (about {size // h} px each), upsampled "
             f"({params.get('interpolation', 'bilinear')}) to {size} x {size}; finer detail in "
             f"the picture comes from the upsampling, not from the model."]
    last = stages[-1][0]
    if layer != last:
        notes.append(f"{layer} is not the last convolutional stage ({last}, {grids[last][0]} x "
                     f"{grids[last][1]}): Selvaraju et al. take the last one, whose channels are "
                     f"the most class-specific. An earlier stage gives a finer map, but its "
                     f"channels respond to parts and textures, so it can light up more than "
                     f"the class's evidence.")
    return notes


@contextlib.contextmanager
def no_hooks_left(module: torch.nn.Module) -> Iterator[None]:
    """Remove, on exit (success or exception), every module hook added to ``module`` or its
    submodules inside the block. Captum removes its own in ``finally`` blocks; this also
    covers a hook registered between Captum's registration and its ``try``. Only safe while
    the model lock is held, so that every hook added meanwhile is this run's."""
    before = {id(m): {a: set(getattr(m, a, {}) or {}) for a in HOOK_DICTS} for m in module.modules()}
    try:
        yield
    finally:
        for m in module.modules():
            seen = before.get(id(m), {})
            for a in HOOK_DICTS:
                d = getattr(m, a, None)
                if not d:
                    continue
                for k in [k for k in d if k not in seen.get(a, set())]:
                    del d[k]


class ForwardModule(torch.nn.Module):
    """An ``nn.Module`` around the engine's forward function (normalisation, autocast,
    progress) that holds the model as a child, so Captum's ``GuidedBackprop``, which hooks
    the ReLUs it finds by walking a module, reaches the model's."""

    def __init__(self, model: torch.nn.Module, forward: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self._forward = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)
