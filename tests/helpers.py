"""Helpers shared by the tests (the one place for them): real samples, calibration images, small decisive models,
the tiny training command and int8 inspection. Fixtures built on them are in conftest.py."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from models.charset import normalize_label
from models.paths import REALDEV, ROOT
from tools.tiny_dataset import make_dataset

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


# A vanilla CRNN small enough to train for a few epochs inside a test.
TINY_CRNN = '{"channels": [8, 16, 32, 32, 32, 32, 32], "hidden": 32}'


def train_and_test_splits(root: Path, train: int, test: int) -> Path:
    """``root/train`` and ``root/test`` tiny datasets of ``train`` and ``test`` images (different seeds)."""
    make_dataset(root / "train", train, seed=0)
    make_dataset(root / "test", test, seed=1)
    return root


def train_cmd(data: Path, out: Path, *extra: str, train_root: str = "train") -> list[str]:
    """``train.py`` on ``data/<train_root>`` (selection held out) and ``data/test``, tiny CRNN, one process."""
    return [
        sys.executable, str(ROOT / "train.py"), "--arch", "vanilla_crnn", "--train-root", str(data / train_root),
        "--val-root", str(data / "test"), "--out", str(out), "--batch", "16", "--num-workers", "0", "--lr", "3e-3",
        "--seed", "7", "--arch-args", TINY_CRNN, *extra,
    ]  # fmt: skip


def int8_weight_extremes(model_file: Path) -> tuple[int, int] | None:
    """Smallest and largest int8 weight of a quantized ONNX model (None when it has no int8 weights).

    onnxruntime on x86 CPUs without VNNI adds pairs of uint8 x int8 products in 16 bits: weights within [-64, 64]
    (tools/quantize.py's 7-bit weights) cannot saturate it, full-range ones can and do."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(model_file))
    weights = [numpy_helper.to_array(t) for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    if not weights:
        return None
    return int(min(w.min() for w in weights)), int(max(w.max() for w in weights))


# ---- the Java runners (tools/java_captcha)


def font_dir() -> Path | None:
    """The ten EasyCaptcha TTFs of the easy-captcha-python package, or None when it is not installed."""
    try:
        import easy_captcha
    except ImportError:
        return None
    path = Path(easy_captcha.__file__).parent / "fonts"
    return path if (path / "actionj.ttf").exists() else None


def run(classes: Path, runner: str, *args: str, check: bool = True, fonts: bool = True):
    """Runs one Java runner class; with ``check``, a non-zero exit fails the test with its stderr."""
    command = ["java", "-cp", str(classes), runner, *args]
    if fonts and font_dir() is not None:
        command += ["--font-dir", str(font_dir())]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if check and done.returncode != 0:
        raise AssertionError(f"{command} failed ({done.returncode}):\n{done.stderr}")
    return done


def read_meta(out: Path) -> list[dict[str, str]]:
    """The rows of a runner's ``meta.tsv``."""
    with (out / "meta.tsv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def check_output_files(out: Path, rows: list[dict[str, str]]) -> None:
    """labels.txt mirrors meta.tsv, is sorted by name, UTF-8 with LF, and every image exists with its size."""
    raw = (out / "labels.txt").read_bytes()
    assert b"\r" not in raw
    lines = raw.decode("utf-8").splitlines()
    assert lines == [f"{r['filename']}\t{r['label']}" for r in rows]
    assert [r["filename"] for r in rows] == sorted(r["filename"] for r in rows)
    for r in rows:
        assert re.fullmatch(r"\d{8}\.(png|gif)", r["filename"])
        assert normalize_label(r["label"]) == r["label"]
        with Image.open(out / "images" / r["filename"]) as image:
            assert image.size == (int(r["width"]), int(r["height"]))


def kill_after_epochs(cmd: list[str], folder: Path, epochs: int, timeout: float = 240, env: dict | None = None) -> int:
    """Start ``train.py`` (``cmd``), kill it with SIGKILL once ``folder/metrics.csv`` holds ``epochs`` rows, and
    return the epoch its ``last.pt`` records."""
    import csv
    import signal
    import subprocess
    import time

    from models.checkpoint import read_checkpoint

    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = folder / "metrics.csv"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file():
            with metrics.open(encoding="utf-8") as f:
                if len(list(csv.DictReader(f))) >= epochs:
                    break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return read_checkpoint(folder / "last.pt")["training"]["epoch"]
