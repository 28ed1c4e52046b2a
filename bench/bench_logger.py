"""Logger overhead: `python bench/bench_logger.py [--rounds N]`.

A `cnn` training step (batch 64, 32 px, CPU) with `run.log(step=, train_loss=, lr=, grad_norm=)` after it
vs the same step without, every other step (this machine's speed drifts more than the difference
between whole passes, even blocks of 20 steps). Also the cost of one `log` call on its own, over 100,000 calls,
as a share of the bare step, and of one flush (the background thread's transaction every 0.5 s) as a
share of the time. Want each under 2%.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from lib.runs.logger import start_run
from lib.training.models import build_model


def train_step(model, opt, x, y, run, step: int) -> float:
    """Seconds for one training step, logged when run is not None."""
    start = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    value = loss.item()  # both kinds of step read the loss, as any loop that prints it does
    if run is not None:
        run.log(step=step, train_loss=value, lr=0.01, grad_norm=value / 2)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=200, help="training steps timed, half of them logged (default 200)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model("cnn", 4, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 4, (64,))
    with tempfile.TemporaryDirectory() as tmp, start_run("bench", runs_dir=tmp) as run:
        train_step(model, opt, x, y, None, 0)  # warm up
        times = {False: [], True: []}
        for i in range(args.steps):  # every other step logged: the machine's drift hits both alike
            times[i % 2 == 1].append(train_step(model, opt, x, y, run if i % 2 else None, i))
        step_s = statistics.median(times[False])
        start = time.perf_counter()
        for i in range(100_000):
            run.log(step=10_000 + i, train_loss=0.5, lr=0.01, grad_norm=0.25)
        call_s = (time.perf_counter() - start) / 100_000
        flush_s = []
        for i in range(20):  # the background thread's work every 0.5 s: one transaction of buffered rows
            for k in range(100):
                run.log(step=200_000 + i * 100 + k, train_loss=0.5, lr=0.01, grad_norm=0.25)
            start = time.perf_counter()
            run.flush()
            flush_s.append(time.perf_counter() - start)
    ratio = statistics.median(times[True]) / step_s
    print(f"cnn step (batch 64, 32 px): {step_s * 1000:.1f} ms bare")
    print(f"logged step / bare step: {ratio:.3f}x (medians of {args.steps // 2} each, alternating)")
    print(f"one log call: {call_s * 1e6:.1f} us = {call_s / step_s:.2%} of a step")
    flush = statistics.median(flush_s)
    print(
        f"one flush of 100 steps (2 extra metrics each): {flush * 1000:.1f} ms, every 0.5 s = {flush / 0.5:.2%} of the time"
    )


if __name__ == "__main__":
    main()
