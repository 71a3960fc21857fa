"""How fast is tools/merge_datasets.py? Times a copy-mode merge with --dedupe of N synthetic captchas.

    python bench/bench_merge.py                 # 10k and 100k images, 3 runs each
    python bench/bench_merge.py --sizes 2000 --repeats 1
    python bench/bench_merge.py --sizes 10000 100000 --repeats 3 --json /tmp/merge.json

The images (160x60 PNG, random text and noise lines drawn with Pillow) are made once and cached under
/tmp/captcha_bench_merge/<N>/: three train sources (30% each) and one test source (10%). 1% of the train rows
are byte copies of another train image and 0.5% copies of a test image, so both dedupe paths do real work.
Each run merges into a fresh destination on the same file system, in a subprocess (start-up included).
The source files are in the page cache after generation, so this measures CPU and file-system work, not a cold disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from models.paths import ROOT

CACHE = Path("/tmp/captcha_bench_merge")
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz"
SOURCES = (("easy", "train", 0.3), ("ctext", "train", 0.3), ("ruoyi", "train", 0.3), ("easy", "test", 0.1))


def draw_captcha(seed: int) -> tuple[Image.Image, str]:
    rng = random.Random(seed)
    text = "".join(rng.choices(ALPHABET, k=rng.choice((4, 5, 6))))
    image = Image.new("RGB", (160, 60), tuple(rng.randint(200, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):  # noise lines
        points = [(rng.randint(0, 160), rng.randint(0, 60)) for _ in range(2)]
        draw.line(points, fill=tuple(rng.randint(0, 180) for _ in range(3)), width=2)
    font = ImageFont.load_default(size=rng.randint(28, 36))
    draw.text(
        (rng.randint(2, 12), rng.randint(2, 12)), text, fill=tuple(rng.randint(0, 120) for _ in range(3)), font=font
    )
    return image, text


def make_images(args: tuple[Path, int, int]) -> list[str]:
    folder, start, stop = args
    lines = []
    for i in range(start, stop):
        image, text = draw_captcha(i)
        image.save(folder / "images" / f"{i:08d}.png")
        lines.append(f"{i:08d}.png\t{text}\n")
    return lines


def make_dataset(n: int) -> Path:
    """Sources with n images in all under CACHE/<n>/, made once."""
    root = CACHE / str(n)
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    start = 0
    test_names: list[tuple[Path, str]] = []
    for name, split, share in SOURCES:
        folder = root / f"{split}_{name}"
        (folder / "images").mkdir(parents=True)
        count = round(n * share)
        step = 2000
        jobs = [(folder, s, min(s + step, start + count)) for s in range(start, start + count, step)]
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            lines = [line for chunk in pool.map(make_images, jobs) for line in chunk]
        start += count
        if split == "test":
            test_names = [(folder / "images" / line.split("\t")[0], line) for line in lines]
        (folder / "labels.txt").write_text("".join(lines), encoding="utf-8")
    rng = random.Random(n)
    for name, split, _ in SOURCES[:3]:  # duplicates: copies of train and of test images
        folder = root / f"{split}_{name}"
        lines = (folder / "labels.txt").read_text(encoding="utf-8").splitlines(keepends=True)
        extra = []
        for j, line in enumerate(rng.sample(lines, len(lines) // 100)):
            src = folder / "images" / line.split("\t")[0]
            shutil.copyfile(src, folder / "images" / f"dup_{j:06d}.png")
            extra.append(f"dup_{j:06d}.png\t{line.split(chr(9))[1]}")
        for j, (src, line) in enumerate(rng.sample(test_names, min(len(test_names), len(lines) // 200))):
            shutil.copyfile(src, folder / "images" / f"leak_{j:06d}.png")
            extra.append(f"leak_{j:06d}.png\t{line.split(chr(9))[1]}")
        (folder / "labels.txt").write_text("".join(lines + extra), encoding="utf-8")
    (root / "done").touch()
    return root


def time_merge(root: Path, workers: int | None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system) of one merge."""
    out = root.parent / f"out_{root.name}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(ROOT / "tools" / "merge_datasets.py"), "--copy-mode", "copy", "--dedupe"]
    cmd += ["--train-dest", str(out / "train"), "--test-dest", str(out / "test")]
    for name, split, _ in SOURCES:
        cmd += [f"--{split}-src", name, str(root / f"{split}_{name}")]
    if workers:
        cmd += ["--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(out, ignore_errors=True)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="images per dataset")
    parser.add_argument("--repeats", type=int, default=3, help="timed merges per size")
    parser.add_argument("--workers", type=int, default=None, help="passed to --workers (default: the tool's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    medians, rows = {}, []
    for n in args.sizes:
        started = time.perf_counter()
        root = make_dataset(n)
        print(f"{n} images ready in {root} ({time.perf_counter() - started:.0f} s)")
        runs = [time_merge(root, args.workers) for _ in range(args.repeats)]
        times, cpu = [wall for wall, _ in runs], [c for _, c in runs]
        medians[n] = statistics.median(times)
        rows.append({"images": n, "seconds": times, "cpu_seconds": cpu, "load": os.getloadavg()[0]})
        spread = max(times) - min(times)
        print(
            f"n={n}: median {medians[n]:.2f} s, spread {spread:.2f} s (min {min(times):.2f}, max {max(times):.2f}), "
            f"{n / medians[n]:.0f} images/s; CPU (user+sys) median {statistics.median(cpu):.1f} s; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
    sizes = sorted(medians)
    for small, large in zip(sizes, sizes[1:], strict=False):
        ratio = medians[large] / medians[small]
        print(f"{small} -> {large} images ({large / small:.0f}x): time x{ratio:.1f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "repeats": args.repeats}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
