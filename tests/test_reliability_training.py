"""Reliability of training and data preparation: kill -9 at random moments, faults, bad data (docs/reliability.md).

train.py and tools/merge_datasets.py run as real processes on tiny Pillow-drawn sets. Faults (NaN loss, out of
memory) are injected by a small wrapper that replaces ``torch.nn.functional.ctc_loss`` before running train.py
unchanged. Kill moments are random; the seed is printed so a failure can be replayed (RELIABILITY_SEED=...).
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_merge_datasets import make_source, png, snapshot, split_contents

from helpers import ROOT, train_and_test_splits
from helpers import train_cmd as tiny_train_cmd
from models.checkpoint import load_model, read_checkpoint
from tools.tiny_dataset import make_dataset

pytestmark = pytest.mark.slow

EPOCHS = 5
LOOP_STARTS = "M parameters, input"  # train.py prints this once the model is built, right before the first batch
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

# Runs train.py with ctc_loss replaced per FAULT_PLAN (JSON): {"nan": [call numbers], "nan_from": n,
# "oom": n, "oom_kind": "cuda" | "cpu"}; calls are counted from 1 over the whole run.
FAULTY_TRAIN = """
import json, os, runpy, sys
import torch
import torch.nn.functional as F

plan, real, calls = json.loads(os.environ["FAULT_PLAN"]), F.ctc_loss, [0]

def ctc_loss(*args, **kwargs):
    calls[0] += 1
    n = calls[0]
    if n in plan.get("nan", []) or n >= plan.get("nan_from", 1 << 60):
        return torch.tensor(float("nan"))
    if n == plan.get("oom"):
        if plan.get("oom_kind") == "cpu":
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return real(*args, **kwargs)

F.ctc_loss = ctc_loss
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return train_and_test_splits(tmp_path_factory.mktemp("data"), 64, 8)


def train_cmd(data: Path, out: Path, *extra: str, train_root: str = "train") -> list[str]:
    return tiny_train_cmd(data, out, "--epochs", str(EPOCHS), *extra, train_root=train_root)


def run(cmd: list[str], plan: dict | None = None) -> subprocess.CompletedProcess:
    if plan is not None:
        cmd = [sys.executable, "-c", FAULTY_TRAIN, *cmd[1:]]
    env = {**ENV, "FAULT_PLAN": json.dumps(plan or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def epochs_in(metrics: Path) -> list[int]:
    if not metrics.is_file():
        return []
    with open(metrics, encoding="utf-8") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def seeded_rng(request) -> random.Random:
    seed = int(os.environ.get("RELIABILITY_SEED") or time.time_ns() % 10**6)
    print(f"{request.node.name}: RELIABILITY_SEED={seed}")
    return random.Random(seed)


def start_and_wait_for(command: list[str], log: Path, marker: str | None) -> tuple[subprocess.Popen, float]:
    """Start ``command`` with its output in ``log``; return once ``marker`` is printed (or it exits)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=ENV, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    started = time.monotonic()
    while marker and proc.poll() is None and marker not in log.read_text(errors="replace"):
        assert time.monotonic() - started < 120, f"no {marker!r} in {log}"
        time.sleep(0.02)
    return proc, time.monotonic() - started


def kill_at_random_moments(command, rng: random.Random, seconds: float, after_kill, log: Path,
                           marker: str | None = None, kills: int = 4) -> list:  # fmt: skip
    """Start ``command()``, wait for ``marker`` in its output, kill -9 it after a random delay up to ``seconds``;
    again and again until ``kills`` kills or it finishes first. ``after_kill()`` checks what each kill left and
    says where it struck."""
    outcomes = []
    for _ in range(3 * kills):
        proc, _ = start_and_wait_for(command(), log, marker)
        delay = rng.uniform(0.05, seconds)
        try:
            proc.wait(timeout=delay)
            outcomes.append((round(delay, 2), "finished first"))
            return outcomes
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        outcomes.append((round(delay, 2), after_kill()))
        if len(outcomes) == kills:
            break
    return outcomes


# ---------------------------------------------------------------- kill -9 at random moments, then --resume
def test_kill_at_random_moments_then_resume_is_exact(tiny, tmp_path, request):
    rng = seeded_rng(request)
    reference = tmp_path / "reference"
    proc, _ = start_and_wait_for(train_cmd(tiny, reference), tmp_path / "reference.log", LOOP_STARTS)
    start = time.monotonic()
    assert proc.wait(timeout=300) == 0, (tmp_path / "reference.log").read_text()[-2000:]
    loop_seconds = time.monotonic() - start  # from the first batch to the ONNX export at the end

    folder = tmp_path / "killed" / "vanilla_crnn"

    def command() -> list[str]:
        return train_cmd(tiny, tmp_path / "killed", *(["--resume"] if (folder / "last.pt").is_file() else []))

    def after_kill() -> str:
        for checkpoint in folder.glob("*.pt"):
            load_model(checkpoint)  # never half-written: the old file or the new one
        rows = epochs_in(folder / "metrics.csv")
        assert rows == list(range(1, len(rows) + 1))  # no gap, no repeat (a row ahead of last.pt is dropped later)
        done = read_checkpoint(folder / "last.pt")["training"]["epoch"] if (folder / "last.pt").is_file() else 0
        litter = len(list(folder.glob(".*.tmp")))  # a temporary file of atomic_save cut short: harmless, reported
        return f"killed after epoch {done}" + (f", {litter} temporary file left" if litter else "")

    # Delays up to 60% of a whole loop: a resumed run has less left, so later kills reach the end-of-run export.
    kills = kill_at_random_moments(command, rng, 0.6 * loop_seconds, after_kill, tmp_path / "killed.log", LOOP_STARTS)
    print(f"training loop {loop_seconds:.1f} s; kills: {kills}")

    out = run(command())
    assert out.returncode == 0, out.stderr[-2000:]
    assert epochs_in(folder / "metrics.csv") == list(range(1, EPOCHS + 1))
    for name in ("best.pt", "last.pt"):
        ref_state = read_checkpoint(reference / "vanilla_crnn" / name)["state_dict"]
        new_state = read_checkpoint(folder / name)["state_dict"]
        for key, value in ref_state.items():
            assert torch.equal(value, new_state[key]), f"{name}: {key} differs after kills and resumes"
    assert (folder / "model.onnx").is_file()


# ---------------------------------------------------------------- faults stop or skip, loudly
@pytest.mark.parametrize("kind", ["cuda", "cpu"])
def test_out_of_memory_stops_with_a_clear_message(tiny, tmp_path, kind):
    # 64 samples, one held out, batch 16 with drop_last: 3 steps per epoch; fail in the first step of epoch 2
    out = run(train_cmd(tiny, tmp_path), plan={"oom": 4, "oom_kind": kind})
    assert out.returncode == 1
    message = out.stderr.strip().splitlines()[-1]
    assert message.startswith("[vanilla_crnn] out of memory (") and "lower --batch (now 16)" in message, message
    assert "continue with --resume" in message and "Traceback" not in out.stderr
    assert read_checkpoint(tmp_path / "vanilla_crnn" / "last.pt")["training"]["epoch"] == 1  # epoch 1 kept
    assert run(train_cmd(tiny, tmp_path, "--epochs", "2", "--resume")).returncode == 0  # and it goes on


def test_nan_loss_in_every_batch_stops_before_writing_a_model(tiny, tmp_path):
    out = run(train_cmd(tiny, tmp_path), plan={"nan_from": 1})
    assert out.returncode == 1
    assert "epoch 1: no batch had a finite loss (0 unreadable images); nothing saved" in out.stderr
    assert out.stdout.count("non-finite loss") == 3  # every batch of the epoch, each logged
    assert not list((tmp_path / "vanilla_crnn").glob("*.pt"))  # no silent bad model


def test_nan_losses_in_a_row_across_an_epoch_end_stop_training(tiny, tmp_path):
    # batch 8: 7 steps per epoch; calls 5-7 end epoch 1, calls 8-9 start epoch 2: five in a row
    out = run(train_cmd(tiny, tmp_path, "--batch", "8"), plan={"nan": [5, 6, 7, 8, 9]})
    assert out.returncode == 1
    assert out.stderr.strip().endswith("loss is NaN/inf for 5 batches in a row: lower --lr or turn off --amp")
    last = read_checkpoint(tmp_path / "vanilla_crnn" / "last.pt")
    assert last["training"]["epoch"] == 1  # the finished epoch is kept, with finite weights
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_occasional_nan_loss_is_skipped_and_logged(tiny, tmp_path):
    out = run(train_cmd(tiny, tmp_path, "--epochs", "2"), plan={"nan": [2, 5]})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("non-finite loss") == 2 and "batch skipped (1 in a row)" in out.stdout
    state = read_checkpoint(tmp_path / "vanilla_crnn" / "last.pt")["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_unreadable_images_are_skipped_and_counted(tiny, tmp_path):
    data = tmp_path / "data"
    make_dataset(data / "train", 40, seed=3)
    make_dataset(data / "val", 8, seed=4)
    make_dataset(data / "test", 8, seed=5)
    broken = {"train": ["00000.png", "00001.png", "00002.gif"], "val": ["00000.png"], "test": ["00003.png"]}
    for split, names in broken.items():
        for i, name in enumerate(names):
            path = data / split / "images" / name
            path.write_bytes(path.read_bytes()[:60] if i % 2 == 0 else b"not an image at all\n")
    out = run(train_cmd(data, tmp_path / "out", "--epochs", "1", "--batch", "8"))  # 40 = 5 x 8: none left out
    assert out.returncode == 0, out.stderr[-2000:]
    log = out.stdout + out.stderr
    for name in broken["train"]:
        assert f"skipped unreadable image {data / 'train' / 'images' / name}" in log
    with open(tmp_path / "out" / "vanilla_crnn" / "metrics.csv", encoding="utf-8") as f:
        assert next(csv.DictReader(f))["skipped"] == "3"
    assert "1 unreadable images skipped" in log  # the selection split (val/)
    assert "(1 unreadable)" in log  # the test set


def test_resume_from_a_checkpoint_with_pickled_code_is_refused(tiny, tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    folder = tmp_path / "vanilla_crnn"
    folder.mkdir()
    with open(folder / "last.pt", "wb") as f:
        pickle.dump({"meta": Payload(), "state_dict": {}}, f)
    out = run(train_cmd(tiny, tmp_path, "--resume"))
    assert out.returncode != 0 and "is not a readable checkpoint" in out.stderr
    assert not marker.exists()  # weights_only=True: the code never ran


# ---------------------------------------------------------------- merge: kill -9 at random moments
def merge_cmd(sources: dict[str, Path], dest: Path, mode: str) -> list[str]:
    return [
        sys.executable, str(ROOT / "tools" / "merge_datasets.py"), "--train-dest", str(dest / "train"),
        "--test-dest", str(dest / "test"), "--train-src", "easy", str(sources["a"]), "--train-src", "ruoyi",
        str(sources["b"]), "--test-src", "easy", str(sources["t"]), "--dedupe", "--seed", "7", "--workers", "2",
        "--copy-mode", mode,
    ]  # fmt: skip


def merge_sources(root: Path) -> dict[str, Path]:
    return {
        "a": make_source(root / "src_a", [(f"a{i}.png", f"A{i}bc", png(i)) for i in range(1000)]),
        "b": make_source(root / "src_b", [(f"b{i}.png", f"{i % 10}×3=？", png(1000 + i)) for i in range(200)]),
        "t": make_source(root / "src_t", [(f"t{i}.png", f"T{i}xy", png(2000 + i)) for i in range(60)]),
    }


@pytest.mark.parametrize("mode", ["copy", "move"])
def test_merge_killed_at_random_moments_then_rerun_gives_the_same_result(tmp_path, request, mode):
    rng = seeded_rng(request)
    reference_sources = merge_sources(tmp_path / "ref_src")
    start = time.monotonic()
    subprocess.run(merge_cmd(reference_sources, tmp_path / "reference", "copy"), check=True, env=ENV, cwd=ROOT,
                   capture_output=True, timeout=120)  # fmt: skip
    run_seconds = time.monotonic() - start
    reference = split_contents(tmp_path / "reference")

    sources = merge_sources(tmp_path / "src")
    before = {k: snapshot(v) for k, v in sources.items()}
    state_file = tmp_path / "merged" / "train" / ".merge_state.json"

    def after_kill() -> str:
        if mode == "move":  # nothing lost: every source image is still in its source or already in the dataset
            merged = {data for split in ("train", "test") if (tmp_path / "merged" / split / "images").is_dir()
                      for data in snapshot(tmp_path / "merged" / split / "images").values()}  # fmt: skip
            for name, files in before.items():
                left = snapshot(sources[name])
                for path, data in files.items():
                    if path.startswith("images/") and path not in left:
                        assert data in merged, f"{name}/{path} lost after a kill"
        return "killed while " + (json.loads(state_file.read_text())["phase"] if state_file.is_file() else "reading")

    command = lambda: merge_cmd(sources, tmp_path / "merged", mode)  # noqa: E731
    kills = kill_at_random_moments(command, rng, 0.8 * run_seconds, after_kill, tmp_path / "merge.log")
    print(f"merge {run_seconds:.1f} s; kills: {kills}")
    subprocess.run(merge_cmd(sources, tmp_path / "merged", mode), check=True, env=ENV, cwd=ROOT,
                   capture_output=True, timeout=120)  # fmt: skip
    assert split_contents(tmp_path / "merged") == reference
    if mode == "copy":
        assert {k: snapshot(v) for k, v in sources.items()} == before  # sources untouched
