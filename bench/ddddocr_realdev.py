"""ddddocr on labelled folders, scored exactly like tools/evaluate.py scores our models (same table, same groups).

    python bench/ddddocr_realdev.py ../shared/realdev/easy ../shared/realdev/easy_gif ../shared/realdev/ctext \
        ../shared/realdev/ruoyi
    python bench/ddddocr_realdev.py ../shared/realdev/ctext --exclude-flag edge_clip

ddddocr (PyPI, ships its own models; installed by requirements-dev.txt) gets the original file bytes, except for
animated GIFs: it would read only the first frame, which shows one character (0% exact match), so it gets our
min-fused frame as PNG, the same image our models see. Its output is normalized with our label rules (full-width
to ASCII, ``×÷`` to ``*/``) before scoring; arithmetic rows are also scored by the answer of what it read.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from bench.common import fused_png, open_ddddocr
from models.charset import normalize_label
from models.dataset import read_folder
from models.preprocess import ImageError
from models.report import Scored, format_table, format_targets, group_table, target_table


def ddddocr_input(path: Path) -> bytes:
    """File bytes, or the min-fused frame as PNG for animated images."""
    return fused_png(path) if path.suffix.lower() == ".gif" else path.read_bytes()


def score_folder(ocr, folder: Path, exclude_flag: str = "") -> list[Scored]:
    samples, _ = read_folder(folder, source=folder.name)
    if exclude_flag:
        samples = [s for s in samples if exclude_flag not in s.flags.split(",")]
    rows = []
    for s in samples:
        try:
            text = ocr.classification(ddddocr_input(s.path))
        except (ImageError, OSError) as e:
            print(f"warning: {s.path}: {e}", file=sys.stderr)
            text = ""
        with contextlib.suppress(ValueError):
            text = normalize_label(text)
        rows.append(Scored(s.path.name, s.label, text, 1.0, s.source, s.type, s.answer, s.flags))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--exclude-flag", default="")
    parser.add_argument("--targets", action="store_true", help="also print the shipped model's target table")
    args = parser.parse_args()
    try:
        ocr = open_ddddocr()
    except ImportError:
        print("error: ddddocr is not installed (pip install ddddocr==1.6.1, or make setup)", file=sys.stderr)
        return 2
    rows: list[Scored] = []
    for folder in args.folders:
        rows += score_folder(ocr, folder, args.exclude_flag)
    print(f"## ddddocr\n\n{format_table(group_table(rows))}")
    if args.targets:
        print(f"\n### targets\n\n{format_targets(target_table(rows))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
