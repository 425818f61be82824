"""Image adapter: attributions on pixels in [0, 1] at model resolution.

Normalisation happens inside the forward pass, so baselines (black, blur, noise, dataset
mean) live in plain pixel space and mean what they say.
"""

from __future__ import annotations

import io
import warnings as _warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.functional import gaussian_blur

from ..baselines import neutral_baseline
from ..errors import ExplainerError
from .base import Encoded, ModelAdapter

#: refuse images above this many pixels (PIL raises DecompressionBombError at 2x this)
MAX_PIXELS = 40_000_000
IMAGENET_MEAN = (0.485, 0.456, 0.406)


#: the only formats Pillow may decode; anything else (EPS, which runs Ghostscript, PSD,
#: ICO, ...) is refused before its plugin sees the bytes
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")


def load_image(source: Any) -> Image.Image:
    """An RGB PIL image from a path, bytes, file object, PIL image or HxW(x3) array.

    Only :data:`ALLOWED_FORMATS` are decoded. 16-bit images are scaled to 8 bits (not
    clipped).

    Raises:
        ExplainerError: for another type of input, a file that is not an image in an allowed
            format, a truncated image, an image with no pixels, an array with NaN or infinite
            values, or an image so large it may be a decompression bomb.
    """
    if isinstance(source, Image.Image):
        if source.format is not None and source.format not in ALLOWED_FORMATS:
            raise ExplainerError(f"image format {source.format} is not accepted; use "
                                 f"{', '.join(ALLOWED_FORMATS)}")
        img = source
    elif isinstance(source, np.ndarray):
        img = Image.fromarray(array_to_uint8(source))
    elif isinstance(source, (bytes, bytearray, str, Path)) or hasattr(source, "read"):
        img = decode_image(source)
    else:
        raise ExplainerError("an image input is a file path, bytes, a file object, a PIL image "
                             f"or an HxW(x3) array, got {type(source).__name__}")
    if img.width == 0 or img.height == 0:
        raise ExplainerError(f"the image has no pixels ({img.width}x{img.height})")
    return to_rgb(img)


def decode_image(source: Any) -> Image.Image:
    """Decode a path, bytes or file object with Pillow, restricted to the allowed formats."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, Path)) and not Path(source).is_file():
        raise ExplainerError(f"image file not found: {source}")
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(source, formats=list(ALLOWED_FORMATS))
            if img.width * img.height > MAX_PIXELS:
                raise ExplainerError(
                    f"image is {img.width}x{img.height} pixels, over the {MAX_PIXELS:,} limit")
            img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ExplainerError("image refused: too many pixels (possible decompression bomb)") from None
    except UnidentifiedImageError:
        raise ExplainerError("the file is not an image in an accepted format "
                             f"({', '.join(ALLOWED_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ExplainerError(f"the image could not be decoded (truncated or corrupt): {e}") from None
    return img


def array_to_uint8(arr: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 array from an image array.

    Accepts HxW, HxWx1, HxWx3 and HxWx4 (alpha dropped). uint16 (and wider integers above
    255) are 16-bit images, scaled by 255/65535; floats in [0, 1] are scaled by 255, other
    floats are clipped to [0, 255].

    Raises:
        ExplainerError: for another shape, an empty array, NaN or infinite values, or
            integers outside 0..65535.
    """
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        raise ExplainerError(f"an image array must be HxW or HxWx3, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ExplainerError(f"the image has no pixels (shape {arr.shape})")
    arr = np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr[..., :3]
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise ExplainerError(f"integer image values must lie in 0..65535, got {lo}..{hi}")
        if arr.dtype.itemsize == 2 or hi > 255:  # 16-bit content
            return np.round(arr.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.floating):
        raise ExplainerError(f"image arrays must hold numbers, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ExplainerError("the image array has NaN or infinite values")
    scale = 255.0 if arr.max() <= 1.0 else 1.0
    return np.clip(np.round(arr * scale), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with 16-bit and 32-bit modes (``I;16``, ``I``, ``F``) scaled, not clipped."""
    if img.mode.startswith("I") or img.mode == "F":
        return Image.fromarray(array_to_uint8(np.asarray(img)))
    return img.convert("RGB")


def to_model_resolution(img: Image.Image, size: int) -> np.ndarray:
    """The whole image resized to ``size`` x ``size``.

    No center crop: the user sees (and erases patches of) exactly what the model sees.
    On skimage's ``chelsea`` this gives "Egyptian cat" 0.62 top-1 with EfficientNet-Lite0,
    against "tiger cat" 0.37 with a resize-256 + crop-224.
    """
    return np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.uint8)


class ImageAdapter(ModelAdapter):
    """Adapter for image classifiers taking normalised ``[B, 3, H, W]`` tensors.

    Args:
        name: display name.
        module: the classifier.
        labels: class names.
        size: model input resolution.
        mean, std: the normalisation the model was trained with.
        patch: side of the square patches used as features by the metrics.
        channels_last: run the module on channels-last (NHWC) tensors. oneDNN's convolutions
            are several times faster that way on CPU (BENCHMARKS, issue 22); only for modules
            whose ops all take any memory layout (timm's convnets do; a ``view`` of the
            input does not).
    """

    modality = "image"
    baseline_kinds = ("black", "blur", "noise", "mean", "neutral")
    default_baselines = ("black",)
    #: GradientSHAP's default: a baseline distribution, so that it estimates SHAP values
    distribution_baselines = ("black", "blur", "mean")
    #: the fills the ``neutral`` baseline is searched among (with pairwise mixes)
    neutral_candidates = ("black", "blur", "mean")
    grad_batch_size = 16
    eval_batch_size = 32
    occlusion_window_default = 32
    occlusion_stride_default = 16
    occlusion_window_max = 224
    feature_unit = "patch"

    def __init__(self, name: str, module: torch.nn.Module, labels: Sequence[str], size: int = 224,
                 mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5),
                 patch: int = 16, device: torch.device | None = None, channels_last: bool = False) -> None:
        super().__init__(name, module, labels, device)
        self.channels_last = channels_last
        if channels_last:
            self.module.to(memory_format=torch.channels_last)
        self.size = size
        self.patch = patch
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    def encode(self, raw: Any) -> Encoded:
        img = load_image(raw)
        arr = to_model_resolution(img, self.size)
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255.0).unsqueeze(0).to(self.device)
        n = self.size // self.patch
        rows = torch.arange(self.size, device=self.device) // self.patch
        patch_id = (rows[:, None].clamp(max=n - 1) * n + rows[None, :].clamp(max=n - 1))
        groups = patch_id.unsqueeze(0).expand(3, -1, -1)
        labels = [f"patch r{r} c{c}" for r in range(n) for c in range(n)]
        warn = []
        if img.size != (self.size, self.size):
            warn.append(f"image {img.size[0]}x{img.size[1]} resized to {self.size}x{self.size}")
        return Encoded(inputs=x, feature_labels=labels, groups=groups, raw=arr, warnings=warn)

    def config(self) -> dict:
        return {"size": self.size, "patch": self.patch, "mean": self.mean.flatten().tolist(),
                "std": self.std.flatten().tolist()}

    def _logits(self, inputs: torch.Tensor, enc: Encoded) -> torch.Tensor:
        x = (inputs - self.mean) / self.std
        if self.channels_last:  # the gradient comes back to ``inputs`` in their own layout
            x = x.contiguous(memory_format=torch.channels_last)
        return self.module(x)

    def baseline(self, enc: Encoded, kind: str) -> torch.Tensor:
        x = enc.inputs
        if kind == "black":
            return torch.zeros_like(x)
        if kind == "mean":
            return torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1).expand_as(x).clone()
        if kind == "noise":
            gen = torch.Generator().manual_seed(0)
            return torch.rand(x.shape, generator=gen).to(x.device)
        if kind == "blur":
            k = self.size // 7 * 2 + 1  # wide enough to remove object detail
            return gaussian_blur(x, [k, k], [k / 4.0, k / 4.0])
        if kind == "neutral":
            return neutral_baseline(self, enc)
        raise ExplainerError(f"unknown image baseline {kind!r}")

    def neutral_candidate_tensors(self, enc: Encoded) -> dict[str, torch.Tensor]:
        return {kind: self.baseline(enc, kind) for kind in self.neutral_candidates}

    def neutral_key(self, enc: Encoded) -> str:
        """The neutral search depends on the image itself (the ``blur`` candidate is made
        from it), so it is kept per image (:func:`explainers.baselines.memo_key`)."""
        return enc.key

    def describe_baseline(self, kind: str) -> str:
        return {"black": "an all-black image", "blur": "the image under a wide Gaussian blur",
                "noise": "uniform random pixels (seed 0)",
                "mean": "every pixel at the ImageNet mean colour"}.get(kind, kind)

    def sliding_window(self, enc: Encoded, window: int, stride: int) -> tuple[tuple, tuple]:
        window = min(window, self.size)
        return (3, window, window), (3, stride, stride)

    def reduce(self, attr: torch.Tensor, enc: Encoded) -> np.ndarray:
        return attr[0].sum(dim=0).detach().float().cpu().numpy()

    def score_shape(self, enc: Encoded) -> tuple[int, ...]:
        return tuple(int(d) for d in enc.inputs.shape[2:])

    def work_per_pass(self, enc: Encoded) -> int:
        return int(enc.inputs.shape[2] * enc.inputs.shape[3])  # pixels

    def features(self, enc: Encoded) -> dict:
        return {"height": int(enc.inputs.shape[2]), "width": int(enc.inputs.shape[3]),
                "patch": self.patch}

    def group_scores(self, scores: np.ndarray, enc: Encoded) -> np.ndarray:
        """Pixel scores summed per patch, with the same pixel -> patch map as ``groups``
        (edge pixels of a size that is not a multiple of the patch join the last patch)."""
        ids = enc.groups[0].flatten().cpu().numpy()
        return np.bincount(ids, weights=np.asarray(scores, dtype=np.float64).reshape(-1),
                           minlength=enc.n_features)

    def erase(self, enc: Encoded, box: tuple[int, int, int, int], fill: str = "black") -> np.ndarray:
        """An RGB uint8 copy of the model-resolution image with ``box`` (x0, y0, x1, y1) filled."""
        x0, y0, x1, y1 = [int(v) for v in box]
        x = enc.inputs.clone()
        b = self.baseline(enc, fill)
        x[..., y0:y1, x0:x1] = b[..., y0:y1, x0:x1]
        return (x[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
