"""Head mode's disk feature cache: features over the --cache-mb budget go to a file keyed by model, weights, size,
normalization and the images (their pixels when decoded in memory, their files when streamed). A second run reads
them back and never runs the backbone; changed images or other weights make a new key; the losses are those of
in-memory features and of the frozen backbone run at every step.

resnet18 at 16 px on 18 images: the decoded images (18 x 3 x 16 x 16 bytes = 13.5 KB) fit a 20 KB budget and
the features (18 x 512 float32 = 36 KB) do not. The weights are random tensors written where torch hub keeps
them (tests/test_models.py's seed_weights)."""

from __future__ import annotations

import os
import re

import pytest
import torch
from PIL import Image

from lib.data.index import build_index
from lib.settings import cache_dir
from lib.training import finetune
from lib.training.config import TrainConfig
from lib.training.engine import Hooks, fit
from lib.training.finetune import cache_key
from lib.training.models import build_model
from tests.helpers import write_imagefolder
from tests.test_models import seed_weights

BUDGET = 20_000  # bytes: the images fit, their features do not
CONFIG = dict(model="resnet18", weights="IMAGENET1K_V1", finetune="head", normalization="weights", image_size=16,
              epochs=2, batch_size=4, lr=0.01, optimizer="sgd")  # fmt: skip


class Phases(Hooks):
    def __init__(self):
        self.messages: list[str] = []

    def on_progress(self, message: str) -> bool:
        self.messages.append(message)
        return False


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """(dataset folder, the features folder) with weights seeded and an empty cache of this test's own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("TORCHSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    seed_weights("resnet18")
    data = write_imagefolder(tmp_path / "data", classes=("a", "b", "c"), per_class=6, size=(20, 20))
    return data, cache_dir() / "features"


def train(data, *, cache_bytes: int = BUDGET, **overrides):
    """fit on the folder; (result, progress messages, forward calls of the backbone's first block)."""
    index, hooks, calls = build_index(str(data)), Phases(), []

    def counted(*args, **kwargs):
        model = build_model(*args, **kwargs)
        model.layer1.register_forward_hook(lambda *_: calls.append(1))
        return model

    result = fit(TrainConfig(**{**CONFIG, **overrides}), index.samples, index.classes, hooks, cache_bytes=cache_bytes,
                 model_fn=counted, workers=0)  # fmt: skip
    assert result.status == "completed", result.message
    return result, hooks.messages, len(calls)


def test_a_second_run_reads_the_features_from_disk_and_never_runs_the_backbone(setup):
    data, features = setup
    first, said, calls = train(data)
    assert "computing features of 18 images once" in said and calls == 5  # 18 images in batches of 4
    files = list(features.glob("*.pt"))
    assert len(files) == 1 and torch.load(files[0], weights_only=True).shape == (18, 512)
    second, said, calls = train(data)
    assert "features from the cache" in said and calls == 0
    assert second.losses == first.losses and list(features.glob("*")) == files  # nothing else written


@pytest.mark.parametrize(
    "resize", [{}, dict(resize="weights", resize_size=18, crop_size=16)], ids=["square", "weights-crop"]
)
def test_disk_features_train_as_in_memory_ones_and_as_the_frozen_backbone_every_step(setup, monkeypatch, resize):
    data, features = setup
    in_memory, said, _ = train(data, cache_bytes=2**30, **resize)
    assert "computing features of 18 images once" in said and not list(features.glob("*.pt"))
    on_disk, said, _ = train(data, **resize)
    assert "computing features of 18 images once" in said and len(list(features.glob("*.pt"))) == 1
    streamed, said, calls = train(data, cache_bytes=10_000, **resize)  # images over the budget: streamed, features once
    assert "computing features of 18 images once" in said and calls == 5 and len(list(features.glob("*.pt"))) == 2
    monkeypatch.setattr(finetune, "cached_features_apply", lambda *_: False)  # the reference: no cache at all
    frozen, _, calls = train(data, **resize)
    assert calls == 2 * (4 + 1)  # the backbone at every step: each epoch 4 training batches, 1 validation batch
    assert len(on_disk.losses) == 2 * 4
    for run in (on_disk, in_memory, streamed):
        assert run.losses == pytest.approx(frozen.losses, abs=1e-5)
        assert [e["val_loss"] for e in run.epochs] == pytest.approx([e["val_loss"] for e in frozen.epochs], abs=1e-5)


def test_streamed_images_are_keyed_by_their_files_and_read_back(setup):
    data, features = setup
    _, said, calls = train(data, cache_bytes=10_000)  # 13.5 KB of images: streamed from disk every epoch
    assert "computing features of 18 images once" in said and calls == 5
    _, said, calls = train(data, cache_bytes=10_000)
    assert "features from the cache" in said and calls == 0
    image = next((data / "c").glob("*.png"))
    image.write_bytes(image.read_bytes() + b"\0")  # other bytes, the same pixels: a new key all the same
    _, said, calls = train(data, cache_bytes=10_000)
    assert "computing features of 18 images once" in said and calls == 5
    assert len(list(features.glob("*.pt"))) == 2


def test_a_changed_image_or_other_weights_make_a_new_key(setup):
    data, features = setup
    train(data)
    image = next((data / "b").glob("*.png"))
    pixels = Image.open(image).convert("RGB")
    pixels.putpixel((0, 0), tuple(255 - v for v in pixels.getpixel((0, 0))))
    pixels.save(image)
    _, said, calls = train(data)
    assert "computing features of 18 images once" in said and calls == 5
    assert len(list(features.glob("*.pt"))) == 2
    seed_weights("resnet18", seed=1)  # another file under the same name: the backbone's tensors differ
    _, said, calls = train(data)
    assert "computing features of 18 images once" in said and calls == 5
    assert len(list(features.glob("*.pt"))) == 3


def test_the_key_names_model_weights_size_resize_normalization_and_pixels(setup):
    config = TrainConfig(**CONFIG)
    model = build_model("resnet18", 3, 16, weights="IMAGENET1K_V1")
    images = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    mean_std = ((0.5,) * 3, (0.25,) * 3)
    key = cache_key(config, mean_std, model, images)
    other_head = build_model("resnet18", 5, 16, weights="IMAGENET1K_V1")  # a new head: the same features
    assert cache_key(config, mean_std, other_head, images) == key
    changed = images.clone()
    changed[1, 2, 3, 4] = 1
    other_weights = build_model("resnet18", 3, 16, weights="IMAGENET1K_V1")
    other_weights.layer4[1].bn2.running_var[0] += 1  # one BatchNorm statistic
    others = [
        cache_key(config, mean_std, model, changed),
        cache_key(config, mean_std, other_weights, images),
        cache_key(TrainConfig(**{**CONFIG, "image_size": 24}), mean_std, model, images),
        cache_key(config, ((0.5,) * 3, (0.3,) * 3), model, images),
        cache_key(TrainConfig(**CONFIG, resize="weights", resize_size=18, crop_size=16), mean_std, model, images),
    ]
    assert len({key, *others}) == 6  # in memory the pixels differ too; streamed, the files are the same


def test_a_damaged_cache_file_is_computed_again_and_rewritten(setup):
    data, features = setup
    first, _, _ = train(data)
    (file,) = features.glob("*.pt")
    file.write_bytes(file.read_bytes()[:100])  # a run that died mid-write before writes were atomic
    again, said, calls = train(data)
    assert "computing features of 18 images once" in said and calls == 5
    assert again.losses == first.losses and torch.load(file, weights_only=True).shape == (18, 512)
    assert [f.name for f in features.iterdir()] == [file.name]  # no partial file left behind


def test_the_disk_cache_stays_under_its_size_removing_the_least_recently_used_first(tmp_path, monkeypatch):
    """Files of ~0.9 MiB under a 3 MiB cap: three fit, a fourth removes the one used longest ago (a read renews
    a file's use); a file alone over the cap is kept (the run that wrote it reads it)."""
    monkeypatch.setenv("TORCHSCOPE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHSCOPE_FEATURE_CACHE_MB", "3")
    folder = cache_dir() / "features"

    def cached(key: str, floats: int = 235_000):  # 940,000 bytes of float32 and torch.save's header
        return finetune._cached(key, 1, 0, lambda _: None, lambda: torch.full((floats,), float(ord(key))))

    for i, key in enumerate("abc"):
        cached(key)
        os.utime(folder / f"{key}.pt", (1_000_000 + i, 1_000_000 + i))  # used in the order a, b, c, long ago
    assert cached("a")[0] == ord("a")  # read back from disk: a is now the most recently used
    cached("d")
    assert sorted(f.stem for f in folder.glob("*.pt")) == ["a", "c", "d"]  # b, the least recently used, went
    monkeypatch.setenv("TORCHSCOPE_FEATURE_CACHE_MB", "1")
    assert torch.equal(cached("e", 400_000), torch.full((400_000,), float(ord("e"))))  # 1.6 MB: over the cap alone
    assert [f.stem for f in folder.glob("*.pt")] == ["e"]


FEATURE_PROGRESS = re.compile(r"computing features \d")


@pytest.mark.parametrize("cache_bytes", [BUDGET, 10_000], ids=["in memory", "streamed"])
def test_the_feature_pass_says_how_far_it_is_and_a_stop_ends_it(setup, monkeypatch, cache_bytes):
    data, _ = setup
    monkeypatch.setattr(finetune, "PROGRESS_EVERY_S", 0.0)  # every batch of 4: 18 images in 4, 8, 12, 16, 18
    _, said, _ = train(data, cache_bytes=cache_bytes)
    assert [m for m in said if FEATURE_PROGRESS.match(m)] == [f"computing features {n}/18" for n in (4, 8, 12, 16, 18)]

    class StopAtEight(Phases):
        def on_progress(self, message: str) -> bool:
            super().on_progress(message)
            return message == "computing features 8/18"

    index, hooks = build_index(str(data)), StopAtEight()
    config = TrainConfig(**{**CONFIG, "seed": 1})  # another split's images: not in the cache yet
    result = fit(config, index.samples, index.classes, hooks, cache_bytes=cache_bytes, workers=0)
    assert result.status == "stopped" and result.losses == [], (result.status, result.message)
    assert [m for m in hooks.messages if FEATURE_PROGRESS.match(m)][-1] == "computing features 8/18"
