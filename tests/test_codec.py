import numpy as np
import pytest

from models.charset import BLANK, Charset
from models.codec import encode_batch, greedy_decode, softmax

CHARSET = Charset("0123456789abc")


def naive_decode(logits, charset, allowed=None):
    """Frame-by-frame reference implementation."""
    results = []
    for sample in logits:
        sample = sample.astype(np.float64)
        if allowed is not None:
            keep = [BLANK] + charset.ids_for(allowed)
            masked = np.full_like(sample, -1e9)
            masked[:, keep] = sample[:, keep]
            sample = masked
        probs = np.exp(sample - sample.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        text, confs, prev = "", [], None
        for t in range(len(probs)):
            k = int(probs[t].argmax())
            if k != prev and k != BLANK:
                text += charset.symbols[k - 1]
                confs.append(probs[t, k])
            elif k == prev and k != BLANK:
                confs[-1] = max(confs[-1], probs[t, k])
            prev = k
        results.append((text, float(np.prod(confs)) if confs else 0.0, confs))
    return results


@pytest.mark.parametrize("allowed", [None, "digits", "abc"])
@pytest.mark.parametrize("seed", range(5))
def test_vectorised_matches_naive(seed, allowed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(7, 20, CHARSET.num_classes)).astype(np.float32)
    logits[:, :, BLANK] += rng.normal(1, 2, size=(7, 20))  # plenty of blanks, some repeats
    fast = greedy_decode(logits, CHARSET, allowed)
    slow = naive_decode(logits, CHARSET, None if allowed is None else {"digits": "0123456789"}.get(allowed, allowed))
    for got, (text, conf, confs) in zip(fast, slow, strict=True):
        assert got.text == text
        assert got.confidence == pytest.approx(conf, rel=1e-5)
        assert got.char_confidences == pytest.approx(confs, rel=1e-5)


def one_hot_path(path, num_classes, strength=10.0):
    logits = np.zeros((1, len(path), num_classes), np.float32)
    for t, k in enumerate(path):
        logits[0, t, k] = strength
    return logits


def test_collapse_and_blank_separated_repeats():
    # ids: '1' -> 2, 'a' -> 11; path 1 1 _ 1 a a _ -> "11a"
    (d,) = greedy_decode(one_hot_path([2, 2, 0, 2, 11, 11, 0], CHARSET.num_classes), CHARSET)
    assert d.text == "11a" and len(d.char_confidences) == 3


def test_confidence_ignores_blank_frames():
    # Uncertain blank frames must not lower the confidence of confidently emitted characters.
    logits = one_hot_path([0, 2, 0, 3, 0], CHARSET.num_classes, strength=20.0)
    logits[0, [0, 2, 4], BLANK] = 0.5  # blank frames nearly uniform
    logits[0, [0, 2, 4], 5] = 0.4
    (d,) = greedy_decode(logits, CHARSET)
    assert d.text == "12"
    assert d.confidence > 0.99


def test_restriction_changes_output():
    logits = one_hot_path([11], CHARSET.num_classes)  # 'a'
    logits[0, 0, 4] = 5.0  # '3' is second best
    assert greedy_decode(logits, CHARSET)[0].text == "a"
    assert greedy_decode(logits, CHARSET, allowed="digits")[0].text == "3"


def test_empty_output_confidence_zero():
    (d,) = greedy_decode(one_hot_path([0, 0, 0], CHARSET.num_classes), CHARSET)
    assert d.text == "" and d.confidence == 0.0 and d.char_confidences == []


def test_shape_checked():
    with pytest.raises(ValueError, match="expected logits"):
        greedy_decode(np.zeros((2, 5, 3), np.float32), CHARSET)


def test_encode_batch():
    flat, lengths = encode_batch(["1a", "c"], CHARSET)
    assert flat.tolist() == [2, 11, 13] and lengths.tolist() == [2, 1]


def test_softmax_rows_sum_to_one():
    p = softmax(np.random.default_rng(0).normal(size=(3, 4, 5)))
    assert np.allclose(p.sum(-1), 1.0)


CASED = Charset("0123456789ABCDabcd")  # 'A' -> 11 ... 'D' -> 14, 'a' -> 15 ... 'd' -> 18


def letters_path(letters, upper_logit):
    """One frame per letter, blank between: each letter's upper and lower form get the given logits."""
    frames = []
    for ch, (up, low) in zip(letters, upper_logit, strict=True):
        frame = np.full(CASED.num_classes, -5.0, np.float32)
        frame[CASED.encode(ch.upper())[0]], frame[CASED.encode(ch.lower())[0]] = up, low
        blank = np.full(CASED.num_classes, -5.0, np.float32)
        blank[BLANK] = 10.0
        frames += [frame, blank]
    return np.stack(frames)[None]


def test_case_prior_makes_a_caseless_reading_one_case():
    # A font that draws both cases alike: every letter nearly 50/50, the argmax mixes cases ("aBcD").
    logits = letters_path("abcd", [(4.9, 5.0), (5.0, 4.9), (4.9, 5.0), (5.0, 4.9)])
    assert greedy_decode(logits, CASED, case_prior=0)[0].text == "aBcD"
    (d,) = greedy_decode(logits, CASED)
    assert d.text in ("abcd", "ABCD")
    assert len(d.char_confidences) == 4 and 0.4 < min(d.char_confidences) < 0.6
    assert d.confidence == pytest.approx(np.prod(d.char_confidences))


def test_case_prior_never_overrules_a_clearly_drawn_case():
    # Mixed case drawn clearly, and a mix of clear and caseless letters: the clear ones decide.
    clear = letters_path("abcd", [(0.0, 9.0), (9.0, 0.0), (0.0, 9.0), (9.0, 0.0)])
    assert greedy_decode(clear, CASED)[0].text == "aBcD"
    partly = letters_path("abcd", [(0.0, 9.0), (0.0, 9.0), (5.0, 4.9), (0.0, 9.0)])
    assert greedy_decode(partly, CASED, case_prior=0)[0].text == "abCd"
    assert greedy_decode(partly, CASED)[0].text == "abcd"


def test_case_prior_leaves_single_letters_digits_and_restrictions_alone():
    one = letters_path("a", [(5.0, 4.9)])
    assert greedy_decode(one, CASED)[0].text == "A"  # one letter: no evidence about a shared case
    mixed = letters_path("ab", [(5.0, 4.9), (4.9, 5.0)])
    assert greedy_decode(mixed, CASED, allowed="upper")[0].text == "AB"
    assert greedy_decode(mixed, CASED, allowed="lower")[0].text == "ab"
    digits = one_hot_path([2, 0, 3, 0, 4], CASED.num_classes)
    assert greedy_decode(digits, CASED)[0].text == "123"


def test_case_prior_out_of_range_is_refused():
    with pytest.raises(ValueError, match="case_prior"):
        greedy_decode(letters_path("ab", [(1.0, 0.0), (1.0, 0.0)]), CASED, case_prior=1.0)


ARITH = Charset("0123456789+-*=?Ax")


def path_logits(frames, charset=ARITH):
    """Logits for frames given as {character or '' (blank): logit}; unnamed classes get 0."""
    logits = np.zeros((1, len(frames), charset.num_classes), np.float32)
    for t, frame in enumerate(frames):
        for char, value in frame.items():
            logits[0, t, BLANK if char == "" else charset.symbols.index(char) + 1] = value
    return logits


def test_a_reading_that_lost_its_thin_minus_is_repaired_into_an_expression():
    # "9-37=": the minus is second best on the blank frame between 9 and 3, so greedy reads "937="
    frames = [{"9": 9}, {"": 9, "-": 6}, {"3": 9}, {"": 9}, {"7": 9}, {"": 9}, {"=": 9}]
    assert greedy_decode(path_logits(frames), ARITH, expressions=False)[0].text == "937="
    (d,) = greedy_decode(path_logits(frames), ARITH)
    assert d.text == "9-37=" and len(d.char_confidences) == 5
    assert d.char_confidences[1] < 0.1 < min(d.char_confidences[:1] + d.char_confidences[2:])


def test_a_letter_in_an_expression_becomes_the_likeliest_digit():
    frames = [{"3": 9}, {"*": 9}, {"A": 9, "4": 7, "1": 5}, {"6": 9}, {"=": 9}]
    assert greedy_decode(path_logits(frames), ARITH)[0].text == "3*46="


@pytest.mark.parametrize(
    "frames",
    [
        [{"4": 9}, {"2": 9}, {"": 9, "-": 6}, {"9": 9}, {"7": 9}],  # digits only: a digit captcha, left alone
        [{"3": 9}, {"x": 9}, {"4": 9}, {"=": 9}, {"?": 9}],  # already an expression
        [{"A": 9}, {"-": 9}, {"x": 9}],  # an operator sign but fewer than two digits
    ],
)
def test_readings_that_are_expressions_or_not_arithmetic_stay(frames):
    assert (
        greedy_decode(path_logits(frames), ARITH)[0].text
        == greedy_decode(path_logits(frames), ARITH, expressions=False)[0].text
    )
