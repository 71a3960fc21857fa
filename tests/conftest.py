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


def calibration_images(n: int = 16) -> list:
    """Captcha-like images drawn with Pillow: random text, lines and noise (deterministic)."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(0)
    images = []
    for _ in range(n):
        image = Image.new("RGB", (rng.choice([120, 160, 200]), rng.choice([40, 60])), (255, 255, 255))
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(4, 6)):
            x, y = rng.randint(0, image.width - 12), rng.randint(0, image.height - 14)
            colour = tuple(rng.randint(0, 200) for _ in range(3))
            draw.text((x, y), rng.choice(TEST_CHARSET), fill=colour, font_size=rng.randint(14, 30))
        draw.line([(0, rng.randint(0, image.height)), (image.width, rng.randint(0, image.height))], fill=(90, 90, 90))
        images.append(image)
    return images


def make_sharp_model(arch: str, folder: Path, img_h: int = 32, img_w: int = 128):
    """A randomly initialised model made decisive, saved as best.pt and exported as model.onnx.

    An untrained model's logits are nearly the same for every frame and image, so argmax decisions would sit on
    near-ties. The head is recentred and rescaled on calibration images so that its logits vary by a few units
    between frames: texts differ between images, and numeric differences between backends (~1e-6) cannot flip
    a decision.
    """
    import numpy as np
    import torch

    from models.checkpoint import save_checkpoint
    from models.export import export_onnx
    from models.meta import ModelMeta
    from models.preprocess import preprocess
    from models.registry import build_model, default_arch_args, default_channels

    torch.manual_seed(0)
    channels = default_channels(arch)
    meta = ModelMeta(arch, default_arch_args(arch, img_h, img_w), TEST_CHARSET, img_h, img_w, channels)
    model = build_model(arch, len(TEST_CHARSET) + 1, channels, **meta.arch_args).eval()
    batch = torch.from_numpy(np.stack([preprocess(im, meta.spec) for im in calibration_images()]))
    features = []
    hook = model.head.register_forward_hook(lambda module, args, out: features.append(args[0]))
    with torch.no_grad():
        model(batch)
        hook.remove()
        h = features[0].reshape(-1, features[0].shape[-1])  # (frames, in_features)
        mean = h.mean(0)
        spread = ((h - mean) @ model.head.weight.T).std()
        scale = 3.0 / spread
        model.head.weight.mul_(scale)
        model.head.bias.copy_(-model.head.weight @ mean)
        model.head.bias[0] += 3.0  # blanks between characters, as in a trained model
    save_checkpoint(folder / "best.pt", model, meta)
    export_onnx(folder / "best.pt", folder / "model.onnx")
    return folder


@pytest.fixture(scope="session")
def sharp_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: make_sharp_model(arch, root / arch) for arch in ("vanilla_crnn", "crnn_resnet34", "svtr_tiny")}


@pytest.fixture(scope="session")
def serving_checkpoints(sharp_models, tmp_path_factory) -> tuple[Path, bool]:
    """(folder, default model is trained): the shipped models of checkpoints/ plus decisive random ones for the
    architectures not shipped yet, so the servers always have at least two models to switch between."""
    import shutil

    from models.engine import default_model_name, discover_models

    root = tmp_path_factory.mktemp("serving")
    trained = discover_models(ROOT / "checkpoints")
    for name, folder in trained.items():
        (root / name).mkdir()
        shutil.copy(folder / "model.onnx", root / name / "model.onnx")
    if (ROOT / "checkpoints" / "default").is_file():
        shutil.copy(ROOT / "checkpoints" / "default", root / "default")
    for arch in ("vanilla_crnn", "svtr_tiny", "crnn_resnet34"):
        if len(discover_models(root)) >= 2:
            break
        if arch not in trained:
            (root / arch).mkdir()
            shutil.copy(sharp_models[arch] / "model.onnx", root / arch / "model.onnx")
    return root, default_model_name(root) in trained
