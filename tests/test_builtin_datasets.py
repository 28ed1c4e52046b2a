"""lib.data.builtins on tiny CIFAR10 pickles and MNIST idx files written in their real formats."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets
from PIL import Image

from lib.data.builtins import builtin_available, download_builtin, export_builtin

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> None:
    """The idx format: 0, 0, dtype code 0x08 (uint8), ndim, then big-endian int32 sizes and the data."""
    data = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(f"{path}.gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_mnist(root: Path, name: str = "MNIST", n: int = 12, *, gz: bool = False, seed: int = 0):
    """Train (and t10k, which torchvision's existence check wants) files; returns the train arrays."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10
    raw = root / name / "raw"
    for split in ("train", "t10k"):
        write_idx(raw / f"{split}-images-idx3-ubyte", images, gz=gz)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels, gz=gz)
    return images, labels


def write_cifar(root: Path, per_batch: int = 3, seed: int = 0):
    """Five batches of (N, 3072) rows (R, G, B planes of 32x32) and batches.meta; returns all of them."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rows, labels = [], []
    for b in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        lab = [int(x) for x in rng.integers(0, 10, per_batch)]
        # The originals are Python 2 pickles; batch 1 uses bytes keys, as loading them without latin1 gives.
        entry = (
            {b"data": data, b"labels": lab} if b == 1 else {"batch_label": f"batch {b}", "data": data, "labels": lab}
        )
        (folder / f"data_batch_{b}").write_bytes(pickle.dumps(entry, protocol=2))
        rows.append(data)
        labels += lab
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CIFAR_NAMES, "num_vis": 3072}, protocol=2))
    return np.concatenate(rows), labels


def exported(root: Path) -> dict[str, list[str]]:
    return {c: sorted(os.listdir(root / c)) for c in sorted(os.listdir(root)) if (root / c).is_dir()}


# --- CIFAR10 -------------------------------------------------------------------------------------


def test_cifar10_pixels_and_labels(tmp_path):
    rows, labels = write_cifar(tmp_path / "data")
    calls = []
    out = export_builtin("CIFAR10", tmp_path / "data", tmp_path / "cache", progress=lambda d, t: calls.append((d, t)))
    assert sorted(exported(out)) == CIFAR_NAMES  # every class folder, even those with no images
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        got = np.asarray(Image.open(out / CIFAR_NAMES[label] / f"{i:05d}.png"))
        for c in range(3):  # channel c is the c-th plane of 1024 values, row-major
            assert np.array_equal(got[:, :, c], row[c * 1024 : (c + 1) * 1024].reshape(32, 32))
    assert sum(len(v) for v in exported(out).values()) == 15
    assert calls[-1] == (15, 15)


def test_cifar10_hostile_pickle_refused_without_running_it(tmp_path):
    write_cifar(tmp_path / "data")
    target = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(target),))

    (tmp_path / "data/cifar-10-batches-py/data_batch_3").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(ValueError, match=r"data_batch_3 is not a CIFAR-10 pickle.*download CIFAR10 again\.$"):
        export_builtin("CIFAR10", tmp_path / "data", tmp_path / "cache")
    assert not target.exists()


def test_cifar10_missing_files_named(tmp_path):
    write_cifar(tmp_path / "data")
    (tmp_path / "data/cifar-10-batches-py/data_batch_4").unlink()
    assert not builtin_available("CIFAR10", tmp_path / "data")
    with pytest.raises(ValueError, match=r"expected data_batch_4 under .*cifar-10-batches-py"):
        export_builtin("CIFAR10", tmp_path / "data", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


# --- MNIST and FashionMNIST ----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_pixels_and_labels(tmp_path, gz):
    images, labels = write_mnist(tmp_path / "data", gz=gz)
    assert builtin_available("MNIST", tmp_path / "data")
    out = export_builtin("MNIST", tmp_path / "data", tmp_path / "cache")
    names = torchvision.datasets.MNIST.classes
    for i in range(len(images)):
        got = np.asarray(Image.open(out / names[labels[i]] / f"{i:05d}.png"))
        assert got.dtype == np.uint8 and np.array_equal(got, images[i])


@pytest.mark.parametrize("name", ["MNIST", "FashionMNIST"])
def test_matches_torchvision_reading_the_same_files(tmp_path, name):
    write_mnist(tmp_path / "data", name, n=20, seed=1)
    out = export_builtin(name, tmp_path / "data", tmp_path / "cache")
    reference = getattr(torchvision.datasets, name)(str(tmp_path / "data"), train=True, download=False)
    assert len(reference) == 20
    for i in range(len(reference)):
        img, target = reference[i]
        folder = reference.classes[target].replace("/", "_")  # "T-shirt/top" cannot be a folder name
        assert np.array_equal(np.asarray(Image.open(out / folder / f"{i:05d}.png")), np.asarray(img))
    assert sorted(exported(out)) == sorted(c.replace("/", "_") for c in reference.classes)


def test_export_is_reused(tmp_path):
    write_mnist(tmp_path / "data")
    first = export_builtin("MNIST", tmp_path / "data", tmp_path / "cache")
    victim = next((first / "0 - zero").iterdir())
    victim.unlink()  # a second export would bring it back
    assert export_builtin("MNIST", tmp_path / "data", tmp_path / "cache") == first
    assert not victim.exists() and os.listdir(tmp_path / "cache") == [first.name]


def test_mnist_missing_labels_named(tmp_path):
    write_mnist(tmp_path / "data")
    (tmp_path / "data/MNIST/raw/train-labels-idx1-ubyte").unlink()
    with pytest.raises(
        ValueError,
        match=r"expected train-labels-idx1-ubyte \(or train-labels-idx1-ubyte\.gz\) under .*MNIST/raw; put them there",
    ):
        export_builtin("MNIST", tmp_path / "data", tmp_path / "cache")


def test_mnist_nothing_there(tmp_path):
    assert not builtin_available("FashionMNIST", tmp_path)
    with pytest.raises(
        ValueError,
        match=r"FashionMNIST files not found: expected train-images-idx3-ubyte \(or train-images-idx3-ubyte\.gz\), ",
    ):
        export_builtin("FashionMNIST", tmp_path, tmp_path / "cache")


def test_mnist_short_file_refused(tmp_path):
    write_mnist(tmp_path / "data")
    path = tmp_path / "data/MNIST/raw/train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="shorter than its header says; download it again"):
        export_builtin("MNIST", tmp_path / "data", tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # read fully before anything is written


def test_mnist_wrong_format_refused(tmp_path):
    write_mnist(tmp_path / "data")
    (tmp_path / "data/MNIST/raw/train-images-idx3-ubyte").write_bytes(b"<html>not found</html>")
    with pytest.raises(ValueError, match="is not an idx file of 3-D uint8 data"):
        export_builtin("MNIST", tmp_path / "data", tmp_path / "cache")


def test_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="Unknown built-in dataset 'SVHN'; choose one of CIFAR10, MNIST, FashionMNIST"):
        builtin_available("SVHN", tmp_path)


# --- download ------------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [urllib.error.URLError("no route"), RuntimeError("Error downloading train-images")])
def test_download_offline(tmp_path, monkeypatch, error):
    seen = {}

    def offline(root, train, download):
        seen.update(root=root, train=train, download=download)
        raise error

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(
        ValueError, match=rf"^Could not download MNIST \(offline\?\); put its files under {tmp_path} and try again\.$"
    ):
        download_builtin("MNIST", tmp_path)
    assert seen == {"root": str(tmp_path), "train": True, "download": True}
