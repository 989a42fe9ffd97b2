"""Seeds and latent paths: a seed's vector is its own, walks start and end where they should."""

from __future__ import annotations

import pytest
import torch

from dcgan.errors import UserError
from dcgan.latent import lerp, parse_seeds, seed_noise, slerp, walk


def test_parse_seeds_lists_and_ranges():
    assert parse_seeds("3,10-12") == [3, 10, 11, 12]
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds(" 5 , 5 ") == [5, 5]


@pytest.mark.parametrize("bad", ["", "a", "3-1", "-2", "1,x-3", ","])
def test_parse_seeds_rejects_bad_lists(bad):
    with pytest.raises(UserError):
        parse_seeds(bad)


def test_seed_vector_depends_on_its_seed_alone():
    alone = seed_noise([7], 100)[0]
    among = seed_noise([3, 7, 1000], 100)[1]
    assert torch.equal(alone, among)
    assert not torch.equal(seed_noise([8], 100)[0], alone)


def test_slerp_keeps_the_norm_and_hits_both_ends():
    a, b = seed_noise([1, 2], 64)
    b = b * (a.norm() / b.norm())  # equal norms: every point of the path has that norm
    path = slerp(a, b, torch.linspace(0, 1, 9))
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    torch.testing.assert_close(path.norm(dim=1), a.norm().expand(9))
    # a straight line cuts inside the sphere
    assert lerp(a, b, torch.tensor([0.5]))[0].norm() < 0.9 * a.norm()


def test_walk_lengths_and_ends():
    z = seed_noise([1, 2, 3], 16)
    open_path = walk(z, 4)
    assert open_path.shape == (9, 16)
    torch.testing.assert_close(open_path[[0, 4, 8]], z)
    loop = walk(z, 4, loop=True)
    assert loop.shape == (12, 16)
    torch.testing.assert_close(loop[[0, 4, 8]], z)
    with pytest.raises(UserError):
        walk(z, 1)
    with pytest.raises(UserError):
        walk(z[:1], 4)
    with pytest.raises(UserError):
        walk(z, 4, mode="cubic")
