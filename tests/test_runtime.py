"""runtime.choose_device and the bf16 fall-back, with torch's device checks replaced (no MPS or XPU here)."""

from __future__ import annotations

import types

import pytest
import torch

from dcgan import runtime
from dcgan.errors import UserError


def _fake_accelerator(device_type: str | None):
    return types.SimpleNamespace(
        is_available=lambda: device_type is not None,
        current_accelerator=lambda: torch.device(device_type) if device_type else None,
    )


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_prefers_cuda_over_any_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch, "accelerator", _fake_accelerator("mps"), raising=False)
    assert runtime.choose_device("auto", local_rank=1) == torch.device("cuda", 1)


@pytest.mark.parametrize("device_type", ["mps", "xpu"])
def test_auto_takes_the_accelerator_torch_reports(no_cuda, monkeypatch, device_type):
    monkeypatch.setattr(torch, "accelerator", _fake_accelerator(device_type), raising=False)
    assert runtime.choose_device("auto") == torch.device(device_type)


def test_auto_is_the_cpu_without_an_accelerator(no_cuda, monkeypatch):
    monkeypatch.setattr(torch, "accelerator", _fake_accelerator(None), raising=False)
    assert runtime.choose_device("auto") == torch.device("cpu")


def test_auto_ignores_an_accelerator_type_it_cannot_run(no_cuda, monkeypatch):
    monkeypatch.setattr(torch, "accelerator", _fake_accelerator("meta"), raising=False)
    assert runtime.choose_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("mps, xpu, expected", [(True, False, "mps"), (False, True, "xpu"), (False, False, "cpu")])
def test_older_torch_without_torch_accelerator_falls_back_to_the_old_checks(no_cuda, monkeypatch, mps, xpu, expected):
    monkeypatch.delattr(torch, "accelerator", raising=False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    monkeypatch.setattr(torch, "xpu", types.SimpleNamespace(is_available=lambda: xpu), raising=False)
    assert runtime.choose_device("auto") == torch.device(expected)


def test_the_real_choice_on_this_machine():
    expected = "cuda" if torch.cuda.is_available() else None
    device = runtime.choose_device("auto")
    assert device.type == (expected or device.type) and device.type in runtime.DEVICE_TYPES


@pytest.mark.parametrize(
    "name, message",
    [
        ("mps", "MPS is not available"),
        ("xpu", "XPU is not available"),
        ("meta", "unsupported device 'meta'"),
        ("gpu", "unknown device 'gpu'"),
    ],
)
def test_an_explicit_device_must_exist(no_cuda, monkeypatch, name, message):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch, "xpu", types.SimpleNamespace(is_available=lambda: False), raising=False)
    with pytest.raises(UserError, match=message):
        runtime.choose_device(name)


def test_bf16_on_a_device_without_it_falls_back_to_fp32_with_one_notice(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "supports_bf16", lambda device: device.type != "mps")
    assert runtime.resolve_precision("bf16", torch.device("mps")) == "fp32"
    err = capsys.readouterr().err
    assert err == "notice: mps has no bf16 autocast here; training in fp32\n"
    assert runtime.resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert runtime.resolve_precision("auto", torch.device("mps")) == "fp32"
    assert capsys.readouterr().err == ""


def test_fp16_still_needs_cuda():
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        runtime.resolve_precision("fp16", torch.device("cpu"))


def test_supports_bf16_on_the_cpu_and_cuda(monkeypatch):
    assert runtime.supports_bf16(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert not runtime.supports_bf16(torch.device("cuda"))
