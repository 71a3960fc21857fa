"""CPU (or GPU) training throughput per architecture: images/s of forward + CTC + backward + AdamW.

    python bench/train_speed.py [--sizes 32x128,48x160] [--batch 64] [--steps 6] [--repeats 3]
    python bench/train_speed.py --modes loader,sweep [--images 256] [--repeats 3] [--json out.json]
    python bench/train_speed.py --modes loader,sweep --quick

``synthetic`` (the default mode): random inputs and labels (speed does not depend on them), the model variants
the project ships, fp32 and bf16 autocast (+ channels_last for the convolutional models). Also measures the data
path alone: decode + resize + augmentation + normalize per image on one core, from PNG bytes of a 160x60 captcha.

``loader``: data loading included. A real DataLoader (models.dataset.CaptchaDataset + collate, train.py's
worker seeding) over ``dataset/train`` (else a few hundred Pillow-drawn captchas in a temporary folder) feeds
train.py's step: autocast, channels_last, CTC, gradient clipping, AdamW, with the settings of each shipped model's
config.json (augmentation, amp, batch, workers), for every model folder with a best.pt at its shipped input size,
and for the architectures not shipped yet at the default model's size with their default arguments. One warm-up
batch, then ``--repeats`` consecutive windows of about ``--images`` images each: img/s median and min-max.

``sweep``: the default model in ``loader`` mode, over input width (``--widths`` at its height, its batch size) and
over batch size (``--batches`` at its width): how cost grows.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench.common import fmt_summary, summary
from models.paths import CHECKPOINTS, DATASET, ROOT
from models.registry import ARCH_NAMES, build_model, default_arch_args, default_channels
from models.report import md_table
from models.training import cpu_runs_bf16, grad_scaler, to_device, train_step, worker_init

NUM_CLASSES = 557  # the tutorial's charset + blank
VARIANTS = {
    "vanilla_crnn": ("vanilla_crnn", {}),
    "vanilla_crnn (slim)": ("vanilla_crnn", {"channels": (32, 64, 128, 128, 256, 256, 256), "hidden": 128}),
    "crnn_resnet34": ("crnn_resnet34", {}),
    "crnn_resnet34 (half)": ("crnn_resnet34", {"channels": (32, 64, 128, 256), "hidden": 128}),
    "svtr_tiny": ("svtr_tiny", {}),
}


def steps_per_second(model, images, bf16: bool, channels_last: bool, steps: int, clip: float) -> float:
    """img/s of models.training.train_step (train.py's step) on random inputs and labels."""
    amp = "bf16" if bf16 else "off"
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    batch = images.shape[0]
    targets = torch.randint(1, NUM_CLASSES, (batch * 5,))
    lengths = torch.full((batch,), 5)
    scaler = grad_scaler(amp, images.device)

    def step() -> None:
        train_step(model, images, targets, lengths, optimizer, scaler, amp=amp, clip=clip)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def data_rate(img_h: int, img_w: int, channels: int, n: int = 300) -> tuple[float, float]:
    from PIL import Image, ImageDraw

    from models.augment import build_augment
    from models.preprocess import InputSpec, load_image, normalize, to_canvas

    image = Image.new("RGB", (160, 60), "white")
    ImageDraw.Draw(image).text((10, 10), "Ab3x9", fill=(20, 90, 200), font_size=36)
    buf = io.BytesIO()
    image.save(buf, "PNG")
    data, spec, augment = buf.getvalue(), InputSpec(img_h, img_w, channels), build_augment()
    rates = []
    for aug in (False, True):
        start = time.perf_counter()
        for _ in range(n):
            canvas = to_canvas(load_image(data), spec)
            normalize(augment(canvas) if aug else canvas)
        rates.append(n / (time.perf_counter() - start))
    return rates[0], rates[1]


def run_synthetic(args) -> list[dict]:
    from train import Config

    bf16_runs = cpu_runs_bf16()  # emulated bf16 is many times slower than fp32 and would take minutes per cell
    print(f"# torch {torch.__version__}, {args.threads} threads, batch {args.batch}, median of {args.repeats}")
    if not bf16_runs:
        print("# this CPU has no bf16 instructions (AVX-512 or AMX): bf16 columns not measured")
    print("| model | input HxW | fp32 img/s | bf16 img/s | bf16 + channels_last img/s |")
    print("|---|---|---|---|---|")
    results = []
    for size in args.sizes.split(","):
        img_h, img_w = map(int, size.split("x"))
        for label in args.variants.split(","):
            arch, extra = VARIANTS[label]
            channels = default_channels(arch)
            cells, row = [], {"model": label, "input": f"{img_h}x{img_w}x{channels}"}
            for bf16, channels_last in ((False, False), (True, False), (True, True)):
                if (channels_last and arch == "svtr_tiny") or (bf16 and not bf16_runs):
                    cells.append("-")
                    continue
                rates = []
                for _ in range(args.repeats):
                    torch.manual_seed(0)
                    model = build_model(arch, NUM_CLASSES, channels, **default_arch_args(arch, img_h, img_w), **extra)
                    images = torch.randn(args.batch, channels, img_h, img_w)
                    rates.append(steps_per_second(model.train(), images, bf16, channels_last, args.steps, Config.clip))
                cells.append(f"{statistics.median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f})")
                key = "bf16_channels_last" if channels_last else "bf16" if bf16 else "fp32"
                row[key] = summary(rates)
            results.append(row)
            print(f"| {label} | {img_h}x{img_w} | " + " | ".join(cells) + " |", flush=True)
    for size in args.sizes.split(","):
        img_h, img_w = map(int, size.split("x"))
        plain, augmented = data_rate(img_h, img_w, 3)
        print(f"data path {img_h}x{img_w}, one core: {plain:.0f} img/s plain, {augmented:.0f} img/s with --aug")
    return results


# ---------------------------------------------------------------- data loading included (train.py's loop)


def shipped_setups(checkpoints: Path) -> tuple[list[dict], dict | None]:
    """One setup per model folder with a best.pt (meta + its config.json), then one per architecture not shipped
    (default arguments at the default model's size and settings); and the default model's setup."""
    from models.checkpoint import read_checkpoint
    from models.engine import default_model_name, read_onnx_meta
    from models.meta import ModelMeta

    setups = []
    for folder in sorted(p for p in checkpoints.iterdir() if (p / "best.pt").is_file()) if checkpoints.is_dir() else []:
        meta = ModelMeta.from_dict(read_checkpoint(folder / "best.pt")["meta"])
        config_file = folder / "config.json"
        config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
        setups.append(
            {
                "name": folder.name,
                "arch": meta.arch,
                "arch_args": meta.arch_args,
                "charset": meta.charset,
                "img_h": meta.img_h,
                "img_w": meta.img_w,
                "channels": meta.channels,
                "max_label_len": meta.max_label_len,
                "config": config,
                "shipped": True,
            }
        )
    default_name = default_model_name(checkpoints)
    if default_name and not (checkpoints / default_name / "best.pt").is_file():
        default_name = read_onnx_meta(checkpoints / default_name / "model.onnx").arch  # int8-only folder
    default = next((s for s in setups if s["name"] == default_name), setups[0] if setups else None)
    if default is None:
        return [], None
    shipped_archs = {s["arch"] for s in setups}
    for arch in ARCH_NAMES:
        if arch not in shipped_archs:
            img_h, img_w = default["img_h"], default["img_w"]
            setups.append(
                {
                    **default,
                    "name": f"{arch} (not shipped)",
                    "arch": arch,
                    "channels": default_channels(arch),
                    "arch_args": default_arch_args(arch, img_h, img_w),
                    "shipped": False,
                }
            )
    return setups, default


def training_samples(data_root: Path, charset, needed: int, tmp: Path) -> tuple[list, str]:
    """``needed`` random samples the charset can encode (repeated if the folder has fewer) and where they came
    from: ``data_root`` when it holds labels, else captchas drawn with tools/tiny_dataset.py into ``tmp``."""
    from models.dataset import read_folder

    source = str(data_root.relative_to(ROOT) if data_root.is_relative_to(ROOT) else data_root)
    if not ((data_root / "labels.txt").is_file() or (data_root / "labels.tsv").is_file()):
        from tools.tiny_dataset import make_dataset

        data_root = make_dataset(tmp / "train", 300, seed=0)
        source = "300 captchas drawn by tools/tiny_dataset.py (no dataset/train)"
    samples, report = read_folder(data_root, charset)
    if not samples:
        raise SystemExit("\n".join(report.lines()))
    rng = random.Random(0)
    picked = rng.sample(samples, min(needed, len(samples)))
    while len(picked) < needed:
        picked += picked[: needed - len(picked)]
    return picked, source


def loader_rate(setup: dict, samples: list, batch: int, img_w: int, args, device: torch.device) -> dict:
    """img/s of train.py's step fed by a real DataLoader: median and min-max over ``args.repeats`` windows."""
    import train
    from models.augment import build_augment
    from models.charset import Charset
    from models.codec import encode_batch
    from models.dataset import CaptchaDataset, collate
    from models.preprocess import InputSpec

    cfg = train.config_from_dict(setup["config"])
    cfg.amp = args.amp or cfg.amp
    cfg = train.resolve_amp(cfg, device, 0)  # what train.py would run: fp32 where the CPU lacks bf16 kernels
    charset = Charset(setup["charset"])
    spec = InputSpec(setup["img_h"], img_w, setup["channels"])
    arch_args = {**setup["arch_args"], **default_arch_args(setup["arch"], spec.img_h, img_w)}
    torch.manual_seed(0)
    model = build_model(setup["arch"], charset.num_classes, spec.channels, **arch_args).to(device).train()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = grad_scaler(cfg.amp, device)
    steps = max(1, round(args.images / batch))
    dataset = CaptchaDataset(samples[: batch * (1 + steps * args.repeats)], spec, build_augment() if cfg.aug else None)
    workers = args.workers if args.workers is not None else cfg.num_workers
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=worker_init,
        generator=torch.Generator().manual_seed(0),
        pin_memory=device.type == "cuda",
    )

    def step(items: dict) -> None:
        targets, lengths = encode_batch(items["labels"], charset)
        images = to_device(items["images"], device, cfg.channels_last)
        train_step(model, images, torch.from_numpy(targets), torch.from_numpy(lengths), optimizer, scaler,
                   amp=cfg.amp, clip=cfg.clip)  # fmt: skip

    batches = iter(loader)
    step(next(batches))  # warm-up: worker start, first allocations
    rates = []
    for _ in range(args.repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            step(next(batches))
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(steps * batch / (time.perf_counter() - started))
    settings = f"aug {'on' if cfg.aug else 'off'}, amp {cfg.amp}, channels_last {'on' if cfg.channels_last else 'off'}"
    return {
        "input": f"{spec.img_h}x{img_w}x{spec.channels}",
        "batch": batch,
        "steps": steps,
        "workers": workers,
        "settings": settings,
        "img_s": summary(rates),
    }


def run_loader(args, modes: set[str]) -> dict:
    from models.charset import Charset

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    setups, default = shipped_setups(args.checkpoints)
    if default is None:
        raise SystemExit(f"no <name>/best.pt under {args.checkpoints}: the loader modes need a trained checkpoint")
    if args.quick:
        setups = [s for s in setups if s["shipped"]]
    out: dict = {
        "device": str(torch.cuda.get_device_name() if device.type == "cuda" else "cpu"),
        "threads": args.threads,
        "repeats": args.repeats,
        "images_per_window": args.images,
        "loader": [],
        "sweep": {},
    }
    widths = [int(w) for w in args.widths.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    used = {*batches, *(setup["config"].get("batch", 64) for setup in setups)}
    needed = max(b * (1 + max(1, round(args.images / b)) * args.repeats) for b in used)
    with tempfile.TemporaryDirectory() as tmp:
        samples, source = training_samples(args.data_root, Charset(default["charset"]), needed, Path(tmp))
        out["data"] = source
        if "loader" in modes:
            for setup in setups:
                started = time.perf_counter()
                batch = setup["config"].get("batch", 64)
                row = {
                    "model": setup["name"],
                    "arch": setup["arch"],
                    "shipped": setup["shipped"],
                    **loader_rate(setup, samples, batch, setup["img_w"], args, device),
                }
                out["loader"].append(row)
                print(
                    f"loader {row['model']} {row['input']} batch {batch}: {row['img_s']['median']:.1f} img/s "
                    f"({time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
        if "sweep" in modes:
            out["sweep"] = {
                "model": default["name"],
                "base_width": default["img_w"],
                "base_batch": default["config"].get("batch", 64),
                "width": [],
                "batch": [],
            }
            for width in widths:
                row = loader_rate(default, samples, out["sweep"]["base_batch"], width, args, device)
                out["sweep"]["width"].append({"width": width, **row})
                print(f"sweep width {width}: {row['img_s']['median']:.1f} img/s", flush=True)
            for batch in batches:
                row = loader_rate(default, samples, batch, default["img_w"], args, device)
                out["sweep"]["batch"].append({**row})
                print(f"sweep batch {batch}: {row['img_s']['median']:.1f} img/s", flush=True)
    return out


def render(result: dict) -> str:
    """Markdown tables of the loader and sweep modes."""
    out = []
    if result.get("loader"):
        out += [
            f"Device {result['device']}, {result['threads']} threads; data: {result['data']}; one warm-up batch, "
            f"then {result['repeats']} windows of about {result['images_per_window']} images: img/s median "
            "(min-max). Settings from each model's config.json; architectures not shipped use the default "
            "model's size and settings with their default arguments.",
            "",
        ]
        rows = [
            [
                r["model"],
                r["input"],
                r["batch"],
                r["workers"],
                r["settings"],
                fmt_summary(r["img_s"]),
                f"{1000 / r['img_s']['median']:.1f}",
            ]
            for r in result["loader"]
        ]
        headers = ["model", "input HxWxC", "batch", "loader workers", "settings", "img/s", "ms per image"]
        out.append(md_table(headers, rows, [False, False, True, True, False, True, True]))
    sweep = result.get("sweep") or {}
    for key, label in (("width", "input width"), ("batch", "batch size")):
        rows_in = sweep.get(key) or []
        if not rows_in:
            continue
        base_value = sweep["base_width"] if key == "width" else sweep["base_batch"]
        base = next((r for r in rows_in if r[key] == base_value), rows_in[0])
        fixed = f"batch {sweep['base_batch']}" if key == "width" else f"width {sweep['base_width']}"
        out += ["", f"`{sweep['model']}` over {label} ({fixed}); cost per image relative to {key} {base[key]}:", ""]
        rows = [
            [
                r[key],
                r["input"],
                fmt_summary(r["img_s"]),
                f"{1000 / r['img_s']['median']:.2f}",
                f"{base['img_s']['median'] / r['img_s']['median']:.2f}x",
            ]
            for r in rows_in
        ]
        out.append(
            md_table(
                [key, "input HxWxC", "img/s", "ms per image", "relative cost per image"],
                rows,
                [True, False, True, True, True],
            )
        )
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="synthetic", help="any of synthetic,loader,sweep")
    parser.add_argument("--sizes", default="32x128,48x160", help="synthetic mode: input sizes")
    parser.add_argument("--batch", type=int, default=64, help="synthetic mode: batch size")
    parser.add_argument("--steps", type=int, default=6, help="synthetic mode: timed steps")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="synthetic mode: model variants")
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help="loader modes: shipped models")
    parser.add_argument("--data-root", type=Path, default=DATASET / "train", help="loader modes: images")
    parser.add_argument("--images", type=int, default=256, help="loader modes: images per timed window")
    parser.add_argument("--widths", default="96,128,160,192", help="sweep: input widths")
    parser.add_argument("--batches", default="16,32,64,128", help="sweep: batch sizes")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the model's config)")
    parser.add_argument("--amp", default=None, help="override the model's amp setting (off, bf16, auto)")
    parser.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")
    parser.add_argument("--quick", action="store_true", help="loader modes: shipped models only, small windows")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="loader modes: write their tables here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    modes = set(args.modes.split(","))
    result: dict = {}
    if "synthetic" in modes:
        result["synthetic"] = run_synthetic(args)
    if modes & {"loader", "sweep"}:
        result.update(run_loader(args, modes))
        text = render(result)
        print(text)
        if args.markdown:
            args.markdown.write_text(text, encoding="utf-8")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
