"""The per-layer roofline: every convolution of G and D is found, timed alone and summed per step."""

from __future__ import annotations

import pytest
import torch

from dcgan.benchmarks.roofline import PASSES, format_rows, layer_times, limit_seconds, summary
from dcgan.models import Discriminator, Generator

CPU = torch.device("cpu")


@pytest.mark.parametrize("image_size, channels", [(28, 1), (32, 3)])
def test_every_convolution_is_timed_at_its_training_shape(image_size, channels):
    G = Generator(image_size=image_size, channels=channels, width=8, latent_dim=16)
    D = Discriminator(image_size=image_size, channels=channels, width=8)
    before = [p.clone() for p in (*G.parameters(), *D.parameters())]
    rows = layer_times(G, D, 4, CPU, bf16=False, repeats=2, min_repeat_s=0.0)
    convs = {m: n for n, m in ((n, type(m).__name__) for n, m in G.named_modules()) if "Conv" in m}
    assert [r.network for r in rows].count("G") == sum("Conv" in type(m).__name__ for m in G.modules())
    assert [r.network for r in rows].count("D") == sum("Conv" in type(m).__name__ for m in D.modules())
    assert convs  # the networks have convolutions at all
    assert rows[0].input_shape == (4, 16, 1, 1)  # G's first layer sees z as a 1x1 map
    assert rows[-1].input_shape[0] == 4 and all(r.seconds > 0 and r.gflop > 0 for r in rows)
    assert all(r.passes == PASSES[r.network] for r in rows)
    after = [p for p in (*G.parameters(), *D.parameters())]
    assert all(torch.equal(a, b) and b.grad is None for a, b in zip(before, after))  # the networks untouched


def test_the_limit_is_the_sum_of_the_passes_and_the_summary_reads_it():
    G, D = Generator(width=8, latent_dim=16), Discriminator(width=8)
    rows = layer_times(G, D, 4, CPU, bf16=False, repeats=2, min_repeat_s=0.0)
    limit = limit_seconds(rows)
    assert limit == pytest.approx(
        sum(r.seconds for r in rows if r.network == "G") + 3 * sum(r.seconds for r in rows if r.network == "D")
    )
    s = summary(rows, step_seconds=2 * limit)
    assert s["step_over_limit"] == pytest.approx(2.0) and s["outside_convolutions"] == pytest.approx(0.5)
    table = format_rows(rows)
    assert table.count("\n") == len(rows) and "G.main.0" in table
