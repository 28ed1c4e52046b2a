"""torchvision's CIFAR10, MNIST and FashionMNIST, read from a local root and exported as ImageFolders.

The files are read directly in their published formats (CIFAR's pickled batches, MNIST's idx
files, raw or .gz) rather than through torchvision's classes, which refuse files whose md5 differs
from the published one. The TRAIN split is exported once as PNGs, one folder per class, so the
rest of the app sees a built-in like any other folder.

Folder names are the dataset's class names with "/" replaced by "_" (FashionMNIST's
"T-shirt/top" becomes "T-shirt_top"). Like any ImageFolder, classes are then sorted by name, so
FashionMNIST's class indices differ from its original label numbers (MNIST's and CIFAR10's agree).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from lib.data.folders import publish_folder

BUILTINS = ("CIFAR10", "MNIST", "FashionMNIST")
Progress = Callable[[int, int], None]  # (done, total)

_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("batches.meta",)
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
MARKER = ".complete"


def builtin_available(name: str, root: str | os.PathLike) -> bool:
    """True when the train split's files of `name` are under root (MNIST's raw or .gz)."""
    return all(p is not None for p in _source_files(name, Path(root)).values())


def export_builtin(name: str, root: str | os.PathLike, dest_parent: Path, progress: Progress | None = None) -> Path:
    """Export the train split of `name` from root as an ImageFolder of PNGs, once, and return its folder.

    Args:
        progress: called with (images written, total) while exporting.

    Raises:
        ValueError: unknown name, missing files (saying which, where), or files in the wrong format.
    """
    root = Path(root).expanduser()
    files = _source_files(name, root)
    missing = [f if name == "CIFAR10" else f"{f} (or {f}.gz)" for f, p in files.items() if p is None]
    if missing:
        raise ValueError(
            f"{name} files not found: expected {', '.join(missing)} under {_data_dir(name, root)}; "
            "put them there or download the dataset."
        )
    final = Path(dest_parent) / f"{name}-{_fingerprint(files.values())}"
    if not (final / MARKER).exists():
        images, labels, classes = _read_train(name, files)
        _export_atomically(images, labels, classes, final, progress)
    return final


def download_builtin(name: str, root: str | os.PathLike) -> Path:
    """Download `name` with torchvision into root and return root.

    Raises:
        ValueError: unknown name, or the download failed (no network, server error).
    """
    import torchvision.datasets  # heavy: only when asked to download

    _check_name(name)
    try:
        getattr(torchvision.datasets, name)(str(root), train=True, download=True)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; torchvision wraps some in RuntimeError
        raise ValueError(f"Could not download {name} (offline?); put its files under {root} and try again.") from e
    return Path(root)


def _check_name(name: str) -> None:
    if name not in BUILTINS:
        raise ValueError(f"Unknown built-in dataset {name!r}; choose one of {', '.join(BUILTINS)}.")


def _data_dir(name: str, root: Path) -> Path:
    return root / _CIFAR_DIR if name == "CIFAR10" else root / name / "raw"


def _source_files(name: str, root: Path) -> dict[str, Path | None]:
    """Each expected file name mapped to the file found (MNIST: raw, else .gz), or None."""
    _check_name(name)
    folder = _data_dir(name, root)
    if name == "CIFAR10":
        return {f: (folder / f if (folder / f).is_file() else None) for f in _CIFAR_FILES}
    found = {}
    for f in _IDX_FILES:
        options = [folder / f, folder / f"{f}.gz"]
        found[f] = next((p for p in options if p.is_file()), None)
    return found


def _fingerprint(paths) -> str:
    """Changes when any source file is replaced: its absolute path, size and modification time."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _read_train(name: str, files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The train split as (N, H, W) or (N, H, W, 3) uint8 images, (N,) labels and the class names."""
    if name == "CIFAR10":
        images, labels, classes = _read_cifar(files)
    else:
        import torchvision.datasets  # only for the class names, a class attribute

        images = _read_idx(files[_IDX_FILES[0]], ndim=3)
        labels = _read_idx(files[_IDX_FILES[1]], ndim=1)
        classes = list(getattr(torchvision.datasets, name).classes)
    if len(images) != len(labels) or len(labels) == 0 or labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(
            f"{name}'s {len(images)} images and {len(labels)} labels do not match; download its files again."
        )
    return images, labels, classes


# --- CIFAR-10: five pickled batches of (N, 3072) rows, channel planes R, G, B of 32x32 ---------


def _read_cifar(files: dict[str, Path]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    images, labels = [], []
    for f in _CIFAR_FILES[:5]:
        batch = _load_pickle(files[f])
        data = np.asarray(_get(batch, "data", files[f]), dtype=np.uint8)
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (N, 32, 32, 3)
        labels.append(np.asarray(_get(batch, "labels", files[f]), dtype=np.int64))
    meta = files["batches.meta"]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _get(_load_pickle(meta), "label_names", meta)]
    return np.concatenate(images), np.concatenate(labels), names


def _get(d, key: str, path: Path):
    """A value from a CIFAR pickle, whose keys are bytes or str depending on how it was loaded."""
    for k in (key, key.encode()):
        if isinstance(d, dict) and k in d:
            return d[k]
    raise ValueError(f"{path} has no {key!r} entry, so it is not a CIFAR-10 batch; download CIFAR10 again.")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickling runs code named in the file: allow only what CIFAR's batches hold (numpy arrays)."""

    _ALLOWED = {
        *((f"numpy.{core}.multiarray", "_reconstruct") for core in ("core", "_core")),
        *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_pickle(path: Path):
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise ValueError(f"{path} is not a CIFAR-10 pickle ({e}); download CIFAR10 again.") from None


# --- MNIST idx: big-endian header (0, 0, dtype 0x08 = uint8, ndim), ndim int32 sizes, then data --


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of uint8, raw or gzipped, read no further than its header says."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4 + 4 * ndim)
            if len(head) != 4 + 4 * ndim or head[:3] != b"\0\0\x08" or head[3] != ndim:
                raise ValueError("wrong header")
            shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
            data = f.read(int(np.prod(shape)))
    except (OSError, EOFError, ValueError) as e:
        raise ValueError(f"{path} is not an idx file of {ndim}-D uint8 data ({e}); download it again.") from None
    if len(data) != int(np.prod(shape)):
        raise ValueError(f"{path} is shorter than its header says; download it again.")
    return np.frombuffer(data, np.uint8).reshape(shape)


# --- export --------------------------------------------------------------------------------------


def _export_atomically(images, labels, classes: list[str], final: Path, progress: Progress | None) -> None:
    """Write PNGs into a temp folder beside `final`, the marker last, then rename into place."""

    def build(tmp: Path) -> None:
        _write_pngs(images, labels, [c.replace("/", "_") for c in classes], tmp, progress)
        (tmp / MARKER).touch()

    publish_folder(final, build, MARKER)


def _write_pngs(images: np.ndarray, labels: np.ndarray, folders: list[str], dest: Path, progress) -> None:
    for folder in folders:
        (dest / folder).mkdir()
    total = len(images)
    for i, (img, label) in enumerate(zip(images, labels, strict=True)):
        # compress_level=1: these are written once and small; speed matters more than size.
        Image.fromarray(img).save(dest / folders[label] / f"{i:05d}.png", compress_level=1)
        if progress and (i + 1) % 500 == 0:
            progress(i + 1, total)
    if progress:
        progress(total, total)
