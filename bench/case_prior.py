"""Which letter-case prior? Exact match (case-sensitive) of one model under several ``case_prior`` values.

    python bench/case_prior.py --model checkpoints/vanilla_crnn_int8 dataset/val dataset/test \\
        ../shared/realdev/easy ../shared/realdev/easy_gif ../shared/realdev/ctext

The network runs once per folder; only the decoding changes (``models.codec``, "Letter case"). Choose the value
on a validation folder (``dataset/val``), not on the folders you report. Prints one row per folder: exact match per
prior, and how many images the prior fixed and broke against ``case_prior=0``; then the cost of decoding one image
(CTC decode alone, on the first folder's logits) with and without the prior, interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import folder_logits
from models.codec import CASE_PRIOR, greedy_decode
from models.engine import load_engine


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
    first = None  # the first folder's logits, for the timing
    for folder in map(Path, args.folders):
        logits, samples = folder_logits(engine, folder, args.batch)
        truth = np.array([s.label for s in samples])
        base = np.array([d.text for d in greedy_decode(logits, engine.charset, case_prior=0)]) == truth
        cells = []
        for prior in priors:
            right = np.array([d.text for d in greedy_decode(logits, engine.charset, case_prior=prior)]) == truth
            cell = f"{100 * right.mean():.2f}%"
            if prior:
                cell += f" (+{int((right & ~base).sum())} / -{int((base & ~right).sum())})"
            cells.append(cell)
        print(f"| {folder} | {len(truth)} | " + " | ".join(cells) + " |")
        first = logits if first is None else first
    print_decode_cost(first, engine.charset, max(priors))
    return 0


def print_decode_cost(logits: np.ndarray, charset, prior: float, calls: int = 2000) -> None:
    """p50 of one-image greedy_decode with prior 0 and ``prior``, alternating call by call."""
    times: dict[float, list[float]] = {0.0: [], prior: []}
    for i in range(calls):
        one = logits[i % len(logits)][None]
        for value in times:
            start = time.perf_counter()
            greedy_decode(one, charset, case_prior=value)
            times[value].append(time.perf_counter() - start)
    off, on = (1000 * statistics.median(times[v]) for v in (0.0, prior))
    print(f"\nCTC decode of one image, p50 over {calls} calls: prior 0 {off:.3f} ms, prior {prior:g} {on:.3f} ms")


if __name__ == "__main__":
    sys.exit(main())
