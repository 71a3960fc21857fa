"""Train-only augmentation on the uint8 canvas that :func:`models.preprocess.to_canvas` returns.

It sits between ``to_canvas`` and ``normalize``, so evaluation and serving (which skip it) see exactly the
training preprocessing otherwise. Geometry is mild: captcha generators already distort their text.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np

PRESETS = ("mild", "strong")


def build_augment(strength: float = 1.0, preset: str = "mild") -> Callable[[np.ndarray], np.ndarray]:
    """An albumentations pipeline ``uint8 (H, W, C) -> uint8 (H, W, C)``; ``strength`` scales probabilities.

    ``mild`` moves the whole image a little (large training sets). ``strong`` is made for a few hundred labels:
    wider affine ranges, a local warp (grid or elastic) that bends each character differently, and small erased
    patches, so that the network cannot learn the training images by heart."""
    import albumentations as A
    import cv2

    if preset not in PRESETS:
        raise ValueError(f"augmentation preset {preset!r}: one of {', '.join(PRESETS)}")
    p = lambda value: min(1.0, value * strength)  # noqa: E731 - probability scaled by strength
    replicate = cv2.BORDER_REPLICATE
    if preset == "mild":
        geometry = [
            A.Affine(scale=(0.92, 1.05), translate_percent=(-0.03, 0.03), rotate=(-4, 4), shear=(-8, 8),
                     border_mode=replicate, p=p(0.5)),
            A.Perspective(scale=(0.01, 0.04), border_mode=replicate, p=p(0.2)),
        ]  # fmt: skip
    else:
        geometry = [
            A.Affine(scale=(0.85, 1.05), translate_percent=(-0.03, 0.03), rotate=(-8, 8), shear=(-15, 15),
                     border_mode=replicate, p=p(0.8)),
            A.OneOf([A.GridDistortion(num_steps=6, distort_limit=0.35, border_mode=replicate),
                     A.ElasticTransform(alpha=30, sigma=5, border_mode=replicate)], p=p(0.5)),
            A.Perspective(scale=(0.02, 0.06), border_mode=replicate, p=p(0.3)),
            A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.1, 0.25), hole_width_range=(0.02, 0.05),
                            fill="random_uniform", p=p(0.3)),
        ]  # fmt: skip
    pipeline = A.Compose(
        [
            *geometry,
            A.OneOf([A.MotionBlur(blur_limit=3), A.GaussianBlur(blur_limit=(3, 5))], p=p(0.2)),
            A.GaussNoise(std_range=(0.02, 0.08), p=p(0.2)),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=p(0.3)),
            A.HueSaturationValue(hue_shift_limit=20, sat_shift_limit=20, val_shift_limit=0, p=p(0.2)),
            A.ImageCompression(quality_range=(45, 95), p=p(0.25)),
        ]
    )  # fmt: skip
    draws, py_draws = np.random.Generator(np.random.PCG64()), random.Random()
    pipeline.set_random_state(draws, py_draws)  # shared by every transform, reseeded in place per image

    def augment(canvas: np.ndarray) -> np.ndarray:
        # albumentations seeds itself from the OS; drawing each image's seed from numpy's global state instead
        # makes a run repeatable: train.py seeds that state, saves it in last.pt and reseeds it in every worker.
        seed = int(np.random.randint(2**31))
        draws.bit_generator.state = np.random.PCG64(seed).state
        py_draws.seed(seed)
        gray = canvas.shape[2] == 1
        image = np.repeat(canvas, 3, axis=2) if gray else canvas
        out = pipeline(image=image)["image"]
        return out[:, :, :1] if gray else out

    return augment
