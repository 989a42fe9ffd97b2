"""Datasets (built-in digits, MNIST IDX files, image folders), conversions, and batching."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan import UserError
from dcgan.data import (
    Batches,
    DataSpec,
    ImageFolder,
    InMemoryImages,
    decode_all,
    epoch_order,
    load,
    resize_uint8,
    to_model_range,
    to_uint8,
)

# --------------------------------------------------------------------------- built-in digits


def test_builtin_digits(mnist5k):
    images, labels = mnist5k.images, mnist5k.labels
    assert len(mnist5k) == 5000
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert torch.equal(torch.bincount(labels), torch.full((10,), 500))
    # real digits: black background, white strokes, every image different
    assert images.min() == 0 and images.max() == 255
    assert torch.equal(images[:, :, 0, :], torch.zeros_like(images[:, :, 0, :]))
    assert len(torch.unique(images.flatten(1), dim=0)) == 5000


def test_builtin_digits_max_images_takes_the_first(mnist5k):
    first = load(DataSpec(max_images=16), progress=False)
    assert torch.equal(first.images, mnist5k.images[:16])
    assert torch.equal(first.labels, mnist5k.labels[:16])


def test_builtin_digits_resized_and_converted(mnist5k):
    rgb64 = load(DataSpec(max_images=8, channels=3, image_size=64), progress=False)
    assert rgb64.images.shape == (8, 3, 64, 64) and rgb64.images.dtype == torch.uint8
    assert torch.equal(rgb64.images, resize_uint8(mnist5k.images[:8], 3, 64))


# --------------------------------------------------------------------------- MNIST IDX files


def read_idx_reference(path: Path) -> np.ndarray:
    """An independent reader: 8-bit IDX has a 4-byte magic, one 4-byte size per dimension, data."""
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def test_mnist_idx_test_split(mnist_dir):
    data = load(DataSpec(name="mnist", root=mnist_dir, split="test", download=False), progress=False)
    assert data.images.shape == (10_000, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert torch.bincount(data.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    expected = read_idx_reference(Path(mnist_dir) / "t10k-images-idx3-ubyte.gz")
    assert np.array_equal(data.images[:, 0].numpy(), expected)


def test_mnist_idx_train_split_with_max_images(mnist_dir):
    data = load(DataSpec(name="mnist", root=mnist_dir, max_images=500, download=False), progress=False)
    assert data.images.shape == (500, 1, 28, 28)
    assert data.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_mnist_idx_uncompressed_in_torchvision_layout(tmp_path, mnist_dir):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(Path(mnist_dir) / f"{stem}.gz", "rb") as src, open(raw / stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    ours = load(DataSpec(name="mnist", root=str(tmp_path), split="test", download=False), progress=False)
    gz = load(DataSpec(name="mnist", root=mnist_dir, split="test", download=False), progress=False)
    assert torch.equal(ours.images, gz.images) and torch.equal(ours.labels, gz.labels)


def test_corrupt_idx_file_is_a_user_error(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03garbage")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x00")
    with pytest.raises(UserError, match="cannot read IDX file"):
        load(DataSpec(name="mnist", root=str(tmp_path), split="test", download=False), progress=False)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_offline_without_files_says_where_to_put_them(tmp_path, name):
    with pytest.raises(UserError, match=f"no usable copy under {tmp_path}.*--data-root"):
        load(DataSpec(name=name, root=str(tmp_path), download=False), progress=False)


def test_unknown_dataset_and_split():
    with pytest.raises(UserError, match="unknown dataset 'imagenet'; choose from mnist-5k, mnist"):
        load(DataSpec(name="imagenet"))
    with pytest.raises(UserError, match="unknown split 'val'"):
        load(DataSpec(split="val"))


# --------------------------------------------------------------------------- conversions


def test_model_range_round_trip_is_exact():
    u8 = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    x = to_model_range(u8)
    assert x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0
    assert x.flatten()[0] == -1.0 and x.flatten()[255] == 1.0
    assert torch.equal(to_uint8(x), u8)
    assert torch.equal(to_model_range(u8), to_model_range(u8.clone()))  # no in-place damage to the input
    # out of range values (a generator under bf16, say) clamp rather than wrap
    assert to_uint8(torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.5])).tolist() == [0, 0, 128, 255, 255]


def test_to_uint8_rounds_to_nearest():
    u8 = torch.arange(256, dtype=torch.uint8)
    nudged = to_model_range(u8) + 0.49 / 127.5
    assert torch.equal(to_uint8(nudged), u8)


@pytest.mark.parametrize("size", [32, 64])
def test_resize(mnist5k, size):
    images = mnist5k.images[:8]
    out = resize_uint8(images, 1, size)
    assert out.shape == (8, 1, size, size) and out.dtype == torch.uint8 and out.is_contiguous()
    # a constant image stays that constant at every size
    flat = torch.full((2, 1, 28, 28), 200, dtype=torch.uint8)
    assert torch.equal(resize_uint8(flat, 1, size), torch.full((2, 1, size, size), 200, dtype=torch.uint8))


def test_resize_keeps_the_centre_of_non_square_images():
    # 20 x 40: black quarters left and right, white middle half; the centre crop is all white
    image = torch.zeros(1, 1, 20, 40, dtype=torch.uint8)
    image[..., 10:30] = 255
    assert torch.equal(resize_uint8(image, 1, 20), torch.full((1, 1, 20, 20), 255, dtype=torch.uint8))


def test_resize_at_the_same_size_is_the_identity(mnist5k):
    assert torch.equal(resize_uint8(mnist5k.images[:8], 1, 28), mnist5k.images[:8])


def test_grey_to_rgb_repeats_the_channel(mnist5k):
    grey = mnist5k.images[:8]
    rgb = resize_uint8(grey, 3, 28)
    assert rgb.shape == (8, 3, 28, 28) and rgb.is_contiguous()
    for c in range(3):
        assert torch.equal(rgb[:, c : c + 1], grey)
    # grey -> RGB -> grey is lossless
    assert torch.equal(resize_uint8(rgb, 1, 28), grey)


def test_rgb_to_grey_matches_pillow():
    # the folder path converts with Pillow ("L"); the in-memory path must give the same numbers
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(rgb).convert("L"))
    ours = resize_uint8(torch.from_numpy(rgb).permute(2, 0, 1)[None], 1, 16)
    assert ours.shape == (1, 1, 16, 16)
    assert np.array_equal(ours[0, 0].numpy(), expected)


# --------------------------------------------------------------------------- image folders


def solid(size: tuple[int, int], color, mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, color)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Four readable images in nested folders, one corrupt file, and a file that is no image."""
    root = tmp_path / "images"
    (root / "a" / "b").mkdir(parents=True)
    (root / "c").mkdir()
    solid((50, 50), 128, "L").save(root / "a" / "b" / "grey.jpg")
    (root / "a" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG")
    solid((40, 30), (255, 0, 0)).save(root / "a" / "red.png")
    solid((32, 32), (0, 0, 255, 255), "RGBA").save(root / "c" / "blue.PNG")
    solid((64, 48), (0, 255, 0)).save(root / "green.jpeg", quality=100)
    (root / "notes.txt").write_text("not an image")
    return root


def test_image_folder_finds_images_recursively(image_folder):
    folder = ImageFolder(str(image_folder), channels=3, image_size=32)
    names = [p.relative_to(image_folder).as_posix() for p in folder.files]
    assert names == ["a/b/grey.jpg", "a/corrupt.png", "a/red.png", "c/blue.PNG", "green.jpeg"]


def test_image_folder_decodes_and_skips_the_corrupt_file(image_folder, capsys):
    folder = ImageFolder(str(image_folder), channels=3, image_size=32)
    data = decode_all(folder, progress=False)
    assert isinstance(data, InMemoryImages)
    assert data.images.shape == (4, 3, 32, 32) and data.images.dtype == torch.uint8
    assert [Path(p).name for p in folder.skipped] == ["corrupt.png"]
    assert "skipped 1 unreadable image file(s)" in capsys.readouterr().out
    pixels = data.images.flatten(2).int()  # [4, 3, 1024], in file order without the corrupt one
    assert (pixels[0] == 128).all()  # grey JPEG, every channel
    assert torch.equal(data.images[1], solid_tensor((255, 0, 0), 32))  # red PNG, exact
    assert torch.equal(data.images[2], solid_tensor((0, 0, 255), 32))  # RGBA -> RGB
    assert (pixels[3] - torch.tensor([0, 255, 0])[:, None]).abs().max() <= 2  # green JPEG, lossy


def solid_tensor(color, size: int) -> torch.Tensor:
    return torch.tensor(color, dtype=torch.uint8)[:, None, None].expand(len(color), size, size)


def test_image_folder_grayscale_and_centre_crop(tmp_path, capsys):
    root = tmp_path / "wide"
    root.mkdir()
    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, 20:40] = 255  # only the middle third is white
    Image.fromarray(wide).save(root / "wide.png")
    solid((24, 24), (255, 0, 0)).save(root / "red.png")
    data = load(DataSpec(name="folder", root=str(root), channels=1, image_size=20), progress=False)
    assert data.images.shape == (2, 1, 20, 20)
    assert (data.images[0] == 76).all()  # red in ITU-R 601 luma: 0.299 * 255
    assert (data.images[1] == 255).all()
    assert capsys.readouterr().out == ""  # nothing skipped, nothing said


def test_load_folder_reports_skipped_files(image_folder, capsys):
    data = load(DataSpec(name="folder", root=str(image_folder), channels=3, image_size=32), progress=False)
    assert len(data) == 4
    out = capsys.readouterr().out
    assert "skipped 1 unreadable image file(s)" in out and "corrupt.png" in out


def test_max_images_on_a_folder_takes_the_first_files_and_still_skips(image_folder, capsys):
    spec = DataSpec(name="folder", root=str(image_folder), channels=3, image_size=32, max_images=3)
    data = load(spec, progress=False)  # grey.jpg, corrupt.png, red.png
    assert data.images.shape == (2, 3, 32, 32)
    assert torch.equal(data.images[1], solid_tensor((255, 0, 0), 32))
    assert "skipped 1 unreadable image file(s)" in capsys.readouterr().out


def test_streaming_folder_replaces_a_corrupt_file_by_its_neighbour(image_folder):
    folder = ImageFolder(str(image_folder), channels=3, image_size=32)
    assert torch.equal(folder[1], folder[2])  # corrupt.png -> red.png
    assert folder[1].shape == (3, 32, 32) and folder[1].dtype == torch.uint8


def test_empty_and_missing_folders_are_user_errors(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match=f"no images in {empty}"):
        load(DataSpec(name="folder", root=str(empty), channels=3, image_size=32))
    with pytest.raises(UserError, match="data root not found"):
        load(DataSpec(name="folder", root=str(tmp_path / "missing"), channels=3, image_size=32))
    with pytest.raises(UserError, match="image folder not found"):
        ImageFolder(str(tmp_path / "missing"), channels=3, image_size=32)
    with pytest.raises(UserError, match="--data-root"):
        load(DataSpec(name="folder", root=None))


def test_folder_of_only_corrupt_files_is_a_user_error(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="none of the 1 image files could be read"):
        load(DataSpec(name="folder", root=str(tmp_path), channels=3, image_size=32), progress=False)


# --------------------------------------------------------------------------- batching


def numbered(n: int) -> InMemoryImages:
    """Images whose every pixel is their own index, so a batch tells which images it holds."""
    return InMemoryImages(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone())


def ids(batches) -> list[list[int]]:
    return [b[:, 0, 0, 0].tolist() for b in batches]


CPU = torch.device("cpu")


def test_epoch_is_a_pure_function_of_seed_and_epoch():
    a = Batches(numbered(100), 8, seed=3, device=CPU)
    b = Batches(numbered(100), 8, seed=3, device=CPU)
    assert a.steps_per_epoch == 12
    first = ids(a.epoch(0))
    assert len(first) == 12 and all(len(batch) == 8 for batch in first)
    assert first == ids(b.epoch(0)) == ids(a.epoch(0))
    assert sum(first, []) == epoch_order(100, 3, 0)[:96].tolist()
    assert first != ids(a.epoch(1))
    assert first != ids(Batches(numbered(100), 8, seed=4, device=CPU).epoch(0))
    assert torch.equal(epoch_order(100, 3, 5), epoch_order(100, 3, 5))


def test_batches_hold_the_images_and_are_disjoint_within_an_epoch():
    batches = list(Batches(numbered(100), 8, seed=0, device=CPU).epoch(2))
    assert all(b.shape == (8, 1, 2, 2) and b.dtype == torch.uint8 for b in batches)
    seen = sum(ids(batches), [])
    assert len(seen) == len(set(seen)) == 96  # the incomplete last batch is dropped
    assert set(seen) <= set(range(100))


def test_resume_mid_epoch_reproduces_the_tail():
    batches = Batches(numbered(100), 8, seed=1, device=CPU)
    full = ids(batches.epoch(4))
    for start in (0, 1, 5, 11, 12):
        assert ids(batches.epoch(4, start_step=start)) == full[start:]


def test_two_ranks_take_disjoint_shards():
    data = numbered(101)
    shards = [ids(Batches(data, 8, seed=2, device=CPU, rank=r, world_size=2).epoch(0)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 50 // 8
    flat = [sum(s, []) for s in shards]
    assert not set(flat[0]) & set(flat[1])
    order = epoch_order(101, 2, 0)
    assert flat[0] == order[0::2][:48].tolist() and flat[1] == order[1::2][:48].tolist()


def test_streaming_dataset_gives_the_same_batches_as_memory():
    data = numbered(40)

    class Streamed(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            return data.images[i]

    in_memory = ids(Batches(data, 8, seed=5, device=CPU).epoch(1, start_step=1))
    streamed = ids(Batches(Streamed(), 8, seed=5, device=CPU, num_workers=0).epoch(1, start_step=1))
    assert streamed == in_memory and len(in_memory) == 4


def test_batch_larger_than_the_dataset_is_a_user_error():
    with pytest.raises(UserError, match=r"batch size 65 is larger than the dataset \(64 images\)"):
        Batches(numbered(64), 65, seed=0, device=CPU)
    with pytest.raises(UserError, match=r"\(64 images over 2 ranks\)"):
        Batches(numbered(64), 33, seed=0, device=CPU, rank=0, world_size=2)
    assert Batches(numbered(64), 64, seed=0, device=CPU).steps_per_epoch == 1


def test_a_decompression_bomb_is_skipped_and_counted(image_folder, monkeypatch, capsys):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # only 64x48 green.jpeg is over 2x this: an error
    folder = ImageFolder(str(image_folder), channels=3, image_size=32)
    data = decode_all(folder, progress=False)
    assert sorted(Path(p).name for p in folder.skipped) == ["corrupt.png", "green.jpeg"]
    assert len(data) == 3
    assert "skipped 2 unreadable image file(s)" in capsys.readouterr().out


def test_what_dataloader_workers_receive_pickles(image_folder):
    """Workers started with spawn (macOS, Windows) pickle the dataset and the collate function."""
    import pickle

    from dcgan.data.datasets import _as_list, _Decode

    folder = ImageFolder(str(image_folder), channels=3, image_size=32)
    dataset, collate = pickle.loads(pickle.dumps((_Decode(folder), _as_list)))
    items = collate([dataset[i] for i in range(len(dataset))])
    assert sum(isinstance(x, torch.Tensor) for x in items) == 4 and items[1].endswith("corrupt.png")


@pytest.mark.slow
def test_decoding_works_in_spawned_workers(image_folder, monkeypatch):
    import torch.utils.data as tud

    real_loader = tud.DataLoader

    def spawned(*args, **kwargs):
        kwargs.update(num_workers=1, multiprocessing_context="spawn")
        return real_loader(*args, **kwargs)

    monkeypatch.setattr("dcgan.data.datasets.DataLoader", spawned)
    data = decode_all(ImageFolder(str(image_folder), channels=3, image_size=32), progress=False)
    assert data.images.shape == (4, 3, 32, 32)


def test_no_in_memory_streams_the_digits_too(mnist5k):
    streamed = load(DataSpec(in_memory=False, max_images=64), progress=False)
    assert not isinstance(streamed, InMemoryImages) and len(streamed) == 64
    assert torch.equal(torch.stack([streamed[i] for i in range(64)]), mnist5k.images[:64])
    batches = Batches(streamed, 16, seed=0, device=torch.device("cpu"), num_workers=0)
    in_memory = Batches(InMemoryImages(mnist5k.images[:64]), 16, seed=0, device=torch.device("cpu"))
    for a, b in zip(batches.epoch(0), in_memory.epoch(0), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("download", [False, True])
def test_torchvision_datasets_download_only_when_asked(tmp_path, monkeypatch, download):
    import torchvision

    calls = []

    def fake_mnist(root, download, **kwargs):
        calls.append(download)
        raise RuntimeError("Dataset not found. You can use download=True to download it")

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    message = "add --download to fetch them" if not download else "could not be downloaded"
    with pytest.raises(UserError, match=message):
        load(DataSpec(name="mnist", root=str(tmp_path), download=download), progress=False)
    assert calls == [download]
