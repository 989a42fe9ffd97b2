"""The model contract, the DCGAN architecture rules, initialisation, and the classic 64x64 model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dcgan import Discriminator, Generator
from dcgan.models import SUPPORTED_IMAGE_SIZES

SIZES = (28, 32, 64, 128, 256)
# 28 grows from 7x7, the powers of two from 4x4, doubling at every stage
START = {28: 7, 32: 4, 64: 4, 128: 4, 256: 4}


def leaves(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if not list(m.children())]


def convs(module: nn.Module) -> list[nn.Module]:
    return [m for m in leaves(module) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


# --------------------------------------------------------------------------- the contract


def test_default_generator_contract():
    G = Generator()
    z = torch.randn(5, 100)
    out = G(z)
    assert out.shape == (5, 1, 28, 28)
    assert out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    G.eval()
    assert torch.equal(G(z), G(z[:, :, None, None])), "[B, 100] and [B, 100, 1, 1] are the same input"


def test_default_discriminator_contract():
    D = Discriminator()
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    p = D(x)
    assert p.shape == (5, 1)
    assert p.dtype == torch.float32
    assert ((p > 0) & (p < 1)).all()


@pytest.mark.parametrize("train_mode", [True, False])
def test_logits_are_the_probabilities_before_the_sigmoid(train_mode):
    D = Discriminator().train(train_mode)
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    logits = D.logits(x)
    assert logits.shape == (6, 1)
    assert torch.equal(torch.sigmoid(logits), D(x))
    # raw scores, not probabilities: an untrained D gives both signs
    assert (logits < 0).any() and (logits > 0).any()


def test_defaults_are_the_documented_ones():
    """No arguments: z of 100, one channel, 28x28, 64 base feature maps, read off the layers themselves."""
    G, D = Generator(), Discriminator()
    assert [tuple(c.weight.shape) for c in convs(G)] == [(100, 128, 7, 7), (128, 64, 4, 4), (64, 1, 4, 4)]
    assert [tuple(c.weight.shape) for c in convs(D)] == [(64, 1, 4, 4), (128, 64, 4, 4), (1, 128, 7, 7)]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("image_size", SIZES)
def test_every_size_and_channel_count(image_size, channels):
    G = Generator(channels=channels, image_size=image_size, width=4, latent_dim=16)
    D = Discriminator(channels=channels, image_size=image_size, width=4)
    images = G(torch.randn(2, 16))
    assert images.shape == (2, channels, image_size, image_size)
    assert images.dtype == torch.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    p = D(images)
    assert p.shape == (2, 1) and p.dtype == torch.float32
    assert ((p > 0) & (p < 1)).all()


@pytest.mark.parametrize(("image_size", "channels"), [(28, 1), (32, 3), (64, 3)])
def test_gradients_reach_every_parameter(image_size, channels):
    G = Generator(channels=channels, image_size=image_size, width=4, latent_dim=16)
    D = Discriminator(channels=channels, image_size=image_size, width=4)
    D.logits(G(torch.randn(2, 16))).sum().backward()
    assert all(q.grad is not None and torch.isfinite(q.grad).all() for q in G.parameters())
    assert all(q.grad is not None and torch.isfinite(q.grad).all() for q in D.parameters())


@pytest.mark.parametrize("image_size", SUPPORTED_IMAGE_SIZES)
def test_every_advertised_size_builds(image_size):
    G = Generator(image_size=image_size, width=2, latent_dim=4)
    assert G(torch.randn(2, 4)).shape[-1] == image_size


# --------------------------------------------------------------------------- architecture rules


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("image_size", SIZES)
def test_architecture_rules(image_size, channels):
    G = Generator(channels=channels, image_size=image_size, width=4, latent_dim=16)
    D = Discriminator(channels=channels, image_size=image_size, width=4)
    start = START[image_size]
    stages = (image_size // start).bit_length() - 1  # image_size == start * 2**stages
    assert start * 2**stages == image_size

    for net in (G, D):
        for m in leaves(net):
            # all-convolutional: no pooling, no fully connected layers, no interpolation
            assert not type(m).__module__.endswith("pooling"), f"pooling layer {m}"
            assert not isinstance(m, (nn.Linear, nn.Upsample, nn.Dropout)), m

    # Generator: ConvTranspose2d only; BN + ReLU after every one but the output, which ends in Tanh
    g = leaves(G)
    g_convs = convs(G)
    assert all(type(c) is nn.ConvTranspose2d for c in g_convs)
    assert len(g_convs) == stages + 1  # the projection to start x start, then one per doubling
    assert g_convs[0].in_channels == 16
    assert g_convs[-1].out_channels == channels
    for i, m in enumerate(g):
        if m is g_convs[-1]:
            assert type(g[i + 1]) is nn.Tanh and i + 2 == len(g), "output: conv then Tanh, nothing else"
        elif isinstance(m, nn.ConvTranspose2d):
            assert type(g[i + 1]) is nn.BatchNorm2d and g[i + 1].num_features == m.out_channels
            assert type(g[i + 2]) is nn.ReLU
    assert sum(isinstance(m, nn.BatchNorm2d) for m in g) == stages
    assert sum(isinstance(m, nn.ReLU) for m in g) == stages
    assert not any(isinstance(m, (nn.LeakyReLU, nn.Sigmoid)) for m in g)

    # Discriminator: strided Conv2d only; no BN on the input layer; LeakyReLU(0.2); a conv to one logit
    d = leaves(D)
    d_convs = convs(D)
    assert all(type(c) is nn.Conv2d for c in d_convs)
    assert len(d_convs) == stages + 1
    assert d_convs[0].in_channels == channels
    assert type(d[1]) is nn.LeakyReLU, "input layer: conv then LeakyReLU, no batch norm"
    for i, m in enumerate(d):
        if m is d_convs[-1]:
            assert i + 1 == len(d), "the last layer is the conv to one logit"
            assert (m.out_channels, m.kernel_size, m.stride, m.padding) == (1, (start, start), (1, 1), (0, 0))
        elif isinstance(m, nn.Conv2d):
            assert (m.kernel_size, m.stride, m.padding) == ((4, 4), (2, 2), (1, 1))
            k = i + 1 if m is d_convs[0] else i + 2
            if m is not d_convs[0]:
                assert type(d[i + 1]) is nn.BatchNorm2d and d[i + 1].num_features == m.out_channels
            assert type(d[k]) is nn.LeakyReLU and d[k].negative_slope == 0.2
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d) == stages - 1
    assert not any(isinstance(m, (nn.ReLU, nn.Tanh, nn.Sigmoid)) for m in d)

    # resolution: G grows 1 -> start, then doubles; D halves down to start, then to 1x1
    sides: dict[nn.Module, tuple[int, int]] = {}
    hooks = [
        c.register_forward_hook(lambda mod, inp, out: sides.__setitem__(mod, (inp[0].shape[-1], out.shape[-1])))
        for c in g_convs + d_convs
    ]
    D.logits(G(torch.randn(2, 16)))
    for h in hooks:
        h.remove()
    assert [sides[c] for c in g_convs] == [(1, start)] + [(start * 2**k, start * 2 ** (k + 1)) for k in range(stages)]
    assert [sides[c] for c in d_convs] == [(image_size // 2**k, image_size // 2 ** (k + 1)) for k in range(stages)] + [
        (start, 1)
    ]


def test_feature_maps_halve_as_the_image_doubles():
    G = Generator(channels=3, image_size=128, width=8)
    D = Discriminator(channels=3, image_size=128, width=8)
    assert [c.out_channels for c in convs(G)] == [128, 64, 32, 16, 8, 3]
    assert [c.out_channels for c in convs(D)] == [8, 16, 32, 64, 128, 1]
    G28, D28 = Generator(width=8), Discriminator(width=8)
    assert [c.out_channels for c in convs(G28)] == [16, 8, 1]
    assert [c.out_channels for c in convs(D28)] == [8, 16, 1]


# --------------------------------------------------------------------------- initialisation


def test_initialisation_statistics():
    G = Generator(channels=3, image_size=64, width=64)
    D = Discriminator(channels=3, image_size=64, width=64)
    for net in (G, D):
        weights = torch.cat([c.weight.detach().flatten() for c in convs(net)])
        assert weights.numel() > 1_000_000
        assert abs(weights.mean().item()) < 1e-4
        assert weights.std().item() == pytest.approx(0.02, rel=0.01)
        for c in convs(net):  # every layer, not just the bulk
            assert c.bias is None
            assert c.weight.std().item() == pytest.approx(0.02, rel=0.1)
        norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
        gamma = torch.cat([m.weight.detach() for m in norms])
        assert gamma.mean().item() == pytest.approx(1.0, abs=0.004)
        assert gamma.std().item() == pytest.approx(0.02, rel=0.15)
        for m in norms:
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
            assert torch.equal(m.running_mean, torch.zeros_like(m.running_mean))
            assert torch.equal(m.running_var, torch.ones_like(m.running_var))


def test_initialisation_depends_only_on_the_seed():
    torch.manual_seed(123)
    a = Generator(width=8).state_dict()
    torch.manual_seed(123)
    b = Generator(width=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- the classic model
# Reference: pytorch/examples dcgan/main.py, with nz=100, ngf=ndf=64, nc=3.

nz, ngf, ndf, nc = 100, 64, 64, 3


class ClassicGenerator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            # input is Z, going into a convolution
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            # state size. (ngf*8) x 4 x 4
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            # state size. (ngf*4) x 8 x 8
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # state size. (ngf*2) x 16 x 16
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            # state size. (ngf) x 32 x 32
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
            # state size. (nc) x 64 x 64
        )

    def forward(self, input):
        return self.main(input)


class ClassicDiscriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            # input is (nc) x 64 x 64
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf) x 32 x 32
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*2) x 16 x 16
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*4) x 8 x 8
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*8) x 4 x 4
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input):
        output = self.main(input)
        return output.view(-1, 1).squeeze(1)


def layer_signature(module: nn.Module) -> tuple:
    """Type and every size-relevant hyperparameter of one layer."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return (
            type(module),
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.output_padding,
            module.bias is None,
        )
    if isinstance(module, nn.BatchNorm2d):
        return (type(module), module.num_features, module.eps, module.momentum, module.affine)
    if isinstance(module, nn.LeakyReLU):
        return (type(module), module.negative_slope)
    return (type(module),)


def test_classic_generator_is_exactly_pytorch_examples():
    ours, ref = Generator(channels=3, image_size=64, width=64), ClassicGenerator()
    assert [layer_signature(m) for m in leaves(ours)] == [layer_signature(m) for m in leaves(ref)]
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in ref_sd.items()}

    ours.load_state_dict(ref_sd, strict=True)
    z = torch.randn(4, nz, 1, 1)
    for mode in (True, False):
        ours.train(mode), ref.train(mode)
        assert torch.equal(ours(z), ref(z))
        assert torch.equal(ours(z.flatten(1)), ref(z))


def test_classic_discriminator_is_exactly_pytorch_examples():
    ours, ref = Discriminator(channels=3, image_size=64, width=64), ClassicDiscriminator()
    # the classic ends in nn.Sigmoid inside main; ours applies it in forward and exposes logits
    ref_layers = leaves(ref)
    assert type(ref_layers[-1]) is nn.Sigmoid
    assert [layer_signature(m) for m in leaves(ours)] == [layer_signature(m) for m in ref_layers[:-1]]
    ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
    assert list(ours_sd) == list(ref_sd)
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in ref_sd.items()}

    ours.load_state_dict(ref_sd, strict=True)
    x = torch.rand(4, nc, 64, 64) * 2 - 1
    for mode in (True, False):
        ours.train(mode), ref.train(mode)
        assert torch.equal(ours(x), ref(x).view(-1, 1))
        assert torch.equal(torch.sigmoid(ours.logits(x)), ref(x).view(-1, 1))


def test_classic_parameter_counts():
    # the numbers every DCGAN tutorial prints for the 64x64 RGB model
    G = Generator(channels=3, image_size=64, width=64)
    D = Discriminator(channels=3, image_size=64, width=64)
    assert sum(p.numel() for p in G.parameters()) == 3_576_704
    assert sum(p.numel() for p in D.parameters()) == 2_765_568


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("cls", [Generator, Discriminator])
@pytest.mark.parametrize("image_size", [0, 16, 48, 100, 512])
def test_unsupported_image_size_names_the_supported_ones(cls, image_size):
    with pytest.raises(ValueError, match=r"28, 32, 64, 128") as info:
        cls(image_size=image_size)
    assert str(image_size) in str(info.value)


@pytest.mark.parametrize("cls", [Generator, Discriminator])
@pytest.mark.parametrize("channels", [0, 2, 4])
def test_unsupported_channels_name_the_supported_ones(cls, channels):
    with pytest.raises(ValueError, match=r"1 \(grayscale\) or 3 \(RGB\)"):
        cls(channels=channels)


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"latent_dim": 0}])
def test_nonpositive_sizes_are_rejected(kwargs):
    with pytest.raises(ValueError, match="positive"):
        Generator(**kwargs)


@pytest.mark.parametrize("shape", [(2, 50), (2, 100, 2, 2), (100,), (2, 1, 100), (2, 100, 1)])
def test_generator_rejects_wrongly_shaped_noise(shape):
    with pytest.raises(ValueError, match=r"\[B, 100\] or \[B, 100, 1, 1\]"):
        Generator(width=8)(torch.randn(shape))


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 1, 32, 32), (1, 28, 28), (2, 1, 28, 27)])
def test_discriminator_rejects_wrongly_shaped_images(shape):
    D = Discriminator(width=8)
    for call in (D, D.logits):
        with pytest.raises(ValueError, match=r"\[B, 1, 28, 28\]"):
            call(torch.randn(shape))


def test_a_conditional_generator_keeps_its_class_names_and_builds_from_a_config():
    from dcgan.config import TrainConfig

    G = Generator(num_classes=2, class_names=("cat", "dog"))
    assert G.class_names == ("cat", "dog") and Generator().class_names == ()
    with pytest.raises(ValueError, match="1 class names for 2 classes"):
        Generator(num_classes=2, class_names=("cat",))
    cfg = TrainConfig(image_size=32, channels=3, conditional=True, class_names=("a", "b", "c")).resolved()
    G = Generator.from_config(cfg)
    assert (G.image_size, G.channels, G.width, G.num_classes, G.class_names) == (32, 3, cfg.g_width, 3, ("a", "b", "c"))
    assert Generator.from_config(TrainConfig(class_names=("a", "b")).resolved()).class_names == ()  # unconditional
