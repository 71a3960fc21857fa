"""tools/finetune.py and models/finetune.py: every bad input refused before anything is written, the plan, the
pseudo-label threshold, zipped sets, and one small end-to-end run with self-training whose model the API serves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers import ROOT
from models.checkpoint import read_checkpoint
from models.dataset import Sample
from models.finetune import (
    FINETUNE_EMA,
    MIN_LABELS,
    MIN_VOUCHED,
    Budget,
    FinetuneError,
    check_name,
    confidence_threshold,
    final_epochs,
    fit_budget,
    plan_for,
    precision_lower_bound,
    pseudo_sample_size,
    read_labelled,
    round_fits,
    shifted,
    unpack_zip,
)
from tools.tiny_dataset import make_dataset


def test_each_layout_is_read(tmp_path):
    txt = make_dataset(tmp_path / "txt", 24, seed=1)
    named = tmp_path / "named"
    named.mkdir()
    for line in (txt / "labels.txt").read_text(encoding="utf-8").splitlines():
        name, label = line.split("\t")
        if not label.isalnum():  # arithmetic labels hold characters a file name cannot always carry
            continue
        Image.open(txt / "images" / name).convert("RGB").save(named / f"{label}_{name.split('.')[0]}.png")
    tsv = tmp_path / "tsv"
    tsv.mkdir()
    rows = ["filename\tlabel\tconfig\tflags"]
    for line in (txt / "labels.txt").read_text(encoding="utf-8").splitlines():
        name, label = line.split("\t")
        (tsv / name).write_bytes((txt / "images" / name).read_bytes())
        rows.append(f"{name}\t{label}\tx\t")
    (tsv / "labels.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert len(read_labelled(txt, 20)) == 24
    assert len(read_labelled(tsv, 20)) == 24
    assert 0 < len(read_labelled(named, 20)) <= 24


def test_no_labels_too_few_bad_characters_and_broken_images_are_refused(tmp_path):
    with pytest.raises(FinetuneError, match="no such folder"):
        read_labelled(tmp_path / "absent", 20)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FinetuneError, match="no labels.txt"):
        read_labelled(tmp_path / "empty", 20)
    few = make_dataset(tmp_path / "few", MIN_LABELS - 5, seed=2)
    with pytest.raises(FinetuneError, match=f"{MIN_LABELS - 5} labelled images; fine-tuning needs at least"):
        read_labelled(few, 20)
    data = make_dataset(tmp_path / "bad", 30, seed=3)
    lines = (data / "labels.txt").read_text(encoding="utf-8").splitlines()
    lines[0] = lines[0].split("\t")[0] + "\tab\x07c"
    (data / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(FinetuneError, match="control characters"):
        read_labelled(data, 20)
    data = make_dataset(tmp_path / "broken", 30, seed=4)
    first = (data / "labels.txt").read_text(encoding="utf-8").split("\t")[0]
    (data / "images" / first).write_bytes(b"not an image")
    with pytest.raises(FinetuneError, match=first):
        read_labelled(data, 20)


def test_a_taken_or_odd_name_is_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(FinetuneError, match="already exists"):
        check_name("mine", tmp_path)
    with pytest.raises(FinetuneError, match="letters, digits"):
        check_name("../escape", tmp_path)
    assert check_name("site-2", tmp_path) == tmp_path / "site-2"


def test_the_plan_holds_out_validation_and_scales_with_the_data(tmp_path):
    samples = read_labelled(make_dataset(tmp_path / "d", 100, seed=5), 20)
    plan = plan_for(samples)
    assert len(plan.validation) == 15 and len(plan.train) == 85
    assert not {s.path for s in plan.train} & {s.path for s in plan.validation}
    assert plan.epochs == 60 and plan.aug and plan.aug_preset == "strong"
    assert plan_for(samples * 50).epochs < plan.epochs
    assert plan_for(samples * 60).aug_preset == "mild"  # 5,500 training images


def test_the_budget_cuts_the_plan_to_the_time_given(tmp_path):
    plan = plan_for(read_labelled(make_dataset(tmp_path / "d", 100, seed=5), 20))
    fast = fit_budget(plan, images_per_s=1000, minutes=15, rounds=0)
    assert fast.first_epochs == plan.epochs and fast.round_steps == 0  # the data's plan fits: nothing cut
    assert fast.patience == max(plan.patience, plan.epochs // 3)
    slow = fit_budget(plan, images_per_s=1, minutes=15, rounds=0)
    steps = 15 * 60 * 0.8 * 0.7
    assert slow.final_steps == int(steps * 0.15)  # kept for the final round on every label
    assert slow.first_epochs == int((steps - slow.final_steps) / 85) < plan.epochs
    assert fit_budget(plan, images_per_s=0.01, minutes=1, rounds=0).first_epochs == 2  # never below 2 epochs
    shared = fit_budget(plan, images_per_s=1, minutes=15, rounds=3)
    assert shared.first_epochs < slow.first_epochs
    assert shared.first_epochs * 85 + 3 * shared.round_steps + shared.final_steps <= steps  # every round fits
    reading = fit_budget(plan, images_per_s=1, minutes=15, rounds=3, unlabelled=100)  # 3 rounds x 100 images at 3/s
    reading_steps = (15 * 60 - 100) * 0.8 * 0.7
    assert reading.round_steps == int((reading_steps - int(reading_steps * 0.15)) * 0.6 / 3)


def test_the_final_round_gets_its_share_or_the_time_left_within_bounds():
    budget = Budget(first_epochs=10, round_steps=0, minutes=15, patience=4, final_steps=1000)
    assert final_epochs(100, budget, seconds_left=0, pace=40) == 10  # its share: 1,000 steps
    assert final_epochs(10, budget, seconds_left=0, pace=40) == 60  # 100 epochs' worth, capped at 60
    assert final_epochs(400, budget, seconds_left=0, pace=40) == 2  # its share on more labels
    assert final_epochs(5000, budget, seconds_left=-30, pace=40) == 1  # never below one epoch
    assert final_epochs(400, budget, seconds_left=100, pace=40) == 8  # time left: 100 s * 0.85 * 40 images/s


def test_a_self_training_round_starts_only_if_it_and_one_final_epoch_fit_the_time_left():
    assert round_fits(seconds_left=100, round_images=2000, final_images=1000, pace=30)  # 3,000 images: 100 s
    assert not round_fits(seconds_left=99, round_images=2000, final_images=1000, pace=30)
    assert not round_fits(seconds_left=-5, round_images=0, final_images=1, pace=30)  # over budget already


def test_the_pace_counts_every_epoch_trained_over_the_rounds_wall_time(tmp_path, monkeypatch):
    import tools.finetune as tool

    def fake_round(cfg_values: dict, out: Path) -> Path:
        out.mkdir(parents=True)
        rows = "".join(f"{e},0.1\n" for e in range(1, cfg_values["epochs"] + 1))
        (out / "metrics.csv").write_text("epoch,train_loss\n" + rows)  # early stopping: fewer rows than asked
        return out

    clock = iter([100.0, 110.0, 200.0, 205.0])
    monkeypatch.setattr(tool, "train_round", fake_round)
    monkeypatch.setattr(tool.time, "time", lambda: next(clock))
    pace = tool.Pace()
    pace.round({"epochs": 3}, tmp_path / "round0", n_images=100)  # 300 images in 10 s
    pace.round({"epochs": 1}, tmp_path / "round1", n_images=150)  # 150 images in 5 s
    assert (pace.images, pace.seconds) == (450, 15.0)
    assert pace.per_second == 30.0


def test_freeze_keeps_the_first_convolutions_fixed():
    from models.training import freeze_first_convs
    from models.vanilla_crnn import VanillaCRNN

    model = VanillaCRNN(num_classes=12, channels=(8, 8, 8, 8, 8, 8, 8), hidden=8)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    frozen = freeze_first_convs(model, 2)
    fixed = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert fixed == ["cnn.0.0.weight", "cnn.0.1.weight", "cnn.0.1.bias", "cnn.2.0.weight", "cnn.2.1.weight",
                     "cnn.2.1.bias"]  # fmt: skip
    assert frozen == sum(model.get_parameter(n).numel() for n in fixed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(2, 1, 32, 128)).sum().backward()
    optimizer.step()
    after = dict(model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in fixed)
    assert not torch.equal(before["cnn.4.0.weight"], after["cnn.4.0.weight"])


def test_the_threshold_keeps_pseudo_labels_at_least_99_percent_right():
    confidences = [0.99] * 99 + [0.98] + [0.5] * 10
    correct = [True] * 99 + [True] + [False] * 10
    assert confidence_threshold(confidences, correct) == 0.98
    assert confidence_threshold([0.9, 0.8], [False, True]) is None
    confidences = [0.99] * 200 + [0.9] * 10
    correct = [True] * 200 + [False] * 10
    assert confidence_threshold(confidences, correct) == 0.99


def test_the_second_view_moves_the_image_and_repeats_the_edge():
    import numpy as np

    batch = np.arange(2 * 1 * 4 * 6, dtype=np.float32).reshape(2, 1, 4, 6)
    view = shifted(batch, dx=2, dy=1)
    assert view.shape == batch.shape
    assert np.array_equal(view[:, :, 1:, 2:], batch[:, :, :-1, :-2])  # moved right 2, down 1
    assert np.array_equal(view[:, :, 1:, :2], np.repeat(batch[:, :, :-1, :1], 2, axis=3))  # left edge repeated
    assert np.array_equal(view[:, :, 0, :], view[:, :, 1, :])  # top row repeated


def test_pseudo_labels_need_both_views_to_agree_and_the_threshold_sees_the_same_rule(tmp_path, monkeypatch):
    import numpy as np

    import tools.finetune as tool
    from models.engine import Prediction
    from models.preprocess import InputSpec

    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for path in paths:  # a left edge unlike column 3, so the fake engine can tell the shifted view apart
        Image.fromarray(np.tile(np.arange(60, dtype=np.uint8) * 4, (20, 1))).save(path)
    plain = [Prediction("ab", None, 0.99), Prediction("cd", None, 0.98), Prediction("ef", None, 0.97)]
    moved = [Prediction("ab", None, 0.95), Prediction("cx", None, 0.99), Prediction("ef", None, 0.99)]

    class TwoViews:
        spec = InputSpec(32, 96, 1)

        def predict_arrays(self, inputs):
            return moved if np.array_equal(inputs[:, :, :, 0], inputs[:, :, :, 2]) else plain

    monkeypatch.setattr(tool, "load_engine", lambda model: TwoViews())
    kept = tool.pseudo_labels(tmp_path, paths, threshold=0.95)
    assert [(s.path.name, s.label) for s in kept] == [("0.png", "ab"), ("2.png", "ef")]  # "cd" / "cx" disagree
    assert [s.label for s in tool.pseudo_labels(tmp_path, paths, threshold=0.96)] == ["ef"]  # min(0.99, 0.95) < 0.96
    validation = [Sample(p, label) for p, label in zip(paths, ["ab", "cz", "ef"], strict=True)]
    threshold, evidence, vouched = tool.choose_threshold(tmp_path, validation)
    assert vouched == pytest.approx(precision_lower_bound(2, 2))
    assert threshold == 0.95  # the lower confidence of the two views; the wrong, disagreeing one counts as 0
    assert evidence.startswith("2 of 2 readings")
    assert [s.label for s in tool.pseudo_labels(tmp_path, paths, threshold=0.0)] == ["ab", "ef"]


def test_cli_refuses_a_name_that_exists_and_writes_nothing(tmp_path):
    data = make_dataset(tmp_path / "d", 30, seed=6)
    out = subprocess.run([sys.executable, "tools/finetune.py", "--data", str(data), "--name", "vanilla_crnn"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "already exists" in out.stderr
    assert not list((ROOT / "checkpoints").glob(".*partial"))
    out = subprocess.run([sys.executable, "tools/finetune.py", "--data", str(data), "--name", "new", "--lr", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "--lr 0: a learning rate" in out.stderr
    out = subprocess.run([sys.executable, "tools/finetune.py", "--data", str(data), "--name", "new", "--ema", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "--ema 1: a decay per step" in out.stderr
    out = subprocess.run([sys.executable, "tools/finetune.py", "--data", str(data), "--name", "new",
                          "--min-vouched", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "--min-vouched 2: a precision from 0" in out.stderr
    assert not (ROOT / "checkpoints" / "new").exists()


def test_a_zipped_set_is_unpacked_and_a_zip_slip_is_refused(tmp_path):
    data = make_dataset(tmp_path / "d", 24, seed=7)
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(data.rglob("*")):
            if path.is_file():
                z.write(path, f"mysite/{path.relative_to(data)}")
    folder = unpack_zip(archive, tmp_path / "out")
    assert folder == tmp_path / "out" / "mysite"
    assert len(read_labelled(folder, 20)) == 24
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../outside.txt", "x")
    with pytest.raises(FinetuneError, match="outside"):
        unpack_zip(evil, tmp_path / "evil")
    assert not (tmp_path / "outside.txt").exists()
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    with pytest.raises(FinetuneError, match="not a readable zip"):
        unpack_zip(broken, tmp_path / "broken")


@pytest.mark.slow
def test_finetune_with_self_training_end_to_end_and_served_by_the_api(tmp_path):
    """A zipped labelled set and an unlabelled folder -> checkpoints/<name>/ with a card, served under its name."""
    from fastapi.testclient import TestClient

    from server_fastapi import Settings, create_app

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "vanilla_crnn").symlink_to(ROOT / "checkpoints" / "vanilla_crnn")  # the base, read only
    labelled = make_dataset(tmp_path / "labelled", 60, seed=11, gif_every=0)
    archive = tmp_path / "labelled.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in sorted(labelled.rglob("*")):
            if path.is_file() and path.name != "meta.tsv":
                z.write(path, path.relative_to(labelled))
    unlabelled = make_dataset(tmp_path / "unlabelled", 120, seed=12, gif_every=0) / "images"
    name = f"pytest-{tmp_path.name}"[:60]
    env = {**os.environ, "CAPTCHA_CHECKPOINTS": str(checkpoints)}
    try:
        out = subprocess.run([sys.executable, "tools/finetune.py", "--data", str(archive), "--name", name,
                              "--unlabelled", str(unlabelled), "--minutes", "3", "--min-vouched", "0"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
        last = ROOT / "runs" / "finetune" / name / "final" / "vanilla_crnn" / "last.pt"
        final_average = read_checkpoint(last)["training"]["ema"]["weights"] if last.is_file() else None
    finally:
        shutil.rmtree(ROOT / "runs" / "finetune" / name, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "training images/s here, so within 3 minutes" in out.stdout  # the estimate before it starts
    target = checkpoints / name
    assert {"model.onnx", "model_int8.onnx", "best.pt", "README.md", "finetune.json"} <= {
        p.name for p in target.iterdir()
    }
    result = json.loads((target / "finetune.json").read_text(encoding="utf-8"))
    assert result["rounds"][0].startswith("Fine-tuned on")
    assert len(result["rounds"]) >= 3 and result["rounds"][1].startswith("Self-training round 1")
    assert result["rounds"][-1].startswith("Final round") and "all" in result["rounds"][-1]
    kept = read_checkpoint(checkpoints / name / "best.pt")["state_dict"]  # the final round's last epoch, averaged
    assert final_average is not None and all(torch.equal(kept[key], final_average[key]) for key in kept)
    card = (target / "README.md").read_text(encoding="utf-8")
    assert "validation" in card.lower() and "python tools/finetune.py" in card
    assert json.loads((target / "config.json").read_text(encoding="utf-8"))["ema"] == FINETUNE_EMA  # averaged
    assert not list(checkpoints.glob(".*partial"))
    assert (ROOT / "checkpoints" / "vanilla_crnn").is_dir() and not (ROOT / "checkpoints" / name).exists()

    with TestClient(create_app(Settings(checkpoints=checkpoints, threads=1))) as client:
        assert name in [m["name"] for m in client.get("/models").json()]
        image = labelled / "images" / sorted(p.name for p in (labelled / "images").iterdir())[0]
        reply = client.post("/predict", files={"files": (image.name, image.read_bytes(), "image/png")},
                            data={"model": name})  # fmt: skip
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert (body.get("model") or body["results"][0].get("model")) == name


def test_a_small_validation_slice_vouches_for_less_than_99_percent():
    assert precision_lower_bound(30, 30) == pytest.approx(0.917, abs=0.001)
    assert precision_lower_bound(270, 270) > 0.99 > precision_lower_bound(200, 200)
    assert precision_lower_bound(90, 100) < 0.9 < precision_lower_bound(100, 100)
    assert precision_lower_bound(0, 0) == 0.0
    assert precision_lower_bound(15, 15) < MIN_VOUCHED < precision_lower_bound(16, 16)  # 16 of 16 right: trusted


def fake_finetune_run(monkeypatch, tmp_path: Path, clock: list[float], fake_round, pseudo_labels) -> None:
    """tools/finetune.py with its rounds, clock, scores and pseudo-labels faked: only the planning runs. Every
    validation score is the same, so no self-training round is ever kept."""
    import tools.finetune as tool

    score = {"n": 10, "em": 0.5, "em_nocase": 0.5, "cer": 0.1}
    monkeypatch.setattr(tool.time, "time", lambda: clock[0])
    monkeypatch.setattr(tool, "train_round", fake_round)
    monkeypatch.setattr(tool, "measure_speed", lambda *a: 30.0)
    monkeypatch.setattr(tool, "exact_match", lambda *a: score)
    monkeypatch.setattr(tool, "choose_threshold", lambda *a: (0.5, "20 of 20 right", 0.9))
    monkeypatch.setattr(tool, "pseudo_labels", pseudo_labels)
    monkeypatch.setattr(tool, "keep_last_epoch", lambda folder: folder)
    monkeypatch.setattr(tool, "quantize_into", lambda *a: "int8")
    monkeypatch.setattr(tool, "CHECKPOINTS", tmp_path / "checkpoints")
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    (tmp_path / "checkpoints").mkdir()


def test_no_unlabelled_image_is_read_when_no_round_can_fit_the_time_left(tmp_path, monkeypatch):
    """The first round used the whole budget: the run goes straight to the final round, without reading the
    unlabelled images (a reading of thousands of images would only take time from it)."""
    import tools.finetune as tool

    clock = [1000.0]

    def fake_round(cfg_values: dict, out: Path) -> Path:
        clock[0] += 15 * 60  # the first round takes the whole budget
        folder = out / "vanilla_crnn"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text("epoch,train_loss\n1,0.1\n")
        (folder / "best.pt").write_bytes(b"weights")
        return folder

    def no_reading(*args, **kwargs):
        raise AssertionError("the unlabelled images were read though no round could fit")

    fake_finetune_run(monkeypatch, tmp_path, clock, fake_round, no_reading)
    labelled = make_dataset(tmp_path / "labelled", 40, seed=3, gif_every=0)
    unlabelled = make_dataset(tmp_path / "unlabelled", 8, seed=4, gif_every=0) / "images"
    target = tool.finetune(labelled, "late", unlabelled, str(ROOT / "checkpoints" / "vanilla_crnn"), 0, "cmd")
    rounds = json.loads((target / "finetune.json").read_text(encoding="utf-8"))["rounds"]
    assert "stopped before reading the unlabelled images" in rounds[1]
    assert rounds[-1].startswith("Final round")


def test_a_round_too_long_for_the_time_left_trains_on_a_sample_of_the_pseudo_labels(tmp_path, monkeypatch):
    """Thousands of pseudo-labels, a few minutes left: the round takes one epoch on the labels and the random share
    of the pseudo-labels that fits with one final epoch, and the final round trains on that share, not on all."""
    import tools.finetune as tool

    clock = [1000.0]
    trained: list[tuple[int, int]] = []  # (images in the round's labels.txt, epochs) per round

    def fake_round(cfg_values: dict, out: Path) -> Path:
        lines = Path(cfg_values["train_root"], "labels.txt").read_text(encoding="utf-8").splitlines()
        trained.append((len(lines), cfg_values["epochs"]))
        clock[0] += 6 * 60 if not trained[1:] else len(lines) * cfg_values["epochs"] / 10
        folder = out / "vanilla_crnn"
        folder.mkdir(parents=True)
        rows = "".join(f"{e},0.1\n" for e in range(1, 101 if not trained[1:] else cfg_values["epochs"] + 1))
        (folder / "metrics.csv").write_text("epoch,train_loss\n" + rows)  # round 0: 100 epochs in 6 minutes
        (folder / "best.pt").write_bytes(b"weights")
        return folder

    labelled = make_dataset(tmp_path / "labelled", 40, seed=3, gif_every=0)
    unlabelled = make_dataset(tmp_path / "unlabelled", 8, seed=4, gif_every=0) / "images"
    image = next(unlabelled.iterdir())
    fake_finetune_run(
        monkeypatch, tmp_path, clock, fake_round, lambda *a: [Sample(image, f"p{i}") for i in range(20000)]
    )
    target = tool.finetune(labelled, "sampled", unlabelled, str(ROOT / "checkpoints" / "vanilla_crnn"), 0, "cmd")
    result = json.loads((target / "finetune.json").read_text(encoding="utf-8"))
    n_labels = trained[0][0]
    round_images, round_epochs = trained[1]
    assert round_epochs == 1 and n_labels < round_images < n_labels + 20000  # a sample, one epoch
    assert "a random" in result["rounds"][1] and "of them trained on" in result["rounds"][1]
    pace = n_labels * 100 / 360  # what round 0 kept, images per second of wall time
    left = 15 * 60 - 360 - tool.END_RESERVE_S
    assert 2 * round_images + (40 - n_labels) <= left * pace + 2  # the round and one final epoch fit
    assert trained[-1][0] <= round_images + 40  # the final round: labels, slice and the sample only


def test_pseudo_sample_size_fits_a_round_and_a_final_epoch_in_the_time_left():
    # 100 s at 40 images/s: 4,000 image-steps; 2 x (1,000 labels + k) + 100 of the slice <= 4,000
    assert pseudo_sample_size(1000, 5000, 100, 100, 40.0) == 950
    assert pseudo_sample_size(1000, 300, 100, 100, 40.0) == 300  # all of them fit
    assert pseudo_sample_size(1000, 5000, 100, 60, 40.0) == 0  # 150 fit: fewer than a quarter of the labels
    assert pseudo_sample_size(1000, 5000, 100, 0, 40.0) == 0
