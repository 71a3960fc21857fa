"""Train the CTC captcha recognizers: vanilla CRNN, ResNet34-CRNN and SVTR-Tiny.

The reference tutorial's commands work as written, e.g.

    python train.py --arch vanilla_crnn --train-root dataset/train --test-root dataset/test \
        --imgH 60 --imgW 256 --pad-multiple 4 --downsample 4 --batch 192 --epochs 30 --aug --num-workers 1
    python train.py --arch all --epochs 10                       # the three models one after another
    python train.py --arch svtr_tiny --resume                    # continue an interrupted run exactly
    python train.py --arch vanilla_crnn --init checkpoints/vanilla_crnn/best.pt --train-root my_data  # fine-tune
    torchrun --nproc_per_node=4 train.py --arch crnn_resnet34    # several GPUs (or CPU processes with gloo)
    python train.py --finetune my_captchas --name mysite [--unlabelled more] # your site's captcha (make finetune)

Three splits. Training; validation, which chooses the best epoch: ``--validation-root``, else ``<train-root>/../val``
when it exists, else a held-out slice of the training set (``--val-fraction``); and the test set
(``--test-root``, dataset/test by default), reported every ``--test-every`` epochs and at the end, never used to
choose. ``--val-root`` and ``--select-root``, the older names of ``--test-root`` and ``--validation-root``, still work.

Writes ``<out>/<arch>/``: best.pt, last.pt, model.onnx (from best, with metadata), config.json, metrics.csv and
curves.png. The loop, top to bottom: :func:`set_up` (what we start from, data, model, optimizer),
:func:`train_one_epoch`, :func:`evaluate_epoch` (validation and test), :func:`save_epoch`, and at the end
:func:`export`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from models.augment import PRESETS as AUG_PRESETS
from models.augment import build_augment
from models.charset import Charset
from models.checkpoint import LoadedModel, load_model, read_checkpoint, save_checkpoint
from models.codec import encode_batch, greedy_decode
from models.dataset import CaptchaDataset, Sample, collate, read_folder
from models.evaluation import loader_batches, score
from models.export import export_onnx
from models.meta import ModelMeta
from models.paths import CHECKPOINTS, DATASET, TEST_SPLIT
from models.preprocess import InputSpec
from models.registry import ARCH_NAMES, build_model, default_arch_args, default_channels
from models.report import Scored, format_table, group_table, sample_lines
from models.training import (
    WeightAverage,
    append_metrics_row,
    autocast,
    cpu_runs_bf16,
    freeze_first_convs,
    grad_scaler,
    is_out_of_memory,
    load_with_grown_head,
    parameter_groups,
    plot_curves,
    rng_state,
    seed_everything,
    set_rng_state,
    start_metrics_csv,
    to_device,
    train_step,
    warmup_cosine,
    worker_init,
)


# Each field's comment is its --help line; a "# -- name" line starts an argument group.
@dataclass
class Config:
    # -- data
    train_root: str = str(DATASET / "train")  # training folder: images/ and labels.txt
    test_root: str = str(TEST_SPLIT)  # test set: reported, never used to choose the best epoch
    validation_root: str = ""  # validation split that chooses the best epoch; "" = <train-root>/../val or held out
    val_fraction: float = 0.02  # share of the training set held out for validation when there is no val folder
    limit_train: int = 0  # use only the first N training samples (0 = all)
    aug: bool = False  # train-only augmentation (albumentations)
    aug_strength: float = 1.0  # with --aug: scales how often each augmentation is applied (2 = twice as often)
    aug_preset: str = "mild"  # with --aug: mild (large sets) or strong (a few hundred labels; see models/augment.py)
    num_workers: int = 1  # data-loading processes
    # -- model
    arch: str = "vanilla_crnn"  # one of vanilla_crnn, crnn_resnet34, svtr_tiny, or all (one after another)
    img_h: int = 32  # input height in pixels
    img_w: int = 128  # input width in pixels; every image is resized to the height and padded to this width
    pad_multiple: int = 4  # the width is rounded up to a multiple of this
    downsample: int = 4  # width downsampling of the network; every recognizer here is 4x, checked
    channels: int = 0  # input channels; 0 = the architecture's default (1 for vanilla_crnn, 3 for the others)
    arch_args: str = "{}"  # JSON of extra model arguments, e.g. '{"hidden": 128}'
    max_label_len: int = 0  # longest label the model is built for; 0 = max(8, longest label in the data)
    init: str = ""  # fine-tune from this checkpoint (its charset is extended with the data's new characters)
    freeze: int = 0  # keep the first N convolutions (and their norms) fixed: cheaper steps (see docs/finetune.md)
    teacher: str = ""  # distil from this checkpoint; its input size and charset are adopted (with --init, the init
    #                    model must already have them, e.g. an earlier student of the same teacher)
    # -- optimisation
    epochs: int = 30  # passes over the training set
    batch: int = 64  # images per step and per process
    lr: float = 1e-3  # peak learning rate after warm-up (AdamW)
    weight_decay: float = 1e-4  # AdamW weight decay, on the parameters the model does not exempt (norms, biases)
    warmup: float = 0.5  # linear warm-up length in epochs, then cosine down to lr * 0.01
    clip: float = 5.0  # gradient-norm clipping threshold
    ema: float = 0.0  # validate and save an exponential moving average of the weights with this decay per step
    #                   (e.g. 0.99) instead of the weights themselves; 0 = off
    distill: float = 1.0  # weight of the frame-wise KL divergence to --teacher, added to the CTC loss
    distill_sources: str = ""  # with --teacher: distil only on training images of these sources (meta.tsv's
    #                            source column, comma-separated), e.g. the families the teacher reads well; "" = all
    amp: str = "auto"  # auto: fp16/bf16 on CUDA, off on CPU; bf16: bf16 autocast on CPU too; off: fp32
    channels_last: bool = False  # channels-last memory format for the conv models (faster on some CPUs)
    compile: bool = False  # torch.compile the model
    seed: int = 42  # seeds the model, the shuffle and the augmentation
    # -- run
    out: str = str(CHECKPOINTS)  # <out>/<arch>/ is written
    resume: bool = False  # continue exactly from <out>/<arch>/last.pt
    patience: int = 0  # stop early when validation EM has not improved for N epochs (0 = run every epoch)
    test_every: int = 1  # evaluate the test set every N epochs and at the end (validation runs every epoch)
    print_samples: int = 8  # label | prediction | confidence rows printed per test evaluation
    dry_run: bool = False  # one batch on the CPU, nothing written
    device: str = ""  # where to train (cpu, cuda, cuda:1); "" = cuda when available, else cpu
    # -- finetune
    finetune: str = ""  # your labelled captchas: fine-tune --base on them into checkpoints/<--name>/
    name: str = ""  # with --finetune: the new model's name
    unlabelled: str = ""  # with --finetune: unlabelled images of the same captcha, for self-training
    base: str = "vanilla_crnn"  # with --finetune: the model to start from (only read)
    minutes: float = 15.0  # with --finetune: the time budget of the whole run, self-training included


FLAGS = {  # the reference tutorial's flags and the old names, which stay accepted
    "img_h": ["--imgH"],
    "img_w": ["--imgW"],
    "test_root": ["--test-root", "--val-root"],
    "validation_root": ["--validation-root", "--select-root"],
    "test_every": ["--test-every", "--val-every"],
}
OLD_FIELD_NAMES = {"val_root": "test_root", "select_root": "validation_root", "val_every": "test_every"}


def config_help() -> dict[str, tuple[str, str]]:
    """``field -> (group, help)``, read from the comments of :class:`Config`: they are written once, there."""
    helps: dict[str, tuple[str, str]] = {}
    group, last = "", ""
    for line in inspect.getsource(Config).splitlines():
        if heading := re.match(r"\s+# -- (\w+)$", line):
            group = heading[1]
        elif entry := re.match(r"\s+(\w+): [^=]+ = .+?  # (.+)$", line):
            last = entry[1]
            helps[last] = (group, entry[2])
        elif more := re.match(r"\s+#\s+(.+)$", line):
            helps[last] = (group, f"{helps[last][1]} {more[1]}")
    return helps


def config_from_dict(values: dict[str, Any]) -> Config:
    """A Config from a config.json, older field names (val_root, select_root, val_every) included."""
    known = {f.name for f in fields(Config)}
    renamed = {OLD_FIELD_NAMES.get(key, key): value for key, value in values.items()}
    return Config(**{key: value for key, value in renamed.items() if key in known})


def parse_args(argv: list[str] | None = None) -> list[Config]:
    """One Config per architecture to train (``--arch all``: the three in turn)."""
    parser = argparse.ArgumentParser(description="Train CTC captcha recognizers.", allow_abbrev=False)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name, (group, text) in config_help().items():
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        default = getattr(Config, name)
        flags = FLAGS.get(name, ["--" + name.replace("_", "-")])
        text = text.replace("%", "%%")
        if isinstance(default, bool):
            groups[group].add_argument(*flags, dest=name, action="store_true", default=default, help=text)
        else:
            text += " (default: %(default)s)" if default != "" else ""
            groups[group].add_argument(*flags, dest=name, type=type(default), default=default, help=text)
    args = parser.parse_args(argv)
    if args.arch != "all" and args.arch not in ARCH_NAMES:
        parser.error(f"--arch must be one of {', '.join(ARCH_NAMES)} or all")
    if not 0 <= args.ema < 1:
        parser.error(f"--ema {args.ema:g}: a decay per step, at least 0 (off) and below 1, e.g. 0.99")
    if args.aug_preset not in AUG_PRESETS:
        parser.error(f"--aug-preset {args.aug_preset}: one of {', '.join(AUG_PRESETS)}")
    if args.aug_strength <= 0:
        parser.error(
            f"--aug-strength {args.aug_strength:g}: above 0 (1 is the default, 2 applies each one twice as often)"
        )
    base = Config(**vars(args))
    return [replace(base, arch=arch) for arch in (ARCH_NAMES if base.arch == "all" else (base.arch,))]


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
    return rank, world, torch.device("cpu" if cfg.dry_run else cfg.device or "cpu")


def log(rank: int, *parts: object) -> None:
    if rank == 0:
        tqdm.write(" ".join(str(p) for p in parts))


def resolve_amp(cfg: Config, device: torch.device, rank: int) -> Config:
    """``--amp bf16`` on a CPU without bf16 kernels trains in fp32: emulated bf16 is many times slower
    (docs/training-log.md, "Training on CPUs without AVX-512")."""
    if device.type != "cpu" or cfg.amp != "bf16" or cpu_runs_bf16():
        return cfg
    log(rank, "warning: --amp bf16: this CPU has no bf16 instructions (AVX-512 or AMX), where bf16 is emulated and "
              "training runs many times slower; training in fp32 instead (as with --amp off)")  # fmt: skip
    return replace(cfg, amp="off")


# ---------------------------------------------------------------- what we start from
@dataclass
class Start:
    """A fresh run, a resumed one (``resume``: last.pt), a fine-tuning one (``init``) and/or a distilled one."""

    spec: InputSpec  # the input the model is trained at
    meta: ModelMeta | None = None  # of last.pt (resume) or of the --init checkpoint
    resume: dict | None = None  # last.pt as read
    init: LoadedModel | None = None
    teacher: LoadedModel | None = None


def starting_point(cfg: Config, out_dir: Path, device: torch.device, rank: int) -> Start:
    img_w = math.ceil(cfg.img_w / cfg.pad_multiple) * cfg.pad_multiple
    start = Start(InputSpec(cfg.img_h, img_w, cfg.channels or default_channels(cfg.arch)))
    if cfg.resume:
        last = out_dir / "last.pt"
        if not last.is_file():
            raise SystemExit(f"--resume: no {last}; start without --resume")
        start.resume = read_checkpoint(last)
        start.meta = ModelMeta.from_dict(start.resume["meta"])
    elif cfg.init:
        start.init = load_model(cfg.init)
        start.meta = start.init.meta
        if start.meta.arch != cfg.arch:
            raise SystemExit(f"--init {cfg.init} is a {start.meta.arch}, not a {cfg.arch}")
    if start.meta:
        start.spec = start.meta.spec
    if cfg.teacher:
        start.teacher = teacher = load_model(cfg.teacher, device)
        meta = start.meta
        if cfg.init and (meta.spec != teacher.meta.spec or not meta.charset.startswith(teacher.meta.charset)):
            raise SystemExit(f"--init {cfg.init} does not fit --teacher {cfg.teacher}: the student must take the "
                             "teacher's input size and start its charset with the teacher's (a model distilled from "
                             "this teacher does); drop one of the two")  # fmt: skip
        start.spec = spec = teacher.meta.spec  # the student sees exactly the teacher's input
        log(rank, f"--teacher {cfg.teacher}: {teacher.meta.arch}, input {spec.img_w}x{spec.img_h}x{spec.channels}")
    return start


# ---------------------------------------------------------------- data: each folder is read once
@dataclass
class Splits:
    train: list[Sample]
    validation: list[Sample]
    test: list[Sample]
    charset: Charset


def read_training_folders(cfg: Config, rank: int) -> tuple[list[Sample], list[Sample], str]:
    """Training and validation samples as labelled, and where the validation split came from."""
    train, train_report = read_folder(cfg.train_root, source="")
    reports = [train_report]
    validation_root = Path(cfg.validation_root) if cfg.validation_root else Path(cfg.train_root).parent / "val"
    if validation_root.is_dir() and validation_root.resolve() != Path(cfg.test_root).resolve():
        validation, validation_report = read_folder(validation_root)
        reports.append(validation_report)  # its missing files and bad lines are reported too, not dropped silently
        where = str(validation_root)
    else:  # deterministic held-out slice of train
        order = np.random.default_rng(cfg.seed).permutation(len(train))
        chosen = set(order[: max(1, int(len(train) * cfg.val_fraction))].tolist())
        validation = [s for i, s in enumerate(train) if i in chosen]
        train = [s for i, s in enumerate(train) if i not in chosen]
        where = f"{cfg.train_root} (held-out {len(chosen)})"
    for report in reports:
        for line in report.lines():
            log(rank, line)
    return train, validation, where


def choose_charset(cfg: Config, start: Start, train: list[Sample], validation: list[Sample], rank: int) -> Charset:
    """A resumed run keeps its charset. Otherwise <train-root>/../charset.txt, else the data's characters; a fresh
    run from --init or --teacher keeps that model's classes at their ids (the teacher's frame distributions line
    up, the fine-tuned head is reused) and appends the characters of the samples that charset accepts."""
    if cfg.resume:
        return Charset(start.meta.charset)
    shared = Path(cfg.train_root).parent / "charset.txt"
    charset = Charset.load(shared) if shared.is_file() else Charset.from_labels(s.label for s in train + validation)
    prefix = start.meta if cfg.init else start.teacher.meta if start.teacher else None
    if prefix is None:
        return charset
    accepted = [s for s in train if not charset.unknown(s.label)][: cfg.limit_train or None]
    accepted += [s for s in validation if not charset.unknown(s.label)]
    grown = Charset(prefix.charset).extend(s.label for s in accepted)
    log(rank, f"--{'init' if cfg.init else 'teacher'}: charset {len(prefix.charset)} -> {len(grown)} symbols")
    return grown


def encodable(samples: list[Sample], charset: Charset, name: str, rank: int) -> list[Sample]:
    """The samples whose labels the charset can encode; the others are counted and their characters printed."""
    bad = [s for s in samples if charset.unknown(s.label)]
    if bad:
        chars = "".join(sorted({c for s in bad for c in charset.unknown(s.label)}))
        log(rank, f"{name}: {len(bad)} labels with characters outside the charset skipped: {chars!r}")
    return [s for s in samples if not charset.unknown(s.label)]


def load_splits(cfg: Config, start: Start, rank: int) -> Splits:
    train, validation, where = read_training_folders(cfg, rank)
    charset = choose_charset(cfg, start, train, validation, rank)
    train, validation = encodable(train, charset, "train", rank), encodable(validation, charset, "validation", rank)
    test: list[Sample] = []
    if cfg.test_root and Path(cfg.test_root).is_dir():
        test, test_report = read_folder(cfg.test_root, charset)
        for line in test_report.lines():
            log(rank, line)
    if cfg.limit_train:
        train = train[: cfg.limit_train]
    if not train:
        raise SystemExit(f"no usable training samples in {cfg.train_root}: run `make data` or check labels.txt")
    log(rank, f"train {len(train)} | validation {len(validation)} ({where}) | test {len(test)}")
    return Splits(train, validation, test, charset)


# ---------------------------------------------------------------- model
def build_student(cfg: Config, start: Start, splits: Splits) -> tuple[torch.nn.Module, ModelMeta]:
    """The model to train and the metadata its checkpoints carry; weights from last.pt or --init when given."""
    spec, charset = start.spec, splits.charset
    longest = max(len(s.label) for s in splits.train + splits.validation)
    if start.meta:
        arch_args, max_label_len = dict(start.meta.arch_args), max(start.meta.max_label_len, longest)
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
    if start.resume:
        model.load_state_dict(start.resume["state_dict"])
    elif start.init:
        load_with_grown_head(model, start.init.model.state_dict())
    return model, meta


# ---------------------------------------------------------------- set up the run
@dataclass
class Run:
    """Everything the epoch loop reads and updates."""

    cfg: Config
    rank: int
    world: int
    device: torch.device
    out_dir: Path
    spec: InputSpec
    splits: Splits
    model: torch.nn.Module  # the bare model: evaluated and saved
    train_model: torch.nn.Module  # what the step calls: the model wrapped by DDP and/or torch.compile
    meta: ModelMeta
    teacher: torch.nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loader: DataLoader
    generator: torch.Generator  # seeded per epoch: the epoch's shuffle and augmentation, the same after a resume
    parameters: int
    start_epoch: int = 1
    best: dict | None = None  # {"em", "cer", "epoch"} of the best validation result so far
    bad_steps: int = 0  # non-finite losses in a row, across epoch ends: a short epoch must not hide them
    ema: WeightAverage | None = None  # --ema: the averaged weights, validated and saved as best.pt

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.model if self.ema else self.model


def wrap_for_training(model: torch.nn.Module, cfg: Config, world: int, device: torch.device) -> torch.nn.Module:
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.index is not None else None
        )
    return torch.compile(model) if cfg.compile else model


def training_loader(cfg: Config, spec: InputSpec, samples: list[Sample], rank: int, world: int,
                    device: torch.device) -> tuple[DataLoader, torch.Generator]:  # fmt: skip
    train_set = CaptchaDataset(samples, spec, build_augment(cfg.aug_strength, cfg.aug_preset) if cfg.aug else None)
    sampler = (
        DistributedSampler(train_set, world, rank, shuffle=True, seed=cfg.seed, drop_last=True) if world > 1 else None
    )
    generator = torch.Generator()
    loader = DataLoader(
        train_set, batch_size=cfg.batch, shuffle=sampler is None, sampler=sampler, drop_last=len(train_set) > cfg.batch,
        num_workers=0 if cfg.dry_run else cfg.num_workers, collate_fn=collate, worker_init_fn=worker_init,
        generator=generator, pin_memory=device.type == "cuda", persistent_workers=False,
    )  # fmt: skip
    return loader, generator


def distill_sources(cfg: Config) -> set[str]:
    """The sources named by --distill-sources (empty: distil on every image)."""
    return set(filter(None, cfg.distill_sources.split(",")))


def check_distill_sources(cfg: Config, train: list[Sample]) -> None:
    """--distill-sources names sources of the training data, and needs --teacher."""
    if not distill_sources(cfg):
        return
    if not cfg.teacher:
        raise SystemExit("--distill-sources needs --teacher: it chooses the images the teacher is distilled on")
    present = {s.source for s in train}
    missing = sorted(distill_sources(cfg) - present)
    if missing:
        raise SystemExit(f"--distill-sources {cfg.distill_sources}: no training image of {', '.join(missing)} (the "
                         f"sources in {cfg.train_root}/meta.tsv: {', '.join(sorted(present)) or 'none'})")  # fmt: skip


def set_up(cfg: Config) -> Run:
    rank, world, device = setup_distributed(cfg)
    cfg = resolve_amp(cfg, device, rank)
    seed_everything(cfg.seed + rank)
    out_dir = Path(cfg.out) / cfg.arch
    start = starting_point(cfg, out_dir, device, rank)
    splits = load_splits(cfg, start, rank)
    check_distill_sources(cfg, splits.train)
    spec = start.spec
    model, meta = build_student(cfg, start, splits)
    if world > 1 and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    teacher = start.teacher.model if start.teacher else None
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if teacher is not None:
        if teacher.sequence_length(spec.img_w) != model.sequence_length(spec.img_w):
            raise SystemExit(f"--teacher emits {teacher.sequence_length(spec.img_w)} frames, {cfg.arch} "
                             f"{model.sequence_length(spec.img_w)}: distillation needs the same width stride")  # fmt: skip
        if cfg.channels_last:
            teacher.to(memory_format=torch.channels_last)
    if cfg.freeze:
        log(rank, f"--freeze {cfg.freeze}: {freeze_first_convs(model, cfg.freeze) / 1e6:.2f}M parameters fixed")
    parameters = sum(p.numel() for p in model.parameters())
    log(rank, f"[{cfg.arch}] {parameters / 1e6:.2f}M parameters, input {spec.img_w}x{spec.img_h}x{spec.channels}, "
              f"{splits.charset.num_classes} classes, T={model.sequence_length(spec.img_w)}, device {device}, "
              f"world {world}")  # fmt: skip

    # AdamW (no decay where the model says so), warm-up then cosine, stepped per batch
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr)
    loader, generator = training_loader(cfg, spec, splits.train, rank, world, device)
    steps_per_epoch = max(1, len(loader))
    scheduler = warmup_cosine(optimizer, max(1, int(cfg.warmup * steps_per_epoch)), cfg.epochs * steps_per_epoch)
    run = Run(cfg, rank, world, device, out_dir, spec, splits, model, wrap_for_training(model, cfg, world, device),
              meta, teacher, optimizer, scheduler, grad_scaler(cfg.amp, device), loader, generator, parameters,
              best={"em": -1.0, "cer": float("inf"), "epoch": 0},
              ema=WeightAverage(model, cfg.ema) if cfg.ema else None)  # fmt: skip
    if start.resume:
        resume_training_state(run, start.resume["training"])
    if rank == 0 and not cfg.dry_run:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2, ensure_ascii=False), encoding="utf-8")
        start_metrics_csv(out_dir / "metrics.csv", keep_before=run.start_epoch if start.resume else 0)
    return run


def resume_training_state(run: Run, training: dict) -> None:
    run.optimizer.load_state_dict(training["optimizer"])
    run.scheduler.load_state_dict(training["scheduler"])
    run.scaler.load_state_dict(training["scaler"])
    run.start_epoch, run.best = training["epoch"] + 1, training["best"]
    if run.ema and "ema" in training:
        run.ema.load_state_dict(training["ema"])
    elif run.ema:
        log(run.rank, "--ema: last.pt holds no averaged weights; the average starts from its weights")
    set_rng_state(training["rng"])
    log(run.rank, f"resumed from {run.out_dir / 'last.pt'}: epoch {training['epoch']} done, "
                  f"best EM {run.best['em']:.4f}")  # fmt: skip
    if run.start_epoch > run.cfg.epochs:
        log(run.rank, f"all {run.cfg.epochs} epochs are done already")


# ---------------------------------------------------------------- one epoch
def train_one_epoch(run: Run, epoch: int) -> dict:
    """Train over the loader once; returns the epoch's metrics.csv row (a dry run: its one batch's loss)."""
    cfg, rank = run.cfg, run.rank
    if isinstance(run.loader.sampler, DistributedSampler):
        run.loader.sampler.set_epoch(epoch)
    run.generator.manual_seed(cfg.seed * 1000 + epoch)
    run.train_model.train()
    started, seen, loss_sum, loss_n, skipped = time.time(), 0, 0.0, 0, 0
    distilled = distill_sources(cfg)  # checked at set-up: only given with --teacher
    bar = tqdm(run.loader, desc=f"[{cfg.arch}] epoch {epoch}/{cfg.epochs}", disable=rank != 0, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 30)  # fmt: skip
    for batch in bar:
        for error in batch["errors"]:
            skipped += 1
            log(rank, f"skipped unreadable image {error}")
        if not batch["labels"]:
            continue
        images = to_device(batch["images"], run.device, cfg.channels_last)
        targets, lengths = encode_batch(batch["labels"], run.splits.charset)
        taught = (
            torch.tensor([run.splits.train[i].source in distilled for i in batch["indices"]]) if distilled else None
        )
        loss, logits = train_step(run.train_model, images, torch.from_numpy(targets), torch.from_numpy(lengths),
                                  run.optimizer, run.scaler, amp=cfg.amp, clip=cfg.clip, teacher=run.teacher,
                                  distill=cfg.distill, taught=taught)  # fmt: skip
        if not torch.isfinite(loss):
            run.bad_steps += 1
            log(rank, f"non-finite loss at epoch {epoch}; batch skipped ({run.bad_steps} in a row)")
            if run.bad_steps >= 5:
                raise SystemExit("loss is NaN/inf for 5 batches in a row: lower --lr or turn off --amp")
            continue
        run.bad_steps = 0
        run.scheduler.step()
        if run.ema:
            run.ema.update(run.model)
        seen, loss_sum, loss_n = seen + images.shape[0], loss_sum + loss.item(), loss_n + 1
        bar.set_postfix(loss=f"{loss_sum / loss_n:.3f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}", refresh=False)
        if cfg.dry_run:
            log(rank, f"dry run: one batch of {images.shape[0]}, loss {loss.item():.3f}, logits {tuple(logits.shape)}")
            return {"loss": loss.item()}
    if loss_n == 0:  # not one batch trained: saving or exporting this model would pass off an untrained one
        raise SystemExit(f"epoch {epoch}: no batch had a finite loss ({skipped} unreadable images); nothing saved")
    elapsed = time.time() - started
    return {"epoch": epoch, "lr": f"{run.scheduler.get_last_lr()[0]:.3e}", "skipped": skipped,
            "seconds": f"{elapsed:.1f}", "train_loss": f"{loss_sum / loss_n:.4f}",
            "images_per_s": f"{seen * run.world / max(elapsed, 1e-9):.1f}"}  # fmt: skip


# ---------------------------------------------------------------- evaluate (rank 0, bare model)
@torch.no_grad()
def evaluate(run: Run, samples: list[Sample], desc: str) -> tuple[list[Scored], int]:
    """Predict every sample with models.evaluation's scoring; returns the rows and the number of unreadable images."""
    cfg, device = run.cfg, run.device

    model = run.eval_model

    def predict(inputs: np.ndarray) -> list:
        with autocast(cfg.amp, device):
            logits = model(to_device(torch.from_numpy(inputs), device, cfg.channels_last))
        return greedy_decode(logits.float().cpu().numpy(), run.splits.charset)

    batch = max(64, cfg.batch)
    errors: list[str] = []
    model.eval()
    batches = loader_batches(samples, run.spec, batch, cfg.num_workers, errors)
    rows = score(predict, tqdm(batches, desc=desc, total=math.ceil(len(samples) / batch), leave=False,
                               dynamic_ncols=True))  # fmt: skip
    if model is run.model:
        model.train()
    return rows, len(errors)


def evaluate_epoch(run: Run, epoch: int, row: dict) -> tuple[dict, dict | None]:
    """Validation every epoch, the test set every --test-every epochs and at the end; fills ``row``."""
    cfg = run.cfg
    rows, unreadable = evaluate(run, run.splits.validation, "validation")
    validation = group_table(rows)[0]
    row.update(select_em=f"{validation['em']:.4f}", select_em_nocase=f"{validation['em_nocase']:.4f}",
               select_cer=f"{validation['cer']:.4f}")  # fmt: skip
    log(run.rank, f"[{cfg.arch}] epoch {epoch}: loss {row['train_loss']}, {row['images_per_s']} img/s, "
                  f"validation EM {validation['em']:.2%} (no case {validation['em_nocase']:.2%}) "
                  f"CER {validation['cer']:.2%}{f', {unreadable} unreadable images skipped' if unreadable else ''}")  # fmt: skip
    if not run.splits.test or (epoch % cfg.test_every and epoch != cfg.epochs):
        return validation, None
    rows, unreadable = evaluate(run, run.splits.test, "test")
    table = group_table(rows)
    test = table[0]
    row.update(test_em=f"{test['em']:.4f}", test_em_nocase=f"{test['em_nocase']:.4f}", test_cer=f"{test['cer']:.4f}",
               test_answer_acc="" if test["answer_acc"] is None else f"{test['answer_acc']:.4f}")  # fmt: skip
    log(run.rank, f"test set {cfg.test_root} ({unreadable} unreadable):\n{format_table(table)}")
    for line in sample_lines(rows, cfg.print_samples):
        log(run.rank, "  " + line)
    return validation, test


# ---------------------------------------------------------------- save and export
def save_epoch(run: Run, epoch: int, row: dict, validation: dict, test: dict | None) -> None:
    """best.pt when validation improved, the metrics row, last.pt (with the training state) and curves.png.

    Order matters for a kill at any moment: best.pt and the metrics row first, last.pt (what --resume reads) last;
    a resume drops metrics rows newer than last.pt, so no epoch is lost or counted twice."""
    improved = (validation["em"], -validation["cer"]) > (run.best["em"], -run.best["cer"])
    if improved:
        run.best = {"em": validation["em"], "cer": validation["cer"], "epoch": epoch}
    run.meta.metrics = {"selection": validation, "epoch": epoch, "parameters": run.parameters}
    if test is not None:
        run.meta.metrics["test"] = test
    state = {
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(), "epoch": epoch, "best": run.best, "config": asdict(run.cfg),
        "rng": rng_state(),
    }  # fmt: skip
    if run.ema:
        state["ema"] = run.ema.state_dict()
    if improved:
        save_checkpoint(run.out_dir / "best.pt", run.eval_model, run.meta)
    append_metrics_row(run.out_dir / "metrics.csv", row)
    save_checkpoint(run.out_dir / "last.pt", run.model, run.meta, training=state)
    plot_curves(run.out_dir / "metrics.csv", run.out_dir / "curves.png")


def export(run: Run) -> None:
    out_dir, best = run.out_dir, run.best
    export_onnx(out_dir / "best.pt", out_dir / "model.onnx")
    log(run.rank, f"[{run.cfg.arch}] best epoch {best['epoch']} (validation EM {best['em']:.2%}); wrote {out_dir}/"
                  "best.pt, last.pt, model.onnx, metrics.csv, curves.png")  # fmt: skip


# ---------------------------------------------------------------- one architecture, then main
def stop_early(run: Run, epoch: int) -> bool:
    """--patience: rank 0 decides (it alone evaluates) and every process follows; also the epoch's barrier."""
    stop = run.rank == 0 and run.cfg.patience > 0 and epoch - run.best["epoch"] >= run.cfg.patience
    if run.world > 1:
        flag = torch.tensor([int(stop)], device=run.device)
        dist.broadcast(flag, 0)
        stop = bool(flag.item())
    return stop


def train(cfg: Config) -> dict:
    """Train one architecture; returns the best validation result ``{"em", "cer", "epoch"}``."""
    run = set_up(cfg)
    for epoch in range(run.start_epoch, cfg.epochs + 1):
        row = train_one_epoch(run, epoch)
        if cfg.dry_run:
            return row
        if run.rank == 0:
            validation, test = evaluate_epoch(run, epoch, row)
            save_epoch(run, epoch, row, validation, test)
        if stop_early(run, epoch):
            log(run.rank, f"[{cfg.arch}] validation EM has not improved for {cfg.patience} epochs "
                          f"(best: epoch {run.best['epoch']}); stopping early (--patience)")  # fmt: skip
            break
    if run.rank == 0 and (run.out_dir / "best.pt").is_file():
        export(run)
    return run.best


def main() -> int | None:
    configs = parse_args()
    if configs[0].finetune:
        from tools.finetune import main as finetune_main

        cfg = configs[0]
        argv = ["--data", cfg.finetune, "--name", cfg.name, "--base", cfg.base, "--seed", str(cfg.seed),
                "--minutes", str(cfg.minutes), "--freeze", str(cfg.freeze)]  # fmt: skip
        return finetune_main(argv + (["--unlabelled", cfg.unlabelled] if cfg.unlabelled else []))
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
