"""Scoring labelled samples: the one evaluation path of train.py (a torch model during training) and
tools/evaluate.py (a checkpoint or ONNX engine).

A source of batches yields ``(samples, inputs float32 (N, C, H, W))`` for the readable samples and appends one line
per unreadable image to an ``errors`` list; :func:`score` runs a ``predict(inputs) -> [prediction]`` callable over
them (anything with ``.text`` and ``.confidence``: models.codec.Decoded, models.engine.Prediction) and builds the
rows that models.report turns into tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from .preprocess import InputSpec, batches, prepare_batch
from .report import Scored

Batches = Iterable[tuple[list[Any], np.ndarray]]
Predict = Callable[[np.ndarray], Sequence[Any]]


def prepared_batches(
    samples: Sequence, spec: InputSpec, batch: int, errors: list[str]
) -> Iterator[tuple[list, np.ndarray]]:
    """Batches of ``samples`` (models.dataset.Sample) preprocessed in this process by models.preprocess."""
    for chunk in batches(samples, batch):
        prepared = prepare_batch([sample.path for sample in chunk], spec)
        errors += [f"{chunk[index].path}: {error}" for index, error in prepared.failures]
        if prepared.kept:
            yield [chunk[index] for index in prepared.kept], prepared.inputs


def loader_batches(
    samples: Sequence, spec: InputSpec, batch: int, num_workers: int, errors: list[str]
) -> Iterator[tuple[list, np.ndarray]]:
    """The same batches decoded by DataLoader workers (models.dataset.CaptchaDataset, no augmentation): what
    train.py evaluates with, so decoding runs beside the network."""
    from torch.utils.data import DataLoader

    from .dataset import CaptchaDataset, collate

    if not samples:
        return
    loader = DataLoader(CaptchaDataset(list(samples), spec), batch_size=batch, shuffle=False,
                        num_workers=num_workers, collate_fn=collate)  # fmt: skip
    for items in loader:
        errors += items["errors"]
        if items["labels"]:
            yield [samples[index] for index in items["indices"]], items["images"].numpy()


def score(predict: Predict, source: Batches) -> list[Scored]:
    """One :class:`Scored` row per readable sample of ``source``, in order."""
    rows: list[Scored] = []
    for chunk, inputs in source:
        for s, pred in zip(chunk, predict(inputs), strict=True):
            rows.append(Scored(s.path.name, s.label, pred.text, pred.confidence, s.source, s.type, s.answer, s.flags))
    return rows
