"""Side-by-side sheets: real-library captchas (``../shared/realdev``, models.paths.REALDEV) next to ours of the same type and size.

    python tools/make_sheets.py --realdev ../shared/realdev --out docs/sheets [--rows 14] [--family all]

For every picked real image the matching runner draws a few images of the same type and size (and, for text, the
same length); the sheet shows the real one on the left and ours on the right. GIFs are shown as the per-pixel
minimum of their frames (what a reader fuses) followed by their first frame. The sheets are for looking only:
nothing here is tuned to single real files.
"""

from __future__ import annotations

import argparse
import csv
import random
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageSequence

from models.paths import REALDEV, ROOT

# family folder in realdev -> runner class (realdev type keys are our type names)
FAMILIES = {
    "easy": "EasyCaptchaRunner",
    "easy_gif": "EasyCaptchaRunner",
    "ctext": "KaptchaTextRunner",
    "ruoyi": "RuoyiRunner",
}
LABEL_FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
]


def label_font() -> ImageFont.ImageFont:
    for path in LABEL_FONT_CANDIDATES:
        if Path(path).exists():
            return ImageFont.truetype(path, 12)
    return ImageFont.load_default()


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def as_panel(path: Path) -> Image.Image:
    """An RGB picture of one captcha: the image itself, or for a GIF its frame minimum next to frame 0."""
    image = Image.open(path)
    if getattr(image, "n_frames", 1) <= 1:
        return image.convert("RGB")
    frames = [f.convert("RGB") for f in ImageSequence.Iterator(image)]
    fused = frames[0]
    for f in frames[1:]:
        fused = ImageChops.darker(fused, f)
    w, h = fused.size
    panel = Image.new("RGB", (2 * w + 4, h), "gray")
    panel.paste(fused, (0, 0))
    panel.paste(frames[0], (w + 4, 0))
    return panel


def pick_real(rows: list[dict[str, str]], count: int, seed: int) -> list[dict[str, str]]:
    """Up to ``count`` rows spread over the types (round-robin over a seeded shuffle)."""
    rng = random.Random(seed)
    by_type: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_type.setdefault(row["type"], []).append(row)
    for group in by_type.values():
        rng.shuffle(group)
    picked: list[dict[str, str]] = []
    types = sorted(by_type)
    rng.shuffle(types)
    while len(picked) < count and any(by_type.values()):
        for t in types:
            if by_type[t] and len(picked) < count:
                picked.append(by_type[t].pop())
    return picked


def generate_like(runner: str, row: dict[str, str], size: tuple[int, int], work: Path, args) -> Path:
    """Draws 3 images of the row's type, size and length with our runner and returns the first."""
    out = work / f"{len(list(work.iterdir())):04d}"
    label = row["label"]
    type_ = row["type"]
    cmd = ["java", "-cp", str(args.java_build), runner, "gen", type_, str(out), "3"]
    cmd += ["--sizes", f"{size[0]}x{size[1]}:1", "--threads", "1", "--seed", str(zlib.crc32(row["filename"].encode()))]
    if type_ == "arith":
        cmd += ["--arith-len", str((len(label) - 1) // 2)]
    elif not type_.startswith("ruoyi"):
        cmd += ["--len", str(len(label))]
    if args.font_dir:
        cmd += ["--font-dir", str(args.font_dir)]
    subprocess.run(cmd, check=True, capture_output=True)
    return sorted((out / "images").iterdir())[0]


def make_sheet(family: str, args) -> Path:
    real_dir = args.realdev / family
    rows = pick_real(read_rows(real_dir / "labels.tsv"), args.rows, args.seed)
    runner = FAMILIES[family]
    font = label_font()
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for row in rows:
            real = as_panel(real_dir / row["filename"])
            size = Image.open(real_dir / row["filename"]).size
            ours = as_panel(generate_like(runner, row, size, work, args))
            pairs.append((f"{row['type']} {size[0]}x{size[1]}  real: {row['label']}", real, ours))
    scale = args.scale
    col_w = max(max(r.width, o.width) for _, r, o in pairs) * scale + 12
    height = sum(max(r.height, o.height) * scale + 18 for _, r, o in pairs) + 20
    sheet = Image.new("RGB", (2 * col_w, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), f"{family}: real library (left) vs ours (right)", fill="black", font=font)
    y = 20
    for title, real, ours in pairs:
        draw.text((4, y), title, fill=(200, 0, 0), font=font)
        for col, image in enumerate((real, ours)):
            big = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
            sheet.paste(big, (col * col_w + 4, y + 15))
        y += max(real.height, ours.height) * scale + 18
    out = args.out / f"{family}.png"
    sheet.save(out, optimize=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--realdev", type=Path, default=REALDEV, help="real-library samples")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "sheets", help="folder for <family>.png")
    parser.add_argument("--family", default="all", choices=["all", *FAMILIES], help="which sheet to draw")
    parser.add_argument("--rows", type=int, default=18, help="real/ours pairs per sheet")
    parser.add_argument("--scale", type=int, default=2, help="pixel magnification")
    parser.add_argument("--seed", type=int, default=7, help="which real rows are picked")
    parser.add_argument("--java-build", type=Path, default=ROOT / "build" / "java", help="compiled runners")
    parser.add_argument("--font-dir", type=Path, default=None, help="EasyCaptcha builtin TTFs")
    args = parser.parse_args()
    if not (args.java_build / "EasyCaptchaRunner.class").exists():
        sys.exit(f"compiled runners not found in {args.java_build}: run `make java` first")
    args.out.mkdir(parents=True, exist_ok=True)
    for family in FAMILIES if args.family == "all" else [args.family]:
        if (args.realdev / family / "labels.tsv").exists():
            print(make_sheet(family, args))
        else:
            print(f"skip {family}: no {args.realdev / family / 'labels.tsv'}", file=sys.stderr)


if __name__ == "__main__":
    main()
