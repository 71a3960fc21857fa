"""bench/glyph_ceiling.py: which ctext characters render alike, and the exact match an ideal reader can reach."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.glyph_ceiling import (
    alike,
    alike_groups,
    font_file,
    hutool_alphabet,
    hutool_size,
    misread,
    p_correct,
    parse_mix,
    runner_defaults,
)
from helpers import ROOT

SCRIPT = ROOT / "bench" / "glyph_ceiling.py"


def liberation_sans_bold() -> tuple[str, int]:
    if shutil.which("fc-match") is None:
        pytest.skip("fc-match not installed (make system-deps)")
    path, index = font_file("Liberation Sans")
    if "LiberationSans-Bold" not in Path(path).name:
        pytest.skip(f"Liberation Sans Bold not installed (fontconfig gave {path})")
    return path, index


def test_runner_defaults_read_the_charset_and_the_mix_from_the_java_runner():
    charset, mix = runner_defaults()
    assert len(charset) == len(set(charset)) == 62 and "l" in charset and "I" in charset
    assert abs(sum(mix.values()) - 1) < 1e-9
    assert set(mix) >= {"Dialog", "Liberation Sans", "WenQuanYi Zen Hei"}
    assert mix["Dialog"] == pytest.approx(3 / 14)


def test_parse_mix_refuses_an_entry_without_weight():
    assert parse_mix("A:1,B:3") == {"A": 0.25, "B": 0.75}
    with pytest.raises(SystemExit, match="NAME:WEIGHT"):
        parse_mix("A:1,Arial")


def test_alike_is_a_one_pixel_hausdorff_test():
    a = np.zeros((8, 8), bool)
    a[2:6, 3] = True
    taller = a.copy()
    taller[1, 3] = True
    far = np.zeros((8, 8), bool)
    far[2:6, 6] = True
    assert alike(a, taller, 1) and not alike(a, taller, 0)
    assert alike(a, a, 0) and not alike(a, far, 1)


def test_liberation_sans_bold_draws_l_and_capital_i_alike_but_not_pixel_identical():
    path, index = liberation_sans_bold()
    charset = runner_defaults()[0]
    groups = alike_groups(path, index, charset, 43, shift=1)
    assert "Il" in groups  # l is one pixel taller than I at this size, same advance
    assert all(len(g) <= 3 for g in groups) and not any("O" in g or "0" in g for g in groups)
    assert "Il" not in alike_groups(path, index, charset, 43, shift=0)


def test_p_correct_uses_the_fonts_the_runner_recorded():
    mix = {"A": 0.5, "B": 0.5}
    wrong = {("A", "l"): 0.5, ("A", "I"): 0.5}
    assert p_correct("xy", ("A",), wrong, mix) == 1.0
    assert p_correct("lI", ("A",), wrong, mix) == pytest.approx(0.25)  # both drawn in A: two coin flips
    assert p_correct("l", ("B",), wrong, mix) == 1.0
    assert p_correct("l", ("A", "B"), wrong, mix) == pytest.approx(0.75)
    assert p_correct("l", ("Unknown",), wrong, mix) == pytest.approx(0.75)  # falls back to the whole mix


def test_script_prints_the_ideal_exact_match_of_a_folder(tmp_path):
    liberation_sans_bold()
    folder = tmp_path / "split"
    folder.mkdir()
    rows = [
        ("a.png", "lI", "text:water:normal:noise", "Liberation Sans", ""),  # 0.25
        ("b.png", "ab", "text:water:normal:noise", "Liberation Sans", ""),  # 1
        ("c.png", "l", "text:fisheye:normal:noise", "Liberation Sans", "edge_clip"),  # counted apart: 0.5
        ("d.png", "1+2=?", "arith", "Dialog", ""),  # not ctext
    ]
    lines = ["filename\tlabel\tsource\ttype\twidth\theight\tfont\tanswer\tflags"]
    lines += [f"{name}\t{label}\tx\t{kind}\t160\t60\t{font}\t\t{flags}" for name, label, kind, font, flags in rows]
    (folder / "meta.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(folder), "--fonts", "Liberation Sans:1"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout  # fmt: skip
    assert "| Liberation Sans (1.000) | LiberationSans-Bold.ttf | 43 | I/l |" in out
    row = next(line for line in out.splitlines() if line.startswith(f"| {folder} "))
    assert [cell.strip() for cell in row.strip("|").split("|")][1:] == ["3", "2", "62.50%", "1.2", "1", "50.00%"]


def test_script_says_what_is_missing(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and "meta.tsv: not found" in result.stderr


def dejavu_sans() -> tuple[str, int]:
    if shutil.which("fc-match") is None:
        pytest.skip("fc-match not installed (make system-deps)")
    path, index = font_file("SansSerif", "regular")
    if Path(path).name != "DejaVuSans.ttf":
        pytest.skip(f"DejaVu Sans not installed (fontconfig gave {path})")
    return path, index


def test_misread_counts_only_characters_that_differ_under_the_metric():
    assert misread(["Il"]) == {"I": 0.5, "l": 0.5}
    assert misread(["Il"], str.lower) == {"I": 0.5, "l": 0.5}
    assert misread(["Ss"], str.lower) == {"S": 0.0, "s": 0.0}  # one class ignoring case: never wrong
    assert misread(["Ssx"], str.lower) == {"S": 0.0, "s": 0.0, "x": 1.0}  # the reader names the larger class


def test_hutool_draws_capital_i_and_l_alike_at_its_small_sizes():
    path, index = dejavu_sans()
    alphabet = hutool_alphabet()
    assert len(alphabet) == len(set(alphabet)) == 62
    assert hutool_size(40) == 30 and hutool_size(50) == 37 and hutool_size(100) == 75
    assert alike_groups(path, index, alphabet, 30, shift=1) == ["Il"]
    assert alike_groups(path, index, alphabet, 75, shift=1) == []  # two pixels apart at 200x100


def test_script_prints_the_hutool_ceiling_per_type_of_a_realdev_folder(tmp_path):
    dejavu_sans()
    folder = tmp_path / "hutool"
    folder.mkdir()
    rows = [
        ("a.png", "xIzw", "line", "", 40),  # I at size 30: 0.5
        ("b.png", "abcd", "line", "", 40),  # 1
        ("c.png", "xIzw", "line", "edge_clip", 100),  # size 75: I and l apart, 1
        ("d.png", "Sszk", "circle", "", 40),  # S and s are one class ignoring case: 1
        ("e.png", "9-37=", "math", "", 40),  # 1
    ]
    lines = ["filename\tlabel\ttype\tanswer\tflags"]
    for name, label, kind, flags, height in rows:
        Image.new("RGB", (2 * height, height), "white").save(folder / name)
        lines.append(f"{name}\t{label}\t{kind}\t{'-28' if kind == 'math' else ''}\t{flags}")
    (folder / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--family", "hutool", str(folder)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout  # fmt: skip
    assert "| 30 | 30 | I/l | I/l |" in out and "| 75 | 75 | none | none |" in out
    cells = {}
    for line in out.splitlines():
        if line.startswith(f"| {folder} "):
            row = [cell.strip() for cell in line.strip("|").split("|")]
            cells[row[1]] = row[2:]
    assert cells["line"] == ["3", "2", "75.00%", "0.5", "1", "100.00%", "83.33%"]
    assert cells["circle"] == ["1", "1", "100.00%", "0.0", "0", "-", "100.00%"]
    assert cells["math"][-1] == "100.00%"
    seen = subprocess.run(
        [sys.executable, str(SCRIPT), "--family", "hutool", str(folder), "--scale-to", "48"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout  # fmt: skip
    assert "| 75 | 36 | I/l | I/l |" in seen  # scaled to the model's 48 pixels, 200x100's I and l meet
