"""train.py end to end on a tiny Pillow-drawn set: learning, exact resume after kill -9, DDP, outputs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT, kill_after_epochs, train_and_test_splits, train_cmd
from models.checkpoint import load_model, read_checkpoint
from models.engine import load_engine
from tools.tiny_dataset import make_dataset


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return train_and_test_splits(tmp_path_factory.mktemp("data"), 160, 24)


def run(cmd: list[str], timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, **kw)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def metrics_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_training_lowers_loss_and_writes_everything(tiny_data, tmp_path):
    out = run(train_cmd(tiny_data, tmp_path, "--epochs", "3"))
    folder = tmp_path / "vanilla_crnn"
    for name in ("best.pt", "last.pt", "model.onnx", "config.json", "metrics.csv", "curves.png"):
        assert (folder / name).is_file(), f"{name} missing"
    rows = metrics_rows(folder / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert "| all |" in out.stdout + out.stderr  # the per-group test table is printed
    assert "fixture/arith" in out.stdout + out.stderr
    # Exported model matches its checkpoint on the fixture images, GIFs included.
    images = sorted((tiny_data / "test" / "images").iterdir())
    a = load_engine(folder, "onnx").predict(images)
    b = load_engine(folder, "torch").predict(images)
    assert [p.text for p in a] == [p.text for p in b]
    meta = load_model(folder / "best.pt").meta
    assert meta.metrics["selection"]["n"] > 0 and meta.img_h == 32


def test_patience_stops_when_validation_stops_improving(tiny_data, tmp_path):
    out = run(
        train_cmd(tiny_data, tmp_path, "--epochs", "6", "--patience", "2", "--lr", "1e-12", "--limit-train", "48")
    )
    rows = metrics_rows(tmp_path / "vanilla_crnn" / "metrics.csv")
    best = load_model(tmp_path / "vanilla_crnn" / "best.pt").meta.metrics["epoch"]
    assert len(rows) == min(6, best + 2)
    assert len(rows) == 6 or "stopping early (--patience)" in out.stdout + out.stderr
    assert (tmp_path / "vanilla_crnn" / "model.onnx").is_file()


@pytest.mark.slow
def test_kill_then_resume_is_exact(tiny_data, tmp_path):
    reference, interrupted = tmp_path / "ref", tmp_path / "int"
    run(train_cmd(tiny_data, reference, "--epochs", "4", "--ema", "0.9"))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = kill_after_epochs(
        train_cmd(tiny_data, interrupted, "--epochs", "4", "--ema", "0.9"), interrupted / "vanilla_crnn", 2, env=env
    )
    assert 1 <= done < 4
    for checkpoint in (interrupted / "vanilla_crnn").glob("*.pt"):
        load_model(checkpoint)  # a kill never leaves a half-written checkpoint

    run(train_cmd(tiny_data, interrupted, "--epochs", "4", "--ema", "0.9", "--resume"))
    rows = metrics_rows(interrupted / "vanilla_crnn" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]  # no epoch lost or repeated
    ref = read_checkpoint(reference / "vanilla_crnn" / "last.pt")
    new = read_checkpoint(interrupted / "vanilla_crnn" / "last.pt")
    for key, value in ref["state_dict"].items():
        assert torch.equal(value, new["state_dict"][key]), f"{key} differs after resume"
    assert ref["training"]["ema"]["updates"] == new["training"]["ema"]["updates"]
    for key, value in ref["training"]["ema"]["weights"].items():
        assert torch.equal(value, new["training"]["ema"]["weights"][key]), f"averaged {key} differs after resume"


def test_weight_average_ramps_up_and_copies_counters():
    from models.training import WeightAverage

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    start = model[0].weight.detach().clone()
    average = WeightAverage(model, 0.9)
    with torch.no_grad():
        model[0].weight.add_(1.0)
        model[1].num_batches_tracked.fill_(7)
    average.update(model)  # first step: decay (1 + 1) / (10 + 1), so the average moves 9/11 of the way
    assert torch.allclose(average.model[0].weight, start + 9 / 11)
    assert average.model[1].num_batches_tracked.item() == 7  # counters are copied, not averaged
    for _ in range(200):
        average.update(model)
    assert torch.allclose(average.model[0].weight, model[0].weight, atol=1e-6)  # it converges to fixed weights
    with torch.no_grad():
        model[0].weight.add_(1.0)
    average.update(model)  # later steps: the decay is capped at 0.9
    assert torch.allclose(average.model[0].weight, model[0].weight - 0.9, atol=1e-5)
    assert not any(p.requires_grad for p in average.model.parameters())
    with pytest.raises(ValueError, match="EMA decay 1"):
        WeightAverage(model, 1.0)


def test_ema_is_what_is_validated_and_saved_as_best(tiny_data, tmp_path):
    run(train_cmd(tiny_data, tmp_path, "--epochs", "1", "--ema", "0.5", "--limit-train", "64"))
    best = read_checkpoint(tmp_path / "vanilla_crnn" / "best.pt")["state_dict"]  # one epoch: it is the best
    last = read_checkpoint(tmp_path / "vanilla_crnn" / "last.pt")
    averaged, raw = last["training"]["ema"]["weights"], last["state_dict"]
    assert all(torch.equal(best[key], averaged[key]) for key in best)
    assert any(not torch.equal(best[key], raw[key]) for key in best if best[key].dtype.is_floating_point)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tiny_data, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *train_cmd(tiny_data, tmp_path, "--epochs", "1")[1:]]  # fmt: skip
    out = run(cmd)
    assert (tmp_path / "vanilla_crnn" / "best.pt").is_file()
    assert "world 2" in out.stdout + out.stderr
    assert len(metrics_rows(tmp_path / "vanilla_crnn" / "metrics.csv")) == 1  # only rank 0 writes


def test_dry_run_writes_nothing(tiny_data, tmp_path):
    out = run(train_cmd(tiny_data, tmp_path, "--dry-run", "--epochs", "1"))
    assert "dry run: one batch" in out.stdout + out.stderr
    assert not (tmp_path / "vanilla_crnn").exists()


def test_tutorial_flags_are_accepted(tiny_data, tmp_path):
    cmd = train_cmd(tiny_data, tmp_path, "--dry-run", "--imgH", "32", "--imgW", "126", "--pad-multiple", "4",
                    "--downsample", "4", "--epochs", "30", "--aug", "--compile", "--print-samples", "3")  # fmt: skip
    cmd[cmd.index("--num-workers") + 1] = "1"
    run(cmd)


def test_wrong_downsample_is_refused(tiny_data, tmp_path):
    out = subprocess.run(train_cmd(tiny_data, tmp_path, "--dry-run", "--downsample", "16"), capture_output=True,
                         text=True, cwd=ROOT, timeout=120)  # fmt: skip
    assert out.returncode != 0 and "downsamples width 4x" in out.stderr


@pytest.mark.slow
def test_init_fine_tunes_and_extends_charset(tiny_data, tmp_path):
    run(train_cmd(tiny_data, tmp_path / "base", "--epochs", "1"))
    extra = tmp_path / "extra"
    make_dataset(extra / "train", 40, seed=5)
    labels = (extra / "train" / "labels.txt").read_text(encoding="utf-8").replace("A", "Z")
    (extra / "train" / "labels.txt").write_text(labels, encoding="utf-8")
    (extra / "train" / "meta.tsv").unlink()
    base_charset = load_model(tmp_path / "base" / "vanilla_crnn" / "best.pt").meta.charset
    run(train_cmd(extra, tmp_path / "tuned", "--epochs", "1",
                  "--init", str(tmp_path / "base" / "vanilla_crnn" / "best.pt")))  # fmt: skip
    tuned = load_model(tmp_path / "tuned" / "vanilla_crnn" / "best.pt").meta.charset
    assert tuned.startswith(base_charset) and "Z" in tuned and "Z" not in base_charset


def test_teacher_sets_the_students_input_and_charset(tiny_data, tmp_path, sharp_models):
    teacher_file = str(sharp_models["vanilla_crnn"] / "best.pt")
    teacher = load_model(teacher_file)
    student_args = '{"channels": [8, 8, 16, 16], "hidden": 16}'
    cmd = train_cmd(tiny_data, tmp_path, "--arch", "crnn_resnet34", "--arch-args", student_args, "--epochs", "1",
                    "--imgH", "48", "--imgW", "160", "--teacher", teacher_file)  # fmt: skip
    out = run(cmd)
    assert "--teacher" in out.stdout + out.stderr
    student = load_model(tmp_path / "crnn_resnet34" / "best.pt")
    # the teacher's input wins over --imgH/--imgW, and its classes keep their ids (its charset is the prefix)
    assert student.meta.spec == teacher.meta.spec
    assert student.meta.charset.startswith(teacher.meta.charset)


def test_init_and_teacher_together_need_the_teachers_input_and_charset(tiny_data, tmp_path, sharp_models):
    gray_teacher = str(sharp_models["vanilla_crnn"] / "best.pt")  # 32x128x1
    rgb_student = str(sharp_models["crnn_resnet34"] / "best.pt")  # 32x128x3: cannot take the teacher's input
    cmd = train_cmd(tiny_data, tmp_path, "--arch", "crnn_resnet34", "--init", rgb_student, "--teacher", gray_teacher,
                    "--dry-run")  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode != 0 and "does not fit --teacher" in out.stderr
    # a student that already has the teacher's input and charset (here: the teacher itself) continues distilling
    out = run(train_cmd(tiny_data, tmp_path, "--init", gray_teacher, "--teacher", gray_teacher, "--dry-run"))
    assert "dry run: one batch" in out.stdout + out.stderr


def test_distill_sources_need_a_teacher_and_sources_the_data_has(tiny_data, tmp_path, sharp_models):
    teacher = str(sharp_models["vanilla_crnn"] / "best.pt")
    alone = subprocess.run(train_cmd(tiny_data, tmp_path, "--distill-sources", "easy", "--dry-run"),
                           capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert alone.returncode != 0 and "--distill-sources needs --teacher" in alone.stderr
    unknown = subprocess.run(train_cmd(tiny_data, tmp_path, "--teacher", teacher, "--distill-sources", "nosuch",
                                       "--dry-run"), capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert unknown.returncode != 0 and "no training image of nosuch" in unknown.stderr
    out = run(train_cmd(tiny_data, tmp_path, "--init", teacher, "--teacher", teacher, "--distill-sources", "fixture",
                        "--dry-run"))  # fmt: skip
    assert "dry run: one batch" in out.stdout + out.stderr


def test_bf16_on_a_cpu_without_bf16_kernels_trains_in_fp32(monkeypatch, capsys):
    import train

    cpu = torch.device("cpu")
    monkeypatch.setattr(train, "cpu_runs_bf16", lambda: False)
    assert train.resolve_amp(train.Config(amp="bf16"), cpu, 0).amp == "off"
    assert "no bf16 instructions" in capsys.readouterr().out
    assert train.resolve_amp(train.Config(amp="bf16"), torch.device("cuda"), 0).amp == "bf16"  # GPUs decide alone
    monkeypatch.setattr(train, "cpu_runs_bf16", lambda: True)
    assert train.resolve_amp(train.Config(amp="bf16"), cpu, 0).amp == "bf16"
    assert capsys.readouterr().out == ""


def test_every_flag_has_help_in_its_group_and_old_names_still_work(capsys):
    import dataclasses

    import train

    helps = train.config_help()
    assert set(helps) == {f.name for f in dataclasses.fields(train.Config)}
    assert {group for group, _ in helps.values()} == {"data", "model", "optimisation", "run", "finetune"}
    assert all(text.strip() for _, text in helps.values())
    with pytest.raises(SystemExit):
        train.parse_args(["--help"])
    text = capsys.readouterr().out
    for heading in ("data:", "model:", "optimisation:", "run:"):
        assert f"\n{heading}\n" in text
    assert "--test-root TEST_ROOT, --val-root TEST_ROOT" in text and "--imgH IMG_H" in text

    old = train.parse_args(["--val-root", "t", "--select-root", "v", "--val-every", "3"])[0]
    new = train.parse_args(["--test-root", "t", "--validation-root", "v", "--test-every", "3"])[0]
    assert old == new and (new.test_root, new.validation_root, new.test_every) == ("t", "v", 3)
    assert [c.arch for c in train.parse_args(["--arch", "all"])] == ["vanilla_crnn", "crnn_resnet34", "svtr_tiny"]
    assert train.parse_args(["--aug", "--aug-strength", "2"])[0].aug_strength == 2.0
    with pytest.raises(SystemExit):
        train.parse_args(["--aug-strength", "0"])
    assert "--aug-strength 0: above 0" in capsys.readouterr().err
    assert train.parse_args(["--aug", "--aug-preset", "strong"])[0].aug_preset == "strong"
    assert train.Config().aug_preset == "mild"
    with pytest.raises(SystemExit):
        train.parse_args(["--aug-preset", "heavy"])
    assert "--aug-preset heavy: one of mild, strong" in capsys.readouterr().err
    assert train.parse_args(["--ema", "0.99"])[0].ema == 0.99 and train.Config().ema == 0
    with pytest.raises(SystemExit):
        train.parse_args(["--ema", "1"])
    assert "--ema 1: a decay per step" in capsys.readouterr().err
    # a config.json written before the rename reads the same
    expected = dataclasses.replace(train.Config(), test_root="t", validation_root="v", test_every=3)
    assert train.config_from_dict({"val_root": "t", "select_root": "v", "val_every": 3, "gone": 1}) == expected
