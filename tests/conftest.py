"""Shared fixtures: the repository on sys.path, the real sample folder, and small exported models."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REALDEV = ROOT.parent / "shared" / "realdev"
TEST_CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz+-*/=?"


def realdev_rows(family: str):
    """(path, LabelRow) pairs of one realdev family; skips the test when the folder is absent."""
    from models.charset import read_labels

    folder = REALDEV / family
    if not (folder / "labels.tsv").is_file():
        pytest.skip(f"{folder} not present")
    return [(folder / row.filename, row) for row in read_labels(folder / "labels.tsv").rows]


def make_sharp_model(arch: str, folder: Path, img_h: int = 32, img_w: int = 128):
    """A randomly initialised model whose head is scaled up so that its argmax is decisive, saved as best.pt
    and exported as model.onnx. Parity tests need outputs far from ties; an untrained model's are near-uniform."""
    import torch

    from models.checkpoint import save_checkpoint
    from models.export import export_onnx
    from models.meta import ModelMeta
    from models.registry import build_model, default_arch_args, default_channels

    torch.manual_seed(0)
    channels = default_channels(arch)
    meta = ModelMeta(arch, default_arch_args(arch, img_h, img_w), TEST_CHARSET, img_h, img_w, channels)
    model = build_model(arch, len(TEST_CHARSET) + 1, channels, **meta.arch_args).eval()
    with torch.no_grad():
        model.head.weight.mul_(40.0)
        model.head.bias.zero_()
        model.head.bias[0] = 2.0  # blank often wins, so texts are short and varied
    save_checkpoint(folder / "best.pt", model, meta)
    export_onnx(folder / "best.pt", folder / "model.onnx")
    return folder


@pytest.fixture(scope="session")
def sharp_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: make_sharp_model(arch, root / arch) for arch in ("vanilla_crnn", "crnn_resnet34", "svtr_tiny")}
