from pathlib import Path

import pytest

from models.charset import BLANK, Charset, UnknownCharacterError, normalize_label, read_labels, write_labels


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("8×3=？", "8*3=?"),  # tutorial Ruoyi label -> drawn glyphs
        ("8÷2=？", "8/2=?"),
        ("7+3x6=?", "7+3x6=?"),  # EasyCaptcha draws the letter x: kept
        ("ＡＢ１２", "AB12"),  # full-width ASCII
        ("aB c\u200bd", "aBcd"),  # whitespace and zero-width removed
        ("争城却岸", "争城却岸"),  # CJK untouched
        ("a×b", "a×b"),  # not an expression: × kept
    ],
)
def test_normalize_label(raw, expected):
    assert normalize_label(raw) == expected


def test_charset_order_is_fixed_and_input_order_free():
    a = Charset.from_labels(["z9?", "争A+", "b0"])
    b = Charset.from_labels(["b0", "争A+", "z9?"])
    assert a == b
    assert a.symbols == "09Abz+?争"  # digits, upper, lower, symbols, then by code point


def test_encode_ids_start_after_blank_and_unknown_raises():
    cs = Charset("abc")
    assert BLANK == 0
    assert cs.encode("cab") == [3, 1, 2]
    assert cs.num_classes == 4
    with pytest.raises(UnknownCharacterError) as err:
        cs.encode("abz")
    assert err.value.unknown == {"z"}


def test_extend_keeps_existing_ids():
    cs = Charset("0123")
    bigger = cs.extend(["3A", "9"])
    assert bigger.symbols.startswith("0123")
    assert set(bigger.symbols) == set("01239A")
    assert bigger.encode("3") == cs.encode("3")


def test_charset_save_load_roundtrip(tmp_path: Path):
    cs = Charset.from_labels(["aZ3", "争"])
    cs.save(tmp_path / "charset.txt")
    assert Charset.load(tmp_path / "charset.txt") == cs


def test_duplicate_symbols_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        Charset("abca")


def test_read_labels_lenient_and_reports_problems(tmp_path: Path):
    path = tmp_path / "labels.txt"
    path.write_bytes("a.png\tAB12\n\nb.png  x  y \nonlyname\n c.png\t8×3=？\n".encode())
    result = read_labels(path)
    assert [(r.filename, r.label) for r in result.rows] == [("a.png", "AB12"), ("b.png", "x y"), ("c.png", "8×3=？")]
    assert len(result.problems) == 1 and "onlyname" in result.problems[0]


def test_read_labels_tsv_with_header(tmp_path: Path):
    path = tmp_path / "labels.tsv"
    path.write_text("filename\tlabel\ttype\tanswer\nx.png\t3+4=?\tarith\t7\n", encoding="utf-8")
    (row,) = read_labels(path).rows
    assert row.label == "3+4=?" and row.extra == {"type": "arith", "answer": "7"}


def test_read_labels_gbk(tmp_path: Path):
    path = tmp_path / "labels.txt"
    path.write_bytes("a.png\t争城\n".encode("gbk"))
    result = read_labels(path)
    assert result.rows[0].label == "争城" and result.encoding == "gbk"


def test_write_labels(tmp_path: Path):
    write_labels(tmp_path / "l.txt", [("a.png", "x1"), ("b.gif", "争")])
    assert (tmp_path / "l.txt").read_bytes() == "a.png\tx1\nb.gif\t争\n".encode()


def test_a_folder_without_label_file_is_read_from_image_names(tmp_path):
    from PIL import Image

    from models.dataset import read_folder

    for name in ("aB3x_0001.png", "q9_extra_part.jpg", "7xyz.png", "_nolabel.png"):
        Image.new("L", (40, 16), 255).save(tmp_path / name)
    (tmp_path / "notes.md").write_text("not an image")
    samples, report = read_folder(tmp_path)
    assert sorted(s.label for s in samples) == ["7xyz", "aB3x", "q9"]
    assert len(report.bad_lines) == 1 and "_nolabel.png" in report.bad_lines[0]


def test_a_folder_with_neither_labels_nor_images_is_refused_with_the_layouts(tmp_path):
    from models.dataset import read_folder

    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="labels.txt.*labels.tsv.*<label>_<anything>"):
        read_folder(tmp_path)
