"""ddddocr's conventions, shared by the Python drop-in (captcha_ocr.ddddocr) and the HTTP routes
(service/compat.py): the ``set_ranges`` presets, and the ``probability=True`` dict.

No torch, no onnxruntime: numpy over a model's charset and logits.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

import numpy as np

from .codec import softmax

# ddddocr's README: 0 digits, 1 a-z, 2 A-Z, 3 a-zA-Z, 4 a-z0-9, 5 A-Z0-9, 6 a-zA-Z0-9, 7 the rest of the charset
RANGE_PRESETS: dict[int, str] = {
    0: string.digits,
    1: string.ascii_lowercase,
    2: string.ascii_uppercase,
    3: string.ascii_lowercase + string.ascii_uppercase,
    4: string.ascii_lowercase + string.digits,
    5: string.ascii_uppercase + string.digits,
    6: string.ascii_lowercase + string.ascii_uppercase + string.digits,
}
ALNUM = frozenset(RANGE_PRESETS[6])


def resolve_ranges(charset_range: int | str | Sequence[str] | None, symbols: Sequence[str]) -> str | None:
    """The characters ``set_ranges(charset_range)`` allows (None: any). ``symbols``: the model's charset. As in
    ddddocr, an int is a preset and a string is characters (``"5"`` allows the digit 5); HTTP forms, which send a
    preset as text, go through :func:`form_ranges` first."""
    if charset_range is None or charset_range == "":
        return None
    if isinstance(charset_range, bool) or not isinstance(charset_range, (int, str, list, tuple)):
        raise TypeError("set_ranges takes an int 0-7, a string or a list of characters")
    if isinstance(charset_range, int):
        if charset_range == 7:
            return "".join(c for c in symbols if c not in ALNUM)
        if charset_range not in RANGE_PRESETS:
            raise ValueError(f"set_ranges: the presets are 0-7, got {charset_range}")
        return RANGE_PRESETS[charset_range]
    return "".join(dict.fromkeys("".join(charset_range))) or None


def form_ranges(value: Any) -> Any:
    """A ``charsets`` value as an HTTP form or JSON body sends it: one digit 0-7 is that preset (forms have no
    ints), anything else is passed on as it is."""
    if isinstance(value, str) and len(value) == 1 and value in "01234567":
        return int(value)
    return value


def probability_dict(logits: np.ndarray, symbols: Sequence[str], allowed: str | None, text: str) -> dict[str, Any]:
    """What ``classification(..., probability=True)`` returns for one image's ``logits (T, classes)``: ddddocr
    1.6.1's keys (``text``, ``probabilities`` ``[T][1][classes]``, ``charset``, ``confidence``) and the keys its
    README reads (``charsets``: blank first, then the allowed characters the model knows; ``probability``: one row
    per character read, at the frame where it peaks, renormalised over ``charsets``)."""
    charset = ["", *symbols]  # class 0 is the CTC blank
    full = softmax(np.asarray(logits, dtype=np.float32))
    index = {c: i for i, c in enumerate(charset)}
    ids = [0] + ([index[c] for c in allowed if c in index] if allowed is not None else list(range(1, len(charset))))
    restricted = softmax(np.asarray(logits, dtype=np.float32)[:, ids])
    best = restricted.argmax(axis=1)
    rows: list[int] = []
    previous = 0
    for t, k in enumerate(best):  # CTC runs: a new character where the class changes to a non-blank one
        if k != 0 and k != previous:
            rows.append(t)
        elif k != 0 and restricted[t, k] > restricted[rows[-1], k]:
            rows[-1] = t
        previous = k
    return {
        "text": text,
        "probabilities": full[:, None, :].tolist(),
        "charset": charset,
        "confidence": float(full.max(axis=1).mean()),
        "charsets": [charset[i] for i in ids],
        "probability": [restricted[t].tolist() for t in rows],
    }
