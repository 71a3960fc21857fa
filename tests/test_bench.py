"""`make bench`: the document writer keeps hand-written text, and a QUICK run produces every stage's table."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import quantize_dynamic_int8
from bench.run_all import BEGIN, END, write_document
from helpers import ROOT

HAND_WRITTEN = """# Benchmarks

Intro paragraph, written by hand.

## GIF frame fusion

| fusion | all |
|---|---:|
| min | 78.8% |
"""


def test_writer_inserts_markers_after_the_intro_and_keeps_the_rest(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(HAND_WRITTEN, encoding="utf-8")
    write_document(doc, "## generated\n\nfirst run")
    text = doc.read_text(encoding="utf-8")
    assert text.index("Intro paragraph") < text.index(BEGIN) < text.index("first run") < text.index(END)
    assert text.index(END) < text.index("## GIF frame fusion")
    assert text.replace(f"{BEGIN}\n## generated\n\nfirst run\n{END}\n\n", "") == HAND_WRITTEN


def test_writer_replaces_only_the_generated_block(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(HAND_WRITTEN, encoding="utf-8")
    write_document(doc, "first run")
    with doc.open("a", encoding="utf-8") as f:
        f.write("\n## Added by hand later\n\nkept\n")
    expected_outside = doc.read_text(encoding="utf-8").replace("first run", "second run")
    write_document(doc, "second run")
    text = doc.read_text(encoding="utf-8")
    assert "first run" not in text and text.count(BEGIN) == 1 and text.count(END) == 1
    assert text == expected_outside
    assert text.endswith("## Added by hand later\n\nkept\n")


def test_writer_creates_a_missing_document(tmp_path):
    doc = tmp_path / "reports" / "b.md"
    write_document(doc, "block")
    assert doc.read_text(encoding="utf-8") == f"# Benchmarks\n\n{BEGIN}\nblock\n{END}\n"


def test_dynamic_quantization_never_writes_into_the_model_folder(sharp_models, tmp_path, monkeypatch):
    # onnxruntime writes a "-inferred" file beside the model it quantizes and deletes it afterwards; the benchmark
    # must not do that in checkpoints/ (read-only installs, a server listing the folder at the same time). Root
    # ignores file modes, so the writes are recorded instead of forbidden.
    import onnx

    folder = tmp_path / "shipped"
    folder.mkdir()
    shutil.copy(sharp_models["vanilla_crnn"] / "model.onnx", folder / "model.onnx")
    written = []
    infer = onnx.shape_inference.infer_shapes_path

    def recording(model_path, output_path="", *args, **kwargs):
        written.append(Path(output_path or model_path).resolve())
        return infer(model_path, output_path, *args, **kwargs)

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes_path", recording)
    out = quantize_dynamic_int8(folder / "model.onnx", tmp_path / "int8.onnx")
    assert written, "onnxruntime no longer runs shape inference through a file: this test checks nothing"
    assert all(path.parent != folder.resolve() for path in written), written
    assert out.is_file() and out.stat().st_size < (folder / "model.onnx").stat().st_size
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx", "shipped"]


# One header row per table each stage writes (the generators stage may be skipped where there is no JDK).
TABLES = {
    "### Summary": ["| figure | this run | target | status |"],
    "### Inference": ["| model | input HxWxC | backend | p50 ms | p90 ms | batch-64 img/s |", "| reader | p50 ms |"],
    "### The limit": ["| operator | MFLOP |", "| model: backend | p50 ms | achieved GFLOP/s |"],
    "### Service": ["| workers | concurrency | requests | req/s | p50 ms | p99 ms | errors |"],
    "### Training": ["| model | input HxWxC | batch | loader workers |", "| width |", "| batch |"],
    "### Data generation": ["| family | threads | images per run |"],
    "### Merge": ["| images | wall time | images/s |"],
}


@pytest.mark.slow
def test_quick_bench_writes_every_table(tmp_path):
    out = tmp_path / "b.md"
    command = [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--out", str(out)]
    # About 3 minutes on an AVX2-only 2-core EPYC (the six stages' own limit is 150 s each); the limit only stops a hang.
    done = subprocess.run(
        [*command, "--json-dir", str(tmp_path / "json"), "--results", str(tmp_path / "results.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "Stage failed" not in text
    # the speed section goes to the given results file, and the documents are rendered as copies beside it
    speed = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["speed"]
    assert speed["quick"] and speed["models"][speed["default_model"]]["bytes_p50_ms"] > 0
    assert "results:speed begin" in (tmp_path / "preview" / "README.md").read_text(encoding="utf-8")
    sections = text.split("\n### ")
    for heading, header_rows in TABLES.items():
        section = next((s for s in sections if ("### " + s).startswith(heading)), None)
        assert section is not None, f"no section {heading!r}"
        if heading == "### Data generation" and "**Skipped**" in section:
            continue
        for row in header_rows:
            assert row in section, f"{heading}: no table starting {row!r}"


def test_label_efficiency_table_and_pseudo_label_check(tmp_path, monkeypatch):
    """bench/label_efficiency.py: cells not run say so, and the pseudo-label check counts against the pool's
    true labels, ignoring files that are not pseudo-labels."""
    from bench import label_efficiency as le
    from models.charset import write_labels

    pool = tmp_path / "pool" / "unlabelled" / "wheezy"
    pool.mkdir(parents=True)
    (pool / "labels.tsv").write_text("filename\tlabel\n1.jpg\tAB12\n2.jpg\tCD34\n3.jpg\tEF56\n", encoding="utf-8")
    work = tmp_path / "runs" / "finetune" / "le-wheezy-200" / "train1"
    work.mkdir(parents=True)
    write_labels(work / "labels.txt", [(str(tmp_path / "own.png"), "ZZ99"), (str((pool / "1.jpg").resolve()), "AB12"),
                                       (str((pool / "2.jpg").resolve()), "CD35")])  # fmt: skip
    monkeypatch.setattr(le, "POOL", tmp_path / "pool")
    monkeypatch.setattr(le, "ROOT", tmp_path)
    measured = le.pseudo_label_precision("wheezy", 200)
    assert measured == [{"round": 1, "kept": 2, "precision": 0.5, "precision_nocase": 0.5}]
    cell = {"labels_only": {"em": 0.5, "em_nocase": 0.6, "minutes": 1.0},
            "with_unlabelled": {"em": 0.7, "em_nocase": 0.8, "minutes": 2.0, "pseudo_labels": measured}}  # fmt: skip
    text = le.table({"cells": {"wheezy/200": cell}})
    assert "| wheezy | 200 | 60.0% | 50.0% | 1.0 | 80.0% | 70.0% | 2.0 | 2 / 50% |" in text
    assert "| imagecaptcha | 50 | not run |" in text
    target = {"em": 0.9, "em_nocase": 0.94, "minutes": 14.2, "budget_minutes": 15.0}
    text = le.targets_table({"targets": {"wheezy/500 alone": target}})
    assert "| wheezy | 500 alone | 93% | 94.0% | 90.0% | 14.2 of 15 | yes |" in text
    assert "| wheezy | 200 + 5,000 unlabelled | 95% | not run |" in text
