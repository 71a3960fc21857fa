"""Arithmetic captcha solver: ``"7-2x3=?"`` -> ``1``. No ``eval``.

Grammar (normal precedence, left-associative)::

    expression := term (('+' | '-') term)*  ['='] ['?']
    term       := number (('*' | '/') number)*

Multiplication is written ``*``, ``x``, ``X`` or ``×``; division ``/`` or ``÷``; the question mark may be
full-width. When the only operators are the letter ``x``/``X``, the ``=`` or ``?`` is required, so that an
alphanumeric captcha such as ``3x4`` is not taken for a product. Division must be exact (every captcha library we know only asks exact quotients); an inexact
quotient, division by zero or anything that is not such an expression gives ``None``.
"""

from __future__ import annotations

import re

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
