"""CPU (or GPU) training throughput per architecture: images/s of forward + CTC + backward + AdamW.

    python bench/train_speed.py [--sizes 32x128,48x160] [--batch 64] [--steps 6] [--repeats 3]

Random inputs and labels (speed does not depend on them), the model variants the project ships, fp32 and
bf16 autocast (+ channels_last for the convolutional models). Also measures the data path alone: decode +
resize + augmentation + normalize per image on one core, from PNG bytes of a 160x60 captcha.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from models.registry import build_model, default_arch_args, default_channels  # noqa: E402

NUM_CLASSES = 557  # the tutorial's charset + blank
VARIANTS = {
    "vanilla_crnn": ("vanilla_crnn", {}),
    "vanilla_crnn (slim)": ("vanilla_crnn", {"channels": (32, 64, 128, 128, 256, 256, 256), "hidden": 128}),
    "crnn_resnet34": ("crnn_resnet34", {}),
    "svtr_tiny": ("svtr_tiny", {}),
}


def steps_per_second(model, images, bf16: bool, channels_last: bool, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    batch = images.shape[0]
    targets = torch.randint(1, NUM_CLASSES, (batch * 5,))
    lengths = torch.full((batch,), 5)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        log_probs = logits.float().log_softmax(2).transpose(0, 1)
        loss = F.ctc_loss(log_probs, targets, torch.full((batch,), log_probs.shape[0]), lengths, zero_infinity=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="32x128,48x160")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {args.threads} threads, batch {args.batch}, median of {args.repeats}")
    print("| model | input HxW | fp32 img/s | bf16 img/s | bf16 + channels_last img/s |")
    print("|---|---|---|---|---|")
    for size in args.sizes.split(","):
        img_h, img_w = map(int, size.split("x"))
        for label in args.variants.split(","):
            arch, extra = VARIANTS[label]
            channels = default_channels(arch)
            cells = []
            for bf16, channels_last in ((False, False), (True, False), (True, True)):
                if channels_last and arch == "svtr_tiny":
                    cells.append("-")
                    continue
                rates = []
                for _ in range(args.repeats):
                    torch.manual_seed(0)
                    model = build_model(arch, NUM_CLASSES, channels, **default_arch_args(arch, img_h, img_w), **extra)
                    images = torch.randn(args.batch, channels, img_h, img_w)
                    rates.append(steps_per_second(model.train(), images, bf16, channels_last, args.steps))
                cells.append(f"{statistics.median(rates):.0f} ({min(rates):.0f}-{max(rates):.0f})")
            print(f"| {label} | {img_h}x{img_w} | " + " | ".join(cells) + " |", flush=True)
    for size in args.sizes.split(","):
        img_h, img_w = map(int, size.split("x"))
        plain, augmented = data_rate(img_h, img_w, 3)
        print(f"data path {img_h}x{img_w}, one core: {plain:.0f} img/s plain, {augmented:.0f} img/s with --aug")


if __name__ == "__main__":
    main()
