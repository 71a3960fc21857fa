"""bench/zero_shot.py: the zero-shot sets are drawn repeatably in the realdev layout and scored into a table."""

from __future__ import annotations

import json
import secrets
import string
from pathlib import Path

import pytest
from PIL import Image

from bench import zero_shot
from helpers import ROOT, make_sharp_model
from models.charset import read_labels
from models.dataset import read_folder
from models.report import Scored

pytest.importorskip("captcha.image")
pytest.importorskip("wheezy.captcha.image")

SIZES = {"imagecaptcha": (160, 60), "wheezy": (200, 75)}
ALPHABETS = {"imagecaptcha": string.digits + string.ascii_letters, "wheezy": string.ascii_uppercase + string.digits}


def make(out: Path, n: int, seed: int) -> Path:
    assert zero_shot.main(["make", "--out", str(out), "--n", str(n), "--seed", str(seed)]) == 0
    return out


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory) -> Path:
    return make(tmp_path_factory.mktemp("zero_shot"), 8, 3)


@pytest.mark.parametrize("name", zero_shot.SETS)
def test_make_writes_readable_images_and_consistent_labels(small_sets, name):
    folder = small_sets / name
    assert read_labels(folder / "labels.tsv").rows[0].extra.keys() == set(zero_shot.HEADER[2:])
    samples, report = read_folder(folder, source=name)
    assert len(samples) == 8 and not report.bad_lines and not report.missing_files
    for sample in samples:
        with Image.open(sample.path) as image:
            assert image.size == SIZES[name]
        assert len(sample.label) in (4, 5) and set(sample.label) <= set(ALPHABETS[name])
        assert sample.type == f"{name}_{len(sample.label)}" and sample.answer is None
        assert set(filter(None, sample.flags.split(","))) <= {"edge_clip", "v_clip"}
        if name == "wheezy":  # random.sample, as in the README: no character twice
            assert len(set(sample.label)) == len(sample.label)


def test_same_seed_gives_the_same_labels_and_images(small_sets, tmp_path):
    import captcha.image

    again = make(tmp_path / "again", 4, 3)
    other = make(tmp_path / "other", 4, 4)
    assert captcha.image.secrets is secrets  # the seeded stand-in is gone once the sets are drawn
    for name in zero_shot.SETS:
        first = read_labels(small_sets / name / "labels.tsv").rows[:4]
        assert [(r.filename, r.label) for r in read_labels(again / name / "labels.tsv").rows] == [
            (r.filename, r.label) for r in first
        ]
        for row in first:  # the first images of a larger set are those of a smaller one, byte for byte
            assert (again / name / row.filename).read_bytes() == (small_sets / name / row.filename).read_bytes()
        assert [r.label for r in read_labels(other / name / "labels.tsv").rows] != [r.label for r in first]


def test_bad_input_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        zero_shot.main(["make", "--out", str(tmp_path), "--n", "0"])
    assert "at least 1" in capsys.readouterr().err
    assert zero_shot.main(["score", "--sets", str(tmp_path), "--no-ddddocr"]) == 2
    assert "no zero-shot set" in capsys.readouterr().err


def scored(names: list[str], labels: list[str], preds: list[str], flags: str = "") -> list[Scored]:
    return [Scored(f, label, pred, 1.0, "wheezy", f"wheezy_{len(label)}", None, flags)
            for f, label, pred in zip(names, labels, preds, strict=True)]  # fmt: skip


def test_summary_keeps_the_better_ddddocr_model_and_splits_by_type():
    names, labels = ["a", "b", "c"], ["ABCD", "EFGH", "IJKLM"]
    ours = scored(names, labels, ["ABCD", "efgh", "X"])
    ours[2].flags = "edge_clip"
    theirs = {"default": scored(names, labels, ["", "efgh", ""]), "beta": scored(names, labels, ["ABCD", "", "IJKLM"])}
    assert zero_shot.set_summary(ours, theirs)["ddddocr_model"] == {"em": "beta", "em_nocase": "beta"}
    theirs["default"] = scored(names, labels, ["abcd", "efgh", "ijklm"])  # reads all, never in the right case
    summary = zero_shot.set_summary(ours, theirs)
    assert summary["ddddocr_model"] == {"em": "beta", "em_nocase": "default"}
    groups = summary["groups"]
    assert list(groups) == ["all", "wheezy_4", "wheezy_5", "without edge_clip"]
    assert groups["all"]["n"] == 3 and groups["all"]["ours"] == pytest.approx({"em": 1 / 3, "em_nocase": 2 / 3})
    assert groups["all"]["ddddocr"] == pytest.approx({"em": 2 / 3, "em_nocase": 1.0})
    assert groups["wheezy_5"]["ddddocr"] == {"em": 1.0, "em_nocase": 1.0} and groups["without edge_clip"]["n"] == 2
    assert summary["ddddocr_models"]["default"] == {"em": 0.0, "em_nocase": 1.0}


def test_score_prints_the_table_and_writes_the_section(small_sets, tmp_path, capsys):
    shipped = ROOT / "checkpoints" / "default"
    model = shipped if shipped.is_file() else make_sharp_model("vanilla_crnn", tmp_path / "model")
    results = tmp_path / "results.json"
    argv = ["score", "--sets", str(small_sets), "--model", str(model), "--no-ddddocr", "--results", str(results)]
    assert zero_shot.main(argv) == 0
    out = capsys.readouterr().out
    assert "### imagecaptcha" in out and "### wheezy" in out and "| ours EM | ours EM (no case) |" in out
    assert "| all | 8 |" in out and "logical CPUs" in out
    section = json.loads(results.read_text(encoding="utf-8"))["zero_shot"]
    assert section["machine"]["cores"] and section["ddddocr_version"] is None
    for name in zero_shot.SETS:
        groups = section["sets"][name]["groups"]
        assert groups["all"]["n"] == 8 and "ddddocr" not in groups["all"]
        assert sum(g["n"] for k, g in groups.items() if k.startswith(name)) == 8
        assert 0.0 <= groups["all"]["ours"]["em"] <= groups["all"]["ours"]["em_nocase"] <= 1.0
