"""Fine-tuning on a user's own labelled captchas: the checks and the plan ``make finetune`` starts from.

:func:`read_labelled`, :func:`check_name` and :func:`unlabelled_images` refuse, before anything is written, what
cannot give a model: no labels, too few, labels with characters no model can learn, unreadable images, a name
already taken; :func:`unpack_zip` opens a zipped set such as the page's "Export dataset".
:func:`plan_for` picks the validation slice, epochs, learning rate and augmentation from the number of labels.
"""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .charset import IMAGE_SUFFIXES, normalize_label
from .dataset import Sample, image_dir_of, read_folder
from .preprocess import ImageError, batches, load_image, prepare_batch

STRONG_AUG_BELOW = 5_000  # training images; fewer get models.augment's "strong" preset (docs/finetune.md)
MIN_LABELS = 20  # below this the validation slice cannot tell a better epoch from a worse one
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class FinetuneError(ValueError):
    """A request that cannot give a model; the message says what to do."""


@dataclass
class Plan:
    train: list[Sample]
    validation: list[Sample]
    epochs: int
    lr: float
    aug: bool
    patience: int
    aug_preset: str = "mild"

    def describe(self) -> str:
        return (f"{len(self.train)} training and {len(self.validation)} validation images; up to {self.epochs} "
                f"epochs at lr {self.lr:g}, augmentation {self.aug_preset if self.aug else 'off'}, stop after "
                f"{self.patience} epochs without a better validation score")  # fmt: skip


def check_name(name: str, checkpoints: Path) -> Path:
    if not NAME_PATTERN.match(name):
        raise FinetuneError(f"NAME {name!r}: use letters, digits, '_', '-' or '.' (at most 64), e.g. NAME=mysite")
    target = checkpoints / name
    if target.exists():
        raise FinetuneError(f"{target} already exists: choose another NAME, or remove that folder first")
    return target


def unlearnable(label: str) -> set[str]:
    """Characters a CTC model cannot be given as classes: whitespace and control characters."""
    return {c for c in label if c.isspace() or not c.isprintable()}


def unpack_zip(archive: Path, dest: Path) -> Path:
    """The folder a zip of a labelled set unpacks to (the page's "Export dataset", or any zip holding one folder
    or the files themselves); members that would land outside ``dest`` are refused."""
    try:
        with zipfile.ZipFile(archive) as z:
            names = [n for n in z.namelist() if not n.endswith("/")]
            for name in names:
                if name.startswith(("/", "\\")) or ".." in Path(name).parts:
                    raise FinetuneError(f"DATA={archive}: the zip holds {name!r}, outside its folder; unzip it by hand")
            z.extractall(dest)
    except zipfile.BadZipFile as e:
        raise FinetuneError(f"DATA={archive}: not a readable zip ({e}); download or zip it again") from None
    tops = {Path(n).parts[0] for n in names}
    if len(tops) == 1 and (dest / next(iter(tops))).is_dir():
        return dest / next(iter(tops))
    return dest


def read_labelled(data: Path, max_label_len: int) -> list[Sample]:
    """The usable samples of ``data``; every problem found is raised at once, with examples."""
    if not data.is_dir():
        raise FinetuneError(f"DATA={data}: no such folder")
    try:
        samples, report = read_folder(data)
    except (FileNotFoundError, ValueError) as e:
        raise FinetuneError(f"DATA={data}: {e}") from None
    problems = list(report.bad_lines[:3]) + [f"missing image {m}" for m in report.missing_files[:3]]
    bad = [s for s in samples if unlearnable(s.label) or len(s.label) > max_label_len]
    for sample in bad[:3]:
        problems.append(f"{sample.path.name}: label {sample.label!r} has whitespace or control characters, or is "
                        f"longer than {max_label_len} characters")  # fmt: skip
    broken = []
    for sample in samples:
        try:
            load_image(sample.path)
        except ImageError as e:
            broken.append(f"{sample.path.name}: {e}")
    problems += broken[:3]
    if problems:
        count = len(report.bad_lines) + len(report.missing_files) + len(bad) + len(broken)
        raise FinetuneError(f"DATA={data}: {count} problems; fix or remove them and run again, e.g.\n  "
                            + "\n  ".join(problems))  # fmt: skip
    if len(samples) < MIN_LABELS:
        raise FinetuneError(f"DATA={data}: {len(samples)} labelled images; fine-tuning needs at least {MIN_LABELS} "
                            "(a few hundred give a usable model)")  # fmt: skip
    return [Sample(s.path, normalize_label(s.label), source="own", type=s.type, answer=s.answer) for s in samples]


FINETUNE_LR = 2e-3  # AdamW peak learning rate of every round; chosen by the runs in docs/finetune.md
FINETUNE_EMA = 0.99  # decay per step of the averaged weights each round validates and keeps (train.py --ema)


def plan_for(samples: list[Sample], seed: int = 0) -> Plan:
    """A validation slice of 15% (10 to 500 images) and a schedule of about 20,000 image-steps, at least 8 and at
    most 60 epochs; small sets get augmentation (the strong preset below :data:`STRONG_AUG_BELOW` training images)
    and a longer patience."""
    n = len(samples)
    n_val = min(500, max(10, round(n * 0.15)))
    order = np.random.default_rng(seed).permutation(n)
    validation = [samples[i] for i in order[:n_val]]
    train = [samples[i] for i in order[n_val:]]
    epochs = int(min(60, max(8, math.ceil(20_000 / max(1, len(train))))))
    return Plan(train, validation, epochs, lr=FINETUNE_LR, aug=len(train) < 20_000,
                patience=4 if len(train) < 1000 else 3,
                aug_preset="strong" if len(train) < STRONG_AUG_BELOW else "mild")  # fmt: skip


@dataclass
class Budget:
    """Image-steps the run can afford: the first round's epochs, and each self-training round's image-steps; and
    the patience that goes with them."""

    first_epochs: int
    round_steps: int
    minutes: float
    patience: int
    final_steps: int = 0  # the final round on every label, validation slice included (at least this many)

    def describe(self, rounds: int) -> str:
        extra = f", then up to {rounds} self-training rounds of {self.round_steps:,} image-steps" if rounds else ""
        return (f"{self.first_epochs} epochs first{extra}, then a final round on every label (at least "
                f"{self.final_steps:,} image-steps); about {self.minutes:.0f} minutes at most")  # fmt: skip


TRAINING_SHARE = 0.8  # of the time budget spent in training steps (the rest: validation, export, pseudo-labels)
LOADING_FACTOR = 0.7  # measured step speed -> speed with augmentation and data loading
READING_SPEEDUP = 3.0  # pseudo-labelling (inference) images/s per training images/s, conservatively
FINAL_SHARE = 0.15  # of the training steps kept for the final round on every label
FINAL_EPOCHS = 60  # at most, in the final round (at a quarter of the learning rate)
FINAL_PACE = 0.85  # of the rounds' measured images per second of wall time, to fill the time left safely


def fit_budget(plan: Plan, images_per_s: float, minutes: float, rounds: int, unlabelled: int = 0) -> Budget:
    """Cut the plan to ``minutes`` of wall time at the measured training speed. Reading the ``unlabelled`` images
    once per self-training round comes off the budget first (at :data:`READING_SPEEDUP` times the training speed),
    then :data:`FINAL_SHARE` of the steps for the final round on every label. Without self-training the first
    round has the rest; with it, the first round gets 40% and each of the ``rounds`` self-training rounds an equal
    share of what is left. The first round keeps at least 2 epochs,
    however slow the machine. Patience is the plan's, or a third of the first round's epochs if that is more: a
    validation slice of 10-15 images is noisy."""
    reading_s = rounds * unlabelled / max(1e-6, images_per_s * READING_SPEEDUP)
    seconds = max(minutes * 60 * 0.25, minutes * 60 - reading_s)
    steps = seconds * TRAINING_SHARE * images_per_s * LOADING_FACTOR
    final_steps = int(steps * FINAL_SHARE)
    steps -= final_steps
    first_share = 0.4 if rounds else 1.0
    first = max(2, min(plan.epochs, int(steps * first_share // max(1, len(plan.train)))))
    round_steps = int(steps * (1 - first_share) / rounds) if rounds else 0
    return Budget(first, round_steps, minutes, max(plan.patience, first // 3), final_steps)


def final_epochs(n_labels: int, budget: Budget, seconds_left: float, pace: float) -> int:
    """Epochs of the final round on ``n_labels`` (labels, validation slice and kept pseudo-labels): the steps kept
    for it, or those the time left affords if more (early stopping leaves time), at least 1 and at most
    :data:`FINAL_EPOCHS`. ``pace`` is what the rounds before it trained per second of their wall time (validation
    and export included); the time left is filled at :data:`FINAL_PACE` of it."""
    affordable = max(0.0, seconds_left) * FINAL_PACE * pace
    return int(min(FINAL_EPOCHS, max(1, max(budget.final_steps, affordable) // max(1, n_labels))))


MIN_PSEUDO_SHARE = 0.25  # pseudo-labels per label below which a sampled self-training round is not worth its time


def pseudo_sample_size(n_labels: int, n_pseudo: int, n_validation: int, seconds_left: float, pace: float) -> int:
    """How many of ``n_pseudo`` pseudo-labels a one-epoch self-training round can train on beside the labels, so
    that it and one epoch of the final round (labels, validation slice and those pseudo-labels) fit in
    ``seconds_left`` at ``pace`` images per second: all that fit, or 0 when that is fewer than
    :data:`MIN_PSEUDO_SHARE` per label (and fewer than all of them)."""
    affordable = max(0.0, seconds_left) * pace
    fit = min(n_pseudo, int((affordable - n_validation) / 2 - n_labels))
    return fit if fit > 0 and (fit == n_pseudo or fit >= MIN_PSEUDO_SHARE * n_labels) else 0


def round_fits(seconds_left: float, round_images: int, final_images: int, pace: float) -> bool:
    """Whether a self-training round of ``round_images`` image-steps, and then one epoch of the final round on
    ``final_images``, fit in ``seconds_left`` at ``pace`` images per second of wall time."""
    return (round_images + final_images) / max(1e-9, pace) <= seconds_left


# ---------------------------------------------------------------- self-training: pseudo-labels kept by confidence
def confidence_threshold(confidences: list[float], correct: list[bool], precision: float = 0.99) -> float | None:
    """The lowest confidence at which the predictions at or above it are at least ``precision`` right, measured
    on the validation slice; None when even the most confident ones fall short."""
    order = sorted(range(len(confidences)), key=lambda i: -confidences[i])
    right, best = 0, None
    for seen, i in enumerate(order, start=1):
        right += correct[i]
        next_differs = seen == len(order) or confidences[order[seen]] < confidences[i]
        if next_differs and right / seen >= precision:
            best = confidences[i]
    return best


MIN_VOUCHED = 0.85  # self-train only where the slice vouches for this much: 16 of 16 right (docs/finetune.md)


def precision_lower_bound(right: int, n: int, z: float = 1.645) -> float:
    """Wilson's lower bound on a precision measured as ``right`` of ``n`` (one-sided, 95% for z = 1.645): what a
    small validation slice can vouch for. All of 30 right vouches for about 92%; 99% needs about 270 of 270."""
    if n <= 0:
        return 0.0
    p = right / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def shifted(inputs: np.ndarray, dx: int = 3, dy: int = 1) -> np.ndarray:
    """A second view of a batch ``(N, C, H, W)`` for pseudo-labelling: moved ``dx`` right and ``dy`` down, the
    edge repeated. A reading that survives the shift is less often wrong (docs/finetune.md)."""
    out = np.roll(inputs, (dy, dx), axis=(2, 3))
    out[:, :, :, :dx] = out[:, :, :, dx : dx + 1]
    out[:, :, :dy, :] = out[:, :, dy : dy + 1, :]
    return out


def read_twice(engine, paths: list[Path], batch: int = 64):
    """Yield ``(path, plain, moved)`` for each readable image of ``paths``: ``engine``'s predictions of the image
    and of its :func:`shifted` view."""
    for chunk in batches(paths, batch):
        prepared = prepare_batch(chunk, engine.spec)
        plain = engine.predict_arrays(prepared.inputs)
        moved = engine.predict_arrays(shifted(prepared.inputs))
        for index, a, b in zip(prepared.kept, plain, moved, strict=True):
            yield chunk[index], a, b


def unlabelled_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FinetuneError(f"UNLABELLED={folder}: no such folder")
    found = sorted(p for p in image_dir_of(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise FinetuneError(f"UNLABELLED={folder}: no .png/.jpg/.gif/.bmp/.webp images in it")
    return found
