"""The Hutool runner (tools/java_captcha/HutoolRunner.java): every type draws at the family's default sizes with
Hutool's alphabet and lengths, math labels agree with their answers, GIF frames hide and fuse like the library's,
flags follow the drawn glyphs, seeded runs are byte-reproducible across thread counts, and bad input fails clearly."""

from __future__ import annotations

import hashlib
import re
import string
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import read_meta
from helpers import run as run_runner
from models.charset import normalize_label

ROOT = Path(__file__).resolve().parents[1]
TYPES = ["line", "circle", "shear", "gif", "math"]
ALPHABET = set(string.ascii_letters + string.digits)
DEFAULT_SIZES = {(200, 100), (150, 50), (120, 40), (100, 40)}
FLAGS = {"edge_clip", "v_clip", "eq_clip", "faint"}
PER_TYPE = 8  # images per type in the "all" run: two of each default size, four of each length


def run(classes: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_runner(classes, "HutoolRunner", *args, check=check, fonts=False)


def gif_frames(path: Path) -> list[np.ndarray]:
    """Every frame as an (H, W) grey array."""
    with Image.open(path) as gif:
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("L"), dtype=np.int16))
    return frames


def dark(frame: np.ndarray, j: int, n: int, w: int) -> int:
    """Inked pixels of a GIF frame in the strip of character j (of n) that its neighbours' glyphs do not reach.
    GifCaptcha puts character j at max(m/2, 2) + (size + m) j, m = (w - n size) / n, size = 0.75 h."""
    size = int(0.75 * frame.shape[0])
    m = (w - n * size) / n
    x0 = max(m / 2, 2) + (size + m) * j
    strip = frame[:, int(x0 + max(0, 0.7 * size - size - m)) + 1 : min(w, int(x0 + min(size + m, 0.7 * size)))]
    return int((strip < 245).sum())


@pytest.fixture(scope="session")
def hutool_all(classes, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hutool_all")
    run(classes, "all", str(root), str(PER_TYPE), "--seed", "11", "--threads", "2")
    return root


def test_list_shows_every_type(classes):
    assert run(classes, "list").stdout.split() == TYPES


@pytest.mark.parametrize("type_", TYPES)
def test_type_sizes_labels_and_files(hutool_all, type_):
    out = hutool_all / type_
    rows = read_meta(out)
    assert len(rows) == PER_TYPE and {r["type"] for r in rows} == {type_}
    lines = (out / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert lines == [f"{r['filename']}\t{r['label']}" for r in rows]
    sizes = Counter((int(r["width"]), int(r["height"])) for r in rows)
    assert set(sizes) == DEFAULT_SIZES and set(sizes.values()) == {2}  # the family's own default --sizes
    for r in rows:
        label = r["label"]
        assert normalize_label(label) == label and r["font"] == "SansSerif"
        assert set(filter(None, r["flags"].split(","))) <= FLAGS
        with Image.open(out / "images" / r["filename"]) as image:
            assert image.size == (int(r["width"]), int(r["height"]))
            assert image.format == ("GIF" if type_ == "gif" else "PNG")
        if type_ == "math":
            continue
        assert r["answer"] == "" and set(label) <= ALPHABET
    if type_ != "math":
        assert Counter(len(r["label"]) for r in rows) == {4: PER_TYPE // 2, 5: PER_TYPE // 2}


def test_math_labels_answers_and_clipped_equals(classes, tmp_path):
    out = tmp_path / "math"
    run(classes, "gen", "math", str(out), "40", "--seed", "3")
    rows = read_meta(out)
    operators = Counter()
    for r in rows:
        match = re.fullmatch(r"(\d{1,2})([+\-*])(\d{1,2})=", r["label"])
        assert match, r["label"]
        operators[match[2]] += 1
        assert int(r["answer"]) == eval(r["label"][:-1])  # two operands and one of + - *, checked above
        assert "eq_clip" in r["flags"]  # at every default size the '=' in the sixth w/6 slot runs off the canvas
    assert set(operators) == {"+", "-", "*"}
    wide = tmp_path / "wide"
    run(classes, "gen", "math", str(wide), "6", "--sizes", "320x40", "--seed", "3")
    assert all("eq_clip" not in r["flags"] for r in read_meta(wide))  # a 53-px slot holds the '='


def test_gif_frames_hide_characters_and_fuse_to_all(hutool_all):
    """Frame i draws character j at alpha (i+j)/n, wrapping to (i+j-n-1)/n past 1: frame 0 hides character 0 and
    frame i >= 2 hides character n+1-i. The per-pixel minimum over the frames shows every character."""
    out = hutool_all / "gif"
    for r in read_meta(out):
        n, w = len(r["label"]), int(r["width"])
        with Image.open(out / "images" / r["filename"]) as gif:
            assert gif.is_animated and gif.n_frames == n  # one frame per character
            assert gif.info.get("loop") == 0 and gif.info.get("duration") == 100
        frames = gif_frames(out / "images" / r["filename"])
        fused = np.min(np.stack(frames), axis=0)
        for j in range(n):
            assert dark(fused, j, n, w) >= 8, (r["filename"], r["label"], j)
        hidden = [(0, 0)] + [(i, n + 1 - i) for i in range(2, n)]
        for i, j in hidden:
            assert dark(frames[i], j, n, w) <= dark(fused, j, n, w) / 2, (r["filename"], r["label"], i, j)


def test_seeded_run_is_byte_reproducible_across_threads(classes, tmp_path):
    digests = []
    for threads in ("1", "2"):
        out = tmp_path / f"t{threads}"
        run(classes, "smart", str(out), "25", "--seed", "42", "--threads", threads)
        files = sorted(p for p in out.rglob("*") if p.is_file())
        digests.append({str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    assert len(digests[0]) == 25 + 2 and digests[0] == digests[1]
    types = Counter(r["type"] for r in read_meta(tmp_path / "t1"))
    assert types == dict.fromkeys(TYPES, 5)  # defaultMix: equal weights


def test_bad_type_fails_with_a_message(classes, tmp_path):
    done = run(classes, "gen", "dots", str(tmp_path / "x"), "2", check=False)
    assert done.returncode == 2
    assert "unknown type 'dots'" in done.stderr and "line, circle, shear, gif, math" in done.stderr
    done = run(classes, "gen", "line", str(tmp_path / "y"), "2", "--sizes", "10x5", check=False)
    assert done.returncode == 2 and "bad size '10x5'" in done.stderr
