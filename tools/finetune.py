"""Turn your own site's captchas into a model: fine-tune a shipped model on a small labelled folder.

    make finetune DATA=my_captchas NAME=mysite                        # labels.txt, labels.tsv or <label>_x.png
    make finetune DATA=my_captchas NAME=mysite UNLABELLED=more_images  # + self-training on unlabelled ones
    python tools/finetune.py --data my_captchas --name mysite [--unlabelled DIR] [--base vanilla_crnn]

It holds out a validation slice, picks epochs, learning rate and augmentation from the number of labels
(models/finetune.py), stops when validation stops improving, and extends the charset when the labels need it.
With unlabelled images, the model labels them (a shifted second view must read the same text), keeps those above
the confidence at which the validation slice's readings are at least 99% right, retrains, and repeats while
validation improves. The result goes to ``checkpoints/<name>/`` (model.onnx, model_int8.onnx, best.pt, a model
card) only when everything worked: the run is staged in ``runs/finetune/<name>/`` and moved in at the end. The
base model is only read.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from models.augment import PRESETS as AUG_PRESETS
from models.charset import Charset, write_labels
from models.checkpoint import LoadedModel, atomic_save, load_model, read_checkpoint
from models.dataset import Sample
from models.engine import load_engine
from models.finetune import (
    FINETUNE_EMA,
    FINETUNE_LR,
    MIN_VOUCHED,
    Budget,
    FinetuneError,
    Plan,
    check_name,
    confidence_threshold,
    final_epochs,
    fit_budget,
    plan_for,
    precision_lower_bound,
    pseudo_sample_size,
    read_labelled,
    read_twice,
    round_fits,
    unlabelled_images,
    unpack_zip,
)
from models.paths import CHECKPOINTS, ROOT
from models.preprocess import batches, prepare_batch
from models.report import group_table
from tools.evaluate import score_samples

MAX_ROUNDS = 3  # self-training rounds after the first fine-tune
MINUTES = 15.0  # default time budget of a whole run, self-training included
FREEZE = 0  # convolutions of the base kept fixed (train.py --freeze)
END_RESERVE_S = 60  # of the budget kept for what follows the final round: the int8 export and the card


def resolve_base(base: str) -> Path:
    """A checkpoint (.pt), a model folder holding best.pt, or a name under checkpoints/ ("default" included)."""
    path = Path(base)
    if not path.exists() and (CHECKPOINTS / base).exists():
        path = CHECKPOINTS / base
    if path.is_file() and path.name == "default":
        path = CHECKPOINTS / path.read_text(encoding="utf-8").strip()
    if path.is_dir() and not (path / "best.pt").is_file() and path.name.endswith("_int8"):
        path = path.with_name(path.name[: -len("_int8")])  # an int8 folder: fine-tune its fp32 source
    pt = path / "best.pt" if path.is_dir() else path
    if not pt.is_file() or pt.suffix != ".pt":
        raise FinetuneError(f"BASE={base}: no best.pt there; use a model folder under checkpoints/ "
                            "(e.g. BASE=vanilla_crnn) or a .pt checkpoint")  # fmt: skip
    return pt


def write_split(folder: Path, samples: list[Sample]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_labels(folder / "labels.txt", [(str(s.path.resolve()), s.label) for s in samples])
    return folder


def exact_match(model: Path, samples: list[Sample]) -> dict:
    rows, _ = score_samples(load_engine(model), samples)
    return group_table(rows)[0]


def measure_speed(base: LoadedModel, samples: list[Sample], amp: str, freeze: int) -> float:
    """Training images per second of the base model on one batch of the data (for the time estimate); the
    weights do not move (lr 0) and the labels only need to be encodable."""
    import torch

    from models.codec import encode_batch
    from models.training import freeze_first_convs, train_step

    charset = Charset(base.meta.charset)
    chosen = samples[:32]
    images = torch.from_numpy(prepare_batch([s.path for s in chosen], base.meta.spec).inputs)
    labels = [s.label if not charset.unknown(s.label) else charset.symbols[0] for s in chosen]
    targets, lengths = encode_batch(labels, charset)
    model = base.model.train()
    freeze_first_convs(model, freeze)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    for step in range(4):  # the first step warms up and is not timed
        if step == 1:
            started = time.perf_counter()
        train_step(model, images, torch.from_numpy(targets), torch.from_numpy(lengths), optimizer, scaler,
                   amp=amp, clip=5.0)  # fmt: skip
    return 3 * len(labels) / max(1e-6, time.perf_counter() - started)


def round_epochs(n_train: int, budget: Budget, first_round_epochs: int) -> int:
    """Epochs of a self-training round over labels and pseudo-labels: the round's image-steps of the budget, at
    least 1 and at most half the first round's."""
    return int(min(max(4, first_round_epochs // 2), max(1, budget.round_steps // max(1, n_train))))


def train_round(cfg_values: dict, out: Path) -> Path:
    """One fine-tuning run of train.py; returns the folder with best.pt and model.onnx."""
    from train import Config, train

    cfg = Config(**{**cfg_values, "out": str(out)})
    train(cfg)
    return out / cfg.arch


class Pace:
    """Images trained per second of wall time over the rounds so far, validation and export included: what a
    self-training round must fit in the time left at, and what the final round's length is cut to (the speed
    measured before the run leaves out everything but the steps)."""

    def __init__(self) -> None:
        self.images, self.seconds = 0, 0.0

    def round(self, cfg_values: dict, out: Path, n_images: int) -> Path:
        started = time.time()
        folder = train_round(cfg_values, out)
        with open(folder / "metrics.csv", encoding="utf-8") as rows:
            epochs = sum(1 for _ in rows) - 1  # one row per epoch trained, under a header
        self.images += n_images * max(0, epochs)
        self.seconds += time.time() - started
        return folder

    @property
    def per_second(self) -> float:
        return self.images / max(1e-9, self.seconds)


def keep_last_epoch(folder: Path) -> Path:
    """The final round has no unseen images to choose an epoch on, so its last epoch (the averaged weights, where
    it averaged) becomes best.pt and model.onnx; returns ``folder``."""
    from models.export import export_onnx

    record = read_checkpoint(folder / "last.pt")
    averaged = record["training"].get("ema")
    weights = averaged["weights"] if averaged else record["state_dict"]
    atomic_save({"meta": record["meta"], "state_dict": weights}, folder / "best.pt")
    export_onnx(folder / "best.pt", folder / "model.onnx")  # loads best.pt strictly: the weights fit the model
    return folder


def agreed_readings(model: Path, paths: list[Path]) -> list[tuple[Path, str, float]]:
    """Each readable image's text, with the confidence the pseudo-label rule uses: a second view of the image
    (shifted, :func:`models.finetune.shifted`) must read the same text, and the lower of the two confidences
    counts; 0 where the views disagree (never kept as a pseudo-label)."""
    return [(path, a.text, min(a.confidence, b.confidence) if a.text == b.text else 0.0)
            for path, a, b in read_twice(load_engine(model), paths)]  # fmt: skip


def pseudo_labels(model: Path, images: list[Path], threshold: float) -> list[Sample]:
    return [Sample(path, text, source="pseudo") for path, text, confidence in agreed_readings(model, images)
            if text and confidence > 0 and confidence >= threshold]  # fmt: skip


def choose_threshold(model: Path, validation: list[Sample]) -> tuple[float | None, str, float]:
    """The pseudo-label threshold, what the validation slice says of it in words (how many readings at or above
    it were right, and the precision that count vouches for: a small slice cannot show 99%), and that precision."""
    labels = {s.path: s.label for s in validation}
    readings = agreed_readings(model, [s.path for s in validation])
    confidences = [confidence for _, _, confidence in readings]
    correct = [text == labels[path] for path, text, _ in readings]
    threshold = confidence_threshold(confidences, correct)
    above = [ok for c, ok in zip(confidences, correct, strict=True) if threshold is not None and c >= threshold]
    vouched = precision_lower_bound(sum(above), len(above))
    evidence = (f"{sum(above)} of {len(above)} readings at or above it right on the validation slice, which "
                f"vouches for at least {vouched:.0%}")  # fmt: skip
    return threshold, evidence, vouched


def quantize_into(model_dir: Path, calib: list[Sample], out_file: Path) -> str:
    """int8 beside the fp32 model (tools/quantize.py's method); returns a line for the card."""
    from models.engine import read_onnx_meta
    from tools.quantize import quantize, write_meta

    source = model_dir / "model.onnx"
    meta = read_onnx_meta(source)
    prepared = prepare_batch([s.path for s in calib[:256]], meta.spec)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model.onnx"
        quantize(source, staged, list(batches(prepared.inputs, 32)))
        record = meta.to_dict()
        record["metrics"] = {
            **meta.metrics,
            "quantization": {
                "method": "static QDQ int8, 7-bit weights",
                "calibration": f"{len(prepared.inputs)} own images",
            },
        }
        write_meta(staged, record)
        shutil.copyfile(staged, out_file)
    return "static QDQ int8, per-channel 7-bit weights, calibrated on the training images"


def model_card(name: str, base: Path, plan: Plan, result: dict, started: float, command: str) -> str:
    val, zero = result["validation"], result["base_validation"]
    lines = [
        f"# {name}",
        "",
        f"Fine-tuned from `{base.relative_to(ROOT) if base.is_relative_to(ROOT) else base}` by `tools/finetune.py`.",
        "",
        "| | exact match | ignoring case | CER |",
        "|---|---:|---:|---:|",
        f"| base model on the validation slice (zero-shot) | {zero['em']:.1%} | {zero['em_nocase']:.1%} | "
        f"{zero['cer']:.1%} |",
        f"| this model on the validation slice | {val['em']:.1%} | {val['em_nocase']:.1%} | {val['cer']:.1%} |",
        "",
        f"- Data: {plan.describe()}.",
        f"- Validation slice: {val['n']} of the labelled images, held out (never trained on).",
    ]
    for step in result["rounds"]:
        lines.append(f"- {step}")
    lines += [
        f"- Files: `model.onnx` (fp32, served), `model_int8.onnx` ({result['int8']}), `best.pt`.",
        f"- Time: {(time.time() - started) / 60:.1f} minutes on {os.cpu_count()} CPU cores.",
        "",
        "```bash",
        command,
        "```",
        "",
    ]
    return "\n".join(lines)


def finetune(
    data: Path,
    name: str,
    unlabelled: Path | None,
    base: str,
    seed: int,
    command: str,
    minutes: float = MINUTES,
    freeze: int = FREEZE,
    lr: float | None = None,
    ema: float = FINETUNE_EMA,
    aug: str | None = None,
    min_vouched: float = MIN_VOUCHED,
) -> Path:
    started = time.time()
    if lr is not None and not 0 < lr < 1:
        raise FinetuneError(f"--lr {lr:g}: a learning rate is above 0 and below 1 (the default is {FINETUNE_LR:g})")
    if not 0 <= ema < 1:
        raise FinetuneError(f"--ema {ema:g}: a decay per step, at least 0 (off) and below 1 (the default is "
                            f"{FINETUNE_EMA:g})")  # fmt: skip
    if not 0 <= min_vouched <= 1:
        raise FinetuneError(f"--min-vouched {min_vouched:g}: a precision from 0 (always self-train) to 1 (the "
                            f"default is {MIN_VOUCHED:g})")  # fmt: skip
    target = check_name(name, CHECKPOINTS)
    base_pt = resolve_base(base)
    base_model = load_model(base_pt)
    work = ROOT / "runs" / "finetune" / name
    shutil.rmtree(work, ignore_errors=True)
    if data.suffix.lower() == ".zip" and data.is_file():
        data = unpack_zip(data, work / "data")
    samples = read_labelled(data, max_label_len=20)
    images = unlabelled_images(unlabelled) if unlabelled else []
    plan = plan_for(samples, seed)
    if lr is not None:
        plan.lr = lr
    if aug == "off":
        plan.aug = False
    elif aug is not None:
        plan.aug, plan.aug_preset = True, aug
    val_dir = write_split(work / "val", plan.validation)
    from models.training import cpu_runs_bf16

    amp = "bf16" if cpu_runs_bf16() else "off"
    speed = measure_speed(base_model, plan.train, amp, freeze)
    budget = fit_budget(plan, speed, minutes, MAX_ROUNDS if images else 0, len(images))
    print(f"{name}: {plan.describe()}")
    print(f"{name}: about {speed:.0f} training images/s here, so within {minutes:g} minutes: "
          f"{budget.describe(MAX_ROUNDS if images else 0)} (earlier when validation stops improving)")  # fmt: skip
    base_validation = exact_match(base_pt.parent if (base_pt.parent / "model.onnx").is_file() else base_pt,
                                  plan.validation)  # fmt: skip
    print(f"{name}: the base model reads {base_validation['em']:.1%} of the validation slice before fine-tuning")
    values = dict(arch=base_model.meta.arch, train_root=str(write_split(work / "train0", plan.train)),
                  validation_root=str(val_dir), test_root="", epochs=budget.first_epochs, lr=plan.lr, aug=plan.aug,
                  aug_preset=plan.aug_preset, patience=budget.patience, freeze=freeze, ema=ema, warmup=0.3, batch=32,
                  amp=amp, num_workers=1, seed=seed, init=str(base_pt), print_samples=0)  # fmt: skip

    def seconds_left() -> float:  # of the budget, less what the export after the final round needs
        return minutes * 60 - (time.time() - started) - END_RESERVE_S

    pace = Pace()
    best_dir = pace.round(values, work / "round0", len(plan.train))
    best = exact_match(best_dir, plan.validation)
    best_train = plan.train  # the labels (and pseudo-labels) the kept model was trained on
    seconds = [round(time.time() - started, 1)]  # elapsed at the end of each round
    rounds = [f"Fine-tuned on {len(plan.train)} labelled images: validation exact match {best['em']:.1%}."]
    for k in range(1, MAX_ROUNDS + 1) if images else ():
        threshold, evidence, vouched = choose_threshold(best_dir, plan.validation)
        if threshold is None:
            rounds.append(f"Self-training round {k}: no confidence gives 99% right pseudo-labels; stopped.")
            break
        if vouched < min_vouched:
            rounds.append(f"Self-training round {k}: at confidence >= {threshold:.3f}, {evidence}, below the "
                          f"{min_vouched:.0%} asked (--min-vouched); too few readings to trust, stopped.")  # fmt: skip
            break
        left = seconds_left()
        if not round_fits(left, len(plan.train), len(plan.train) + len(plan.validation), pace.per_second):
            rounds.append(f"Self-training round {k}: not even one epoch on the labels and the final round fit in "
                          f"the {max(0, left) / 60:.1f} minutes left; stopped before reading the unlabelled "
                          "images.")  # fmt: skip
            break
        pseudo = pseudo_labels(best_dir, images, threshold)
        print(f"{name}: round {k}: kept {len(pseudo)} of {len(images)} unlabelled images (confidence >= "
              f"{threshold:.3f}; {evidence})")  # fmt: skip
        n_round = len(plan.train) + len(pseudo)
        epochs = round_epochs(n_round, budget, plan.epochs)
        left = seconds_left()
        kept = f"kept {len(pseudo)} of {len(images)} unlabelled images (confidence >= {threshold:.3f}; {evidence})"
        if not round_fits(left, epochs * n_round, n_round + len(plan.validation), pace.per_second):
            fit = pseudo_sample_size(len(plan.train), len(pseudo), len(plan.validation), left, pace.per_second)
            if not fit:
                rounds.append(f"Self-training round {k}: {epochs} epoch{'s' * (epochs != 1)} on {n_round} images "
                              f"and the final round do not fit in the {max(0, left) / 60:.1f} minutes left at "
                              f"{pace.per_second:.0f} images/s, nor one epoch with a sample of a quarter as many "
                              "pseudo-labels as labels; stopped.")  # fmt: skip
                break
            kept += f", a random {fit} of them trained on (all that fit in the {left / 60:.1f} minutes left)"
            pseudo = random.Random(seed + k).sample(pseudo, fit)
            n_round, epochs = len(plan.train) + fit, 1
        train_dir = write_split(work / f"train{k}", plan.train + pseudo)
        candidate = pace.round({**values, "train_root": str(train_dir), "init": str(best_dir / "best.pt"),
                                "epochs": epochs}, work / f"round{k}", n_round)  # fmt: skip
        score = exact_match(candidate, plan.validation)
        seconds.append(round(time.time() - started, 1))
        rounds.append(f"Self-training round {k}: {kept}; validation exact match {score['em']:.1%}.")
        if (score["em"], -score["cer"]) <= (best["em"], -best["cer"]):
            rounds[-1] += " Not better: the previous round is kept."
            break
        best_dir, best, best_train = candidate, score, plan.train + pseudo
    n_all = len(best_train) + len(plan.validation)
    epochs = final_epochs(n_all, budget, seconds_left(), pace.per_second)
    every = write_split(work / "train_all", best_train + plan.validation)
    final = {**values, "train_root": str(every), "init": str(best_dir / "best.pt"), "epochs": epochs,
             "lr": plan.lr / 4, "patience": 0}  # fmt: skip
    best_dir = keep_last_epoch(train_round(final, work / "final"))
    seconds.append(round(time.time() - started, 1))
    rounds.append(f"Final round: {epochs} epoch{'s' * (epochs != 1)} on all {n_all} labels, the validation slice "
                  "included (so the validation score above is the last one measured on images the model had not "
                  "learned).")  # fmt: skip
    staging = CHECKPOINTS / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for file in ("best.pt", "model.onnx", "metrics.csv", "curves.png", "config.json"):
        if (best_dir / file).is_file():
            shutil.copyfile(best_dir / file, staging / file)
    result = {"validation": best, "base_validation": base_validation, "rounds": rounds, "seconds": seconds,
              "int8": quantize_into(best_dir, plan.train, staging / "model_int8.onnx")}  # fmt: skip
    (staging / "README.md").write_text(model_card(name, base_pt, plan, result, started, command), encoding="utf-8")
    (staging / "finetune.json").write_text(json.dumps(result, indent=2, default=str),
                                           encoding="utf-8")  # fmt: skip
    os.replace(staging, target)
    print(f"{name}: wrote {target}/ (validation exact match {best['em']:.1%}, base {base_validation['em']:.1%}); "
          "it is served by make ready under this name")  # fmt: skip
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", required=True, type=Path, help="labelled folder (labels.txt, labels.tsv or names), or a zip of one"
    )
    parser.add_argument("--name", required=True, help="the new model's name: checkpoints/<name>/")
    parser.add_argument("--unlabelled", type=Path, help="folder of unlabelled images of the same captcha")
    parser.add_argument("--base", default="vanilla_crnn", help="model to start from (read only)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--freeze", type=int, default=FREEZE, help="keep the base's first N convolutions fixed (default %(default)s)"
    )
    parser.add_argument("--lr", type=float, help=f"peak learning rate of each round (default {FINETUNE_LR:g})")
    parser.add_argument(
        "--ema", type=float, default=FINETUNE_EMA,
        help="decay per step of the averaged weights that are validated and kept; 0 = off (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--aug", choices=("off", *AUG_PRESETS),
        help="augmentation of each round (default: chosen from the number of labels, see docs/finetune.md)",
    )  # fmt: skip
    parser.add_argument(
        "--min-vouched", type=float, default=MIN_VOUCHED,
        help="self-train only where the validation slice vouches for at least this precision of the pseudo-labels "
        "(0 = always; default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--minutes",
        type=float,
        default=MINUTES,
        help="time budget of the whole run, self-training included (default %(default)s)",
    )
    args = parser.parse_args(argv)
    command = "python tools/finetune.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        finetune(
            args.data,
            args.name,
            args.unlabelled,
            args.base,
            args.seed,
            command,
            args.minutes,
            args.freeze,
            args.lr,
            args.ema,
            args.aug,
            args.min_vouched,
        )
    except FinetuneError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BaseException:
        shutil.rmtree(CHECKPOINTS / f".{args.name}.partial", ignore_errors=True)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
