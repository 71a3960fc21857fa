"""A tiny labelled captcha set drawn with Pillow (text, arithmetic, GIF): what the tests and the bench scripts
train and read when there is no generated dataset (no JDK needed)."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ALPHABET = "0123456789ABCDEF"


def _font(size: int):
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def draw_text(text: str, rng: random.Random, size=(120, 40)) -> Image.Image:
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = _font(24)
    x = 6
    for ch in text:
        draw.text((x, rng.randint(2, 8)), ch, fill=tuple(rng.randint(0, 150) for _ in range(3)), font=font)
        x += (size[0] - 12) // max(4, len(text))
    draw.line([(0, rng.randint(0, size[1])), (size[0], rng.randint(0, size[1]))], fill=(120, 120, 120))
    return image


def draw_gif(text: str, rng: random.Random, path: Path) -> None:
    """One frame per character, frame i hides character i (EasyCaptcha's scheme)."""
    frames = []
    for hidden in range(len(text)):
        shown = "".join(c if i != hidden else " " for i, c in enumerate(text))
        frames.append(draw_text(shown, random.Random(7), (120, 40)).convert("P"))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)


def make_dataset(root: Path, n: int, seed: int = 0, gif_every: int = 10) -> Path:
    """``root/images/*``, ``root/labels.txt`` and ``root/meta.tsv``; every fifth sample is arithmetic."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    labels, meta = [], ["filename\tlabel\tsource\ttype\tanswer"]
    for i in range(n):
        if i % 5 == 4:
            a, b = rng.randint(0, 9), rng.randint(0, 9)
            text, kind, answer = f"{a}+{b}=?", "arith", str(a + b)
        else:
            text, kind, answer = "".join(rng.choice(ALPHABET) for _ in range(4)), "text", ""
        if gif_every and i % gif_every == 2:
            name, kind = f"{i:05d}.gif", "gif"
            draw_gif(text, rng, root / "images" / name)
        else:
            name = f"{i:05d}.png"
            draw_text(text, rng).save(root / "images" / name)
        labels.append(f"{name}\t{text}")
        meta.append(f"{name}\t{text}\tfixture\t{kind}\t{answer}")
    (root / "labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    (root / "meta.tsv").write_text("\n".join(meta) + "\n", encoding="utf-8")
    return root
