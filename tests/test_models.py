"""Models by name: every torchvision classifier with a new head, weights from torch hub's cache only,
head and full fine-tuning. Weights files are random tensors the tests write; nothing touches the network
except a download served from 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import warnings
from types import SimpleNamespace

import pytest
import torch
import torchvision
from torch import nn

from lib.__main__ import main
from lib.data.index import build_index
from lib.training.config import TrainConfig
from lib.training.engine import fit
from lib.training.model_names import TORCHVISION_MODELS
from lib.training.models import (
    HEADS,
    build_model,
    empty_weights,
    family,
    head_module,
    min_size,
    weights_enum,
    weights_file,
)
from tests.helpers import write_imagefolder

warnings.filterwarnings("ignore", category=FutureWarning)  # googlenet/inception's init_weights notice


def test_the_names_are_torchvisions_classifiers():
    assert TORCHVISION_MODELS == tuple(torchvision.models.list_models(module=torchvision.models))
    assert set(HEADS) == {family(n) for n in TORCHVISION_MODELS}  # a head rule for every family


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_every_classifier_maps_two_images_to_the_new_classes_at_its_smallest_size(name):
    """On the meta device (shapes only, no memory), so the 600 M-parameter ones cost what the small ones do."""
    size = min_size(name)
    with empty_weights():
        model = build_model(name, 7, size).eval()
    out = model(torch.empty(2, 3, size, size, device="meta"))
    assert tuple(out.shape) == (2, 7)
    layers = [m for m in head_module(model, name).modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert layers[-1].weight.shape[0] == 7  # the rule's layer is the one replaced (squeezenet's: a 1x1 conv)


# The smallest model of each family, run for real: the meta device checks shapes, this checks numbers flow.
# Families that take only 224 px and up (ViT, Swin, MaxViT) stay on the meta device: seconds each on 2 cores.
ONE_PER_FAMILY = {}
for _name in sorted(TORCHVISION_MODELS, key=lambda n: weights_enum(n).meta["num_params"]):
    if min_size(_name) < 224:
        ONE_PER_FAMILY.setdefault(family(_name), _name)


@pytest.mark.parametrize("name", sorted(ONE_PER_FAMILY.values()))
def test_the_smallest_of_each_family_runs_for_real(name):
    size = min_size(name)
    model = build_model(name, 3, size).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def seed_weights(name: str, weights: str = "DEFAULT", seed: int = 0) -> dict:
    """Random weights of `name`'s ImageNet architecture (BatchNorm statistics included), written where torch
    hub keeps `weights` (the file name torchvision's URL ends in). Returns the state_dict."""
    entry = weights_enum(name, weights)
    torch.manual_seed(seed)
    model = torchvision.models.get_model(name, weights=None, num_classes=len(entry.meta["categories"]))
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var")):
            state[key] = torch.rand_like(value) + 0.5  # not torchvision's init values: a reset would show
    path = weights_file(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home" / "hub" / "checkpoints"


def test_pretrained_weights_load_strictly_from_the_hub_cache_and_only_the_head_is_new(hub):
    state = seed_weights("resnet18")
    assert (hub / "resnet18-f37072fd.pth").is_file()
    model = build_model("resnet18", 4, 32, weights="IMAGENET1K_V1")
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert got["fc.weight"].shape == (4, 512)


def test_missing_weights_are_one_sentence_naming_the_cache_and_nothing_is_fetched(hub, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(ValueError, match="not in torch hub's cache"):
        build_model("resnet18", 4, 32, weights="IMAGENET1K_V1")
    with pytest.raises(ValueError, match="has no weights 'NOPE'; choose one of IMAGENET1K_V1"):
        build_model("resnet18", 4, 32, weights="NOPE")


def test_download_weights_fetches_through_torch_hub_from_a_local_server(hub, tmp_path, monkeypatch):
    from lib.training import models

    served = tmp_path / "served"
    served.mkdir()
    torch.save(nn.Linear(2, 2).state_dict(), served / "tmp.pth")
    digest = hashlib.sha256((served / "tmp.pth").read_bytes()).hexdigest()[:8]
    name = f"tiny-{digest}.pth"  # torch hub checks the hash prefix in the name, as for torchvision's files
    (served / "tmp.pth").rename(served / name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        entry = SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}/{name}", name="TINY", meta={})
        monkeypatch.setattr(models, "weights_enum", lambda *_: entry)
        path = models.weights_at_hand("resnet18", "TINY", download=True)
    finally:
        server.shutdown()
    assert path == hub / name and torch.load(path, weights_only=True).keys() == {"weight", "bias"}


def test_deployed_mode_never_downloads(hub, monkeypatch):
    monkeypatch.setenv("TORCHSCOPE_MODE", "deployed")
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    from lib.training.models import weights_at_hand

    with pytest.raises(ValueError, match="operator pre-seeds"):
        weights_at_hand("resnet18", "IMAGENET1K_V1", download=True)


def test_models_json_lists_every_model_with_params_size_weights_and_cache(hub, capsys):
    seed_weights("resnet18")
    assert main(["models", "--json"]) == 0
    facts = {f["name"]: f for f in json.loads(capsys.readouterr().out)}
    assert set(facts) == {"linear", "mlp", "cnn", *TORCHVISION_MODELS}
    reference = sum(p.numel() for p in torchvision.models.resnet18().parameters())  # 1,000 classes
    assert facts["resnet18"] == dict(
        name="resnet18", params=reference, default_size=224, weights=["IMAGENET1K_V1"], cached=True
    )
    assert facts["resnet50"]["cached"] is False and facts["vit_b_16"]["default_size"] == 224


@pytest.fixture
def tiny(tmp_path):
    return build_index(str(write_imagefolder(tmp_path / "data", classes=("a", "b", "c"), per_class=6, size=(40, 40))))


def head_config(**overrides) -> TrainConfig:
    values = dict(model="resnet18", weights="IMAGENET1K_V1", finetune="head", normalization="weights",
                  image_size=32, epochs=2, batch_size=4, lr=0.01, optimizer="sgd")  # fmt: skip
    return TrainConfig(**{**values, **overrides})


@pytest.mark.parametrize("augment", [False, True], ids=["cached-features", "frozen-backbone-every-step"])
def test_head_training_leaves_every_backbone_tensor_bit_identical_to_the_file(hub, tiny, augment):
    state = seed_weights("resnet18")
    result = fit(head_config(hflip=augment, epochs=1), tiny.samples, tiny.classes)
    assert result.status == "completed", result.message
    trained = result.model.state_dict()
    backbone = [k for k in state if not k.startswith("fc.")]
    assert len(backbone) == 120  # BatchNorm running statistics and counters included
    assert all(torch.equal(trained[k].cpu(), state[k]) for k in backbone)
    assert not torch.equal(trained["fc.weight"].cpu(), build_model("resnet18", 3, 32).fc.weight)


def test_head_on_cached_features_steps_like_the_frozen_backbone_run_every_step(hub, tiny, monkeypatch):
    from lib.training import finetune

    seed_weights("resnet18")
    config = head_config(epochs=2)
    cached = fit(config, tiny.samples, tiny.classes)
    monkeypatch.setattr(finetune, "cached_features_apply", lambda *_: False)  # no features cached at all
    streamed = fit(config, tiny.samples, tiny.classes, cache_bytes=0, workers=0)  # decoded each epoch
    assert cached.status == streamed.status == "completed"
    assert len(cached.losses) == len(streamed.losses) == 2 * 4
    assert cached.losses == pytest.approx(streamed.losses, abs=1e-5)
    assert [e["val_loss"] for e in cached.epochs] == pytest.approx([e["val_loss"] for e in streamed.epochs], abs=1e-5)


def test_full_finetune_scales_the_backbone_learning_rate(hub, tiny):
    from lib.training.finetune import parameter_groups

    model = build_model("resnet18", 3, 32)
    groups = parameter_groups(model, TrainConfig(model="resnet18", lr=0.1, backbone_lr_scale=0.1))
    assert [g.get("lr") for g in groups] == [pytest.approx(0.01), None]
    assert [len(g["params"]) for g in groups] == [60, 2]  # the backbone's tensors, then fc's weight and bias


def test_head_mode_needs_weights_in_one_sentence():
    with pytest.raises(ValueError, match="needs pretrained weights"):
        TrainConfig(model="resnet18", finetune="head")
