"""Inside training (issue 21) against hand-computed references: norms, gradients and update ratios of a linear
model on a fixed batch, the checkpoint's own tensors, dead units of a ReLU built to die, and the rules."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lib.data.index import build_index
from lib.data.sample import sample_root
from lib.runs import inside
from lib.runs.machine import CpuClock, rss_mb
from lib.runs.recorder import Recorder, dead_fractions, dead_units, histogram, record_every, relu_alive
from lib.runs.rules import findings
from lib.runs.store import RunStore
from lib.training.config import TrainConfig
from lib.training.trainer import StoreHooks, execute_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def sample():
    return build_index(str(sample_root()))


def sgd_step(lr: float):
    """One plain-SGD step of a linear model on a fixed batch, recorded; (rows, w0, b0, x, y)."""
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    x, y = torch.randn(8, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    w0, b0 = model.weight.detach().numpy().copy(), model.bias.detach().numpy().copy()
    rows = []
    recorder = Recorder(model, lambda kind, r: rows.extend(r), every=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    F.cross_entropy(model(x), y).backward()
    recorder.before_update()
    optimizer.step()
    recorder.after_update(1, 1)
    return {r[2]: r for r in rows}, w0, b0, x.numpy(), y.numpy()


def test_grad_norms_and_sgd_update_ratio_equal_the_hand_computed_ones():
    lr = 0.3
    rows, w0, b0, x, y = sgd_step(lr)
    logits = x @ w0.T + b0
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    d = (p - np.eye(3)[y]) / len(y)  # dL/dlogits of the mean cross-entropy, (B, 3)
    grads = {"weight": d.T @ x, "bias": d.sum(0)}
    for name, w in (("weight", w0), ("bias", b0)):
        _, _, _, weight_norm, grad_norm, ratio = rows[name]
        g = np.linalg.norm(grads[name])
        assert grad_norm == pytest.approx(g, rel=1e-5)
        assert ratio == pytest.approx(lr * g / np.linalg.norm(w), rel=1e-5)
        assert weight_norm == pytest.approx(np.linalg.norm(w - lr * grads[name]), rel=1e-5)


def test_records_at_step_one_every_k_and_the_last_step_only():
    model = nn.Linear(2, 2)
    steps = []
    recorder = Recorder(model, lambda kind, rows: steps.extend({r[0] for r in rows}), every=4)
    for step in range(1, 11):
        model.weight.grad = torch.ones(2, 2)
        recorder.before_update()
        recorder.after_update(step, 1)
    recorder.finish()
    recorder.finish()  # once
    assert steps == [1, 4, 8, 10]
    assert record_every(10_000) == 50 and record_every(30) == 1


def test_only_the_tensors_the_optimizer_steps_are_recorded_by_their_state_dict_names():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))  # a frozen backbone, then a head
    optimizer = torch.optim.SGD(model[2].parameters(), lr=0.1)
    rows = []
    recorder = Recorder(model, lambda kind, r: rows.extend(r), every=1, updated=optimizer.param_groups[0]["params"])
    F.cross_entropy(model(torch.randn(5, 3)), torch.tensor([0, 1, 0, 1, 0])).backward()
    recorder.before_update()
    optimizer.step()
    recorder.after_update(1, 1)
    assert [r[2] for r in rows] == ["2.weight", "2.bias"]  # the backbone's tensors would read "vanished"


def test_histogram_and_dead_units_against_hand_counts():
    edges, counts = histogram(torch.tensor([0.0, 0.1, 0.2, 1.0, float("nan")]), bins=2)
    assert edges == [0.0, 0.5, 1.0] and counts == [3, 1]
    layer = nn.Linear(3, 4)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([1.0, -1.0, -2.0, 0.5]))  # units 1 and 2 output 0 for any input
    model = nn.Sequential(layer, nn.ReLU(), nn.Linear(4, 2))
    assert dead_units(model, torch.randn(6, 3)) == [("1", 0.5, 4)]
    assert model.training  # put back as it was


def test_dead_units_are_counted_over_every_pass_of_the_block():
    sign = nn.Linear(1, 2)
    with torch.no_grad():
        sign.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        sign.bias.zero_()
    model = nn.Sequential(sign, nn.ReLU())
    with relu_alive(model) as alive:
        model(torch.ones(3, 1))  # unit 0 alive, unit 1 silent
    assert dead_fractions(alive) == [("1", 0.5, 2)]
    with relu_alive(model) as alive:
        model(torch.ones(3, 1))
        model(-torch.ones(3, 1))  # unit 1 speaks in the second pass: no unit is dead over both
    assert dead_fractions(alive) == [("1", 0.0, 2)]


def trained(sample, tmp_path, **knobs):
    store = RunStore(tmp_path / "runs")
    config = TrainConfig(**{"model": "mlp", "image_size": 8, "epochs": 2, "batch_size": 16, "max_batches": 4, **knobs})
    run_id = store.create_run(config.to_dict())
    result = execute_run(store, run_id, config, sample.samples, sample.classes)
    return store, run_id, result


def test_a_run_records_its_layers_and_the_last_norms_are_the_checkpoints(sample, tmp_path):
    store, run_id, result = trained(sample, tmp_path)
    assert result.status == "completed", result.message
    norms = inside.layer_norms(store, run_id)
    assert sorted(norms["step"].unique()) == list(range(1, 9))  # 8 steps, every 1 (few steps)
    state = torch.load(store.files.checkpoint_path(run_id, "last"), weights_only=False)["model"]
    last = norms[norms["step"] == 8].set_index("name")
    assert set(last.index) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    for name, row in last.iterrows():
        assert row["weight_norm"] == pytest.approx(state[name].double().norm().item(), rel=1e-6)
    hist = inside.histograms(store, run_id)
    weights = hist[(hist["epoch"] == 2) & (hist["which"] == "weight")].groupby("name")["count"].sum()
    assert weights.to_dict() == {n: state[n].numel() for n in last.index}
    dead = inside.dead_units(store, run_id)
    assert dead["name"].tolist() == ["2", "2"] and (dead["units"] == 256).all()
    accuracy = store.metrics(run_id)
    per_step = accuracy[accuracy["name"] == "train_accuracy"]
    assert per_step["step"].tolist() == list(range(1, 9))
    assert ((per_step["value"] * 16).round(9) % 1 == 0).all()  # k of 16 images right
    epoch = accuracy[accuracy["name"] == "epoch/train_accuracy"]["value"].tolist()
    assert epoch == pytest.approx([per_step["value"][:4].mean(), per_step["value"][4:].mean()])
    assert [e["train_accuracy"] for e in result.epochs] == pytest.approx(epoch)


def test_a_stopped_run_records_the_step_it_stopped_at(sample, tmp_path):
    store = RunStore(tmp_path / "runs")
    config = TrainConfig(model="linear", image_size=8, epochs=3, batch_size=4)  # 384 steps: K = 2
    run_id = store.create_run(config.to_dict())
    stop = threading.Event()

    class StopAt(StoreHooks):
        def on_step(self, step, *args):
            if step == 205:  # K = ceil(total / 200) > 1 here, so 205 is not a regular record
                stop.set()
            return super().on_step(step, *args)

    result = execute_run(store, run_id, config, sample.samples, sample.classes, hooks=StopAt(store, run_id), stop=stop)
    assert result.status == "stopped"
    steps = sorted(inside.layer_norms(store, run_id)["step"].unique())
    assert steps[:3] == [1, 2, 4] and steps[-2:] == [204, 205]


def test_a_huge_learning_rate_trips_too_high_and_a_sane_one_does_not(sample, tmp_path):
    def sentences(lr: float) -> list[str]:
        store, run_id, _ = trained(sample, tmp_path / str(lr), optimizer="sgd", lr=lr, epochs=1)
        return findings(inside.layer_norms(store, run_id), inside.dead_units(store, run_id))

    high = sentences(30.0)
    assert any("the learning rate is likely too high" in s for s in high), high
    sane = sentences(0.01)
    assert not any("too high" in s for s in sane), sane


def test_rules_name_vanished_gradients_and_dead_units():
    import pandas as pd

    norms = pd.DataFrame(
        [(1, 1, "fc.weight", 2.0, 1e-9, 1e-3), (1, 1, "fc.bias", 0.0, 1e-9, None)], columns=inside.NORM_COLUMNS
    )
    dead = pd.DataFrame([(1, "relu", 0.75, 8)], columns=inside.DEAD_COLUMNS)
    assert findings(norms, dead) == [
        "fc.weight's gradients vanished (norm < 1e-07): nothing reaches them; check the loss, the learning rate "
        "schedule or the activations before them.",
        "75.0% of the units after relu output 0 for every probe image (dead ReLUs): lower the learning rate, or "
        "check the initialisation.",
    ]


def test_machine_figures_against_the_os():
    def proc_cpu() -> float:  # utime + stime of /proc/self/stat, in seconds: the kernel's own count
        fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    import time

    cpu0, wall0, clock = proc_cpu(), time.monotonic(), CpuClock()
    sum(i * i for i in range(3_000_000))  # busy for a few hundred ms, however loaded the machine
    percent, cpu1, wall1 = clock.percent(), proc_cpu(), time.monotonic()
    assert percent > 0 and percent == pytest.approx(100 * (cpu1 - cpu0) / (wall1 - wall0), abs=10)
    import resource

    rss = rss_mb()  # first: the peak read after it bounds it even if memory grows in between (CUDA's threads)
    assert 10 < rss <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 + 1


def test_cli_layers_json(sample, tmp_path):
    store, run_id, _ = trained(sample, tmp_path, epochs=1)
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-m", "lib", "layers", run_id, "--runs-dir", str(store.root), "--json"]
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout)
    assert out["steps"] == [1, 2, 3, 4]
    assert set(out["params"]["1.weight"]) == {"weight_norm", "grad_norm", "update_ratio"}
    assert all(len(v) == 4 for p in out["params"].values() for v in p.values())
    assert len(out["histograms"]["1.weight"]["grad"][0]["counts"]) == 30
    assert out["dead_units"]["2"][0]["units"] == 256


def test_the_loggers_watch_records_a_plain_loop(tmp_path):
    from lib.runs.logger import start_run

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    with start_run("plain", runs_dir=tmp_path) as run:
        run.watch(model, optimizer, every=4, probe=x)
        for step in range(1, 8):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            run.log(step=step, train_loss=loss.item())
        run.log(val_loss=1.0)
    store = RunStore(tmp_path)
    norms = inside.layer_norms(store, run.id)
    assert sorted(norms["step"].unique()) == [1, 4, 7]
    last = norms[norms["step"] == 7].set_index("name")["weight_norm"]
    assert last.to_dict() == pytest.approx({n: p.norm().item() for n, p in model.named_parameters()}, rel=1e-6)
    assert inside.dead_units(store, run.id)["name"].tolist() == ["1"]
    assert set(inside.histograms(store, run.id)["which"]) == {"weight", "grad"}
