"""infer.py and tools/evaluate.py on fixtures: PNG, GIF and arithmetic captchas, bad files, reports."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REALDEV, ROOT
from models.arith import solve
from tools.tiny_dataset import make_dataset


def run(args: list[str], expect: int = 0) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert out.returncode == expect, out.stdout[-2000:] + out.stderr[-2000:]
    return out


def add_broken_image(root: Path) -> Path:
    """Label one more image of ``root`` that no decoder reads (a PNG signature, then garbage): broken.png."""
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with open(root / "labels.txt", "a", encoding="utf-8") as f:
        f.write("broken.png\tABCD\n")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return add_broken_image(make_dataset(tmp_path_factory.mktemp("fx") / "set", 20, seed=3))


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_infer_jsonl_reads_png_gif_and_reports_bad_files(sharp_models, folder, backend):
    out = run(["infer.py", "--model", str(sharp_models["vanilla_crnn"]), "--backend", backend, "--jsonl",
               str(folder / "images")], expect=1)  # fmt: skip
    records = [json.loads(line) for line in out.stdout.splitlines()]
    files = {Path(r["file"]).name for r in records}
    assert len(records) == 20 and "00002.gif" in files and "broken.png" not in files
    for r in records:
        assert set(r) == {"file", "text", "answer", "confidence", "model", "arch"} and r["model"] == r["arch"]
        assert r["arch"] == "vanilla_crnn" and 0.0 <= r["confidence"] <= 1.0
        assert r["answer"] == solve(r["text"])
    assert "broken.png" in out.stderr and "not a readable image" in out.stderr


def test_infer_text_output_and_answer(sharp_models, monkeypatch, capsys):
    """The plain output shows '= answer' for arithmetic texts (engine forced to read one)."""
    import infer
    from models.engine import Prediction

    real_gif = sorted((REALDEV / "easy_gif").glob("*.gif"))[:1] if REALDEV.is_dir() else []
    image = real_gif[0] if real_gif else next((ROOT / "tests").glob("*.py"))
    monkeypatch.setattr(sys, "argv", ["infer.py", "--model", str(sharp_models["svtr_tiny"]), str(image)])
    monkeypatch.setattr(
        "models.engine.Engine.predict_arrays", lambda self, batch, allowed=None: [Prediction("3*8=?", 24, 0.9)]
    )
    code = infer.main()
    out = capsys.readouterr()
    if real_gif:
        assert code == 0 and "3*8=? = 24\t0.900" in out.out
    else:
        assert code == 1


def test_infer_missing_model_is_clear(tmp_path):
    out = run(["infer.py", "--model", str(tmp_path / "nothing.onnx"), str(tmp_path)], expect=2)
    assert "no model file" in out.stderr


def test_infer_allowed_restricts_output(sharp_models, folder):
    out = run(["infer.py", "--model", str(sharp_models["crnn_resnet34"]), "--jsonl", "--allowed", "digits",
               str(folder / "images" / "00000.png"), str(folder / "images" / "00002.gif")])  # fmt: skip
    for record in map(json.loads, out.stdout.splitlines()):
        assert set(record["text"]) <= set("0123456789")


def test_evaluate_writes_tables(sharp_models, folder, tmp_path):
    out = run(["tools/evaluate.py", "--model", str(sharp_models["vanilla_crnn"]), "--out", str(tmp_path),
               "--name", "fx", str(folder)])  # fmt: skip
    assert "| all | 20 |" in out.stdout  # the broken image is reported, not scored
    assert "broken.png" in out.stderr
    for suffix in ("md", "csv", "png"):
        assert (tmp_path / f"fx.{suffix}").is_file()
    with open(tmp_path / "fx.csv", encoding="utf-8") as f:
        groups = {row["group"]: row for row in csv.DictReader(f)}
    assert {"all", "fixture", "fixture/text", "fixture/arith", "fixture/gif"} <= set(groups)
    assert groups["fixture/arith"]["answer_acc"] != "" and groups["fixture/text"]["answer_acc"] == ""


def test_evaluate_realdev_layout(sharp_models):
    if not (REALDEV / "ruoyi" / "labels.tsv").is_file():
        pytest.skip("realdev not present")
    out = run(["tools/evaluate.py", "--model", str(sharp_models["svtr_tiny"]), str(REALDEV / "ruoyi"),
               str(REALDEV / "ctext"), "--exclude-flag", "edge_clip"])  # fmt: skip
    assert "| ruoyi/ruoyi_math | 200 |" in out.stdout
    assert "| ctext | " in out.stdout and "| ctext | 400 |" not in out.stdout  # edge_clip rows left out


def test_case_prior_bench_prints_a_row_per_folder_and_skips_broken_images(sharp_models, folder):
    out = run(["bench/case_prior.py", "--model", str(sharp_models["vanilla_crnn"]), "--priors", "0,0.2", str(folder)])
    row = next(line for line in out.stdout.splitlines() if line.startswith(f"| {folder} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "20" and cells[2].endswith("%") and "(+" in cells[3]  # 20 readable, counts against prior 0
    assert "broken.png" in out.stderr


def test_infer_case_prior_flag_is_validated(sharp_models, folder):
    image = str(folder / "images" / "00000.png")
    for prior in ("0", "0.5"):
        out = run(["infer.py", "--model", str(sharp_models["vanilla_crnn"]), "--jsonl", "--case-prior", prior, image])
        assert json.loads(out.stdout)["file"] == image
    for bad in ("x", "1.5"):
        out = run(["infer.py", "--model", str(sharp_models["vanilla_crnn"]), "--case-prior", bad, image], expect=2)
        assert "--case-prior" in out.stderr and "[0, 1)" in out.stderr


def test_expression_repair_bench_fixes_hutool_math_and_breaks_nothing():
    if not (REALDEV / "hutool").is_dir():
        pytest.skip("../shared/realdev/hutool not found")
    out = run(["bench/expression_repair.py", "--model", str(ROOT / "checkpoints" / "vanilla_crnn_duo_int8"),
               str(REALDEV / "hutool")])  # fmt: skip
    row = next(line for line in out.stdout.splitlines() if "| hutool/math |" in line)
    fixed, broken = (int(n) for n in row.split("(+")[1].split(")")[0].split(" / -"))
    assert fixed >= 1 and broken == 0  # 9-37= read as 937= gets its answer back
    assert "without an answer: 0 (" in out.stdout  # line, circle, shear and GIF readings untouched
