"""Labelled captcha folders for training and evaluation.

A folder holds ``labels.txt`` (``name<TAB>label``) or ``labels.tsv`` (header row, realdev layout), images in
``images/`` or beside the label file, and optionally ``meta.tsv`` (source, type, answer per image) written by
the merge tool. A folder with neither label file is read from its image names (``<label>_<anything>.png``, the
layout of many public captcha sets). Images are decoded lazily, one at a time, through the shared :func:`models.preprocess` path,
so a training set of any size never sits decoded in memory.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .charset import Charset, LabelFile, labels_from_names, normalize_label, read_labels
from .preprocess import ImageError, InputSpec, load_image, normalize, to_canvas
from .report import answer_of


@dataclass
class Sample:
    path: Path
    label: str  # normalized (models.charset convention)
    source: str = ""
    type: str = ""
    answer: int | None = None
    flags: str = ""


@dataclass
class FolderReport:
    """What reading a folder found; printed, never swallowed."""

    root: Path
    samples: int = 0
    bad_lines: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    out_of_charset: Counter = field(default_factory=Counter)  # character -> count of labels holding it
    skipped_labels: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.root}: {self.samples} samples"]
        if self.bad_lines:
            out.append(f"  {len(self.bad_lines)} malformed label lines, e.g. {self.bad_lines[0]}")
        if self.missing_files:
            out.append(f"  {len(self.missing_files)} listed images missing, e.g. {self.missing_files[0]}")
        if self.skipped_labels:
            chars = "".join(c for c, _ in self.out_of_charset.most_common(20))
            out.append(
                f"  {len(self.skipped_labels)} labels with characters outside the charset skipped "
                f"(characters: {chars!r}); use --init with a larger charset or rebuild charset.txt"
            )
        return out


def label_file_of(root: Path) -> Path:
    for name in ("labels.txt", "labels.tsv"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root} has no labels.txt or labels.tsv")


def image_dir_of(root: Path) -> Path:
    """Where a folder's images are: ``images/`` when it has one, else the folder itself."""
    return root / "images" if (root / "images").is_dir() else root


def folder_labels(root: Path) -> tuple[LabelFile, Path]:
    """The folder's labels and where its images are: labels.txt, labels.tsv, else the image names."""
    image_dir = image_dir_of(root)
    try:
        return read_labels(label_file_of(root)), image_dir
    except FileNotFoundError:
        if not root.is_dir():
            raise FileNotFoundError(f"{root} is not a folder") from None
        named = labels_from_names(image_dir)
        if not named.rows and not named.problems:
            raise FileNotFoundError(f"{root} has no labels.txt, no labels.tsv and no images named "
                                    "<label>_<anything>.png") from None  # fmt: skip
        return named, image_dir


def read_meta(root: Path) -> dict[str, dict[str, str]]:
    """``meta.tsv`` rows by filename (empty when the folder has none)."""
    path = root / "meta.tsv"
    if not path.is_file():
        return {}
    return {row.filename: {"label": row.label, **row.extra} for row in read_labels(path).rows}


def read_folder(
    root: str | Path, charset: Charset | None = None, source: str = ""
) -> tuple[list[Sample], FolderReport]:
    """Samples of a labelled folder; with ``charset``, labels it cannot encode are skipped and counted."""
    root = Path(root)
    parsed, image_dir = folder_labels(root)
    meta = read_meta(root)
    report = FolderReport(root, bad_lines=list(parsed.problems))
    samples = []
    for row in parsed.rows:
        path = image_dir / row.filename
        if not path.is_file():
            report.missing_files.append(str(path))
            continue
        extra = {**meta.get(row.filename, {}), **row.extra}
        label = normalize_label(row.label)
        if charset is not None:
            unknown = charset.unknown(label)
            if unknown:
                report.out_of_charset.update(unknown)
                report.skipped_labels.append(row.filename)
                continue
        samples.append(
            Sample(
                path,
                label,
                source=extra.get("source", source),
                type=extra.get("type", ""),
                answer=answer_of(label, extra.get("answer")),
                flags=extra.get("flags", ""),
            )
        )
    report.samples = len(samples)
    return samples, report


class CaptchaDataset(Dataset):
    """Items are ``{"image": float32 (C, H, W), "label", "index"}``; an unreadable image gives ``{"error", "index"}``,
    which :func:`collate` passes on so the caller counts it."""

    def __init__(
        self,
        samples: list[Sample],
        spec: InputSpec,
        augment: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.samples, self.spec, self.augment = samples, spec, augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        try:
            canvas = to_canvas(load_image(sample.path), self.spec)
        except ImageError as e:
            return {"error": f"{sample.path}: {e}", "index": index}
        if self.augment is not None:
            canvas = self.augment(canvas)
        return {"image": torch.from_numpy(normalize(canvas)), "label": sample.label, "index": index}


def collate(items: list[dict]) -> dict:
    """Stack the readable items; unreadable ones are passed on as ``errors`` so the caller can count them."""
    good = [item for item in items if "image" in item]
    return {
        "images": torch.stack([item["image"] for item in good]) if good else torch.empty(0),
        "labels": [item["label"] for item in good],
        "indices": [item["index"] for item in good],
        "errors": [item["error"] for item in items if "error" in item],
    }
