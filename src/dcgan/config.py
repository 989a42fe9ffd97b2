"""The training configuration: one typed dataclass, written to the run directory as config.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .data import DEFAULT_DATASET
from .errors import UserError

# Fields that fix the shape of the networks or the data they learn; a resumed
# run must agree with its checkpoint on these.
ARCHITECTURE_FIELDS = (
    "data",
    "image_size",
    "channels",
    "latent_dim",
    "g_width",
    "d_width",
    "conditional",
    "class_names",
)


def default_widths(image_size: int, data: str | None = None) -> tuple[int, int]:
    """The generator's and the discriminator's base feature maps when --g-width/--d-width are not given.

    Chosen per image size for equal wall-clock time (docs/quality.md, docs/colour.md): where the
    image budget is the constraint, a narrower network that sees more images learns more. At 28x28
    a D of 16 learns as much per image as 64 at about twice the images per second, on digits; on other
    28x28 data (CIFAR-10 in grey) a D of 16 sat at chance and taught G nothing, so only the digit
    datasets get it. At 32x32 widths 32 for both players beat 64 on CIFAR-10 (and a D of 16 sat at
    chance there too); at 64x64 G 32 with D 16 beat 64/64 on faces, for the same minutes. Other sizes
    keep the classic 64 (unmeasured).
    """
    g_width, d_width = _DEFAULT_WIDTHS.get(image_size, (64, 64))
    if image_size == 28 and data not in DIGIT_DATASETS:
        d_width = 32
    return g_width, d_width


_DEFAULT_WIDTHS = {28: (64, 16), 32: (32, 32), 64: (32, 16)}
DIGIT_DATASETS = ("mnist-5k", "mnist")  # where the 28x28 D of 16 was measured, and held


def describe_default_width(player: int) -> str:
    """The default of one player's width (0: G, 1: D) for --help: per size, then everywhere else."""
    sizes = ", ".join(
        f"{widths[player]} at {size}x{size}" + (" for digits, 32 for other data" if (size, player) == (28, 1) else "")
        for size, widths in _DEFAULT_WIDTHS.items()
    )
    return f"default: {sizes}, 64 otherwise"


@dataclass(frozen=True)  # a run's config is decided once (options.resolve) and never changed
class TrainConfig:
    # data
    data: str = DEFAULT_DATASET  # mnist-5k ships with the package: real digits, no network
    data_root: str | None = None
    image_size: int = 28
    channels: int = 1
    max_images: int | None = None  # train on the first N images only
    in_memory: bool | None = None  # None: decode into memory when it fits (see data.py)
    download: bool = False  # fetch a torchvision dataset that is not on disk; never implicitly
    num_workers: int = 2  # DataLoader workers, streaming path only
    # small datasets (a few hundred to a few thousand images): augmentations, so that D does not memorise them
    augment: str = ""  # DiffAugment policy D sees every image through, e.g. "color,translation,cutout"; "": off
    mirror: bool = False  # random x-flips of the reals; only where a mirrored image is as real (not digits)
    # model
    latent_dim: int = 100
    g_width: int | None = None  # base feature maps; None: see default_widths (the classic model uses 64)
    d_width: int | None = None  # None: see default_widths
    conditional: bool = False  # class-conditional G(z, y) and D(x, y); needs labelled data
    class_names: tuple[str, ...] = ()  # a conditional run's classes, from its data (options.resolve)
    # fine-tuning: a new run starts from this checkpoint's G, D and EMA weights (fresh optimizers, step 0);
    # options.resolve records the checkpoint file it resolved to, and the architecture fields default to its own
    init_from: str | None = None
    # optimisation, chosen by measurement (docs/quality.md); RECIPES["paper"] keeps the paper's values
    # per process; under torchrun the global batch is this x world size. 64, not 128: for the same
    # 192k full-MNIST images, evaluator FID 5.3 against 7.0, at 0.89x the images/s
    batch_size: int = 64
    # 4e-4 for both players, not the paper's 2e-4: FID 4.22 against 5.23 for the same 200k images
    lr_g: float = 4e-4
    lr_d: float = 4e-4
    beta1: float = 0.5
    beta2: float = 0.999
    real_label: float = 1.0  # below 1: one-sided label smoothing
    # R1 penalty on real images, gamma/2 * E|grad D(x)|^2 (0: off); 0.1 on top of lr 4e-4: FID 3.86 against 4.22
    r1_gamma: float = 0.1
    r1_every_steps: int = 16  # lazy R1: every N-th D step, weighted by N (StyleGAN2's schedule)
    lr_schedule: str = "constant"  # constant, linear or cosine decay to 0 at the end of the run (steps or minutes)
    lr_warmup_steps: int = 0  # linear warm-up from 0 before the schedule
    ema_decay: float = 0.999  # EMA of G used for samples; 0 samples the raw G
    # length: steps wins over epochs when both are given
    # 60 epochs of the built-in 5,000 digits: 1 min 27 s on the 2-core machine (bf16), FID 3.53 against full MNIST
    epochs: int | None = 60
    steps: int | None = None
    minutes: float | None = None  # wall-clock training budget; ends the run first when it runs out
    # runtime
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # bf16 autocast on CUDA and on CPUs with native bf16 (AVX-512 BF16, AMX); else fp32
    compile: bool = False
    compile_mode: str = "default"  # torch.compile mode; reduce-overhead adds CUDA graphs
    channels_last: bool = True  # measured faster on CPU too: 1.12x at 28x28, 1.09x at 64x64 (docs/benchmarks.md)
    sync_bn: bool = False  # SyncBatchNorm under torchrun
    # logging and artifacts
    run_dir: str | None = None
    log_every_steps: int = 50
    sample_every_steps: int = 500
    checkpoint_every_steps: int = 500
    keep_every_steps: int = 0  # also keep step_XXXXXXX.pt every N steps (0: only latest)
    keep_every_minutes: float = 0.0  # also keep minute_M.pt every M minutes of training time (0: off)
    num_samples: int = 64  # images in each sample grid (fixed noise)
    eval_every_steps: int = 0  # evaluate FID during training (0: off); keeps checkpoints/best.pt
    eval_num_images: int = 10_000
    eval_extractor: str | None = None  # None: the digit evaluator for grayscale, the CIFAR-10 one for RGB
    tensorboard: bool = False
    quiet: bool = False
    dry_run: bool = False  # one step, to check that everything is wired
    recipe: str = "default"  # the preset the other fields started from (RECIPES); a record
    extra: dict = field(default_factory=dict)  # free-form notes written to config.json

    @classmethod
    def for_recipe(cls, recipe: str = "default", **given) -> TrainConfig:
        """The recipe's values, overridden by ``given`` (the options a user typed)."""
        if recipe not in RECIPES:
            raise UserError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
        return cls(**{**RECIPES[recipe], **given, "recipe": recipe})

    def resolved(self) -> TrainConfig:
        """This config with the size-dependent defaults filled in (what a run records and uses)."""
        g_width, d_width = default_widths(self.image_size, self.data)
        return dataclasses.replace(
            self,
            g_width=g_width if self.g_width is None else self.g_width,
            d_width=d_width if self.d_width is None else self.d_width,
        )

    @property
    def num_classes(self) -> int:
        """The networks' class count: 0 for an unconditional run."""
        return len(self.class_names) if self.conditional else 0

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["class_names"] = list(self.class_names)  # as config.json and checkpoints hold it
        return values

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if "class_names" in values:  # a list in config.json and checkpoints
            values["class_names"] = tuple(values["class_names"])
        return cls(**values)


# Presets: "default" is TrainConfig's own values; "paper" is Radford et al.'s recipe (Adam 2e-4 for
# both players, betas (0.5, 0.999), batch 128, widths 64), with nothing added: no EMA, no R1,
# a constant learning rate, fp32.
RECIPES: dict[str, dict] = {
    "default": {},
    "paper": dict(
        batch_size=128,
        g_width=64,
        d_width=64,
        lr_g=2e-4,
        lr_d=2e-4,
        beta1=0.5,
        beta2=0.999,
        ema_decay=0.0,
        real_label=1.0,
        r1_gamma=0.0,
        lr_schedule="constant",
        lr_warmup_steps=0,
        precision="fp32",
    ),
}
