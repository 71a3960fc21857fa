"""train.py on CUDA: every architecture with AMP, a kill and --resume, and torchrun over the GPUs there are.

Skipped where CUDA is not available (CI has no GPU); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT, kill_after_epochs, train_and_test_splits
from models.checkpoint import load_model, read_checkpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return train_and_test_splits(tmp_path_factory.mktemp("data"), 256, 32)


def command(data: Path, out: Path, arch: str, *extra: str) -> list[str]:
    return [
        sys.executable, str(ROOT / "train.py"), "--arch", arch, "--train-root", str(data / "train"),
        "--test-root", str(data / "test"), "--out", str(out), "--batch", "32", "--num-workers", "1",
        "--imgH", "32", "--imgW", "128", "--device", "cuda", "--amp", "auto", "--seed", "7", *extra,
    ]  # fmt: skip


def run(cmd: list[str], timeout: int = 900) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def epochs_done(folder: Path) -> list[int]:
    with open(folder / "metrics.csv", encoding="utf-8") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_every_architecture_trains_with_amp_on_cuda(data, tmp_path):
    log = run(command(data, tmp_path, "all", "--epochs", "2"))
    for arch in ("vanilla_crnn", "crnn_resnet34", "svtr_tiny"):
        folder = tmp_path / arch
        assert epochs_done(folder) == [1, 2], arch
        assert (folder / "model.onnx").is_file()
        meta = load_model(folder / "best.pt").meta  # loads on the CPU: the checkpoint does not tie itself to CUDA
        assert meta.arch == arch
    assert "device cuda" in log


def test_kill_then_resume_on_cuda(data, tmp_path):
    cmd = command(data, tmp_path, "vanilla_crnn", "--epochs", "4")
    done = kill_after_epochs(cmd, tmp_path / "vanilla_crnn", 2, timeout=600)
    assert 1 <= done < 4
    run([*cmd, "--resume"])
    assert epochs_done(tmp_path / "vanilla_crnn") == [1, 2, 3, 4]  # no epoch lost or repeated
    state = read_checkpoint(tmp_path / "vanilla_crnn" / "last.pt")
    assert state["training"]["epoch"] == 4


def test_torchrun_over_every_gpu(data, tmp_path):
    gpus = torch.cuda.device_count()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
           *command(data, tmp_path, "vanilla_crnn", "--epochs", "1")[1:]]  # fmt: skip
    cmd = [c for c in cmd if c != "--device"]
    cmd.remove("cuda")  # torchrun gives each process its own GPU (LOCAL_RANK)
    log = run(cmd)
    assert f"world {gpus}" in log
    assert epochs_done(tmp_path / "vanilla_crnn") == [1]  # only rank 0 writes
    assert os.path.getsize(tmp_path / "vanilla_crnn" / "best.pt") > 0
