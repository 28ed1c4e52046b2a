"""lib/health and `python -m lib health`: planted duplicates, flipped labels and outliers found; marks honoured."""

from __future__ import annotations

import json

import imagehash
import numpy as np
import pytest
from cleanlab.filter import find_label_issues
from PIL import Image

from lib.__main__ import main
from lib.data.images import load_rgb
from lib.data.index import build_index
from lib.data.marks import read_marks, toggle_marks
from lib.health import duplicates
from lib.health.duplicates import near_pairs
from lib.health.labels import label_issues
from lib.health.outliers import feature_outliers, plain_outliers
from lib.health.scan import perceptual_hashes, scan
from lib.runs.store import RunStore
from tests.health_helpers import PER_CLASS, blobs, planted_folder


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("health") / "ds"
    return root, planted_folder(root)


@pytest.fixture(autouse=True)
def no_weights(tmp_path, monkeypatch):
    """An empty torch hub cache (auto means the cnn), and a test that fails if anything downloads."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("downloaded"))
    return tmp_path / "torch-home" / "hub" / "checkpoints"


def health_json(root, capsys, *args) -> dict:
    assert main(["health", str(root), "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_planted_duplicates_and_flipped_labels_are_found(planted, capsys):
    """Without weights at hand, auto is the small cnn trained per fold: the flips rank first, suggested right."""
    root, faults = planted
    report = health_json(root, capsys, "--folds", "3")
    assert report["model"] == "cnn" and "small cnn" in report["model_detail"]
    assert report["num_images"] == 3 * PER_CLASS + 7
    groups = {(g["kind"], tuple(g["paths"])) for g in report["duplicates"]}
    assert {("exact", pair) for pair in faults["exact"]} <= groups  # a re-saved PNG is still a copy
    assert {("near", pair) for pair in faults["near"]} <= groups  # noise, JPEG re-encode, 1-pixel resize
    assert len(groups) == len(faults["exact"]) + len(faults["near"])  # and nothing else
    conflict = next(g for g in report["duplicates"] if tuple(g["paths"]) == faults["conflict"])
    assert conflict["classes"] == ["a", "b"]
    issues = report["label_issues"]
    wrong = {**faults["flipped"], faults["conflict"][1]: "a"}  # the flips, and a's picture copied into b
    top = {i["path"]: i["suggested"] for i in issues[: len(wrong)]}
    assert top == wrong  # first, each with the class it came from; no clean image above them
    assert [i["score"] for i in issues] == sorted((i["score"] for i in issues), reverse=True)
    assert report["outliers"][0]["path"] in wrong  # the farthest from its class in the cnn's features


@pytest.mark.parametrize("model", ["linear", "knn"])
def test_the_pixel_models_remain_options(planted, capsys, model):
    root, faults = planted
    report = health_json(root, capsys, "--model", model)
    assert report["model"] == model and "pixels" in report["model_detail"]
    found = set(faults["flipped"]) & {i["path"] for i in report["label_issues"][:4]}  # beside the cross-class copy
    assert len(found) == (2 if model == "linear" else 1)  # a 10-neighbour vote on 16 per class misses one


def test_the_probe_runs_on_a_cached_backbone_and_its_features_are_torchvisions(planted, capsys, no_weights):
    """With resnet18's weights file in the hub cache (written here: random weights, never downloaded), auto is a
    linear probe on its features; they equal torchvision's resnet18 without its fc on ImageNet-normalized pixels."""
    import torch
    import torchvision

    from lib.health.quick import backbone_features
    from tests.test_models import seed_weights

    assert main(["health", str(planted[0]), "--model", "probe"]) == 2  # no weights at hand: one sentence
    assert "torch hub's cache" in capsys.readouterr().err
    state = seed_weights("resnet18")
    assert (no_weights / "resnet18-f37072fd.pth").is_file()
    root, faults = planted
    report = health_json(root, capsys, "--folds", "3")
    assert report["model"] == "probe" and "resnet18" in report["model_detail"] and "64 px" in report["model_detail"]
    assert set(faults["flipped"]) <= {i["path"] for i in report["label_issues"]}
    images = np.stack([np.asarray(load_rgb(p).resize((64, 64))) for p in sorted(root.rglob("a0*.png"))])
    reference = torchvision.models.resnet18()
    reference.load_state_dict(state)
    reference.fc = torch.nn.Identity()
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std  # ImageNet's, by hand
    with torch.no_grad():
        expected = reference.eval()(x).numpy()
    np.testing.assert_allclose(backbone_features(images, "resnet18"), expected, rtol=1e-4, atol=1e-5)


def test_findings_are_stored_and_the_threshold_regroups(planted, capsys):
    root, faults = planted
    again = health_json(root, capsys, "--folds", "3", "--threshold", "0")
    assert {tuple(g["paths"]) for g in again["duplicates"]} == set(faults["exact"])  # near copies need bits


@pytest.mark.parametrize("chunk", [2048, 5], ids=["one chunk", "chunks of 5"])
def test_perceptual_hash_is_imagehash_phash(planted, monkeypatch, chunk):
    from lib.health import scan as scan_module

    monkeypatch.setattr(scan_module, "HASH_CHUNK", chunk)
    root, _ = planted
    paths = sorted(str(p) for p in root.rglob("*.*"))[:12]
    found = scan(paths)
    ours = perceptual_hashes(found.grey)
    assert [int(h) for h in ours] == [int(str(imagehash.phash(load_rgb(p))), 16) for p in paths]


@pytest.mark.parametrize(
    ("block_bytes", "threads"), [(2**25, 1), (8 * 300 * 16, 3)], ids=["one block", "19 blocks, 3 threads"]
)
def test_near_pairs_match_every_pair_counted_by_imagehash(monkeypatch, block_bytes, threads):
    monkeypatch.setattr(duplicates, "BLOCK_BYTES", block_bytes)  # 16 rows a block: blocks end mid-way too
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 2**63, 300, dtype=np.int64).astype(np.uint64)
    hashes[7] = hashes[200] ^ np.uint64(0b1011)  # 3 bits apart
    pairs = near_pairs(hashes, 20, threads=threads).tolist()
    found = {(i, j, d) for i, j, d in pairs}
    as_hash = [imagehash.hex_to_hash(f"{int(h):016x}") for h in hashes]
    expected = {(i, j, as_hash[i] - as_hash[j]) for i in range(300) for j in range(i + 1, 300)}
    assert found == {e for e in expected if e[2] <= 20} and (7, 200, 3) in found
    assert pairs == sorted(pairs) and len(pairs) == len(found)  # by i then j, each pair once


def test_confident_learning_on_a_matrix_worked_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    probs = np.array(
        [[.9, .05, .05], [.8, .1, .1], [.1, .8, .1], [.1, .8, .1], [.2, .7, .1],
         [.7, .2, .1], [.1, .1, .8], [.1, .1, .8], [.1, .2, .7]]
    )  # fmt: skip
    # Thresholds, the mean probability of each class over its own labels: t0 = 0.6, t1 = 0.567, t2 = 0.767.
    # Image 2 (labeled 0) has p1 = 0.8 >= t1: an issue, suggests 1. Image 5 (labeled 1) has p0 = 0.7 >= t0.
    # Image 8 reaches no threshold (0.7 < t2), image 4 only its own: not issues. Ranked by self-confidence
    # (0.1 before 0.2).
    assert label_issues(labels, probs) == [(2, 1, pytest.approx(0.9)), (5, 0, pytest.approx(0.8))]
    ranked = find_label_issues(
        labels, probs, filter_by="confident_learning", return_indices_ranked_by="self_confidence"
    )
    assert list(ranked) == [2, 5]


def test_feature_outliers_compare_folds_of_different_scales():
    """Two folds of one class, the second's features in a space 10 times larger (another model): only the
    planted far point is an outlier, and its z is the one a single space would give (numpy by hand)."""
    rng = np.random.default_rng(0)
    first, second = rng.normal(0, 1, (12, 4)), rng.normal(0, 10, (12, 4))
    first[3] += 12.0  # far from the rest of its fold
    features, labels = np.concatenate([first, second]), np.zeros(24, dtype=np.int64)
    groups = np.repeat([0, 1], 12)
    found = feature_outliers(features, labels, groups=groups)
    assert [i for i, _ in found] == [3]
    d = [np.linalg.norm(f - f.mean(axis=0), axis=1) for f in (first, second)]
    pooled = np.concatenate([x / np.median(x) for x in d])
    expected = (pooled[3] - np.median(pooled)) / (1.4826 * np.median(np.abs(pooled - np.median(pooled))))
    assert found[0][1] == pytest.approx(expected)
    assert 3 not in [i for i, _ in feature_outliers(features, labels)]  # as one space, the larger fold hides it


def test_plain_outliers_by_their_thresholds():
    grey = np.full((4, 32, 32), 128, dtype=np.uint8)
    grey[1:] = np.random.default_rng(0).integers(60, 200, (3, 32, 32))
    grey[2] = np.random.default_rng(1).integers(0, 15, (32, 32))  # mean 7 of 255, std 4: dark, not constant
    sizes = np.array([[32, 32], [4, 32], [32, 32], [30, 200]])
    found = {(i, reason.split(" (")[0]) for i, reason, _ in plain_outliers(grey, sizes)}
    assert found == {(0, "near-constant"), (1, "tiny"), (1, "extreme aspect ratio"), (2, "extremely dark"),
                     (3, "extreme aspect ratio")}  # fmt: skip


def test_marks_are_left_out_by_the_index_stats_and_training(tmp_path, capsys):
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            blobs(rng, (200, 40, 40) if name == "a" else (40, 40, 200), 16).save(root / name / f"{i}.png")
    assert toggle_marks(root, ["a/3.png"], True) == ["a/3.png"] == read_marks(root)
    index = build_index(str(root))
    assert index.num_images == 11 and index.left_out == ["a/3.png"]
    assert build_index(str(root), marks=False).num_images == 12
    assert main(["stats", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 11
    args = ["train", str(root), "--model", "mlp", "--epochs", "1", "--image-size", "16", "--runs-dir", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = RunStore(tmp_path).get_run(summary["run_id"])
    assert "Left out 1 marked file: trained on 11 images." in record.message
    assert "a/3.png" not in RunStore(tmp_path).files.load_checkpoint(summary["run_id"], "last")["val_paths"]
    assert toggle_marks(root, ["a/3.png"], False) == [] and build_index(str(root)).num_images == 12


def test_unusable_source_and_bad_options_exit_2(tmp_path, capsys):
    assert main(["health", str(tmp_path / "nope")]) == 2
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["health", "sample", "--folds", "1"]) == 2
    assert "folds" in capsys.readouterr().err


def test_leaks_are_the_groups_across_a_runs_split(tmp_path, capsys):
    root = tmp_path / "ds"
    rng = np.random.default_rng(1)
    for name, color in (("a", (200, 40, 40)), ("b", (40, 40, 200))):
        (root / name).mkdir(parents=True)
        for i in range(8):
            picture = blobs(rng, color, 16)
            picture.save(root / name / f"{i}.png")
            picture.save(root / name / f"{i}_copy.png", compress_level=1)  # every picture twice
    args = ["train", str(root), "--model", "linear", "--epochs", "1", "--image-size", "16", "--runs-dir", str(tmp_path)]
    assert main([*args, "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_id"]
    val = set(RunStore(tmp_path).files.load_checkpoint(run_id, "last")["val_paths"])
    report = health_json(root, capsys, "--run", run_id, "--runs-dir", str(tmp_path))
    pairs = [g["paths"] for g in report["duplicates"]]
    assert len(pairs) == 16 and all(len(p) == 2 for p in pairs)
    expected = [p for p in pairs if (p[0] in val) != (p[1] in val)]  # one copy trained on, the other validated
    assert expected and [g["paths"] for g in report["leaks"]] == expected


def test_deployed_marks_are_the_visitors_own(tmp_path):
    """A deployed trainer reads its session's marks, not another visitor's nor the server-wide list."""
    from train_helpers import wait_for

    from lib.data.marks import session_marks_root
    from lib.data.sample import sample_root
    from lib.settings import Settings
    from lib.training.config import TrainConfig
    from lib.training.runner import start_run

    root, mine, theirs = sample_root(), "a" * 32, "b" * 32
    index = build_index(str(root), marks=False)
    first = index.relpath(index.samples[0][0])
    toggle_marks(root, [first], True, session_marks_root(mine))
    assert read_marks(root) == [] and session_marks_root("../x") is None  # never a path from outside
    store, settings = RunStore(tmp_path), Settings(mode="deployed")
    config = TrainConfig(model="linear", epochs=1, image_size=16)
    runs = {owner: start_run(config, root, store, owner, settings=settings) for owner in (mine, theirs)}
    ended = {o: wait_for(lambda r=r: (x := store.get_run(r)).status != "running" and x, 300) for o, r in runs.items()}
    assert "Left out 1 marked file: trained on 639 images." in ended[mine].message
    assert "Left out" not in ended[theirs].message and ended[theirs].status == "completed"
