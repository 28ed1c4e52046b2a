"""A dataset's health findings: computed once (one decode pass, then the label folds), stored beside the cache.

`check_health` runs every check over an index (marked files included: the page shows them, so they can be
unmarked); `stored_findings` / `save_findings` keep the result in the dataset's folder (lib.data.marks),
keyed by the index's fingerprint and the options that change the answer. The near-duplicate pairs are kept
up to MAX_THRESHOLD bits, so `regroup` answers for any threshold without decoding again.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lib.data.marks import dataset_folder
from lib.health import MAX_THRESHOLD, MODELS, NEAR_THRESHOLD, duplicates, labels, outliers, quick
from lib.health.scan import perceptual_hashes, scan

Progress = Callable[[int, int], None]
VERSION = 2


@dataclass(frozen=True)
class HealthConfig:
    """The options that change the findings. image_size: side the images are resized to for features (0: the
    model's own: lib.health.quick's PROBE_SIZE for the probe, SMALL_SIZE otherwise)."""

    folds: int = 5
    model: str = "auto"
    image_size: int = 0
    threshold: int = NEAR_THRESHOLD  # near duplicates: Hamming distance, bits of 64

    def __post_init__(self):
        if not 2 <= self.folds <= 20:
            raise ValueError(f"--folds {self.folds} is out of range; choose between 2 and 20.")
        if self.model not in MODELS:
            raise ValueError(f"Unknown model {self.model!r}; choose one of {', '.join(MODELS)}.")
        if self.image_size and not 4 <= self.image_size <= 128:
            raise ValueError(f"--image-size {self.image_size} is out of range; choose between 4 and 128.")
        if not 0 <= self.threshold <= MAX_THRESHOLD:
            raise ValueError(f"The near-duplicate threshold must be 0 to {MAX_THRESHOLD} bits.")

    def resolved(self) -> tuple[str, str, int]:
        """(the model that runs: probe, cnn, linear or knn; the probe's backbone or ""; the image side).

        Raises:
            ValueError: for --model probe when no backbone's weights are in torch hub's cache.
        """
        model, backbone = self.model, ""
        if model in ("auto", "probe"):
            backbone = quick.probe_backbone() or ""
            if model == "probe" and not backbone:
                raise ValueError(
                    f"No pretrained backbone's weights ({', '.join(quick.PROBE_BACKBONES)}) are in torch hub's cache "
                    "($TORCH_HOME/hub/checkpoints); copy resnet18's file there or choose the cnn."
                )
            model = "probe" if backbone else "cnn"
        return model, backbone, self.image_size or (quick.PROBE_SIZE if model == "probe" else quick.SMALL_SIZE)

    def key(self) -> str:
        model, backbone, size = self.resolved()  # auto's answer changes when weights arrive
        return f"k{self.folds}-{model}{backbone and '-' + backbone}-s{size}"  # not the threshold: regroup answers


def describe(model: str, backbone: str, size: int) -> str:
    """The quick model in words, for the report and the page."""
    return {
        "probe": f"a linear probe (logistic regression) on the features of a frozen pretrained {backbone} at {size} px",
        "cnn": f"the small cnn, trained {quick.CNN_EPOCHS} epochs per fold at {size} px (no pretrained weights at hand)",
        "linear": f"logistic regression on the pixels at {size} px (64 PCA dimensions)",
        "knn": f"a 10-nearest-neighbour vote on the pixels at {size} px (64 PCA dimensions)",
    }[model]


@dataclass
class Findings:
    """The report of `python -m lib health --json`, plus what the page needs to regroup at another threshold."""

    root: str
    classes: list[str]
    paths: list[str]  # relative, POSIX: every image that decoded
    targets: list[int]
    duplicates: list[dict]
    label_issues: list[dict]
    outliers: list[dict]
    failed: list[dict]
    threshold: int
    pairs: list[list[int]] = field(default_factory=list)  # (i, j, bits) up to MAX_THRESHOLD
    digests: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # checks that could not run, and why
    model: str = ""  # the label check's model that ran: probe, cnn, linear or knn
    model_detail: str = ""  # ... in words (backbone, image size, epochs)

    def report(self) -> dict:
        """The JSON shape of the command: num_images, duplicates, label_issues, outliers (and failed, notes)."""
        return {
            "root": self.root,
            "num_images": len(self.paths),
            "threshold": self.threshold,
            "duplicates": [{k: g[k] for k in ("kind", "paths", "classes")} for g in self.duplicates],
            "label_issues": self.label_issues,
            "outliers": self.outliers,
            "failed": self.failed,
            "notes": self.notes,
            "model": self.model,
            "model_detail": self.model_detail,
        }

    def regroup(self, threshold: int) -> list[dict]:
        """The duplicate groups at another near-duplicate threshold (0 to MAX_THRESHOLD)."""
        names = [self.classes[t] for t in self.targets]
        pairs = np.array(self.pairs, dtype=np.int64).reshape(-1, 3)
        return duplicates.duplicate_groups(self.digests, pairs, self.paths, names, threshold)


def check_health(index, config: HealthConfig | None = None, progress: Progress | None = None) -> Findings:
    """Every check over the index's images: one decode pass, the label folds, the outlier scores.

    Progress counts the decode (one unit an image), then the folds (as many units again).
    """
    config = config or HealthConfig()
    model, backbone, size = config.resolved()
    n = index.num_images
    step = (lambda done, total: progress(done, 2 * n)) if progress else None
    found = scan([p for p, _ in index.samples], size, progress=step)
    rel = [index.relpath(p) for p in found.paths]
    target_of = dict(index.samples)
    targets = np.array([target_of[p] for p in found.paths], dtype=np.int64)
    pairs = duplicates.near_pairs(perceptual_hashes(found.grey), MAX_THRESHOLD)
    names = [index.classes[t] for t in targets]
    findings = Findings(
        index.root, list(index.classes), rel, targets.tolist(),
        duplicates.duplicate_groups(found.digests, pairs, rel, names, config.threshold), [], [],
        [{"path": index.relpath(p), "reason": r} for p, r in found.failed], config.threshold,
        pairs.tolist(), found.digests,
    )  # fmt: skip
    findings.outliers = [
        {"path": rel[i], "reason": reason, "score": round(score, 3)}
        for i, reason, score in outliers.plain_outliers(found.grey, found.sizes)
    ]
    findings.model, findings.model_detail = model, describe(model, backbone, size)
    _label_checks(
        findings, found.features, targets, (model, backbone, config.folds),
        progress and (lambda d, t: progress(n + n * d // t, 2 * n)),
    )  # fmt: skip
    return findings


def _label_checks(findings: Findings, images: np.ndarray, targets: np.ndarray, how: tuple, progress) -> None:
    """Label issues and feature outliers, added to findings (a note instead when the folds cannot run).

    how: (model, backbone, folds). The folds' features are the outlier score's: the backbone's, the cnn's
    penultimate layer (scored within each fold, each fold its own model), or the pixels'.
    """
    if len(targets) == 0:
        return
    model, backbone, folds = how
    names, probs, groups = findings.classes, None, None
    if model == "probe":
        features = labels.standardized(quick.backbone_features(images, backbone, progress))
    elif model in ("linear", "knn"):
        features = labels.pixel_features(images)
    try:
        if model == "cnn":
            probs, features, groups = quick.cnn_out_of_sample(
                images, targets, len(names), folds=folds, progress=progress
            )
        else:
            probs = labels.out_of_sample_probs(features, targets, len(names), folds=folds, model=model)
    except ValueError as e:
        findings.notes.append(f"Label check skipped: {e}")
        if model == "cnn":  # no fold ran: the outliers are scored on the pixels
            features = labels.pixel_features(images)
    _add_feature_outliers(findings, features, targets, groups)
    if probs is None:
        return
    findings.label_issues = [
        {"path": findings.paths[i], "given": names[targets[i]], "suggested": names[s], "score": round(score, 4)}
        for i, s, score in labels.label_issues(targets, probs)
    ]


def _add_feature_outliers(findings: Findings, features: np.ndarray, targets: np.ndarray, groups) -> None:
    for i, score in outliers.feature_outliers(features, targets, groups=groups):
        findings.outliers.append(
            {
                "path": findings.paths[i],
                "reason": f"far from its class in feature space (robust z {score:.1f})",
                "score": round(score, 3),
            }
        )


def dataset_findings(index, config: HealthConfig, progress: Progress | None = None, base: Path | None = None):
    """The stored findings for this index and options (at config's threshold), else computed now and stored."""
    path = findings_path(index, config, base)
    found = load_findings(path)
    if found is None:
        found = check_health(index, config, progress)
        save_findings(found, path)
    if found.threshold != config.threshold:
        found.duplicates, found.threshold = found.regroup(config.threshold), config.threshold
    return found


def findings_path(index, config: HealthConfig, base: Path | None = None) -> Path:
    """Where a dataset's findings for these options are kept: keyed by its fingerprint (changes with the files)."""
    key = hashlib.sha1(f"{index.fingerprint()}|{config.key()}|v{VERSION}".encode()).hexdigest()[:16]
    return dataset_folder(index.root, base) / f"findings-{key}.json"


def save_findings(findings: Findings, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(asdict(findings)), encoding="utf-8")
    tmp.replace(path)


def load_findings(path: Path) -> Findings | None:
    """Findings stored before, or None (never computed, or unreadable: they are computed again)."""
    try:
        return Findings(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
