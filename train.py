"""Train the CTC captcha recognizers: vanilla CRNN, ResNet34-CRNN and SVTR-Tiny.

The reference tutorial's commands work as written, e.g.

    python train.py --arch vanilla_crnn --train-root dataset/train --val-root dataset/test \
        --imgH 60 --imgW 256 --pad-multiple 4 --downsample 4 --batch 192 --epochs 30 --aug --num-workers 1
    python train.py --arch all --epochs 10                       # the three models one after another
    python train.py --arch svtr_tiny --resume                    # continue an interrupted run exactly
    python train.py --arch vanilla_crnn --init checkpoints/vanilla_crnn/best.pt --train-root my_data  # fine-tune
    torchrun --nproc_per_node=4 train.py --arch crnn_resnet34    # several GPUs (or CPU processes with gloo)

Model selection uses a validation split that is not the test set: ``<train-root>/../val`` when it exists, else a
held-out slice of the training set (``--val-fraction``). ``--val-root`` (the tutorial's flag, dataset/test by
default) is the test set: it is reported every ``--val-every`` epochs and at the end, never used to choose.

Writes ``checkpoints/<arch>/``: best.pt, last.pt, model.onnx (from best, with metadata), config.json,
metrics.csv and curves.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from models.augment import build_augment
from models.charset import Charset
from models.checkpoint import load_model, read_checkpoint, save_checkpoint
from models.codec import encode_batch, greedy_decode
from models.dataset import CaptchaDataset, Sample, collate, read_folder
from models.export import export_onnx
from models.meta import ModelMeta
from models.preprocess import InputSpec
from models.registry import ARCH_NAMES, build_model, default_arch_args, default_channels
from models.report import Scored, format_table, group_table, sample_lines


@dataclass
class Config:
    arch: str = "vanilla_crnn"  # one of ARCH_NAMES, or "all"
    train_root: str = "dataset/train"  # folder with images/ and labels.txt
    val_root: str = "dataset/test"  # test set: reported, never used for model selection
    select_root: str = ""  # validation split for model selection; default <train_root>/../val or a held-out slice
    val_fraction: float = 0.02  # held out of train for selection when there is no val folder
    out: str = "checkpoints"  # checkpoints/<arch>/ is written
    img_h: int = 32  # input height in pixels (tutorial: --imgH)
    img_w: int = 128  # input width in pixels; every image is resized to img_h and padded to this (--imgW)
    pad_multiple: int = 4  # img_w is rounded up to a multiple of this
    downsample: int = 4  # width downsampling of the network; every recognizer here is 4x, checked
    channels: int = 0  # 0 = the architecture's default (1 for vanilla_crnn, 3 for the others)
    arch_args: str = "{}"  # JSON of extra model arguments, e.g. '{"hidden": 128}'
    max_label_len: int = 0  # 0 = max(8, longest label in the data)
    epochs: int = 30
    batch: int = 64  # per process
    lr: float = 1e-3  # peak learning rate after warm-up
    weight_decay: float = 1e-4  # on weights only, not on norms and biases
    warmup: float = 0.5  # warm-up length in epochs (linear), then cosine to lr * 0.01
    clip: float = 5.0  # gradient-norm clipping
    aug: bool = False  # train-only augmentation (albumentations)
    amp: str = "auto"  # auto: fp16/bf16 on CUDA, off on CPU; bf16: bf16 autocast on CPU too; off
    channels_last: bool = False  # memory format for the conv models (faster on some CPUs)
    compile: bool = False  # torch.compile the model
    num_workers: int = 1  # data-loading processes
    seed: int = 42
    resume: bool = False  # continue from <out>/<arch>/last.pt
    init: str = ""  # fine-tune from this checkpoint (charset extended with new characters)
    teacher: str = ""  # distil from this trained checkpoint: its input size and charset are adopted (with --init:
    #                    the init model must already have them, e.g. an earlier student of the same teacher)
    distill: float = 1.0  # weight of the frame-wise KL divergence to the teacher, added to the CTC loss
    dry_run: bool = False  # one batch on the CPU, nothing written
    val_every: int = 1  # evaluate the test set every N epochs (selection runs every epoch)
    print_samples: int = 8  # label | prediction | confidence rows shown per evaluation
    limit_train: int = 0  # use only the first N training samples (0 = all)
    device: str = ""  # "" = cuda when available, else cpu


def distillation_loss(teacher: torch.nn.Module, images: torch.Tensor, log_probs: torch.Tensor, cfg: Config,
                      device: torch.device) -> torch.Tensor:  # fmt: skip
    """Mean over frames of KL(teacher || student): the teacher's per-frame distributions (blank included) give
    the student an alignment from the first step, which lets it skip CTC's long all-blank plateau."""
    with torch.no_grad(), autocast(cfg, device):
        teacher_log = teacher(images).float().log_softmax(2).transpose(0, 1)  # (T, B, C_teacher)
    student_log = log_probs[..., : teacher_log.shape[2]]
    return (teacher_log.exp() * (teacher_log - student_log)).sum(2).mean()


def parse_args() -> list[Config]:
    parser = argparse.ArgumentParser(description="Train CTC captcha recognizers", allow_abbrev=False)
    defaults = Config()
    flag_names = {"img_h": "--imgH", "img_w": "--imgW"}
    for name, value in asdict(defaults).items():
        flag = flag_names.get(name, "--" + name.replace("_", "-"))
        if isinstance(value, bool):
            parser.add_argument(flag, dest=name, action="store_true", default=value)
        else:
            parser.add_argument(flag, dest=name, type=type(value), default=value)
    args = parser.parse_args()
    if args.arch != "all" and args.arch not in ARCH_NAMES:
        parser.error(f"--arch must be one of {', '.join(ARCH_NAMES)} or all")
    base = Config(**vars(args))
    arches = ARCH_NAMES if base.arch == "all" else (base.arch,)
    return [Config(**{**asdict(base), "arch": arch}) for arch in arches]


# ---------------------------------------------------------------- distributed set-up (torchrun sets the env)
def setup_distributed(cfg: Config) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = torch.cuda.is_available() and not cfg.dry_run and cfg.device != "cpu"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device(cfg.device or "cpu")


def log(rank: int, *parts) -> None:
    if rank == 0:
        tqdm.write(" ".join(str(p) for p in parts))


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


# ---------------------------------------------------------------- data
def load_splits(cfg: Config, charset: Charset | None, rank: int):
    """Training, selection and test samples; the charset is built from train + selection labels when absent."""
    train_samples, train_report = read_folder(cfg.train_root, source="")
    reports = [train_report]
    select_root = Path(cfg.select_root) if cfg.select_root else Path(cfg.train_root).parent / "val"
    if select_root.is_dir() and select_root.resolve() != Path(cfg.val_root).resolve():
        select_samples, select_report = read_folder(select_root)
        reports.append(select_report)  # its missing files and bad lines are reported too, not dropped silently
    else:  # deterministic held-out slice of train
        order = np.random.default_rng(cfg.seed).permutation(len(train_samples))
        n_select = max(1, int(len(train_samples) * cfg.val_fraction))
        chosen = set(order[:n_select].tolist())
        select_samples = [s for i, s in enumerate(train_samples) if i in chosen]
        train_samples = [s for i, s in enumerate(train_samples) if i not in chosen]
        select_root = Path(f"{cfg.train_root} (held-out {n_select})")
    if charset is None:
        shared = Path(cfg.train_root).parent / "charset.txt"
        if shared.is_file():
            charset = Charset.load(shared)
        else:
            charset = Charset.from_labels(s.label for s in train_samples + select_samples)
    for report in reports:
        for line in report.lines():
            log(rank, line)

    def keep(samples: list[Sample], name: str) -> list[Sample]:
        bad = [s for s in samples if charset.unknown(s.label)]
        if bad:
            chars = "".join(sorted({c for s in bad for c in charset.unknown(s.label)}))
            log(rank, f"{name}: {len(bad)} labels with characters outside the charset skipped: {chars!r}")
        return [s for s in samples if not charset.unknown(s.label)]

    train_samples = keep(train_samples, "train")
    select_samples = keep(select_samples, "selection")
    test_samples: list[Sample] = []
    if cfg.val_root and Path(cfg.val_root).is_dir():
        test_samples, test_report = read_folder(cfg.val_root, charset)
        for line in test_report.lines():
            log(rank, line)
    if cfg.limit_train:
        train_samples = train_samples[: cfg.limit_train]
    if not train_samples:
        raise SystemExit(f"no usable training samples in {cfg.train_root}: run `make data` or check labels.txt")
    log(
        rank, f"train {len(train_samples)} | selection {len(select_samples)} ({select_root}) | test {len(test_samples)}"
    )
    return train_samples, select_samples, test_samples, charset


# ---------------------------------------------------------------- evaluation (rank 0, bare model)
@torch.no_grad()
def evaluate(model, samples: list[Sample], spec: InputSpec, charset: Charset, cfg: Config, device, desc: str):
    """Predict every sample; returns the scored rows and the number of unreadable images."""
    if not samples:
        return [], 0
    model.eval()
    loader = DataLoader(
        CaptchaDataset(samples, spec), batch_size=max(64, cfg.batch), shuffle=False,
        num_workers=cfg.num_workers, collate_fn=collate,
    )  # fmt: skip
    rows, unreadable = [], 0
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        unreadable += len(batch["errors"])
        if not batch["labels"]:
            continue
        with autocast(cfg, device):
            logits = model(to_device(batch["images"], device, cfg))
        for index, decoded in zip(batch["indices"], greedy_decode(logits.float().cpu().numpy(), charset), strict=True):
            s = samples[index]
            rows.append(Scored(s.path.name, s.label, decoded.text, decoded.confidence, s.source, s.type, s.answer))
    model.train()
    return rows, unreadable


def cpu_runs_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 or AMX); on others bf16 autocast is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # no oneDNN build or the private probe is gone: do as asked
        return True


def resolve_amp(cfg: Config, device: torch.device, rank: int) -> Config:
    """``--amp bf16`` on a CPU without bf16 kernels trains in fp32: emulated bf16 made a ResNet-CRNN step 14x slower
    on an AVX2-only EPYC (docs/benchmarks.md, "Training on CPUs without AVX-512")."""
    if device.type != "cpu" or cfg.amp != "bf16" or cpu_runs_bf16():
        return cfg
    log(rank, "warning: --amp bf16: this CPU has no bf16 instructions (AVX-512 or AMX), where bf16 is emulated and "
              "training runs many times slower; training in fp32 instead (as with --amp off)")  # fmt: skip
    return replace(cfg, amp="off")


def autocast(cfg: Config, device: torch.device):
    if cfg.amp == "off" or (device.type == "cpu" and cfg.amp != "bf16"):
        return torch.autocast(device.type, enabled=False)
    if device.type == "cuda":
        dtype = torch.bfloat16 if cfg.amp == "bf16" or torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", dtype=torch.bfloat16)


def to_device(images: torch.Tensor, device: torch.device, cfg: Config) -> torch.Tensor:
    images = images.to(device, non_blocking=True)
    return images.contiguous(memory_format=torch.channels_last) if cfg.channels_last else images


def plot_curves(csv_path: Path, out_path: Path) -> None:
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
    for key, name in (("select_em", "selection EM"), ("test_em", "test EM"), ("select_cer", "selection CER")):
        points = [(e, float(r[key])) for e, r in zip(epochs, rows, strict=True) if r.get(key)]
        if points:
            ax2.plot(*zip(*points, strict=True), marker="o", label=name)
    ax2.set(xlabel="epoch", ylabel="rate", title="accuracy", ylim=(0, 1))
    ax2.legend()
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------- one architecture
def train(cfg: Config) -> dict:
    rank, world, device = setup_distributed(cfg)
    if cfg.dry_run:
        device = torch.device("cpu")
    cfg = resolve_amp(cfg, device, rank)
    seed_everything(cfg.seed + rank)
    out_dir = Path(cfg.out) / cfg.arch
    img_w = math.ceil(cfg.img_w / cfg.pad_multiple) * cfg.pad_multiple
    channels = cfg.channels or default_channels(cfg.arch)
    spec = InputSpec(cfg.img_h, img_w, channels)

    # ---- what we start from: a resumed run, a fine-tuning checkpoint, or nothing
    resume_state = None
    init_meta = None
    if cfg.resume:
        last = out_dir / "last.pt"
        if not last.is_file():
            raise SystemExit(f"--resume: no {last}; start without --resume")
        resume_state = read_checkpoint(last)
        init_meta = ModelMeta.from_dict(resume_state["meta"])
        spec = init_meta.spec
    elif cfg.init:
        init_meta = load_model(cfg.init).meta
        if init_meta.arch != cfg.arch:
            raise SystemExit(f"--init {cfg.init} is a {init_meta.arch}, not a {cfg.arch}")
        spec = init_meta.spec
    teacher = None
    if cfg.teacher:
        teacher = load_model(cfg.teacher, device)
        if cfg.init and (init_meta.spec != teacher.meta.spec or not init_meta.charset.startswith(teacher.meta.charset)):
            raise SystemExit(f"--init {cfg.init} does not fit --teacher {cfg.teacher}: the student must take the "
                             "teacher's input size and start its charset with the teacher's (a model distilled from "
                             "this teacher does); drop one of the two")  # fmt: skip
        spec = teacher.meta.spec  # the student sees exactly the teacher's input (a resumed run already does)
        log(rank, f"--teacher {cfg.teacher}: {teacher.meta.arch}, input {spec.img_w}x{spec.img_h}x{spec.channels}")
    charset = Charset(init_meta.charset) if init_meta and cfg.resume else None
    train_samples, select_samples, test_samples, data_charset = load_splits(cfg, charset, rank)
    # A fresh run from --init or --teacher keeps that model's classes at their ids (the teacher's frame distributions
    # line up, the fine-tuned head is reused) and appends the characters only the data has.
    prefix = None if cfg.resume else init_meta if cfg.init else teacher.meta if teacher else None
    if prefix is not None:
        charset = Charset(prefix.charset).extend(s.label for s in train_samples + select_samples)
        train_samples, select_samples, test_samples, _ = load_splits(cfg, charset, rank)
        log(rank, f"--{'init' if cfg.init else 'teacher'}: charset {len(prefix.charset)} -> {len(charset)} symbols")
    charset = charset or data_charset

    # ---- model
    longest = max(len(s.label) for s in train_samples + select_samples)
    if init_meta:
        arch_args, max_label_len = dict(init_meta.arch_args), max(init_meta.max_label_len, longest)
    else:
        arch_args = {**default_arch_args(cfg.arch, spec.img_h, spec.img_w), **json.loads(cfg.arch_args)}
        max_label_len = cfg.max_label_len or max(8, longest)
    model = build_model(cfg.arch, charset.num_classes, spec.channels, max_label_len=max_label_len, **arch_args)
    if cfg.downsample != model.width_stride:
        raise SystemExit(f"--downsample {cfg.downsample}: {cfg.arch} downsamples width {model.width_stride}x")
    if spec.img_w < model.min_width:
        raise SystemExit(f"--imgW {spec.img_w} < {model.min_width}: too narrow for {max_label_len}-character labels")
    meta = ModelMeta(cfg.arch, arch_args, charset.symbols, spec.img_h, spec.img_w, spec.channels,
                     max_label_len=max_label_len)  # fmt: skip
    if resume_state:
        model.load_state_dict(resume_state["state_dict"])
    elif cfg.init:
        init_state = read_checkpoint(cfg.init)["state_dict"]
        head_w, head_b = init_state.pop("head.weight"), init_state.pop("head.bias")
        model.load_state_dict(init_state, strict=False)
        with torch.no_grad():  # old classes keep their ids; new ones start from the fresh initialisation
            model.head.weight[: head_w.shape[0]] = head_w
            model.head.bias[: head_b.shape[0]] = head_b
    model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if teacher is not None:
        if teacher.model.sequence_length(spec.img_w) != model.sequence_length(spec.img_w):
            raise SystemExit(f"--teacher emits {teacher.model.sequence_length(spec.img_w)} frames, {cfg.arch} "
                             f"{model.sequence_length(spec.img_w)}: distillation needs the same width stride")  # fmt: skip
        if cfg.channels_last:
            teacher.model.to(memory_format=torch.channels_last)
    params = sum(p.numel() for p in model.parameters())
    log(rank, f"[{cfg.arch}] {params / 1e6:.2f}M parameters, input {spec.img_w}x{spec.img_h}x{spec.channels}, "
              f"{charset.num_classes} classes, T={model.sequence_length(spec.img_w)}, device {device}, world {world}")  # fmt: skip
    bare = model
    if world > 1:
        if device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            bare = model
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.index is not None else None
        )
    train_model = torch.compile(model) if cfg.compile else model

    # ---- optimisation: AdamW (no decay on norms/biases), warm-up then cosine, per step
    decay = [p for n, p in bare.named_parameters() if p.dim() > 1 and "pos" not in n]
    no_decay = [p for n, p in bare.named_parameters() if not (p.dim() > 1 and "pos" not in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr
    )
    augment = build_augment() if cfg.aug else None
    train_set = CaptchaDataset(train_samples, spec, augment)
    sampler = (
        DistributedSampler(train_set, world, rank, shuffle=True, seed=cfg.seed, drop_last=True) if world > 1 else None
    )
    generator = torch.Generator()
    loader = DataLoader(
        train_set, batch_size=cfg.batch, shuffle=sampler is None, sampler=sampler, drop_last=len(train_set) > cfg.batch,
        num_workers=0 if cfg.dry_run else cfg.num_workers, collate_fn=collate, worker_init_fn=worker_init,
        generator=generator, pin_memory=device.type == "cuda", persistent_workers=False,
    )  # fmt: skip
    steps_per_epoch = max(1, len(loader))
    total_steps = cfg.epochs * steps_per_epoch
    warmup_steps = max(1, int(cfg.warmup * steps_per_epoch))

    def lr_factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and cfg.amp in ("auto", "fp16")
                                  and not torch.cuda.is_bf16_supported())  # fmt: skip

    start_epoch, best = 1, {"em": -1.0, "cer": float("inf"), "epoch": 0}
    if resume_state:
        training = resume_state["training"]
        optimizer.load_state_dict(training["optimizer"])
        scheduler.load_state_dict(training["scheduler"])
        scaler.load_state_dict(training["scaler"])
        start_epoch, best = training["epoch"] + 1, training["best"]
        set_rng_state(training["rng"])
        log(rank, f"resumed from {out_dir / 'last.pt'}: epoch {training['epoch']} done, best EM {best['em']:.4f}")
        if start_epoch > cfg.epochs:
            log(rank, f"all {cfg.epochs} epochs are done already")

    if rank == 0 and not cfg.dry_run:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2, ensure_ascii=False), encoding="utf-8")
    metrics_csv = out_dir / "metrics.csv"
    fields = ["epoch", "lr", "train_loss", "skipped", "select_em", "select_em_nocase", "select_cer",
              "test_em", "test_em_nocase", "test_cer", "test_answer_acc", "seconds", "images_per_s"]  # fmt: skip
    if rank == 0 and not cfg.dry_run:
        kept = []
        if resume_state and metrics_csv.is_file():
            with open(metrics_csv, encoding="utf-8") as f:
                kept = [r for r in csv.DictReader(f) if int(r["epoch"]) < start_epoch]
        with open(metrics_csv, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)

    # ---- the loop
    bad_steps = 0  # non-finite losses in a row, across epoch ends: an epoch of fewer than 5 batches must not hide them
    for epoch in range(start_epoch, cfg.epochs + 1):
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator.manual_seed(cfg.seed * 1000 + epoch)  # the epoch's shuffle and augmentation, same after resume
        train_model.train()
        started, seen, loss_sum, loss_n, skipped = time.time(), 0, 0.0, 0, 0
        bar = tqdm(loader, desc=f"[{cfg.arch}] epoch {epoch}/{cfg.epochs}", disable=rank != 0, dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 30)  # fmt: skip
        for batch in bar:
            for error in batch["errors"]:
                skipped += 1
                log(rank, f"skipped unreadable image {error}")
            if not batch["labels"]:
                continue
            images = to_device(batch["images"], device, cfg)
            targets, lengths = encode_batch(batch["labels"], charset)
            with autocast(cfg, device):
                logits = train_model(images)  # (B, T, C)
            log_probs = logits.float().log_softmax(2).transpose(0, 1)  # (T, B, C) for CTC
            input_lengths = torch.full((images.shape[0],), log_probs.shape[0], dtype=torch.long)
            loss = F.ctc_loss(log_probs, torch.from_numpy(targets).to(device), input_lengths,
                              torch.from_numpy(lengths), blank=0, zero_infinity=True)  # fmt: skip
            if teacher is not None:
                loss = loss + cfg.distill * distillation_loss(teacher.model, images, log_probs, cfg, device)
            if not torch.isfinite(loss):
                bad_steps += 1
                log(rank, f"non-finite loss at epoch {epoch}; batch skipped ({bad_steps} in a row)")
                if bad_steps >= 5:
                    raise SystemExit("loss is NaN/inf for 5 batches in a row: lower --lr or turn off --amp")
                optimizer.zero_grad(set_to_none=True)
                continue
            bad_steps = 0
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            seen += images.shape[0]
            loss_sum += loss.item()
            loss_n += 1
            bar.set_postfix(loss=f"{loss_sum / loss_n:.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}", refresh=False)
            if cfg.dry_run:
                log(
                    rank,
                    f"dry run: one batch of {images.shape[0]}, loss {loss.item():.3f}, logits {tuple(logits.shape)}",
                )
                return {"loss": loss.item()}
        if loss_n == 0:  # not one batch trained: saving or exporting this model would pass off an untrained one
            raise SystemExit(f"epoch {epoch}: no batch had a finite loss ({skipped} unreadable images); nothing saved")
        elapsed = time.time() - started
        row = {"epoch": epoch, "lr": f"{scheduler.get_last_lr()[0]:.3e}", "skipped": skipped, "seconds": f"{elapsed:.1f}",
               "train_loss": f"{loss_sum / max(1, loss_n):.4f}", "images_per_s": f"{seen * world / max(elapsed, 1e-9):.1f}"}  # fmt: skip

        if rank == 0:
            rows, unreadable = evaluate(bare, select_samples, spec, charset, cfg, device, "selection")
            select = group_table(rows)[0]
            row.update(select_em=f"{select['em']:.4f}", select_em_nocase=f"{select['em_nocase']:.4f}",
                       select_cer=f"{select['cer']:.4f}")  # fmt: skip
            log(rank, f"[{cfg.arch}] epoch {epoch}: loss {row['train_loss']}, {row['images_per_s']} img/s, "
                      f"selection EM {select['em']:.2%} (no case {select['em_nocase']:.2%}) CER {select['cer']:.2%}"
                      f"{f', {unreadable} unreadable images skipped' if unreadable else ''}")  # fmt: skip
            if test_samples and (epoch % cfg.val_every == 0 or epoch == cfg.epochs):
                rows, unreadable = evaluate(bare, test_samples, spec, charset, cfg, device, "test")
                table = group_table(rows)
                test = table[0]
                row.update(test_em=f"{test['em']:.4f}", test_em_nocase=f"{test['em_nocase']:.4f}",
                           test_cer=f"{test['cer']:.4f}",
                           test_answer_acc="" if test["answer_acc"] is None else f"{test['answer_acc']:.4f}")  # fmt: skip
                log(rank, f"test set {cfg.val_root} ({unreadable} unreadable):\n{format_table(table)}")
                for line in sample_lines(rows, cfg.print_samples):
                    log(rank, "  " + line)
            improved = (select["em"], -select["cer"]) > (best["em"], -best["cer"])
            if improved:
                best = {"em": select["em"], "cer": select["cer"], "epoch": epoch}
            meta.metrics = {"selection": select, "epoch": epoch, "parameters": params}
            if "test_em" in row:
                meta.metrics["test"] = test
            state = {
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "epoch": epoch, "best": best, "config": asdict(cfg), "rng": rng_state(),
            }  # fmt: skip
            # Order matters for a kill at any moment: best.pt and the metrics row first, last.pt (what --resume
            # reads) last; a resume drops metrics rows newer than last.pt, so no epoch is lost or counted twice.
            if improved:
                save_checkpoint(out_dir / "best.pt", bare, meta)
            with open(metrics_csv, "a", newline="", encoding="utf-8") as f:
                csv.DictWriter(f, fieldnames=fields).writerow(row)
            save_checkpoint(out_dir / "last.pt", bare, meta, training=state)
            plot_curves(metrics_csv, out_dir / "curves.png")
        if world > 1:
            dist.barrier()

    if rank == 0 and (out_dir / "best.pt").is_file():
        export_onnx(out_dir / "best.pt", out_dir / "model.onnx")
        log(rank, f"[{cfg.arch}] best epoch {best['epoch']} (selection EM {best['em']:.2%}); wrote {out_dir}/best.pt, "
                  "last.pt, model.onnx, metrics.csv, curves.png")  # fmt: skip
    return best


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, Python's MemoryError, or the CPU allocator's RuntimeError."""
    text = str(error)
    return isinstance(error, (torch.OutOfMemoryError, MemoryError)) or (
        isinstance(error, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
    )


def main() -> None:
    configs = parse_args()
    for cfg in configs:
        try:
            train(cfg)
        except (RuntimeError, MemoryError) as e:  # torch.OutOfMemoryError is a RuntimeError
            if not is_out_of_memory(e):
                raise
            # Stop with what to do instead of a traceback; every finished epoch is already in last.pt.
            last = Path(cfg.out) / cfg.arch / "last.pt"
            resume = f"; the last finished epoch is in {last}: continue with --resume" if last.is_file() else ""
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise SystemExit(
                f"[{cfg.arch}] out of memory ({reason}): lower --batch (now {cfg.batch}) or --imgW{resume}"
            ) from e
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
