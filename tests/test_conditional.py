"""Class-conditional DCGAN: the models, labelled data, training, resume, sampling by class, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan import Discriminator, Generator
from dcgan import checkpoint as ckpt
from dcgan.cli import main
from dcgan.data import Batches, DataSpec, load
from dcgan.errors import UserError
from dcgan.metrics.evaluate import conditional_scores
from dcgan.sample import class_grid, class_labels, parse_class

# --------------------------------------------------------------------------- the models


def test_no_arguments_is_still_exactly_the_unconditional_contract():
    G, D = Generator(), Discriminator()
    assert G.num_classes == 0 and D.num_classes == 0
    assert G.main[0].in_channels == 100 and not hasattr(D, "class_kernels")
    assert G(torch.randn(2, 100)).shape == (2, 1, 28, 28) and D(torch.zeros(2, 1, 28, 28)).shape == (2, 1)
    with pytest.raises(ValueError, match="unconditional"):
        G(torch.randn(2, 100), torch.tensor([0, 1]))


@pytest.mark.parametrize("channels,image_size", [(1, 28), (3, 32), (3, 64)])
def test_the_label_steers_both_networks(channels, image_size):
    G = Generator(num_classes=10, channels=channels, image_size=image_size, width=8).eval()
    D = Discriminator(num_classes=10, channels=channels, image_size=image_size, width=8).eval()
    z = torch.randn(1, 100).expand(2, -1)
    y = torch.tensor([3, 4])
    x = G(z, y)
    assert x.shape == (2, channels, image_size, image_size) and x.abs().max() <= 1
    assert not torch.equal(x[0], x[1])  # the same z drawn as two classes
    same = x[:1].expand(2, -1, -1, -1)
    assert D(same, y).shape == (2, 1)
    scores = D.logits(same, y)
    assert scores[0] != scores[1]  # the same image judged as two classes
    with pytest.raises(ValueError, match="class-conditional"):
        G(z)
    with pytest.raises(ValueError, match="labels of shape"):
        D(same, torch.tensor([1]))


def test_the_discriminator_projects_the_class_onto_its_last_features():
    D = Discriminator(num_classes=5, width=8).eval()
    x, y = torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 4])
    h = D.main[:-1](x).flatten(1)
    expected = D.main(x).view(-1) + (D.class_kernels.weight[y] * h).sum(1)
    assert torch.allclose(D.logits(x, y).view(-1), expected, atol=1e-6)
    assert D.class_kernels.weight.std().item() == pytest.approx(0.02, rel=0.1)  # DCGAN init, N(0, 0.02)


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="num_classes"):
        Generator(num_classes=1)


# --------------------------------------------------------------------------- labels


def test_grid_and_set_labels():
    labels, nrow = class_grid(64, 10)
    assert nrow == 6 and labels.tolist() == [k for k in range(10) for _ in range(6)]
    assert class_grid(3, 10)[0].tolist() == [0, 1, 2]
    G = Generator(num_classes=4, width=8)
    assert class_labels(G, 6, 10).tolist() == [2, 3, 0, 1] and class_labels(G, 0, 3, label=2).tolist() == [2, 2, 2]
    assert class_labels(Generator(width=8), 0, 3) is None
    assert parse_class("Sneaker", ("Bag", "Sneaker")) == 1 and parse_class("0", ("Bag", "Sneaker")) == 0
    for bad, match in (("2", "out of range"), ("-1", "out of range"), ("cat", "unknown class")):
        with pytest.raises(UserError, match=match):
            parse_class(bad, ("Bag", "Sneaker"))


def _class_folder(root, mnist5k, per_class: int = 12, names=("zero", "one", "two")):
    """Digits 0, 1 and 2 of the built-in set as PNGs in one sub-folder per class (named out of order)."""
    for k, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        picks = (mnist5k.labels == k).nonzero().view(-1)[:per_class]
        for i in picks.tolist():
            Image.fromarray(mnist5k.images[i, 0].numpy()).save(folder / f"{i:05d}.png")
    return sorted(names)


def test_a_class_folder_labels_each_image_by_its_sub_folder(tmp_path, mnist5k):
    names = _class_folder(tmp_path / "digits", mnist5k)
    (tmp_path / "digits" / "two" / "broken.png").write_bytes(b"not a png")  # skipped; labels stay aligned
    spec = DataSpec(name="folder", root=str(tmp_path / "digits"), labels=True)
    for attempt in ("decoded", "from the decoded cache"):
        data = load(spec, progress=False)
        assert data.labels.tolist() == [names.index(n) for n in names for _ in range(12)], attempt
        digit_of = {"zero": 0, "one": 1, "two": 2}
        for image, label in zip(data.images, data.labels):
            matches = (mnist5k.images == image).flatten(1).all(1).nonzero().view(-1)
            assert mnist5k.labels[matches[0]].item() == digit_of[names[label]]
    streamed = load(
        DataSpec(name="folder", root=str(tmp_path / "digits"), labels=True, in_memory=False), progress=False
    )
    image, label = streamed[0]
    assert image.shape == (1, 28, 28) and label == 0


def test_batches_carry_the_labels_of_their_images(mnist5k):
    batches = Batches(mnist5k, 32, seed=0, device=torch.device("cpu"), labels=True)
    for images, labels in list(batches.epoch(0))[:3]:
        for image, label in zip(images, labels):
            index = (mnist5k.images == image).flatten(1).all(1).nonzero().view(-1)
            assert label.item() in mnist5k.labels[index].tolist()


def test_unlabelled_or_loose_folders_are_refused_in_one_line(tmp_path, mnist5k, capsys):
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(mnist5k.images[0, 0].numpy()).save(loose / "a.png")
    cases = [
        (["--data", "fake"], "fake has no class labels"),
        (["--data", "folder", "--data-root", str(loose)], "one sub-folder per class"),
    ]
    for extra, match in cases:
        run = tmp_path / "run"
        assert main(["train", "--conditional", "--steps", "1", "--run-dir", str(run), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err and "Traceback" not in err, err
        assert not run.exists()


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory, tiny_train):
    run = tmp_path_factory.mktemp("cond") / "run"
    assert (
        main(["train", "--conditional", *tiny_train, "--max-images", "256", "--steps", "6", "--run-dir", str(run)]) == 0
    )
    return run


def test_a_conditional_run_records_its_classes_and_draws_a_row_per_class(conditional_run):
    cfg = json.loads((conditional_run / "config.json").read_text())
    assert cfg["conditional"] is True and cfg["class_names"] == [str(k) for k in range(10)]
    state = ckpt.load(conditional_run)
    assert state["G"]["main.0.weight"].shape[0] == 100 + 10 and "class_kernels.weight" in state["D"]
    grid = Image.open(conditional_run / "samples" / "final.png")
    assert grid.size == (1 * (28 + 2) + 2, 10 * (28 + 2) + 2)  # 16 samples, 10 classes: one column, ten rows


def test_a_conditional_run_resumes_bit_identically(tmp_path, tiny_train):
    straight, parted = tmp_path / "straight", tmp_path / "parted"
    common = ["--conditional", *tiny_train, "--max-images", "256"]
    assert main(["train", *common, "--steps", "6", "--run-dir", str(straight)]) == 0
    assert main(["train", *common, "--steps", "3", "--run-dir", str(parted)]) == 0
    assert main(["train", "--resume", str(parted), "--steps", "6"]) == 0
    a, b = ckpt.load(straight), ckpt.load(parted)
    for net in ("G", "D", "G_ema"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key)


def test_sampling_a_class_and_the_labels_in_an_npz(conditional_run, tmp_path, capsys):
    out = tmp_path / "sevens.npz"
    assert main(["sample", str(conditional_run), "--class", "7", "-n", "12", "-o", str(out)]) == 0
    sevens = np.load(out)
    assert sevens["images"].shape == (12, 28, 28, 1) and sevens["labels"].tolist() == [7] * 12
    mixed = tmp_path / "mixed.npz"
    assert main(["sample", str(conditional_run), "-n", "12", "-o", str(mixed)]) == 0
    assert np.load(mixed)["labels"].tolist() == [k % 10 for k in range(12)]
    # image k of a class is the same z as image k of the mixture when their classes agree: label 7 is image 7
    assert np.array_equal(np.load(mixed)["images"][7], sevens["images"][7])
    grid = tmp_path / "grid.png"
    assert main(["sample", str(conditional_run), "-n", "30", "-o", str(grid)]) == 0
    assert Image.open(grid).size == (3 * 30 + 2, 10 * 30 + 2)
    assert "one row of 3 per class" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--class", "10"], "out of range"),
        (["--class", "sneaker"], "unknown class 'sneaker'"),
        (["--seeds", "1-3"], "needs --class"),
    ],
)
def test_class_mistakes_are_one_line(conditional_run, tmp_path, capsys, argv, match):
    out = tmp_path / "x.png"
    assert main(["sample", str(conditional_run), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err and "Traceback" not in err, err
    assert not out.exists()


def test_class_on_an_unconditional_run_is_one_line(tmp_path, tiny_train, capsys):
    run = tmp_path / "plain"
    assert main(["train", *tiny_train, "--steps", "1", "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--class", "3", "-o", str(tmp_path / "x.png")]) == 2
    assert "class-conditional" in capsys.readouterr().err


def test_the_latent_tools_draw_the_chosen_class(conditional_run, tmp_path):
    G = Generator.from_checkpoint(conditional_run, torch.device("cpu"))
    seeds = tmp_path / "seeds.npz"
    assert main(["sample", str(conditional_run), "--seeds", "0-2", "--class", "4", "-o", str(seeds)]) == 0
    from dcgan.data import to_uint8
    from dcgan.latent import seed_noise

    with torch.no_grad():
        expected = torch.cat([to_uint8(G(seed_noise([s], 100), torch.tensor([4]))) for s in range(3)])
    assert np.array_equal(np.load(seeds)["images"], expected.permute(0, 2, 3, 1).numpy())
    assert (
        main(
            [
                "interpolate",
                str(conditional_run),
                "--seeds",
                "0,1",
                "--frames",
                "3",
                "--class",
                "2",
                "-o",
                str(tmp_path / "walk.png"),
            ]
        )
        == 0
    )
    assert main(["arithmetic", str(conditional_run), "1 - 2 + 3", "--class", "5", "-o", str(tmp_path / "sum.png")]) == 0


# --------------------------------------------------------------------------- evaluation


def test_conditional_accuracy_and_fid_per_class_count_what_they_say():
    class Named(torch.nn.Module):
        num_classes, class_names = 3, ("b", "a", "c")

    class Extractor:
        labels = ("a", "b", "c")

    fake_labels = torch.tensor([0, 1, 2, 0, 1, 2])
    # the classifier's index for the wanted class: b -> 1, a -> 0, c -> 2; images 4 and 5 are wrong
    logits = torch.nn.functional.one_hot(torch.tensor([1, 0, 2, 1, 2, 0]), 3).float()
    gen = torch.Generator().manual_seed(0)
    fake = torch.randn(6, 2, generator=gen)
    real, real_labels = torch.randn(30, 2, generator=gen), torch.arange(30) % 3
    accuracy, per_class = conditional_scores(Named(), fake_labels, fake, logits, Extractor(), real, real_labels)
    assert accuracy == pytest.approx(4 / 6)
    assert list(per_class) == ["b", "a", "c"]
    from dcgan.metrics.evaluate import frechet_distance

    assert per_class["a"] == pytest.approx(frechet_distance(real[real_labels == 1], fake[fake_labels == 1]))
    # an extractor whose classes are not the generator's gives no accuracy
    Extractor.labels = ("x", "y", "z")
    assert conditional_scores(Named(), fake_labels, fake, logits, Extractor(), real, None) == (None, None)


def test_eval_of_a_conditional_run_reports_accuracy_and_fid_per_class(conditional_run, capsys):
    assert main(["eval", str(conditional_run), "--num-images", "200", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0.0 <= result["conditional_accuracy"] <= 1.0
    assert list(result["class_fid"]) == [str(k) for k in range(10)]
