"""The Java captcha runners (tools/java_captcha): every type draws, labels follow the type's rules, GIFs animate,
arithmetic answers are right, seeded runs are byte-reproducible across thread counts, and bad input fails clearly."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from helpers import check_output_files, read_meta, run

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "tools" / "java_captcha"
DIGITS, UPPER, LOWER = "23456789", "ABCDEFGHJKMNPQRSTUVWXYZ", "abcdefghjkmnpqrstuvwxyz"
EASY_ALPHABETS = {
    "spec": DIGITS + UPPER + LOWER,
    "spec_num": DIGITS,
    "spec_char": UPPER + LOWER,
    "spec_upper": UPPER,
    "spec_lower": LOWER,
    "spec_numupper": DIGITS + UPPER,
    "spec_numlower": DIGITS + LOWER,
    "gif": DIGITS + UPPER + LOWER,
    "gif_numupper": DIGITS + UPPER,
    "gif_numlower": DIGITS + LOWER,
}
CTEXT_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PER_TYPE = 6  # images per type in the "all" runs


def eval_easy(expression: str) -> int:
    assert re.fullmatch(r"\d([+\-x]\d){1,2}=\?", expression), expression
    return eval(expression[:-2].replace("x", "*"))  # digits and + - * only, checked above


@pytest.fixture(scope="session")
def easy_all(classes, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("easy_all")
    run(classes, "EasyCaptchaRunner", "all", str(root), str(PER_TYPE), "--seed", "5", "--threads", "2")
    return root


def test_list_shows_every_type(classes):
    easy = run(classes, "EasyCaptchaRunner", "list", fonts=False).stdout.split()
    assert easy == [*EASY_ALPHABETS, "cn", "cn_gif", "arith"]
    ctext = run(classes, "KaptchaTextRunner", "list", fonts=False).stdout.split()
    assert len(ctext) == 18 and all(
        re.fullmatch(r"text:(water|shadow|fisheye):(normal|wide|compact):(no)?noise", t) for t in ctext
    )
    assert run(classes, "RuoyiRunner", "list", fonts=False).stdout.split() == ["ruoyi_math", "ruoyi_char"]


@pytest.mark.parametrize("type_", [*EASY_ALPHABETS, "cn", "cn_gif", "arith"])
def test_easy_type_labels_and_images(easy_all, type_):
    out = easy_all / type_
    rows = read_meta(out)
    assert len(rows) == PER_TYPE and {r["type"] for r in rows} == {type_}
    check_output_files(out, rows)
    chinese = (ROOT / "tools" / "java_captcha" / "EasyCaptchaRunner.java").read_text(encoding="utf-8")
    for r in rows:
        label = r["label"]
        if type_ == "arith":
            assert int(r["answer"]) == eval_easy(label)
            continue
        assert r["answer"] == ""
        if type_.startswith("cn"):
            assert len(label) in (4, 5) and all("\u4e00" <= c <= "\u9fff" and c in chinese for c in label)
        else:
            assert len(label) in (4, 5, 6) and set(label) <= set(EASY_ALPHABETS[type_]), label
        if type_ in ("gif", "gif_numupper", "gif_numlower", "cn_gif"):
            with Image.open(out / "images" / r["filename"]) as gif:
                assert gif.format == "GIF" and gif.is_animated
                assert gif.n_frames == len(label)  # one frame per character
                assert gif.info.get("loop") == 0 and gif.info.get("duration") == 100
        else:
            with Image.open(out / "images" / r["filename"]) as png:
                assert png.format == "PNG" and png.mode == "RGB"


def test_easy_chinese_alphabet_has_487_characters():
    source = (SRC / "EasyCaptchaRunner.java").read_text(encoding="utf-8")
    chinese = re.search(r'CHINESE = "([^"]+)"', source)[1]
    assert len(chinese) == len(set(chinese)) == 487
    assert all("\u4e00" <= c <= "\u9fff" for c in chinese)


def test_easy_gif_frame_zero_hides_the_first_character(classes, tmp_path):
    """Frame i shows character j at alpha ((i+j) mod len)/(len-1): frame 0 hides character 0, the last frame shows it."""
    out = tmp_path / "g"
    run(
        classes,
        "EasyCaptchaRunner",
        "gen",
        "gif_numupper",
        str(out),
        "4",
        "--len",
        "4",
        "--sizes",
        "200x64",
        "--fonts",
        "Dialog",
        "--seed",
        "3",
    )
    for r in read_meta(out):
        with Image.open(out / "images" / r["filename"]) as gif:
            frames = []
            for i in range(gif.n_frames):
                gif.seek(i)
                frames.append(gif.convert("L"))
        cell = 200 // 4
        # ink in character 0's cell, from the grey histogram
        ink = [sum((255 - v) * n for v, n in enumerate(f.crop((0, 0, cell, 64)).histogram())) for f in frames]
        assert ink[-1] > 3 * ink[0], ink  # invisible in frame 0 (only ovals and the curve), opaque in the last


def test_easy_arithmetic_answers_and_operators(classes, tmp_path):
    out = tmp_path / "arith"
    run(classes, "EasyCaptchaRunner", "gen", "arith", str(out), "300", "--arith-len", "2:50,3:50", "--seed", "9")
    rows = read_meta(out)
    operators = Counter(c for r in rows for c in r["label"] if c in "+-x")
    assert set(operators) == {"+", "-", "x"}
    assert Counter(len(r["label"]) for r in rows) == {5: 150, 7: 150}
    for r in rows:
        assert int(r["answer"]) == eval_easy(r["label"])
    assert any(int(r["answer"]) < 0 for r in rows)  # subtraction may go negative, as in the library


@pytest.fixture(scope="session")
def ctext_all(classes, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ctext_all")
    run(classes, "KaptchaTextRunner", "all", str(root), "3", "--seed", "5", "--threads", "2")
    return root


def test_ctext_every_style(ctext_all):
    folders = sorted(p for p in ctext_all.iterdir() if p.is_dir())
    assert len(folders) == 18
    for out in folders:
        rows = read_meta(out)
        assert len(rows) == 3
        check_output_files(out, rows)
        for r in rows:
            assert r["type"] == out.name.replace("_", ":")
            assert len(r["label"]) in (4, 5, 6) and set(r["label"]) <= set(CTEXT_CHARS)
            assert r["answer"] == ""


def test_ctext_flags_words_that_run_off_the_canvas(classes, tmp_path):
    """edge_clip marks text ink within 2 px of a side, as in realdev; long words on small canvases run off more often
    than short ones (as in realdev), and wide canvases keep every word whole."""
    out = tmp_path / "ctext"
    sizes = "--sizes", "96x32:1,256x64:1"
    run(classes, "KaptchaTextRunner", "smart", str(out), "240", *sizes, "--len", "4:1,6:1", "--seed", "3")
    rows = read_meta(out)
    assert {r["flags"] for r in rows} == {"", "edge_clip"}
    rate = {}
    for key in [("96", 6), ("96", 4), ("256", 4)]:
        group = [r for r in rows if r["width"] == key[0] and len(r["label"]) == key[1]]
        rate[key] = sum(r["flags"] == "edge_clip" for r in group) / len(group)
    assert rate[("96", 6)] > 0.3 and rate[("256", 4)] == 0 and rate[("96", 6)] > 5 * rate[("96", 4)], rate


def test_ruoyi_math_and_char(classes, tmp_path):
    out = tmp_path / "ruoyi"
    run(classes, "RuoyiRunner", "smart", str(out), "400", "--mix", "ruoyi_math:3,ruoyi_char:1", "--seed", "4")
    rows = read_meta(out)
    check_output_files(out, rows)
    math_rows = [r for r in rows if r["type"] == "ruoyi_math"]
    assert len(math_rows) == 300
    ops = Counter()
    for r in math_rows:
        m = re.fullmatch(r"(\d)([+\-*/])(\d)=\?", r["label"])  # drawn ASCII form, not the runner's ×÷？
        assert m, r["label"]
        a, op, b = int(m[1]), m[2], int(m[3])
        ops[op] += 1
        expected = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else None}[op]
        assert int(r["answer"]) == expected and expected >= 0
        if op == "/":
            assert a % b == 0  # divisions are exact
    assert set(ops) == {"+", "-", "*", "/"}
    assert ops["+"] > ops["/"]  # + 0.34 vs / 0.16
    for r in rows:
        if r["type"] == "ruoyi_char":
            assert len(r["label"]) == 4 and set(r["label"]) <= set("abcde2345678gfynmnpwx")


def test_size_and_length_quotas_are_exact(classes, tmp_path):
    out = tmp_path / "q"
    run(
        classes,
        "KaptchaTextRunner",
        "smart",
        str(out),
        "200",
        "--sizes",
        "160x60:40,120x40:10,96x32:50",
        "--len",
        "4:50,5:25,6:25",
        "--seed",
        "2",
    )
    rows = read_meta(out)
    assert Counter((r["width"], r["height"]) for r in rows) == {("160", "60"): 80, ("120", "40"): 20, ("96", "32"): 100}
    assert Counter(len(r["label"]) for r in rows) == {4: 100, 5: 50, 6: 50}


def test_fromjson_follows_the_config(classes, tmp_path):
    out = tmp_path / "cfg"
    run(classes, "EasyCaptchaRunner", "fromjson", str(SRC / "config.json"), str(out), "100", "--seed", "1")
    rows = read_meta(out)
    mix = json.loads((SRC / "config.json").read_text(encoding="utf-8"))["type_mix"]
    total = sum(mix.values())
    assert Counter(r["type"] for r in rows) == {t: round(100 * w / total) for t, w in mix.items() if w}
    check_output_files(out, rows)


def test_fromjson_dryrun_prints_the_plan(classes):
    done = run(classes, "EasyCaptchaRunner", "fromjson", str(SRC / "config.json"), "dryrun", "1000")
    assert "total 1000" in done.stdout and "type\tarith\t140" in done.stdout and "size\t160x60\t400" in done.stdout


def digest(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.parametrize(
    "runner,extra",
    [
        ("EasyCaptchaRunner", ["--mix", "spec:2,gif:1,cn:1,cn_gif:1,arith:1"]),
        ("KaptchaTextRunner", []),
        ("RuoyiRunner", ["--mix", "ruoyi_math:1,ruoyi_char:1"]),
    ],
)
def test_seeded_run_is_byte_reproducible_across_threads(classes, tmp_path, runner, extra):
    digests = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}"
        run(classes, runner, "smart", str(out), "40", *extra, "--seed", "77", "--threads", threads)
        digests.append(digest(out))
    assert digests[0] == digests[1] and len(digests[0]) == 42


def test_missing_builtin_font_dir_fails(classes, tmp_path):
    done = run(
        classes,
        "EasyCaptchaRunner",
        "gen",
        "spec",
        str(tmp_path / "o"),
        "3",
        "--fonts",
        "builtin",
        "--font-dir",
        str(tmp_path / "nowhere"),
        check=False,
        fonts=False,
    )
    assert done.returncode != 0 and "builtin fonts requested" in done.stderr


def test_uninstalled_font_is_reported(classes, tmp_path):
    done = run(
        classes,
        "KaptchaTextRunner",
        "gen",
        "text:water:normal:noise",
        str(tmp_path / "o"),
        "4",
        "--fonts",
        "NoSuchFont Pro",
        "--seed",
        "1",
    )
    assert "font 'NoSuchFont Pro' is not installed: 4 images" in done.stderr


def test_unwritable_output_fails(classes, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = run(classes, "RuoyiRunner", "gen", "ruoyi_math", str(blocker / "out"), "2", check=False)
    assert done.returncode != 0 and "cannot create output folder" in done.stderr


@pytest.mark.parametrize(
    "config,message",
    [
        ('{"type_mix": {"spec": 1}', "invalid config"),
        ('{"type_mix": {"nonsense": 1}}', "unknown type 'nonsense'"),
        ('{"sizes": "160x60:1"}', 'missing "type_mix"'),
        ('{"type_mix": {"spec": 1}, "sizes": "160by60:1"}', "bad size"),
    ],
)
def test_invalid_config_fails(classes, tmp_path, config, message):
    path = tmp_path / "config.json"
    path.write_text(config, encoding="utf-8")
    done = run(classes, "EasyCaptchaRunner", "fromjson", str(path), str(tmp_path / "o"), "5", check=False)
    assert done.returncode != 0 and message in done.stderr


def test_unknown_type_and_command_fail(classes, tmp_path):
    done = run(classes, "EasyCaptchaRunner", "gen", "spec_symbols", str(tmp_path / "o"), "1", check=False)
    assert done.returncode != 0 and "unknown type" in done.stderr
    done = run(classes, "KaptchaTextRunner", "frobnicate", check=False, fonts=False)
    assert done.returncode != 0 and "unknown command" in done.stderr


def test_fonts_lists_coverage(classes):
    done = run(classes, "EasyCaptchaRunner", "fonts", fonts=False)
    lines = done.stdout.splitlines()
    assert "name\tASCII\tARITH\tCN" in lines
    dialog = [line for line in lines if line.startswith("Dialog\t")]
    assert dialog and dialog[0].split("\t")[1] == "Y"
