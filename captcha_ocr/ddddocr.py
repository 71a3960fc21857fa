"""A drop-in for code written against ddddocr 1.6: ``from captcha_ocr import ddddocr`` instead of ``import ddddocr``.

    ocr = ddddocr.DdddOcr(show_ad=False)
    ocr.classification(image_bytes)                     # -> "3b7k"
    ocr.set_ranges(6)                                   # ddddocr's presets 0-7, or a string of characters
    ocr.classification(image_bytes, probability=True)   # -> dict, see below

What is the same: the constructor's arguments, ``classification(img, png_fix=False, probability=False)`` taking
bytes, a base64 string, a path or a PIL image, ``set_ranges`` with the presets of ddddocr's README (0 digits,
1 a-z, 2 A-Z, 3 a-zA-Z, 4 a-z0-9, 5 A-Z0-9, 6 a-zA-Z0-9, 7 the model's charset without a-zA-Z0-9) or a string or
list of characters, and ``get_charset``.

What differs:
- Our model reads the text; ``det=True`` (object detection) and the slider methods are not provided and raise
  :class:`NotImplementedError` saying so. ``old``, ``beta``, ``use_gpu``, ``device_id``, ``charsets_path``,
  ``max_image_bytes`` and ``max_image_side`` are accepted and ignored; ``import_onnx_path`` opens one of *our* ONNX
  models (e.g. one made by ``make finetune``; or use ``model=``).
- Animated GIFs are fused (every frame's characters), not read from their first frame.
- ``answer=True`` (per call, or on the constructor) returns the value of an arithmetic captcha (``"3+5=?"`` ->
  ``"8"``) instead of the expression.
- ``png_fix`` is accepted; transparency is always composited on white, which is what it does.
- ``set_ranges`` never leaves the object half-changed: each call reads the range once, so one instance can be
  shared by threads. ``classification(..., ranges=...)`` restricts one call without touching the instance.
  ddddocr 1.6.1 itself slices its charset for an integer (``set_ranges(0)`` keeps only the blank); the presets
  here are the ones its README documents.
- ``probability=True`` returns the keys of ddddocr 1.6.1 (``text``, ``probabilities`` per frame as
  ``[T][1][classes]``, ``charset``, ``confidence``: the mean over frames of the top probability) and the keys its
  README loops over (``charsets``: blank first, then the allowed characters; ``probability``: one row per character
  read, over ``charsets``), so ``"".join(charsets[row.index(max(row))] for row in probability)`` is the text.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path, PurePath
from typing import Any

from .models.ddddocr_compat import RANGE_PRESETS, probability_dict, resolve_ranges
from .reader import Reader

__all__ = ["DdddOcr", "RANGE_PRESETS"]


def image_source(img: Any) -> Any:
    """ddddocr's inputs as the Reader takes them: a str is base64 (or the path of an existing file), a PurePath a
    path; everything else (bytes, PIL images, numpy arrays) goes to the Reader as it is."""
    if isinstance(img, PurePath):
        return Path(img)
    if not isinstance(img, str):
        return img
    if len(img) < 4096 and Path(img).is_file():
        return Path(img)
    payload = img.split(",", 1)[1] if img.startswith("data:") else img
    try:
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=False)
    except (binascii.Error, ValueError):
        raise ValueError("a str image must be base64 (or the path of an existing file)") from None


class DdddOcr:
    """ddddocr's ``DdddOcr`` for text captchas, reading with a captcha-ocr model."""

    def __init__(self, ocr: bool = True, det: bool = False, old: bool = False, beta: bool = False,
                 use_gpu: bool = False, device_id: int = 0, show_ad: bool = True, import_onnx_path: str = "",
                 charsets_path: str = "", max_image_bytes: int | None = None, max_image_side: int | None = None,
                 model: str | Path | None = None, answer: bool = False, threads: int = 0) -> None:  # fmt: skip
        if det or not (ocr or import_onnx_path or model):
            raise NotImplementedError("captcha-ocr reads text captchas only: object detection (det=True) and slider "
                                      "matching (ocr=False) are not provided here; keep ddddocr for those")  # fmt: skip
        self.reader = Reader(model or import_onnx_path or None, threads=threads)
        self.answer = answer
        self._charset = ["", *self.reader.engine.charset.symbols]  # class 0 is the CTC blank, as in ddddocr
        self._range: str | None = None

    # -- ranges
    def resolve_ranges(self, charset_range: int | str | list[str] | None) -> str | None:
        return resolve_ranges(charset_range, self._charset[1:])

    def set_ranges(self, charset_range: int | str | list[str]) -> None:
        """Restrict what ``classification`` may read, for every later call on this instance."""
        self._range = self.resolve_ranges(charset_range)

    def get_charset(self) -> list[str]:
        return list(self._charset)

    # -- reading
    def classification(self, img: Any, png_fix: bool = False, probability: bool = False, *,
                       ranges: int | str | list[str] | None = None, answer: bool | None = None,
                       **ignored: Any) -> str | dict[str, Any]:  # fmt: skip
        """The text of ``img`` (``answer=True``: an arithmetic captcha's value), or with ``probability=True`` the
        dict described in the module docstring. ``ranges`` restricts this call only. ddddocr's colour-filter
        keywords are accepted and ignored."""
        allowed = self.resolve_ranges(ranges) if ranges is not None else self._range  # read once
        logits = self.reader.logits(image_source(img))  # the network runs once, for the text and the dict
        reading = self.reader.engine.decode(logits[None], allowed)[0]
        want_answer = self.answer if answer is None else answer
        text = str(reading.answer) if want_answer and reading.answer is not None else reading.text
        if not probability:
            return text
        return probability_dict(logits, self._charset[1:], allowed, text)

    # -- what ddddocr has and we do not
    def detection(self, *args: Any, **kwargs: Any):
        raise NotImplementedError("captcha-ocr does no object detection; keep ddddocr (det=True) for it")

    def slide_match(self, *args: Any, **kwargs: Any):
        raise NotImplementedError("captcha-ocr does no slider matching; keep ddddocr for it")

    slide_comparison = slide_match
