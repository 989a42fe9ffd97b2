"""augment: DiffAugment's ops move, cut and recolour images as specified, gradients pass through
them, and a training run with --augment and --mirror records them and resumes exactly."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from dcgan import Discriminator, Generator
from dcgan import checkpoint as ckpt
from dcgan.augment import (
    POLICIES,
    brightness,
    color,
    contrast,
    cutout,
    diff_augment,
    mirror,
    parse_policy,
    saturation,
    translation,
)
from dcgan.data import to_model_range
from dcgan.errors import UserError
from dcgan.losses import r1_penalty
from dcgan.step import Logits, train_step

OPS = {
    "brightness": brightness,
    "saturation": saturation,
    "contrast": contrast,
    "color": color,
    "translation": translation,
    "cutout": cutout,
}


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # the ops draw from the global RNG: the same draws on every run


def images(n: int = 64, channels: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --------------------------------------------------------------------------- the policy string


def test_policy_parsing():
    assert parse_policy("") == ()
    assert parse_policy("color,translation,cutout") == POLICIES
    assert parse_policy(" cutout , color ") == ("cutout", "color")  # the order given is the order applied
    with pytest.raises(
        UserError, match="unknown policy 'bogus'; use a comma-separated list of color, translation, cutout"
    ):
        parse_policy("color,bogus")
    with pytest.raises(UserError, match="twice"):
        parse_policy("color,color")


def test_an_empty_policy_is_the_identity():
    x = images()
    assert diff_augment(x, ()) is x


# --------------------------------------------------------------------------- each op


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("channels", [1, 3])
def test_ops_keep_shape_dtype_and_device_and_pass_gradients(name, channels):
    op = OPS[name]
    x = images(channels=channels).requires_grad_(True)
    y = op(x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device and torch.isfinite(y).all()
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y * weights).sum().backward()
    assert torch.isfinite(x.grad).all()
    if name == "saturation" and channels == 1:
        assert torch.equal(y, x)  # no colour to scale on one channel: exactly the input
    else:
        assert x.grad.abs().sum() > 0
    assert op(x.detach().bfloat16()).dtype == torch.bfloat16  # autocast's fakes stay in their dtype


def test_ops_keep_the_channels_last_layout():
    x = images().contiguous(memory_format=torch.channels_last)
    for op in OPS.values():
        assert op(x).is_contiguous(memory_format=torch.channels_last), op.__name__


def test_brightness_shifts_each_image_by_one_value_in_a_quarter_of_the_range():
    x = images()
    shift = brightness(x) - x
    per_image = shift.flatten(1)
    torch.testing.assert_close(per_image, per_image[:, :1].expand_as(per_image))
    assert per_image.abs().max() <= 0.5 and per_image[:, 0].std() > 0.1  # a spread, not one shared value


def test_saturation_keeps_each_pixels_grey_value_and_contrast_each_images_mean():
    x = images()
    torch.testing.assert_close(saturation(x).mean(1), x.mean(1))
    torch.testing.assert_close(contrast(x).mean((1, 2, 3)), x.mean((1, 2, 3)))
    # contrast scales distances from the mean by one factor in [0.5, 1.5] per image
    mean = x.mean((1, 2, 3), keepdim=True)
    ratio = (contrast(x) - mean) / (x - mean)
    for r, far in zip(ratio, (x - mean).abs() > 0.1):  # away from the mean, where the ratio is well conditioned
        r = r[far]
        assert 0.5 - 1e-4 <= r.min() and r.max() <= 1.5 + 1e-4
        torch.testing.assert_close(r, r[:1].expand_as(r), rtol=1e-4, atol=1e-4)
    grey = torch.full((4, 3, 8, 8), 0.25)
    torch.testing.assert_close(saturation(grey), grey)  # nothing to scale in a grey image


def test_translation_moves_a_pixel_by_at_most_an_eighth_and_pads_with_zeros():
    n, size, reach = 256, 16, 2  # 16 / 8
    x = torch.full((n, 1, size, size), 0.5)
    x[:, :, 8, 8] = 1.0  # a marker, far enough in that no shift loses it
    y = translation(x)
    shifts = set()
    for i in range(n):
        ((dy, dx),) = (torch.nonzero(y[i, 0] == 1.0) - torch.tensor([8, 8])).tolist()
        assert abs(dy) <= reach and abs(dx) <= reach
        shifts.add((dy, dx))
        # the whole image moved by (dy, dx), and what came in from outside is zero
        want = torch.zeros(size, size)
        want[max(dy, 0) : size + min(dy, 0), max(dx, 0) : size + min(dx, 0)] = 0.5
        want[8 + dy, 8 + dx] = 1.0
        assert torch.equal(y[i, 0], want), (dy, dx)
    assert len(shifts) == (2 * reach + 1) ** 2  # every shift occurs


def test_translation_moves_every_channel_alike():
    x = images(n=32)
    y = translation(x)
    for i in range(len(x)):
        hits = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(y[i], torch.roll(x[i], (dy, dx), (1, 2)) * (_window(dy, dx, 16)))
        ]
        assert len(hits) == 1


def _window(dy: int, dx: int, size: int) -> torch.Tensor:
    """1 where a shift by (dy, dx) brings in image content, 0 where it brings in padding."""
    w = torch.zeros(size, size)
    w[max(dy, 0) : size + min(dy, 0), max(dx, 0) : size + min(dx, 0)] = 1
    return w


def test_cutout_zeros_one_square_of_half_the_side_clipped_at_the_border():
    n, size, side = 512, 16, 8
    x = torch.ones(n, 3, size, size)
    y = cutout(x)
    assert torch.equal(y[:, :1].expand_as(y), y)  # the same square on every channel
    full = 0
    for i in range(n):
        rows = torch.nonzero((y[i, 0] == 0).any(1)).flatten().tolist()
        cols = torch.nonzero((y[i, 0] == 0).any(0)).flatten().tolist()
        # one rectangle: its rows and columns contiguous, and every pixel in it zero
        assert rows == list(range(rows[0], rows[-1] + 1)) and cols == list(range(cols[0], cols[-1] + 1))
        assert (y[i, 0] == 0).sum() == len(rows) * len(cols)
        # the square clipped by the image: side 8 unless it meets the border, at least half inside
        for extent in (rows, cols):
            assert side // 2 <= len(extent) <= side
            if extent[0] > 0 and extent[-1] < size - 1:
                assert len(extent) == side
        full += len(rows) == len(cols) == side
    assert full > n // 8  # 28% of the placements fit whole
    corner = (y[:, 0, 0, 0] == 0).sum()  # corners can be hidden too
    assert corner > 0


def test_mirror_flips_exactly_the_chosen_images():
    x = images(n=200)
    torch.manual_seed(3)
    chosen = torch.rand(200) < 0.5  # mirror's own draw, taken from the same global RNG state
    torch.manual_seed(3)
    y = mirror(x)
    for i in range(len(x)):
        assert torch.equal(y[i], x[i].flip(-1) if chosen[i] else x[i])
    assert 60 < chosen.sum() < 140


# --------------------------------------------------------------------------- in the step


def tiny_setup(mnist5k):
    G, D = Generator(width=8), Discriminator(width=8)
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    return G, D, opt_G, opt_D, to_model_range(mnist5k.images[:8]), torch.randn(8, 100)


def snapshot(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.named_parameters()}


class Recording(Logits):
    """Logits that keep what D was shown."""

    def __init__(self, discriminator) -> None:
        super().__init__(discriminator)
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x)
        return super().forward(x)


def test_the_step_shows_d_augmented_images_and_g_learns_through_them(mnist5k):
    G, D, opt_G, opt_D, real, z = tiny_setup(mnist5k)
    G_before = snapshot(G)
    D_logits = Recording(D)
    stats = train_step(G, D_logits, opt_G, opt_D, real, z, augment=("translation", "cutout"))
    assert torch.isfinite(stats).all()
    seen_real, seen_fake, seen_fake_for_G = D_logits.seen
    assert not torch.equal(seen_real, real)
    # every image of each batch lost a square: at least 4 x 4 pixels exactly zero in each
    for batch in (seen_real, seen_fake, seen_fake_for_G):
        assert ((batch == 0).flatten(1).sum(1) >= 16).all()
    assert seen_fake.grad_fn is None and seen_fake_for_G.grad_fn is not None  # only the G step reaches G
    assert all(not torch.equal(p, G_before[k]) for k, p in G.named_parameters())


def test_r1_is_taken_at_the_augmented_reals_that_d_sees(mnist5k):
    """With SGD (lr 1), the D update with R1 minus the one without is -weight x the penalty's gradient
    at aug(real): the first draws of the step, reproduced from the same seed."""
    G, D, _, _, real, z = tiny_setup(mnist5k)
    policy = ("color", "translation", "cutout")
    updates = []
    for weight in (0.0, 0.5):
        g, d = copy.deepcopy(G), copy.deepcopy(D)
        before = snapshot(d)
        opt_G, opt_D = torch.optim.SGD(g.parameters(), lr=1.0), torch.optim.SGD(d.parameters(), lr=1.0)
        torch.manual_seed(7)
        train_step(g, Logits(d), opt_G, opt_D, real, z, r1_weight=weight, augment=policy)
        updates.append({k: v.detach() - before[k] for k, v in d.named_parameters()})
    torch.manual_seed(7)
    x = diff_augment(real, policy).requires_grad_(True)
    d = copy.deepcopy(D)
    d.train()
    grads = torch.autograd.grad(r1_penalty(d.logits(x), x), list(d.parameters()))
    for (name, _), grad in zip(d.named_parameters(), grads):
        torch.testing.assert_close(updates[1][name] - updates[0][name], -0.5 * grad, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- a training run


def test_a_run_with_augment_and_mirror_trains_and_records_them(tmp_path, tiny_train):
    from dcgan.cli import main

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                *tiny_train,
                "--augment",
                "color,translation,cutout",
                "--mirror",
                "--steps",
                "3",
                "--sample-every-steps",
                "1000",
                "--run-dir",
                str(run),
            ]
        )
        == 0
    )
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["augment"] == "color,translation,cutout" and recorded["mirror"] is True
    state = ckpt.load(run)
    assert state["step"] == 3 and state["config"]["augment"] == "color,translation,cutout"
    assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())
