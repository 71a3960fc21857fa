"""The "wild" Java runner (tools/java_captcha/WildRunner.java): every type draws labels from its alphabet at the
configured lengths and sizes, arithmetic answers are right, seeded runs are byte-reproducible across thread counts,
and a bad config_wild.json fails naming the key."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from helpers import check_output_files, read_meta, run

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tools" / "java_captcha" / "config_wild.json"
DIGITS = "0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LOWER = "abcdefghijklmnopqrstuvwxyz"
ALPHABETS = {"wild_num": DIGITS, "wild_upper": UPPER, "wild_lower": LOWER, "wild_mixed": DIGITS + UPPER + LOWER}
PER_TYPE = 40  # images per type in the "all" run


def chinese_alphabet() -> str:
    source = (ROOT / "tools" / "java_captcha" / "EasyCaptchaRunner.java").read_text(encoding="utf-8")
    return re.search(r'CHINESE = "([^"]+)"', source)[1]


@pytest.fixture(scope="module")
def wild_all(classes, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wild_all")
    run(classes, "WildRunner", "all", str(root), str(PER_TYPE), "--seed", "5", "--threads", "2", fonts=False)
    return root


def test_list_shows_every_type(classes):
    types = run(classes, "WildRunner", "list", fonts=False).stdout.split()
    assert types == ["wild_num", "wild_upper", "wild_lower", "wild_mixed", "wild_cn", "wild_arith"]


@pytest.mark.parametrize("type_", [*ALPHABETS, "wild_cn"])
def test_text_types_draw_their_alphabet_at_the_configured_lengths(wild_all, type_):
    out = wild_all / type_
    rows = read_meta(out)
    assert len(rows) == PER_TYPE and {r["type"] for r in rows} == {type_}
    check_output_files(out, rows)
    config = json.loads(CONFIG.read_text(encoding="utf-8"))
    lengths = {int(n) for n in config["cn_lengths" if type_ == "wild_cn" else "lengths"]}
    alphabet = chinese_alphabet() if type_ == "wild_cn" else ALPHABETS[type_]
    for r in rows:
        assert len(r["label"]) in lengths and set(r["label"]) <= set(alphabet), r["label"]
        assert r["answer"] == "" and r["font"]
    assert {len(r["label"]) for r in rows} <= set(range(3, 9))
    with Image.open(out / "images" / rows[0]["filename"]) as png:
        assert png.format == "PNG" and png.mode == "RGB"


def test_arithmetic_answers_evaluate(wild_all):
    rows = read_meta(wild_all / "wild_arith")
    assert len(rows) == PER_TYPE
    for r in rows:
        label = r["label"]
        assert re.fullmatch(r"\d{1,2}([+\-*x]\d{1,2}){1,3}=\??", label), label
        assert 3 <= len(label) <= 8, label
        expression = label.rstrip("?").rstrip("=").replace("x", "*")
        assert int(r["answer"]) == eval(expression), label  # digits and + - * only, checked above
    assert any(r["label"].endswith("=?") for r in rows) and any(r["label"].endswith("=") for r in rows)


def test_sizes_stay_within_the_config_ranges(classes, wild_all):
    config = json.loads(CONFIG.read_text(encoding="utf-8"))
    sizes = set()
    for folder in wild_all.iterdir():
        for r in read_meta(folder):
            w, h = int(r["width"]), int(r["height"])
            sizes.add((w, h))
            assert config["width"][0] <= w <= config["width"][1] and config["height"][0] <= h <= config["height"][1]
            assert config["aspect"][0] <= w / h <= config["aspect"][1]
    assert len(sizes) >= PER_TYPE  # one grid size per image while the run is smaller than the grid


def test_edge_clip_is_rare_and_flags_ink_on_a_side(wild_all):
    rows = [(folder, r) for folder in wild_all.iterdir() for r in read_meta(folder)]
    flagged = [(folder, r) for folder, r in rows if "edge_clip" in r["flags"]]
    assert len(flagged) <= 0.05 * len(rows)
    assert {f for _, r in rows for f in r["flags"].split(",") if f} <= {"edge_clip", "v_clip"}


def digest(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_seeded_run_is_byte_reproducible_across_threads(classes, tmp_path):
    digests = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}"
        run(classes, "WildRunner", "smart", str(out), "60", "--seed", "77", "--threads", threads, fonts=False)
        digests.append(digest(out))
    assert digests[0] == digests[1] and len(digests[0]) == 62


def write_config(tmp_path: Path, **changes) -> Path:
    config = json.loads(CONFIG.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    path = tmp_path / "wild.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"rotation_degress": [-5, 5]}, 'unknown key "rotation_degress"'),
        ({"shear": [0.3, -0.3]}, 'key "shear" must be [low, high]'),
        ({"blur_probability": 1.5}, 'key "blur_probability" must be a number in 0..1'),
        ({"scheme_weights": {"neon": 1}}, "key \"scheme_weights\" has unknown name 'neon'"),
        ({"jpeg_quality": None}, 'key "jpeg_quality" is missing'),
        ({"font_weights": {"*": 0}}, 'key "font_weights" needs at least one positive weight'),
    ],
)
def test_bad_config_key_fails_naming_it(classes, tmp_path, changes, message):
    path = write_config(tmp_path, **changes)
    done = run(classes, "WildRunner", "gen", "wild_num", str(tmp_path / "o"), "2", "--wild-config", str(path),
               check=False, fonts=False)  # fmt: skip
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_config_ranges_change_what_is_drawn(classes, tmp_path):
    path = write_config(tmp_path, width=[120, 120], height=[40, 40], lengths={"7": 1}, font_weights={"Liberation*": 1})
    out = tmp_path / "o"
    run(classes, "WildRunner", "gen", "wild_upper", str(out), "12", "--wild-config", str(path), "--seed", "1",
        fonts=False)  # fmt: skip
    rows = read_meta(out)
    assert {(r["width"], r["height"]) for r in rows} == {("120", "40")}
    assert {len(r["label"]) for r in rows} == {7}
    assert all(name.startswith("Liberation") for r in rows for name in r["font"].split("+")), rows[0]["font"]


def test_every_config_key_is_documented():
    docs = (ROOT / "docs" / "generators.md").read_text(encoding="utf-8")
    section = docs[docs.index("\n## wild") :]
    for key in json.loads(CONFIG.read_text(encoding="utf-8")):
        assert f"| `{key}` |" in section, key
