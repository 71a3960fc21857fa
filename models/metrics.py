"""Recognition metrics: exact match (case-sensitive and not), character error rate, arithmetic answer accuracy."""

from __future__ import annotations

from collections.abc import Sequence

from .arith import solve


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute), two-row dynamic programming."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _check(preds: Sequence[str], gts: Sequence[str]) -> None:
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions for {len(gts)} labels")


def exact_match(preds: Sequence[str], gts: Sequence[str], ignore_case: bool = False) -> float:
    """Share of predictions equal to their label; 0.0 for no samples."""
    _check(preds, gts)
    if not gts:
        return 0.0
    if ignore_case:
        return sum(p.casefold() == g.casefold() for p, g in zip(preds, gts, strict=True)) / len(gts)
    return sum(p == g for p, g in zip(preds, gts, strict=True)) / len(gts)


def cer(preds: Sequence[str], gts: Sequence[str]) -> float:
    """Corpus character error rate: total edit distance over total label length."""
    _check(preds, gts)
    total = sum(max(1, len(g)) for g in gts)
    if not total:
        return 0.0
    return sum(levenshtein(p, g) for p, g in zip(preds, gts, strict=True)) / total


def answer_accuracy(preds: Sequence[str], answers: Sequence[int | None]) -> float | None:
    """Share of arithmetic samples (answer not None) whose predicted expression solves to the answer.

    ``None`` when no sample is arithmetic.
    """
    _check(preds, answers)
    scored = [(p, a) for p, a in zip(preds, answers, strict=True) if a is not None]
    if not scored:
        return None
    return sum(solve(p) == a for p, a in scored) / len(scored)


def summarize(preds: Sequence[str], gts: Sequence[str], answers: Sequence[int | None] | None = None) -> dict:
    """All metrics of one group of samples, as a flat dict (n, em, em_nocase, cer, answer_acc)."""
    if answers is None:
        answers = [solve(g) for g in gts]
    return {
        "n": len(gts),
        "em": exact_match(preds, gts),
        "em_nocase": exact_match(preds, gts, ignore_case=True),
        "cer": cer(preds, gts),
        "answer_acc": answer_accuracy(preds, answers),
    }
