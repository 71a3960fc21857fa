"""The models shipped in checkpoints/: complete, within the size budget, and reading real captchas.

The accuracy check runs the default model (``checkpoints/default``) on a fixed sample of ``../shared/realdev``
(every second row of each family; skipped where the folder is absent). "Read" means the answer for arithmetic
captchas and exact match ignoring case for the rest; ctext rows flagged ``edge_clip`` are left out, because
Kaptcha's centring pushed part of their text off the image.
"""

from __future__ import annotations

import pytest

from conftest import REALDEV, ROOT
from models.engine import default_model_name, discover_models, load_engine, read_onnx_meta
from models.report import reads_correctly

CHECKPOINTS = ROOT / "checkpoints"
ARCHS = ("vanilla_crnn", "crnn_resnet34", "svtr_tiny")
MiB = 2**20
# Issue 6 asks for 0.90. The shipped default reads 95.4% of this sample (582 of 610: easy 98.0%, easy_gif 97.5%,
# ctext 87.6% ignoring case, ruoyi 100%).
DEFAULT_READ_FLOOR = 0.90

shipped = discover_models(CHECKPOINTS)
pytestmark = pytest.mark.skipif(not shipped, reason="no models shipped in checkpoints/")


def test_three_architectures_ship_with_torch_and_onnx_files():
    for arch in ARCHS:
        folder = CHECKPOINTS / arch
        assert (folder / "best.pt").is_file() and (folder / "model.onnx").is_file(), f"{arch} is not shipped"
        meta = read_onnx_meta(folder / "model.onnx")
        assert meta.arch == arch and meta.charset and "selection" in meta.metrics


def test_sizes_within_budget():
    files = [p for p in CHECKPOINTS.rglob("*") if p.is_file() and p.name != "last.pt"]
    for path in files:
        assert path.stat().st_size <= 50 * MiB, f"{path} is over 50 MB"
    assert sum(p.stat().st_size for p in files) <= 120 * MiB


def test_default_is_shipped_and_openable_without_torch_files():
    name = default_model_name(CHECKPOINTS)
    assert name in shipped
    engine = load_engine(CHECKPOINTS / name)
    assert engine.meta.arch in ARCHS


@pytest.mark.skipif(not REALDEV.is_dir(), reason="../shared/realdev not present")
def test_default_model_reads_real_captchas():
    from models.dataset import read_folder

    engine = load_engine(CHECKPOINTS / default_model_name(CHECKPOINTS))
    results: dict[str, list[bool]] = {}
    for family in ("easy", "easy_gif", "ctext", "ruoyi"):
        if not (REALDEV / family).is_dir():
            continue
        samples, _ = read_folder(REALDEV / family)
        samples = [s for s in samples[::2] if "edge_clip" not in s.flags.split(",")]
        preds = engine.predict([s.path for s in samples])
        results[family] = [reads_correctly(p.text, s.label, s.answer) for p, s in zip(preds, samples, strict=True)]
    every = [ok for oks in results.values() for ok in oks]
    assert len(every) >= 300
    per_family = {k: f"{100 * sum(v) / len(v):.1f}%" for k, v in results.items()}
    assert sum(every) / len(every) >= DEFAULT_READ_FLOOR, per_family
    if "ruoyi" in results:  # arithmetic captchas are solved, not only read
        assert sum(results["ruoyi"]) / len(results["ruoyi"]) >= 0.99, per_family
