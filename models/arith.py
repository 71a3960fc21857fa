"""Arithmetic captcha solver: ``"7-2x3=?"`` -> ``1``. No ``eval``.

Grammar (normal precedence, left-associative)::

    expression := term (('+' | '-') term)*  ['='] ['?']
    term       := number (('*' | '/') number)*

Multiplication is written ``*``, ``x``, ``X`` or ``×``; division ``/`` or ``÷``; the question mark may be
full-width. When the only operators are the letter ``x``/``X``, the ``=`` or ``?`` is required, so that an
alphanumeric captcha such as ``3x4`` is not taken for a product. Division must be exact (every captcha library we know only asks exact quotients); an inexact
quotient, division by zero or anything that is not such an expression gives ``None``.

:func:`best_expression` repairs a reading that looks arithmetic but does not parse (``937=``, ``3*A6=``): it finds
the most probable CTC path of the network's output whose text is an expression of the form captchas draw, one to
three numbers of one or two digits joined by ``+ - * / x``, then ``=`` and ``?`` if drawn.
"""

from __future__ import annotations

import re

import numpy as np

_MUL = set("*xX×")
_DIV = set("/÷")
_TOKEN = re.compile(r"\s*(\d+|[+\-*/xX×÷])")
_TAIL = re.compile(r"\s*=?\s*[?？]?\s*$")
MAX_DIGITS = 9  # longer numbers are not captchas; also keeps the result small


def _tokenize(text: str) -> list[str] | None:
    match = _TAIL.search(text)
    body = text[: match.start()] if match else text
    if not match.group().strip() and not (set(body) & set("+-*/×÷")):
        return None  # only letter-x operators and no '=?': an alphanumeric text, not an expression
    tokens: list[str] = []
    pos = 0
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if not m:
            return None
        tokens.append(m.group(1))
        pos = m.end()
    # number (op number)*: odd length, numbers at even positions, operators at odd positions
    if len(tokens) < 3 or len(tokens) % 2 == 0:
        return None
    for i, tok in enumerate(tokens):
        if (i % 2 == 0) != tok.isdigit() or (tok.isdigit() and len(tok) > MAX_DIGITS):
            return None
    return tokens


def solve(text: str | None) -> int | None:
    """Integer value of an arithmetic captcha text, or ``None`` if ``text`` is not one."""
    if not text:
        return None
    tokens = _tokenize(text)
    if tokens is None:
        return None
    total = 0
    sign = 1
    term = int(tokens[0])
    for op, num in zip(tokens[1::2], tokens[2::2], strict=True):
        value = int(num)
        if op in _MUL:
            term *= value
        elif op in _DIV:
            if value == 0 or term % value != 0:
                return None
            term //= value
        else:  # + or -: close the current term
            total += sign * term
            sign = 1 if op == "+" else -1
            term = value
    return total + sign * term


def is_arithmetic(text: str | None) -> bool:
    return solve(text) is not None


EXPRESSION_DIGITS = 2  # longest number a repaired reading may hold (Hutool, EasyCaptcha and Ruoyi draw 1-2 digits)
EXPRESSION_OPERATORS = 2  # most operators a repaired reading may hold (EasyCaptcha's "7-2x3=?")
PRUNE = 15.0  # log-probability below the best prefix at which best_expression drops it (a chance of 3e-7)
_DIGITS = "0123456789"
_OPERATORS = "+-*/x"
_SIGNS = set("+-*/×÷=")


def looks_arithmetic(text: str) -> bool:
    """A reading worth repairing: it has ``=`` or an operator sign and two digits, yet does not parse."""
    return bool(set(text) & _SIGNS) and sum(c.isdigit() for c in text) >= 2 and solve(text) is None


def _expression_automaton() -> tuple[dict[int, dict[str, int]], set[int]]:
    """States and moves of ``number (op number){1,2} [=] [?]``: 0 is the start; number i with k digits, the
    operator before number i, ``=`` and ``?`` follow."""
    names: dict[tuple, int] = {("start",): 0}

    def state(*name) -> int:
        return names.setdefault(name, len(names))

    moves: dict[int, dict[str, int]] = {}
    for d in _DIGITS:
        moves.setdefault(0, {})[d] = state("num", 0, 1)
    for i in range(EXPRESSION_OPERATORS + 1):
        for k in range(1, EXPRESSION_DIGITS + 1):
            here = moves.setdefault(state("num", i, k), {})
            if k < EXPRESSION_DIGITS:
                here.update({d: state("num", i, k + 1) for d in _DIGITS})
            if i < EXPRESSION_OPERATORS:
                here.update({op: state("op", i + 1) for op in _OPERATORS})
            if i >= 1:
                here["="] = state("=")
        if i >= 1:
            moves.setdefault(state("op", i), {}).update({d: state("num", i, 1) for d in _DIGITS})
    moves.setdefault(state("="), {})["?"] = state("?")
    accept = {n for name, n in names.items() if name[0] in ("=", "?") or (name[0] == "num" and name[1] >= 1)}
    return moves, accept


_AUTOMATON = _expression_automaton()


def _keep(paths: dict, key: tuple[int, int], path: tuple) -> None:
    if key not in paths or paths[key][0] < path[0]:
        paths[key] = path


def best_expression(probs: np.ndarray, symbols: str) -> tuple[str, list[float]] | None:
    """The most probable CTC path through ``probs (T, classes)``, softmax outputs (class 0 blank, class i ``symbols[i-1]``)
    whose text is an expression; its text and per-character confidences (each character's highest probability
    over its frames), or ``None`` if the charset cannot write one. Prefixes more than :data:`PRUNE` (natural log)
    below the best one at a frame are dropped."""
    moves, accept = _AUTOMATON
    chars = [c for c in _DIGITS + _OPERATORS + "=?" if c in symbols]
    if not {"+", "-"} & set(chars) or not set(_DIGITS) <= set(chars):
        return None
    local = {c: i + 1 for i, c in enumerate(chars)}  # column in the slice below; 0 is the blank
    columns = [0] + [symbols.index(c) + 1 for c in chars]
    sliced = np.asarray(probs, dtype=np.float64)[:, columns]
    steps = {q: [(local[c], c, to) for c, to in out.items() if c in local] for q, out in moves.items()}
    # (state, last column or 0 after a blank) -> (log probability, text, confidences of finished characters,
    # highest probability so far of the character being read)
    paths: dict[tuple[int, int], tuple[float, str, list[float], float]] = {(0, 0): (0.0, "", [], 0.0)}
    for frame, prob in zip(np.log(np.maximum(sliced, 1e-30)).tolist(), sliced.tolist(), strict=True):
        new: dict[tuple[int, int], tuple[float, str, list[float], float]] = {}
        for (q, last), (score, text, confs, run) in paths.items():
            done = confs + [run] if last else confs
            _keep(new, (q, 0), (score + frame[0], text, done, 0.0))
            if last:
                _keep(new, (q, last), (score + frame[last], text, confs, max(run, prob[last])))
            for k, char, to in steps.get(q, ()):
                if k != last:
                    _keep(new, (to, k), (score + frame[k], text + char, done, prob[k]))
        floor = max(path[0] for path in new.values()) - PRUNE
        paths = {key: path for key, path in new.items() if path[0] >= floor}
    ends = [(score, text, confs + [run] if last else confs) for (q, last), (score, text, confs, run) in paths.items()
            if q in accept]  # fmt: skip
    if not ends:
        return None
    _, text, confs = max(ends, key=lambda end: end[0])
    return text, confs
