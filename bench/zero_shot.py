"""Zero-shot test sets: captchas of two Python libraries the project never trains on, scored beside ddddocr.

    python bench/zero_shot.py make --out dataset/zero_shot --n 500 --seed 7
    python bench/zero_shot.py score --sets dataset/zero_shot --model checkpoints/default
    python bench/zero_shot.py score --sets dataset/zero_shot --model checkpoints/default --results docs/results.json

The sets measure how well a model reads captcha styles it never saw. They are for testing only: never train on
them, and nothing in the repository may imitate them for training. Each library runs with the settings its own
README shows:

- ``imagecaptcha``: python ``captcha`` 0.7.1, ``ImageCaptcha()``: 160x60, its bundled DroidSansMono at sizes
  42/50/56, PNG (``write``'s default). 4 or 5 characters (types ``imagecaptcha_4``, ``imagecaptcha_5``) drawn with
  repetition from digits and ASCII letters of both cases. The library leaves the text to its caller; this alphabet
  is the widest Latin one a site would use, it is what our charset covers, and it puts the library's look-alikes
  (0/O/o, 1/l/I in DroidSansMono) and the case of letters like c/s/x in play, which EM ignoring case separates.
- ``wheezy``: ``wheezy.captcha`` 3.2.2, the README's pipeline: ``captcha(drawings=[background(),
  text(fonts, drawings=[warp(), rotate(), offset()]), curve(), noise(), smooth()])`` at its default 200x75,
  saved as JPEG quality 75, text ``random.sample(uppercase + digits, k)`` (distinct characters) with k 4 or 5
  (types ``wheezy_4``, ``wheezy_5``). The README's fonts are CourierNew-Bold and LiberationMono-Bold: Courier New
  is not free, so DejaVu Sans Mono Bold stands in for it, and Liberation Mono Bold is used where fc-list finds
  it. The fonts used are recorded in each row's ``config``.

Every image is seeded on its own (``random.seed("<seed>:<set>:<index>")``), so one ``--seed`` gives the same
labels, and the first k images of a larger set are those of a smaller one. ``captcha`` draws from ``secrets``,
which cannot be seeded: while its images are drawn, ``captcha.image.secrets`` is replaced by the same three calls
(``randbelow``, ``randbits``, ``choice``) on the seeded ``random`` module, which keeps the library's distributions
and makes its images repeatable too.

Output per set, in the realdev layout (models.dataset.read_folder): ``<out>/<set>/%08d.png|jpg`` and
``labels.tsv`` with ``filename label type answer runner_label flags config``. Flags, as in realdev: ``edge_clip``
(text ink in the 2-px left or right border strip, so a glyph may be cut) and ``v_clip`` (the same at the top or
bottom), measured on the image as it was after the text was drawn and before the noise.

``score`` reads each set with our model through tools/evaluate.py's code and with ddddocr 1.6.1 through
bench/ddddocr_realdev.py's, trying both of ddddocr's models (``DdddOcr(show_ad=False)`` and ``beta=True``) and
keeping, per set and metric, the one that does better on the whole set. ddddocr mostly answers in lowercase, so
its exact match is low where its reading ignoring case is not. With ``--results`` it writes the ``zero_shot``
section of that results file (bench/results.py).
"""

from __future__ import annotations

import argparse
import random
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from models.report import Scored, group_table, md_table, percent

SETS = ("imagecaptcha", "wheezy")
LENGTHS = (4, 5)  # characters per captcha, chosen uniformly per image
IMAGECAPTCHA_ALPHABET = string.digits + string.ascii_letters
WHEEZY_ALPHABET = string.ascii_uppercase + string.digits  # the README's string.uppercase + string.digits
# fc-list patterns: a stand-in for the README's CourierNew-Bold, then its LiberationMono-Bold
WHEEZY_FONTS = ("DejaVu Sans Mono:style=Bold", "Liberation Mono:style=Bold")
BORDER = 2  # px: width of the border strip checked for text ink (the realdev flags' rule)
INK = 60  # a pixel is text ink when one channel differs from the background by more than this (0-255)
HEADER = ("filename", "label", "type", "answer", "runner_label", "flags", "config")


# ---- drawing


@dataclass
class Drawn:
    image: Image.Image
    text_only: Image.Image  # the canvas after the text, before curves, dots and smoothing
    background: tuple[int, int, int]


def clip_flags(drawn: Drawn) -> str:
    """``edge_clip`` and/or ``v_clip`` when text ink reaches the left/right or top/bottom border strip."""
    pixels = np.asarray(drawn.text_only.convert("RGB"), dtype=np.int16)
    ink = np.abs(pixels - np.array(drawn.background, dtype=np.int16)).max(axis=2) > INK
    flags = []
    if ink[:, :BORDER].any() or ink[:, -BORDER:].any():
        flags.append("edge_clip")
    if ink[:BORDER].any() or ink[-BORDER:].any():
        flags.append("v_clip")
    return ",".join(flags)


@contextmanager
def seeded_secrets():
    """``captcha.image`` drawing from the seeded ``random`` module instead of ``secrets``, for the block."""
    import captcha.image

    saved = captcha.image.secrets
    captcha.image.secrets = SimpleNamespace(randbelow=random.randrange, randbits=random.getrandbits,
                                            choice=random.choice)  # fmt: skip
    try:
        yield
    finally:
        captcha.image.secrets = saved


class ImageCaptchaSet:
    name = "imagecaptcha"
    ext = "png"

    def __init__(self) -> None:
        from captcha.image import DEFAULT_FONTS, ImageCaptcha

        self.generator = ImageCaptcha()
        self.config = f"ImageCaptcha();w=160;h=60;font={Path(DEFAULT_FONTS[0]).name}-42/50/56;format=png"

    def label(self) -> str:
        return "".join(random.choices(IMAGECAPTCHA_ALPHABET, k=random.choice(LENGTHS)))

    def draw(self, text: str) -> Drawn:
        captured = {}
        create = self.generator.create_captcha_image

        def keep_text_layer(chars, color, background):
            captured["image"] = create(chars, color, background)
            captured["text_only"], captured["background"] = captured["image"].copy(), background
            return captured["image"]

        self.generator.create_captcha_image = keep_text_layer  # on this instance only
        try:
            image = self.generator.generate_image(text)
        finally:
            del self.generator.create_captcha_image
        return Drawn(image, captured["text_only"], captured["background"][:3])

    def save(self, image: Image.Image, path: Path) -> None:
        image.save(path, format="png")


def font_files(patterns: Iterable[str]) -> list[Path]:
    """The font file fc-list finds for each pattern (patterns it does not find are left out)."""
    if shutil.which("fc-list") is None:
        raise FileNotFoundError("fc-list not found (fontconfig): cannot look up the wheezy fonts")
    files = []
    for pattern in patterns:
        done = subprocess.run(["fc-list", "--format", "%{file}\n", pattern], capture_output=True, text=True)
        found = sorted(line for line in done.stdout.splitlines() if line.endswith(".ttf"))
        if found:
            files.append(Path(found[0]))
    return files


class WheezySet:
    name = "wheezy"
    ext = "jpg"
    background = "#EEEECC"  # background()'s default colour

    def __init__(self) -> None:
        from wheezy.captcha.image import background, captcha, curve, noise, offset, rotate, smooth, text, warp

        fonts = font_files(WHEEZY_FONTS)
        if not fonts:
            raise FileNotFoundError(f"none of the wheezy fonts is installed ({', '.join(WHEEZY_FONTS)})")
        self.captured: list[Image.Image] = []

        def keep_text_layer(image, text):  # one more drawing of the pipeline; it draws nothing
            self.captured.append(image.copy())
            return image

        self.render = captcha(drawings=[
            background(self.background),
            text(fonts=[str(f) for f in fonts], drawings=[warp(), rotate(), offset()]),
            keep_text_layer,
            curve(),
            noise(),
            smooth(),
        ])  # fmt: skip
        self.config = f"wheezy README pipeline;w=200;h=75;fonts={'+'.join(f.stem for f in fonts)};format=jpeg-q75"

    def label(self) -> str:
        return "".join(random.sample(WHEEZY_ALPHABET, random.choice(LENGTHS)))

    def draw(self, text: str) -> Drawn:
        self.captured.clear()
        image = self.render(text)
        return Drawn(image, self.captured[0], (0xEE, 0xEE, 0xCC))

    def save(self, image: Image.Image, path: Path) -> None:
        image.save(path, "JPEG", quality=75)


GENERATORS: dict[str, Callable[[], ImageCaptchaSet | WheezySet]] = {"imagecaptcha": ImageCaptchaSet,
                                                                     "wheezy": WheezySet}  # fmt: skip


def progress(items: Iterable, total: int, desc: str) -> Iterable:
    """tqdm on stderr when it is installed, else a counter every tenth of the way."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(items, total=total, desc=desc, file=sys.stderr)
        return
    step = max(1, total // 10)
    for done, item in enumerate(items, start=1):
        yield item
        if done % step == 0 or done == total:
            print(f"{desc}: {done}/{total}", file=sys.stderr)


def make_set(name: str, out: Path, n: int, seed: int) -> dict:
    """Draw ``n`` captchas of set ``name`` into ``out/<name>/``; return counts and the rate."""
    generator = GENERATORS[name]()
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"[0-9]*.{generator.ext}"):  # a previous, perhaps larger, run
        old.unlink()
    lines = ["\t".join(HEADER)]
    flagged = 0
    start = time.perf_counter()
    with seeded_secrets():
        for index in progress(range(n), n, name):
            random.seed(f"{seed}:{name}:{index}")
            label = generator.label()
            drawn = generator.draw(label)
            filename = f"{index:08d}.{generator.ext}"
            generator.save(drawn.image, folder / filename)
            flags = clip_flags(drawn)
            flagged += bool(flags)
            kind = f"{name}_{len(label)}"
            lines.append("\t".join([filename, label, kind, "", label, flags, f"{generator.config};seed={seed}"]))
    seconds = time.perf_counter() - start
    (folder / "labels.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"set": name, "n": n, "flagged": flagged, "images_per_s": n / seconds if seconds else float("inf")}


# ---- scoring


def open_ddddocr_models() -> dict[str, object]:
    """ddddocr's two recognizers by name (ImportError when ddddocr is not installed)."""
    import ddddocr

    from bench.common import open_ddddocr

    return {"default": open_ddddocr(), "beta": ddddocr.DdddOcr(show_ad=False, beta=True)}


def without_edge_clip(rows: list[Scored]) -> list[Scored]:
    """Rows where no glyph can be cut at the left or right edge (v_clip is kept: ImageCaptcha's glyphs often touch
    the top or bottom, and that is its look)."""
    return [r for r in rows if "edge_clip" not in r.flags.split(",")]


METRICS = ("em", "em_nocase")  # exact match, exact match ignoring case


def rates(rows: list[Scored]) -> dict[str, float | None]:
    metrics = group_table(rows, keys=())[0] if rows else {}
    return {m: metrics.get(m) for m in METRICS}


def set_summary(ours: list[Scored], ddddocr: dict[str, list[Scored]]) -> dict:
    """Per group (``all``, each type, ``without edge_clip`` when some rows carry it) n, our EM and EM ignoring case,
    and ddddocr's: for each metric the one of its models that does better on the whole set (ties: the first),
    ``ddddocr_model`` naming it, so that every group of a column comes from one model."""
    groups = {"all": ours, **{t: [r for r in ours if r.type == t] for t in sorted({r.type for r in ours})}}
    if len(without_edge_clip(ours)) < len(ours):
        groups["without edge_clip"] = without_edge_clip(ours)
    section: dict = {"groups": {}}
    if ddddocr:
        section["ddddocr_models"] = {m: rates(rows) for m, rows in ddddocr.items()}
        section["ddddocr_model"] = {
            metric: max(ddddocr, key=lambda m, metric=metric: section["ddddocr_models"][m][metric])
            for metric in METRICS
        }
    for group, members in groups.items():
        entry = {"n": len(members), "ours": rates(members)}
        if ddddocr:
            names = {r.filename for r in members}
            entry["ddddocr"] = {
                metric: rates([r for r in ddddocr[model] if r.filename in names])[metric]
                for metric, model in section["ddddocr_model"].items()
            }
        section["groups"][group] = entry
    return section


def render_set(name: str, summary: dict) -> str:
    best = summary.get("ddddocr_model")
    headers = ["group", "n", "ours EM", "ours EM (no case)"]
    if best:
        headers += [f"ddddocr EM ({best['em']})", f"ddddocr EM (no case, {best['em_nocase']})"]
    rows = []
    for group, entry in summary["groups"].items():
        row = [group, entry["n"], *(percent(entry["ours"][m], 1) for m in METRICS)]
        if best:
            row += [percent(entry["ddddocr"][m], 1) for m in METRICS]
        rows.append(row)
    table = md_table(headers, rows, [False] + [True] * (len(headers) - 1))
    models = summary.get("ddddocr_models", {})
    note = "; ".join(f"{m}: EM {percent(v['em'], 1)}, no case {percent(v['em_nocase'], 1)}" for m, v in models.items())
    return f"### {name}\n\n{table}" + (f"\n\nddddocr's models on the whole set: {note}." if note else "")


def set_config(folder: Path) -> str:
    """The ``config`` cell of the set's first row: how `make` drew it (library call, size, fonts, format)."""
    from models.charset import read_labels

    rows = read_labels(folder / "labels.tsv").rows
    return rows[0].extra.get("config", "") if rows else ""


def library_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def score(args: argparse.Namespace) -> int:
    from bench import results as results_file
    from bench.ddddocr_realdev import score_folder as ddddocr_score
    from models.engine import load_engine
    from tools.evaluate import score_folder

    folders = [args.sets / name for name in SETS if (args.sets / name / "labels.tsv").is_file()]
    if not folders:
        print(f"error: no zero-shot set under {args.sets} (run: python bench/zero_shot.py make)", file=sys.stderr)
        return 2
    try:
        engine = load_engine(args.model, args.backend)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    engine.case_prior = args.case_prior
    readers = {}
    if not args.no_ddddocr:
        try:
            readers = open_ddddocr_models()
        except ImportError:
            print("error: ddddocr is not installed (pip install ddddocr==1.6.1), or pass --no-ddddocr", file=sys.stderr)
            return 2
    model_name = getattr(engine, "name", None) or engine.arch
    section = {
        "command": "python bench/zero_shot.py score",
        "model": model_name,
        "libraries": {"captcha": library_version("captcha"), "wheezy.captcha": library_version("wheezy.captcha")},
        "ddddocr_version": library_version("ddddocr") if readers else None,
        "rule": "exact match, and exact match ignoring case; ddddocr: per set and metric the better of its two models",
        "sets": {},
    }
    for folder in folders:
        start = time.perf_counter()
        ours, errors = score_folder(engine, folder, args.batch)
        for line in errors[:10]:
            print(f"warning: {line}", file=sys.stderr)
        theirs = {m: ddddocr_score(ocr, folder) for m, ocr in readers.items()}
        print(f"{folder.name}: {len(ours)} images in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        section["sets"][folder.name] = {"folder": results_file.relative(folder), "config": set_config(folder),
                                        "unreadable": len(errors), **set_summary(ours, theirs)}  # fmt: skip
    machine = results_file.machine()
    print(f"## Zero-shot sets: {model_name} ({engine.backend}) vs ddddocr {section['ddddocr_version'] or '(skipped)'}")
    for name, summary in section["sets"].items():
        print(f"\n{render_set(name, summary)}")
    print(f"\n{machine['cpu']} ({machine['cores']} logical CPUs), {machine['ram']} RAM, GPU {machine['gpu']}; "
          f"{machine['versions']}; commit {machine['commit']}; {machine['date']}.")  # fmt: skip
    if args.results:
        results_file.update(args.results, "zero_shot", section)
        print(f"wrote the zero_shot section of {results_file.relative(args.results)}", file=sys.stderr)
    return 0


def make(args: argparse.Namespace) -> int:
    for name in args.only or SETS:
        try:
            done = make_set(name, args.out, args.n, args.seed)
        except (ImportError, FileNotFoundError) as e:
            print(f"error: {name}: {e} (pip install captcha==0.7.1 wheezy.captcha==3.2.2)", file=sys.stderr)
            return 2
        print(f"{name}: {done['n']} images in {args.out / name}, {done['flagged']} flagged edge_clip/v_clip, "
              f"{done['images_per_s']:.0f} images/s", file=sys.stderr)  # fmt: skip
    return 0


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    from models.codec import add_case_prior_argument
    from models.engine import BACKENDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    maker = commands.add_parser("make", help="draw the zero-shot sets")
    maker.add_argument("--out", type=Path, default=Path("dataset/zero_shot"))
    maker.add_argument("--n", type=positive, default=500, help="images per set")
    maker.add_argument("--seed", type=int, default=7)
    maker.add_argument("--only", nargs="+", choices=SETS, help="draw only these sets")
    scorer = commands.add_parser("score", help="score a model and ddddocr on the sets")
    scorer.add_argument("--sets", type=Path, default=Path("dataset/zero_shot"), help="the folder `make` wrote")
    scorer.add_argument("--model", type=Path, default=Path("checkpoints/default"),
                        help="checkpoint, ONNX file, checkpoints/<name>/ or checkpoints/default")  # fmt: skip
    scorer.add_argument("--backend", choices=BACKENDS, default="onnx")
    scorer.add_argument("--batch", type=int, default=64)
    add_case_prior_argument(scorer)
    scorer.add_argument("--no-ddddocr", action="store_true", help="score our model only")
    scorer.add_argument("--results", type=Path, help="write the zero_shot section of this results file")
    args = parser.parse_args(argv)
    return make(args) if args.command == "make" else score(args)


if __name__ == "__main__":
    sys.exit(main())
