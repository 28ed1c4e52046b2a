"""Learning-rate schedules and optimizers against their closed forms, through a real run of the engine."""

import math

import pytest
import torch

from lib.data.index import build_index
from lib.training.config import TrainConfig
from lib.training.engine import Hooks, fit
from lib.training.optim import make_optimizer
from tests.helpers import write_imagefolder

LR, EPOCHS, PER_EPOCH = 0.1, 3, 5  # 40 training images / batch 8 = 5 steps an epoch
TOTAL = EPOCHS * PER_EPOCH


class LearningRates(Hooks):
    def __init__(self):
        self.lrs = []

    def on_step(self, step, epoch, train_loss, lr, samples_per_sec):
        self.lrs.append(lr)  # the rate the step used, read before the scheduler steps
        return False


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_imagefolder(tmp_path_factory.mktemp("lr"), classes=("a", "b"), per_class=25, size=(8, 8))
    return build_index(str(root))


def trace(data, schedule: str) -> list[float]:
    config = TrainConfig(
        model="linear", image_size=8, epochs=EPOCHS, batch_size=8, lr=LR, optimizer="sgd", schedule=schedule
    )
    hooks = LearningRates()
    result = fit(config, data.samples, data.classes, hooks)
    assert result.status == "completed", result.message
    assert len(hooks.lrs) == TOTAL
    return hooks.lrs


def step_closed_form(t: int) -> float:
    """x0.1 after each third of training: TOTAL // 3 steps a stage."""
    return LR * 0.1 ** (t // (TOTAL // 3))


def cosine_closed_form(t: int) -> float:
    """Half a cosine from LR at step 0 to 0 at step TOTAL."""
    return LR * (1 + math.cos(math.pi * t / TOTAL)) / 2


def onecycle_closed_form(t: int) -> float:
    """OneCycleLR's defaults: 30% warm-up from LR/25 to LR, then down to LR/25/1e4, both half cosines."""
    start, low = LR / 25, LR / 25 / 1e4
    peak_step = 0.3 * TOTAL - 1  # the step at which the rate reaches LR

    def anneal(a: float, b: float, pct: float) -> float:
        return b + (a - b) / 2 * (1 + math.cos(math.pi * pct))

    if t <= peak_step:
        return anneal(start, LR, t / peak_step)
    return anneal(LR, low, (t - peak_step) / (TOTAL - 1 - peak_step))


@pytest.mark.parametrize(
    ("schedule", "closed_form"),
    [
        ("none", lambda t: LR),
        ("step", step_closed_form),
        ("cosine", cosine_closed_form),
        ("onecycle", onecycle_closed_form),
    ],
)
def test_learning_rate_trace_is_the_closed_form(data, schedule, closed_form):
    expected = [closed_form(t) for t in range(TOTAL)]
    assert trace(data, schedule) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def _one_step(optimizer_name: str, weight_decay: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights before, gradient, weights after) one step of the engine's optimizer on a fixed problem."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    before = w.detach().clone()
    config = TrainConfig(optimizer=optimizer_name, lr=0.01, weight_decay=weight_decay)
    optimizer = make_optimizer(config, [w])
    loss = (w * torch.tensor([3.0, 0.25, -1.0])).sum() + (w**2).sum()
    loss.backward()
    grad = w.grad.detach().clone()
    optimizer.step()
    return before, grad, w.detach().clone()


def test_adamw_decays_the_weights_apart_from_the_gradient():
    """AdamW's first step: w - lr * wd * w - lr * g / (|g| + eps), the decoupled decay of Loshchilov & Hutter."""
    lr, wd, eps = 0.01, 0.1, 1e-8
    w, g, after = _one_step("adamw", wd)
    expected = w - lr * wd * w - lr * g / (g.abs() + eps)  # bias-corrected m = g, sqrt(v) = |g| on step 1
    torch.testing.assert_close(after, expected, rtol=0, atol=1e-7)
    # Adam with weight_decay adds wd * w to the gradient instead (L2): a different step.
    w, g, adam = _one_step("adam", wd)
    g2 = g + wd * w
    torch.testing.assert_close(adam, w - lr * g2 / (g2.abs() + eps), rtol=0, atol=1e-7)
    assert not torch.allclose(adam, after)


def test_sgd_uses_momentum_09():
    w = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = make_optimizer(TrainConfig(optimizer="sgd", lr=0.1), [w])
    for _ in range(2):  # loss w: gradient 1 both steps; momentum buffer 1, then 0.9 * 1 + 1
        optimizer.zero_grad()
        w.sum().backward()
        optimizer.step()
    assert w.item() == pytest.approx(1.0 - 0.1 * 1 - 0.1 * 1.9)
