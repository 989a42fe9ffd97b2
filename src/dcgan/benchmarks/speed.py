"""``dcgan bench``: training and sampling speed of the project's fast path against the classic loop.

For every image size and batch size it times (a) the project's trainer path
(``train.train_step`` on in-memory uint8 ``data.Batches``, the trainer's
optimizers, EMA and deferred statistics) and (b) the classic pytorch/examples
loop (``classic.py``), and prints (a)/(b). An ablation switches the fast-path
measures off one at a time to show what each buys.

Every variant runs in a fresh subprocess (``python -m dcgan.benchmarks.speed SPEC``) so
that thread pools, allocator caches and DataLoader workers of one variant do
not colour the next; ``--in-process`` (implied by ``--quick``) runs them in
this process instead, for tests. Each variant warms up, then times several
repetitions of a few steps (CUDA-synchronised at both ends) and reports the
median. The data are the built-in 5,000 MNIST digits, converted to the
variant's size and channels once; the classic path reads them as PNG files so
that it decodes and transforms every sample with PIL, as the classic does.

FLOPs are counted with ``torch.utils.flop_counter`` (convolutions and matrix
products: the model's arithmetic) and compared with a matrix-product peak
measured in the same run.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import UserError
from ..fileio import check_output_file, load_weights_only, write_text_atomic, written

# The fast-path measures the ablation switches, one at a time, from the project's defaults.
ABLATIONS = {
    "fast path": {},
    "DataLoader over PNGs": {"data": "loader"},
    "plain Adam": {"adam": "plain"},
    "channels_last flipped": {"channels_last": "flip"},
    ".item() every step": {"sync_every_step": True},
    "no EMA": {"ema": False},
}
CUDA_ABLATIONS = {
    "fp32 (no autocast)": {"precision": "fp32"},
    "cudnn.benchmark off": {"cudnn_benchmark": False},
    "+torch.compile": {"compile": "default"},
    "+torch.compile CUDA graphs": {"compile": "reduce-overhead"},
}
LOG_EVERY_STEPS = 50  # TrainConfig's default: the trainer reads its statistics this often


def channels_for(image_size: int) -> int:
    """28x28 is the grayscale contract (MNIST); the other sizes are RGB, as in the classic."""
    return 1 if image_size == 28 else 3


@dataclass
class BenchConfig:
    sizes: tuple[int, ...] = (28, 64)
    batch_sizes: tuple[int, ...] = (64, 128, 512)
    device: str = "auto"
    warmup_steps: int = 1  # after the step that counts the FLOPs, which warms up too
    steps: int = 1  # timed steps per repetition, at least; more while a repetition is under min_repeat_s
    min_repeat_s: float = 2.0  # short steps are repeated until a repetition lasts this long
    repeats: int = 5  # the median repetition is reported
    rounds: int = 1  # run the whole list this many times, alternating direction; the median round is reported
    threads: int | None = None  # intra-op threads per variant; None: torch's default (the cores)
    ablation: bool = True
    compile: bool = True  # the CUDA ablation includes the torch.compile variants (minutes of compiling)
    ablation_rows: tuple[tuple[int, int], ...] = ((64, 64), (28, 128))  # (image size, batch size)
    width: int = 64  # g_width = d_width; 64 is the classic (and TrainConfig's default)
    latent_dim: int = 100
    max_images: int | None = None  # None: all 5,000 built-in digits
    peak_size: int | None = None  # matrix side for the peak; None: 2048 on CPU, 8192 on CUDA
    in_process: bool = False
    json_path: str | None = None
    seed: int = 0

    @classmethod
    def quick(cls, **overrides) -> "BenchConfig":
        """Tiny networks, one batch size, one step per repetition: checks the wiring in seconds."""
        values = dict(
            sizes=(28,), batch_sizes=(16,), warmup_steps=0, steps=1, min_repeat_s=0.0, repeats=2,
            ablation_rows=((28, 16),), width=8, max_images=64, peak_size=256, in_process=True, compile=False,
        )
        return cls(**{**values, **overrides})


def validate(cfg: BenchConfig) -> None:
    from ..models import SUPPORTED_IMAGE_SIZES

    for size in cfg.sizes:
        if size not in SUPPORTED_IMAGE_SIZES:
            raise UserError(
                f"--sizes: unsupported image size {size}; supported: {', '.join(map(str, SUPPORTED_IMAGE_SIZES))}"
            )
    num_images = cfg.max_images or 5000
    for batch_size in cfg.batch_sizes:
        if not 2 <= batch_size <= num_images:
            raise UserError(f"--batch-sizes: {batch_size} must be between 2 and {num_images} (the images)")
    if not cfg.sizes or not cfg.batch_sizes:
        raise UserError("--sizes and --batch-sizes need at least one value each")
    if cfg.steps < 1 or cfg.repeats < 1 or cfg.rounds < 1 or cfg.warmup_steps < 0 or cfg.min_repeat_s < 0:
        raise UserError(
            "--steps, --repeats and --rounds must be at least 1, --warmup-steps and --min-repeat-s at least 0"
        )
    if cfg.threads is not None and cfg.threads < 1:
        raise UserError(f"--threads must be at least 1, got {cfg.threads}")
    if cfg.width < 1:
        raise UserError(f"--width must be at least 1, got {cfg.width}")
    if cfg.peak_size is not None and cfg.peak_size < 16:
        raise UserError(f"--peak-size must be at least 16, got {cfg.peak_size}")
    if cfg.json_path is not None:
        if not Path(cfg.json_path).resolve().parent.is_dir():
            raise UserError(f"--json: folder {Path(cfg.json_path).parent} does not exist")
        check_output_file(cfg.json_path, "--json")


# --------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_repeats(fn, device: torch.device, *, warmup_steps: int, steps: int, repeats: int,
                 min_repeat_s: float) -> tuple[int, list[float]]:
    """Warm up, then time ``repeats`` repetitions of ``n`` calls; return (n, seconds per repetition).

    ``n`` is ``steps``, raised so that one repetition lasts about ``min_repeat_s``
    by the duration of the last warm-up call.
    """
    per_call = None
    for _ in range(warmup_steps):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        per_call = time.perf_counter() - start
    n = steps
    if per_call is not None and per_call > 0:
        n = max(steps, math.ceil(min_repeat_s / per_call))
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return n, times


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def _rate(fn, flops: int, device: torch.device, repeats: int) -> float:
    # on a GPU one product takes milliseconds: several per repetition keep the timer's resolution out
    n, times = time_repeats(fn, device, warmup_steps=3, steps=1, repeats=repeats,
                            min_repeat_s=0.0 if device.type == "cpu" else 0.1)
    return flops * n / statistics.median(times) / 1e9


def peak_candidates(size: int) -> list[tuple[str, tuple]]:
    """The kernels whose best rate is taken as the peak: (name, shape).

    Matrix products of two sizes, and on the CPU also convolutions: there the model's
    convolutions run in oneDNN, while a matrix product runs in the BLAS, which on some
    CPUs takes a narrower vector path. One matrix size alone under-reads the peak and
    lets a model run at "more than 100%" of it.
    """
    side = max(16, size // 8)
    return [("matmul", (size,)), ("matmul", (size // 2,)),
            ("conv1x1", (64, side * 2, 32)), ("conv3x3", (32, side, 32))]


def measure_peak(device: torch.device, size: int, dtype: torch.dtype = torch.float32, repeats: int = 5) -> dict:
    """The best GFLOP/s over ``peak_candidates`` (matrix products only on CUDA), and which kernel gave it."""
    rates = {}
    for name, shape in peak_candidates(size):
        if name == "matmul":
            (n,) = shape
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            rates[f"matmul {n}^2"] = _rate(lambda: torch.mm(a, b), 2 * n**3, device, repeats)
        elif device.type == "cpu":
            batch, channels, side = shape
            k = 1 if name == "conv1x1" else 3
            x = torch.randn(batch, channels, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
            conv = torch.nn.Conv2d(channels, channels, k, padding=k // 2, bias=False).to(dtype)
            conv = conv.to(memory_format=torch.channels_last).requires_grad_(False)
            flops = 2 * batch * side * side * channels * channels * k * k
            rates[f"{name} {batch}x{channels}x{side}^2"] = _rate(lambda: conv(x), flops, device, repeats)
    best = max(rates, key=rates.get)
    return {"gflops": rates[best], "kernel": best, "all": rates}


def cpu_info() -> dict:
    """The CPU's model and vector extensions: figures from different CPUs are not comparable."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_tile")
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    return {"model": model, "extensions": [f for f in wanted if f in flags], "torch_capability": capability}


# --------------------------------------------------------------------------- the variants


def _forever(epoch_fn):
    epoch = 0
    while True:
        yield from epoch_fn(epoch)
        epoch += 1


def _project(spec: dict, device: torch.device):
    """(train step, sample call, flop-count step) for the project's trainer path with ``spec['options']``."""
    from ..config import TrainConfig
    from ..data import Batches, ImageFolder, InMemoryImages, to_model_range
    from ..sample import generate
    from ..step import build_training

    opts = spec["options"]
    cfg = TrainConfig(
        image_size=spec["size"], channels=spec["channels"], g_width=spec["width"], d_width=spec["width"],
        latent_dim=spec["latent_dim"], batch_size=spec["batch_size"], seed=spec["seed"],
        precision=opts.get("precision", "auto"), compile=bool(opts.get("compile")),
        compile_mode=opts.get("compile") or "default",
    )
    if opts.get("channels_last") == "flip":
        cfg = dataclasses.replace(cfg, channels_last=not cfg.channels_last)
    parts = build_training(cfg, device, fast_adam=opts.get("adam") != "plain")  # the trainer's set-up
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = opts.get("cudnn_benchmark", True)
    ema = parts.ema if opts.get("ema", True) else None

    data_dir = Path(spec["data_dir"])
    if opts.get("data") == "loader":
        data = ImageFolder(str(data_dir / "images"), spec["channels"], spec["size"])
    else:
        data = InMemoryImages(load_weights_only(data_dir / "images_u8.pt", "benchmark image tensor"))
    batches = Batches(data, cfg.batch_size, seed=cfg.seed, device=device, num_workers=cfg.num_workers)
    stream = _forever(batches.epoch)
    stats_sum = torch.zeros(5, device=device)
    step = 0

    def train():
        nonlocal step, stats_sum
        real = to_model_range(next(stream)).contiguous(memory_format=parts.memory_format)
        z = torch.randn(cfg.batch_size, cfg.latent_dim, device=device, generator=parts.noise_rng)
        stats = parts.step(real, z)
        if ema is not None:
            ema.update(parts.G, step)
        step += 1
        if opts.get("sync_every_step"):
            stats.tolist()  # what reading the statistics every step costs
        else:
            stats_sum += stats
            if step % LOG_EVERY_STEPS == 0:
                stats_sum.tolist()
                stats_sum.zero_()

    G_sample = ema.model if ema is not None else copy.deepcopy(parts.G).eval()
    seed = itertools.count()

    def sample():
        generate(G_sample, cfg.batch_size, seed=next(seed), batch_size=cfg.batch_size)

    return train, sample


def _classic(spec: dict, device: torch.device):
    """(train step, sample call) for the classic loop."""
    from .classic import (
        classic_batches, classic_dataset, classic_loader, classic_models, classic_optimizers,
        classic_sample, classic_step,
    )

    G, D = classic_models(
        latent_dim=spec["latent_dim"], channels=spec["channels"], image_size=spec["size"], width=spec["width"]
    )
    G.to(device)
    D.to(device)
    opt_G, opt_D = classic_optimizers(G, D)
    criterion = torch.nn.BCELoss()
    dataset = classic_dataset(str(Path(spec["data_dir"]) / "images"), channels=spec["channels"],
                              image_size=spec["size"])
    batches = classic_batches(classic_loader(dataset, spec["batch_size"]), device)
    fixed_noise = torch.randn(spec["batch_size"], spec["latent_dim"], 1, 1, device=device)

    def train():
        real = next(batches)
        z = torch.randn(real.size(0), spec["latent_dim"], 1, 1, device=device)
        classic_step(G, D, opt_G, opt_D, real, z, criterion)

    def sample():
        classic_sample(G, fixed_noise).cpu()  # the classic moves the grid to the host to save it

    return train, sample


def run_variant(spec: dict) -> dict:
    """Time one variant in this process; ``spec`` is a plain dict so it can cross a process boundary."""
    threads, cudnn_benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    try:
        return _run_variant(spec)
    finally:  # matters only in-process
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = cudnn_benchmark


def _run_variant(spec: dict) -> dict:
    device = torch.device(spec["device"])
    torch.manual_seed(spec["seed"])
    if spec["path"] == "peak":
        fp32 = measure_peak(device, spec["peak_size"])
        result = {"fp32_gflops": fp32["gflops"], "fp32_kernel": fp32["kernel"], "fp32_all": fp32["all"]}
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            result["bf16_gflops"] = measure_peak(device, spec["peak_size"], torch.bfloat16)["gflops"]
        return result
    train, sample = (_project if spec["path"] == "project" else _classic)(spec, device)
    timing = {k: spec[k] for k in ("warmup_steps", "steps", "repeats", "min_repeat_s")}
    load_before = os.getloadavg()[0]
    # counting runs one real step under a dispatch mode: a warm-up step, never a timed one;
    # compiled graphs hide their operations from the counter (the fast path's count applies)
    compiled = bool(spec.get("options", {}).get("compile"))
    if compiled:
        train()
        flops_train = None
    else:
        flops_train = count_flops(train)
    train_n, train_times = time_repeats(train, device, **timing)
    flops_sample = count_flops(sample)
    sample_n, sample_times = time_repeats(sample, device, **timing)
    batch = spec["batch_size"]
    return {
        "train_img_per_s": batch * train_n / statistics.median(train_times),
        "train_steps_per_repeat": train_n, "train_times_s": train_times,
        "sample_img_per_s": batch * sample_n / statistics.median(sample_times),
        "sample_calls_per_repeat": sample_n, "sample_times_s": sample_times,
        "flops_per_train_image": None if flops_train is None else flops_train / batch,
        "flops_per_sample_image": flops_sample / batch,
        "num_threads": torch.get_num_threads(), "load_avg_1min": [load_before, os.getloadavg()[0]],
    }


def _busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy (Linux /proc/stat); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    except (OSError, ValueError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _run_isolated(spec: dict) -> dict:
    """``run_variant`` in a fresh interpreter; its last stdout line is the result.

    Also records ``other_cpu_load``: the cores that other processes kept busy
    meanwhile (the machine's busy time less this variant's, DataLoader workers
    included), which says how far a shared machine disturbed the figure.
    """
    busy, own, start = _busy_cpu_s(), os.times(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dcgan.benchmarks.speed", json.dumps(spec)], capture_output=True, text=True,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark variant {spec['path']} {spec.get('size')} failed:\n{tail}")
    result = json.loads(lines[-1])
    if busy is not None:
        # a waited-for child's CPU time includes that of its own waited-for children
        end = os.times()
        own_s = sum(end[:4]) - sum(own[:4])  # this process and its waited-for children
        result["other_cpu_load"] = max(0.0, (_busy_cpu_s() - busy - own_s) / (time.perf_counter() - start))
    return result


# --------------------------------------------------------------------------- the run


def _prepare_data(size: int, channels: int, max_images: int | None, folder: Path) -> Path:
    """The built-in digits at this size: a uint8 tensor for the project, PNG files for the classic."""
    from PIL import Image

    from ..data import DataSpec, load

    out = folder / f"{size}px_{channels}ch"
    images = load(DataSpec(channels=channels, image_size=size, max_images=max_images), progress=False).images
    (out / "images" / "0").mkdir(parents=True)  # ImageFolder wants one sub-folder per class
    torch.save(images, out / "images_u8.pt")
    for i, image in enumerate(images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(image.squeeze(-1) if channels == 1 else image).save(out / "images" / "0" / f"{i:05d}.png")
    return out


def _disturbance(result: dict) -> str:
    other = result.get("other_cpu_load")
    return "" if other is None else f", other processes {other:.2f} cores"


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _merge(rounds: list[dict]) -> dict:
    """One variant over several rounds: the median rates, the first round's counts, every round kept."""
    merged = dict(rounds[0])
    for key in ("train_img_per_s", "sample_img_per_s", "other_cpu_load"):
        if key in merged:
            merged[key] = statistics.median(r[key] for r in rounds)
    merged["rounds"] = rounds
    return merged


def run(cfg: BenchConfig, *, out=print) -> dict:
    """Run every variant, print progress and the tables, write the JSON; return the results."""
    from ..runtime import choose_device

    validate(cfg)
    device = choose_device(cfg.device)
    peak_size = cfg.peak_size or (8192 if device.type == "cuda" else 2048)
    runner = run_variant if cfg.in_process else _run_isolated
    ablations = {**ABLATIONS, **(CUDA_ABLATIONS if device.type == "cuda" else {})}
    if not cfg.compile:
        ablations = {k: v for k, v in ablations.items() if "compile" not in v}
    # name the flip by what it does (the trainer's default is TrainConfig.channels_last)
    from ..config import TrainConfig

    flipped = "channels_last off" if TrainConfig().channels_last else "channels_last on"
    ablations = {(flipped if k == "channels_last flipped" else k): v for k, v in ablations.items()}
    base = dict(device=str(device), width=cfg.width, latent_dim=cfg.latent_dim, seed=cfg.seed,
                warmup_steps=cfg.warmup_steps, steps=cfg.steps, repeats=cfg.repeats,
                min_repeat_s=cfg.min_repeat_s, threads=cfg.threads)

    jobs = []  # (size, batch, path, options, label)
    for size in cfg.sizes:
        for batch in cfg.batch_sizes:
            jobs += [(size, batch, "project", {}, "project"), (size, batch, "classic", {}, "classic")]
    ablation_rows = [(s, b) for s, b in cfg.ablation_rows if s in cfg.sizes] if cfg.ablation else []
    for size, batch in ablation_rows:
        # the unchanged fast path is measured again here, next to its variants, as their reference:
        # on a shared machine the load drifts between the start and the end of a run
        for label, options in ablations.items():
            jobs.append((size, batch, "project", options, label))

    results: dict = {
        "device": str(device), "torch": torch.__version__, "cpu_count": os.cpu_count(),
        "config": asdict(cfg), "peak": {}, "rows": [], "ablation": [],
        "cpu": cpu_info(),
    }
    done: dict = {}
    started = time.perf_counter()
    threads = cfg.threads or torch.get_num_threads()
    out(f"dcgan bench on {device} (torch {torch.__version__}, {threads} threads); {len(jobs)} variants "
        f"x {cfg.rounds} round(s), {'in this process' if cfg.in_process else 'one subprocess each'}")
    cpu = results["cpu"]
    out(f"cpu: {cpu['model']}; {', '.join(cpu['extensions']) or 'no AVX2/AVX-512'}; "
        f"torch kernels {cpu['torch_capability']}")
    peak_spec = {**base, "path": "peak", "peak_size": peak_size}
    results["peak"]["start"] = runner(peak_spec)
    start_peak = results["peak"]["start"]
    out(f"peak (best of {len(start_peak['fp32_all'])} kernels, fp32): {start_peak['fp32_gflops']:.1f} GFLOP/s "
        f"from {start_peak['fp32_kernel']}")
    with tempfile.TemporaryDirectory(prefix="dcgan-bench-") as tmp:
        data_dirs = {size: _prepare_data(size, channels_for(size), cfg.max_images, Path(tmp)) for size in cfg.sizes}
        count = 0
        for round_index in range(cfg.rounds):
            # every other round runs backwards, so that a drifting load favours no variant
            for size, batch, path, options, label in jobs if round_index % 2 == 0 else jobs[::-1]:
                count += 1
                channels = channels_for(size)
                spec = {**base, "path": path, "size": size, "channels": channels, "batch_size": batch,
                        "options": options, "data_dir": str(data_dirs[size])}
                t0 = time.perf_counter()
                result = runner(spec)
                done.setdefault((size, batch, label), []).append(result)
                out(f"[{count}/{len(jobs) * cfg.rounds}] {size}x{size}x{channels} batch {batch:>4} {label:<22} "
                    f"train {_fmt(result['train_img_per_s'])} img/s, sample {_fmt(result['sample_img_per_s'])} "
                    f"img/s ({time.perf_counter() - t0:.0f} s{_disturbance(result)})")
    results["peak"]["end"] = runner(peak_spec)
    done = {key: _merge(rounds) for key, rounds in done.items()}

    # the better of the two peaks: the machine's capability, so that a busy moment does not flatter % of peak
    peak = results["peak"]["fp32_gflops"] = max(results["peak"][k]["fp32_gflops"] for k in ("start", "end"))
    peak_bf16 = max(results["peak"][k].get("bf16_gflops", 0.0) for k in ("start", "end"))
    results["peak"]["bf16_gflops"] = peak_bf16 or None
    project_peak = peak_bf16 or peak  # the trainer runs in bf16 where it can (CUDA)

    def pct(flops_per_image: float, img_per_s: float, peak_gflops: float) -> float:
        return 100 * flops_per_image * img_per_s / (peak_gflops * 1e9)

    def check(rate: float) -> float:
        if rate > 100:  # the peak missed a faster kernel than it tried: an error of the method, not a result
            results["peak_errors"].append(rate)
        return rate

    results["peak_errors"] = []

    for size in cfg.sizes:
        for batch in cfg.batch_sizes:
            a, b = done[(size, batch, "project")], done[(size, batch, "classic")]
            results["rows"].append({
                "size": size, "channels": channels_for(size), "batch_size": batch, "project": a, "classic": b,
                "train_ratio": a["train_img_per_s"] / b["train_img_per_s"],
                # each round runs the two next to each other: on a drifting machine these are the steadier ratios
                "train_ratio_per_round": [
                    x["train_img_per_s"] / y["train_img_per_s"] for x, y in zip(a["rounds"], b["rounds"])
                ],
                "sample_ratio": a["sample_img_per_s"] / b["sample_img_per_s"],
                "gflop_per_train_image": a["flops_per_train_image"] / 1e9,
                "project_pct_of_peak": check(pct(a["flops_per_train_image"], a["train_img_per_s"], project_peak)),
                "classic_pct_of_peak": check(pct(b["flops_per_train_image"], b["train_img_per_s"], peak)),
            })
    for size, batch in ablation_rows:
        reference = done[(size, batch, "fast path")]
        for label, options in ablations.items():
            result = done[(size, batch, label)]
            # the fast path's count: the same arithmetic, and the counter cannot see into compiled graphs
            rate = check(pct(reference["flops_per_train_image"], result["train_img_per_s"],
                             peak if options.get("precision") == "fp32" else project_peak))
            results["ablation"].append({
                "size": size, "channels": channels_for(size), "batch_size": batch, "variant": label,
                "options": options, "result": result, "pct_of_peak": rate,
                "vs_fast_path": result["train_img_per_s"] / reference["train_img_per_s"],
            })
    results["elapsed_s"] = time.perf_counter() - started
    _print_tables(results, out)
    if cfg.json_path:
        path = Path(cfg.json_path)
        with written("the results", path):
            write_text_atomic(path, json.dumps(results, indent=2) + "\n")
        out(f"wrote {path}")
    return results


def _pct(rate: float) -> str:
    return "error" if rate > 100 else f"{rate:.0f}%"  # above 100%: see the error line under the tables


def _other(*results: dict) -> str:
    loads = [r["other_cpu_load"] for r in results if r.get("other_cpu_load") is not None]
    return f"{max(loads):.2f}" if loads else "-"


def _print_tables(results: dict, out) -> None:
    """The rows, then the ablation; ``other`` is the cores other processes kept busy meanwhile."""
    peak = results["peak"]
    peak_text = (f"{peak['fp32_gflops']:.1f} GFLOP/s fp32 (start {peak['start']['fp32_gflops']:.1f}, "
                 f"end {peak['end']['fp32_gflops']:.1f})")
    if peak.get("bf16_gflops"):
        peak_text += f", {peak['bf16_gflops']:.1f} GFLOP/s bf16"
    out("")
    out(f"device {results['device']} ({results['cpu']['model']}); peak {peak_text} "
        f"from {peak['start']['fp32_kernel']}")
    head = (f"{'image':<9} {'batch':>5} {'GFLOP/img':>9} | {'train img/s':>11} {'classic':>9} {'ratio':>6} "
            f"{'% peak':>6} {'classic':>7} | {'sample img/s':>12} {'classic':>9} {'ratio':>6} | {'other':>5}")
    out(head)
    out("-" * len(head))
    for row in results["rows"]:
        a, b = row["project"], row["classic"]
        image = f"{row['size']}x{row['size']}x{row['channels']}"
        out(f"{image:<9} {row['batch_size']:>5} {row['gflop_per_train_image']:>9.3f} | "
            f"{_fmt(a['train_img_per_s']):>11} {_fmt(b['train_img_per_s']):>9} {row['train_ratio']:>5.2f}x "
            f"{_pct(row['project_pct_of_peak']):>6} {_pct(row['classic_pct_of_peak']):>7} | "
            f"{_fmt(a['sample_img_per_s']):>12} {_fmt(b['sample_img_per_s']):>9} {row['sample_ratio']:>5.2f}x | "
            f"{_other(a, b):>5}")
    if results["config"]["rounds"] > 1:
        out("train ratio per round (the two variants run next to each other):")
        for row in results["rows"]:
            ratios = ", ".join(f"{r:.2f}" for r in row["train_ratio_per_round"])
            out(f"  {row['size']}x{row['size']}x{row['channels']} batch {row['batch_size']}: {ratios}")
    if results["ablation"]:
        out("")
        out("ablation: the project path with one fast-path measure changed")
        head = (f"{'image':<9} {'batch':>5} {'variant':<26} {'train img/s':>11} {'vs fast':>8} {'% peak':>6} | "
                f"{'other':>5}")
        out(head)
        out("-" * len(head))
        for row in results["ablation"]:
            image = f"{row['size']}x{row['size']}x{row['channels']}"
            out(f"{image:<9} {row['batch_size']:>5} {row['variant']:<26} {_fmt(row['result']['train_img_per_s']):>11} "
                f"{row['vs_fast_path']:>7.2f}x {_pct(row['pct_of_peak']):>6} | {_other(row['result']):>5}")
    if results["peak_errors"]:
        out(f"error: {len(results['peak_errors'])} rate(s) above 100% of the measured peak (up to "
            f"{max(results['peak_errors']):.0f}%): the peak kernels missed this CPU's fastest path, so the "
            f"'% peak' columns are not results on this machine; the img/s and ratios stand")
    out(f"({results['elapsed_s']:.0f} s)")


def _worker_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    result = run_variant(spec)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
