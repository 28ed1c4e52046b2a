"""The CUDA paths end to end, on a machine with a GPU: what the CPU-only test machine never runs.

    python bench/device_check.py OUT_DIR

Trains the cnn on the generated sample with --device cuda (the run's device, the machine table's GPU
columns), a resnet18 head on a weights file written here (backbone bit-identical afterwards), a resnet18
fully fine-tuned; evaluates a CUDA run (accuracy == the recorded one), reads its layers, and loads the CUDA
checkpoint on the CPU (copied to OUT_DIR, so the CPU machine can load it too). Prints one line a check and
exits 1 when any fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

FAILED: list[str] = []
DEVICE = os.environ.get("DEVICE", "cuda")  # DEVICE=cpu tries the script here


def check(name: str, ok: bool, detail: str = "") -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        FAILED.append(name)


def lib(*args: str) -> dict:
    """`python -m lib ARGS --json`'s last JSON line, with the time it took."""
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "lib", *args, "--json"], capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t
    if r.returncode != 0:
        print(r.stdout[-2000:], r.stderr[-4000:], sep="\n")
        raise SystemExit(f"python -m lib {' '.join(args)} exited {r.returncode}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["_seconds"] = round(seconds, 1)
    return out


def main(out_dir: Path) -> int:
    import torch

    from lib.runs.inside import machine
    from lib.runs.store import RunStore

    runs = Path(os.environ.get("TMPDIR", "/tmp")) / "device-runs"
    shutil.rmtree(runs, ignore_errors=True)
    print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA", flush=True)
    check("cuda available", torch.cuda.is_available())
    store = RunStore(runs)

    cnn = lib("train", "sample", "--model", "cnn", "--epochs", "3", "--device", DEVICE, "--runs-dir", str(runs))
    record = store.get_run(cnn["run_id"])
    check("cnn on cuda completed", str(record.status) == "completed", f"{record.status} in {cnn['_seconds']} s")
    check("run records device cuda", "cuda" in json.dumps(record.config), str(record.config.get("device")))
    gpu = machine(store, cnn["run_id"])
    check("machine table has GPU memory", bool((gpu["gpu_mem_mb"] > 0).any()), gpu.tail(2).to_string())
    evaluated = lib("evaluate", cnn["run_id"], "--runs-dir", str(runs))
    got, recorded = evaluated.get("accuracy"), record.final.get("val_accuracy")
    check("evaluate on cuda equals the recorded accuracy", got == recorded, f"{got} vs {recorded}")
    layers = lib("layers", cnn["run_id"], "--runs-dir", str(runs))
    check("layers recorded", len(layers["steps"]) > 1 and len(layers["params"]) > 1, f"{len(layers['steps'])} steps")
    last = store.files.checkpoint_path(cnn["run_id"], "last")
    state = torch.load(last, map_location="cpu", weights_only=True)
    check("cuda checkpoint loads on cpu", "model" in state, str(sorted(state)[:6]))
    shutil.copy(last, out_dir / "cnn_cuda_last.pt")

    sys.path.insert(0, "tests")
    os.environ["TORCH_HOME"] = str(runs / "torch-home")
    from test_models import seed_weights  # random weights where torch hub keeps resnet18's DEFAULT

    weights = seed_weights("resnet18")
    head = lib(
        "train", "sample", "--model", "resnet18", "--pretrained", "--finetune", "head", "--epochs", "3",
        "--image-size", "64", "--device", DEVICE, "--runs-dir", str(runs),
    )  # fmt: skip
    trained = store.files.load_checkpoint(head["run_id"], "last")["model"]
    backbone = [k for k in weights if not k.startswith("fc.")]
    same = all(torch.equal(trained[k].cpu(), weights[k]) for k in backbone)
    check("head on cuda: backbone bit-identical", same, f"{len(backbone)} tensors, {head['_seconds']} s")
    full = lib(
        "train", "sample", "--model", "resnet18", "--pretrained", "--finetune", "full", "--epochs", "2",
        "--image-size", "64", "--device", DEVICE, "--runs-dir", str(runs), "--backbone-lr-scale", "0.1",
    )  # fmt: skip
    check("full fine-tune on cuda completed", str(store.get_run(full["run_id"]).status) == "completed")
    print(json.dumps({k: v for k, v in full.items() if k != "config"})[:1500])

    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
    train = [
        "-m",
        "lib",
        "train",
        "sample",
        "--model",
        "cnn",
        "--epochs",
        "2",
        "--device",
        DEVICE,
        "--runs-dir",
        str(runs),
    ]
    one = subprocess.run([*launch, "1", *train, "--json"], capture_output=True, text=True, timeout=300)
    ran = json.loads(one.stdout.strip().splitlines()[-1]) if one.returncode == 0 else {}
    check("torchrun, 1 process, nccl", ran.get("status") == "completed", one.stderr[-600:] if one.returncode else "")
    count = torch.cuda.device_count() if DEVICE == "cuda" else 0
    two = subprocess.run([*launch, str(count + 1), *train], capture_output=True, text=True, timeout=300)
    said = [line for line in two.stderr.splitlines() if line.startswith("error: ")]
    check(
        f"torchrun, {count + 1} processes on {count} GPU(s): one sentence",
        two.returncode != 0 and bool(said),
        "; ".join(said[:1]),
    )
    return 1 if FAILED else 0


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    target.mkdir(parents=True, exist_ok=True)
    raise SystemExit(main(target))
