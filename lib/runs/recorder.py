"""What a run's layers do while it trains: per-tensor norms and update ratios, histograms, dead ReLU units.

The loop calls a `Recorder` twice per step (`before_update` after backward, `after_update` after the
optimizer step). Every step it keeps the gradient norms and a copy of the weights (one fused copy, so
the update ratio of whichever step turns out to be the last is known); on step 1, every `every` steps
and at the last step (`finish`, also when the run diverges or stops) it turns them into one record per
parameter tensor (state_dict name): weight norm after the step, gradient norm, and the update ratio
||w_after - w_before|| / ||w_before||. Once per epoch (`epoch_end`) it histograms every tensor's weights
and gradients and measures the fraction of dead units after each ReLU on a fixed validation batch.
Records go to a sink (lib.training.engine.Hooks.on_layers), as rows for lib/runs/inside.py's tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

TARGET_RECORDS = 200  # records per run: `every` is total steps / this, so a run keeps a few hundred
HISTOGRAM_BINS = 30
# (kind, rows): kind is "norms" (step, epoch, name, weight_norm, grad_norm, update_ratio), "histograms"
# (epoch, name, which, edges, counts) or "dead_units" (epoch, name, fraction, units).
Sink = Callable[[str, list[tuple]], None]


def record_every(total_steps: int, target: int = TARGET_RECORDS) -> int:
    """Steps between records so that a run of total_steps keeps about `target` records."""
    return max(1, math.ceil(total_steps / target))


class Recorder:
    """Per-tensor norms and update ratios every `every` steps; histograms and dead units per epoch."""

    def __init__(self, model: nn.Module, sink: Sink, *, every: int, probe: torch.Tensor | None = None, updated=None):
        """probe: a fixed, prepared (B, 3, S, S) batch the dead-unit count runs on each epoch. updated: the
        parameters the optimizer steps (a head-only fine-tune steps the head alone); default: every one
        that requires grad. Names are model's state_dict names, as in its checkpoint."""
        self.model, self.sink, self.every, self.probe = model, sink, every, probe
        chosen = {id(p) for p in updated} if updated is not None else None
        named = [(n, p) for n, p in model.named_parameters() if (id(p) in chosen if chosen else p.requires_grad)]
        self.names, self.params = [n for n, _ in named], [p for _, p in named]
        self.before = [p.detach().clone() for p in self.params]  # the weights before the latest step
        self.grads: torch.Tensor | None = None  # (P,) gradient norms of the latest step
        self.last: tuple[int, int] | None = None  # (step, epoch) of the latest completed step
        self.recorded = 0  # the step of the latest record

    @torch.no_grad()
    def before_update(self) -> None:
        """After backward, before the optimizer step: keep the gradient norms and the weights."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self.grads = torch.stack(torch._foreach_norm(grads)) if grads else None
        torch._foreach_copy_(self.before, [p.detach() for p in self.params])

    def after_update(self, step: int, epoch: int) -> None:
        """After the optimizer step `step`: a record when it is due (step 1, every `every` steps)."""
        self.last = (step, epoch)
        if step == 1 or step % self.every == 0:
            self._record(step, epoch)

    def finish(self) -> None:
        """The run is over (completed, diverged, stopped): record its last completed step, once."""
        if self.last is not None and self.recorded != self.last[0]:
            self._record(*self.last)

    @torch.no_grad()
    def _record(self, step: int, epoch: int) -> None:
        if not self.params or self.grads is None:
            return
        after = [p.detach() for p in self.params]
        weights = torch.stack(torch._foreach_norm(after))
        moved = torch.stack(torch._foreach_norm(torch._foreach_sub(after, self.before)))
        start = torch.stack(torch._foreach_norm(self.before))
        ratio = torch.where(start > 0, moved / start, torch.full_like(start, math.nan))
        values = torch.stack([weights, self.grads, ratio]).double().cpu().tolist()  # one transfer
        rows = [(step, epoch, n, *(_finite(v[i]) for v in values)) for i, n in enumerate(self.names)]
        self.recorded = step
        self.sink("norms", rows)

    @contextmanager
    def counting_dead_units(self, epoch: int, runs: nn.Module | None = None) -> Iterator[None]:
        """Dead units over the passes of `runs` (default: the model) in the block: the engine's validation
        pass, so no extra forward. ReLUs are named within `runs`."""
        with relu_alive(runs or self.model) as alive:
            yield
        self.sink("dead_units", [(epoch, *row) for row in dead_fractions(alive)])

    def epoch_end(self, epoch: int) -> None:
        """Histograms of weights and gradients (the epoch's last step's), and dead units on the probe."""
        self.sink("histograms", self._histograms(epoch))
        if self.probe is not None:
            self.sink("dead_units", [(epoch, *row) for row in dead_units(self.model, self.probe)])

    @torch.no_grad()
    def _histograms(self, epoch: int) -> list[tuple]:
        rows = []
        for name, p in zip(self.names, self.params, strict=True):
            for which, t in (("weight", p), ("grad", p.grad)):
                if t is not None and (counts := histogram(t)) is not None:
                    rows.append((epoch, name, which, *counts))
        return rows


def histogram(t: torch.Tensor, bins: int = HISTOGRAM_BINS) -> tuple[list[float], list[int]] | None:
    """(bins + 1 edges, bins counts) of t's finite values over [min, max]; None when it has none."""
    values = t.detach().float().flatten()
    values = values[torch.isfinite(values)].cpu()
    if values.numel() == 0:
        return None
    low, high = values.min().item(), values.max().item()
    if high <= low:  # a constant tensor (a fresh bias): one bin around its value
        low, high = low - 0.5, high + 0.5
    counts = torch.histc(values, bins=bins, min=low, max=high)
    edges = torch.linspace(low, high, bins + 1)
    return edges.tolist(), [int(c) for c in counts.tolist()]


@contextmanager
def relu_alive(model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """While the block runs, {relu's module name: (C,) bool, whether each unit was ever non-zero}, over
    every forward pass. A unit is a channel of a (B, C, H, W) output or a feature of a (B, F) one; a ReLU
    called twice in one pass (torchvision's blocks) is `name#2` the second time."""
    alive: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}

    def hook(name: str):
        def count(_module, _inputs, output: torch.Tensor) -> None:
            calls[name] = calls.get(name, 0) + 1
            label = name if calls[name] == 1 else f"{name}#{calls[name]}"
            # A ReLU's output is >= 0: a unit spoke when its largest value over batch and positions is > 0.
            now = output.detach().amax(dim=[d for d in range(output.dim()) if d != 1]) > 0  # (C,)
            alive[label] = alive[label] | now if label in alive else now

        return count

    relus = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    handles = [m.register_forward_hook(hook(n)) for n, m in relus]
    handles.append(model.register_forward_pre_hook(lambda *_: calls.clear()))  # names restart each pass
    try:
        yield alive
    finally:
        for h in handles:
            h.remove()


def dead_fractions(alive: dict[str, torch.Tensor]) -> list[tuple[str, float, int]]:
    """[(relu's name, fraction of its units never non-zero, units)] from relu_alive's dict."""
    return [(name, 1.0 - a.float().mean().item(), int(a.numel())) for name, a in alive.items()]


@torch.no_grad()
def dead_units(model: nn.Module, batch: torch.Tensor) -> list[tuple[str, float, int]]:
    """dead_fractions of one eval-mode pass over `batch`; the model is put back in the mode it was in."""
    training = model.training
    try:
        model.eval()
        with relu_alive(model) as alive:
            model(batch)
    finally:
        model.train(training)
    return dead_fractions(alive)


def _finite(x: float) -> float | None:
    """A value for the store: NaN becomes None (SQL NULL); infinities are kept."""
    return None if x != x else x
