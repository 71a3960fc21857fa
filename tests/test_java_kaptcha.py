"""KaptchaRunner (tools/java_captcha): Kaptcha 2.3.2's DefaultKaptcha as sites configure it. Each type draws at its
own size whatever --sizes says, with its alphabet and length; site_mix covers its ranges; seeded runs are
byte-reproducible across thread counts; bad input fails clearly."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from helpers import read_meta
from helpers import run as run_runner

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHARS = "abcde2345678gfynmnpwx"
SITE_CHARSETS = {
    "digits": "0123456789",
    "lower32": "abcdefghijkmnpqrstuvwxyz23456789",
    "upper32": "ABCDEFGHJKLMNPQRSTUVWXYZ23456789",
}
TYPE_SIZES = {"default": (200, 50), "ruoyi_char": (160, 60)}


def run(classes: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_runner(classes, "KaptchaRunner", *args, check=check, fonts=False)


def settings(row: dict[str, str]) -> dict[str, str]:
    """The font column: ``fonts;size=N;chars=NAME;noise=IMPL;obsc=IMPL``."""
    fonts, *pairs = row["font"].split(";")
    return {"fonts": fonts, **dict(p.split("=", 1) for p in pairs)}


def check_images(out: Path, rows: list[dict[str, str]]) -> None:
    """Each image is an RGB PNG of the size meta.tsv records, with a black 1-px border."""
    for r in rows:
        with Image.open(out / "images" / r["filename"]) as png:
            assert png.format == "PNG" and png.mode == "RGB"
            assert png.size == (int(r["width"]), int(r["height"]))
            w, h = png.size
            assert {png.getpixel(xy) for xy in [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)]} == {(0, 0, 0)}
        assert set(r["flags"].split(",")) <= {"", "edge_clip", "v_clip"}
        assert set(settings(r)["fonts"].split("+")) <= {"Dialog", "Monospaced"}


def test_list_shows_every_type(classes):
    assert run(classes, "list").stdout.split() == ["default", "ruoyi_char", "site_mix"]


@pytest.mark.parametrize("type_", ["default", "ruoyi_char"])
def test_fixed_types_keep_their_size_alphabet_and_length(classes, tmp_path, type_):
    out = tmp_path / type_
    run(classes, "gen", type_, str(out), "12", "--sizes", "96x32", "--seed", "4", "--threads", "2")
    rows = read_meta(out)
    assert len(rows) == 12
    length = 5 if type_ == "default" else 4
    for r in rows:
        assert (int(r["width"]), int(r["height"])) == TYPE_SIZES[type_]
        assert len(r["label"]) == length and set(r["label"]) <= set(DEFAULT_CHARS)
        s = settings(r)
        assert s["size"] == ("40" if type_ == "default" else "38") and s["noise"] == "DefaultNoise"
        assert s["obsc"] == ("WaterRipple" if type_ == "default" else "ShadowGimpy")
    check_images(out, rows)


def test_site_mix_covers_its_ranges(classes, tmp_path):
    out = tmp_path / "site"
    run(classes, "gen", "site_mix", str(out), "90", "--sizes", "96x32", "--seed", "8", "--threads", "2")
    rows = read_meta(out)
    widths = [int(r["width"]) for r in rows]
    heights = [int(r["height"]) for r in rows]
    assert min(widths) >= 100 and max(widths) <= 200 and max(widths) - min(widths) > 60
    assert min(heights) >= 30 and max(heights) <= 60 and max(heights) - min(heights) > 18
    assert Counter(len(r["label"]) for r in rows) == {4: 30, 5: 30, 6: 30}  # exact quotas of 4:1,5:1,6:1
    seen = Counter()
    for r, h in zip(rows, heights, strict=True):
        s = settings(r)
        assert set(r["label"]) <= set(SITE_CHARSETS[s["chars"]])
        assert 0.6 * h - 0.5 <= int(s["size"]) <= 0.8 * h + 0.5
        seen.update([s["chars"], s["noise"], s["obsc"]])
    for key in [*SITE_CHARSETS, "DefaultNoise", "NoNoise", "WaterRipple", "ShadowGimpy", "FishEyeGimpy"]:
        assert seen[key] >= 10, seen
    check_images(out, rows)


def test_smart_and_fromjson_ignore_sizes_and_follow_the_mix(classes, tmp_path):
    out = tmp_path / "smart"
    run(classes, "smart", str(out), "20", "--sizes", "120x40", "--seed", "2", "--threads", "2")
    rows = read_meta(out)
    assert Counter(r["type"] for r in rows) == {"default": 5, "ruoyi_char": 5, "site_mix": 10}
    check_images(out, rows)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"type_mix": {"ruoyi_char": 1, "default": 1}, "sizes": {"256x64": 1}}))
    out = tmp_path / "json"
    run(classes, "fromjson", str(config), str(out), "6", "--seed", "2", "--threads", "2")
    rows = read_meta(out)
    assert {(r["type"], int(r["width"]), int(r["height"])) for r in rows} == {
        ("default", 200, 50),
        ("ruoyi_char", 160, 60),
    }
    check_images(out, rows)


def digest(out: Path) -> str:
    h = hashlib.sha256((out / "meta.tsv").read_bytes())
    for p in sorted((out / "images").iterdir()):
        h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_seeded_run_is_byte_reproducible_across_threads(classes, tmp_path):
    run(classes, "smart", str(tmp_path / "one"), "24", "--seed", "11", "--threads", "1")
    run(classes, "smart", str(tmp_path / "two"), "24", "--seed", "11", "--threads", "2")
    assert digest(tmp_path / "one") == digest(tmp_path / "two")
    run(classes, "smart", str(tmp_path / "other"), "24", "--seed", "12", "--threads", "2")
    assert digest(tmp_path / "other") != digest(tmp_path / "one")


def test_unknown_type_fails_with_a_message(classes, tmp_path):
    done = run(classes, "gen", "nope", str(tmp_path / "x"), "3", check=False)
    assert done.returncode == 2
    assert "unknown type 'nope'" in done.stderr and "site_mix" in done.stderr
    done = run(classes, "smart", str(tmp_path / "y"), "3", "--mix", "default:1,bogus:1", check=False)
    assert done.returncode == 2 and "unknown type 'bogus'" in done.stderr
