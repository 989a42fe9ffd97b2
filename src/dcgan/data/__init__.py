"""Datasets and batching: ``sources`` (where images come from, ``load``), ``datasets`` (the types
they become, and decoding into one tensor), ``transforms`` (uint8 decoding, resizing, the model
range) and ``batching`` (the epoch order). ``decoded`` keeps decoded image folders, CelebA and LSUN
on disk so that a second run skips decoding.

Every dataset ends up as uint8 images [C, H, W] at the configured size and channel count.
"""

from .batching import Batches, epoch_order
from .datasets import IMAGE_EXTENSIONS, ImageFolder, InMemoryImages, decode_all
from .decoded import decode_cached
from .sources import IN_MEMORY_MAX_BYTES, class_names, load, native_shape
from .spec import DATASETS, DEFAULT_DATASET, LABELLED, NATIVE_SHAPES, DataSpec
from .transforms import pil_transform, resize_uint8, to_model_range, to_uint8

__all__ = [
    "Batches",
    "class_names",
    "DATASETS",
    "DEFAULT_DATASET",
    "LABELLED",
    "NATIVE_SHAPES",
    "DataSpec",
    "IMAGE_EXTENSIONS",
    "IN_MEMORY_MAX_BYTES",
    "ImageFolder",
    "InMemoryImages",
    "decode_all",
    "decode_cached",
    "epoch_order",
    "load",
    "native_shape",
    "pil_transform",
    "resize_uint8",
    "to_model_range",
    "to_uint8",
]
