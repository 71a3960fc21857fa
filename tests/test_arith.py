import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.arith import best_expression, solve


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("3+5=?", 8),
        ("7-2x3=?", 1),
        ("8/2=?", 4),
        ("3×4=？", 12),
        ("9÷3=？", 3),
        ("2*3+4", 10),
        ("2+3*4", 14),
        ("1-5=?", -4),
        ("6X7=", 42),
        ("12/4/3=?", 1),
        (" 4 + 4 = ? ", 8),
        ("3x4=?", 12),
        ("3x4=", 12),
    ],
)
def test_known_expressions(text, answer):
    assert solve(text) == answer


@pytest.mark.parametrize(
    "text", ["", None, "abcd", "3+", "+3", "3++4", "3", "7/2=?", "5/0=?", "3+4=?5", "3=4", "x3", "3x4", "2X5X7"]
)
def test_not_an_expression(text):
    assert solve(text) is None


OPS = {"+": "+", "-": "-", "x": "*", "*": "*", "×": "*"}


@given(
    st.lists(st.integers(0, 9), min_size=2, max_size=4),
    st.lists(st.sampled_from(list(OPS)), min_size=3, max_size=3),
    st.sampled_from(["=", "=?", "=？"]),
)
def test_matches_python_arithmetic(numbers, ops, tail):
    ops = ops[: len(numbers) - 1]
    text = "".join(f"{n}{o}" for n, o in zip(numbers, ops, strict=False)) + str(numbers[-1]) + tail
    python_expr = "".join(f"{n}{OPS[o]}" for n, o in zip(numbers, ops, strict=False)) + str(numbers[-1])
    assert solve(text) == eval(python_expr)  # test oracle only; the solver itself never evals


@given(st.integers(0, 9), st.integers(1, 9), st.integers(0, 9))
def test_division_exact_only(q, d, extra):
    assert solve(f"{q * d}/{d}+{extra}=?") == q + extra
    if (q * d + 1) % d:
        assert solve(f"{q * d + 1}/{d}=?") is None


def test_best_expression_needs_digits_and_a_plus_or_minus_in_the_charset():
    assert best_expression(np.full((5, 4), 0.25), "12=") is None


def test_best_expression_keeps_numbers_to_two_digits():
    symbols = "0123456789+-=?"
    log_probs = np.full((7, len(symbols) + 1), -20.0)
    for t, char in enumerate("123+4=?"):  # a three-digit number: the best path must drop or split a digit
        log_probs[t, symbols.index(char) + 1] = 0.0
    text, confs = best_expression(np.exp(log_probs), symbols)
    assert solve(text) is not None and len(confs) == len(text)
    assert all(len(number) <= 2 for number in text.rstrip("=?").replace("-", "+").split("+"))
