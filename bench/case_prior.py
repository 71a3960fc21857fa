"""Which letter-case prior? Exact match (case-sensitive) of one model under several ``case_prior`` values.

    python bench/case_prior.py --model checkpoints/vanilla_crnn_int8 dataset/val dataset/test \\
        ../shared/realdev/easy ../shared/realdev/easy_gif ../shared/realdev/ctext

The network runs once per folder; only the decoding changes (``models.codec``, "Letter case"). Choose the value
on a validation folder (``dataset/val``), not on the folders you report. Prints one row per folder: exact match per
prior, and how many images the prior fixed and broke against ``case_prior=0``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from models.codec import CASE_PRIOR, greedy_decode  # noqa: E402
from models.dataset import read_folder  # noqa: E402
from models.engine import load_engine  # noqa: E402
from models.preprocess import ImageError, preprocess  # noqa: E402


def folder_logits(engine, folder: Path, batch: int) -> tuple[np.ndarray, list[str]]:
    samples, _ = read_folder(folder, source=folder.name)
    chunks, labels = [], []
    for start in range(0, len(samples), batch):
        arrays = []
        for sample in samples[start : start + batch]:
            try:
                arrays.append(preprocess(sample.path, engine.spec))
                labels.append(sample.label)
            except ImageError as e:
                print(f"skipped {sample.path}: {e}", file=sys.stderr)
        if arrays:
            chunks.append(engine.logits(np.stack(arrays)))
    return np.concatenate(chunks), labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="folders with labels.txt or labels.tsv")
    parser.add_argument("--model", default="checkpoints/vanilla_crnn_int8")
    parser.add_argument("--priors", default=f"0,0.1,{CASE_PRIOR},0.3,0.5", help="comma-separated values to compare")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    priors = [float(p) for p in args.priors.split(",")]
    engine = load_engine(args.model)
    print(f"# {engine.name}: exact match, case-sensitive (fixed / broken against case_prior=0)")
    print("| folder | n | " + " | ".join(f"prior {p:g}" for p in priors) + " |")
    print("|---|---:|" + "---:|" * len(priors))
    for folder in map(Path, args.folders):
        logits, labels = folder_logits(engine, folder, args.batch)
        truth = np.array(labels)
        base = np.array([d.text for d in greedy_decode(logits, engine.charset, case_prior=0)]) == truth
        cells = []
        for prior in priors:
            right = np.array([d.text for d in greedy_decode(logits, engine.charset, case_prior=prior)]) == truth
            cell = f"{100 * right.mean():.2f}%"
            if prior:
                cell += f" (+{int((right & ~base).sum())} / -{int((base & ~right).sum())})"
            cells.append(cell)
        print(f"| {folder} | {len(truth)} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
