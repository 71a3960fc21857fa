"""The reusable pieces of the training loop: one training step, the learning-rate schedule, RNG state, autocast,
the metrics CSV and its plot. ``train.py`` (the tutorial driver) and ``bench/train_speed.py`` both use them, so
the step that is benchmarked is the step that trains.
"""

from __future__ import annotations

import copy
import csv
import math
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .charset import BLANK

# Columns of metrics.csv, one row per epoch. ``select_*`` is the validation (model-selection) split; the names are
# kept so that metrics files written before the rename still read the same.
METRIC_FIELDS = ["epoch", "lr", "train_loss", "skipped", "select_em", "select_em_nocase", "select_cer",
                 "test_em", "test_em_nocase", "test_cer", "test_answer_acc", "seconds", "images_per_s"]  # fmt: skip


# ---------------------------------------------------------------- precision and devices
def cpu_runs_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 or AMX); on others bf16 autocast is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # no oneDNN build or the private probe is gone: do as asked
        return True


def autocast(amp: str, device: torch.device) -> torch.autocast:
    """``amp``: ``auto`` (fp16 or bf16 on CUDA, off on CPU), ``fp16``, ``bf16`` (on the CPU too) or ``off``."""
    if amp == "off" or (device.type == "cpu" and amp != "bf16"):
        return torch.autocast(device.type, enabled=False)
    if device.type == "cuda":
        dtype = torch.bfloat16 if amp == "bf16" or torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", dtype=torch.bfloat16)


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaling, needed only where autocast runs in fp16 (CUDA without bf16); a no-op elsewhere."""
    fp16 = device.type == "cuda" and amp in ("auto", "fp16") and not torch.cuda.is_bf16_supported()
    return torch.amp.GradScaler("cuda", enabled=fp16)


def to_device(images: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's RuntimeError."""
    text = str(error)
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
    )


# ---------------------------------------------------------------- optimisation
def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on every parameter except those the model lists in ``no_weight_decay()``."""
    skip = model.no_weight_decay()
    named = list(model.named_parameters())
    return [
        {"params": [p for n, p in named if n not in skip], "weight_decay": weight_decay},
        {"params": [p for n, p in named if n in skip], "weight_decay": 0.0},
    ]


def freeze_first_convs(model: nn.Module, n: int) -> int:
    """Keep the first ``n`` convolutions fixed, with every parameter registered before the next one (their norms);
    their BatchNorm statistics still follow the new data. Returns how many parameters stay fixed."""
    convs, frozen = 0, 0
    for _, parameter in model.named_parameters():
        if parameter.dim() == 4:
            convs += 1
        if convs > n:
            break
        parameter.requires_grad_(False)
        frozen += parameter.numel()
    return frozen


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int):
    """Per-step schedule: linear warm-up to the optimizer's lr over ``warmup_steps``, then cosine down to 1% of it
    at ``total_steps``."""

    def factor(step: int) -> float:  # a plain function: LambdaLR keeps it out of the scheduler's state_dict
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class WeightAverage:
    """An exponential moving average of a model's weights (``train.py --ema``), updated after every step and
    evaluated and saved in place of the weights the optimizer moves. The decay ramps up as ``(1 + n) / (10 + n)``
    over the first steps, so a short run is not dominated by its starting weights; integer buffers (batch-norm
    counters) are copied."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay {decay:g}: above 0 and below 1 (e.g. 0.99)")
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for average, current in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if average.dtype.is_floating_point:
                average.lerp_(current.to(average.dtype), 1 - decay)
            else:
                average.copy_(current)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "weights": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        self.model.load_state_dict(state["weights"])


def load_with_grown_head(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model``, whose CTC head (``model.ctc_head_name``) may have more classes: old classes
    keep their ids and weights, new ones keep the fresh initialisation."""
    name, state = model.ctc_head_name, dict(state)
    weight, bias = state.pop(f"{name}.weight"), state.pop(f"{name}.bias")
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        model.ctc_head.weight[: weight.shape[0]] = weight
        model.ctc_head.bias[: bias.shape[0]] = bias


def distillation_loss(
    teacher: nn.Module, images: torch.Tensor, log_probs: torch.Tensor, amp: str, taught: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over frames of KL(teacher || student): the teacher's per-frame distributions (blank included) give
    the student an alignment from the first step, which lets it skip CTC's long all-blank plateau, and keep what
    the teacher reads while it learns new families.

    ``log_probs``: the student's ``(T, B, C_student)``; the teacher's classes are the first ``C_teacher`` of them.
    ``taught``: a ``(B,)`` bool mask of the images distilled (the teacher only sees those); None = all. The mean is
    over the whole batch, so a batch with fewer taught images pulls less."""
    if taught is not None:
        if not bool(taught.any()):
            return log_probs.new_zeros(())
        taught = taught.to(images.device)
        images, log_probs = images[taught], log_probs[:, taught]
    with torch.no_grad(), autocast(amp, images.device):
        teacher_log = teacher(images).float().log_softmax(2).transpose(0, 1)  # (T, B, C_teacher)
    student_log = log_probs[..., : teacher_log.shape[2]]
    kl = (teacher_log.exp() * (teacher_log - student_log)).sum(2).mean(0)  # (B_taught,)
    return kl.mean() if taught is None else kl.sum() / len(taught)


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    *,
    amp: str,
    clip: float,
    teacher: nn.Module | None = None,
    distill: float = 1.0,
    taught: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, CTC loss (plus distillation from ``teacher``), backward, gradient clipping and one optimizer step.

    ``images (B, C, H, W)`` on the model's device; ``targets`` the concatenated class ids and ``target_lengths``
    their lengths (models.codec.encode_batch). Returns ``(loss, logits (B, T, C))``. A non-finite loss updates
    nothing: the caller decides whether to skip the batch or stop.
    """
    with autocast(amp, images.device):
        logits = model(images)  # (B, T, C)
    log_probs = logits.float().log_softmax(2).transpose(0, 1)  # (T, B, C) for CTC
    input_lengths = torch.full((images.shape[0],), log_probs.shape[0], dtype=torch.long)
    loss = F.ctc_loss(log_probs, targets.to(images.device), input_lengths, target_lengths, blank=BLANK,
                      zero_infinity=True)  # fmt: skip
    if teacher is not None:
        loss = loss + distill * distillation_loss(teacher, images, log_probs, amp, taught)
    optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        return loss, logits
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()
    return loss, logits


# ---------------------------------------------------------------- random state: what makes --resume exact
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG the loop touches, in types that ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def worker_init(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator (set per epoch); numpy and random follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


# ---------------------------------------------------------------- metrics.csv and curves.png
def start_metrics_csv(path: Path, keep_before: int = 0) -> None:
    """Write the header, keeping the rows of epochs before ``keep_before`` (a resumed run drops rows newer than
    last.pt, so no epoch is counted twice)."""
    kept = []
    if keep_before and path.is_file():
        with open(path, encoding="utf-8") as f:
            kept = [r for r in csv.DictReader(f) if int(r["epoch"]) < keep_before]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(kept)


def append_metrics_row(path: Path, row: dict) -> None:
    with open(path, "a", newline="", encoding="utf-8") as f:
        csv.DictWriter(f, fieldnames=METRIC_FIELDS).writerow(row)


def plot_curves(csv_path: Path, out_path: Path) -> None:
    """Training loss and accuracy per epoch from metrics.csv, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    ax1.plot(epochs, [float(r["train_loss"]) for r in rows], marker="o")
    ax1.set(xlabel="epoch", ylabel="CTC loss", title="training loss")
    for key, name in (("select_em", "validation EM"), ("test_em", "test EM"), ("select_cer", "validation CER")):
        points = [(e, float(r[key])) for e, r in zip(epochs, rows, strict=True) if r.get(key)]
        if points:
            ax2.plot(*zip(*points, strict=True), marker="o", label=name)
    ax2.set(xlabel="epoch", ylabel="rate", title="accuracy", ylim=(0, 1))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
