"""The one set of training knobs, validated once and saved with every run and checkpoint.

Each field's metadata says how it is offered (help, bounds, choices): the command line's options
(`add_config_options`, `config_from_args`) and the Train page's field list (`PAGE_FIELDS`) are built from it.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields

from lib.pixels.augmentation import Augmentation
from lib.pixels.resize import INTERPOLATIONS, Resizing
from lib.settings import Settings
from lib.training.model_names import TORCHVISION_MODELS, is_model_file

MODELS = ("linear", "mlp", "cnn", *TORCHVISION_MODELS)  # a model may also be a file: FILE.py:build (local mode)
FINETUNES = ("full", "head")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "step", "cosine", "onecycle")
NORMALIZATIONS = ("dataset", "imagenet", "weights", "none")  # weights: the pretrained weights' own mean/std
RESIZES = ("square", "weights")  # weights: the pretrained weights' own resize and centre crop
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENT_FIELDS = frozenset(("random_crop", "hflip", "rotation", "color_jitter"))
MAX_EPOCHS, MAX_BATCH, MAX_SEED = 100_000, 1_000_000, 2**32 - 1
DEFAULT_CACHE_MB = 2048  # decoded images kept in memory up to this size (an execution knob, not a result one)
AUGMENTATION_GROUP = "augmentation (training batches only; preview it on the Channels page)"


def knob(default, help: str, *, page: bool = True, cli: bool = True, **extra):
    """A TrainConfig field with how it is offered.

    Args:
        help: the option's help, without its default (added from `default`, or `default_text` for None).
        page: shown on the Train page.
        cli: an option of the training commands (`world_size` is set from torchrun's environment).
        extra: `choices`; `low`/`high` (whole-number bounds, checked by TrainConfig); `metavar`, `group`,
            `default_text` for the help.
    """
    return field(default=default, metadata={"help": help, "page": page, "cli": cli, **extra})


@dataclass(frozen=True)
class TrainConfig:
    """How a run was made. Build with `TrainConfig(**kwargs)`; a bad value raises one-sentence ValueError.

    random_crop, hflip, rotation and color_jitter are lib.pixels.transforms.Augmentation's fields, applied to
    training batches only. optimizer "sgd" uses momentum 0.9. val_split is the fraction of each class held out for validation
    (stratified). max_batches caps the batches per epoch (a dry run); None trains on every batch.
    """

    model: str = knob(
        "cnn", "a name from `python -m lib models`, or FILE.py:build (local mode; build(num_classes) -> nn.Module)"
    )
    epochs: int = knob(5, "passes over the training split; with --resume, how many more", low=1, high=MAX_EPOCHS)
    batch_size: int = knob(
        64, "images per step; under torchrun over all processes, each rank taking 1/N", low=1, high=MAX_BATCH
    )
    lr: float = knob(1e-3, "learning rate")
    optimizer: str = knob("adam", "sgd uses momentum 0.9", choices=OPTIMIZERS)
    weight_decay: float = knob(0.0, "adds WD x weight to each gradient (adamw: decays the weights directly)")
    schedule: str = knob("none", "learning-rate schedule", choices=SCHEDULES)
    image_size: int = knob(32, "square side in pixels", weights_default="the weights' crop size with weights, else 32")
    random_crop: bool = knob(
        False, "pad each side by max(1, size // 8) px (reflect), crop back at a random offset", group="augment"
    )
    hflip: bool = knob(False, "mirror left-right with probability 0.5", group="augment")
    rotation: float = knob(0.0, "rotate by a random angle in [-DEG, DEG], 0 to 180", metavar="DEG", group="augment")
    color_jitter: float = knob(
        0.0,
        "scale brightness, contrast, saturation by random factors in [1-J, 1+J], 0 to 1",
        metavar="J",
        group="augment",
    )
    normalization: str = knob(
        "dataset", "per-channel mean/std to subtract", choices=NORMALIZATIONS,
        weights_default="weights with weights, else dataset",
    )  # fmt: skip
    resize: str = knob(
        "square", "square squashes each image to SIZE x SIZE; weights does what the weights' transforms() do: "
        "the shorter side to their resize size (x SIZE / their crop size), then the centre SIZE x SIZE",
        choices=RESIZES, weights_default="weights with weights, else square",
    )  # fmt: skip
    # The weights' own preprocessing, recorded when a run with resize "weights" starts (with_weights_preprocessing).
    resize_size: int | None = knob(None, "the weights' resize size", low=1, page=False, cli=False)
    crop_size: int | None = knob(None, "the weights' crop size", low=1, page=False, cli=False)
    interpolation: str = knob(
        "bilinear", "the resize's filter", choices=tuple(INTERPOLATIONS), page=False, cli=False
    )  # fmt: skip
    val_split: float = knob(0.2, "fraction of each class held out for validation")
    seed: int = knob(0, "seed for split, init, shuffling, augmentation", low=0, high=MAX_SEED)
    device: str = knob("auto", "auto picks cuda, then mps, then cpu", choices=DEVICES, page=False)
    max_batches: int | None = knob(None, "batches per epoch, for a dry run", low=1, high=MAX_BATCH, default_text="all")
    pretrained: bool = knob(False, "start from the model's DEFAULT weights in torch hub's cache (see --weights)")
    weights: str = knob(
        "", "torchvision weights NAME from torch hub's cache ($TORCH_HOME; `python -m lib models` lists them)",
        metavar="NAME", default_text="none",
    )  # fmt: skip
    finetune: str = knob(
        "full", "with weights, head trains only a new head on the frozen backbone's cached features; full trains "
        "every layer", choices=FINETUNES,
    )  # fmt: skip
    backbone_lr_scale: float = knob(1.0, "full fine-tuning: the backbone's learning rate is lr x this, e.g. 0.1")
    model_sha256: str = knob("", "SHA-256 of a model file, recorded when the run starts", page=False, cli=False)
    name: str = knob("", "a label for the run", default_text="the run id")
    # Processes the run spans: set from torchrun's environment, not chosen.
    world_size: int = knob(1, "processes the run spans", low=1, page=False, cli=False)

    def __post_init__(self):
        for f in fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if "choices" in meta:
                _choice(f.name, value, meta["choices"])
            # Bounds that keep step counts and seeds inside SQLite's and torch's 64-bit integers.
            if "low" in meta and value is not None:
                _at_least(f.name, value, meta["low"])
            if "high" in meta and value is not None:
                _at_most(f.name, value, meta["high"])
        if not 4 <= self.image_size <= 1024:
            raise ValueError(f"image_size {self.image_size} is out of range; choose between 4 and 1024 pixels.")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise ValueError(f"lr must be a positive number, got {self.lr}; try 1e-3 for adam or 0.01 for sgd.")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be zero or positive, got {self.weight_decay}.")
        if not 0.0 < self.val_split < 1.0:
            raise ValueError(f"val_split must be between 0 and 1 (exclusive), got {self.val_split}; try 0.2.")
        self.augmentation()  # validates rotation and color_jitter
        self._check_model()

    def _check_model(self) -> None:
        """A known name or FILE.py:build; weights only for torchvision models; head mode only with weights."""
        if self.model not in MODELS and not is_model_file(self.model):
            raise ValueError(
                f"Unknown model {self.model!r}; list them with `python -m lib models`, or give FILE.py:build."
            )
        if (self.pretrained or self.weights) and self.model not in TORCHVISION_MODELS:
            raise ValueError(
                f"Pretrained weights exist only for torchvision models, not {self.model}; train from scratch."
            )
        if self.finetune == "head" and not (self.pretrained or self.weights):
            raise ValueError("Head-only training needs pretrained weights; add --pretrained or use --finetune full.")
        if self.normalization == "weights" and not (self.pretrained or self.weights):
            raise ValueError("Normalization 'weights' needs pretrained weights; choose dataset, imagenet or none.")
        if self.resize == "weights" and not (self.pretrained or self.weights):
            raise ValueError("Resize 'weights' needs pretrained weights; choose square.")
        if not 0 <= self.backbone_lr_scale < float("inf"):
            raise ValueError(f"backbone_lr_scale must be zero or positive, got {self.backbone_lr_scale}; try 0.1.")

    @property
    def weights_name(self) -> str:
        """The weights the run starts from: `weights`, DEFAULT when only `pretrained`, or "" (scratch)."""
        return self.weights or ("DEFAULT" if self.pretrained else "")

    def resizing(self) -> Resizing:
        """How each image becomes image_size x image_size: squashed, or the weights' resize (scaled by
        image_size / crop_size, so at the weights' own crop size it is theirs) and centre crop.

        Raises:
            ValueError: for resize "weights" before the weights' sizes are recorded (with_weights_preprocessing).
        """
        if self.resize == "square":
            return Resizing(self.image_size)
        if self.resize_size is None or self.crop_size is None:
            raise ValueError(
                "This config has resize 'weights' without the weights' sizes; pass it through "
                "lib.training.models.with_weights_preprocessing first."
            )
        short = max(self.image_size, round(self.resize_size * self.image_size / self.crop_size))
        return Resizing(self.image_size, short, self.interpolation)

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


PAGE_FIELDS = tuple(f.name for f in fields(TrainConfig) if f.metadata["page"])  # the Train page's inputs
_CLI_FIELDS = {f.name: f for f in fields(TrainConfig) if f.metadata["cli"]}
_TYPES = {"str": str, "int": int, "float": float, "int | None": int}


def add_config_options(parser: argparse.ArgumentParser, *, exclude: tuple[str, ...] = ()) -> None:
    """One option per TrainConfig field (`--batch-size` for batch_size), each help ending in its default;
    the augmentation fields, and the `--augment` shorthand, in a group of their own."""
    group = parser.add_argument_group(AUGMENTATION_GROUP)
    for f in fields(TrainConfig):
        meta = f.metadata
        if not meta["cli"] or f.name in exclude:
            continue
        target = group if meta.get("group") == "augment" else parser
        flag, help = "--" + f.name.replace("_", "-"), f"{meta['help']} (default: {_default_text(f)})"
        if f.type == "bool":
            target.add_argument(flag, action="store_true", help=help)
            continue
        options = {k: meta[k] for k in ("choices", "metavar") if k in meta}
        default = None if "weights_default" in meta else f.default  # None: filled by fill_weights_preprocessing
        target.add_argument(flag, type=_TYPES[f.type], default=default, help=help, **options)
    group.add_argument("--augment", action="store_true", help="shorthand for --random-crop --hflip (default: off)")


def config_from_args(args: argparse.Namespace, world_size: int = 1) -> TrainConfig:
    """The TrainConfig the options of `add_config_options` describe (an excluded field keeps its default).

    Raises:
        ValueError: one sentence for a bad value.
    """
    values = {k: f.default if getattr(args, k, None) is None else getattr(args, k) for k, f in _CLI_FIELDS.items()}
    augment = getattr(args, "augment", False)
    values.update(random_crop=values["random_crop"] or augment, hflip=values["hflip"] or augment)
    return TrainConfig(**values, world_size=world_size)


def _default_text(f) -> str:
    for key in ("weights_default", "default_text"):
        if key in f.metadata:
            return f.metadata[key]
    if isinstance(f.default, bool):
        return "on" if f.default else "off"
    return f"{f.default:g}" if isinstance(f.default, float) else str(f.default)


def check_limits(config: TrainConfig, settings: Settings) -> None:
    """Raises ValueError when config asks for more than this server allows (deployed mode is stricter)."""
    if settings.deployed and is_model_file(config.model):
        raise ValueError("This server accepts no model files; choose a model by name.")
    if config.epochs > settings.max_epochs:
        raise ValueError(f"This server trains at most {settings.max_epochs} epochs; lower epochs.")
    if config.image_size > settings.max_image_size:
        raise ValueError(f"This server trains at most {settings.max_image_size} px images; lower the image size.")


def stored_config(d: object, settings: Settings | None) -> TrainConfig:
    """A config read back from a file or the store (an import, a checkpoint, a run's row), held to Start's
    image-size limit: a stored run may not ask Evaluate, Explain or an embedding for bigger images than a new
    run could. Its epochs are what it did (a continued run's add up), so only their type and range count.
    settings None checks types and ranges only.

    Raises:
        ValueError: one sentence for a config that is not a dict, has a value of the wrong type or out of
            range, or is over this server's limits.
    """
    if not isinstance(d, dict):
        raise ValueError("The run's config is not a JSON object.")
    try:
        config = TrainConfig.from_dict(d)
    except TypeError:  # a string where a number belongs ("lots" epochs): comparisons raise TypeError
        bad = next((k for k, v in d.items() if k in _NUMERIC and not _is_number(v)), "a value")
        raise ValueError(f"The run's config has {bad!r} of the wrong type.") from None
    if settings is not None and config.image_size > settings.max_image_size:
        raise ValueError(
            f"The run's images are {config.image_size} px and this server reads at most {settings.max_image_size} px."
        )
    return config


def accept_imported_config(d: object, settings: Settings | None) -> None:
    """Check a config from a bundle: held to stored_config's rules when it names one of the project's
    models (a run Evaluate, Explain or Train more may rebuild). Any other JSON object is a logged run's
    own settings, shown and compared only: load_model refuses to rebuild it.

    Raises:
        ValueError: as stored_config.
    """
    if isinstance(d, dict) and d.get("model") not in MODELS:
        return
    stored_config(d, settings)


_NUMERIC = tuple(f.name for f in fields(TrainConfig) if f.type in ("int", "float", "int | None"))


def _is_number(v: object) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


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
