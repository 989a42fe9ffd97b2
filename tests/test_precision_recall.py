"""k-NN precision and recall (Kynkäänniemi et al., 2019) on constructed cases, against a brute-force reference."""

from __future__ import annotations

import pytest
import torch

from dcgan.metrics.precision_recall import knn_radii, precision_recall


def brute_force(real: torch.Tensor, fake: torch.Tensor, k: int) -> tuple[float, float]:
    """The definition, one point at a time."""

    def radius(points, i):
        d = sorted(float((points[i] - points[j]).norm()) for j in range(len(points)) if j != i)
        return d[k - 1]

    def inside(x, points):
        return any(float((x - points[i]).norm()) <= radius(points, i) for i in range(len(points)))

    return (sum(inside(f, real) for f in fake) / len(fake), sum(inside(r, fake) for r in real) / len(real))


def clusters(n: int, *, modes: list[int], seed: int) -> torch.Tensor:
    """Points around 10 well-separated centres in 4 dimensions (low, so k=3 balls estimate them well)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(10, 4, generator=torch.Generator().manual_seed(99)) * 20  # >= 34 apart
    which = torch.tensor(modes)[torch.randint(len(modes), (n,), generator=g)]
    return centres[which] + torch.randn(n, 4, generator=g)


def test_matches_the_definition_point_by_point():
    real, fake = torch.randn(40, 3), torch.randn(30, 3) * 1.5 + 0.5
    for k in (1, 3):
        result = precision_recall(real, fake, k=k, max_real=40, chunk_rows=7)
        assert (result.precision, result.recall) == pytest.approx(brute_force(real, fake, k), abs=1e-12)


def test_radii_are_the_kth_neighbour_distance():
    points = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    assert knn_radii(points, k=1).tolist() == [1.0, 1.0, 2.0, 4.0]
    assert knn_radii(points, k=2).tolist() == [3.0, 2.0, 3.0, 6.0]
    with pytest.raises(ValueError):
        knn_radii(points, k=4)


def test_a_replayed_real_set_is_one_and_one():
    real = clusters(2000, modes=list(range(10)), seed=0)
    result = precision_recall(real, real.clone())
    assert (result.precision, result.recall) == (1.0, 1.0)
    fresh = precision_recall(real, clusters(2000, modes=list(range(10)), seed=1))
    assert fresh.precision > 0.9 and fresh.recall > 0.9, "another sample of the same distribution is near 1/1"


def test_one_mode_has_high_precision_and_low_recall():
    real = clusters(2000, modes=list(range(10)), seed=0)
    collapsed = clusters(2000, modes=[3], seed=1)
    result = precision_recall(real, collapsed)
    assert result.precision > 0.9
    assert 0.05 < result.recall < 0.15  # one mode of ten covers about a tenth of the data
    off = precision_recall(real, clusters(2000, modes=[0], seed=1) + 100.0)
    assert off.precision == 0.0 and off.recall == 0.0, "samples far from the data"


def test_the_real_set_is_subsampled_to_the_fake_size_reproducibly():
    real, fake = torch.randn(500, 4), torch.randn(100, 4)
    a, b = precision_recall(real, fake, seed=3), precision_recall(real, fake, seed=3)
    assert a == b and a.num_real == 100 and a.num_fake == 100
