"""Where a model looks in one image: Grad-CAM, Integrated Gradients, Saliency and Occlusion, by Captum.

Every method returns one float32 (H, W) map at the model's input size in which larger means more
important for the target class's logit:

- gradcam: Captum's LayerGradCam on the output of the last module with a spatial (B, C, h, w) output
  (gradcam_layer: ResNet's layer4, `cnn`'s last ReLU), upsampled bilinearly with LayerAttribution.interpolate.
  `linear` and `mlp` have none, nor a ViT, whose patch embedding is followed by tokens.
- ig: IntegratedGradients from a black image (pixel value 0, then normalized), 32 steps; the map is the
  attribution summed over the colour channels, signed: evidence for the target is positive (summing
  absolute values instead lets bright background noise outweigh the object, see tests/test_explain_sanity.py).
- saliency: |d logit / d pixel|, the maximum over the colour channels (Simonyan et al. 2014).
- occlusion: the drop in the logit when a square patch (1/8 of the side) is replaced by black, stride
  half a patch; Captum averages overlapping patches per pixel.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion, Saliency
from torch import nn

from lib.training.batches import batch_preparer
from lib.training.checkpoint import LoadedRun

METHODS = ("gradcam", "ig", "saliency", "occlusion")
METHOD_NAMES = {
    "gradcam": "Grad-CAM",
    "ig": "Integrated Gradients",
    "saliency": "Saliency",
    "occlusion": "Occlusion",
}
IG_STEPS = 32


@dataclass(frozen=True)
class Prediction:
    """A model's answer for one image: softmax probabilities over the classes (float32, sums to 1)."""

    probabilities: np.ndarray

    @property
    def predicted(self) -> int:
        return int(self.probabilities.argmax())

    def top(self, k: int = 5) -> list[tuple[int, float]]:
        """The k most probable classes as (index, p), most probable first."""
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(int(i), float(self.probabilities[i])) for i in order]


@dataclass(frozen=True)
class Explanation:
    """One image explained: what the model predicts and where it looked for the target class."""

    prediction: Prediction
    method: str
    target: int
    heatmap: np.ndarray  # float32 (H, W) at the model's input size, larger = more important


def predict(model: nn.Module, x: torch.Tensor) -> Prediction:
    """Softmax of the model's logits for one normalized input x (1, 3, H, W)."""
    with torch.no_grad():
        return Prediction(torch.softmax(model(x).float(), 1)[0].cpu().numpy())


def conv_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) whose output is each convolutional block's activation, input to output.

    torchvision's ResNet: the stem and layer1..layer4. A Sequential model: after each Conv2d, the last
    layer before the next Conv2d, pooling or flatten (for `cnn`, the ReLU of Conv-BN-ReLU). Empty for
    models without a Conv2d.
    """
    if all(hasattr(model, n) for n in ("layer1", "layer4", "relu")):
        return [("stem", model.relu)] + [(f"layer{i}", getattr(model, f"layer{i}")) for i in range(1, 5)]
    blocks, current = [], None
    stops = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Linear)
    for name, module in model.named_modules():
        if list(module.children()):
            continue  # containers: only leaves carry activations
        if isinstance(module, stops):
            if current is not None:
                blocks.append(current)
            current = (name, module) if isinstance(module, nn.Conv2d) else None
        elif current is not None:
            current = (name, module)
    if current is not None:
        blocks.append(current)
    return blocks


def block_names(model: nn.Module) -> list[str]:
    """Readable names of the conv blocks, input to output: "block 1 (2)" for a Sequential's module 2."""
    return [f"block {i} ({name})" for i, (name, _) in enumerate(conv_blocks(model), 1)]


_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {input side: Grad-CAM layer name}


def gradcam_layer(model: nn.Module, size: int) -> str | None:
    """The name of the last module with a spatial output (B, C, h, w), h and w over 1, at size x size inputs,
    unless a token sequence (a 3-D output) follows it, as in a ViT after its patch embedding: None then."""
    cached = _LAYERS.setdefault(model, {})
    if size in cached:
        return cached[size]
    seen: list[tuple[str, int, tuple]] = []  # (name, ndim, shape) as each module finishes

    def record(name: str):
        return lambda _m, _i, out: seen.append((name, getattr(out, "ndim", 0), tuple(getattr(out, "shape", ()))))

    hooks = [m.register_forward_hook(record(n)) for n, m in model.named_modules() if n]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    spatial = [i for i, (_, ndim, shape) in enumerate(seen) if ndim == 4 and shape[-1] > 1 and shape[-2] > 1]
    last = spatial[-1] if spatial else None
    if last is not None and any(ndim == 3 for _, ndim, _ in seen[last + 1 :]):
        last = None
    cached[size] = seen[last][0] if last is not None else None
    return cached[size]


def gradcam_unavailable(model: nn.Module, size: int) -> str | None:
    """Why Grad-CAM does not apply to this model (one sentence), or None when it does."""
    if gradcam_layer(model, size) is not None:
        return None
    return (
        "Grad-CAM needs a layer with a spatial feature map before the classifier and this model has none (a "
        "transformer sees tokens); use Integrated Gradients, Saliency or Occlusion."
    )


def methods_for(model: nn.Module, size: int) -> list[str]:
    """The attribution methods that apply to this model, in METHODS order."""
    return [m for m in METHODS if m != "gradcam" or gradcam_unavailable(model, size) is None]


def black_input(x: torch.Tensor, mean_std: tuple | None) -> torch.Tensor:
    """A black image (pixel value 0) as the model sees it: normalized like x."""
    if mean_std is None:
        return torch.zeros_like(x)
    mean = torch.tensor(mean_std[0], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(mean_std[1], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return ((0 - mean) / std).expand_as(x).contiguous()


def attribute(model: nn.Module, x: torch.Tensor, target: int, method: str, mean_std: tuple | None = None) -> np.ndarray:
    """The attribution map of `method` for class `target` of one normalized input x (1, 3, H, W).

    Returns:
        float32 (H, W); larger = more important.
    Raises:
        ValueError: for an unknown method, or Grad-CAM on a model without a conv layer (says why).
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if method == "gradcam" and (why := gradcam_unavailable(model, x.shape[-1])) is not None:
        raise ValueError(why)
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        heat = _METHODS[method](model, x, target, black_input(x, mean_std))
    return heat.detach().float().cpu().numpy().astype(np.float32)


def _gradcam(model, x, target, black) -> torch.Tensor:
    layer = model.get_submodule(gradcam_layer(model, x.shape[-1]))
    cam = LayerGradCam(model, layer).attribute(x, target=target, relu_attributions=True)  # (1, 1, h, w)
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")[0, 0]


def _ig(model, x, target, black) -> torch.Tensor:
    attr = IntegratedGradients(model).attribute(x, baselines=black, target=target, n_steps=IG_STEPS)
    return attr[0].sum(0)


def _saliency(model, x, target, black) -> torch.Tensor:
    return Saliency(model).attribute(x, target=target, abs=True)[0].amax(0)


def _occlusion(model, x, target, black) -> torch.Tensor:
    window = max(2, x.shape[-1] // 8)
    stride = max(1, window // 2)
    attr = Occlusion(model).attribute(
        x,
        sliding_window_shapes=(x.shape[1], window, window),
        strides=(x.shape[1], stride, stride),
        baselines=black,
        target=target,
        perturbations_per_eval=64,
    )
    return attr[0].sum(0)


_METHODS = {"gradcam": _gradcam, "ig": _ig, "saliency": _saliency, "occlusion": _occlusion}


def model_input(loaded: LoadedRun, image: torch.Tensor) -> torch.Tensor:
    """One uint8 image (3, S, S) as the run's model sees it: (1, 3, S, S) float, normalized, on its device."""
    return batch_preparer(loaded.device, loaded.mean_std, None)(image.unsqueeze(0), False)


def explain(loaded: LoadedRun, image: torch.Tensor, method: str, target: int | None = None) -> Explanation:
    """Predict one uint8 image (3, S, S) at the run's input size and attribute `target` (default: the predicted class).

    Raises:
        ValueError: for an unknown method or target, or Grad-CAM on a model without a conv layer.
    """
    if target is not None and not 0 <= target < len(loaded.classes):
        raise ValueError(f"Target class {target} does not exist; this run has classes 0 to {len(loaded.classes) - 1}.")
    x = model_input(loaded, image)
    prediction = predict(loaded.model, x)
    target = prediction.predicted if target is None else target
    heat = attribute(loaded.model, x, target, method, loaded.mean_std)
    return Explanation(prediction, method, target, heat)


@dataclass(frozen=True)
class ModelFacts:
    """What a page needs to know about a run's model to offer choices, without touching torch."""

    model: str
    classes: list[str]
    image_size: int
    val_paths: list[str]  # relative to root
    val_targets: list[int]
    methods: list[str]  # the attribution methods that apply
    gradcam_reason: str | None  # why Grad-CAM does not apply, or None
    blocks: list[str]  # conv block names, input to output


def model_facts(loaded: LoadedRun) -> ModelFacts:
    return ModelFacts(
        model=loaded.config.model,
        classes=list(loaded.classes),
        image_size=loaded.config.image_size,
        val_paths=list(loaded.val_paths),
        val_targets=list(loaded.val_targets),
        methods=methods_for(loaded.model, loaded.config.image_size),
        gradcam_reason=gradcam_unavailable(loaded.model, loaded.config.image_size),
        blocks=block_names(loaded.model),
    )
