"""bench/imagecaptcha_ceiling.py: which characters ImageCaptcha's stretch makes alike, and the ideal reader's EM."""

from __future__ import annotations

import pytest

from bench.glyph_ceiling import misread
from bench.imagecaptcha_ceiling import expected_em, groups, main

captcha_image = pytest.importorskip("captcha.image")


def test_the_stretch_to_the_cell_makes_zero_and_both_o_alike_at_every_size():
    for font in captcha_image.ImageCaptcha().truefonts:
        found = groups(font, "0Oo1lI", shift=2)
        assert "0Oo" in found
        assert not any(set(g) & set("1lI") for g in found)  # DroidSansMono keeps 1, l and I apart


def test_the_ideal_reader_names_the_class_with_most_members():
    ignoring_case = misread(["0Oo"], str.lower)
    assert ignoring_case == {"0": 1.0, "O": 0.0, "o": 0.0}  # "o" covers two of the three
    case_sensitive = misread(["0Oo"], str)
    assert case_sensitive == pytest.approx({"0": 2 / 3, "O": 2 / 3, "o": 2 / 3})  # a three-way tie


def test_expected_em_multiplies_over_the_label_and_averages_over_sizes():
    wrong = [{"0": 1.0}, {"0": 0.0}]  # misread at one size of two
    assert expected_em(["ab"], wrong) == 1.0
    assert expected_em(["a0"], wrong) == pytest.approx(0.5)
    assert expected_em(["00", "ab"], wrong) == pytest.approx((0.25 + 1.0) / 2)


def test_main_prints_the_ceiling_of_a_labelled_folder(tmp_path, capsys):
    (tmp_path / "labels.txt").write_text("a.png\tab0x\nb.png\tabcd\n")
    assert main([str(tmp_path), "--shift", "2"]) == 0
    out = capsys.readouterr().out
    assert "0/O/o" in out
    assert f"| {tmp_path} | 2 | 2 | 50.0% |" in out  # the 0 is always misread ignoring case
