"""Driving ``dcgan demo`` in headless Chromium: shared by the browser test and scripts/demo_timing.py.

Chromium and chromedriver are Debian's (``apt-get install chromium chromium-driver``);
Selenium is pointed at them explicitly, so selenium-manager never downloads a browser.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

CHROMIUM = os.environ.get("DCGAN_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("DCGAN_CHROMEDRIVER", "/usr/bin/chromedriver")


def missing() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    for module, extra in (("gradio", "demo"), ("selenium", "test")):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[{extra}]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} is missing (apt-get install {package})"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(run: str | Path, port: int, *, timeout_s: float = 180) -> subprocess.Popen:
    """``dcgan demo RUN --port P`` in a subprocess, returned once the page answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcgan", "demo", str(run), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dcgan demo exited with {proc.returncode}:\n{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop_demo(proc)
    raise RuntimeError(f"dcgan demo did not answer on port {port} within {timeout_s:.0f} s")


def stop_demo(proc: subprocess.Popen) -> str:
    """SIGTERM (the server closes and removes its files), then its output."""
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


def make_driver(*, width: int = 1400, height: int = 1500, download_dir: str | Path | None = None):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        # every name but the loopback fails to resolve: the page must work with no network
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(arg)
    if download_dir is not None:
        options.add_experimental_option(
            "prefs", {"download.default_directory": str(download_dir), "download.prompt_for_download": False}
        )
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    if download_dir is not None:
        driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


def wait_for(condition, *, timeout_s: float = 60, poll_s: float = 0.05, what: str = "the page"):
    """The first truthy value of ``condition()``; an AssertionError naming ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read()


def image_array(url: str) -> np.ndarray:
    """The pixels a URL serves: uint8 [H, W] (grayscale) or [H, W, 3]."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(fetch(url))))


def srcs(driver, selector: str) -> list[str]:
    # read in one script: the page re-renders while we look, and element handles go stale
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), e => e.src || '')", selector
    )


def current_src(driver) -> str:
    found = srcs(driver, "#current-image img")
    return found[0] if found else ""


def set_number(driver, elem_id: str, value) -> None:
    """Select the box's text and type ``value`` then Enter, as a person would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(f"{value}{Keys.ENTER}")


def set_text(driver, elem_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(f"{value}{Keys.ENTER}")


def slider_keys(driver, elem_id: str, *keys) -> None:
    """Focus a slider's range input and press keys (Keys.RIGHT moves one step, Keys.END to the maximum)."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=range]").send_keys(*keys)


def click(driver, elem_id: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{elem_id}").click()


def value_of(driver, selector: str) -> str:
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.value : ''", selector)
