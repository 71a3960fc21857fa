"""tools/quantize.py: static int8 models open like any other, keep the metadata, read like fp32, and a drop
beyond --max-drop writes nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helpers import REALDEV, ROOT, int8_weight_extremes, realdev_rows
from models.engine import OnnxEngine, discover_models, read_onnx_meta
from tools.tiny_dataset import make_dataset

SHIPPED = ROOT / "checkpoints" / "vanilla_crnn"


def quantize(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "tools" / "quantize.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("calib"), 48, seed=3, gif_every=0)


@pytest.mark.skipif(not (SHIPPED / "model.onnx").is_file(), reason="no shipped vanilla_crnn")
def test_int8_reads_like_fp32_and_keeps_metadata(tmp_path, calib):
    out = tmp_path / "checkpoints" / "vanilla_crnn_int8"
    done = quantize("--model", str(SHIPPED), "--calib", str(calib), "--out", str(out), "--samples", "48")
    assert done.returncode == 0, done.stderr
    meta = read_onnx_meta(out / "model.onnx")
    source = read_onnx_meta(SHIPPED / "model.onnx")
    assert (meta.arch, meta.charset, meta.spec) == (source.arch, source.charset, source.spec)
    assert meta.metrics["quantization"]["method"].startswith("static QDQ int8")
    low, high = int8_weight_extremes(out / "model.onnx")
    assert low >= -64 and high <= 64, "weights must be 7-bit, or AVX2-only CPUs saturate (tools/quantize.py)"
    assert (out / "model.onnx").stat().st_size < 0.6 * (SHIPPED / "model.onnx").stat().st_size
    # an int8-only folder is an ONNX model, not a torch one
    assert "vanilla_crnn_int8" in discover_models(out.parent)
    assert "vanilla_crnn_int8" not in discover_models(out.parent, backend="torch")

    rows = realdev_rows("ruoyi")[:40] + (realdev_rows("easy")[:40] if (REALDEV / "easy").is_dir() else [])
    fp32, int8 = OnnxEngine(SHIPPED / "model.onnx"), OnnxEngine(out / "model.onnx")
    paths = [path for path, _ in rows]
    same = sum(a.text == b.text for a, b in zip(fp32.predict(paths), int8.predict(paths), strict=True))
    assert same >= 0.95 * len(rows)


@pytest.mark.skipif(not (SHIPPED / "model.onnx").is_file(), reason="no shipped vanilla_crnn")
def test_drop_beyond_limit_writes_nothing(tmp_path, calib):
    out = tmp_path / "q"
    # a negative allowance cannot be met unless int8 beats fp32 by a point: the tool must refuse and write nothing
    done = quantize(
        "--model", str(SHIPPED / "model.onnx"), "--calib", str(calib), "--out", str(out),
        "--samples", "16", "--check", str(calib), "--max-drop", "-100",
    )  # fmt: skip
    assert done.returncode == 1
    assert "not written" in done.stdout and not out.exists()


def test_missing_model_is_a_clear_error(tmp_path, calib):
    done = quantize("--model", str(tmp_path / "nope"), "--calib", str(calib), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "no model file" in done.stderr


@pytest.mark.skipif(not (ROOT / "checkpoints" / "vanilla_crnn_int8").is_dir(), reason="no shipped int8 model")
def test_full_range_int8_warns_on_a_cpu_without_vnni(tmp_path, monkeypatch):
    import json

    import onnx

    import models.engine as engine
    from models.meta import ONNX_META_KEY

    proto = onnx.load(str(ROOT / "checkpoints" / "vanilla_crnn_int8" / "model.onnx"))
    entry = next(e for e in proto.metadata_props if e.key == ONNX_META_KEY)
    record = json.loads(entry.value)
    record["metrics"]["quantization"]["method"] = "static QDQ int8, per-channel weights"  # as quantized before 7-bit
    entry.value = json.dumps(record)
    old = tmp_path / "model.onnx"
    onnx.save(proto, str(old))

    monkeypatch.setattr(engine, "x86_cpu_flags", lambda: {"sse4_2", "avx2", "fma"})
    with pytest.warns(RuntimeWarning, match="without VNNI"):
        engine.OnnxEngine(old)
    assert not engine.saturates_here(engine.OnnxEngine(ROOT / "checkpoints" / "vanilla_crnn_int8" / "model.onnx").meta)
    monkeypatch.setattr(engine, "x86_cpu_flags", lambda: {"avx2", "avx512_vnni"})
    assert not engine.saturates_here(engine.OnnxEngine(old).meta)
    monkeypatch.setattr(engine, "x86_cpu_flags", set)  # ARM: no x86 flags, no saturating kernel
    assert not engine.saturates_here(engine.OnnxEngine(old).meta)
