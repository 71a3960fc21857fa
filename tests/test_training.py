"""models/training.py: the training step, the schedule, RNG state, the grown CTC head, distillation, metrics.csv."""

from __future__ import annotations

import csv
import random

import numpy as np
import pytest
import torch

from models.checkpoint import load_model
from models.registry import ARCH_NAMES, build_model, default_arch_args
from models.training import (
    METRIC_FIELDS,
    append_metrics_row,
    distillation_loss,
    grad_scaler,
    load_with_grown_head,
    parameter_groups,
    rng_state,
    set_rng_state,
    start_metrics_csv,
    train_step,
    warmup_cosine,
)

TINY_CRNN = {"channels": (8, 16, 32, 32, 32, 32, 32), "hidden": 16}


def tiny_model(num_classes: int = 12) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("vanilla_crnn", num_classes, 1, **TINY_CRNN)


def step(model, optimizer, images, clip: float = 5.0):
    targets, lengths = torch.tensor([1, 2, 3, 4, 5, 6]), torch.tensor([3, 3])
    return train_step(model, images, targets, lengths, optimizer, grad_scaler("off", images.device), amp="off",
                      clip=clip)  # fmt: skip


def test_train_step_updates_the_model_and_a_non_finite_loss_updates_nothing(monkeypatch):
    model = tiny_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    images = torch.randn(2, 1, 32, 128)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss, logits = step(model, optimizer, images)
    assert torch.isfinite(loss) and logits.shape == (2, 32, 12)
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())

    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    monkeypatch.setattr(torch.nn.functional, "ctc_loss", lambda *a, **k: torch.tensor(float("nan")))
    loss, _ = step(model, optimizer, images)
    assert not torch.isfinite(loss)
    assert all(torch.equal(after[n], p) for n, p in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())


def test_warmup_then_cosine_to_one_percent():
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(optimizer, warmup_steps=4, total_steps=20)
    rates = []
    for _ in range(20):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4] == pytest.approx(1.0) and all(a >= b for a, b in zip(rates[3:], rates[4:], strict=False))
    assert scheduler.get_last_lr()[0] == pytest.approx(0.01)
    assert scheduler.state_dict()["lr_lambdas"] == [None]  # nothing of the schedule's code in a checkpoint


def test_rng_state_round_trip_replays_every_generator():
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_parameter_groups_follow_the_models_declaration(arch):
    model = build_model(arch, 20, **default_arch_args(arch, 32, 128))
    decay, no_decay = parameter_groups(model, 1e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} == model.no_weight_decay()
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_grown_head_keeps_old_classes_and_every_other_weight(arch):
    args = default_arch_args(arch, 32, 128)
    torch.manual_seed(0)
    old = build_model(arch, 20, **args)
    torch.manual_seed(1)
    new = build_model(arch, 25, **args)
    fresh_rows = new.ctc_head.weight[20:].detach().clone()
    load_with_grown_head(new, old.state_dict())
    assert torch.equal(new.ctc_head.weight[:20], old.ctc_head.weight)
    assert torch.equal(new.ctc_head.bias[:20], old.ctc_head.bias)
    assert torch.equal(new.ctc_head.weight[20:], fresh_rows)
    head = new.ctc_head_name
    old_state = old.state_dict()
    for name, value in new.state_dict().items():
        if not name.startswith(f"{head}."):
            assert torch.equal(value, old_state[name]), name
    assert f"{head}.weight" in old.state_dict()  # the caller's state dict is left whole


def test_distillation_loss_is_zero_on_the_teacher_itself_and_trains_only_the_student(sharp_models):
    teacher = load_model(sharp_models["vanilla_crnn"] / "best.pt").model
    images = torch.randn(4, 1, 32, 128)
    with torch.no_grad():
        own = teacher(images).log_softmax(2).transpose(0, 1)
    assert abs(float(distillation_loss(teacher, images, own, "off"))) < 1e-5
    student = torch.zeros_like(own, requires_grad=True)  # uniform: far from the decisive teacher
    loss = distillation_loss(teacher, images, student.log_softmax(2), "off")
    assert float(loss.detach()) > 0.5
    loss.backward()
    assert student.grad is not None and all(p.grad is None for p in teacher.parameters())


def test_distillation_on_some_images_shows_the_teacher_only_those(sharp_models):
    teacher = load_model(sharp_models["vanilla_crnn"] / "best.pt").model
    seen = []
    teacher.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    images = torch.randn(4, 1, 32, 128)
    with torch.no_grad():
        shape = teacher(images).shape  # (B, T, C)
    student = torch.randn(shape[1], 4, shape[2]).log_softmax(2)
    seen.clear()
    every = distillation_loss(teacher, images, student, "off")
    all_taught = distillation_loss(teacher, images, student, "off", torch.tensor([True] * 4))
    assert torch.allclose(every, all_taught) and seen == [4, 4]
    none = distillation_loss(teacher, images, student, "off", torch.tensor([False] * 4))
    assert float(none) == 0.0 and seen == [4, 4]  # the teacher was not run
    half = distillation_loss(teacher, images, student, "off", torch.tensor([True, False, True, False]))
    assert seen[-1] == 2
    alone = distillation_loss(teacher, images[[0, 2]], student[:, [0, 2]], "off")
    assert torch.allclose(half, alone / 2)  # the mean is over the whole batch: fewer taught images pull less


def test_metrics_csv_resume_keeps_only_epochs_before_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    start_metrics_csv(path)
    for epoch in (1, 2, 3):
        append_metrics_row(path, {"epoch": epoch, "train_loss": "1.0"})
    start_metrics_csv(path, keep_before=3)  # last.pt holds epoch 2: the row of epoch 3 is redone
    with open(path, encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == METRIC_FIELDS
        assert [int(r["epoch"]) for r in reader] == [1, 2]


@pytest.mark.parametrize("preset", ["mild", "strong"])
def test_augmentation_replays_from_the_saved_rng_state(preset):
    from models.augment import build_augment

    augment, canvas = build_augment(strength=3.0, preset=preset), np.full((32, 128, 3), 200, np.uint8)
    canvas[8:24, 20:100] = 30
    state = rng_state()
    first = [augment(canvas) for _ in range(6)]
    set_rng_state(state)  # what --resume does: the same images get the same augmentation
    assert all(np.array_equal(a, b) for a, b in zip(first, [augment(canvas) for _ in range(6)], strict=True))
    assert any(not np.array_equal(a, canvas) for a in first)
    assert all(a.shape == canvas.shape and a.dtype == np.uint8 for a in first)


def test_strong_augmentation_moves_more_than_mild():
    from models.augment import build_augment

    canvas = np.full((32, 128, 1), 230, np.uint8)
    canvas[8:24, 20:100] = 30
    changed = {}
    for preset in ("mild", "strong"):
        augment = build_augment(preset=preset)
        np.random.seed(0)
        outs = [augment(canvas) for _ in range(40)]
        changed[preset] = np.mean([np.mean(np.abs(o.astype(int) - canvas) > 60) for o in outs])
    assert changed["strong"] > 1.5 * changed["mild"]
    with pytest.raises(ValueError, match="one of mild, strong"):
        build_augment(preset="heavy")
