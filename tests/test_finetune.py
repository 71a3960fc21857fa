"""tools/finetune.py and models/finetune.py: every bad input refused before anything is written, the plan, the
pseudo-label threshold, and one small end-to-end run whose model the API serves."""

from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from helpers import ROOT
from models.finetune import (
    MIN_LABELS,
    FinetuneError,
    check_name,
    confidence_threshold,
    plan_for,
    read_labelled,
)
from tools.tiny_dataset import make_dataset


def test_each_layout_is_read(tmp_path):
    txt = make_dataset(tmp_path / "txt", 24, seed=1)
    named = tmp_path / "named"
    named.mkdir()
    for line in (txt / "labels.txt").read_text(encoding="utf-8").splitlines():
        name, label = line.split("\t")
        if not label.isalnum():  # arithmetic labels hold characters a file name cannot always carry
            continue
        Image.open(txt / "images" / name).convert("RGB").save(named / f"{label}_{name.split('.')[0]}.png")
    tsv = tmp_path / "tsv"
    tsv.mkdir()
    rows = ["filename\tlabel\tconfig\tflags"]
    for line in (txt / "labels.txt").read_text(encoding="utf-8").splitlines():
        name, label = line.split("\t")
        (tsv / name).write_bytes((txt / "images" / name).read_bytes())
        rows.append(f"{name}\t{label}\tx\t")
    (tsv / "labels.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert len(read_labelled(txt, 20)) == 24
    assert len(read_labelled(tsv, 20)) == 24
    assert 0 < len(read_labelled(named, 20)) <= 24


def test_no_labels_too_few_bad_characters_and_broken_images_are_refused(tmp_path):
    with pytest.raises(FinetuneError, match="no such folder"):
        read_labelled(tmp_path / "absent", 20)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FinetuneError, match="no labels.txt"):
        read_labelled(tmp_path / "empty", 20)
    few = make_dataset(tmp_path / "few", MIN_LABELS - 5, seed=2)
    with pytest.raises(FinetuneError, match=f"{MIN_LABELS - 5} labelled images; fine-tuning needs at least"):
        read_labelled(few, 20)
    data = make_dataset(tmp_path / "bad", 30, seed=3)
    lines = (data / "labels.txt").read_text(encoding="utf-8").splitlines()
    lines[0] = lines[0].split("\t")[0] + "\tab\x07c"
    (data / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(FinetuneError, match="control characters"):
        read_labelled(data, 20)
    data = make_dataset(tmp_path / "broken", 30, seed=4)
    first = (data / "labels.txt").read_text(encoding="utf-8").split("\t")[0]
    (data / "images" / first).write_bytes(b"not an image")
    with pytest.raises(FinetuneError, match=first):
        read_labelled(data, 20)


def test_a_taken_or_odd_name_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(FinetuneError, match="already exists"):
        check_name("mine", tmp_path)
    with pytest.raises(FinetuneError, match="letters, digits"):
        check_name("../escape", tmp_path)
    assert check_name("site-2", tmp_path) == tmp_path / "site-2"


def test_the_plan_holds_out_validation_and_scales_with_the_data(tmp_path):
    samples = read_labelled(make_dataset(tmp_path / "d", 100, seed=5), 20)
    plan = plan_for(samples)
    assert len(plan.validation) == 15 and len(plan.train) == 85
    assert not {s.path for s in plan.train} & {s.path for s in plan.validation}
    assert plan.epochs == 60 and plan.aug
    assert plan_for(samples * 50).epochs < plan.epochs


def test_the_threshold_keeps_pseudo_labels_at_least_99_percent_right():
    confidences = [0.99] * 99 + [0.98] + [0.5] * 10
    correct = [True] * 99 + [True] + [False] * 10
    assert confidence_threshold(confidences, correct) == 0.98
    assert confidence_threshold([0.9, 0.8], [False, True]) is None
    confidences = [0.99] * 200 + [0.9] * 10
    correct = [True] * 200 + [False] * 10
    assert confidence_threshold(confidences, correct) == 0.99


def test_cli_refuses_a_name_that_exists_and_writes_nothing(tmp_path):
    data = make_dataset(tmp_path / "d", 30, seed=6)
    out = subprocess.run([sys.executable, "tools/finetune.py", "--data", str(data), "--name", "vanilla_crnn"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "already exists" in out.stderr
    assert not list((ROOT / "checkpoints").glob(".*partial"))
