"""Does repairing arithmetic readings pay? Answer accuracy with and without ``models.arith.best_expression``.

    python bench/expression_repair.py --model checkpoints/vanilla_crnn_duo_int8 dataset/s9b/test \\
        ../shared/realdev/hutool ../shared/realdev/easy ../shared/realdev/ruoyi

The network runs once per folder; only the decoding changes (``models.codec``, "Arithmetic"). Prints, per folder
and type of the rows with an answer: answer accuracy without and with the repair, and how many it fixed and broke;
then how many readings of the rows without an answer changed (the repair should leave them alone), and the cost
of decoding one repaired image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.common import folder_logits
from models.arith import looks_arithmetic, solve
from models.codec import greedy_decode
from models.engine import load_engine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="labelled folders (labels.txt, labels.tsv or meta.tsv)")
    parser.add_argument("--model", default="checkpoints/vanilla_crnn_int8")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    engine = load_engine(args.model)
    print(f"# {engine.name}: answer accuracy without / with the repair (fixed / broken)")
    print("| folder | type | n | without | with |")
    print("|---|---|---:|---:|---:|")
    others = changed = right_before = right_after = 0
    repaired = []  # logits of images whose reading the repair touches, for the timing
    for folder in map(Path, args.folders):
        logits, samples = folder_logits(engine, folder, args.batch)
        off = [d.text for d in greedy_decode(logits, engine.charset, expressions=False)]
        on = [d.text for d in greedy_decode(logits, engine.charset)]
        repaired += [logits[i] for i, text in enumerate(off) if looks_arithmetic(text)]
        kinds: dict[str, list[int]] = {}
        for i, sample in enumerate(samples):
            if sample.answer is None:
                others += 1
                if off[i] != on[i]:
                    changed += 1
                    right_before += off[i] == sample.label
                    right_after += on[i] == sample.label
            else:
                kinds.setdefault(f"{sample.source}/{sample.type}".strip("/"), []).append(i)
        for kind, rows in sorted(kinds.items()):
            before = np.array([solve(off[i]) == samples[i].answer for i in rows])
            after = np.array([solve(on[i]) == samples[i].answer for i in rows])
            print(
                f"| {folder} | {kind} | {len(rows)} | {100 * before.mean():.1f}% | {100 * after.mean():.1f}% "
                f"(+{int((after & ~before).sum())} / -{int((before & ~after).sum())}) |"
            )
    print(
        f"\nReadings changed on the {others} rows without an answer: {changed} (right before: {right_before}, "
        f"after: {right_after})"
    )
    if repaired:
        times = []
        for i in range(200):
            one = repaired[i % len(repaired)][None]
            start = time.perf_counter()
            greedy_decode(one, engine.charset)
            times.append(time.perf_counter() - start)
        print(f"CTC decode of one repaired image, p50 over 200 calls: {1000 * statistics.median(times):.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
