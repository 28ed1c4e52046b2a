"""The one set of training knobs, validated once and saved with every run and checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from lib.pixels.augmentation import Augmentation

MODELS = ("linear", "mlp", "cnn", "resnet18")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine", "onecycle")
NORMALIZATIONS = ("dataset", "imagenet", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENT_FIELDS = frozenset(("random_crop", "hflip", "rotation", "color_jitter"))
MAX_EPOCHS, MAX_BATCH, MAX_SEED = 100_000, 1_000_000, 2**32 - 1
DEFAULT_CACHE_MB = 2048  # decoded images kept in memory up to this size (an execution knob, not a result one)


@dataclass(frozen=True)
class TrainConfig:
    """How a run was made. Build with `TrainConfig(**kwargs)`; a bad value raises one-sentence ValueError.

    random_crop, hflip, rotation and color_jitter are lib.pixels.transforms.Augmentation's fields, applied to
    training batches only. optimizer "sgd" uses momentum 0.9. val_split is the fraction of each class held out for validation
    (stratified). max_batches caps the batches per epoch (a dry run); None trains on every batch.
    """

    model: str = "cnn"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "none"
    image_size: int = 32
    random_crop: bool = False
    hflip: bool = False
    rotation: float = 0.0
    color_jitter: float = 0.0
    normalization: str = "dataset"
    val_split: float = 0.2
    seed: int = 0
    device: str = "auto"
    max_batches: int | None = None
    pretrained: bool = False
    name: str = ""
    world_size: int = 1  # processes the run spans (set from torchrun's environment, not chosen)

    def __post_init__(self):
        _choice("model", self.model, MODELS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("normalization", self.normalization, NORMALIZATIONS)
        _choice("device", self.device, DEVICES)
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("seed", self.seed, 0)
        # Bounds that keep step counts and seeds inside SQLite's and torch's 64-bit integers.
        _at_most("epochs", self.epochs, MAX_EPOCHS)
        _at_most("batch_size", self.batch_size, MAX_BATCH)
        _at_most("seed", self.seed, MAX_SEED)
        if not 4 <= self.image_size <= 1024:
            raise ValueError(f"image_size {self.image_size} is out of range; choose between 4 and 1024 pixels.")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise ValueError(f"lr must be a positive number, got {self.lr}; try 1e-3 for adam or 0.01 for sgd.")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be zero or positive, got {self.weight_decay}.")
        if not 0.0 < self.val_split < 1.0:
            raise ValueError(f"val_split must be between 0 and 1 (exclusive), got {self.val_split}; try 0.2.")
        self.augmentation()  # validates rotation and color_jitter
        _at_least("world_size", self.world_size, 1)
        if self.max_batches is not None:
            _at_least("max_batches", self.max_batches, 1)
            _at_most("max_batches", self.max_batches, MAX_BATCH)
        if self.pretrained and self.model != "resnet18":
            raise ValueError(
                f"Pretrained weights exist only for resnet18, not {self.model}; choose resnet18 or untick pretrained."
            )

    def augmentation(self) -> Augmentation:
        """What training applies to each training batch (the Channels preview shows the same)."""
        return Augmentation(self.random_crop, self.hflip, self.rotation, self.color_jitter)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a saved dict; keys this version does not know are ignored (older/newer runs load).

        A run saved before augmentation had its own fields says `augment: true`: that was random crop
        and horizontal flip, and reads as exactly that.
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        if d.get("augment") and not AUGMENT_FIELDS & d.keys():
            values.update(random_crop=True, hflip=True)
        return cls(**values)


def fits_in_memory(num_images: int, image_size: int, cache_bytes: int) -> bool:
    """Whether the decoded uint8 images (N, 3, S, S) fit the memory budget (the engine then decodes once)."""
    return num_images * 3 * image_size**2 <= cache_bytes


def held_out(n: int, val_split: float) -> int:
    """Images of a class of n held out for validation: round(n * val_split), at least 1, leaving 1 to train."""
    return min(n - 1, max(1, round(n * val_split)))


def validation_size(class_counts: list[int], val_split: float) -> int:
    """Images in the validation set that a stratified split of these class sizes holds out."""
    return sum(held_out(n, val_split) for n in class_counts if n >= 2)


def _choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"Unknown {name} {value!r}; choose one of {', '.join(options)}.")


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be a whole number of at least {low}, got {value!r}.")


def _at_most(name: str, value: int, high: int) -> None:
    if value > high:
        raise ValueError(f"{name} must be at most {high:,}, got {value:,}.")
