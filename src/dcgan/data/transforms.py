"""Image transforms: the [-1, 1] model range, PIL decoding to uint8, and batch resizing.

Scaling to [-1, 1] happens on the training device (``to_model_range``), so the in-memory and
streaming paths feed the model the same numbers.
"""

from __future__ import annotations

import torch


def to_model_range(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return images_u8.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (rounded), the inverse of ``to_model_range``."""
    # one new tensor, then in place: the same values as out-of-place arithmetic, less memory traffic
    return images.detach().float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


class pil_transform:
    """PIL image -> uint8 [C, S, S]: convert mode, resize the short side, centre-crop.

    A class rather than a Compose of lambdas so that DataLoader workers can pickle it.
    """

    def __init__(self, channels: int, image_size: int) -> None:
        from torchvision.transforms import v2

        self.mode = "L" if channels == 1 else "RGB"
        self.resize = v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)])

    def __call__(self, img) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        img = self.resize(to_8bit(img).convert(self.mode))
        return F.pil_to_tensor(img)


def to_8bit(img):
    """A 16- or 32-bit integer grayscale PIL image scaled to 8 bits; Pillow's ``convert("L")`` would clip
    it (every value above 255 white). Other modes are returned as they are."""
    if img.mode.startswith("I;16"):
        return img.convert("I").point(lambda v: v * (1 / 257)).convert("L")  # 65535 -> 255
    if img.mode == "I":  # 32-bit: PNG decodes 16-bit greyscale this way in some Pillow versions
        low, high = img.getextrema()
        scale = 1 / 257 if high > 255 else 1
        return img.point(lambda v: v * scale).convert("L")
    return img


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """RGB uint8 [N, 3, H, W] -> grayscale [N, 1, H, W], bit-exact with Pillow's ``convert("L")``.

    Pillow's integer ITU-R 601 weights sum to exactly 1 and round, so grey stays grey;
    torchvision's ``rgb_to_grayscale`` truncates weights summing to 0.9999 (255 -> 254).
    """
    r, g, b = rgb.int().unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16).to(torch.uint8)[:, None]


def resize_uint8(images: torch.Tensor, channels: int, image_size: int) -> torch.Tensor:
    """Match channels, resize the short side and centre-crop a uint8 batch [N, C, H, W]."""
    from torchvision.transforms.v2 import functional as F

    if images.shape[1] != channels:
        images = images.expand(-1, 3, -1, -1) if channels == 3 else _luma(images)
    if images.shape[-2:] != (image_size, image_size):
        out = []
        for chunk in images.split(4096):  # bounded memory for the float intermediates
            chunk = F.resize(chunk, image_size, antialias=True)
            out.append(F.center_crop(chunk, image_size))
        images = torch.cat(out)
    return images.contiguous()
