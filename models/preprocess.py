"""The one preprocessing path: bytes / path / PIL image -> network input.

Training, evaluation, the CLI and both servers call :func:`preprocess` (or its two halves, :func:`to_canvas`
and :func:`normalize`, with train-only augmentation in between), so what a model sees at serving time is what
it saw in training.

Steps:
1. :func:`load_image` decodes the file (limits on bytes, pixels and frames), composites transparency on white
   and fuses animated GIFs into one image (:func:`fuse_frames`).
2. :func:`to_canvas` resizes to the model's height keeping the aspect ratio (squeezing only if wider than the
   model's width), converts to grayscale or RGB as the model says, and pads on the right to the model's width
   with the median colour of the image border. Result: ``uint8 (H, W, C)``.
3. :func:`normalize` maps to ``float32 (C, H, W)`` in [-1, 1].
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

log = logging.getLogger(__name__)

PREPROCESS_VERSION = 1  # bump when anything below changes what the network sees; stored in every model file

MAX_FRAMES = 64  # EasyCaptcha GIFs have one frame per character; more is not a captcha
MAX_PIXELS = 4096 * 4096  # per frame; larger declared sizes are refused before decoding
GIF_FUSION = "min"  # chosen by measurement on real EasyCaptcha GIFs, see docs/benchmarks.md
# Only these decoders ever see input. Pillow would otherwise also open EPS/PostScript (rendered by running
# Ghostscript on the file where it is installed), PDF, PSD, ICNS and a dozen more formats no captcha uses.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")

ImageSource = bytes | bytearray | str | Path | Image.Image


# Pillow warns above ~89 Mpx; load_image refuses far smaller images itself (MAX_PIXELS) before decoding, so the
# warning would only be noise. Set once at import, not per call: warnings.catch_warnings is not thread-safe.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


# What went wrong with an input, as a stable machine-readable word (the API's ``error`` field): the message may
# be reworded, the kind may not.
IMAGE_ERROR_KINDS = ("not an image", "empty file", "image too large", "too many frames", "corrupt image data")


class ImageError(ValueError):
    """The input cannot be turned into a network input; ``kind`` is one of :data:`IMAGE_ERROR_KINDS`, the message
    says why in words."""

    def __init__(self, message: str, kind: str = "not an image") -> None:
        if kind not in IMAGE_ERROR_KINDS:
            raise ValueError(f"unknown image error kind {kind!r}; known: {', '.join(IMAGE_ERROR_KINDS)}")
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class InputSpec:
    """What a model takes: height and width in pixels, 1 (grayscale) or 3 (RGB) channels."""

    img_h: int
    img_w: int
    channels: int

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if self.img_h < 8 or self.img_w < 8:
            raise ValueError(f"input size {self.img_w}x{self.img_h} is too small")


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise ImageError("empty file (0 bytes)", "empty file")
        fp: io.BytesIO | Path = io.BytesIO(source)
    else:
        fp = Path(source)
        if not fp.is_file():
            raise ImageError(f"no such file: {fp}")
    try:
        image = Image.open(fp, formats=IMAGE_FORMATS)  # lazy: reads the header only; sizes are checked before decoding
    except Image.DecompressionBombError as e:
        raise ImageError(f"image too large: {e}", "image too large") from e
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise ImageError(f"not a readable image ({type(e).__name__})") from e
    return image


def _flatten(frame: Image.Image) -> Image.Image:
    """One frame as RGB, transparency composited on white."""
    if frame.mode in ("RGBA", "LA", "PA") or (frame.mode == "P" and "transparency" in frame.info):
        rgba = frame.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if frame.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bits instead of clipping
        arr = np.asarray(frame, dtype=np.float64)
        peak = arr.max() if arr.size and arr.max() > 255 else 255.0
        return Image.fromarray((arr * (255.0 / peak)).clip(0, 255).astype(np.uint8)).convert("RGB")
    return frame.convert("RGB")


def fuse_frames(frames: Sequence[Image.Image], method: str = GIF_FUSION) -> Image.Image:
    """Fuse the frames of an animated captcha into one RGB image.

    EasyCaptcha GIFs hide one character per frame (alpha 0) and show another fully opaque, so no single frame
    holds the whole text. ``min`` keeps, per pixel, the darkest value over the frames: every character appears
    at its most opaque. ``mean`` and ``median`` are kept for comparison (see bench/gif_fusion.py).
    """
    if len(frames) == 1:
        return frames[0]
    stack = np.stack([np.asarray(f, dtype=np.uint8) for f in frames])  # (F, H, W, 3)
    if method == "min":
        fused = stack.min(axis=0)
    elif method == "mean":
        fused = stack.mean(axis=0).round().astype(np.uint8)
    elif method == "median":
        fused = np.median(stack, axis=0).round().astype(np.uint8)
    else:
        raise ValueError(f"unknown fusion {method!r}; known: min, mean, median")
    return Image.fromarray(fused)


def load_image(
    source: ImageSource, *, max_frames: int = MAX_FRAMES, max_pixels: int = MAX_PIXELS, fusion: str = GIF_FUSION
) -> Image.Image:
    """Decode ``source`` into one RGB image, fusing animation frames. Raises :class:`ImageError`."""
    image = _open(source)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(f"image too large: {width}x{height} exceeds {max_pixels} pixels", "image too large")
    try:
        n_frames = getattr(image, "n_frames", 1)  # counting walks every frame header: a corrupt one raises here
    except Exception as e:  # e.g. IndexError from Pillow's GIF reader on a cut extension block
        raise ImageError(f"corrupt image data ({type(e).__name__}: {e})", "corrupt image data") from e
    if n_frames > max_frames:
        raise ImageError(f"too many frames: {n_frames} > {max_frames}", "too many frames")
    try:
        if n_frames > 1:
            frames = [_flatten(f.copy()) for f in ImageSequence.Iterator(image)]
            return fuse_frames(frames, fusion)
        image.load()
        return _flatten(image)
    except ImageError:
        raise
    except Exception as e:  # truncated or corrupt pixel data
        raise ImageError(f"corrupt image data ({type(e).__name__}: {e})", "corrupt image data") from e


def to_canvas(image: Image.Image, spec: InputSpec) -> np.ndarray:
    """Resize keeping aspect to ``spec.img_h``, pad right to ``spec.img_w``: ``uint8 (H, W, C)``."""
    rgb = image if image.mode == "RGB" else _flatten(image)
    w, h = rgb.size
    new_w = max(1, min(spec.img_w, round(w * spec.img_h / h)))
    resized = rgb.resize((new_w, spec.img_h), Image.Resampling.BICUBIC)
    arr = np.asarray(resized.convert("L") if spec.channels == 1 else resized, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if new_w == spec.img_w:
        return np.ascontiguousarray(arr)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])  # (n, C)
    fill = np.median(border, axis=0).astype(np.uint8)
    canvas = np.empty((spec.img_h, spec.img_w, arr.shape[2]), dtype=np.uint8)
    canvas[:, :new_w] = arr
    canvas[:, new_w:] = fill
    return canvas


def normalize(canvas: np.ndarray) -> np.ndarray:
    """``uint8 (H, W, C)`` -> ``float32 (C, H, W)`` in [-1, 1]."""
    return (canvas.transpose(2, 0, 1).astype(np.float32) - 127.5) / 127.5


def preprocess(source: ImageSource, spec: InputSpec, **load_kwargs) -> np.ndarray:
    """The whole path for one image: ``float32 (C, H, W)``."""
    return normalize(to_canvas(load_image(source, **load_kwargs), spec))


@dataclass
class Batch:
    """What :func:`prepare_batch` made of some sources: the inputs of the readable ones and why the others failed."""

    inputs: np.ndarray  # float32 (N, C, H, W), one row per readable source; (0, C, H, W) when none is
    kept: list[int]  # index in the given sources of each row of ``inputs``
    sizes: list[tuple[int, int]]  # (width, height) of each readable source as decoded, before resizing
    failures: list[tuple[int, ImageError]]  # (index, error) of each unreadable source


def prepare_batch(sources: Sequence[ImageSource], spec: InputSpec, **load_kwargs) -> Batch:
    """Preprocess ``sources`` into one batch, skipping unreadable ones: the loop behind the CLI, evaluation and the
    service. A decoder failing in an unexpected way on hostile bytes costs that source, not the batch."""
    rows, kept, sizes, failures = [], [], [], []
    for index, source in enumerate(sources):
        try:
            image = load_image(source, **load_kwargs)
            rows.append(normalize(to_canvas(image, spec)))
        except ImageError as e:
            failures.append((index, e))
            continue
        except Exception as e:  # a bug in a decoder: reported as corrupt data instead of taking the batch down
            log.warning("the decoder failed on source %d of the batch", index, exc_info=True)
            failures.append((index, ImageError(f"the decoder failed ({type(e).__name__})", "corrupt image data")))
            continue
        kept.append(index)
        sizes.append(image.size)
    inputs = np.stack(rows) if rows else np.zeros((0, spec.channels, spec.img_h, spec.img_w), np.float32)
    return Batch(inputs, kept, sizes, failures)


def batches(items: Sequence, size: int):
    """Consecutive slices of ``items``, ``size`` long (the last one shorter)."""
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]
