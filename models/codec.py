"""CTC encode and greedy decode, shared by training, evaluation, the CLI and the servers (numpy only).

Decoding is vectorised over the batch and time: argmax per frame, collapse runs, drop blanks. Confidences are
computed over the emitted characters only, never over blank frames:

* a character's confidence is the highest softmax probability over the frames of its run;
* the sequence confidence is the product of the character confidences (the chance that every emitted
  character is right), 0.0 for an empty result.

Letter case: many captchas draw all their letters in one case (EasyCaptcha's upper/lower-only types, Kaptcha
configured with one case), and some fonts draw ``a`` and ``A`` alike (four of EasyCaptcha's ten built-in fonts).
A CTC model decides each character on its own, so in such a font it mixes cases at random (``RxMCEd``). The
decoder adds one prior, ``case_prior``: the chance that a captcha's letters share one case. For each emitted
letter with both cases in the charset, ``q`` is the share of its case partner pair's probability mass (summed
over the letter's frames) that is uppercase; the decoder compares three readings, as predicted, all uppercase,
all lowercase, by ``prior x prod(q or 1 - q)`` and keeps the best. A clearly drawn case (q near 0 or 1) is never
overruled; a single letter never changes. ``case_prior=0`` turns this off.

Arithmetic: a reading with ``=`` or an operator sign that does not parse as an expression (``937=``, a thin minus
lost; ``3*A6=``) is replaced by the most probable path that does (``models.arith.best_expression``), so that the
answer can be computed; ``expressions=False`` turns this off.
"""

from __future__ import annotations

import argparse
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .arith import best_expression, looks_arithmetic
from .charset import BLANK, Charset

CHARSET_PRESETS = {
    "digits": string.digits,
    "letters": string.ascii_letters,
    "upper": string.ascii_uppercase,
    "lower": string.ascii_lowercase,
    "alnum": string.digits + string.ascii_letters,
    "arith": string.digits + "+-*/x=?",
}


CASE_PRIOR = 0.2  # chosen on dataset/val with bench/case_prior.py (docs/benchmarks.md)


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


def case_prior_arg(text: str) -> float:
    """argparse type for ``--case-prior``: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in [0, 1) (0 turns the case prior off)")
    return value


def add_case_prior_argument(parser: argparse.ArgumentParser) -> None:
    """``--case-prior`` for the command-line tools; set ``engine.case_prior = args.case_prior`` after parsing."""
    parser.add_argument(
        "--case-prior", type=case_prior_arg, default=CASE_PRIOR,
        help="chance that a captcha's letters share one case, used where the glyphs leave case open "
        "(default %(default)s; 0 = decide each letter alone)",
    )  # fmt: skip


@lru_cache(maxsize=16)
def _case_tables(symbols: str) -> tuple[np.ndarray, np.ndarray]:
    """Per class id: its case partner (the same letter in the other case, else itself) and whether it is uppercase."""
    index = {ch: i for i, ch in enumerate(symbols, start=1)}
    partner = np.arange(len(symbols) + 1)
    for ch, i in index.items():
        partner[i] = index.get(ch.swapcase(), i)
    is_upper = np.array([False] + [ch.isupper() for ch in symbols])
    partner.flags.writeable = is_upper.flags.writeable = False
    return partner, is_upper


def harmonize_case(text: str, confs: list[float], upper_share: list[float], partner_conf: list[float], prior: float):
    """Pick the best of: ``text`` as predicted, all its cased letters upper, all lower (module docstring)."""
    cased = [i for i, share in enumerate(upper_share) if share >= 0]
    if len(cased) < 2 or prior <= 0:
        return text, confs
    q = np.clip(np.array([upper_share[i] for i in cased]), 1e-9, 1 - 1e-9)
    k = len(q)
    uniform = (1 - prior) / 2**k  # prior of any one assignment when cases are independent
    one_case = (q >= 0.5).all() or (q < 0.5).all()
    scores = [
        np.log(np.maximum(q, 1 - q)).sum() + np.log(uniform + (prior / 2 if one_case else 0.0)),
        np.log(q).sum() + np.log(uniform + prior / 2),
        np.log(1 - q).sum() + np.log(uniform + prior / 2),
    ]
    choice = int(np.argmax(scores))  # ties keep the prediction
    if choice == 0:
        return text, confs
    chars, confs = list(text), list(confs)
    for i in cased:
        wanted = chars[i].upper() if choice == 1 else chars[i].lower()
        if wanted != chars[i]:
            chars[i], confs[i] = wanted, partner_conf[i]
    return "".join(chars), confs


def greedy_decode(
    logits: np.ndarray,
    charset: Charset,
    allowed: str | None = None,
    case_prior: float = CASE_PRIOR,
    expressions: bool = True,
) -> list[Decoded]:
    """Decode ``logits (B, T, num_classes)``; ``allowed`` restricts the output to a character subset.

    With ``allowed``, the other classes are masked out before the softmax, so probabilities are renormalised
    over blank plus the allowed characters. ``case_prior`` and ``expressions``: see the module docstring.
    """
    if not 0 <= case_prior < 1:
        raise ValueError(f"case_prior must be in [0, 1), got {case_prior}")
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

    # Case evidence per run: the letter's and its partner's probability mass over the run's frames.
    partner, upper_class = _case_tables(charset.symbols)
    has_partner = partner[run_class] != run_class
    harmonize = case_prior > 0 and bool((has_partner & emitted).any())
    if harmonize:
        flat_partner_p = np.take_along_axis(probs.reshape(batch * steps, -1), partner[flat][:, None], axis=1)[:, 0]
        mass_self = np.add.reduceat(flat_p.astype(np.float64), start_idx)
        mass_partner = np.add.reduceat(flat_partner_p.astype(np.float64), start_idx)
        share_self = mass_self / np.maximum(mass_self + mass_partner, 1e-30)
        is_upper = upper_class[run_class]
        upper_share = np.where(has_partner, np.where(is_upper, share_self, 1 - share_self), -1.0)[emitted]
        partner_conf = np.maximum.reduceat(flat_partner_p, start_idx)[emitted].astype(np.float64)
    run_class, run_conf, run_sample = run_class[emitted], run_conf[emitted], run_sample[emitted]

    cuts = np.cumsum(np.bincount(run_sample, minlength=batch))[:-1]
    symbols = np.array(list(" " + charset.symbols))  # index 0 (blank) never emitted
    texts = ["".join(chars) for chars in np.split(symbols[run_class], cuts)]
    confs_per_sample = [[float(c) for c in confs] for confs in np.split(run_conf.astype(np.float64), cuts)]
    if harmonize:
        for b, (share, other) in enumerate(zip(np.split(upper_share, cuts), np.split(partner_conf, cuts), strict=True)):
            texts[b], confs_per_sample[b] = harmonize_case(texts[b], confs_per_sample[b], share, other, case_prior)
    if expressions:
        for b, text in enumerate(texts):
            if looks_arithmetic(text):
                repaired = best_expression(probs[b], charset.symbols)
                if repaired is not None:
                    texts[b], confs_per_sample[b] = repaired
    return [
        Decoded(text, float(np.prod(confs)) if confs else 0.0, confs)
        for text, confs in zip(texts, confs_per_sample, strict=True)
    ]
