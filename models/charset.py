"""Charset, label convention and label-file reading.

The label convention (one for the whole project):

* A label records the glyphs drawn in the image, case-sensitive.
* Full-width ASCII forms become ASCII (``？`` -> ``?``, ``３`` -> ``3``), whitespace and zero-width
  characters are removed.
* In arithmetic expressions ``×`` and ``÷`` become ``*`` and ``/``. The reference tutorial labels Ruoyi
  captchas ``8×3=？`` although the image draws ``8*3=?``; mapping them back keeps one glyph one class.
  EasyCaptcha draws multiplication as the Latin letter ``x`` and keeps it.

The charset is built deterministically from labels: digits, uppercase, lowercase, then a fixed list of
symbols, then every other character by code point. Class ids are position + 1; ``BLANK`` (0) is the CTC blank.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

BLANK = 0  # CTC blank class id, defined once for the whole project

SYMBOL_ORDER = "+-*/=?()[]{}#@$%&._:,;^~<>"  # after digits and letters
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
_ARITH_LIKE = re.compile(r"^[0-9]+(?:[+\-*/x×÷][0-9]+)+=?[?？]?$")
LABEL_ENCODINGS = ("utf-8-sig", "utf-8", "gbk")


def normalize_label(label: str) -> str:
    """Return ``label`` in the project's convention (see the module docstring)."""
    text = label.translate(_ZERO_WIDTH)
    # Full-width ASCII block U+FF01..U+FF5E maps to U+0021..U+007E; NFC keeps CJK untouched.
    text = "".join(chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else c for c in text)
    text = unicodedata.normalize("NFC", text)
    text = "".join(text.split())
    if ("×" in text or "÷" in text) and _ARITH_LIKE.match(text):
        text = text.replace("×", "*").replace("÷", "/")
    return text


def _sort_key(ch: str) -> tuple[int, int]:
    for rank, block in enumerate((string.digits, string.ascii_uppercase, string.ascii_lowercase, SYMBOL_ORDER)):
        if ch in block:
            return rank, block.index(ch)
    return 4, ord(ch)


class UnknownCharacterError(ValueError):
    """A label holds characters the charset does not know."""

    def __init__(self, label: str, unknown: set[str]) -> None:
        self.label, self.unknown = label, unknown
        super().__init__(f"label {label!r} has characters outside the charset: {''.join(sorted(unknown))!r}")


class Charset:
    """Ordered symbols; class id of ``symbols[i]`` is ``i + 1`` and ``BLANK`` is 0."""

    def __init__(self, symbols: str) -> None:
        if len(set(symbols)) != len(symbols):
            dup = [c for c, n in Counter(symbols).items() if n > 1]
            raise ValueError(f"charset has duplicate symbols: {''.join(dup)!r}")
        if any(c.isspace() for c in symbols):
            raise ValueError("charset must not contain whitespace")
        self.symbols = symbols
        self._index = {c: i + 1 for i, c in enumerate(symbols)}

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> Charset:
        """Build the charset of every character in ``labels`` (already normalized), in the fixed order."""
        chars: set[str] = set()
        for label in labels:
            chars.update(label)
        return cls("".join(sorted(chars, key=_sort_key)))

    @classmethod
    def load(cls, path: str | Path) -> Charset:
        """Read ``charset.txt``: one line of symbols (the tutorial's format) or one symbol per line."""
        text = Path(path).read_text(encoding="utf-8-sig")
        lines = [line for line in text.splitlines() if line]
        symbols = "".join(lines) if len(lines) > 1 and all(len(s) == 1 for s in lines) else text.strip("\r\n")
        return cls(symbols)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.symbols, encoding="utf-8")

    @property
    def num_classes(self) -> int:
        return len(self.symbols) + 1  # + blank

    def __len__(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Charset) and other.symbols == self.symbols

    def __contains__(self, ch: str) -> bool:
        return ch in self._index

    def unknown(self, label: str) -> set[str]:
        return {c for c in label if c not in self._index}

    def encode(self, label: str) -> list[int]:
        """Class ids of ``label``; raises ``UnknownCharacterError`` instead of dropping characters."""
        missing = self.unknown(label)
        if missing:
            raise UnknownCharacterError(label, missing)
        return [self._index[c] for c in label]

    def ids_for(self, chars: str) -> list[int]:
        """Class ids of the characters of ``chars`` that the charset knows (for decode-time restriction)."""
        return sorted({self._index[c] for c in chars if c in self._index})

    def extend(self, labels: Iterable[str]) -> Charset:
        """A charset with this one's symbols first (ids unchanged) and new characters appended in order."""
        new = Charset.from_labels(labels).symbols
        return Charset(self.symbols + "".join(c for c in new if c not in self._index))


@dataclass
class LabelRow:
    filename: str
    label: str
    extra: dict[str, str] = field(
        default_factory=dict
    )  # further columns (type, answer, ...) when the file has a header


@dataclass
class LabelFile:
    rows: list[LabelRow]
    problems: list[str]  # one human-readable line per malformed line, never silently skipped
    encoding: str


def read_labels(path: str | Path) -> LabelFile:
    """Read ``labels.txt`` (``name<TAB>label``) or a ``labels.tsv`` with a header row.

    Lenient like the tutorial: lines are stripped, empty lines skipped, split at the first TAB, or at whitespace
    when there is no TAB. Lines without a label are reported in ``problems``.
    """
    raw = Path(path).read_bytes()
    for encoding in LABEL_ENCODINGS:
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gbk decodes almost anything
        raise ValueError(f"{path}: not UTF-8 or GBK text")
    lines = text.splitlines()
    header: list[str] | None = None
    if lines and lines[0].split("\t")[:2] == ["filename", "label"]:
        header = lines[0].split("\t")
        lines = lines[1:]
    rows: list[LabelRow] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=2 if header else 1):
        line = line.strip("\r\n")
        if not line.strip():
            continue
        if header:
            cells = line.split("\t")
            if len(cells) < 2 or not cells[0] or not cells[1]:
                problems.append(f"{path}:{number}: expected filename<TAB>label, got {line!r}")
                continue
            extra = dict(zip(header[2:], cells[2:], strict=False))
            rows.append(LabelRow(cells[0], cells[1], extra))
            continue
        line = line.strip()
        if "\t" in line:
            name, label = line.split("\t", 1)
        else:
            parts = line.split()
            name, label = parts[0], " ".join(parts[1:])
        name, label = name.strip(), label.strip()
        if not name or not label:
            problems.append(f"{path}:{number}: expected filename<TAB>label, got {line!r}")
            continue
        rows.append(LabelRow(name, label))
    return LabelFile(rows, problems, encoding)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp")


def labels_from_names(folder: str | Path) -> LabelFile:
    """Labels taken from image file names, the layout of many public captcha sets: ``<label>_<anything>.<ext>``,
    or ``<label>.<ext>`` when the name has no ``_``. Names that start with ``_`` are reported in ``problems``."""
    rows: list[LabelRow] = []
    problems: list[str] = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        label = path.stem.split("_", 1)[0].strip()
        if label:
            rows.append(LabelRow(path.name, label))
        else:
            problems.append(f"{path}: no label before the first '_' (expected <label>_<anything>{path.suffix})")
    return LabelFile(rows, problems, "file names")


def write_labels(path: str | Path, rows: Iterable[tuple[str, str]]) -> None:
    """Write ``name<TAB>label`` lines, UTF-8, LF endings."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for name, label in rows:
            f.write(f"{name}\t{label}\n")
