"""The engine against independent references: numpy statistics, torch's own loss, hand-built cases."""

import dataclasses
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.data.images import load_rgb
from lib.data.index import build_index
from lib.data.sample import sample_root
from lib.training import device
from lib.training.batches import TensorBatches, batch_preparer, decode_images, stratified_split
from lib.training.config import TrainConfig
from lib.training.device import idle_cores, procs_running, resolve_device
from lib.training.engine import Hooks, fit
from lib.training.loop import Diverged, check_validation_loss, evaluate


@pytest.fixture(scope="module")
def sample():
    return build_index(str(sample_root()))


class Recording(Hooks):
    def __init__(self, stop_at: int | None = None, stop: threading.Event | None = None):
        self.steps, self.epochs, self.stop_at, self.stop = [], [], stop_at, stop

    def on_step(self, step, epoch, train_loss, lr, samples_per_sec):
        self.steps.append((step, epoch, train_loss, lr))
        if self.stop_at is not None and step >= self.stop_at:
            self.stop.set()
        return False

    def on_epoch(self, epoch, metrics):
        self.epochs.append(metrics)


def test_two_epochs_on_the_sample_land_well_above_chance(sample):
    result = fit(TrainConfig(model="mlp", image_size=32, epochs=2), sample.samples, sample.classes)
    assert result.status == "completed", result.message
    assert result.epochs[-1]["val_accuracy"] > 0.6  # 4 balanced classes: chance is 0.25


def test_same_seed_gives_the_same_loss_trace_and_another_seed_does_not(sample):
    config = TrainConfig(
        model="cnn",
        image_size=8,
        epochs=2,
        batch_size=16,
        max_batches=3,
        random_crop=True,
        hflip=True,
        rotation=10,
        color_jitter=0.2,
        device="cpu",  # bit for bit on the CPU; cuDNN's kernels agree only to about 1e-6 (docs/cli.md)
    )
    a = fit(config, sample.samples, sample.classes)
    b = fit(config, sample.samples, sample.classes)
    c = fit(dataclasses.replace(config, seed=1), sample.samples, sample.classes)
    assert a.status == b.status == "completed"
    assert len(a.losses) == 6 and a.losses == b.losses
    assert c.losses != a.losses


def test_huge_learning_rate_diverges_with_advice_and_keeps_metrics(sample):
    hooks = Recording()
    config = TrainConfig(model="mlp", image_size=16, epochs=2, lr=1e6, optimizer="sgd")
    result = fit(config, sample.samples, sample.classes, hooks)
    assert result.status == "diverged"
    assert "lower the learning rate" in result.message.lower()
    assert hooks.steps and all(np.isfinite(loss) for _, _, loss, _ in hooks.steps)
    assert [loss for _, _, loss, _ in hooks.steps] == result.losses


def test_stop_event_ends_the_run_after_the_current_batch(sample):
    stop = threading.Event()
    hooks = Recording(stop_at=3, stop=stop)
    result = fit(
        TrainConfig(model="linear", image_size=16, epochs=5, batch_size=16), sample.samples, sample.classes, hooks, stop
    )
    assert result.status == "stopped"
    assert len(hooks.steps) == 3 and len(result.losses) == 3


def test_an_exception_ends_as_failed_with_its_message(sample):
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            raise RuntimeError("boom in forward")

    result = fit(
        TrainConfig(model="linear", image_size=16, epochs=1),
        sample.samples,
        sample.classes,
        model_fn=lambda *a, **k: Broken(),
    )
    assert result.status == "failed" and "boom in forward" in result.message


def test_images_are_decoded_once_when_they_fit_and_every_epoch_when_streamed(sample, monkeypatch):
    calls = []
    import lib.pixels.decode

    monkeypatch.setattr(lib.pixels.decode, "load_rgb", lambda p: calls.append(p) or load_rgb(p))
    subset = sample.samples[::8]  # 80 images, 20 per class
    config = TrainConfig(model="linear", image_size=16, epochs=3, batch_size=16)
    assert fit(config, subset, sample.classes).status == "completed"
    assert len(calls) == len(subset)  # the statistics reuse the decoded tensor too
    calls.clear()
    assert fit(config, subset, sample.classes, cache_bytes=0, workers=0).status == "completed"
    # 3 epochs of train + val; the mean/std pass goes through lib.pixels.stats's own decoder, not counted here.
    assert len(calls) == 3 * len(subset)


def test_split_is_stratified_disjoint_and_complete():
    targets = [0] * 50 + [1] * 30 + [2] * 20
    train, val = stratified_split(targets, 0.2, seed=3)
    assert sorted(train + val) == list(range(100)) and not set(train) & set(val)
    assert [sum(targets[i] == c for i in val) for c in range(3)] == [10, 6, 4]
    assert stratified_split(targets, 0.2, seed=3) == (train, val)
    with pytest.raises(ValueError, match="at least 2"):
        stratified_split([0, 0, 1], 0.2, seed=0)


def test_evaluate_sums_losses_over_uneven_batches_like_one_big_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3))
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    targets = torch.randint(0, 3, (10,))
    prepare = batch_preparer(torch.device("cpu"), None, None)
    loss, accuracy = evaluate(model, torch.device("cpu"), TensorBatches(images, targets, 3, shuffle=False), prepare)
    with torch.no_grad():
        logits = model(images.float() / 255)
    assert loss == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-5)
    assert accuracy == pytest.approx((logits.argmax(1) == targets).float().mean().item())


def test_an_image_that_does_not_decode_is_left_out_not_a_failed_run(tmp_path):
    from lib.data.index import build_index
    from tests.helpers import write_imagefolder, write_truncated_jpeg

    root = write_imagefolder(tmp_path / "ds", classes=("a", "b"), per_class=12)
    write_truncated_jpeg(root / "a" / "broken.jpg")
    index = build_index(str(root))  # headers only: the truncated file is still listed
    assert index.num_images == 25
    config = TrainConfig(model="linear", image_size=16, epochs=1, batch_size=8)
    result = fit(config, index.samples, index.classes)
    assert result.status == "completed", result.message
    bad: list = []
    decoded = decode_images([p for p, _ in index.samples], 16, bad=bad)
    assert [index.samples[i][0].endswith("broken.jpg") for i, _ in bad] == [True]
    assert "truncated" in bad[0][1] and decoded.shape[0] == 25


def test_imagenet_normalization_feeds_the_model_the_published_mean_and_std(tmp_path):
    """The batch the model sees is (x / 255 - mean) / std with ImageNet's published values, in numpy."""
    from tests.helpers import write_imagefolder

    index = build_index(str(write_imagefolder(tmp_path, per_class=4, size=(8, 8))))
    seen = []

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3 * 8 * 8, 2)

        def forward(self, x):
            seen.append(x.detach().clone())
            return self.linear(x.flatten(1))

    config = TrainConfig(
        model="linear", image_size=8, epochs=1, batch_size=64, normalization="imagenet", val_split=0.25
    )
    result = fit(config, index.samples, index.classes, model_fn=lambda *a, **k: Recorder())
    assert result.status == "completed", result.message
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    assert result.mean_std == (tuple(mean), tuple(std))
    # The first forward is the one training batch: every training image, in the shuffled order, so compare sorted.
    fed = np.sort(seen[0].double().cpu().numpy().reshape(len(seen[0]), -1), axis=0)
    train, _ = stratified_split([t for _, t in index.samples], 0.25, 0)
    pixels = np.stack([np.asarray(load_rgb(index.samples[i][0])).transpose(2, 0, 1) for i in train]) / 255.0
    expected = (pixels - mean[:, None, None]) / std[:, None, None]  # (N, 3, 8, 8)
    np.testing.assert_allclose(fed, np.sort(expected.reshape(len(train), -1), axis=0), rtol=0, atol=1e-6)


class FakeAccelerator:
    def __init__(self, device: str | None):
        self.device = device

    def is_available(self) -> bool:
        return self.device is not None

    def current_accelerator(self):
        return torch.device(self.device) if self.device else None


@pytest.mark.parametrize("found", ["cuda", "mps", "xpu", None])
def test_resolve_device_asks_torch_accelerator(monkeypatch, found):
    monkeypatch.setattr(torch, "accelerator", FakeAccelerator(found))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # only torch.accelerator may answer
    assert resolve_device("auto") == torch.device(found or "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for name in ("cuda", "mps"):
        if name == found:
            assert resolve_device(name) == torch.device(name)
        else:
            with pytest.raises(ValueError, match=f"Device {name} is not available"):
                resolve_device(name)


def test_resolve_device_without_torch_accelerator_falls_back_to_cuda_then_mps(monkeypatch):
    monkeypatch.delattr(torch, "accelerator")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


class _ExplodesInEval(nn.Module):
    """Trains like a linear model; in eval its logits are `eval_logit` on class 0 (nan: not a number)."""

    def __init__(self, num_classes: int, image_size: int, eval_logit: float):
        super().__init__()
        self.fc, self.k, self.eval_logit = nn.Linear(3 * image_size * image_size, num_classes), num_classes, eval_logit

    def forward(self, x):
        if self.training:
            return self.fc(x.flatten(1))
        out = torch.zeros(len(x), self.k, device=x.device)
        out[:, 0] = self.eval_logit
        return out


@pytest.mark.parametrize("eval_logit", [1e4, float("nan")])
def test_an_exploding_or_nan_validation_loss_is_diverged_with_the_epoch_kept(sample, eval_logit):
    config = TrainConfig(model="linear", image_size=8, epochs=3, batch_size=16, max_batches=2)
    result = fit(config, sample.samples, sample.classes, model_fn=lambda *a, **k: _ExplodesInEval(4, 8, eval_logit))
    assert result.status == "diverged" and "validation loss" in result.message, result.message
    assert len(result.epochs) == 1  # the epoch that exploded is recorded, training stops there
    # Reference: three of four balanced classes are wrong by 1e4 nats, so the mean is about 7,500.
    if eval_logit == eval_logit:
        assert result.epochs[0]["val_loss"] == pytest.approx(1e4 * 3 / 4, rel=0.1)


def test_a_high_but_plausible_validation_loss_is_not_diverged():
    check_validation_loss(10.0, 4, 1)  # overfit and confident: bad, not diverged
    with pytest.raises(Diverged, match="45,863 at epoch 1"):
        check_validation_loss(45_863.0, 4, 1)


@pytest.mark.parametrize("classes", [2, 4, 100])
def test_the_divergence_line_is_a_hundred_uniform_guesses(classes):
    line = 100 * math.log(classes)  # ln(classes) is the loss of a uniform guess
    check_validation_loss(line * (1 - 1e-9), classes, 3)
    with pytest.raises(Diverged, match="at epoch 3"):
        check_validation_loss(line * (1 + 1e-9), classes, 3)


@pytest.mark.parametrize(
    ("load", "now", "cores", "threads"),
    [(0.3, 0.0, 2, 2), (1.2, 3.0, 2, 1), (14.0, 3.0, 2, 1), (2.5, None, 8, 6), (2.5, 1.0, 8, 7),
     (1.2, 0.0, 2, 2)],  # the last: the load average of work that has ended (it trails by a minute)
)  # fmt: skip
def test_trainer_threads_leave_out_the_busy_cores(monkeypatch, load, now, cores, threads):
    monkeypatch.setattr("lib.training.device.os.getloadavg", lambda: (load, load, load))
    monkeypatch.setattr("lib.training.device.running_elsewhere", lambda: now)
    monkeypatch.setattr("lib.training.device.default_threads", lambda: cores)
    assert idle_cores() == threads


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="Linux's /proc tells a process's own threads")
def test_a_busy_child_counts_as_this_process_own_work_not_other_work():
    # A decode worker spinning while the trainer picks its threads must not take a core from it.
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 20: pass"])
    try:
        deadline = time.time() + 10
        while device._own_running() < 2 and time.time() < deadline:  # the child is runnable once it started
            time.sleep(0.05)
        assert device._own_running() >= 2  # this thread and the spinning child
    finally:
        child.kill()
        child.wait()


def test_runnable_threads_are_read_from_proc_stat():
    stat = "cpu  10 0 5 100 0 0 0 0 0 0\nctxt 12345\nprocs_running 3\nprocs_blocked 0\n"
    assert procs_running(stat) == 3
    with pytest.raises(ValueError):
        procs_running("cpu 1 2 3\n")
