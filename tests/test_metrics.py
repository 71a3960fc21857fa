import pytest

from models.metrics import answer_accuracy, cer, exact_match, levenshtein, summarize
from models.report import Scored, read_like_realdev_targets, target_table


@pytest.mark.parametrize(("a", "b", "d"), [("", "", 0), ("abc", "", 3), ("kitten", "sitting", 3), ("abcd", "abdc", 2)])
def test_levenshtein(a, b, d):
    assert levenshtein(a, b) == d == levenshtein(b, a)


def test_exact_match_case():
    preds, gts = ["AbC", "xyz", "q"], ["abc", "xyz", "Q"]
    assert exact_match(preds, gts) == pytest.approx(1 / 3)
    assert exact_match(preds, gts, ignore_case=True) == 1.0
    assert exact_match([], []) == 0.0


def test_cer_is_corpus_level():
    assert cer(["abcd", "xy"], ["abcd", "xz"]) == pytest.approx(1 / 6)


def test_answer_accuracy_uses_solver():
    # "3*8=?" and "3x8=?" both solve to 24; a misread operator does not.
    assert answer_accuracy(["3*8=?", "3x8=?", "3+8=?", "AB"], [24, 24, 24, None]) == pytest.approx(2 / 3)
    assert answer_accuracy(["ab"], [None]) is None


def test_summarize():
    s = summarize(["3+4=?", "ab"], ["3+4=?", "AB"])
    assert s == {"n": 2, "em": 0.5, "em_nocase": 1.0, "cer": pytest.approx(2 / 7), "answer_acc": 1.0}


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        exact_match(["a"], [])


def test_own_test_split_scored_like_the_realdev_targets():
    rows = [
        Scored("a.png", "AbCd", "abcd", 1.0, "test/easy", "spec"),  # EasyCaptcha Latin: case ignored
        Scored("b.gif", "xY3z", "xy3z", 1.0, "test/easy", "gif_numlower"),
        Scored("c.png", "中文字符", "中文字待", 1.0, "test/easy", "cn"),  # Chinese: exact
        Scored("d.png", "3+5=?", "3+6=?", 1.0, "test/easy", "arith", answer=9),  # the answer is what counts
        Scored("e.png", "AbCd", "abcd", 1.0, "test/ctext", "text:water:normal:noise"),  # Kaptcha: case counts
        Scored("f.png", "AbCdEf", "AbCd", 1.0, "test/ctext", "text:water:compact:noise", flags="edge_clip"),
        Scored("g.png", "3+5=?", "3+5=?", 1.0, "easy", "arith", answer=8),  # realdev rows stay out of the test rows
    ]
    assert [read_like_realdev_targets(r) for r in rows] == [True, True, False, True, False, False, True]
    table = {t["name"]: t for t in target_table(rows)}
    assert table["own test split"]["n"] == 6 and table["own test split"]["value"] == 0  # exact match: none
    readable = table["own test split, scored like realdev"]
    assert readable["n"] == 5 and readable["value"] == pytest.approx(3 / 5) and not readable["met"]
