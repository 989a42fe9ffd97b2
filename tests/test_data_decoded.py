"""data.decoded: image folders decode once; a second load memory-maps the stored array; a change decodes again."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan.cache import cache_home
from dcgan.data import DataSpec, decoded, load


def _folder(path, count: int, seed: int = 0):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path / f"{i:03d}.png")
    return path


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Counts the real decodes done through the cache, which starts empty for each test."""
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))
    counted = []
    real = decoded.decode_all

    def counting(dataset, **kwargs):
        counted.append(len(dataset))
        return real(dataset, **kwargs)

    monkeypatch.setattr(decoded, "decode_all", counting)
    return counted


def _spec(root, **kw):
    return DataSpec(name="folder", root=str(root), channels=3, image_size=8, in_memory=True, **kw)


def test_a_second_load_reads_the_cache_and_gives_the_same_images(tmp_path, calls):
    root = _folder(tmp_path / "imgs", 5)
    first = load(_spec(root), progress=False).images
    entries = sorted(p.suffix for p in (cache_home() / "decoded").glob("folder-8px-3ch-*"))
    second = load(_spec(root), progress=False).images
    assert calls == [5] and first.shape == (5, 3, 8, 8) and first.dtype == torch.uint8
    assert torch.equal(first, second) and entries == [".json", ".u8"]


@pytest.mark.parametrize("change", ["rewrite", "add", "remove", "size"])
def test_a_changed_folder_or_size_decodes_again(tmp_path, calls, change):
    root = _folder(tmp_path / "imgs", 4)
    before = load(_spec(root), progress=False).images
    if change == "rewrite":  # new content and a new modification time
        Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(root / "001.png")
        os.utime(root / "001.png", ns=(1, 1))
    elif change == "add":
        Image.fromarray(np.zeros((12, 10, 3), np.uint8)).save(root / "zzz.png")
    elif change == "remove":
        (root / "003.png").unlink()
    after = load(
        DataSpec(name="folder", root=str(root), channels=3, image_size=16 if change == "size" else 8, in_memory=True),
        progress=False,
    ).images
    assert len(calls) == 2
    if change == "rewrite":
        assert torch.equal(after[1], torch.zeros(3, 8, 8, dtype=torch.uint8)) and torch.equal(after[0], before[0])
    elif change == "add":
        assert len(after) == 5 and torch.equal(after[:4], before)
    elif change == "remove":
        assert torch.equal(after, before[:3])
    else:
        assert after.shape == (4, 3, 16, 16)


def test_max_images_is_part_of_the_key(tmp_path, calls):
    root = _folder(tmp_path / "imgs", 4)
    full = load(_spec(root), progress=False).images
    part = load(_spec(root, max_images=2), progress=False).images
    assert calls == [4, 2] and torch.equal(part, full[:2])


def test_a_broken_cache_entry_is_decoded_again(tmp_path, calls):
    root = _folder(tmp_path / "imgs", 3)
    first = load(_spec(root), progress=False).images
    (array,) = (cache_home() / "decoded").glob("folder-8px-3ch-*.u8")
    array.write_bytes(b"short")  # truncated: its size no longer matches the recorded shape
    again = load(_spec(root), progress=False).images
    assert calls == [3, 3] and torch.equal(first, again)


def test_unreadable_files_are_reported_on_every_load(tmp_path, calls, capsys):
    root = _folder(tmp_path / "imgs", 3)
    (root / "broken.png").write_bytes(b"not a png")
    for _ in range(2):
        images = load(_spec(root), progress=False).images
        assert len(images) == 3
        assert "skipped 1 unreadable image file(s)" in capsys.readouterr().out
    assert calls == [4]


def test_sources_without_a_file_list_are_not_cached(tmp_path, calls):
    spec = DataSpec(name="fake", channels=3, image_size=8, max_images=4, in_memory=True)
    load(spec, progress=False)
    load(spec, progress=False)
    assert calls == [4, 4] and not list((cache_home() / "decoded").glob("fake-*"))


def test_decoding_leaves_the_global_rng_alone(tmp_path, calls):
    """A run seeds, loads its data, then initialises its weights: decoded or cached, the same weights."""
    root = _folder(tmp_path / "imgs", 3)
    draws = []
    for _ in range(2):  # the first load decodes, the second reads the cache
        torch.manual_seed(0)
        load(_spec(root), progress=False)
        draws.append(torch.rand(4))
    torch.manual_seed(0)
    assert calls == [3] and torch.equal(draws[0], draws[1]) and torch.equal(draws[0], torch.rand(4))
