"""The trainer's one decode: worker processes and threads give the same tensor, and name what fails."""

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

import lib.pixels.decode as decode
from lib.training.batches import decode_images


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2 * decode.CHUNK + 7):  # three chunks, the last one short
        p = root / f"{i:04d}.png"
        Image.fromarray(rng.integers(0, 256, (12 + i % 5, 10, 3), dtype=np.uint8), "RGB").save(p)
        paths.append(str(p))
    broken = [5, decode.CHUNK + 1]  # one in each of the first two chunks
    for i in broken:
        open(paths[i], "wb").write(b"not a png")
    return paths, broken


@pytest.mark.parametrize("pooled", [False, True])
def test_processes_and_threads_decode_like_torchvision_and_report_failures(files, monkeypatch, pooled):
    paths, broken = files
    if pooled:
        monkeypatch.setattr(decode, "MIN_IMAGES_FOR_POOL", 1)  # the worker processes, on a small set
    bad: list = []
    got = decode_images(paths, 8, workers=2, bad=bad)
    assert [i for i, _ in bad] == broken and all("Pillow" in r or "image" in r for _, r in bad)
    resize = v2.Compose([v2.Resize((8, 8), antialias=True), v2.PILToTensor()])
    for i in (0, decode.CHUNK, len(paths) - 1):
        assert torch.equal(got[i], resize(Image.open(paths[i]).convert("RGB")))
    assert not got[broken].any()  # a slot that failed stays zero


def test_without_a_list_for_failures_the_first_one_raises(files):
    paths, broken = files
    with pytest.raises(ValueError, match=paths[broken[0]].split("/")[-1]):
        decode_images(paths[:10], 8)


def test_a_started_decoding_is_used_as_it_is(files):
    paths, _ = files
    ok = [p for i, p in enumerate(paths[:20]) if i != 5]
    started = decode.Decoding(ok, 8, workers=1)
    assert torch.equal(decode_images(ok, 8, decoding=started), decode_images(ok, 8))
