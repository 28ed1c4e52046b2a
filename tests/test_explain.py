"""Attributions, feature maps and embeddings against independent references (plain torch, numpy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.charts.scales import DIVERGING, colour_bar
from lib.evaluation.attributions import attribute, black_input, conv_blocks, gradcam_layer, methods_for, predict
from lib.evaluation.embeddings import embed_tensors, features_and_logits, pca_2d, pick, pooled_pixels, thumbnail_url
from lib.evaluation.features import (
    LUT,
    SIGNED_METHODS,
    activation_grid,
    feature_maps,
    first_filters,
    grid,
    map_scale,
    overlay,
)
from lib.training.models import HEADS, build_model, family

MEAN_STD = ((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))


def cnn(seed: int = 0, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("cnn", classes, 16).eval()
    for m in model.modules():  # non-trivial batch-norm statistics, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


def image(seed: int = 0, size: int = 16) -> torch.Tensor:
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_gradcam_matches_the_recipe_in_plain_torch():
    model, x = cnn(), image()
    # Selvaraju et al.: channel weights = spatial mean of d logit / d A; map = ReLU(sum_c w_c A_c), upsampled.
    seen = {}
    block = model[10]  # the last block's ReLU: (1, 128, 4, 4)
    handle = block.register_forward_hook(lambda _m, _i, out: seen.setdefault("a", out))
    logit = model(x)[0, 2]
    handle.remove()
    grads = torch.autograd.grad(logit, seen["a"])[0]
    cam = F.relu((grads.mean((2, 3), keepdim=True) * seen["a"]).sum(1, keepdim=True))
    expected = F.interpolate(cam, (16, 16), mode="bilinear")[0, 0].detach().numpy()
    got = attribute(model, x, 2, "gradcam")
    assert got.dtype == np.float32 and got.shape == (16, 16)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_saliency_is_the_largest_absolute_gradient_over_channels():
    model, x = cnn(), image(1)
    x_ = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(model(x_)[0, 1], x_)[0]
    np.testing.assert_allclose(attribute(model, x, 1, "saliency"), grad.abs().amax(1)[0].numpy(), rtol=1e-5)


def test_integrated_gradients_add_up_to_the_logit_difference_from_black():
    # Completeness (Sundararajan et al. 2017): the attributions sum to f(x) - f(baseline).
    model, x = cnn(), image(2)
    black = black_input(x, MEAN_STD)
    expected = (model(x)[0, 0] - model(black)[0, 0]).item()
    total = float(attribute(model, x, 0, "ig", MEAN_STD).sum())
    assert total == pytest.approx(expected, rel=0.05, abs=0.02)
    # The baseline is pixel value 0 normalized: (0 - mean) / std per channel.
    np.testing.assert_allclose(black[0, :, 0, 0].numpy(), [-0.4 / 0.2, -0.5 / 0.25, -0.6 / 0.3], rtol=1e-6)


def test_occlusion_marks_the_only_region_the_model_reads():
    # A linear model whose class-0 logit is the sum of the top-left 4 x 4 pixels of every channel.
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[0].view(3, 16, 16)[:, :4, :4] = 1.0
    x = torch.ones(1, 3, 16, 16)
    heat = attribute(model, x, 0, "occlusion")  # 2 x 2 windows, stride 1
    assert heat[:4, :4].min() > 0 and np.all(heat[5:, :] == 0) and np.all(heat[:, 5:] == 0)
    row, col = np.unravel_index(heat.argmax(), heat.shape)
    assert row < 4 and col < 4  # each on its own: a tuple comparison passes for any row under 4


def test_models_without_conv_get_the_gradient_methods_and_a_reason():
    model = build_model("mlp", 3, 8)
    assert methods_for(model, 8) == ["ig", "saliency", "occlusion"]
    with pytest.raises(ValueError, match="Grad-CAM needs a layer with a spatial feature map"):
        attribute(model, torch.zeros(1, 3, 8, 8), 0, "gradcam")
    with pytest.raises(ValueError, match="Unknown method 'lime'"):
        attribute(model, torch.zeros(1, 3, 8, 8), 0, "lime")
    assert methods_for(cnn(), 8) == ["gradcam", "ig", "saliency", "occlusion"]


@pytest.mark.parametrize(
    "name, size, layer",
    [("cnn", 32, "10"), ("resnet18", 64, "layer4"), ("resnet18", 32, "layer3"),
     ("mobilenet_v3_small", 64, "features"),
     ("swin_t", 224, "permute"), ("vit_b_32", 224, None)],
)  # fmt: skip
def test_gradcam_layer_is_the_last_spatial_map_and_none_when_tokens_follow(name, size, layer):
    assert gradcam_layer(build_model(name, 3, size).eval(), size) == layer


def test_conv_blocks_name_each_blocks_output():
    assert [n for n, _ in conv_blocks(cnn())] == ["2", "6", "10"]  # the ReLU of each Conv-BN-ReLU
    resnet = build_model("resnet18", 3, 32)
    assert [n for n, _ in conv_blocks(resnet)] == ["stem", "layer1", "layer2", "layer3", "layer4"]


def test_feature_maps_are_the_blocks_outputs():
    model, x = cnn(), image(3)
    maps = feature_maps(model, x)
    with torch.no_grad():
        expected = [model[:3](x), model[:7](x), model[:11](x)]
    assert [m.activations.shape for m in maps] == [(32, 16, 16), (64, 8, 8), (128, 4, 4)]
    for m, e in zip(maps, expected, strict=True):
        np.testing.assert_allclose(m.activations, e[0].numpy(), rtol=1e-5, atol=1e-6)
    picture = activation_grid(maps[1], columns=16, size=48)  # 64 channels of 8 px, scaled 6x: 4 rows of 16
    assert picture.dtype == np.uint8 and picture.shape == (4 * 49 - 1, 16 * 49 - 1, 3)


def test_first_filters_are_the_weights_scaled_per_filter():
    model = cnn()
    w = model[0].weight.detach().numpy()  # (32, 3, 3, 3)
    tiles = first_filters(model)
    assert tiles.shape == (32, 3, 3, 3) and tiles.dtype == np.uint8
    k = 5
    scaled = (w[k] - w[k].min()) / (w[k].max() - w[k].min()) * 255
    np.testing.assert_array_equal(tiles[k], np.round(scaled.transpose(1, 2, 0)).astype(np.uint8))
    assert first_filters(build_model("linear", 2, 8)) is None


def test_grid_and_overlay():
    tiles = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    g = grid(tiles, columns=3, scale=2, gap=1)
    assert g.shape == (2 * 5 - 1, 3 * 5 - 1, 3)
    np.testing.assert_array_equal(g[5:9, 0:4], tiles[3].repeat(2, 0).repeat(2, 1))
    assert (g[4] == 255).all()  # the gap between rows
    img = np.full((4, 4, 3), 100, np.uint8)
    heat = np.zeros((4, 4), np.float32)
    heat[1, 2] = 2.0
    heat[0, 0] = -5.0  # negative evidence shows as none
    np.testing.assert_array_equal(overlay(img, heat, 0.0), img)
    full = overlay(img, heat, 1.0)
    np.testing.assert_array_equal(full[1, 2], LUT[255])
    np.testing.assert_array_equal(full[0, 0], LUT[0])


def test_a_signed_map_is_drawn_on_a_scale_centred_at_0():
    """IG's map has both signs: blue against the class, red for it, on -m..m with m its largest |value|."""
    heat = np.array([[-4.0, 0.0], [1.0, 2.0]], np.float32)  # a hand-made attribution with both signs
    domain, colours = map_scale(heat, signed=True)
    assert domain == [-4.0, -2.0, 0.0, 2.0, 4.0] and colours == DIVERGING  # symmetric: 0 in the middle
    white = np.full((2, 2, 3), 255, np.uint8)
    full = overlay(white, heat, 1.0, signed=True)
    assert tuple(full[0, 0]) == (0x21, 0x66, 0xAC)  # -4 = -m: the blue end (#2166ac)
    assert tuple(full[0, 1]) == (0xF7, 0xF7, 0xF7)  # 0: near white, the middle
    assert tuple(full[1, 1]) == (0xEF, 0x8A, 0x62)  # 2 = m/2: the second red anchor (#ef8a62)
    np.testing.assert_array_equal(overlay(white, heat, 0.0, signed=True), white)
    # The legend chart says the same: its colour domain spans -4..4 around 0, ticks at both ends and 0.
    spec = colour_bar(domain, colours, title="Colour scale").to_dict()
    colour, x = spec["encoding"]["color"]["scale"], spec["encoding"]["x"]
    assert colour["domain"] == [-4.0, -2.0, 0.0, 2.0, 4.0] and colour["range"] == DIVERGING
    assert x["scale"]["domain"] == [-4.0, 4.0] and x["axis"]["values"] == [-4.0, 0.0, 4.0]


def test_unsigned_methods_keep_a_scale_from_0():
    """Grad-CAM (after its ReLU) and Saliency (a magnitude) have no sign: 0 dark to the maximum bright."""
    assert "ig" in SIGNED_METHODS and not {"gradcam", "saliency"} & SIGNED_METHODS
    heat = np.array([[0.0, 0.5], [1.5, 3.0]], np.float32)
    domain, colours = map_scale(heat, signed=False)
    assert domain[0] == 0.0 and domain[-1] == 3.0 and len(domain) == len(colours) == 8
    assert colours[0] == "#000004" and colours[-1] == "#fcffa4"  # inferno's ends, as LUT draws them
    spec = colour_bar(domain, colours, title="Colour scale").to_dict()
    assert spec["encoding"]["x"]["axis"]["values"] == [0.0, 3.0]
    assert map_scale(np.zeros((2, 2)), signed=True)[0][::2] == [-1.0, 0.0, 1.0]  # an empty map still draws


def test_a_small_models_features_are_its_last_layers_input():
    model, x = cnn(), image(4)
    features, logits = features_and_logits(model, model[-1], x)
    with torch.no_grad():
        np.testing.assert_allclose(features.numpy(), model[:-1](x).numpy(), rtol=1e-5)
        np.testing.assert_allclose(logits.numpy(), model(x).numpy(), rtol=1e-5)


def resnet_head_input(model, x):
    """torchvision's ResNet._forward_impl up to `fc`: the flattened average pool."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


def mobilenet_head_input(model, x):
    """torchvision's MobileNetV3.forward up to classifier[-1]: pool, flatten, the classifier's first layers."""
    return model.classifier[:-1](torch.flatten(model.avgpool(model.features(x)), 1))


def vit_head_input(model, x):
    """torchvision's VisionTransformer.forward up to heads.head: the class token after the encoder."""
    tokens = model._process_input(x)
    tokens = torch.cat([model.class_token.expand(len(x), -1, -1), tokens], dim=1)
    return model.encoder(tokens)[:, 0]


@pytest.mark.parametrize(
    "name, size, reference",
    [("resnet18", 32, resnet_head_input), ("mobilenet_v3_small", 32, mobilenet_head_input),
     ("vit_b_16", 32, vit_head_input)],
)  # fmt: skip
def test_the_embedding_is_the_heads_input_by_torchvisions_own_forward(name, size, reference):
    torch.manual_seed(0)
    model = build_model(name, 3, size).eval()
    images = torch.randint(0, 256, (5, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    features, probabilities, _ = embed_tensors(model, images, MEAN_STD, torch.device("cpu"), name=name, batch_size=3)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEAN_STD)
    x = (images.double() / 255 - mean) / std  # normalized by hand, in double, then as the model takes it
    with torch.no_grad():
        expected = reference(model, x.float())
        logits = model(x.float())
    assert features.shape == expected.shape == (5, model.get_submodule(HEADS[family(name)]).in_features)
    np.testing.assert_allclose(features.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(probabilities, torch.softmax(logits, 1).numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "rows, scales",
    [
        (200, np.linspace(3, 0.1, 30)),  # features: a clear order of variance
        (300, np.r_[3.0, 2.0, 1.0, np.full(3069, 0.1)]),  # pixels: wider than tall, three directions over noise
    ],
)
def test_pca_matches_numpy_svd_up_to_sign(rows, scales):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(rows, len(scales))) * scales
    xy, shares = pca_2d(torch.from_numpy(data))
    centered = data - data.mean(0)
    u, s, vt = np.linalg.svd(centered, full_matrices=False)
    expected = centered @ vt[:2].T
    for axis in range(2):
        sign = np.sign(expected[:, axis] @ xy[:, axis])
        np.testing.assert_allclose(xy[:, axis], sign * expected[:, axis], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(shares, (s[:2] ** 2) / (s**2).sum(), rtol=1e-4)
    np.testing.assert_array_equal(pca_2d(torch.from_numpy(data))[0], xy)  # seeded: the same picture twice


def test_pixels_pool_to_32_and_picks_are_seeded():
    img = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    pooled = pooled_pixels(img)
    assert pooled.shape == (2, 3 * 32 * 32)
    assert pooled[0, 0].item() == pytest.approx(img[0, 0, :2, :2].float().mean().item() / 255, rel=1e-5)
    assert pick(5, 10) == [0, 1, 2, 3, 4] and pick(100, 10) == pick(100, 10) and len(set(pick(100, 10))) == 10
    assert thumbnail_url(img[0]).startswith("data:image/jpeg;base64,")


def test_predict_is_the_softmax_of_the_logits():
    model, x = cnn(), image(5)
    p = predict(model, x)
    with torch.no_grad():
        expected = torch.softmax(model(x), 1)[0].numpy()
    np.testing.assert_allclose(p.probabilities, expected, rtol=1e-5)
    assert p.predicted == int(expected.argmax()) and [i for i, _ in p.top(3)] == list(np.argsort(-expected)[:3])


def test_the_command_list_matches_the_methods():
    from lib.commands.options import EXPLAIN_METHODS as LISTED
    from lib.evaluation.attributions import METHODS

    assert LISTED == METHODS


def test_a_small_image_hovers_at_a_readable_size_with_sharp_pixels():
    import base64
    import io

    from PIL import Image

    small = torch.zeros(3, 16, 16, dtype=torch.uint8)
    small[:, :, 8:] = 255  # left half black, right half white
    url = thumbnail_url(small)
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("L")
    assert img.size == (64, 64)  # 16 px enlarged 4x, not shown as a 16 px speck
    px = np.asarray(img)
    assert px[:, :28].max() < 40 and px[:, 36:].min() > 215  # nearest: the halves stay flat, not blurred
