"""Fixtures shared by the tests; the helpers they are built on live in helpers.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import ROOT, make_sharp_model
from tools.java_build import compile_runners


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


@pytest.fixture(scope="session")
def classes(tmp_path_factory) -> Path:
    """The Java runners compiled once per session into a temporary folder."""
    if shutil.which("javac") is None or shutil.which("java") is None:
        pytest.skip("javac not installed")
    return compile_runners(tmp_path_factory.mktemp("java"), force=True)
