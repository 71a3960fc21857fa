"""Helpers shared by the bench scripts: timing, summaries, output files, sample folders, dynamic int8 quantization.

Not a script. It needs numpy and the project's ``models`` package, never torch.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.paths import REALDEV, TEST_SPLIT
from models.report import REALDEV_FAMILIES

# ---- timing and summaries


def time_calls(fn: Callable[[], object], calls: int, warmup: int = 0) -> list[float]:
    """Milliseconds of ``calls`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def summary(values: Iterable[float]) -> dict[str, float]:
    """Median, min, max and count of repeated measurements (the spread is min-max)."""
    values = [float(v) for v in values]
    if not values:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt_summary(s: dict | None, digits: int = 1, unit: str = "") -> str:
    """``12.3 (11.9-13.0)``: the median and, when there are several repeats, the min-max spread."""
    if not s or s.get("n", 0) == 0:
        return "-"
    median = f"{s['median']:,.{digits}f}{unit}"
    return median if s["n"] < 2 else f"{median} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


def write_json(path: str | Path | None, data: object) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")


def publish(result: dict, text: str, json_path: Path | None, markdown_path: Path | None) -> None:
    """The end of a bench script: ``result`` to ``--json``, its rendered ``text`` to ``--markdown`` and stdout."""
    write_json(json_path, result)
    if markdown_path:
        markdown_path.write_text(text, encoding="utf-8")
    print(text)


# ---- labelled images


@dataclass
class LabelledImage:
    path: Path
    label: str  # in the project's label convention (models.charset.normalize_label)
    group: str  # realdev family, or "test"
    type: str = ""


def realdev_images(families: Sequence[str] = REALDEV_FAMILIES, limit: int = 0) -> list[LabelledImage]:
    """Rows of ``../shared/realdev/<family>/labels.tsv``; with ``limit``, an evenly spaced subset of each family
    (``limit`` images in all, spread over the families in proportion to their size)."""
    from models.charset import normalize_label, read_labels

    per_family = {}
    for family in families:
        labels = REALDEV / family / "labels.tsv"
        if labels.is_file():
            per_family[family] = [
                LabelledImage(
                    REALDEV / family / row.filename, normalize_label(row.label), family, row.extra.get("type", "")
                )
                for row in read_labels(labels).rows
            ]
    total = sum(len(rows) for rows in per_family.values())
    out = []
    for rows in per_family.values():
        if limit and total > limit:
            rows = spaced(rows, max(1, round(limit * len(rows) / total)))
        out += rows
    return out


def test_images(limit: int = 0, scratch: Path | None = None) -> tuple[list[LabelledImage], str]:
    """The sample for accuracy comparisons and its description: ``dataset/test`` (``labels.txt``, images in
    ``images/`` or beside it) when it exists, else realdev, else (with ``scratch``) captchas drawn by
    tools/tiny_dataset.py into ``scratch``."""
    from models.charset import normalize_label, read_labels

    labels = next((TEST_SPLIT / name for name in ("labels.txt", "labels.tsv") if (TEST_SPLIT / name).is_file()), None)
    if labels is None:
        rows = realdev_images(limit=limit)
        if rows or scratch is None:
            return rows, f"../shared/realdev ({len(rows)} images; dataset/test does not exist)"
        from tools.tiny_dataset import make_dataset

        labels = make_dataset(scratch / "fixture_test", limit or 64, seed=1) / "labels.txt"
        rows = [
            LabelledImage(labels.parent / "images" / r.filename, r.label, "fixture") for r in read_labels(labels).rows
        ]
        return rows, f"{len(rows)} captchas drawn by tools/tiny_dataset.py (no dataset/test, no ../shared/realdev)"
    image_dir = TEST_SPLIT / "images" if (TEST_SPLIT / "images").is_dir() else TEST_SPLIT
    every = [LabelledImage(image_dir / r.filename, normalize_label(r.label), "test") for r in read_labels(labels).rows]
    every = [row for row in every if row.path.is_file()]
    rows = spaced(every, limit) if limit else every
    return rows, f"dataset/test ({len(rows)} of {len(every)} images, evenly spaced)"


def folder_logits(engine, folder: Path, batch: int = 64) -> tuple[np.ndarray, list]:
    """Logits ``(N, T, C)`` of the readable images of a labelled folder and their samples (models.dataset.Sample,
    source = the folder's name where it has none); unreadable images are printed to stderr."""
    import sys

    from models.dataset import read_folder
    from models.evaluation import prepared_batches

    samples, _ = read_folder(folder, source=folder.name)
    chunks, kept, errors = [], [], []
    for chunk, inputs in prepared_batches(samples, engine.spec, batch, errors):
        chunks.append(engine.logits(inputs))
        kept += chunk
    for line in errors:
        print(f"skipped {line}", file=sys.stderr)
    return np.concatenate(chunks), kept


def spaced(rows: list, n: int) -> list:
    """``n`` evenly spaced items of ``rows`` (all of them when there are fewer)."""
    if n >= len(rows):
        return list(rows)
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n)]


def open_ddddocr():
    """A ddddocr reader (ImportError when it is not installed), quiet where the version allows."""
    import ddddocr

    try:
        return ddddocr.DdddOcr(show_ad=False)
    except TypeError:  # versions before show_ad existed
        return ddddocr.DdddOcr()


def fused_png(path: Path) -> bytes:
    """The image as the project reads it (GIF frames fused by per-pixel minimum), re-encoded as PNG bytes."""
    import io

    from models.preprocess import load_image

    buf = io.BytesIO()
    load_image(path).save(buf, format="PNG")
    return buf.getvalue()


# ---- onnx models


def is_quantized(onnx_path: str | Path) -> bool:
    """Whether an ONNX graph already holds quantized operators (static QDQ or dynamic)."""
    import onnx

    quantized_ops = {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "ConvInteger",
        "MatMulInteger",
        "QLinearConv",
        "QLinearMatMul",
        "DynamicQuantizeLSTM",
    }
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(node.op_type in quantized_ops for node in graph.node)


def quantize_dynamic_int8(src: str | Path, dst: str | Path, op_types: Sequence[str] | None = None) -> Path:
    """onnxruntime *dynamic* quantization (int8 weights, activation ranges computed at run time); returns ``dst``.

    Not the shipped int8 model, which tools/quantize.py makes by static QDQ quantization with calibrated
    activation ranges: the bench uses this one to compare backends without calibration data. Raises if the
    captcha-ocr metadata (``metadata_props``) did not survive, since the serving code needs it."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from models.engine import read_onnx_meta

    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic warns about pre-processing on every call
    # onnxruntime writes "<model>-inferred.onnx" beside its input while it quantizes: work on a copy beside dst, so
    # that a read-only or shared checkpoints folder is never written to.
    dst = Path(dst)
    source_copy = dst.with_name(dst.stem + ".source.onnx")
    shutil.copyfile(src, source_copy)
    try:
        quantize_dynamic(
            str(source_copy), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types or [])
        )
    finally:
        source_copy.unlink(missing_ok=True)
    read_onnx_meta(dst)  # raises ValueError when the metadata was lost
    return Path(dst)
