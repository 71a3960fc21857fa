"""Which GIF frame fusion reads best? Scores each fusion on real EasyCaptcha GIFs with an independent reader.

The reader is ddddocr (a PyPI package that ships its own models), so the choice does not depend on our models.
    pip install ddddocr            # in any venv with numpy + Pillow
    python bench/gif_fusion.py [--root ../shared/realdev/easy_gif]
Prints exact match (ignoring case) per fusion and per GIF type.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageSequence

from bench.common import open_ddddocr
from models.charset import read_labels
from models.paths import REALDEV
from models.preprocess import _flatten, fuse_frames

FUSIONS = ("first", "min", "mean", "median")


def fused_png(path: Path, fusion: str) -> bytes:
    image = Image.open(path)
    frames = [_flatten(f.copy()) for f in ImageSequence.Iterator(image)]
    out = frames[0] if fusion == "first" else fuse_frames(frames, fusion)
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REALDEV / "easy_gif"))
    args = parser.parse_args()
    try:
        reader = open_ddddocr()
    except ImportError:
        sys.exit("ddddocr is not installed: pip install ddddocr")
    root = Path(args.root)
    rows = read_labels(root / "labels.tsv").rows
    print(f"{len(rows)} GIFs from {root}")
    print(f"{'fusion':8s} {'all':>7s} " + " ".join(f"{t:>13s}" for t in sorted({r.extra["type"] for r in rows})))
    for fusion in FUSIONS:
        hits: dict[str, list[bool]] = defaultdict(list)
        for row in rows:
            pred = reader.classification(fused_png(root / row.filename, fusion))
            ok = pred.casefold() == row.label.casefold()
            hits[row.extra["type"]].append(ok)
            hits["all"].append(ok)
        cells = " ".join(f"{100 * sum(hits[t]) / len(hits[t]):12.1f}%" for t in sorted(hits) if t != "all")
        print(f"{fusion:8s} {100 * sum(hits['all']) / len(hits['all']):6.1f}% {cells}")


if __name__ == "__main__":
    main()
