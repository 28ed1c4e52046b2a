"""What recording a run's layers (issue 21) costs a small-cnn training step.

A `cnn` step (batch 64, 32 px, CPU, adam) with everything the engine now adds per step (the Recorder's
gradient norms and weight copy, a record every K steps, the batch's accuracy from its logits) vs the same
step without, on one model and optimizer, steps with and without alternating (which goes first
alternates too): on this shared machine whole passes drift by a third, a fine interleave lets both see
the same.
The per-epoch work (histograms of every tensor) is timed alone and spread over an epoch of the sample's
8 batches; dead units are counted by hooks during the validation pass, timed as one 64-image eval
forward with and without them. Want: at most 1.05x.
Run: .venv/bin/python bench/bench_layers.py [--steps N] [--every K]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lib.runs.recorder import Recorder, relu_alive  # noqa: E402
from lib.training.models import build_model  # noqa: E402


def stepper(model, recorder: Recorder):
    """One training step of model on (x, y); with record=True, the engine's added work too."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    state = {"step": 0}

    def step(x, y, record: bool) -> None:
        optimizer.zero_grad()
        output = model(x)
        F.cross_entropy(output, y).backward()
        if record:
            recorder.before_update()
        optimizer.step()
        state["step"] += 1
        if record:
            (output.detach().argmax(1) == y).sum().item()
            recorder.after_update(state["step"], 1)

    return step


def interleaved(steps: int, every: int) -> tuple[float, float, float, float]:
    """(seconds with recording, seconds without, summed over `steps` steps each; seconds of one epoch_end;
    seconds per step of the recorder's calls alone)."""
    torch.manual_seed(0)
    model = build_model("cnn", 10, 32)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    recorder = Recorder(model, lambda kind, r: None, every=every)
    step = stepper(model, recorder)
    step(x, y, True), step(x, y, False)  # warm
    total = {True: 0.0, False: 0.0}
    for i in range(steps):
        for record in (False, True) if i % 2 else (True, False):
            t0 = time.perf_counter()
            step(x, y, record)
            total[record] += time.perf_counter() - t0
    t0 = time.perf_counter()
    recorder.epoch_end(1)
    return total[True], total[False], time.perf_counter() - t0, added_alone(recorder, steps)


def added_alone(recorder: Recorder, steps: int) -> float:
    """Seconds per step of the recorder's own calls, timed without the step around them (less noisy)."""
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        recorder.before_update()
        recorder.after_update(step, 1)
    return (time.perf_counter() - t0) / steps


@torch.no_grad()
def hooked_forward(repeats: int = 20) -> tuple[float, float]:
    """(seconds of an eval forward of 64 images with the dead-unit hooks, without), summed, alternating."""
    model = build_model("cnn", 10, 32).eval()
    x = torch.randn(64, 3, 32, 32)
    total = [0.0, 0.0]
    for i in range(repeats):
        for hooked in (True, False) if i % 2 else (False, True):
            t0 = time.perf_counter()
            if hooked:
                with relu_alive(model):
                    model(x)
            else:
                model(x)
            total[not hooked] += time.perf_counter() - t0
    return total[0], total[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="steps of each arm (default: 200)")
    parser.add_argument("--every", type=int, default=10, help="steps between records (default: 10)")
    parser.add_argument("--per-epoch", type=int, default=8, help="steps an epoch_end is spread over (default: 8)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core each: the shared machine's other load shifts less
    watched, plain, epoch_end, alone = interleaved(args.steps, args.every)
    per_step = plain / args.steps
    print(f"cnn step (batch 64, 32 px, CPU): {per_step * 1e3:.1f} ms without, {watched / args.steps * 1e3:.1f} ms with")
    print(f"per-step ratio (record every {args.every}): {watched / plain:.3f}x")
    print(f"the recorder's calls alone: {alone * 1e3:.2f} ms per step = {alone / per_step:.1%} of a step")
    hooked, bare = hooked_forward()
    print(f"validation forward with dead-unit hooks: {hooked / bare:.3f}x a bare one")
    print(f"epoch_end (histograms): {epoch_end * 1e3:.1f} ms = {epoch_end / (per_step * args.per_epoch):.1%} "
          f"of an epoch of {args.per_epoch} steps")  # fmt: skip
    total = (watched + epoch_end * args.steps / args.per_epoch) / plain
    print(f"all in (per-epoch work spread over its steps): {total:.3f}x")


if __name__ == "__main__":
    main()
