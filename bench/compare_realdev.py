"""Every shipped model and ddddocr side by side on the same labelled folders: the target table and the table per
family and type, one column per reader (the README's tables).

    python bench/compare_realdev.py                      # checkpoints/* and ddddocr on ../shared/realdev + dataset/test
    python bench/compare_realdev.py --no-ddddocr --folders ../shared/realdev/ruoyi

Our models are scored by tools/evaluate.py's code, ddddocr by bench/ddddocr_realdev.py's (same groups, same
metrics). Per family and type the cell is exact match ignoring case, or answer accuracy for arithmetic rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench.common import open_ddddocr
from bench.ddddocr_realdev import score_folder as ddddocr_score
from models.engine import default_model_name, discover_models, load_engine
from models.paths import REALDEV, ROOT
from models.report import (
    METRIC_NAMES,
    REALDEV_FAMILIES,
    Scored,
    reads_correctly,
    rows_of_folder,
    target_table,
)
from tools.evaluate import score_folder


def cell(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def read_rates(rows: list[Scored]) -> dict[str, tuple[float, int]]:
    """{group: (share read correctly, n)} for all rows, per source and per source/type."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        ok = reads_correctly(row.pred, row.label, row.answer)
        for key in ("all", row.source, f"{row.source}/{row.type}" if row.type else ""):
            if key:
                groups[key].append(ok)
    order = ["all"] + sorted(k for k in groups if k != "all")
    return {k: (sum(groups[k]) / len(groups[k]), len(groups[k])) for k in order}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    parser.add_argument("--realdev", type=Path, default=REALDEV)
    parser.add_argument("--folders", type=Path, nargs="*", help="default: realdev families and dataset/test")
    parser.add_argument("--no-ddddocr", action="store_true")
    args = parser.parse_args()

    folders = args.folders or [args.realdev / f for f in REALDEV_FAMILIES if (args.realdev / f).is_dir()]
    if not args.folders and (ROOT / "dataset" / "test").is_dir():
        folders.append(ROOT / "dataset" / "test")
    if not folders:
        print(f"error: nothing to evaluate: no {args.realdev} and no dataset/test", file=sys.stderr)
        return 2
    models = discover_models(args.checkpoints)
    default = default_model_name(args.checkpoints)
    results: dict[str, list[Scored]] = {}
    for name, folder in models.items():
        start, engine = time.perf_counter(), load_engine(folder)
        label = f"{name} (default)" if name == default else name
        results[label] = [row for f in folders for row in rows_of_folder(f.name, score_folder(engine, f)[0])]
        print(f"{label}: {len(results[label])} images in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if not args.no_ddddocr:
        try:
            ocr = open_ddddocr()
            # ddddocr never saw our test split's conventions either; score it on the real folders only
            results["ddddocr 1.6.1"] = [
                row for f in folders if f.name in REALDEV_FAMILIES for row in ddddocr_score(ocr, f)
            ]
        except ImportError:
            print("ddddocr is not installed: its column is left out (pip install ddddocr==1.6.1)", file=sys.stderr)

    readers = list(results)
    print("### Targets (" + ", ".join(str(f) for f in folders) + ")\n")
    print("| family / type | metric | target | " + " | ".join(readers) + " |")
    print("|---|---|---:|" + "---:|" * len(readers))
    targets = {reader: {t["name"]: t for t in target_table(rows)} for reader, rows in results.items()}
    names = list(dict.fromkeys(n for per in targets.values() for n in per))
    for name in names:
        first = next(per[name] for per in targets.values() if name in per)
        cells = [cell(targets[r][name]["value"]) if name in targets[r] else "" for r in readers]
        print(
            f"| {name} | {METRIC_NAMES[first['metric']]} | {100 * first['target']:.0f}% | " + " | ".join(cells) + " |"
        )

    print(
        "\n### Per family and type (read correctly: the answer for arithmetic rows, else exact match ignoring case)\n"
    )
    print("| group | n | " + " | ".join(readers) + " |")
    print("|---|---:|" + "---:|" * len(readers))
    tables = {reader: read_rates(rows) for reader, rows in results.items()}
    groups = list(dict.fromkeys(g for t in tables.values() for g in t))
    for group in groups:
        n = next(t[group][1] for t in tables.values() if group in t)
        cells = [cell(tables[r][group][0]) if group in tables[r] else "" for r in readers]
        print(f"| {group} | {n} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
