"""Where the project's folders are. Every script, tool, bench file and test asks here.

Each can be moved with an environment variable:

* ``CAPTCHA_CHECKPOINTS``: the trained models, ``<name>/model.onnx`` (default ``checkpoints/`` in the repository);
* ``CAPTCHA_DATASET``: the generated splits, ``train/``, ``val/``, ``test/`` (default ``dataset/``);
* ``CAPTCHA_REALDEV``: captchas drawn by the real libraries, one folder per family (default ``../shared/realdev``
  beside the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository


def _folder(variable: str, default: Path) -> Path:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else default


def checkpoints_dir() -> Path:
    return _folder("CAPTCHA_CHECKPOINTS", ROOT / "checkpoints")


def dataset_dir() -> Path:
    return _folder("CAPTCHA_DATASET", ROOT / "dataset")


def realdev_dir() -> Path:
    return _folder("CAPTCHA_REALDEV", ROOT.parent / "shared" / "realdev")


# Read once at import, for the many callers that only need today's value as a default.
CHECKPOINTS = checkpoints_dir()
DATASET = dataset_dir()
REALDEV = realdev_dir()
TEST_SPLIT = DATASET / "test"
