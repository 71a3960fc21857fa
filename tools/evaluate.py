"""Evaluate a checkpoint or ONNX model on labelled folders: a table per source and type.

    python tools/evaluate.py --model checkpoints/vanilla_crnn dataset/test ../shared/realdev/easy
    python tools/evaluate.py --model m.onnx --out reports/eval ../shared/realdev/ctext --exclude-flag edge_clip

A folder holds labels.txt (name<TAB>label) or labels.tsv (header row; realdev layout). Per folder and type it
reports n, EM, EM ignoring case, CER and answer accuracy, plus the most frequent confusions; writes
``<out>/<name>.md``, ``.csv`` and ``.png`` when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models.codec import add_case_prior_argument
from models.dataset import read_folder
from models.engine import BACKENDS, Engine, load_engine
from models.evaluation import prepared_batches, score
from models.report import (
    Scored,
    confusions,
    format_table,
    format_targets,
    group_table,
    rows_of_folder,
    target_table,
)


def preprocessed_batches(
    engine: Engine, samples: list, batch: int, errors: list[str]
) -> Iterator[tuple[list, np.ndarray]]:
    """``(readable samples, their inputs)`` per batch of ``samples``; unreadable images go to ``errors`` as lines."""
    return prepared_batches(samples, engine.spec, batch, errors)


def score_samples(engine: Engine, samples: list, batch: int = 64) -> tuple[list[Scored], list[str]]:
    """Predict ``samples`` (models.dataset.Sample) in batches; unreadable images are returned as error lines."""
    errors: list[str] = []
    rows = score(engine.predict_arrays, prepared_batches(samples, engine.spec, batch, errors))
    return rows, errors


def score_folder(
    engine: Engine, folder: Path, batch: int = 64, exclude_flag: str = ""
) -> tuple[list[Scored], list[str]]:
    """Predict every labelled image of ``folder``; unreadable images are returned as error lines."""
    samples, report = read_folder(folder, source=folder.name)
    errors = report.bad_lines + [f"missing: {m}" for m in report.missing_files]
    if exclude_flag:
        samples = [s for s in samples if exclude_flag not in s.flags.split(",")]
    rows, unreadable = score_samples(engine, samples, batch)
    return rows, errors + unreadable


def write_outputs(out: Path, name: str, table: list[dict], rows: list[Scored], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    pairs = confusions(rows)
    md = [f"# {title}", "", format_table(table), "", "Most frequent confusions (label -> prediction):", ""]
    md += [f"- `{a}` -> `{b}`: {n}" for a, b, n in pairs] or ["- none"]
    (out / f"{name}.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["group", "n", "em", "em_nocase", "cer", "answer_acc"])
        writer.writeheader()
        writer.writerows(table)
    groups = [r for r in table if r["group"] != "all"] or table
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(groups) + 2), 4))
    x = np.arange(len(groups))
    ax.bar(x - 0.2, [100 * r["em"] for r in groups], 0.4, label="EM")
    ax.bar(x + 0.2, [100 * r["em_nocase"] for r in groups], 0.4, label="EM, no case")
    ax.set_xticks(x, [r["group"] for r in groups], rotation=60, ha="right", fontsize=8)
    ax.set(ylabel="%", ylim=(0, 100), title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description="Evaluate a model on labelled captcha folders.")
    parser.add_argument("folders", nargs="+", help="folders with labels.txt or labels.tsv")
    parser.add_argument("--model", required=True, help="checkpoint (.pt), ONNX file, or checkpoints/<arch>/ folder")
    parser.add_argument("--backend", choices=BACKENDS, default="onnx")
    parser.add_argument("--out", help="write <out>/<name>.md, .csv and .png")
    parser.add_argument("--name", help="report file name (default: model arch)")
    parser.add_argument("--exclude-flag", default="", help="skip rows carrying this flag (e.g. edge_clip)")
    parser.add_argument("--batch", type=int, default=64)
    add_case_prior_argument(parser)
    parser.add_argument("--targets", action="store_true", help="also print the shipped model's accuracy targets")
    args = parser.parse_args()

    try:
        engine = load_engine(args.model, args.backend)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    engine.case_prior = args.case_prior
    rows: list[Scored] = []
    target_rows: list[Scored] = []  # realdev rows as they are, any other folder's tagged with its name
    for folder in map(Path, args.folders):
        try:
            folder_rows, errors = score_folder(engine, folder, args.batch, args.exclude_flag)
        except FileNotFoundError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        rows += folder_rows
        target_rows += rows_of_folder(folder.name, folder_rows)
        for line in errors[:10]:
            print(f"warning: {line}", file=sys.stderr)
        if len(errors) > 10:
            print(f"warning: ... {len(errors) - 10} more problems in {folder}", file=sys.stderr)
    table = group_table(rows)
    title = f"{engine.arch} ({engine.backend}, {engine.path})"
    print(f"## {title}\n\n{format_table(table)}")
    if args.targets:
        print(f"\n### targets\n\n{format_targets(target_table(target_rows))}")
    pairs = confusions(rows, 10)
    if pairs:
        print("\nconfusions: " + ", ".join(f"{a}->{b} x{n}" for a, b, n in pairs))
    if args.out:
        write_outputs(Path(args.out), args.name or engine.arch, table, rows, title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
