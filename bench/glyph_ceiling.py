"""How high can exact match go on Kaptcha ctext? Characters that render alike in one font.

    python bench/glyph_ceiling.py dataset/test

``KaptchaTextRunner`` draws every character of a ctext captcha in a font picked at random from its mix (bold,
one size per image: ``round(0.72 * height)``). Where two characters of its 62-character set render alike in one
font (Liberation Sans Bold draws ``l`` and ``I`` as the same bar with the same advance, ``l`` one pixel taller at
60 pixels), the pixels say nothing about which one it is: the best any reader can do is guess, and it is wrong
``1 - 1/m`` of the time for a group of ``m`` such characters. This script

1. renders the charset in each font of the mix with Pillow (names resolved with ``fc-match``, as Java resolves
   its logical fonts ``Dialog`` and ``Serif`` on Linux) at each image height of the folders, and groups the
   characters whose binarized glyphs lie within ``--shift`` pixels of each other (Hausdorff distance, glyphs on
   one baseline) and whose advances differ by at most as much; Kaptcha's ripple and fisheye move pixels by more
   than one. ``--shift 0`` asks for pixel-identical glyphs;
2. prints those groups per font;
3. for each labelled folder, takes its ctext rows (``type`` starting with ``text:``) and prints the exact match an
   ideal reader can expect, ``prod_c (1 - sum_F w_F (1 - 1/m_F(c)))`` per captcha, with rows flagged
   ``edge_clip`` (glyphs off the canvas) counted apart.

The figure is an upper bound: it counts only this one ambiguity, not distortion, noise or glyphs off the canvas.
It holds for folders drawn with the mix (our splits), not for ``../shared/realdev``, whose per-character fonts
are unknown.

    python bench/glyph_ceiling.py --family hutool ../shared/realdev/hutool dataset/s9b/test --scale-to 48

``--family hutool`` does the same for Hutool captchas, real ones included: every type draws its text in
``SansSerif`` plain (DejaVu Sans on Linux) at ``int(0.75 * height)`` on one baseline, in Hutool's 62-character
alphabet (read from ``HutoolRunner.java``). Exact match is scored ignoring case, so a group counts only where its
characters differ under that metric (``I``/``l``, not ``S``/``s``), per type, with the ``edge_clip`` rows apart.
``--scale-to H`` draws the glyphs at the size they have once the image is scaled to H pixels high, as a model
that reads H-pixel inputs sees them (the default model reads 48); without it, at the drawn size.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from models.dataset import read_folder, read_meta
from models.paths import ROOT

RUNNER = ROOT / "tools" / "java_captcha" / "KaptchaTextRunner.java"
HUTOOL_RUNNER = ROOT / "tools" / "java_captcha" / "HutoolRunner.java"
HUTOOL_TYPES = ("line", "circle", "gif", "shear", "math")
# Java's logical fonts on Linux go through fontconfig's generic families.
LOGICAL = {"Dialog": "sans", "SansSerif": "sans", "Serif": "serif", "Monospaced": "monospace"}


def runner_defaults(source: Path = RUNNER) -> tuple[str, dict[str, float]]:
    """The charset and the default ctext font mix, read from ``KaptchaTextRunner.java`` (one source of truth)."""
    text = source.read_text(encoding="utf-8")
    charset = re.search(r'CHARSET\s*=\s*"([^"]+)"', text)
    body = re.search(r"defaultFonts\(String type\)\s*\{(.*?)\n    \}", text, re.S)
    if not charset or not body:
        raise SystemExit(f"{source}: CHARSET or defaultFonts not found; pass --fonts")
    call = body.group(1).split("return", 1)[-1].split("asMap")[0]  # past the comments, up to .asMap()
    mix = "".join(re.findall(r'"([^"]*)"', call)[:-1])  # the last literal is the option name, "fonts"
    return charset.group(1), parse_mix(mix)


def drawn_size(height: int) -> int:
    """The font size KaptchaTextRunner draws an image of this height with."""
    return max(16, round(0.72 * height))


def parse_mix(mix: str) -> dict[str, float]:
    weights = {}
    for part in mix.split(","):
        name, _, weight = part.rpartition(":")
        if not name:
            raise SystemExit(f"font mix entry {part!r}: expected NAME:WEIGHT")
        weights[name.strip()] = float(weight)
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items()}


def hutool_alphabet(source: Path = HUTOOL_RUNNER) -> str:
    """Hutool's alphabet, read from ``HutoolRunner.java``."""
    found = re.search(r'ALPHABET\s*=\s*"([^"]+)"', source.read_text(encoding="utf-8"))
    if not found:
        raise SystemExit(f"{source}: ALPHABET not found")
    return found.group(1)


def hutool_size(height: int) -> int:
    """The font size Hutool draws an image of this height with."""
    return int(0.75 * height)


def font_file(name: str, style: str = "bold") -> tuple[str, int]:
    """The face fontconfig gives for ``name`` in ``style`` (path, index in a collection)."""
    pattern = f"{LOGICAL.get(name, name)}:{style}"
    try:
        out = subprocess.run(
            ["fc-match", "-f", "%{file}\n%{index}", pattern], capture_output=True, text=True, check=True
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"fc-match {pattern!r} failed ({exc}): install fontconfig and the fonts (make system-deps)"
        ) from exc
    return out[0], int(out[1] or 0)


def glyph(font: ImageFont.FreeTypeFont, char: str, size: int) -> tuple[np.ndarray, float]:
    """Binarized glyph on a fixed baseline (so height and position count) and its advance in pixels."""
    canvas = Image.new("L", (3 * size, 2 * size), 0)
    ImageDraw.Draw(canvas).text((size // 2, int(1.5 * size)), char, fill=255, font=font, anchor="ls")
    return np.asarray(canvas) > 127, font.getlength(char)


def dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary dilation by ``steps`` pixels in the chessboard metric (a 3x3 square, ``steps`` times)."""
    for _ in range(steps):
        padded = np.pad(mask, 1)
        grown = np.zeros_like(mask)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                grown |= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
        mask = grown
    return mask


def alike(a: np.ndarray, b: np.ndarray, shift: int) -> bool:
    """Each glyph lies within ``shift`` pixels of the other (Hausdorff distance <= shift)."""
    return not (a & ~dilate(b, shift)).any() and not (b & ~dilate(a, shift)).any()


def alike_groups(path: str, index: int, charset: str, size: int, shift: int) -> list[str]:
    """Groups (two or more) of characters whose glyphs differ by at most ``shift`` pixels and whose advances
    differ by at most ``shift`` pixels: what Kaptcha's ripple and fisheye (several pixels) cannot keep apart."""
    font = ImageFont.truetype(path, size, index=index)
    glyphs = {c: glyph(font, c, size) for c in charset}

    def related(a: str, b: str) -> bool:
        (mask_a, adv_a), (mask_b, adv_b) = glyphs[a], glyphs[b]
        return abs(adv_a - adv_b) <= shift and alike(mask_a, mask_b, shift)

    return linked_groups(charset, related)


def linked_groups(chars: str, related: Callable[[str, str], bool]) -> list[str]:
    """The groups (two or more) that ``related`` links, directly or through others; each in ``chars``' order."""
    parent = list(range(len(chars)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(chars):
        for j in range(i + 1, len(chars)):
            if related(a, chars[j]):
                parent[find(j)] = find(i)
    groups: dict[int, str] = {}
    for i, c in enumerate(chars):
        groups[find(i)] = groups.get(find(i), "") + c
    return sorted(g for g in groups.values() if len(g) > 1)


def misread(group_list: list[str], fold: Callable[[str], str] = str) -> dict[str, float]:
    """Chance the ideal reader gets each grouped character wrong under the metric ``fold``: it names the class
    (characters equal under ``fold``) with the most members in the group, a tie split evenly."""
    wrong = {}
    for group in group_list:
        counts: dict[str, int] = {}
        for c in group:
            counts[fold(c)] = counts.get(fold(c), 0) + 1
        best = [k for k, n in counts.items() if n == max(counts.values())]
        for c in group:
            wrong[c] = 1 - (1 / len(best) if fold(c) in best else 0)
    return wrong


def ctext_rows(folder: Path) -> Iterable[tuple[str, int, bool, tuple[str, ...]]]:
    """(label, image height, edge_clip, fonts used) of the ctext rows of a labelled folder's meta.tsv."""
    meta = read_meta(folder)
    if not meta:
        raise SystemExit(f"{folder / 'meta.tsv'}: not found (a folder written by tools/merge_datasets.py or a runner)")
    for filename, row in meta.items():
        if not row.get("type", "").startswith("text:"):
            continue
        height = row.get("height", "")
        if not height.isdigit():
            image_path = folder / "images" / filename
            height = image_height(image_path if image_path.exists() else folder / filename)
            if height is None:
                continue
        fonts = tuple(f for f in row.get("font", "").split("+") if f)
        yield row["label"], int(height), "edge_clip" in row.get("flags", "").split(","), fonts


def p_correct(label: str, fonts: tuple[str, ...], wrong: dict[tuple[str, str], float], mix: dict[str, float]) -> float:
    """Chance that an ideal reader gets every character right. The fonts the runner recorded for the image narrow
    each character's font to those (weights renormalized); an unknown name leaves the whole mix."""
    used = {f: mix[f] for f in fonts} if fonts and all(f in mix for f in fonts) else mix
    total = sum(used.values())
    p = 1.0
    for c in label:
        p *= 1 - sum(w * wrong.get((f, c), 0.0) for f, w in used.items()) / total
    return p


def seen_size(size: int, height: int, scale_to: int | None) -> int:
    """The font size as a reader of ``scale_to``-pixel-high images sees it (the drawn size without one)."""
    return size if not scale_to else max(1, round(size * scale_to / height))


def image_height(path: Path) -> int | None:
    """The image's height in pixels, or None (printed) when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.height
    except OSError as exc:
        print(f"skipped {path}: {exc}", file=sys.stderr)
        return None


def hutool_rows(folder: Path) -> Iterable[tuple[str, str, int, bool]]:
    """(type, label, image height, edge_clip) of the Hutool rows of a labelled folder: our splits (source
    ``hutool``) or a folder of Hutool captchas alone, such as ``../shared/realdev/hutool`` (no source column)."""
    samples, report = read_folder(folder)
    if not samples:
        raise SystemExit(f"{folder}: no labelled images found ({report.root}; labels.txt, labels.tsv or meta.tsv)")
    for sample in samples:
        if sample.source not in ("", "hutool") or sample.type not in HUTOOL_TYPES:
            continue
        height = image_height(sample.path)
        if height is not None:
            yield sample.type, sample.label, height, "edge_clip" in sample.flags.split(",")


def p_right(label: str, misses: dict[str, float]) -> float:
    """Chance that an ideal reader gets every character of ``label`` right, given each character's miss chance."""
    return float(np.prod([1 - misses.get(c, 0.0) for c in label]))


def by_clip(chances: Iterable[tuple[float, bool]]) -> tuple[dict[bool, int], dict[bool, str], float]:
    """Ideal-reader chances of rows, each ``(chance of reading it right, edge_clip)``: per side (without / with
    edge_clip) the row count and the exact match ("-" where there are none), and the expected misses over both."""
    sides: dict[bool, list[float]] = {False: [], True: []}
    for chance, clip in chances:
        sides[clip].append(chance)
    em = {clip: f"{100 * np.mean(p):.2f}%" if p else "-" for clip, p in sides.items()}
    return {clip: len(p) for clip, p in sides.items()}, em, sum(1 - q for p in sides.values() for q in p)


def hutool_main(args: argparse.Namespace) -> None:
    alphabet = hutool_alphabet()
    path, index = font_file("SansSerif", "regular")
    rows = {folder: list(hutool_rows(folder)) for folder in args.folders}
    heights = {r[2] for rs in rows.values() for r in rs} or {int(h) for h in args.heights.split(",")}

    def size_of(height: int) -> int:
        return seen_size(hutool_size(height), height, args.scale_to)

    sizes = {(hutool_size(h), size_of(h)) for h in heights}
    wrong: dict[int, dict[str, float]] = {}  # per seen size: chance of a miss, ignoring case
    seen_at = f", seen at {args.scale_to} px high" if args.scale_to else ""
    print(f"Characters within {args.shift} px of another (glyph and advance){seen_at}, {Path(path).name}:\n")
    print("| drawn size | seen size | characters that render alike | that differ ignoring case |")
    print("|---:|---:|---|---|")
    groups_at = {seen: alike_groups(path, index, alphabet, seen, args.shift) for _, seen in sizes}
    for drawn, seen in sorted(sizes):
        groups = groups_at[seen]  # several drawn sizes can be seen at one size (--scale-to)
        wrong[seen] = misread(groups, str.lower)
        differ = [g for g in groups if len({c.lower() for c in g}) > 1]
        shown = " ".join("/".join(g) for g in groups) or "none"
        print(f"| {drawn} | {seen} | {shown} | {' '.join('/'.join(g) for g in differ) or 'none'} |")
    if not rows:
        return
    print()
    print(
        "| folder | type | rows | without edge_clip | ideal-reader EM ignoring case there | expected misses "
        "| edge_clip rows | ideal EM there | ideal EM, all rows |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for folder, samples in rows.items():
        for kind in HUTOOL_TYPES:
            of_kind = [r for r in samples if r[0] == kind]
            if not of_kind:
                continue
            n, em, misses = by_clip((p_right(label, wrong[size_of(h)]), clip) for _, label, h, clip in of_kind)
            print(
                f"| {folder} | {kind} | {len(of_kind)} | {n[False]} | {em[False]} | {misses:.1f} "
                f"| {n[True]} | {em[True]} | {100 * (1 - misses / len(of_kind)):.2f}% |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", type=Path, help="labelled folders drawn with the mix (meta.tsv)")
    parser.add_argument("--family", choices=("ctext", "hutool"), default="ctext", help="whose drawing (default ctext)")
    parser.add_argument("--fonts", help="font mix NAME:WEIGHT,... (default: KaptchaTextRunner's; ctext only)")
    parser.add_argument("--shift", type=int, default=1, help="pixels two glyphs may differ by (default 1)")
    parser.add_argument("--heights", default="60", help="image heights to list groups for when no folder is given")
    parser.add_argument("--scale-to", type=int, help="draw glyphs as seen once the image is scaled to this height")
    args = parser.parse_args()
    if args.family == "hutool":
        hutool_main(args)
    else:
        ctext_main(args)


def ctext_main(args: argparse.Namespace) -> None:
    charset, mix = runner_defaults()
    if args.fonts:
        mix = parse_mix(args.fonts)
    rows = {folder: list(ctext_rows(folder)) for folder in args.folders}
    heights = {r[1] for rs in rows.values() for r in rs} or {int(h) for h in args.heights.split(",")}
    files = {name: font_file(name) for name in mix}

    def size_of(height: int) -> int:
        return seen_size(drawn_size(height), height, args.scale_to)

    # wrong[size][(font, char)]: chance that an ideal reader misreads char drawn in font at that size.
    wrong: dict[int, dict[tuple[str, str], float]] = {}
    print(f"Characters within {args.shift} px of another (glyph and advance), per font and drawn size:\n")
    print("| font (weight) | file | size | characters that render alike |")
    print("|---|---|---:|---|")
    for size in sorted({size_of(h) for h in heights}):
        wrong[size] = {}
        for name, weight in mix.items():
            path, index = files[name]
            groups = alike_groups(path, index, charset, size, args.shift)
            wrong[size].update({(name, c): miss for c, miss in misread(groups).items()})
            shown = " ".join("/".join(g) for g in groups) or "none"
            print(f"| {name} ({weight:.3f}) | {Path(path).name} | {size} | {shown} |")

    if not rows:
        return
    print()
    print(
        "| folder | ctext rows | without edge_clip | ideal-reader EM there | expected misses | edge_clip rows "
        "| ideal EM there |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for folder, samples in rows.items():
        n, em, misses = by_clip(
            (p_correct(label, fonts, wrong[size_of(h)], mix), clip) for label, h, clip, fonts in samples
        )
        print(f"| {folder} | {len(samples)} | {n[False]} | {em[False]} | {misses:.1f} | {n[True]} | {em[True]} |")


if __name__ == "__main__":
    main()
