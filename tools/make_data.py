"""Build the training and test data: run the Java runners, then merge (the tutorial's recipe).

    python tools/make_data.py --out dataset --easy-train 200000 --ctext-train 162000 --ruoyi-train 100000 \\
        --easy-test 20000 --ctext-test 16200 --ruoyi-test 10000 --hutool-train 100000 --hutool-test 10000 \\
        --kaptcha-train 100000 --kaptcha-test 10000 --wild-train 100000 --wild-test 10000 \\
        --threads 2 --seed 123 --font-dir DIR

Steps:
1. compile ``tools/java_captcha/*.java`` into ``build/java`` when a class is missing or older than its source;
2. run each runner into ``<out>/raw/<family>_<split>/`` (``images/``, ``labels.txt``, ``meta.tsv``):
   EasyCaptcha ``fromjson tools/java_captcha/config.json`` (the reference mix, with GIF and Chinese GIF types given
   weight), ctext ``smart`` over its 18 styles, Ruoyi ``smart`` (math), Hutool ``smart`` (line, circle, shear, gif,
   math at its four sizes), Kaptcha ``smart`` (the stock DefaultKaptcha, RuoYi's character bean, a mix of site
   settings) and wild ``smart`` (randomized fonts, distortions, noise and backgrounds: tools/java_captcha/
   config_wild.json);
3. ``tools/merge_datasets.py`` moves them into ``<out>/train`` and ``<out>/test`` with dedupe.

Resumable: a runner whose folder already holds the requested number of labels and images is not run again. Every
runner gets its own seed derived from ``--seed``, so a rerun draws the same images.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from models.paths import ROOT
from tools.java_build import JAVA_SRC, compile_runners

SIZES = "160x60:40,180x64:20,200x64:15,256x64:10,120x40:10,96x32:5"
LENGTHS = "4:50,5:25,6:25"
# family -> (runner class, arguments after "<command>" that select the recipe; {out} and {n} are filled in)
RECIPES = {
    "easy": ("EasyCaptchaRunner", ["fromjson", "{easy_config}", "{out}", "{n}"]),
    "ctext": ("KaptchaTextRunner", ["smart", "{out}", "{n}", "--sizes", SIZES, "--len", LENGTHS]),
    "ruoyi": ("RuoyiRunner", ["smart", "{out}", "{n}", "--sizes", SIZES]),
    "hutool": ("HutoolRunner", ["smart", "{out}", "{n}"]),
    "kaptcha": ("KaptchaRunner", ["smart", "{out}", "{n}"]),
    "wild": ("WildRunner", ["smart", "{out}", "{n}"]),
}
SEED_OFFSETS = {"easy": 0, "ctext": 1, "ruoyi": 2, "hutool": 3, "kaptcha": 4, "wild": 5}  # the test split adds 100


def finished(out: Path, count: int) -> bool:
    """True when ``out`` holds ``count`` labels and as many images (an earlier run completed)."""
    labels = out / "labels.txt"
    if not labels.exists():
        return False
    with labels.open(encoding="utf-8") as f:
        n_labels = sum(1 for line in f if line.strip())
    images = out / "images"
    n_images = sum(1 for _ in images.iterdir()) if images.is_dir() else 0
    return n_labels == count and n_images == count


def run_runner(family: str, out: Path, count: int, args: argparse.Namespace, seed: int) -> None:
    runner, recipe = RECIPES[family]
    command = ["java", "-cp", str(args.java_build), runner]
    command += [part.format(out=out, n=count, easy_config=args.easy_config) for part in recipe]
    command += ["--threads", str(args.threads), "--seed", str(seed)]
    if args.font_dir:
        command += ["--font-dir", str(args.font_dir)]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("dataset"), help="dataset root (raw/, train/, test/)")
    for family in RECIPES:
        for split in ("train", "test"):
            parser.add_argument(f"--{family}-{split}", type=int, default=0, help=f"{family} images for {split}")
    parser.add_argument("--threads", type=int, default=2, help="threads per runner")
    parser.add_argument("--seed", type=int, default=123, help="base seed (runners and merge shuffle)")
    parser.add_argument("--font-dir", type=Path, default=None, help="EasyCaptcha builtin TTFs (easy-captcha-python)")
    parser.add_argument("--java-build", type=Path, default=ROOT / "build" / "java", help="compiled runners")
    parser.add_argument("--no-merge", action="store_true", help="only run the generators")
    parser.add_argument("--easy-config", type=Path, default=JAVA_SRC / "config.json", help="EasyCaptcha type/size mix")
    parser.add_argument("--val-fraction", type=float, default=0.0, help="carve a validation split out of train")
    args = parser.parse_args()

    if args.font_dir is not None and not (args.font_dir / "actionj.ttf").exists():
        sys.exit(f"--font-dir {args.font_dir} does not hold the EasyCaptcha TTFs (actionj.ttf ...)")
    compile_runners(args.java_build)
    raw = args.out / "raw"
    sources: dict[str, list[tuple[str, Path]]] = {"train": [], "test": []}
    for split in ("train", "test"):
        for family in RECIPES:
            count = getattr(args, f"{family}_{split}")
            if count <= 0:
                continue
            out = raw / f"{family}_{split}"
            sources[split].append((family, out))
            if finished(out, count):
                print(f"skip {out}: already holds {count} images", flush=True)
                continue
            if out.exists():
                shutil.rmtree(out)  # a partial or differently sized earlier run
            seed = args.seed * 1000 + SEED_OFFSETS[family] + (100 if split == "test" else 0)
            run_runner(family, out, count, args, seed)

    if args.no_merge or not (sources["train"] or sources["test"]):
        return
    merge = [sys.executable, str(ROOT / "tools" / "merge_datasets.py")]
    merge += ["--train-dest", str(args.out / "train"), "--test-dest", str(args.out / "test")]
    for family, path in sources["train"]:
        merge += ["--train-src", family, str(path)]
    for family, path in sources["test"]:
        merge += ["--test-src", family, str(path)]
    merge += ["--copy-mode", "move", "--dedupe", "--seed", str(args.seed), "--val-fraction", str(args.val_fraction)]
    print("+", " ".join(merge), flush=True)
    subprocess.run(merge, check=True)


if __name__ == "__main__":
    main()
