"""Registry of the recognizers: ``build_model(name, ...)`` picks the class by name.

The name table needs no torch, so the serving tier can list and validate names; building imports the model.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> (module, class, input channels by default)
ARCHS: dict[str, tuple[str, str, int]] = {
    "vanilla_crnn": ("models.vanilla_crnn", "VanillaCRNN", 1),
    "crnn_resnet34": ("models.crnn_resnet34", "CRNNResNet34", 3),
    "svtr_tiny": ("models.svtr_tiny", "SVTRTiny", 3),
}
ARCH_NAMES = tuple(ARCHS)


def check_arch(name: str) -> str:
    if name not in ARCHS:
        raise ValueError(f"unknown arch {name!r}; known: {', '.join(ARCH_NAMES)}")
    return name


def default_channels(name: str) -> int:
    return ARCHS[check_arch(name)][2]


def default_arch_args(name: str, img_h: int, img_w: int) -> dict[str, Any]:
    """Arguments that depend on the input size (SVTR learns its positional embedding at that size)."""
    return {"img_h": img_h, "img_w": img_w} if check_arch(name) == "svtr_tiny" else {}


def build_model(name: str, num_classes: int, in_channels: int | None = None, **arch_args: Any):
    """Instantiate recognizer ``name``: ``(B, C, H, W) -> logits (B, T, num_classes)``."""
    module, cls, channels = ARCHS[check_arch(name)]
    model_cls = getattr(importlib.import_module(module), cls)
    return model_cls(num_classes=num_classes, in_channels=in_channels or channels, **arch_args)
