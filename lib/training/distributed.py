"""Several processes, one run: torch.distributed as launched by `torchrun`, and one process otherwise.

`Dist()` is a single process; every collective below is then the identity, so the engine has one code path.
`from_environment()` reads what torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE) and
`start()` joins the process group: gloo for CPU tensors, NCCL for CUDA ones.

Sharding keeps a run equal to the single-process one. The global batch k of an epoch is positions
[k*B, (k+1)*B) of that epoch's permutation, exactly as one process would draw it; rank r takes every
world_size-th of them, starting at r. DDP then averages the ranks' gradients, and each rank scales its
summed loss by world_size / (images in the global batch), so the update is the one-process update of
the whole batch, even when B does not divide by world_size or the last batch is short.

A rank that fails says why in the rendezvous store (the key-value store every rank already shares) before
its sockets close; rank 0, whose next collective then fails, reads the reason and records it in the run.
"""

from __future__ import annotations

import gc
import hashlib
import math
import os
import re
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import nn

from lib.runs.liveness import pid_alive

TIMEOUT_S = 1800.0  # a collective waits this long for a rank that is alive but silent (a dead one fails at once)
_KEY = "torchscope/{what}/{rank}"
# What gloo and NCCL raise in a rank whose peer died or hung up (RuntimeError, DistBackendError, ...).
_PEER_ERROR = re.compile(
    r"gloo|nccl|Connection (reset|closed|refused)|DistBackendError|DistNetworkError|timed out", re.I
)


@dataclass(frozen=True)
class Dist:
    """This process's place in a run: rank `rank` of `world_size` processes, `local_rank` on its host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """One GPU per process: `cuda` becomes `cuda:LOCAL_RANK`."""
        if self.enabled and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device

    def rank_seed(self, seed: int) -> int:
        """A seed of this rank's own (augmentation draws differ between ranks); `seed` itself on rank 0."""
        return seed + 7919 * self.rank

    # --- collectives (CPU tensors: gloo serves them under either backend) --------------------------

    def sums(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over every rank, in float64."""
        if not self.enabled:
            return [float(v) for v in values]
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def any(self, flag: bool) -> bool:
        """True on every rank when it is True on any rank (a stop asked of one rank reaches all)."""
        return self.sums([float(flag)])[0] > 0 if self.enabled else bool(flag)

    def sum_array(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor summed over every rank (exact for integer tensors)."""
        if self.enabled:
            t = t.clone()
            dist.all_reduce(t)
        return t

    def gather(self, value) -> list:
        """Every rank's `value` (picklable), in rank order."""
        if not self.enabled:
            return [value]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def from_main(self, value):
        """Rank 0's `value` on every rank."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    # --- the model -------------------------------------------------------------------------------

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """DistributedDataParallel around `model` with several processes (SyncBatchNorm on CUDA), else `model`."""
        if not self.enabled:
            return model
        if device.type == "cuda":  # SyncBatchNorm runs on GPUs only; on CPU each rank keeps its own batch stats
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def sync_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (batch-norm running statistics) on every rank, so all evaluate the same model."""
        if self.enabled:
            for b in model.buffers():
                dist.broadcast(b, src=0)

    # --- failures ---------------------------------------------------------------------------------

    def report_failure(self, reason: str) -> None:
        """Leave this rank's one-line reason in the rendezvous store for rank 0 to record, unless it is only
        the echo of another rank going away. Never raises."""
        if not lost_peer(reason):
            _store_set(_KEY.format(what="failure", rank=self.rank), reason.splitlines()[0] if reason else "unknown")

    def failure_reason(self, own: str) -> str:
        """Why the run failed, as rank 0 words it. `own` is this rank's error; when that is only the lost
        connection, the reason is the one a rank reported, else the rank whose process is gone."""
        if not self.enabled or not lost_peer(own):
            return own
        for r in range(self.world_size):
            if r != self.rank and (reason := _store_get(_KEY.format(what="failure", rank=r))):
                return f"Rank {r} of {self.world_size} failed: {reason}"
        if dead := self._dead_rank():
            return (
                f"Rank {dead[0]} of {self.world_size} (pid {dead[1]}) ended without a reason (killed by a signal, "
                "or out of memory); the other ranks stopped."
            )
        return f"Lost contact with another rank ({_short(own)}); see that host's torchrun output for why."

    def _dead_rank(self, wait_s: float = 3.0) -> tuple[int, int] | None:
        """(rank, pid) of a rank on this host whose process is gone. Its sockets close before its process
        is reaped (the kernel closes files first), so a rank that just hung up is given wait_s to be seen dead."""
        local = {}
        for r in range(self.world_size):
            host, _, pid = (_store_get(_KEY.format(what="pid", rank=r)) or "").partition(" ")
            if r != self.rank and host == socket.gethostname() and pid.isdigit():
                local[r] = int(pid)
        deadline = time.monotonic() + wait_s
        while local:
            for r, pid in local.items():
                if not pid_alive(pid):
                    return r, pid
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        return None


SINGLE = Dist()  # one process: the collectives are the identity


def lost_peer(message: str) -> bool:
    """Whether an error is a collective failing because another rank went away (not a cause of its own)."""
    return bool(_PEER_ERROR.search(message or ""))


def _short(message: str) -> str:
    """The gist of a backend error: `[.../pair.cc:545] Read error ...: Connection reset by peer. This is...`
    becomes `Read error ...: Connection reset by peer`."""
    line = (message or "").splitlines()[0] if message else ""
    return line.split("] ", 1)[-1].split(". ")[0]


def from_environment(environ: dict | None = None) -> Dist:
    """The launcher's view of this process (torchrun's variables); Dist() when not launched by one."""
    env = os.environ if environ is None else environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return Dist()
    world = int(env["WORLD_SIZE"])
    return Dist(
        rank=int(env["RANK"]),
        world_size=world,
        local_rank=int(env.get("LOCAL_RANK", 0)),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", world)),
    )


def start(ctx: Dist, device: torch.device, timeout_s: float = TIMEOUT_S) -> None:
    """Join the process group (env:// rendezvous, as torchrun sets it) and register this rank's pid.

    gloo serves CPU tensors; with CUDA, NCCL serves the GPU ones (DDP's gradients), one GPU per process.

    Raises:
        ValueError: when a host runs more processes than it has GPUs for a CUDA run.
    """
    if not ctx.enabled or dist.is_initialized():
        return
    cuda = device.type == "cuda"
    if cuda and ctx.local_world_size > torch.cuda.device_count():
        raise ValueError(
            f"torchrun started {ctx.local_world_size} processes on this host but it has "
            f"{torch.cuda.device_count()} GPUs; use --nproc-per-node {torch.cuda.device_count()} or --device cpu."
        )
    if cuda:
        torch.cuda.set_device(ctx.place(device))
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    _store_set(_KEY.format(what="pid", rank=ctx.rank), f"{socket.gethostname()} {os.getpid()}")


def finish(ctx: Dist) -> None:
    """Leave the process group once every rank is done: rank 0 writes its store and checkpoint after `fit`
    returns, and a rank that tore gloo down meanwhile would fail it."""
    if ctx.enabled and dist.is_initialized():
        try:
            dist.barrier()
        except Exception:  # noqa: BLE001 - a rank already gone: leaving is all that is left to do
            pass
        gc.collect()  # DDP's reducer holds the group in a reference cycle: free it while the interpreter is whole
        dist.destroy_process_group()


def leave(code: int) -> NoReturn:
    """End this rank's process with `code` now: output flushed, the interpreter not torn down.

    Gloo's worker threads outlive `destroy_process_group` while anything still holds the group; destroyed
    during interpreter finalization they now and then abort the process on a loaded host ("terminate called
    without an active exception", SIGABRT), and torchrun then reports a run that ended well as failed.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say to it
            pass
    os._exit(code)


def _store():
    return dist.distributed_c10d._get_default_store()


def _store_set(key: str, value: str) -> None:
    try:
        _store().set(key, value)
    except Exception:  # noqa: BLE001 - the store's host may be gone too; the reason is then lost, not the run
        pass


def _store_get(key: str) -> str | None:
    try:
        store = _store()
        return store.get(key).decode() if store.check([key]) else None
    except Exception:  # noqa: BLE001 - as above: a missing reason, never a second failure
        return None


def dataset_key(classes: Sequence[str], relpaths: Sequence[tuple[str, int]]) -> str:
    """A hash of the class names and (relative path, class) list: equal on every host holding the same data."""
    h = hashlib.sha1("\0".join(classes).encode())
    for path, target in relpaths:
        h.update(f"{path}\0{target}\n".encode())
    return h.hexdigest()[:16]


# --- sharding ----------------------------------------------------------------------------------------


def batch_slices(n: int, batch_size: int, ctx: Dist, *, drop_short: bool = False) -> list[slice]:
    """This rank's part of each global batch, as a slice of an epoch's permutation: [k*B + rank, ..., step W).

    drop_short leaves out a last batch with fewer images than ranks (a DataLoader cannot give some rank an
    empty batch, and DDP needs every rank in every step).
    """
    batches = math.ceil(n / batch_size)
    if drop_short and ctx.enabled and batches and n - (batches - 1) * batch_size < ctx.world_size:
        batches -= 1
    return [slice(k * batch_size + ctx.rank, min(n, (k + 1) * batch_size), ctx.world_size) for k in range(batches)]


def tensor_order(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """An epoch's order of n decoded images, the draw TensorBatches makes; 0..n-1 without a generator."""
    return torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)


class ShardBatchSampler:
    """A DataLoader batch_sampler: this rank's part of every global batch of the epoch's permutation.

    DistributedSampler's split, with a global batch and one process's draws: the permutation is batches.EpochOrder's
    (one torch.randperm from the seeded generator per epoch), cut into global batches, so the generator is drawn
    when one process's would be and the ranks' batches together are exactly one process's, reshuffled every epoch.
    """

    def __init__(self, n: int, batch_size: int, ctx: Dist, generator: torch.Generator | None):
        self.n, self.batch_size, self.ctx, self.generator = n, batch_size, ctx, generator
        self.batches = len(batch_slices(n, batch_size, ctx, drop_short=generator is not None))

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[list[int]]:
        order = iter(tensor_order(self.n, self.generator).tolist())  # batches.EpochOrder's one draw per epoch
        for _ in range(self.batches):
            batch = list(islice(order, self.batch_size))
            if part := batch[self.ctx.rank :: self.ctx.world_size]:  # only an evaluation batch can be empty here
                yield part


class ShardTensorBatches:
    """Batches from this rank's decoded shard in memory, in the same global layout as ShardBatchSampler.

    The shard is fixed (decoded once): the positions of the first epoch's permutation this rank takes.
    Every epoch (the first included) draws its permutation, restricted to the shard, so each rank reshuffles
    from the seed, and one process gets exactly TensorBatches' order. A training batch may be empty on a rank (a short
    last batch, or images that did not decode): the rank still steps, with a zero loss, as DDP requires.
    """

    def __init__(self, images, targets, owned, first, slices, generator, *, bad=(), train: bool = True):
        """owned: each local row's index in the split (N_local,); first: the first epoch's permutation;
        bad: local rows that did not decode."""
        self.images, self.targets, self.generator, self.train = images, targets, generator, train
        self.sizes = [len(range(s.start, s.stop, s.step)) for s in slices]
        rows = torch.arange(len(owned))
        rows[list(bad)] = -2  # owned but unusable: keeps its place in the layout, never yielded
        self.row = torch.full((len(first),), -1, dtype=torch.int64)
        self.row[owned] = rows  # split index -> local row; -1 for other ranks' images

    def __len__(self) -> int:
        return len(self.sizes)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # One draw per epoch, as TensorBatches makes (the first is `first`, drawn before from a copy).
        order = tensor_order(len(self.row), self.generator)
        rows = self.row[order]
        rows = rows[rows != -1]  # this rank's images in the epoch's order
        start = 0
        for size in self.sizes:
            idx = rows[start : start + size]
            idx = idx[idx >= 0].to(self.images.device)
            start += size
            if len(idx) or self.train:
                yield self.images[idx], self.targets[idx]
