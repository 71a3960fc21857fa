"""How many labels `make finetune` needs: accuracy against labels, with and without unlabelled images.

    python bench/label_efficiency.py make                       # pools of labelled and unlabelled captchas
    python bench/label_efficiency.py run --labels 200 500       # fine-tune, score, add the cells to the results
    python bench/label_efficiency.py targets                    # issue 20's two settings, each its own run
    python bench/label_efficiency.py calibration                # how right their pseudo-labels would be
    python bench/label_efficiency.py render                     # table into docs/finetune.md, plot into assets/

The two development zero-shot libraries of bench/zero_shot.py (python ``captcha`` ImageCaptcha and
``wheezy.captcha``, their default settings) stand in for "your site's captcha". They are never training data for
the shipped models; here they only measure the fine-tuning workflow, and the models made here are thrown away.

- Pools (``make``): per library 3,000 labelled images (seed 101) and 5,000 unlabelled ones (seed 202, their labels
  never read), drawn by bench/zero_shot.py's code. The test set is the zero-shot set itself (500 images, seed 7):
  no image is in two of them.
- A cell (``run``): the first N labelled images of the pool go to ``tools/finetune.py`` exactly as a user would
  run it (base ``vanilla_crnn``, its own validation slice, plan and early stop), with ``--unlabelled`` the pool of
  5,000. The model after the first round is the "labels only" result (the same run as without ``--unlabelled``:
  self-training starts after it); the model it writes is the "+ 5,000 unlabelled" result. Both are scored on the
  500 test images: exact match, and ignoring case. Times are wall-clock on this machine, from the start of the
  command to the end of the first round and to the end of the run. Models go to a scratch checkpoints folder.
- Targets (``targets``): the two settings the workflow is judged by, each as its own run with the whole budget:
  500 labels alone (no ``--unlabelled``), and 200 labels + the 5,000 unlabelled images.
- Results go to ``docs/label_efficiency.json`` (one entry per library and N, with the machine); ``render`` writes
  the table between the markers of docs/finetune.md and the plot ``assets/label_efficiency.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from models.paths import CHECKPOINTS, ROOT

SETS = ("imagecaptcha", "wheezy")
LABELS = (50, 100, 200, 500, 1000, 3000)
POOL = ROOT / "dataset" / "label_efficiency"
TEST = ROOT / "dataset" / "zero_shot"
RESULTS = ROOT / "docs" / "label_efficiency.json"
DOC = ROOT / "docs" / "finetune.md"
PLOT = ROOT / "assets" / "label_efficiency.png"
SCRATCH = ROOT / "runs" / "label_efficiency"
BEGIN, END = "<!-- label-efficiency:begin -->", "<!-- label-efficiency:end -->"
TARGETS_BEGIN, TARGETS_END = "<!-- label-targets:begin -->", "<!-- label-targets:end -->"
TARGETS = {"500 alone": (500, False, 0.93), "200 + 5,000 unlabelled": (200, True, 0.95)}  # labels, unlabelled, goal
BASE = "vanilla_crnn"


def make(args: argparse.Namespace) -> int:
    from bench.zero_shot import make_set

    for name in args.sets:
        for part, n, seed in (("labelled", 3000, 101), ("unlabelled", 5000, 202), ("test", 500, 7)):
            folder = (TEST if part == "test" else POOL / part) / name
            if (folder / "labels.tsv").is_file() and len((folder / "labels.tsv").read_text().splitlines()) > n:
                continue
            done = make_set(name, folder.parent, n, seed)
            print(f"{name} {part}: {n} images, {done['images_per_s']:.0f} images/s", file=sys.stderr)
    return 0


def subset(name: str, n: int, folder: Path) -> Path:
    """The first ``n`` labelled images of the pool, as a labels.txt folder (absolute paths)."""
    from models.charset import read_labels, write_labels

    pool = POOL / "labelled" / name
    rows = read_labels(pool / "labels.tsv").rows[:n]
    if len(rows) < n:
        raise SystemExit(f"error: the {name} pool has {len(rows)} labelled images, {n} asked (run make first)")
    folder.mkdir(parents=True, exist_ok=True)
    write_labels(folder / "labels.txt", [(str((pool / r.filename).resolve()), r.label) for r in rows])
    return folder


def test_scores(model: Path, name: str) -> dict:
    from models.engine import load_engine
    from models.report import group_table
    from tools.evaluate import score_folder

    rows, errors = score_folder(load_engine(model), TEST / name)
    if errors:
        raise SystemExit(f"error: {len(errors)} unreadable test images, e.g. {errors[0]}")
    table = group_table(rows, keys=())[0]
    return {"n": table["n"], "em": table["em"], "em_nocase": table["em_nocase"]}


def finetune_run(name: str, n: int, minutes: float, unlabelled: bool, tag: str = "") -> tuple[Path, dict, float]:
    """``tools/finetune.py`` on the first ``n`` labels (with the unlabelled pool or not), as a user runs it, into
    a scratch checkpoints folder; returns the model folder, its finetune.json and the wall time in seconds."""
    cell = SCRATCH / f"{name}-{n}{tag}"
    shutil.rmtree(cell, ignore_errors=True)
    checkpoints = cell / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / BASE).symlink_to(CHECKPOINTS / BASE)  # read only
    data = subset(name, n, cell / "data")
    model_name = f"le-{name}-{n}{tag}"
    command = [sys.executable, "tools/finetune.py", "--data", str(data), "--name", model_name, "--base", BASE,
               "--minutes", str(minutes)]  # fmt: skip
    if unlabelled:
        command += ["--unlabelled", str(POOL / "unlabelled" / name)]
    started = time.time()
    log = cell / "finetune.log"
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(command, cwd=ROOT, env={**os.environ, "CAPTCHA_CHECKPOINTS": str(checkpoints)},
                              stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"error: {name} {n}: tools/finetune.py exited {done.returncode}; see {log}")
    model = checkpoints / model_name
    return model, json.loads((model / "finetune.json").read_text(encoding="utf-8")), time.time() - started


def first_round_model(model_name: str) -> Path | None:
    """The model a fine-tuning run had after its first round (``runs/finetune/<name>/round0/<arch>``), if kept."""
    round0 = ROOT / "runs" / "finetune" / model_name / "round0"
    return next((p for p in round0.glob("*") if (p / "model.onnx").is_file()), None)


def run_cell(name: str, n: int, minutes: float) -> dict:
    model, result, wall = finetune_run(name, n, minutes, unlabelled=True)
    first = first_round_model(model.name)
    if first is None:
        raise SystemExit(f"error: {name} {n}: runs/finetune/{model.name}/round0 holds no model")
    return {
        "labels": n,
        "budget_minutes": minutes,
        "validation_slice": result["validation"]["n"],
        "labels_only": {**test_scores(first, name), "minutes": result["seconds"][0] / 60},
        "with_unlabelled": {
            **test_scores(model, name),
            "minutes": wall / 60,
            "unlabelled": 5000,
            "rounds": result["rounds"][1:],
        },  # fmt: skip
        "base_on_test": test_scores(CHECKPOINTS / BASE, name) if n == min(LABELS) else None,
    }


def pseudo_label_precision(name: str, n: int) -> list[dict]:
    """What the confidence threshold really kept, per self-training round: the pseudo-labels of the run's training
    lists (``runs/finetune/<model>/train<k>/labels.txt``) checked against the pool's true labels, which
    tools/finetune.py never reads. Empty when the run's folder is gone."""
    from models.charset import read_labels

    work = ROOT / "runs" / "finetune" / f"le-{name}-{n}"
    pool = POOL / "unlabelled" / name
    if not work.is_dir():
        return []
    truth = {str((pool / r.filename).resolve()): r.label for r in read_labels(pool / "labels.tsv").rows}
    rounds = []
    for k in range(1, 10):
        listing = work / f"train{k}" / "labels.txt"
        if not listing.is_file():
            break
        kept = [(r.filename, r.label) for r in read_labels(listing).rows if r.filename in truth]
        right = sum(truth[f] == label for f, label in kept)
        right_nocase = sum(truth[f].lower() == label.lower() for f, label in kept)
        rounds.append({"round": k, "kept": len(kept), "precision": right / len(kept) if kept else None,
                       "precision_nocase": right_nocase / len(kept) if kept else None})  # fmt: skip
    return rounds


def calibration(args: argparse.Namespace) -> int:
    """How right the first-round models of ``targets`` are on the unlabelled pool at a confidence, alone and
    when a shifted second view must read the same text (both views at or above it)."""
    from models.charset import read_labels
    from models.engine import load_engine
    from models.finetune import read_twice
    from models.report import md_table

    rows = []
    for name in args.sets:
        for n in (200, 500):
            model = first_round_model(f"le-{name}-{n}-target")
            if model is None:
                print(f"{name} {n}: no first-round model (run targets first)", file=sys.stderr)
                continue
            pool = POOL / "unlabelled" / name
            labelled = read_labels(pool / "labels.tsv").rows
            truth = {pool / r.filename: r.label for r in labelled}
            # (confidence, confidence of both views, same text, right)
            readings = [(a.confidence, min(a.confidence, b.confidence), a.text == b.text, a.text == truth[path])
                        for path, a, b in read_twice(load_engine(model), list(truth))]  # fmt: skip
            cells = []
            for both in (False, True):
                for threshold in (0.95, 0.99):
                    kept = [r[3] for r in readings if (r[1] >= threshold and r[2] if both else r[0] >= threshold)]
                    cells.append(f"{len(kept):,} / {sum(kept) / len(kept):.1%}" if kept else "0")
            rows.append([f"{name}, {n} labels", f"{sum(r[3] for r in readings) / len(readings):.1%}", *cells])
    headers = ["first-round model", "reads (all)", "confidence >= 0.95", ">= 0.99", "both views >= 0.95, same text",
               "both >= 0.99"]  # fmt: skip
    print(md_table(headers, rows, [False] + [True] * 5))
    return 0


def check_pseudo(args: argparse.Namespace) -> int:
    """Add the measured precision of every run's pseudo-labels to the results file."""
    data = load_results()
    for key, cell in data["cells"].items():
        name, n = key.split("/")
        measured = pseudo_label_precision(name, int(n))
        if measured:
            cell["with_unlabelled"]["pseudo_labels"] = measured
            print(key, ", ".join(f"round {m['round']}: {m['kept']} kept, {m['precision']:.1%} right"
                                 for m in measured if m["kept"]), file=sys.stderr)  # fmt: skip
    save_results(data)
    return 0


def load_results() -> dict:
    if RESULTS.is_file():
        return json.loads(RESULTS.read_text(encoding="utf-8"))
    return {"command": "python bench/label_efficiency.py run", "base": BASE, "cells": {}}


def save_results(data: dict) -> None:
    RESULTS.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    from bench import results as results_file

    data = load_results()
    for n in args.labels:
        for name in args.sets:
            key = f"{name}/{n}"
            if key in data["cells"] and not args.force:
                print(f"{key}: done already (--force to run it again)", file=sys.stderr)
                continue
            print(f"{key}: fine-tuning ...", file=sys.stderr)
            cell = run_cell(name, n, args.minutes)
            cell["machine"] = results_file.machine()
            data["cells"][key] = cell
            save_results(data)
            a, b = cell["labels_only"], cell["with_unlabelled"]
            print(f"{key}: labels only {a['em_nocase']:.1%} ignoring case ({a['minutes']:.1f} min); "
                  f"+ unlabelled {b['em_nocase']:.1%} ({b['minutes']:.1f} min)", file=sys.stderr)  # fmt: skip
    return render(args)


def targets(args: argparse.Namespace) -> int:
    from bench import results as results_file

    data = load_results()
    data.setdefault("targets", {})
    for name in args.sets:
        for setting, (n, unlabelled, goal) in TARGETS.items():
            if setting not in args.settings:
                continue
            key = f"{name}/{setting}"
            if key in data["targets"] and not args.force:
                print(f"{key}: done already (--force to run it again)", file=sys.stderr)
                continue
            print(f"{key}: fine-tuning ({args.minutes:g}-minute budget) ...", file=sys.stderr)
            model, result, wall = finetune_run(name, n, args.minutes, unlabelled, tag="-target")
            cell = {**test_scores(model, name), "labels": n, "unlabelled": 5000 if unlabelled else 0, "goal": goal,
                    "budget_minutes": args.minutes, "minutes": wall / 60, "rounds": result["rounds"],
                    "machine": results_file.machine()}  # fmt: skip
            data["targets"][key] = cell
            save_results(data)
            print(f"{key}: {cell['em_nocase']:.1%} ignoring case, goal {goal:.0%} ({cell['minutes']:.1f} min)",
                  file=sys.stderr)  # fmt: skip
    return render(args)


def targets_table(data: dict) -> str:
    from models.report import md_table, percent

    rows = []
    for name in SETS:
        for setting, (_, _, goal) in TARGETS.items():
            cell = data.get("targets", {}).get(f"{name}/{setting}")
            if not cell:
                rows.append([name, setting, percent(goal, 0), *["not run"] * 4])
                continue
            met = "yes" if cell["em_nocase"] >= goal else "no"
            rows.append([name, setting, percent(goal, 0), percent(cell["em_nocase"], 1), percent(cell["em"], 1),
                         f"{cell['minutes']:.1f} of {cell['budget_minutes']:g}", met])  # fmt: skip
    headers = ["library", "setting", "target (EM no case)", "EM no case", "EM", "minutes", "met"]
    return md_table(headers, rows, [False, False, True, True, True, True, False])


def pseudo_cell(cell: dict) -> str:
    """``kept / really right`` of each self-training round's pseudo-labels (measured by ``check-pseudo``)."""
    measured = cell["with_unlabelled"].get("pseudo_labels")
    if not measured:
        return "-"
    return ", ".join(f"{m['kept']} / {m['precision']:.0%}" if m["kept"] else "0" for m in measured)


def table(data: dict) -> str:
    from models.report import md_table, percent

    rows = []
    for name in SETS:
        for n in LABELS:
            cell = data["cells"].get(f"{name}/{n}")
            if not cell:
                rows.append([name, n, *["not run"] * 7])
                continue
            a, b = cell["labels_only"], cell["with_unlabelled"]
            rows.append([name, n, percent(a["em_nocase"], 1), percent(a["em"], 1), f"{a['minutes']:.1f}",
                         percent(b["em_nocase"], 1), percent(b["em"], 1), f"{b['minutes']:.1f}",
                         pseudo_cell(cell)])  # fmt: skip
    headers = ["library", "labels", "labels only: EM no case", "EM", "minutes",
               "+ 5,000 unlabelled: EM no case", "EM", "minutes", "pseudo-labels per round: kept / right"]  # fmt: skip
    return md_table(headers, rows, [False] + [True] * 7 + [False])


def plot(data: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SETS), figsize=(10, 3.6), sharey=True)
    for ax, name in zip(axes, SETS, strict=True):
        for part, style, label in (("labels_only", "o--", "labels only"),
                                   ("with_unlabelled", "s-", "+ 5,000 unlabelled")):  # fmt: skip
            points = [(n, data["cells"][f"{name}/{n}"][part]["em_nocase"] * 100) for n in LABELS
                      if f"{name}/{n}" in data["cells"]]  # fmt: skip
            if points:
                ax.plot(*zip(*points, strict=True), style, label=label)
        ax.axhline(95, color="grey", linestyle=":", linewidth=1)
        ax.axhline(93, color="grey", linestyle=":", linewidth=1)
        ax.text(55, 88, "targets: 95% (200 + unlabelled), 93% (500 alone)", fontsize=7, color="grey")
        ax.set_ylim(0, 100)
        ax.set_xscale("log")
        ax.set_xticks(LABELS, [str(n) for n in LABELS])
        ax.set_title(name)
        ax.set_xlabel("labelled images")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("exact match ignoring case (%)")
    axes[0].legend(loc="lower right")
    fig.suptitle("make finetune from vanilla_crnn: 500 test images per library")
    fig.tight_layout()
    PLOT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


def render(args: argparse.Namespace) -> int:
    data = load_results()
    if not data["cells"]:
        print("error: no results yet (python bench/label_efficiency.py run)", file=sys.stderr)
        return 2
    machines = {json.dumps(c["machine"].get("cpu")) for c in data["cells"].values()}
    some = next(iter(data["cells"].values()))["machine"]
    budgets = sorted({c.get("budget_minutes", 15.0) for c in data["cells"].values()})
    note = (f"Each run with a budget of {' / '.join(f'{b:g}' for b in budgets)} minutes (`--minutes`). "
            f"{measured_on(some)}"
            + ("; cells come from more than one machine" if len(machines) > 1 else "") + ".")  # fmt: skip
    block = f"{BEGIN}\n{table(data)}\n\n{note}\n{END}"
    text = replace_block(DOC.read_text(encoding="utf-8"), BEGIN, END, block)
    if data.get("targets"):
        some = next(iter(data["targets"].values()))["machine"]
        targets_note = f"{measured_on(some)}."
        text = replace_block(text, TARGETS_BEGIN, TARGETS_END,
                             f"{TARGETS_BEGIN}\n{targets_table(data)}\n\n{targets_note}\n{TARGETS_END}")  # fmt: skip
    DOC.write_text(text, encoding="utf-8")
    plot(data)
    print(block)
    return 0


def measured_on(machine: dict) -> str:
    return f"Measured on {machine['cpu']} ({machine['cores']} logical CPUs), {machine['versions']}"


def replace_block(text: str, begin: str, end: str, block: str) -> str:
    """``text`` with the part between the ``begin`` and ``end`` markers replaced by ``block`` (appended if absent)."""
    if begin in text:
        return text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    maker = commands.add_parser("make", help="draw the labelled, unlabelled and test pools")
    runner = commands.add_parser("run", help="fine-tune and score the cells not done yet")
    runner.add_argument("--labels", type=int, nargs="+", default=list(LABELS), choices=LABELS)
    targeter = commands.add_parser("targets", help="run 500 labels alone and 200 + 5,000 unlabelled, each alone")
    targeter.add_argument("--settings", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    for sub in (runner, targeter):
        sub.add_argument("--force", action="store_true", help="run cells again that are done")
        sub.add_argument("--minutes", type=float, default=15.0, help="time budget of each run (--minutes)")
    commands.add_parser("render", help="write the table into docs/finetune.md and the plot")
    commands.add_parser("check-pseudo", help="measure what the kept pseudo-labels were worth (the pool's labels)")
    calibrator = commands.add_parser("calibration", help="how right the targets' first models are, per confidence")
    for sub in (maker, runner, targeter, calibrator):
        sub.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    args = parser.parse_args(argv)
    handlers = {
        "make": make,
        "run": run,
        "targets": targets,
        "render": render,
        "check-pseudo": check_pseudo,
        "calibration": calibration,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
