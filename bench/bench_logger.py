"""Logger overhead: `python bench/bench_logger.py [--rounds N]`.

A `cnn` training step (batch 64, 32 px, CPU) with `run.log(step=, train_loss=, lr=, grad_norm=)` after it
vs the same step without, alternating blocks of 20 steps (this machine's speed drifts more than the
difference between whole passes). Also the cost of one `log` call on its own, over 100,000 calls,
as a share of the bare step. Want both under 2%.
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

BLOCK = 20


def block(model, opt, x, y, run, step: int) -> float:
    """Seconds for BLOCK training steps, logging each when run is not None."""
    start = time.perf_counter()
    for i in range(BLOCK):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = loss.item()  # both loops read the loss, as any loop that prints it does
        if run is not None:
            run.log(step=step + i, train_loss=value, lr=0.01, grad_norm=value / 2)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="pairs of blocks timed (default 10)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model("cnn", 4, 32)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 4, (64,))
    with tempfile.TemporaryDirectory() as tmp, start_run("bench", runs_dir=tmp) as run:
        block(model, opt, x, y, None, 0)  # warm up
        bare, logged = [], []
        for r in range(args.rounds):
            bare.append(block(model, opt, x, y, None, 0))
            logged.append(block(model, opt, x, y, run, 1 + r * BLOCK))
        step_s = statistics.median(bare) / BLOCK
        start = time.perf_counter()
        for i in range(100_000):
            run.log(step=10_000 + i, train_loss=0.5, lr=0.01, grad_norm=0.25)
        call_s = (time.perf_counter() - start) / 100_000
    ratio = statistics.median(logged) / statistics.median(bare)
    print(f"cnn step (batch 64, 32 px): {step_s * 1000:.1f} ms bare")
    print(f"steps with logging / bare: {ratio:.3f}x (median of {args.rounds} blocks of {BLOCK} each)")
    print(f"one log call: {call_s * 1e6:.1f} us = {call_s / step_s:.2%} of a step")


if __name__ == "__main__":
    main()
