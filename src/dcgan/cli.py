"""The command line: the only place that parses arguments.

``dcgan train | sample | eval | evaluator train | bench | quality``, after training
``interpolate | arithmetic | animate | export | push | nearest | stats``, and ``pretrained``. ``main(argv)`` returns
the exit code so the CLI can be tested in-process. A user mistake prints one
line and exits 2; a stop by signal exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from . import argtypes as at
from .config import TrainConfig, describe_default_width
from .errors import UserError
from .models import Generator
from .outputs import Terminated, terminate_cleanly

_DEFAULTS = TrainConfig()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not the usage block
        raise UserError(f"{self.prog}: {message} (see --help)")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# (field, type, help); defaults come from TrainConfig so --help and the code cannot disagree
_TRAIN_OPTIONS = [
    (
        "recipe",
        str,
        "preset the other options start from: default (measured, docs/quality.md) or paper "
        "(Radford et al.: Adam 2e-4, batch 128, widths 64, no EMA)",
    ),
    ("data", str, "dataset: mnist-5k (built in), mnist, fashion-mnist, cifar10, celeba, lsun, folder, fake"),
    ("data_root", str, "where the dataset lives (a folder of images for --data folder; MNIST IDX files)"),
    (
        "image_size",
        int,
        "image side in pixels: 28, 32, 64, 128 or 256 (default: the data's own: 28 for digits, "
        "32 for cifar10, 64 for folders, celeba and lsun)",
    ),
    ("channels", int, "1 (grayscale) or 3 (RGB); images are converted (default: the data's own)"),
    ("max_images", int, "use only the first N images"),
    ("num_workers", int, "DataLoader workers when the data is streamed instead of held in memory"),
    (
        "augment",
        str,
        "DiffAugment for small datasets: D sees real and fake images through these random, "
        "differentiable augmentations, a comma-separated list of color, translation and cutout "
        "(default: off)",
    ),
    ("latent_dim", int, "size of the noise vector z"),
    ("g_width", int, f"generator base feature maps ({describe_default_width(0)})"),
    ("d_width", int, f"discriminator base feature maps ({describe_default_width(1)})"),
    (
        "init_from",
        str,
        "start a new run from the G, D and EMA weights of a run directory or checkpoint "
        "(fresh optimizers, step 0, any data); --image-size, --channels, --latent-dim and "
        "the widths default to its own and must match it (default: random weights)",
    ),
    ("batch_size", int, "images per step per process (under torchrun the global batch is this x processes)"),
    ("lr_g", float, "generator Adam learning rate"),
    ("lr_d", float, "discriminator Adam learning rate"),
    ("beta1", float, "Adam beta1"),
    ("beta2", float, "Adam beta2"),
    ("real_label", float, "target for real images; below 1 is one-sided label smoothing"),
    ("r1_gamma", float, "R1 penalty weight on real images (0: off)"),
    ("r1_every_steps", int, "apply the R1 penalty every N steps, weighted by N (lazy regularisation)"),
    ("lr_schedule", str, "constant, linear or cosine: decay both learning rates to 0 at the end of the run"),
    ("lr_warmup_steps", int, "linear learning-rate warm-up steps before the schedule"),
    ("ema_decay", float, "decay of the generator's moving average used for samples (0: off)"),
    ("epochs", int, "training length in epochs"),
    ("steps", int, "training length in steps (overrides --epochs)"),
    ("minutes", float, "wall-clock training budget in minutes; without --steps or --epochs it alone sets the length"),
    ("seed", int, "random seed"),
    (
        "device",
        str,
        "auto (CUDA, then the accelerator torch reports: MPS or XPU, then the CPU), cpu, cuda, cuda:N, mps or xpu",
    ),
    ("precision", str, "auto (bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere), fp32, bf16 or fp16 (CUDA)"),
    ("run_dir", str, "output folder (default: runs/DATA-SIZEpx-TIMESTAMP); must not exist yet"),
    ("log_every_steps", int, "write metrics.jsonl and the progress numbers every N steps"),
    ("sample_every_steps", int, "write a sample grid every N steps"),
    ("checkpoint_every_steps", int, "write checkpoints/latest.pt every N steps"),
    ("keep_every_steps", int, "also keep checkpoints/step_N.pt every N steps (0: only latest)"),
    ("keep_every_minutes", float, "also keep checkpoints/minute_M.pt every M minutes of training time (0: off)"),
    ("num_samples", int, "images in each sample grid"),
    ("eval_every_steps", int, "evaluate FID every N steps during training and keep checkpoints/best.pt (0: off)"),
    ("eval_num_images", int, "generated images per evaluation during training"),
    ("eval_extractor", str, "digits, cifar10 or inception (default: digits for grayscale, cifar10 for RGB)"),
    (
        "compile_mode",
        str,
        "torch.compile mode with --compile: default, reduce-overhead (CUDA graphs), "
        "max-autotune or max-autotune-no-cudagraphs",
    ),
]
_TRAIN_SWITCHES = [
    (
        "conditional",
        "class-conditional G(z, y) and D(x, y) on labelled data: mnist-5k, mnist, fashion-mnist, "
        "cifar10, or --data folder with one sub-folder per class",
    ),
    ("compile", "torch.compile G and D"),
    ("channels_last", "channels_last memory format (default: on)"),
    ("in_memory", "hold the decoded dataset in memory (default: when it fits)"),
    ("mirror", "random left-right flips of the real images: the dataset doubled by its mirror images"),
    ("download", "download mnist, fashion-mnist, cifar10 or celeba into --data-root when they are not there"),
    ("sync_bn", "synchronised batch norm across torchrun processes"),
    ("tensorboard", "also log to RUN_DIR/tensorboard"),
    ("quiet", "no progress bar; one JSON line per log step"),
    ("dry_run", "run a single step to check the set-up"),
]


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a DCGAN", description="Train a DCGAN and write a run directory.")
    for name, typ, text in _TRAIN_OPTIONS:
        default = getattr(_DEFAULTS, name)
        shown = text if "(default:" in text else f"{text} (default: {default})"
        p.add_argument(_flag(name), type=at.TRAIN_TYPES.get(name, typ), default=argparse.SUPPRESS, help=shown)
    for name, text in _TRAIN_SWITCHES:
        p.add_argument(_flag(name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
    p.add_argument("--resume", metavar="RUN_DIR_OR_CHECKPOINT", help="continue a run exactly where it stopped")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="options from a .toml, .yaml or .json file with TrainConfig's "
        "field names, or a run's config.json to repeat it; options given here override the file",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as JSON (a --config file) and train nothing",
    )


def _generator_args(p, device: str = "auto", device_help: str | None = None) -> None:
    """--device and --no-ema: every command that loads a trained generator takes both."""
    p.add_argument("--device", default=device, help=device_help)
    p.add_argument("--no-ema", action="store_true", help="use the raw generator, not its moving average")


def _pretrained_arg(p) -> None:
    p.add_argument(
        "--pretrained",
        metavar="NAME_OR_PATH",
        help="instead of a checkpoint: a generator shipped with dcgan (dcgan pretrained lists them), "
        "an export, a --hub-folder or a Hugging Face Hub id user/repo (needs dcgan[hub])",
    )


def _source(args: argparse.Namespace) -> str:
    """The checkpoint or --pretrained generator a command reads: exactly one of them."""
    if (args.checkpoint is None) == (getattr(args, "pretrained", None) is None):
        raise UserError(f"dcgan {args.command}: give a checkpoint (or run directory) or --pretrained NAME, one of them")
    return args.checkpoint if args.checkpoint is not None else args.pretrained


def _load_G(args: argparse.Namespace, device):
    """The generator of a checkpoint, or of --pretrained (a shipped name, an export, a Hub folder or id)."""
    source = _source(args)
    if args.checkpoint is not None:
        return Generator.from_checkpoint(source, device, ema=not args.no_ema)
    return Generator.from_pretrained(source, device=device)


def _class_arg(p, text: str = "draw this class of a class-conditional run: a name or an index") -> None:
    p.add_argument("--class", dest="class_name", metavar="NAME_OR_INDEX", help=text)


def _extractor_args(p) -> None:
    """The feature network of eval, nearest and stats, and where its weights are."""
    p.add_argument(
        "--extractor",
        choices=("digits", "cifar10", "inception"),
        help="feature network (default: the offline digits one for grayscale data, the offline "
        "cifar10 one for colour; inception, the papers' standard, downloads its weights)",
    )
    p.add_argument("--inception-weights", metavar="PATH", help="FID Inception-v3 weights (default: torch hub cache)")
    p.add_argument(
        "--evaluator-weights",
        metavar="PATH",
        help="evaluator weights from 'dcgan evaluator train' (default: the shipped digits or cifar10 one)",
    )


def _add_sample(sub) -> None:
    p = sub.add_parser("sample", help="generate images from a checkpoint or a pretrained generator")
    p.add_argument("checkpoint", nargs="?", help="a checkpoint file or a run directory")
    _pretrained_arg(p)
    p.add_argument("-n", "--num-images", type=at.at_most(at.MAX_IMAGES), default=64)
    p.add_argument("-o", "--out", default="samples.png", help="a .png grid, a .npz, or a folder (default: samples.png)")
    p.add_argument("--format", choices=("grid", "folder", "npz"), help="default: from --out")
    p.add_argument("--seed", type=at.SEED, default=0)
    _generator_args(p)
    _class_arg(
        p,
        "only this class of a class-conditional run, a name or an index (default: a grid has one "
        "row per class; other formats cycle through the classes and an .npz stores them as labels)",
    )
    p.add_argument(
        "--seeds",
        help="one image per seed, e.g. 0-63 or 3,10-20: image k comes from seed k alone "
        "(a labelled grid, one seedNNNNNN.png per seed in a folder, or an .npz with the seeds); "
        "replaces -n and --seed",
    )


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or not all(0 <= v < 2**32 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers in [0, 2**32), got {text!r}")
    return values


def _add_bench(sub) -> None:
    from .benchmarks.speed import BenchConfig

    d, unset = BenchConfig(), argparse.SUPPRESS  # unset: BenchConfig (or --quick) decides
    p = sub.add_parser(
        "bench",
        help="time training and sampling against the classic DCGAN loop",
        description="Time the project's training step and sampling against the classic pytorch/examples "
        "loop, one subprocess per variant; print the ratios, FLOPs and the fraction of the matrix-product peak.",
    )
    p.add_argument(
        "--sizes", type=_int_list, default=unset, help="image sizes; 28 is grayscale, the others RGB (default: 28,64)"
    )
    p.add_argument("--batch-sizes", type=_int_list, default=unset, help="(default: 64,128,512)")
    p.add_argument("--device", default=unset, help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--warmup-steps", type=at.at_most(2**31 - 1), default=unset, help=f"(default: {d.warmup_steps})")
    p.add_argument(
        "--steps",
        type=at.at_most(2**31 - 1),
        default=unset,
        help=f"timed steps per repetition, at least (default: {d.steps})",
    )
    p.add_argument(
        "--min-repeat-s",
        type=at.FINITE,
        default=unset,
        help=f"add steps until a repetition lasts this long (default: {d.min_repeat_s})",
    )
    p.add_argument(
        "--repeats",
        type=at.at_most(2**31 - 1),
        default=unset,
        help=f"repetitions; the median is reported (default: {d.repeats})",
    )
    p.add_argument(
        "--rounds",
        type=at.at_most(2**31 - 1),
        default=unset,
        help=f"run every variant this many times, alternating the order; the median is reported (default: {d.rounds})",
    )
    p.add_argument(
        "--threads",
        type=at.at_most(2**31 - 1),
        default=unset,
        help="intra-op threads per variant (default: torch's, the cores)",
    )
    p.add_argument(
        "--ablation",
        action=argparse.BooleanOptionalAction,
        default=unset,
        help="also time the project path with each fast-path measure switched (default: on)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=unset,
        help="include the torch.compile variants in the CUDA ablation (default: on; off with --quick)",
    )
    p.add_argument(
        "--roofline",
        action=argparse.BooleanOptionalAction,
        default=unset,
        help="time every convolution of G and D alone: the per-layer limit of the step (default: on)",
    )
    p.add_argument(
        "--width", type=at.at_most(at.MAX_WIDTH), default=unset, help=f"G and D base feature maps (default: {d.width})"
    )
    p.add_argument(
        "--max-images", type=at.at_most(2**31 - 1), default=unset, help="use the first N built-in digits (default: all)"
    )
    p.add_argument(
        "--peak-size",
        type=at.at_most(65_536),
        default=unset,
        help="matrix side for the peak (default: 2048 on CPU, 8192 on CUDA)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        default=unset,
        help="run the variants in this process (less isolated; implied by --quick)",
    )
    p.add_argument("--json", dest="json_path", metavar="PATH", default=unset, help="also write the results as JSON")
    p.add_argument("--quick", action="store_true", help="tiny networks and runs: checks the wiring in seconds")


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="measure sample quality: FID, KID, IS, class coverage",
        description="Generate images from a checkpoint and compare them with the real data.",
    )
    p.add_argument(
        "checkpoint",
        nargs="?",
        help="a checkpoint file or a run directory, or a folder or .npz of images (then --data names the real images)",
    )
    _pretrained_arg(p)
    p.add_argument(
        "-n", "--num-images", type=at.at_most(at.MAX_IMAGES), default=10_000, help="images to generate (default: 10000)"
    )
    _extractor_args(p)
    p.add_argument("--data", help="real dataset (default: the checkpoint's)")
    p.add_argument("--data-root", help="where the real dataset lives (default: the checkpoint's)")
    p.add_argument("--split", choices=("train", "test"), default="train", help="real split (default: train)")
    p.add_argument("--download", action="store_true", help="download the real dataset when it is not on disk")
    p.add_argument("--cache-dir", help="real-data statistics cache (default: ~/.cache/dcgan/stats)")
    p.add_argument(
        "--batch-size", type=at.count(1, at.MAX_BATCH), default=250, help="images per generator and extractor batch"
    )
    p.add_argument("--seed", type=at.SEED, default=0)
    _generator_args(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of the table")
    p.add_argument(
        "--k", type=at.at_most(1000), default=3, help="neighbours for precision and recall (0: skip them) (default: 3)"
    )
    p.add_argument(
        "--ref",
        metavar="STATS_NPZ",
        help="only FID, against mu and sigma from 'dcgan stats' or pytorch-fid (same extractor)",
    )


def _add_evaluator(sub) -> None:
    p = sub.add_parser("evaluator", help="the offline digit evaluator used by 'dcgan eval'")
    evaluator_sub = p.add_subparsers(dest="evaluator_command", required=True, parser_class=_Parser)
    t = evaluator_sub.add_parser(
        "train",
        help="train the digit evaluator",
        description="Train the digit classifier on a training split and report its test accuracy.",
    )
    t.add_argument(
        "--data",
        choices=("mnist", "fashion-mnist", "cifar10"),
        default="mnist",
        help="mnist and fashion-mnist train the 28x28 digit network, cifar10 the 32x32 colour one",
    )
    t.add_argument(
        "--data-root",
        help="where the IDX files, or CIFAR-10's batches or class folders, are (default: ~/.cache/dcgan/data)",
    )
    t.add_argument("--download", action="store_true", help="download the dataset when it is not on disk")
    t.add_argument("--out", required=True, help="where to write the weights (.pt)")
    t.add_argument("--epochs", type=at.count(1, 1000), default=3)
    t.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="bf16 autocast where the device has it natively (default: auto)",
    )
    t.add_argument("--batch-size", type=at.count(1, at.MAX_BATCH), default=128)
    t.add_argument("--seed", type=at.SEED, default=0)
    t.add_argument("--device", default="auto")


def _add_quality(sub) -> None:
    from .benchmarks.quality import DATASETS, RECIPES, QualityConfig

    d, unset = QualityConfig(), argparse.SUPPRESS  # unset: QualityConfig (or --quick) decides
    p = sub.add_parser(
        "quality",
        help="sample quality of the default recipe against the classic ones, for equal time",
        description="Train the project's default recipe, the classic pytorch/examples loop, the paper's recipe "
        "and, for digits, a newcomer's 28x28 loop for the same wall-clock budget, one after another or side "
        "by side (--jobs), then score each with the offline evaluator (digits for grayscale, cifar10 for "
        "colour); write results.json, results.md and sample grids.",
    )
    p.add_argument("--data", default=unset, choices=DATASETS, help=f"(default: {d.data})")
    p.add_argument("--data-root", default=unset, help="where the data's files are")
    p.add_argument(
        "--image-size",
        type=int,
        default=unset,
        help="(default: the data's own: 28 for digits, 32 for cifar10, 64 for folders)",
    )
    p.add_argument("--channels", type=int, default=unset, help="1 or 3 (default: the data's own)")
    p.add_argument(
        "--extractor",
        default=unset,
        choices=("digits", "cifar10", "inception"),
        help="feature network for FID (default: digits for grayscale, cifar10 for colour)",
    )
    p.add_argument(
        "--budget-min",
        type=at.POSITIVE,
        default=unset,
        help=f"training minutes per recipe and seed (default: {d.budget_s / 60:g})",
    )
    p.add_argument("--seeds", type=_int_list, default=unset, help="comma-separated seeds (default: 0)")
    p.add_argument(
        "--recipes",
        type=lambda text: tuple(x.strip() for x in text.split(",") if x.strip()),
        default=unset,
        help=f"comma-separated, among {','.join(RECIPES)} (default: default,classic,newcomer,paper "
        "for digits, default,classic,paper for colour)",
    )
    p.add_argument(
        "--num-images",
        type=at.at_most(at.MAX_IMAGES),
        default=unset,
        help=f"generated images per evaluation (default: {d.num_images})",
    )
    p.add_argument("--out", default=unset, help="output folder, new or empty (default: runs/quality-TIMESTAMP)")
    p.add_argument(
        "--width",
        type=at.at_most(at.MAX_WIDTH),
        default=unset,
        help="G and D base feature maps of every recipe (default: each recipe's own: the "
        "trainer's by image size, 64 for the baselines)",
    )
    p.add_argument(
        "--max-images", type=at.at_most(2**31 - 1), default=unset, help="train on the first N images (default: all)"
    )
    p.add_argument(
        "--threads",
        type=at.at_most(2**31 - 1),
        default=unset,
        help="intra-op threads per training process (default: torch's, the cores)",
    )
    p.add_argument(
        "--jobs",
        type=at.at_most(2**31 - 1),
        default=unset,
        help="trainings side by side, each on its own clock; with --threads 1, one per core (default: 1)",
    )
    p.add_argument(
        "--snapshot-every-min",
        type=at.FINITE,
        default=unset,
        help="also score the trainer recipes' checkpoints every M minutes of training (default: off)",
    )
    p.add_argument("--device", default=unset, help=f"auto, cpu, cuda or cuda:N (default: {d.device})")
    p.add_argument("--cache-dir", default=unset, help="real-data statistics cache (default: ~/.cache/dcgan/stats)")
    p.add_argument("--quick", action="store_true", help="tiny networks, seconds per recipe: checks the wiring")


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="a local web page to explore a trained generator (needs dcgan[demo])",
        description="Serve a page with a grid of samples by seed, latent sliders, slerp walks as GIFs and "
        "downloads of the image and its z. Binds to 127.0.0.1 unless --host is given.",
    )
    p.add_argument("checkpoint", nargs="?", help="a run directory (its checkpoints/latest.pt) or a checkpoint file")
    _pretrained_arg(p)
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 is every network)",
    )
    p.add_argument("--port", type=int, default=7860, help="TCP port (default: 7860)")
    _generator_args(p, "cpu", "cpu, auto, cuda, cuda:N or mps (default: cpu: one image takes milliseconds there)")


def _add_interpolate(sub) -> None:
    p = sub.add_parser(
        "interpolate",
        help="a walk through latent space between seeds",
        description="Walk between the seeds' latent vectors (or along one direction) and write a PNG strip grid, "
        "a GIF (Pillow) or an MP4 (imageio-ffmpeg).",
    )
    p.add_argument("checkpoint", help="a checkpoint file or a run directory")
    p.add_argument("--seeds", required=True, help="the seeds to walk through, e.g. 3,7,12")
    p.add_argument(
        "--frames", type=at.at_most(at.MAX_FRAMES), default=16, help="frames per leg between two seeds (default: 16)"
    )
    p.add_argument(
        "--mode",
        choices=("slerp", "lerp"),
        default="slerp",
        help="path between two seeds (default: slerp, on the sphere where the training noise lives)",
    )
    p.add_argument("--loop", action="store_true", help="close the path back to the first seed")
    p.add_argument(
        "--direction",
        type=at.SEED,
        metavar="SEED",
        help="instead, move each seed's vector along this seed's noise direction",
    )
    p.add_argument(
        "--distance",
        type=at.number(-1e6, 1e6),
        default=5.0,
        help="with --direction: how far to move each way, in latent units (default: 5.0)",
    )
    p.add_argument("--fps", type=at.FPS, default=12.0, help="frames per second of a GIF or MP4 (default: 12)")
    p.add_argument("-o", "--out", default="walk.png", help="a .png strip grid, .gif or .mp4 (default: walk.png)")
    _generator_args(p)
    _class_arg(p)


def _add_arithmetic(sub) -> None:
    p = sub.add_parser(
        "arithmetic",
        help="vector arithmetic on seed vectors, as in the DCGAN paper",
        description="Add and subtract the latent vectors of seeds, or the mean vectors of [seed groups], and write "
        "the operands and the result as a labelled grid.",
    )
    p.add_argument("checkpoint", help="a checkpoint file or a run directory")
    p.add_argument("expression", help='e.g. "12 - 40 + 7" or "[1,4,9] - [2,5,8] + [3,6,10]"')
    p.add_argument("-o", "--out", default="arithmetic.png", help="a .png (default: arithmetic.png)")
    p.add_argument("--scale", type=at.at_most(64), default=2, help="pixels per image pixel in the grid (default: 2)")
    _generator_args(p)
    _class_arg(p)


def _add_animate(sub) -> None:
    p = sub.add_parser(
        "animate",
        help="rebuild RUN/samples/progress.gif from the run's sample grids",
        description="Make a GIF of a run's fixed-noise sample grids (samples/step_*.png) in step order.",
    )
    p.add_argument("run_dir", help="a run directory")
    p.add_argument("-o", "--out", help="a .gif or .mp4 (default: RUN/samples/progress.gif)")
    p.add_argument("--fps", type=at.FPS, default=10.0, help="(default: 10)")
    p.add_argument(
        "--max-frames",
        type=at.at_most(at.MAX_FRAMES),
        default=100,
        help="at most this many grids, evenly spaced (default: 100)",
    )


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export the generator: torchscript, onnx or safetensors",
        description="Export the EMA generator (eval mode, batch-norm statistics re-estimated) with its config. "
        "Load it back with Generator.from_pretrained(PATH) (safetensors, torchscript) or onnxruntime.",
    )
    p.add_argument("checkpoint", help="a checkpoint file or a run directory")
    p.add_argument(
        "--format",
        choices=("torchscript", "onnx", "safetensors"),
        help="default: from the suffix of -o (.pt/.ts, .onnx, .safetensors)",
    )
    p.add_argument("-o", "--out", help="the file to write")
    p.add_argument(
        "--hub-folder",
        metavar="DIR",
        help="instead of -o: write the folder 'dcgan push' uploads to the "
        "Hugging Face Hub (model.safetensors, config.json, README.md model card, grid.png); DIR must be "
        "new or empty",
    )
    _hub_args(p)
    p.add_argument("--no-ema", action="store_true", help="export the raw generator, not its moving average")


def _hub_args(p) -> None:
    p.add_argument(
        "--eval-json",
        metavar="FILE",
        help="put the figures of 'dcgan eval RUN --json > FILE' on the model card (default: training figures only)",
    )
    p.add_argument("--license", default="mit", help="the card's license, a Hub license id (default: mit)")


def _add_push(sub) -> None:
    p = sub.add_parser(
        "push",
        help="upload a run's generator to the Hugging Face Hub (needs dcgan[hub])",
        description="Write what 'dcgan export RUN --hub-folder DIR' writes and upload it to the Hub repository "
        "REPO_ID, creating it when missing. Log in first (hf auth login, or set HF_TOKEN).",
    )
    p.add_argument("checkpoint", help="a checkpoint file or a run directory")
    p.add_argument("repo_id", help="the Hub repository, user/name")
    _hub_args(p)
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--no-ema", action="store_true", help="upload the raw generator, not its moving average")


def _add_pretrained(sub) -> None:
    sub.add_parser(
        "pretrained",
        help="list the pretrained generators that ship with dcgan",
        description="List the generators inside the package, with their data, training and FID; "
        "use one with dcgan sample --pretrained NAME or Generator.from_pretrained(NAME).",
    )


def _add_nearest(sub) -> None:
    p = sub.add_parser(
        "nearest",
        help="memorisation check: samples beside their nearest training images",
        description="Write each sample beside its nearest training images (evaluator features, then pixels) and "
        "compare the samples' nearest-training distances with those of unseen test images.",
    )
    p.add_argument("checkpoint", help="a checkpoint file or a run directory")
    p.add_argument(
        "-n", "--num-images", type=at.at_most(10_000), default=64, help="samples in the picture (default: 64)"
    )
    p.add_argument(
        "-k", type=at.at_most(100), default=3, help="neighbours per sample and space in the picture (default: 3)"
    )
    p.add_argument(
        "--num-compare",
        type=at.at_most(at.MAX_IMAGES),
        default=1000,
        help="samples and test images whose distances are compared (default: 1000)",
    )
    p.add_argument("-o", "--out", default="nearest.png", help="the picture, a .png (default: nearest.png)")
    p.add_argument("--test-data", help="held-out real images (default: the run's dataset, test split)")
    p.add_argument("--test-root", help="where --test-data lives")
    _extractor_args(p)
    _generator_args(p)
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")


def _add_stats(sub) -> None:
    p = sub.add_parser(
        "stats",
        help="reference statistics (mu, sigma) of a dataset or a set of images",
        description="Write the mean and covariance of a set's features to an .npz in pytorch-fid's format "
        "(keys mu, sigma), for 'dcgan eval --ref' and other FID tools.",
    )
    p.add_argument("data", help="a folder or .npz of images, or a dataset name (mnist, mnist-5k, cifar10, ...)")
    p.add_argument("-o", "--out", required=True, help="the .npz to write")
    p.add_argument("--data-root", help="where a named dataset lives")
    p.add_argument("--split", choices=("train", "test"), default="train")
    p.add_argument("--image-size", type=at.count(1, 1024), help="for a named dataset (default: 28)")
    p.add_argument("--channels", type=int, choices=(1, 3), help="for a named dataset (default: 1)")
    _extractor_args(p)
    p.add_argument("--cache-dir", help="real-data features cache (default: ~/.cache/dcgan/stats)")
    p.add_argument("--device", default="auto")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dcgan", description="Deep Convolutional GANs: train, sample, evaluate.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_sample(sub)
    _add_bench(sub)
    _add_eval(sub)
    _add_evaluator(sub)
    _add_quality(sub)
    _add_demo(sub)
    _add_interpolate(sub)
    _add_arithmetic(sub)
    _add_animate(sub)
    _add_export(sub)
    _add_nearest(sub)
    _add_stats(sub)
    _add_push(sub)
    _add_pretrained(sub)
    return parser


def _train(args: argparse.Namespace) -> int:
    import json
    import signal

    from .configfile import read_config_file
    from .options import resolve
    from .runtime import finish_distributed
    from .train import Trainer

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if ("steps" in given or "minutes" in given) and "epochs" not in given:
        given["epochs"] = None  # a length in steps or minutes replaces the default epochs (and a file's)
    if "recipe" in given and args.resume:
        raise UserError("--recipe starts a new run; a resumed run keeps its checkpoint's recipe")
    if args.config is not None:
        if args.resume:
            raise UserError(
                "--config starts a new run; a resumed run takes its config from its checkpoint "
                "(give options on the command line to change them)"
            )
        given = {**read_config_file(args.config), **given}  # the command line overrides the file
    cfg = TrainConfig.for_recipe(given.pop("recipe", "default"), **given)
    resolved = resolve(cfg, resume=args.resume, given=set(given))
    if args.print_config:
        print(json.dumps(resolved.cfg.to_dict(), indent=2))
        return 0
    trainer = Trainer(resolved)
    trainer.run()
    finish_distributed()
    if trainer.stop_reason in ("SIGINT", "SIGTERM"):
        return 128 + signal.Signals[trainer.stop_reason].value  # the shell's convention: 130, 143
    return 0


def _sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .outputs import check_fits_in_memory
    from .runtime import choose_device
    from .sample import (
        check_output,
        chosen_class,
        class_labels,
        class_rows,
        generate,
        generated_batches,
        infer_format,
        one_class,
        output_path,
        write,
    )

    _source(args)
    if args.num_images < 1:
        raise UserError(f"--num-images must be at least 1, got {args.num_images}")
    fmt = infer_format(Path(args.out), args.format)
    out = output_path(Path(args.out), fmt)
    check_output(out, fmt)
    if args.seeds is not None:
        from .explore import seed_images, write_seed_images
        from .latent import parse_seeds

        seeds = parse_seeds(args.seeds)
        G = _load_G(args, choose_device(args.device))
        check_fits_in_memory(G, len(seeds), "--seeds")
        write_seed_images(seed_images(one_class(G, args.class_name, "--seeds"), seeds), seeds, out, fmt)
        print(f"wrote {len(seeds)} images (seeds {args.seeds}) to {out}")
        return 0
    G = _load_G(args, choose_device(args.device))
    label = chosen_class(G, args.class_name)
    if fmt != "folder":  # a folder is written batch by batch; a grid or an .npz is built whole
        check_fits_in_memory(G, args.num_images, "--num-images")
    if G.num_classes and label is None and fmt == "grid":
        images, nrow = class_rows(G, args.num_images, seed=args.seed)
        write(images, out, fmt, nrow=nrow)
        print(f"wrote {len(images)} images, one row of {nrow} per class, to {out}")
        return 0
    labels = class_labels(G, 0, args.num_images, label)
    if fmt == "folder":
        batches = (b.cpu() for b in generated_batches(G, args.num_images, seed=args.seed, batch_size=500, label=label))
        write(batches, out, fmt)
    else:
        write(generate(G, args.num_images, seed=args.seed, label=label), out, fmt, labels=labels)
    print(f"wrote {args.num_images} images to {out}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .benchmarks.speed import BenchConfig, run

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(BenchConfig) if hasattr(args, f.name)}
    run(BenchConfig.quick(**given) if args.quick else BenchConfig(**given))
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    from .metrics.evaluate import check_fid_images
    from .metrics.image_sets import evaluate_image_set, fid_against_statistics, is_image_set
    from .metrics.report import EvalOptions, evaluate_checkpoint, format_table
    from .runtime import choose_device, finish_distributed, init_distributed

    if args.k < 0:
        raise UserError(f"--k must be 0 (no precision and recall) or more, got {args.k}")
    generated = args.ref is None and (args.checkpoint is None or not is_image_set(args.checkpoint))
    if generated:
        check_fid_images(args.num_images)
    if args.k and generated and args.k >= args.num_images:
        raise UserError(
            f"--k {args.k} needs more than {args.k} generated images, got --num-images "
            f"{args.num_images}: lower --k, or --k 0 to skip precision and recall"
        )
    dist = init_distributed(args.device)  # under torchrun the ranks share the generation
    opts = EvalOptions(
        num_images=args.num_images,
        extractor=args.extractor,
        inception_weights=args.inception_weights,
        evaluator_weights=args.evaluator_weights,
        data=args.data,
        data_root=args.data_root,
        split=args.split,
        seed=args.seed,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        ema=not args.no_ema,
        progress=dist.is_main,
        download=args.download,
        precision_recall_k=args.k or None,
    )
    device = choose_device(args.device, dist.local_rank)
    source = _source(args)
    if args.pretrained is not None:
        from .pretrained import card, names
        from .pretrained.make import score

        data = args.data or (card(source)["data"]["name"] if source in names() else None)
        if args.ref is not None or data is None:
            raise UserError("dcgan eval --pretrained needs --data (the real images; --ref is for checkpoints)")
        result, info = score(
            _load_G(args, device),
            data=data,
            data_root=args.data_root,
            split=args.split,
            num_images=args.num_images,
            seed=args.seed,
            cache_dir=args.cache_dir,
            progress=dist.is_main,
            precision_recall_k=args.k or None,
        )
        info = {"pretrained": source, **info}
        if dist.is_main:
            print(json.dumps({**info, **result.to_dict()}, indent=2) if args.json else format_table(result, info))
        finish_distributed()
        return 0
    if args.ref is not None:
        fid, info = fid_against_statistics(args.checkpoint, args.ref, opts=opts, device=device)
        if dist.is_main:
            print(
                json.dumps({**info, "fid": fid}, indent=2)
                if args.json
                else f"FID {fid:.3f}: {info['num_images']:,} images of {info['source']} against {info['reference']} "
                f"({info['extractor']} features)"
            )
        finish_distributed()
        return 0
    if is_image_set(args.checkpoint):
        result, info = evaluate_image_set(args.checkpoint, opts, device)
    else:
        result, info = evaluate_checkpoint(args.checkpoint, opts, device)
    if dist.is_main:
        print(json.dumps({**info, **result.to_dict()}, indent=2) if args.json else format_table(result, info))
    finish_distributed()
    return 0


def _evaluator(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .metrics.evaluator import build_evaluator
    from .outputs import check_output
    from .runtime import choose_device

    if Path(args.out).suffix.lower() != ".pt" or args.out.endswith(("/", "\\")):
        raise UserError(f"--out {args.out}: the evaluator weights are a .pt file; give a file name ending in .pt")
    check_output(args.out, "the evaluator weights")  # before the training, not after it

    meta = build_evaluator(
        args.out,
        data=args.data,
        data_root=args.data_root,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        device=choose_device(args.device),
        download=args.download,
        precision=args.precision,
    )
    print(f"test accuracy {meta['test_accuracy']:.2%} on {meta['num_test_images']:,} images; wrote {args.out}")
    return 0


def _quality(args: argparse.Namespace) -> int:
    from .benchmarks.quality import QualityConfig, command_line, run

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(QualityConfig) if hasattr(args, f.name)}
    if hasattr(args, "budget_min"):
        given["budget_s"] = args.budget_min * 60
    cfg = QualityConfig.quick_config(**given) if args.quick else QualityConfig(**given)
    results = run(cfg, command=command_line(cfg))
    return 1 if any("error" in row for row in results["rows"]) else 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import serve
    from .runtime import choose_device

    _source(args)
    serve(
        args.checkpoint,
        pretrained=args.pretrained,
        host=args.host,
        port=args.port,
        device=choose_device(args.device),
        ema=not args.no_ema,
    )
    return 0


def _interpolate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .explore import ANIMATION_SUFFIXES, check_output_file, images_of, walk_latents, write_walk
    from .latent import parse_seeds
    from .outputs import check_fits_in_memory
    from .runtime import choose_device
    from .sample import one_class

    out = Path(args.out)
    check_output_file(out, (".png", *ANIMATION_SUFFIXES))
    if args.fps <= 0:
        raise UserError(f"--fps must be positive, got {args.fps}")
    seeds = parse_seeds(args.seeds)
    if args.direction is None and len(seeds) < 2:
        raise UserError("a walk needs at least two seeds (or --direction SEED to move along one direction)")
    G = one_class(
        Generator.from_checkpoint(args.checkpoint, choose_device(args.device), ema=not args.no_ema),
        args.class_name,
        "interpolate",
    )
    legs = len(seeds) if args.direction is not None else len(seeds) - 1 + args.loop
    check_fits_in_memory(G, max(args.frames, 2) * legs * (2 if args.loop else 1) + 1, "the walk (--frames x seeds)")
    z = walk_latents(
        seeds,
        G.latent_dim,
        frames=args.frames,
        mode=args.mode,
        loop=args.loop,
        direction_seed=args.direction,
        distance=args.distance,
    )
    frames = images_of(G, z.flatten(0, 1)).unflatten(0, z.shape[:2])
    write_walk(frames, out, frames_per_row=args.frames, fps=args.fps)
    walks = f" of {frames.shape[1]} walks" if frames.shape[1] > 1 else ""
    print(f"wrote {len(frames)} frames{walks} to {out}")
    return 0


def _arithmetic(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .explore import arithmetic, check_output_file, labelled_grid, parse_expression
    from .outputs import writing
    from .runtime import choose_device
    from .sample import one_class

    out = Path(args.out)
    check_output_file(out, (".png",))
    if args.scale < 1:
        raise UserError(f"--scale must be at least 1, got {args.scale}")
    terms = parse_expression(args.expression)
    G = one_class(
        Generator.from_checkpoint(args.checkpoint, choose_device(args.device), ema=not args.no_ema),
        args.class_name,
        "arithmetic",
    )
    images, labels = arithmetic(G, terms)
    grid = labelled_grid(images, labels, nrow=len(images), scale=args.scale)
    with writing(out, "the grid") as tmp:
        grid.save(tmp, format="PNG")
    print(f"wrote {args.expression} = the last image to {out}")
    return 0


def _animate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .explore import ANIMATION_SUFFIXES, PROGRESS_GIF, check_output_file, write_progress_gif

    run_dir = Path(args.run_dir)
    if not (run_dir / "samples").is_dir():
        raise UserError(f"no samples folder in {run_dir}: not a run directory?")
    # the run's own progress.gif is animate's to rebuild; any other file of a run is not
    check_output_file(
        Path(args.out) if args.out is not None else run_dir / "samples" / PROGRESS_GIF,
        ANIMATION_SUFFIXES,
        owned=(f"samples/{PROGRESS_GIF}",),
    )
    if args.fps <= 0 or args.max_frames < 1:
        raise UserError("--fps must be positive and --max-frames at least 1")
    out = write_progress_gif(run_dir, args.out, max_frames=args.max_frames, fps=args.fps)
    if out is None:
        raise UserError(f"no sample grids (samples/step_*.png) in {run_dir} yet")
    print(f"wrote {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_run

    if (args.out is None) == (args.hub_folder is None):
        raise UserError("dcgan export: give -o FILE or --hub-folder DIR, one of them")
    if args.hub_folder is not None:
        from .hub import read_evaluation, run_facts, write_folder

        if args.format is not None:
            raise UserError("--format goes with -o; a --hub-folder holds safetensors weights")
        evaluation = read_evaluation(args.eval_json, run_facts(args.checkpoint))
        out = write_folder(
            args.checkpoint, args.hub_folder, evaluation=evaluation, license=args.license, ema=not args.no_ema
        )
        print(f"wrote {out}: what 'dcgan push {args.checkpoint} REPO_ID' uploads")
        return 0
    if args.eval_json is not None:
        raise UserError("--eval-json goes with --hub-folder (the model card)")
    out = export_run(args.checkpoint, args.out, fmt=args.format, ema=not args.no_ema)
    print(f"wrote {out}")
    return 0


def _push(args: argparse.Namespace) -> int:
    from .hub import push

    url = push(
        args.checkpoint,
        args.repo_id,
        evaluation_path=args.eval_json,
        private=args.private,
        license=args.license,
        ema=not args.no_ema,
    )
    print(f"pushed {args.checkpoint} to {url}")
    return 0


def _pretrained(args: argparse.Namespace) -> int:
    from .pretrained import format_list

    print(format_list())
    return 0


def _nearest(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .explore import check_output_file
    from .metrics.nearest import check_run, format_reports, save_picture
    from .runtime import choose_device

    check_output_file(Path(args.out), (".png",))
    reports, info, picture = check_run(
        args.checkpoint,
        num_images=args.num_images,
        num_compare=args.num_compare,
        k=args.k,
        test_data=args.test_data,
        test_root=args.test_root,
        extractor=args.extractor,
        inception_weights=args.inception_weights,
        evaluator_weights=args.evaluator_weights,
        device=choose_device(args.device),
        ema=not args.no_ema,
        progress=not args.json,
    )
    save_picture(picture, args.out)
    if args.json:
        print(json.dumps({**info, "picture": args.out, **{s: r.to_dict() for s, r in reports.items()}}, indent=2))
    else:
        print(format_reports(reports, info))
        print(
            f"wrote {args.out}: each sample, its {args.k} nearest training images in feature space, then in pixel space"
        )
    return 0


def _stats(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .explore import check_output_file
    from .metrics.image_sets import feature_statistics, stats_features, write_stats
    from .metrics.report import EvalOptions
    from .runtime import choose_device

    check_output_file(Path(args.out), (".npz",))
    opts = EvalOptions(
        extractor=args.extractor,
        inception_weights=args.inception_weights,
        evaluator_weights=args.evaluator_weights,
        data_root=args.data_root,
        split=args.split,
        cache_dir=args.cache_dir,
    )
    features, count, extractor = stats_features(
        args.data, opts=opts, image_size=args.image_size, channels=args.channels, device=choose_device(args.device)
    )
    if count < 2:
        raise UserError(f"{args.data} has {count} image(s); a covariance needs at least 2")
    mu, sigma = feature_statistics(features)
    write_stats(
        mu, sigma, args.out, {"source": args.data, "split": args.split, "extractor": extractor, "num_images": count}
    )
    print(f"wrote {args.out}: mu [{len(mu)}] and sigma [{len(mu)}, {len(mu)}] of {count:,} images ({extractor})")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        commands = {
            "train": _train,
            "sample": _sample,
            "bench": _bench,
            "eval": _eval,
            "evaluator": _evaluator,
            "quality": _quality,
            "demo": _demo,
            "interpolate": _interpolate,
            "arithmetic": _arithmetic,
            "animate": _animate,
            "export": _export,
            "nearest": _nearest,
            "stats": _stats,
            "push": _push,
            "pretrained": _pretrained,
        }
        with terminate_cleanly():  # a SIGTERM unwinds: temporary files and folders are removed
            return commands[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("stopped by SIGTERM; nothing half-written was left", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130
