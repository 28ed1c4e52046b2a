"""The command line refuses bad options up front: exit 2 and one line, never a traceback or exit 1."""

import pytest
import torch

from lib.__main__ import main
from lib.runs.store import RunStore
from tests.helpers import write_imagefolder

TRAIN = ["train", "sample", "--model", "linear", "--image-size", "8", "--epochs", "1", "--max-batches", "1"]


@pytest.mark.parametrize(
    "extra, says",
    [
        (["--threads", "-1"], "--threads must be at least 1"),
        (["--threads", "0"], "--threads must be at least 1"),
        (["--cache-mb", "-5"], "--cache-mb must be zero or more"),
        (["--seed", "-1"], "seed must be a whole number of at least 0"),
        (["--seed", str(2**70)], "seed must be at most"),
        (["--epochs", str(10**20)], "epochs must be at most"),
        (["--max-minutes", "0"], "--max-minutes must be a positive number"),
        (["--runs-dir", "/proc/no/such/folder"], "runs folder cannot be created"),
    ],
)
def test_bad_train_options_are_exit_2_with_one_line(extra, says, tmp_path, capsys):
    args = [*TRAIN, "--runs-dir", str(tmp_path), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
    if "--runs-dir" not in extra:
        assert RunStore(tmp_path).list_runs() == []  # nothing was started


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_bad_input(tmp_path, capsys):
    assert main([*TRAIN, "--runs-dir", str(tmp_path), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not available on this machine" in err


def test_one_image_in_a_class_is_bad_input(tmp_path, capsys):
    root = write_imagefolder(tmp_path / "ds", classes=("a", "b"), per_class=3)
    for p in list((root / "b").iterdir())[1:]:
        p.unlink()
    assert main(["train", str(root), "--runs-dir", str(tmp_path / "runs"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Class b has 1 image" in err


def test_a_damaged_store_is_healed_and_the_run_goes_on(tmp_path, capsys):
    (tmp_path / "runs.sqlite").write_bytes(b"garbage" * 100)
    assert main([*TRAIN, "--runs-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "moved aside as runs.sqlite.damaged-" in err and "Traceback" not in err
    assert len(RunStore(tmp_path).list_runs()) == 1


@pytest.mark.parametrize(
    "extra, says", [(["--size", "0"], "--size must be at least 1"), (["--workers", "-2"], "--workers")]
)
def test_bad_stats_options_are_exit_2(extra, says, capsys):
    assert main(["stats", "sample", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
