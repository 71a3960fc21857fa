"""Every shipped model and ddddocr side by side on the same labelled folders: the target table and the table per
family and type, one column per reader.

    python bench/compare_realdev.py                      # checkpoints/* and ddddocr on ../shared/realdev + dataset/test
    python bench/compare_realdev.py --results docs/results.json     # `make eval`: also record and re-render
    python bench/compare_realdev.py --no-ddddocr --folders ../shared/realdev/ruoyi

With ``--results`` the figures go into that file's ``accuracy`` section (bench/results.py), and the blocks of
README.md and of every model card are rewritten from it.

Our models are scored by tools/evaluate.py's code, ddddocr by bench/ddddocr_realdev.py's (same groups, same
metrics). Per family and type the cell is exact match ignoring case, or answer accuracy for arithmetic rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib.metadata import version
from pathlib import Path

from bench import results as results_file
from bench.common import open_ddddocr
from bench.ddddocr_realdev import score_folder as ddddocr_score
from models.engine import default_model_name, discover_models, load_engine
from models.paths import REALDEV, TEST_SPLIT, checkpoints_dir
from models.report import METRIC_NAMES, REALDEV_ALL, Scored, rows_of_folder, target_table
from tools.evaluate import score_folder

cell = results_file.pct


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, default=checkpoints_dir())
    parser.add_argument("--realdev", type=Path, default=REALDEV)
    parser.add_argument("--folders", type=Path, nargs="*", help="default: realdev families and dataset/test")
    parser.add_argument("--no-ddddocr", action="store_true")
    parser.add_argument("--results", type=Path, help="record the figures in this results file and re-render the docs")
    args = parser.parse_args()

    folders = args.folders or [args.realdev / f for f in REALDEV_ALL if (args.realdev / f).is_dir()]
    if not args.folders and TEST_SPLIT.is_dir():
        folders.append(TEST_SPLIT)
    if not folders:
        print(f"error: nothing to evaluate: no {args.realdev} and no dataset/test", file=sys.stderr)
        return 2
    models = discover_models(args.checkpoints)
    default = default_model_name(args.checkpoints)
    results: dict[str, list[Scored]] = {}  # {model name or "ddddocr": scored rows}
    files: dict[str, dict] = {}
    for name, folder in models.items():
        start, engine = time.perf_counter(), load_engine(folder)
        files[name] = results_file.model_info(engine, folder)
        results[name] = [row for f in folders for row in rows_of_folder(f.name, score_folder(engine, f)[0])]
        print(f"{name}: {len(results[name])} images in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if not args.no_ddddocr:
        try:
            ocr = open_ddddocr()
            # ddddocr never saw our test split's conventions either; score it on the real folders only
            results["ddddocr"] = [row for f in folders if f.name in REALDEV_ALL for row in ddddocr_score(ocr, f)]
        except ImportError:
            print("ddddocr is not installed: its column is left out (pip install ddddocr==1.6.1)", file=sys.stderr)
    scored = dict(results)
    shown = {"ddddocr": "ddddocr " + version("ddddocr")} if "ddddocr" in results else {}
    shown |= {default: f"{default} (default)"} if default else {}
    results = {shown.get(name, name): rows for name, rows in results.items()}
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
    tables = {reader: results_file.read_rates(rows) for reader, rows in results.items()}
    groups = list(dict.fromkeys(g for t in tables.values() for g in t))
    for group in groups:
        n = next(t[group][1] for t in tables.values() if group in t)
        cells = [cell(tables[r][group][0]) if group in tables[r] else "" for r in readers]
        print(f"| {group} | {n} | " + " | ".join(cells) + " |")
    if args.results:
        section = results_file.accuracy_section(scored, default, folders, files)
        if "ddddocr" in scored:
            section["ddddocr_version"] = version("ddddocr")
        recorded = results_file.update(args.results, "accuracy", section)
        try:
            for path in results_file.render_documents(recorded, results_file.documents(args.checkpoints)):
                print(f"rewrote {results_file.relative(path)}", file=sys.stderr)
        except (OSError, ValueError) as e:  # a card or a marked block missing: the figures are recorded all the same
            print(f"error: {e}; fix the document, then run python bench/results.py", file=sys.stderr)
            return 1

    return 0


if __name__ == "__main__":
    sys.exit(main())
