"""CTC encode and greedy decode, shared by training, evaluation, the CLI and the servers (numpy only).

Decoding is vectorised over the batch and time: argmax per frame, collapse runs, drop blanks. Confidences are
computed over the emitted characters only, never over blank frames:

* a character's confidence is the highest softmax probability over the frames of its run;
* the sequence confidence is the product of the character confidences (the chance that every emitted
  character is right), 0.0 for an empty result.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.charset import BLANK, Charset

CHARSET_PRESETS = {
    "digits": string.digits,
    "letters": string.ascii_letters,
    "upper": string.ascii_uppercase,
    "lower": string.ascii_lowercase,
    "alnum": string.digits + string.ascii_letters,
    "arith": string.digits + "+-*/x=?",
}


@dataclass
class Decoded:
    text: str
    confidence: float
    char_confidences: list[float] = field(default_factory=list)


def resolve_allowed(allowed: str | None) -> str | None:
    """A preset name (``digits``, ``letters``, ``upper``, ``lower``, ``alnum``, ``arith``) or an explicit set."""
    if not allowed:
        return None
    return CHARSET_PRESETS.get(allowed, allowed)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def encode_batch(labels: Sequence[str], charset: Charset) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated targets and their lengths, as ``nn.CTCLoss`` takes them (int64)."""
    ids = [charset.encode(label) for label in labels]
    lengths = np.array([len(i) for i in ids], dtype=np.int64)
    flat = np.fromiter((c for seq in ids for c in seq), dtype=np.int64, count=int(lengths.sum()))
    return flat, lengths


def greedy_decode(logits: np.ndarray, charset: Charset, allowed: str | None = None) -> list[Decoded]:
    """Decode ``logits (B, T, num_classes)``; ``allowed`` restricts the output to a character subset.

    With ``allowed``, the other classes are masked out before the softmax, so probabilities are renormalised
    over blank plus the allowed characters.
    """
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 3 or logits.shape[2] != charset.num_classes:
        raise ValueError(f"expected logits (B, T, {charset.num_classes}), got {logits.shape}")
    allowed = resolve_allowed(allowed)
    if allowed is not None:
        keep = np.zeros(charset.num_classes, dtype=bool)
        keep[BLANK] = True
        keep[charset.ids_for(allowed)] = True
        logits = np.where(keep, logits, np.float32(-1e9))
    probs = softmax(logits)
    batch, steps, _ = probs.shape
    best = probs.argmax(axis=2)  # (B, T)
    best_p = np.take_along_axis(probs, best[:, :, None], axis=2)[:, :, 0]

    # Runs of equal argmax within a sample; a run starts at t == 0 or where the class changes.
    flat = best.reshape(-1)
    flat_p = best_p.reshape(-1)
    starts = np.ones_like(flat, dtype=bool)
    starts[1:] = flat[1:] != flat[:-1]
    starts[::steps] = True
    start_idx = np.flatnonzero(starts)
    run_class = flat[start_idx]
    run_conf = np.maximum.reduceat(flat_p, start_idx)
    run_sample = start_idx // steps
    emitted = run_class != BLANK
    run_class, run_conf, run_sample = run_class[emitted], run_conf[emitted], run_sample[emitted]

    counts = np.bincount(run_sample, minlength=batch)
    symbols = np.array(list(" " + charset.symbols))  # index 0 (blank) never emitted
    chars_per_sample = np.split(symbols[run_class], np.cumsum(counts)[:-1])
    confs_per_sample = np.split(run_conf.astype(np.float64), np.cumsum(counts)[:-1])
    return [
        Decoded("".join(chars), float(np.prod(confs)) if len(confs) else 0.0, [float(c) for c in confs])
        for chars, confs in zip(chars_per_sample, confs_per_sample, strict=True)
    ]
