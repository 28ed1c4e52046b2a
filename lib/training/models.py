"""Image classifiers by name or file: our small ones, every torchvision classifier, or a user's `FILE.py:build`.

A torchvision model is built with its architecture's own options, then its classification layer (the head)
is replaced by one with `num_classes` outputs, by a rule per family (HEADS). Pretrained weights are read only
from torch hub's cache (`$TORCH_HOME/hub/checkpoints/`, the file name torchvision's URL ends in), strictly
and with `weights_only=True`; `download_weights` is the one place that fetches, through torchvision itself.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from lib.training.config import MODELS, is_model_file  # the one list of names, importable without torch (pages)
from lib.training.model_names import (
    TORCHVISION_MODELS,
    file_sha256,
    refuse_when_deployed,
    split_model_file,
)

SMALL = ("linear", "mlp", "cnn")
# The head of each torchvision family (the module that family's builder lives in): its path in the model.
HEADS = {
    "alexnet": "classifier.6",
    "convnext": "classifier.2",
    "densenet": "classifier",
    "efficientnet": "classifier.1",
    "googlenet": "fc",
    "inception": "fc",
    "maxvit": "classifier.5",
    "mnasnet": "classifier.1",
    "mobilenetv2": "classifier.1",
    "mobilenetv3": "classifier.3",
    "regnet": "fc",
    "resnet": "fc",
    "shufflenetv2": "fc",
    "squeezenet": "classifier",  # Dropout, 1x1 Conv2d, ReLU, pool: replaced whole, so features stay its input
    "swin_transformer": "head",
    "vgg": "classifier.6",
    "vision_transformer": "heads.head",
}
FIXED_SIZE = ("vision_transformer", "maxvit", "swin_transformer")  # position tables or windows sized at build


def build_model(name: str, num_classes: int, image_size: int, *, weights: str = "", load: bool = True) -> nn.Module:
    """A model taking (B, 3, image_size, image_size) floats to (B, num_classes) logits.

    `weights`: a torchvision weights name (e.g. IMAGENET1K_V1), loaded from the hub cache when `load` (else
    only the architecture those weights need, for a checkpoint's state_dict to fill).

    Raises:
        ValueError: for an unknown name, fewer than 2 classes, weights that are unknown or not cached, or a
            model file that cannot be built.
    """
    if num_classes < 2:
        raise ValueError(f"Training needs at least 2 classes, got {num_classes}; add another class folder.")
    if weights and name not in TORCHVISION_MODELS:
        raise ValueError(f"Pretrained weights exist only for torchvision models, not {name}; train from scratch.")
    features = 3 * image_size * image_size
    if name == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes))
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(features, 256), nn.ReLU(), nn.Linear(256, num_classes))
    if name == "cnn":
        return small_cnn(num_classes)
    if name in TORCHVISION_MODELS:
        return torchvision_model(name, num_classes, image_size, weights=weights, load=load)
    if is_model_file(name):
        return model_from_file(name, num_classes)
    raise ValueError(f"Unknown model {name!r}; list them with `python -m lib models`.")


def small_cnn(num_classes: int) -> nn.Module:
    """Three conv blocks and global average pooling: a sensible default for 32-64 px images."""

    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(
        *block(3, 32), nn.MaxPool2d(2),  # (B, 32, H/2, W/2)
        *block(32, 64), nn.MaxPool2d(2),  # (B, 64, H/4, W/4)
        *block(64, 128), nn.AdaptiveAvgPool2d(1),  # (B, 128, 1, 1)
        nn.Flatten(), nn.Linear(128, num_classes),
    )  # fmt: skip


def family(name: str) -> str:
    """The torchvision module a model's builder lives in (resnet, vision_transformer, ...): its head rule."""
    from torchvision.models import get_model_builder

    return get_model_builder(name).__module__.rsplit(".", 1)[-1]


def weights_enum(name: str, weights: str = "DEFAULT"):
    """torchvision's weights entry `weights` (a name, or DEFAULT) of model `name`.

    Raises:
        ValueError: for a name the model has no weights under (lists those it has).
    """
    from torchvision.models import get_model_weights

    options = get_model_weights(name)
    try:
        return options[weights]
    except KeyError:
        names = ", ".join(w.name for w in options)
        raise ValueError(f"{name} has no weights {weights!r}; choose one of {names}.") from None


def weights_file(entry) -> Path:
    """Where torch hub keeps (or would keep) the file of a weights entry: $TORCH_HOME/hub/checkpoints/NAME."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(entry.url)


def min_size(name: str, weights: str = "") -> int:
    """The smallest input side a torchvision model takes (its weights' min_size; the fixed side for ViT,
    Swin and MaxViT)."""
    return weights_enum(name, weights or "DEFAULT").meta["min_size"][0]


def check_size(name: str, weights: str, image_size: int) -> None:
    """Raises ValueError (one sentence) when a torchvision model cannot take image_size x image_size inputs."""
    fam, low = family(name), min_size(name, weights)
    if fam == "vision_transformer" and not weights:
        patch = int(name.rsplit("_", 1)[-1])
        if image_size % patch:
            raise ValueError(f"{name} cuts images into {patch} px patches; choose an image size divisible by {patch}.")
        return
    if fam in ("vision_transformer", "maxvit") and image_size != low:
        raise ValueError(f"{name} takes {low} x {low} px images only; set the image size to {low}.")
    if image_size < low:
        raise ValueError(f"{name} needs images of at least {low} px; raise the image size to {low} or more.")


def torchvision_model(name: str, num_classes: int, image_size: int, *, weights: str = "", load: bool = True):
    """torchvision's `name` (with `weights` from the hub cache when load), its head replaced for num_classes."""
    from torchvision.models import get_model

    check_size(name, weights, image_size)
    entry = weights_enum(name, weights) if weights else None
    model = get_model(name, weights=None, **_architecture(name, entry, image_size))
    if entry is not None and load:
        model.load_state_dict(cached_state_dict(name, entry), strict=True)
    if family(name) in ("googlenet", "inception"):  # auxiliary heads only serve ImageNet training
        model.aux_logits, model.AuxLogits = False, None
        if hasattr(model, "aux1"):
            model.aux1 = model.aux2 = None
    replace_head(model, name, num_classes)
    return model


def _architecture(name: str, entry, image_size: int) -> dict:
    """The builder options that weights need (as torchvision's builders set them), or a scratch model's."""
    fam = family(name)
    options: dict = {}
    if entry is not None:
        options["num_classes"] = len(entry.meta["categories"])
    if fam in ("googlenet", "inception"):
        options.update(aux_logits=entry is not None, transform_input=entry is not None, init_weights=entry is None)
    if fam == "vision_transformer":
        options["image_size"] = entry.meta["min_size"][0] if entry is not None else image_size
    return options


def cached_state_dict(name: str, entry) -> dict:
    """The weights' state_dict from the hub cache (weights_only=True); never downloads.

    Raises:
        ValueError: when the file is not there (says where, and how to get it).
    """
    path = weights_file(entry)
    if not path.is_file():
        raise ValueError(
            f"The {name} weights {entry.name} are not in torch hub's cache ({path}); download them "
            "(`--download-weights`, or the Train page in local mode) or copy the file there."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if family(name) == "densenet":  # torchvision renames these old keys on load too (densenet._load_state_dict)
        pattern = re.compile(
            r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
        )
        state = {(pattern.sub(r"\1\2", k)): v for k, v in state.items()}
    return state


def download_weights(name: str, weights: str = "DEFAULT", *, progress: bool = True) -> Path:
    """Fetch a weights file into torch hub's cache through torchvision (hash checked); its path."""
    entry = weights_enum(name, weights)
    if not weights_file(entry).is_file():
        torch.hub.load_state_dict_from_url(entry.url, progress=progress, check_hash=True, weights_only=True)
    return weights_file(entry)


def weights_at_hand(name: str, weights: str, *, download: bool) -> Path:
    """The weights file in torch hub's cache, fetched first when `download` (local mode only).

    Raises:
        ValueError: when it is missing and not to be downloaded, or in deployed mode (says who seeds it).
    """
    from lib.settings import load_settings

    entry = weights_enum(name, weights)
    path = weights_file(entry)
    if path.is_file():
        return path
    if load_settings().deployed:
        raise ValueError(
            f"The {name} weights {entry.name} are not on this server and deployed mode never downloads; "
            "the operator pre-seeds torch hub's cache ($TORCH_HOME/hub/checkpoints)."
        )
    if not download:
        size = entry.meta.get("_file_size")
        raise ValueError(
            f"The {name} weights {entry.name} ({size:g} MB) are not in torch hub's cache ({path}); add "
            "--download-weights to fetch them, or copy the file there."
        )
    return download_weights(name, entry.name)


def head_path(model: nn.Module, name: str) -> str:
    """The dotted path of the classification layer: the family's rule, or the last layer with parameters
    (our small models, model files).

    Raises:
        ValueError: for a model with no layer that has parameters (no head to train or read features at).
    """
    if name in TORCHVISION_MODELS:
        return HEADS[family(name)]
    leaves = [n for n, m in model.named_modules() if not list(m.children()) and list(m.parameters(recurse=False))]
    if not leaves:
        raise ValueError("This model has no layer with weights, so it has no head to train or read features at.")
    return leaves[-1]


def head_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(head_path(model, name))


def replace_head(model: nn.Module, name: str, num_classes: int) -> None:
    """Put a fresh num_classes head where the family's rule says (squeezenet: its whole 1x1-conv classifier)."""
    parent_path, _, attr = head_path(model, name).rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    old = getattr(parent, attr) if not attr.isdigit() else parent[int(attr)]
    if isinstance(old, nn.Linear):
        new = nn.Linear(old.in_features, num_classes)
    else:  # squeezenet's classifier: Dropout, Conv2d(512, classes, 1), ReLU, AdaptiveAvgPool2d(1)
        conv = old[1]
        new = nn.Sequential(old[0], nn.Conv2d(conv.in_channels, num_classes, 1), nn.ReLU(inplace=True), old[3])
    if attr.isdigit():
        parent[int(attr)] = new
    else:
        setattr(parent, attr, new)


def model_from_file(spec: str, num_classes: int) -> nn.Module:
    """`path/to/file.py:build` -> build(num_classes), an nn.Module (the file runs: local mode only).

    Raises:
        ValueError: when the file or the function is missing, or it does not return an nn.Module.
    """
    refuse_when_deployed()
    path, function = split_model_file(spec)
    if not path.is_file():
        raise ValueError(f"Model file {path} does not exist; check the path before the colon.")
    module_spec = importlib.util.spec_from_file_location(f"torchscope_model_{file_sha256(path)[:12]}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    build: Callable | None = getattr(module, function, None)
    if build is None:
        raise ValueError(f"{path} has no function {function!r}; define `def {function}(num_classes): ...`.")
    model = build(num_classes)
    if not isinstance(model, nn.Module):
        raise ValueError(f"{path}:{function} returned {type(model).__name__}, not a torch.nn.Module.")
    return model


@contextmanager
def empty_weights():
    """Parameters and buffers created inside go to the meta device: a model's shape without its memory
    (torch.device("meta") alone breaks builders that compute on tensors, such as regnet's)."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def buffer(self, name, tensor, persistent=True):
        register_buffer(self, name, tensor.to("meta") if tensor is not None else None, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def model_facts(name: str) -> dict:
    """{name, params, default_size, weights, cached} for `python -m lib models`: params with the 1,000-class
    ImageNet head (torchvision's own count; ours at 32 px), default_size the default weights' crop side."""
    if name in SMALL:
        params = sum(p.numel() for p in build_model(name, 1000, 32).parameters())
        return dict(name=name, params=params, default_size=32, weights=[], cached=False)
    from torchvision.models import get_model_weights

    default = weights_enum(name)
    return dict(
        name=name,
        params=int(default.meta["num_params"]),
        default_size=int(default.transforms().crop_size[0]),
        weights=[w.name for w in get_model_weights(name)],
        cached=weights_file(default).is_file(),
    )


def all_model_facts() -> list[dict]:
    return [model_facts(name) for name in MODELS]


def weights_mean_std(name: str, weights: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std of the weights' own preprocessing (weights.transforms())."""
    t = weights_enum(name, weights).transforms()
    return tuple(float(m) for m in t.mean), tuple(float(s) for s in t.std)


def with_weights_preprocessing(config):
    """config as a run records it: its weights by their own name (IMAGENET1K_V1 for DEFAULT) and, with resize
    "weights", the sizes and filter of their transforms() (resize_size, crop_size, interpolation). A config
    without weights comes back unchanged.

    Raises:
        ValueError: for weights the model does not have.
    """
    from dataclasses import replace

    if not config.weights_name or config.model not in TORCHVISION_MODELS:
        return config
    entry = weights_enum(config.model, config.weights_name)
    config = replace(config, weights=entry.name, pretrained=True)
    if config.resize != "weights":
        return replace(config, resize_size=None, crop_size=None, interpolation="bilinear")
    t = entry.transforms()
    return replace(
        config, resize_size=int(t.resize_size[0]), crop_size=int(t.crop_size[0]), interpolation=t.interpolation.value
    )


def weights_choice(name: str, weights: str) -> dict:
    """What the Train page says of one weights entry (a name, or DEFAULT): {name (DEFAULT resolved), cached,
    file_mb, resize, crop, interpolation, acc (ImageNet top-1 %, or None)}."""
    entry = weights_enum(name, weights)
    t = entry.transforms()
    metrics = next(iter(entry.meta.get("_metrics", {}).values()), {})
    return dict(
        name=entry.name,
        cached=weights_file(entry).is_file(),
        file_mb=entry.meta.get("_file_size"),
        resize=int(t.resize_size[0]),
        crop=int(t.crop_size[0]),
        interpolation=t.interpolation.value,
        acc=metrics.get("acc@1"),
    )


def weights_crop_size(name: str, weights: str) -> int:
    """The side of the weights' centre crop: the image size a run with them defaults to."""
    return int(weights_enum(name, weights).transforms().crop_size[0])


def download_with_progress(name: str, weights: str, progress: Callable[[int, int], None]) -> Path:
    """download_weights, reporting (bytes so far, bytes in all) from torch hub's partial file as it grows."""
    import threading

    entry = weights_enum(name, weights)
    target = weights_file(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    total = int(entry.meta.get("_file_size", 0) * 2**20) or 1
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(0.25):  # torch.hub writes NAME.<uuid>.partial, then renames it
            partial = sum(p.stat().st_size for p in target.parent.glob(f"{target.name}.*.partial") if p.is_file())
            progress(min(partial, total), total)

    threading.Thread(target=watch, daemon=True, name="torchscope-weights-progress").start()
    try:
        return download_weights(name, entry.name, progress=False)
    finally:
        finished.set()
        progress(total, total)
