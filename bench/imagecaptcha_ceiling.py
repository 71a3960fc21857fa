"""How high can exact match go on python ``captcha`` ImageCaptcha? Characters its drawing makes alike.

    python bench/imagecaptcha_ceiling.py dataset/zero_shot/imagecaptcha

ImageCaptcha draws each character alone in DroidSansMono (one of three sizes, picked per character), crops it to
its ink and stretches the crop back to the character's full cell (``_draw_character``), so a lower-case ``o`` is
drawn as tall and as wide as ``O`` and ``0``. Then it rotates each character by up to 30 degrees and warps it by
up to 30% of its cell, which moves pixels by far more than one. This script

1. draws every character of the zero-shot alphabet (bench/zero_shot.py) the way ``_draw_character`` does, without
   the random offset, rotation and warp, at each of the three sizes, and groups the characters whose stretched
   glyphs lie within ``--shift`` pixels of each other (Hausdorff distance, bench/glyph_ceiling.py's test);
2. for each labelled folder, prints the exact match an ideal reader can expect: within a group it names the
   character most often right under the metric (ignoring case, ``O`` and ``o`` count as one; labels draw every
   character alike often), per character averaged over the three sizes, multiplied over the label.

The figure is an upper bound: it counts only these look-alikes, not rotation, warp, noise or touching characters.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from bench.glyph_ceiling import alike, linked_groups, misread
from bench.zero_shot import IMAGECAPTCHA_ALPHABET
from models.charset import read_labels
from models.dataset import label_file_of


def stretched_glyph(font: ImageFont.FreeTypeFont, char: str) -> np.ndarray:
    """The character as ImageCaptcha draws it before rotation and warp: its ink stretched to its cell."""
    _, _, w, h = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox((1, 1), char, font=font)
    image = Image.new("L", (int(w), int(h)), 0)
    ImageDraw.Draw(image).text((0, 0), char, font=font, fill=255)
    return np.asarray(image.crop(image.getbbox()).resize((int(w), int(h)))) > 127


def groups(font: ImageFont.FreeTypeFont, alphabet: str, shift: int) -> list[str]:
    """Characters whose stretched glyphs lie within ``shift`` pixels of another's (same cell size), grouped; each
    group in code-point order."""
    glyphs = {c: stretched_glyph(font, c) for c in alphabet}

    def related(a: str, b: str) -> bool:
        return glyphs[a].shape == glyphs[b].shape and alike(glyphs[a], glyphs[b], shift)

    return sorted("".join(sorted(g)) for g in linked_groups(alphabet, related))


def expected_em(labels: list[str], wrong_per_size: list[dict[str, float]]) -> float:
    """Mean over labels of the chance that every character is read right (size picked per character)."""
    total = 0.0
    for label in labels:
        p = 1.0
        for c in label:
            p *= 1 - float(np.mean([w.get(c, 0.0) for w in wrong_per_size]))
        total += p
    return total / max(1, len(labels))


def main(argv: list[str] | None = None) -> int:
    from captcha.image import ImageCaptcha

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, help="labelled ImageCaptcha folders (labels.tsv or .txt)")
    parser.add_argument("--shift", type=int, nargs="+", default=[1, 2], help="pixels two glyphs may differ by")
    args = parser.parse_args(argv)

    fonts = ImageCaptcha().truefonts
    metrics = {"ignoring case": str.lower, "case-sensitive": str}
    print("| shift (px) | size | characters alike once stretched to the cell |")
    print("|---:|---:|---|")
    table = {}
    for shift in args.shift:
        per_size = [groups(font, IMAGECAPTCHA_ALPHABET, shift) for font in fonts]
        for font, found in zip(fonts, per_size, strict=True):
            print(f"| {shift} | {font.size} | {' '.join('/'.join(g) for g in found) or 'none'} |")
        table[shift] = {name: [misread(g, fold) for g in per_size] for name, fold in metrics.items()}
    print()
    print("| folder | labels | shift (px) | ideal-reader EM ignoring case | case-sensitive |")
    print("|---|---:|---:|---:|---:|")
    for folder in args.folders:
        labels = [row.label for row in read_labels(label_file_of(folder)).rows]
        for shift, wrong in table.items():
            em = {name: expected_em(labels, w) for name, w in wrong.items()}
            print(f"| {folder} | {len(labels)} | {shift} | {em['ignoring case']:.1%} | {em['case-sensitive']:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
