"""Registry of the recognizers: ``build_model(name, ...)`` picks the class by name.

The name table needs no torch, so the serving tier can list and validate names; building imports the model.

The contract of every recognizer class (its base is :class:`models.blocks.WidthContract`):

* ``forward(images (B, C, H, W)) -> logits (B, T, num_classes)``, blank at class 0, ``T = W // width_stride``;
* ``width_stride``, ``min_width`` (narrowest input whose T fits ``max_label_len``) and ``sequence_length(W)``;
* ``ctc_head_name``: the attribute holding the final ``nn.Linear`` to num_classes, resized by ``train.py --init``;
* ``no_weight_decay()``: names of the parameters AdamW leaves undecayed (norms, biases, positional embeddings).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> (module, class, input channels by default)
ARCHS: dict[str, tuple[str, str, int]] = {
    "vanilla_crnn": (".vanilla_crnn", "VanillaCRNN", 1),
    "crnn_resnet34": (".crnn_resnet34", "CRNNResNet34", 3),
    "svtr_tiny": (".svtr_tiny", "SVTRTiny", 3),
}
ARCH_NAMES = tuple(ARCHS)


def check_arch(name: str) -> str:
    """``name`` if it is a known architecture, else a ValueError listing the known ones."""
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
    model_cls = getattr(importlib.import_module(module, __package__), cls)
    return model_cls(num_classes=num_classes, in_channels=in_channels or channels, **arch_args)
