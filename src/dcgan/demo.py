"""A local demo page for a trained generator: ``dcgan demo RUN``.

The page (Gradio, the optional ``demo`` extra) shows a grid of samples by seed, the
image of one seed steered along a few latent directions, a slerp walk between two
seeds as frames and as a GIF, and downloads of the current image and its z vector.

Seed ``s`` is ``G(seed_noise([s], latent_dim))`` drawn alone, exactly as in the rest
of the package (``dcgan.latent``), so the page shows the pixels ``dcgan sample
--seeds`` writes. The server binds to 127.0.0.1 unless told otherwise, loads the
checkpoint with ``weights_only=True`` (``dcgan.checkpoint.load``) and takes no file
path from the page: every input is a number, a seed list or a class index.
"""

import hashlib
import ipaddress
import os
import random
import signal
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .data import to_uint8
from .errors import UserError
from .fileio import atomic_path
from .latent import parse_seeds, seed_noise, walk
from .models import Generator
from .signals import on_signals

NUM_DIRECTIONS = 5
MAX_GRID_SEEDS = 64
MAX_SEED = 2**53 - 1  # the largest whole number a browser's number box holds exactly
SLIDER_RANGE = 3.0  # in standard deviations of z along the direction (z . u ~ N(0, 1) for a unit u)
WALK_FRAMES = 16
GIF_FRAME_MS = 80
GIF_MIN_SIDE_PX = 112  # walks are upscaled (nearest) to at least this side, so a 28x28 GIF is viewable

# Samples are 28 to 64 px: show them enlarged with square pixels rather than blurred.
_CSS = """
#current-image img, #grid img, #walk-frames img, #walk-gif img { image-rendering: pixelated; }
#current-image img, #walk-gif img { width: 100%; height: 100%; object-fit: contain; }
"""


# --------------------------------------------------------------------------- computation


@torch.no_grad()
def latent_directions(
    G: Generator,
    *,
    num_directions: int = NUM_DIRECTIONS,
    num_probes: int = 1024,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Unit directions in z [num_directions, latent_dim] along which an unconditional G's output changes most.

    The choice: the top left singular vectors of the cross-covariance between z and
    G(z) over ``num_probes`` noise vectors, i.e. the principal directions of G's
    best linear response to z (z is isotropic, so this is the SVD of the least-squares
    map z -> image). Unlike random directions each one visibly moves the image, and it
    costs one forward pass over the probes at start-up. The probes have a fixed seed,
    so the sliders mean the same thing every time a run is served.
    """
    device = next(G.parameters()).device
    z = torch.randn(num_probes, G.latent_dim, generator=torch.Generator().manual_seed(seed))
    if getattr(G, "num_classes", 0):  # a conditional G: over every class alike
        from .sample import class_labels

        y = class_labels(G, 0, num_probes)
        x = torch.cat(
            [
                G(b.to(device), c.to(device)).flatten(1).double().cpu()
                for b, c in zip(z.split(batch_size), y.split(batch_size))
            ]
        )
    else:
        x = torch.cat([G(b.to(device)).flatten(1).double().cpu() for b in z.split(batch_size)])
    z = z.double()
    cross = (z - z.mean(0)).T @ (x - x.mean(0)) / num_probes  # [latent_dim, pixels]
    u = torch.linalg.svd(cross, full_matrices=False).U[:, :num_directions].T
    # an SVD's signs are arbitrary; fix them so "+" brightens the image on average
    signs = torch.sign(u @ cross.sum(1))
    signs[signs == 0] = 1
    return (u * signs[:, None]).float()


class DemoModel:
    """What the page computes, without the page: images from seeds, steered z, walks.

    ``num_classes`` is None for an unconditional generator; a class-conditional one
    takes ``G(z, labels)`` with ``labels`` a LongTensor [B], the only place the label enters here.
    """

    def __init__(self, G: Generator, *, directions: torch.Tensor, num_classes: int | None = None) -> None:
        self.G = G.eval()
        self.device = next(G.parameters()).device
        self.directions = directions.float().cpu()
        self.num_classes = num_classes

    def check_label(self, label: int | None) -> int | None:
        if self.num_classes is None:
            return None
        if label is None or not 0 <= int(label) < self.num_classes:
            raise UserError(f"pick a class between 0 and {self.num_classes - 1}")
        return int(label)

    @torch.no_grad()
    def images(self, z: torch.Tensor, label: int | None = None) -> torch.Tensor:
        """uint8 images [N, C, H, W] on the CPU for z [N, latent_dim]."""
        z = z.to(self.device)
        label = self.check_label(label)
        if label is None:
            out = self.G(z)
        else:
            out = self.G(z, torch.full((len(z),), label, dtype=torch.long, device=self.device))
        return to_uint8(out).cpu()

    def seed_image(self, seed: int, label: int | None = None) -> torch.Tensor:
        """The image of one seed [C, H, W], drawn alone so it matches ``dcgan sample --seeds`` bit for bit."""
        return self.images(seed_noise([check_seed(seed)], self.G.latent_dim), label)[0]

    def seed_images(self, seeds: list[int], label: int | None = None) -> list[torch.Tensor]:
        # One forward pass per seed, not one batch: a batch can move a float by an ulp and so
        # a pixel by one level, and seed s must be the same image wherever it is shown.
        return [self.seed_image(s, label) for s in seeds]

    def steered_z(self, seed: int, offsets: list[float]) -> torch.Tensor:
        """z [latent_dim] of ``seed`` moved by ``offsets[k]`` along direction k."""
        z = seed_noise([check_seed(seed)], self.G.latent_dim)[0]
        if len(offsets) != len(self.directions):
            raise ValueError(f"expected {len(self.directions)} offsets, got {len(offsets)}")
        return z + torch.tensor(offsets, dtype=z.dtype) @ self.directions

    def walk_images(self, seed_a: int, seed_b: int, frames: int, label: int | None = None) -> torch.Tensor:
        """The slerp walk from seed_a to seed_b: uint8 [frames + 1, C, H, W], ending on seed_b."""
        points = seed_noise([check_seed(seed_a), check_seed(seed_b)], self.G.latent_dim)
        return self.images(walk(points, int(frames), mode="slerp"), label)


def check_seed(seed) -> int:
    if seed is None or seed != seed:  # None or NaN: the number box is empty
        raise UserError("type a seed (a whole number >= 0)")
    if float(seed) != int(seed) or not 0 <= int(seed) <= MAX_SEED:
        raise UserError(f"a seed is a whole number from 0 to {MAX_SEED}, got {seed}")
    return int(seed)


def grid_seeds(text: str) -> list[int]:
    seeds = parse_seeds(text)
    if len(seeds) > MAX_GRID_SEEDS:
        raise UserError(f"at most {MAX_GRID_SEEDS} seeds on the grid, got {len(seeds)}")
    for s in seeds:
        check_seed(s)
    return seeds


def to_pil(image: torch.Tensor):
    """uint8 [C, H, W] -> a PIL image, mode L or RGB."""
    from PIL import Image

    return Image.fromarray(
        image.permute(1, 2, 0).numpy().squeeze(2) if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()
    )


def write_gif(frames: torch.Tensor, path: Path, *, frame_ms: int = GIF_FRAME_MS) -> None:
    """A looping GIF that plays the walk forth and back, upscaled (nearest) to at least GIF_MIN_SIDE_PX."""
    from PIL import Image

    scale = max(1, -(-GIF_MIN_SIDE_PX // frames.shape[-1]))
    pictures = [to_pil(f) for f in frames]
    if frames.shape[1] == 3:
        # GIF holds 256 colours a frame. Pillow's default quantizer took 0.4 s for a 64x64 walk;
        # the fast octree at native size (then a nearest upscale, which keeps the palette) takes ~10 ms.
        pictures = [p.quantize(256, method=Image.Quantize.FASTOCTREE) for p in pictures]
    side = (frames.shape[-1] * scale, frames.shape[-2] * scale)
    pictures = [p.resize(side, Image.NEAREST) for p in pictures]
    pictures = pictures + pictures[-2:0:-1]
    _atomic(
        path,
        lambda tmp: pictures[0].save(
            tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0
        ),
    )


def _atomic(path: Path, write) -> None:
    # Two visitors can ask for the same file at once; each writes its own temp file and renames.
    with atomic_path(path) as tmp:
        write(str(tmp))


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would append .npy to a path
        np.save(f, array)


def _digest(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p.numpy().tobytes() if isinstance(p, torch.Tensor) else repr(p).encode())
    return h.hexdigest()[:10]


class Actions:
    """What each control of the page does, as plain functions of the page's values (timed by scripts/demo_timing.py)."""

    def __init__(self, model: DemoModel, files_dir: str | Path) -> None:
        self.model = model
        self.files_dir = Path(files_dir)
        self.files_dir.mkdir(parents=True, exist_ok=True)

    def grid(self, text: str, label: int | None = None):
        """Seeds typed as text -> ([(image, caption)], seeds)."""
        seeds = grid_seeds(text)
        images = self.model.seed_images(seeds, label)
        return [(to_pil(im), f"seed {s}") for s, im in zip(seeds, images)], seeds

    def reroll(self, text: str, label: int | None = None):
        """As many fresh consecutive seeds as the grid shows -> (their text, gallery, seeds)."""
        n = len(grid_seeds(text)) if text and text.strip() else 16
        start = random.randrange(0, 1_000_000)
        text = f"{start}-{start + n - 1}"
        return (text, *self.grid(text, label))

    def steer(self, seed, label, *offsets):
        """The steered image of ``seed`` -> (image, its PNG path, its z's .npy path)."""
        seed = check_seed(seed)
        z = self.model.steered_z(seed, [float(o) for o in offsets])
        image = self.model.images(z[None], label)[0]
        name = f"seed-{seed}"
        if any(offsets):
            name += f"-steered-{_digest(z)}"
        if self.model.check_label(label) is not None:
            name += f"-class-{label}"
        png, npy = self.files_dir / f"{name}.png", self.files_dir / f"{name}-z.npy"
        _atomic(png, lambda tmp: to_pil(image).save(tmp, format="PNG"))
        _atomic(npy, lambda tmp: _save_npy(tmp, z.numpy()))
        return to_pil(image), str(png), str(npy)

    def walk(self, seed_a, seed_b, frames, label=None):
        """The slerp walk -> (gallery of frames, GIF path, GIF path for the download button)."""
        images = self.model.walk_images(seed_a, seed_b, int(frames), label)
        gif = self.files_dir / f"walk-{int(seed_a)}-{int(seed_b)}-{int(frames)}f-{_digest(images)}.gif"
        write_gif(images, gif)
        n = len(images) - 1
        gallery = [(to_pil(im), f"t = {k / n:.2f}") for k, im in enumerate(images)]
        return gallery, str(gif), str(gif)


# --------------------------------------------------------------------------- the page


def import_gradio():
    """Gradio with its telemetry and update check off; a missing install is one line."""
    # Before the import: gradio reads it when a Blocks is built, and would otherwise
    # start threads that call api.gradio.app.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio as gr
    except ImportError:
        raise UserError("the demo page needs Gradio: pip install 'dcgan[demo]'") from None
    return gr


def build_demo(
    G: Generator,
    *,
    directions: torch.Tensor,
    files_dir: str | Path,
    num_classes: int | None = None,
    title: str = "dcgan",
    info: str = "",
):
    """The Gradio Blocks of the page for generator ``G`` (eval mode); files for download go to ``files_dir``."""
    gr = import_gradio()
    act = Actions(DemoModel(G, directions=directions, num_classes=num_classes), files_dir)
    size = f"{G.image_size}×{G.image_size}"

    def on_page(fn):
        # a bad seed list is the visitor's mistake: a message on the page, not a server traceback
        def wrapped(*args):
            try:
                return fn(*args)
            except UserError as e:
                raise gr.Error(str(e)) from None

        return wrapped

    show_grid, reroll, steer, walk_between = (on_page(f) for f in (act.grid, act.reroll, act.steer, act.walk))

    def pick(seeds, evt: gr.SelectData):  # gradio finds the event by this annotation, so no __future__ import
        return seeds[evt.index]

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 3600)) as demo:
        gr.Markdown(f"## {title}\n{info}")
        if num_classes is not None:
            # Shown only for a checkpoint whose config has num_classes (a class-conditional run).
            names = getattr(G, "class_names", ()) or [str(k) for k in range(num_classes)]
            label = gr.Dropdown(
                [(f"class {names[k]}", k) for k in range(num_classes)], value=0, label="class", elem_id="class"
            )
        else:
            label = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                gr.Markdown("### Samples\nType seeds (`0-15`, `3,7,42`) or re-roll; click a sample to steer it.")
                with gr.Row():
                    seeds_box = gr.Textbox("0-15", label="seeds", elem_id="seeds", scale=3)
                    show_button = gr.Button("Show", elem_id="show", scale=1)
                    reroll_button = gr.Button("Re-roll", elem_id="reroll", scale=1)
                grid = gr.Gallery(
                    label=f"samples ({size})",
                    columns=4,
                    object_fit="contain",
                    height="auto",
                    allow_preview=False,
                    elem_id="grid",
                    format="png",
                )
                shown_seeds = gr.State([])
            with gr.Column(scale=2):
                gr.Markdown("### One seed, steered\nSliders move z along G's principal linear directions.")
                seed_box = gr.Number(0, label="seed", precision=0, minimum=0, elem_id="seed")
                current = gr.Image(
                    label=f"seed image ({size}, shown enlarged)",
                    format="png",
                    type="pil",
                    interactive=False,
                    height=280,
                    elem_id="current-image",
                    buttons=["download"],
                )
                sliders = [
                    gr.Slider(
                        -SLIDER_RANGE,
                        SLIDER_RANGE,
                        0.0,
                        step=0.1,
                        label=f"direction {k + 1}",
                        elem_id=f"direction-{k + 1}",
                    )
                    for k in range(len(directions))
                ]
                with gr.Row():
                    reset_button = gr.Button("Reset sliders", elem_id="reset", size="sm", min_width=80)
                    to_a = gr.Button("Walk from here", elem_id="to-a", size="sm", min_width=80)
                    to_b = gr.Button("Walk to here", elem_id="to-b", size="sm", min_width=80)
                with gr.Row():
                    png_button = gr.DownloadButton("Image (PNG, full size)", elem_id="download-png", size="sm")
                    z_button = gr.DownloadButton("z vector (.npy)", elem_id="download-z", size="sm")
        gr.Markdown("### Walk between two seeds (slerp)")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    seed_a = gr.Number(0, label="from seed", precision=0, minimum=0, elem_id="seed-a")
                    seed_b = gr.Number(1, label="to seed", precision=0, minimum=0, elem_id="seed-b")
                    frames = gr.Slider(2, 64, WALK_FRAMES, step=1, label="steps", elem_id="frames")
                walk_button = gr.Button("Walk", elem_id="walk", variant="primary")
            with gr.Column(scale=1):
                walk_gif = gr.Image(
                    label="animation (there and back)",
                    type="filepath",
                    format="gif",
                    interactive=False,
                    height=200,
                    elem_id="walk-gif",
                )
                gif_button = gr.DownloadButton("GIF", elem_id="download-gif", size="sm")
        walk_frames = gr.Gallery(
            label="frames",
            columns=9,
            object_fit="contain",
            height="auto",
            allow_preview=False,
            elem_id="walk-frames",
            format="png",
        )

        # Live response: every slider move re-renders, and only the last pending move is kept.
        fast = dict(show_progress="hidden", trigger_mode="always_last")
        steer_inputs, steer_outputs = [seed_box, label, *sliders], [current, png_button, z_button]
        seed_box.change(steer, steer_inputs, steer_outputs, **fast)
        for s in sliders:
            s.change(steer, steer_inputs, steer_outputs, **fast)
        reset_button.click(lambda: [0.0] * len(sliders), None, sliders)
        for trigger in (show_button.click, seeds_box.submit):
            trigger(show_grid, [seeds_box, label], [grid, shown_seeds])
        reroll_button.click(reroll, [seeds_box, label], [seeds_box, grid, shown_seeds])
        grid.select(pick, [shown_seeds], seed_box)
        to_a.click(lambda s: s, seed_box, seed_a)
        to_b.click(lambda s: s, seed_box, seed_b)
        walk_button.click(walk_between, [seed_a, seed_b, frames, label], [walk_frames, walk_gif, gif_button])
        if num_classes is not None:
            label.change(steer, steer_inputs, steer_outputs, **fast)
            label.change(show_grid, [seeds_box, label], [grid, shown_seeds])
        demo.load(show_grid, [seeds_box, label], [grid, shown_seeds])
        demo.load(steer, steer_inputs, steer_outputs)
    return demo


# --------------------------------------------------------------------------- serving


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_address(host: str, port: int) -> None:
    """A clear line now for a port out of range, an unknown host or a port in use, not a server traceback later."""
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be between 1 and 65535, got {port}")
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise UserError(f"--host {host}: not an address of this machine ({e})") from None
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server sets it: TIME_WAIT is fine
        try:
            probe.bind(address)
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


def serve(
    run: str | Path | None,
    *,
    pretrained: str | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    device: torch.device | None = None,
    ema: bool = True,
) -> None:
    """Serve the demo page for a run directory or checkpoint, or a ``pretrained`` generator (a shipped name,
    an export, a Hub folder or id: ``Generator.from_pretrained``), until Ctrl-C (or SIGTERM)."""
    import_gradio()  # fail on a missing extra, a bad address or a busy port before loading anything
    check_address(host, port)
    device = device or torch.device("cpu")
    if device.type == "cpu":
        # One single-image forward pass of the 28x28 generator took 1.3 ms on one thread and
        # 12 ms on two on the shared 2-core machine: more intra-op threads only add
        # synchronisation, and Gradio already runs handlers in concurrent threads.
        torch.set_num_threads(1)
    if pretrained is not None:
        G = Generator.from_pretrained(pretrained, device=device)
        title, kind = f"pretrained {pretrained}", "exported"
    else:
        ckpt.load(run)  # a foreign or corrupt file fails here, in one line
        G = _load(run, device, ema=ema)
        title, kind = Path(run).resolve().name, "EMA" if ema else "raw"
    num_classes = G.num_classes or None
    info = (
        f"`{title}`: {G.image_size}×{G.image_size}, {G.channels} channel(s), z of {G.latent_dim}, "
        f"{kind} generator, on {device.type}"
    )
    previous_cache = os.environ.get("GRADIO_TEMP_DIR")
    # SIGTERM ends the server like Ctrl-C, so the temporary files are removed either way.
    try:
        with (
            on_signals(_raise_keyboard_interrupt, (signal.SIGTERM,)),
            tempfile.TemporaryDirectory(prefix="dcgan-demo-") as files_dir,
        ):
            # Gradio's copies of the served images go there too, so a stopped server leaves nothing behind.
            os.environ["GRADIO_TEMP_DIR"] = str(Path(files_dir) / "gradio")
            demo = build_demo(
                G,
                directions=latent_directions(G),
                files_dir=Path(files_dir) / "downloads",
                num_classes=num_classes,
                title="dcgan demo",
                info=info,
            )
            _launch(demo, host, port)
    finally:
        if previous_cache is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = previous_cache


def _load(run: str | Path, device: torch.device, *, ema: bool) -> Generator:

    return Generator.from_checkpoint(run, device, ema=ema)


def _launch(demo, host: str, port: int) -> None:
    """Serve ``demo`` until Ctrl-C; no share link, no telemetry, no uploads (the page takes none)."""
    if not is_loopback(host):
        print(
            f"warning: --host {host} serves the page to every machine that can reach this one "
            f"on port {port}; it has no login"
        )
    demo.queue(default_concurrency_limit=4)
    try:
        try:
            demo.launch(
                server_name=host,
                server_port=port,
                share=False,
                inbrowser=False,
                quiet=True,
                ssr_mode=False,
                pwa=False,
                mcp_server=False,
                enable_monitoring=False,
                max_file_size=1,
                prevent_thread_lock=True,
                css=_CSS,
            )
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port}: {str(e).splitlines()[0]}") from None
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        print(f"serving {url} (Ctrl-C to stop)", flush=True)
        demo.block_thread()
    finally:
        demo.close()


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt
