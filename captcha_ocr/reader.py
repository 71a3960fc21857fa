"""``Reader``: our own Python API. One model, opened once; ``read`` takes one image or a batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .models.engine import Engine, load_engine
from .models.paths import checkpoints_dir
from .models.preprocess import ImageError, prepare_batch

ImageInput = bytes | bytearray | str | Path | Image.Image | np.ndarray


@dataclass
class Reading:
    """What the model read in one image."""

    text: str
    answer: int | None  # the value of an arithmetic captcha ("3+5=?" -> 8), else None
    confidence: float  # product of the character confidences, 0-1
    char_confidences: list[float] = field(default_factory=list)

    def __str__(self) -> str:
        return self.text


def as_source(image: ImageInput) -> bytes | bytearray | Path | Image.Image:
    """What the shared preprocessing takes: bytes, a path or a PIL image. A numpy array is ``uint8`` grayscale
    ``(H, W)``, RGB ``(H, W, 3)`` or RGBA ``(H, W, 4)`` (OpenCV's BGR: pass ``array[..., ::-1]``)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
            raise ImageError(f"a numpy image must be uint8 (H, W), (H, W, 3) or (H, W, 4); got {image.dtype} "
                             f"{image.shape}")  # fmt: skip
        return Image.fromarray(np.ascontiguousarray(image))
    if isinstance(image, str):
        return Path(image)
    if isinstance(image, (bytes, bytearray, Path, Image.Image)):
        return image
    if hasattr(image, "read"):  # an open binary file
        return image.read()
    raise TypeError(f"cannot read a {type(image).__name__}: pass bytes, a path, a PIL image or a numpy array")


def open_model(model: str | Path | None, threads: int) -> Engine:
    """``None``: the default model; a name of a folder under the checkpoints folder; a model folder; an .onnx file."""
    root = checkpoints_dir()
    if model is None:
        return load_engine(root / "default", threads=threads)
    path = Path(model)
    if not path.exists() and (root / str(model)).exists():
        path = root / str(model)
    if not path.exists():
        known = sorted(p.name for p in root.iterdir() if (p / "model.onnx").is_file()) if root.is_dir() else []
        raise FileNotFoundError(f"no model {model!r}: give an .onnx file, a model folder, or one of "
                                f"{', '.join(known) or '(none found)'} (under {root})")  # fmt: skip
    engine = load_engine(path, threads=threads)
    engine.name = path.name if path.is_dir() else path.parent.name
    return engine


class Reader:
    """Reads captchas with one model (onnxruntime, no PyTorch). Safe to share between threads."""

    def __init__(self, model: str | Path | None = None, threads: int = 0) -> None:
        self.engine = open_model(model, threads)  # onnxruntime sessions may be run from several threads at once

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def charset(self) -> str:
        """Every character the model can write."""
        return "".join(self.engine.charset.symbols)

    def read(self, image: ImageInput | Sequence[ImageInput], allowed: str | None = None) -> Reading | list[Reading]:
        """One image -> a :class:`Reading`; a list or tuple of images -> a list, read as one batch.

        ``allowed`` restricts the output for this call only: a preset (``digits``, ``letters``, ``upper``,
        ``lower``, ``alnum``, ``arith``) or the characters themselves. Raises :class:`ImageError` naming the first
        image that cannot be read.
        """
        single = not isinstance(image, (list, tuple))
        images = [image] if single else list(image)
        batch = prepare_batch([as_source(x) for x in images], self.engine.spec)
        if batch.failures:
            index, error = batch.failures[0]
            raise ImageError(f"image {index}: {error}", error.kind)
        predictions = self.engine.predict_arrays(batch.inputs, allowed)
        readings = [Reading(p.text, p.answer, p.confidence, p.char_confidences) for p in predictions]
        return readings[0] if single else readings

    def logits(self, image: ImageInput) -> np.ndarray:
        """The network's raw output for one image: ``(T, classes)``, class 0 the CTC blank."""
        batch = prepare_batch([as_source(image)], self.engine.spec)
        if batch.failures:
            raise batch.failures[0][1]
        return self.engine.logits(batch.inputs)[0]
