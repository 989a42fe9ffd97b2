"""How fast the demo page answers: each interaction's server-side compute, and its round trip in Chromium.

    python scripts/demo_timing.py RUN [--repeats 20] [--no-browser]

Server side: the page's actions (``dcgan.demo.Actions``) called in this process, one thread,
as ``dcgan demo`` runs them. Round trip: ``dcgan demo RUN`` in a subprocess driven in headless
Chromium, from the keystroke or click until every new image of the answer is loaded in the page
(the Gradio queue, PNG encoding and the HTTP fetches included). Prints medians and maxima in ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from dcgan.models import Generator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # demo_page: the helpers the browser test drives the page with

# Wait in the page until the last marker image has a new URL and every image under `region` has loaded.
_WAIT_JS = """
const [marker, old, region, done] = arguments;
(function poll() {
  const all = document.querySelectorAll(marker), m = all[all.length - 1];
  const imgs = Array.from(document.querySelectorAll(region));
  if (m && m.src && m.src !== old && imgs.length && imgs.every(i => i.complete && i.naturalWidth > 0)) done(true);
  else setTimeout(poll, 1);
})();
"""


def summary(name: str, times_s: list[float]) -> str:
    ms = sorted(t * 1000 for t in times_s)
    return f"{name:<34} median {statistics.median(ms):7.1f} ms   max {ms[-1]:7.1f} ms   (n={len(ms)})"


def server_side(run: str, repeats: int) -> None:
    from dcgan.demo import Actions, DemoModel, latent_directions

    torch.set_num_threads(1)  # as dcgan demo runs on CPU
    G = Generator.from_checkpoint(run, torch.device("cpu"))
    start = time.perf_counter()
    directions = latent_directions(G)
    print(f"generator: {G.image_size}x{G.image_size}, {G.channels} channel(s), width {G.width}")
    print(summary("start-up: latent directions", [time.perf_counter() - start]))
    with tempfile.TemporaryDirectory() as files_dir:
        act = Actions(DemoModel(G, directions=directions), files_dir)
        cases = {
            "grid of 16 seeds (re-roll)": lambda i: act.grid(f"{16 * i}-{16 * i + 15}"),
            "typed seed (image + downloads)": lambda i: act.steer(1000 + i, None, 0, 0, 0, 0, 0),
            "slider move (image + downloads)": lambda i: act.steer(1000, None, 0.1 * (i + 1), 0, 0, 0, 0),
            "walk, 16 steps (17 frames + GIF)": lambda i: act.walk(i, i + 1, 16),
        }
        for name, fn in cases.items():
            fn(repeats)  # warm-up
            times = []
            for i in range(repeats):
                t = time.perf_counter()
                fn(i)
                times.append(time.perf_counter() - t)
            print(summary(name, times))


def round_trips(run: str, repeats: int) -> None:
    import demo_page as page
    from selenium.webdriver.common.keys import Keys

    proc = page.start_demo(run, page.free_port())
    port = proc.args[proc.args.index("--port") + 1]
    driver = page.make_driver()
    driver.set_script_timeout(60)
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        page.wait_for(lambda: len([s for s in page.srcs(driver, "#grid img") if s]) == 16, what="the grid")
        page.wait_for(lambda: page.current_src(driver), what="the seed image")

        def timed(action, marker: str, region: str) -> float:
            old = (page.srcs(driver, marker) or [""])[-1]
            t = time.perf_counter()
            action()
            driver.execute_async_script(_WAIT_JS, marker, old, region)
            return time.perf_counter() - t

        def seed_action(i):
            return lambda: page.set_number(driver, "seed", 1 + i % 9)  # one keystroke, one request

        def walk_action(i):
            page.set_number(driver, "seed-b", 100 + i)  # typing here sends nothing; the click does
            return lambda: page.click(driver, "walk")

        cases = {
            "grid of 16 seeds (re-roll)": (lambda i: lambda: page.click(driver, "reroll"), "#grid img", "#grid img"),
            "typed seed": (seed_action, "#current-image img", "#current-image img"),
            "slider move (one step)": (
                lambda i: lambda: page.slider_keys(driver, "direction-1", Keys.RIGHT),
                "#current-image img",
                "#current-image img",
            ),
            "walk, 16 steps (17 frames + GIF)": (walk_action, "#walk-gif img", "#walk-frames img, #walk-gif img"),
        }
        for name, (make, marker, region) in cases.items():
            times = [timed(make(i), marker, region) for i in range(repeats + 1)][1:]  # the first warms up
            print(summary(name, times))
    finally:
        driver.quit()
        page.stop_demo(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run directory or checkpoint")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-browser", action="store_true", help="server-side times only")
    args = parser.parse_args()
    print("server side (in process, one thread):")
    server_side(args.run, args.repeats)
    if not args.no_browser:
        print("round trip in headless Chromium (keystroke or click until the new images are loaded):")
        round_trips(args.run, args.repeats)


if __name__ == "__main__":
    main()
