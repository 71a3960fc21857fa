"""Merge generator outputs into ``dataset/train``, ``dataset/test`` (and optionally ``dataset/val``).

Usage (the reference tutorial's flags, plus a few)::

    python tools/merge_datasets.py --train-dest dataset/train --test-dest dataset/test \\
        --train-src easy build/gen/easy_train --train-src ruoyi build/gen/ruoyi_train \\
        --test-src easy build/gen/easy_test --copy-mode copy --dedupe --seed 123

A source is a folder holding ``images/`` and ``labels.txt`` (``name<TAB>label``), optionally ``meta.tsv`` from our
Java runners (type, font, answer per image). The tutorial's split roots (``images/`` + ``labels.txt`` +
``charset.txt``) and the realdev layout (``labels.tsv`` with a header row, images next to it) are read as well.

What it does, in order:

1. Read every source's labels (``models.charset.read_labels``) and normalize them (``normalize_label``:
   ``8×3=？`` becomes ``8*3=?``). ``--limit-*-per-src N`` keeps the first N label rows of each source.
2. Read each image once (thread pool): the BLAKE2b hash of its bytes, its format sniffed from the bytes, and a
   full decode with ``models.preprocess.load_image``, the decoder training uses, so a file that passes here
   can be trained on. With ``--near-dupes`` the decoded image also gives a 24x8 average hash.
3. Drop, count and list: missing files, unreadable images, bad label lines, empty labels, labels outside
   ``--charset``. Nothing is dropped silently; the tool still exits 0 and prints a summary of problems.
4. Duplicates, keyed on the hash of the file bytes:
   - always: an image that is in test is removed from train (test keeps it), so test never leaks into train;
   - ``--dedupe``: one row per image within a split (the first in source order), and an image that carries
     two different labels anywhere is a *conflict*: it has no trustworthy label, so every copy is dropped;
   - ``--near-dupes``: same label and same average hash counts as a duplicate too (test wins again);
     same hash with different labels is only reported (likely a hash collision, worth a look);
   - ``--exclude DIR``: an image whose bytes are in DIR (a split root or any source folder) is removed, so a
     dataset can be topped up without touching its test and val splits (below).
5. Shuffle each split (``--seed`` for train, seed + 1 for test), carve ``--val-fraction`` of train into val
   (stratified by source and type), name files ``tr_%08d`` / ``va_%08d`` / ``te_%08d`` with the real format's
   extension, write ``labels.txt``, ``meta.tsv`` and ``charset.txt`` into each split root, the charset to
   ``--charset-out`` and ``merge_report.{md,csv,png}`` to ``--report``.

Interruption safety: everything is first built in ``<dest>/.partial/`` while the sources stay untouched (``move``
hard-links into the staging area, falling back to a copy). Only then is each split swapped in with renames
(``images/`` is replaced as a whole, so no stale file from an earlier, larger run survives), and only after that
are the sources of a ``move`` removed, each after checking the destination holds the same bytes. The phase is
recorded in ``<train-dest>/.merge_state.json``: a re-run with the same arguments restarts an interrupted staging
(same input, same result), finishes an interrupted swap or source clean-up, and does nothing after a finished
merge (so re-running a ``move`` never replaces a good dataset with the now-empty sources).

Topping up a merged dataset (more images of one family, say) without touching its test and val splits: give the
merged train split as one more source and keep the others out; a source with a ``source`` column in its
``meta.tsv`` (a merged split) keeps each row's family there, the NAME only labels it in the report::

    python tools/merge_datasets.py --train-dest dataset/train_plus --test-dest dataset/test --val-dest dataset/val \
        --train-src base dataset/train --train-src easy raw/easy_cn --exclude dataset/test --exclude dataset/val \
        --copy-mode link --dedupe --seed 2027 --report reports/train_plus
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from models.charset import Charset, normalize_label, read_labels, write_labels
from models.preprocess import load_image
from models.report import md_table

SPLIT_PREFIX = {"train": "tr", "val": "va", "test": "te"}  # output names: tr_00000001.png, ...
META_COLUMNS = ("filename", "label", "source", "type", "width", "height", "font", "answer", "flags")
LABEL_FILES = ("labels.txt", "labels.tsv", "meta.tsv")  # first one found in a source is its label file
ALT_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".PNG", ".JPG", ".JPEG", ".GIF")
IMAGE_SUFFIXES = frozenset(s.lower() for s in ALT_SUFFIXES)
FORMAT_EXT = {"PNG": ".png", "GIF": ".gif", "JPEG": ".jpg", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}
NEAR_HASH_SIZE = (24, 8)  # average-hash grid (width, height); keeps the ~3:1 captcha aspect, 192 bits
PARTIAL = ".partial"  # staging folder inside each split root
STATE_FILE = ".merge_state.json"  # inside the train root: phase, fingerprint and what a resumed run needs
CHUNK = 256  # files per thread-pool task: amortizes the per-task overhead
REPORT_LIST_LIMIT = 200  # problems listed in merge_report.md; the CSV lists all of them

PROBLEM_KINDS = ("bad_label_line", "missing_file", "unreadable_image", "empty_label", "out_of_charset")
DUPLICATE_KINDS = (
    "duplicate_within",
    "duplicate_cross_split",
    "conflict",
    "near_within",
    "near_cross_split",
    "excluded",
)


# --------------------------------------------------------------------------------------------------- data


@dataclass
class Sample:
    """One label row and, after the scan, what its image turned out to be."""

    split: str  # "train" or "test" (val is carved out of train at the end)
    source: str  # NAME of --train-src / --test-src
    filename: str  # as written in the source's label file
    path: Path  # where the image should be (resolved again by the scan)
    label: str  # normalized with models.charset.normalize_label
    type: str = ""
    font: str = ""
    answer: str = ""
    flags: str = ""  # e.g. edge_clip (KaptchaTextRunner), kept so evaluate.py --exclude-flag works on a merged split
    family: str = ""  # the row's own source column (a merged split given as a source), written to meta.tsv
    size: int = 0  # bytes
    key: str = ""  # BLAKE2b-128 of the file bytes, hex
    ext: str = ""  # from the bytes: .png .gif .jpg ...
    width: int = 0
    height: int = 0
    near_key: bytes | None = None  # average hash, only with --near-dupes
    dest_name: str = ""


@dataclass
class Stats:
    """Everything the report says, gathered along the way."""

    rows_read: Counter = field(default_factory=Counter)  # (split, source) -> label rows taken
    rows_limited: Counter = field(default_factory=Counter)  # (split, source) -> rows past --limit
    dropped: Counter = field(default_factory=Counter)  # (split, source, reason) -> rows
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)  # (kind, split, source, detail)
    conflicts: list[str] = field(default_factory=list)  # one line per image with several labels
    near_mismatches: list[str] = field(default_factory=list)  # same average hash, different labels
    kept_exact_dupes: Counter = field(default_factory=Counter)  # split -> duplicates kept (no --dedupe)
    notes: list[str] = field(default_factory=list)

    def problem(self, kind: str, sample_or_split: Sample | str, source: str, detail: str) -> None:
        split = sample_or_split.split if isinstance(sample_or_split, Sample) else sample_or_split
        self.problems.append((kind, split, source, detail))
        self.dropped[(split, source, kind)] += 1


# --------------------------------------------------------------------------------------------------- sources


def locate_source(root: Path) -> tuple[Path, Path]:
    """Return ``(label_file, image_dir)`` of a source folder, or raise ``FileNotFoundError``."""
    for name in LABEL_FILES:
        if (root / name).is_file():
            images = root / "images"
            return root / name, images if images.is_dir() else root
    raise FileNotFoundError(f"{root}: no {' / '.join(LABEL_FILES)} found (expected images/ + labels.txt)")


def read_source(split: str, name: str, root: Path, limit: int | None, stats: Stats) -> list[Sample]:
    """Label rows of one source as ``Sample`` s, bad lines counted in ``stats``."""
    label_file, image_dir = locate_source(root)
    labels = read_labels(label_file)
    for line in labels.problems:
        stats.problem("bad_label_line", split, name, line)
    extras: dict[str, dict[str, str]] = {}
    meta_file = root / "meta.tsv"
    if meta_file.is_file() and meta_file != label_file:
        meta = read_labels(meta_file)
        for line in meta.problems:
            stats.problem("bad_label_line", split, name, line)
        extras = {row.filename: row.extra for row in meta.rows}
    rows = labels.rows
    if limit is not None and len(rows) > limit:
        stats.rows_limited[(split, name)] += len(rows) - limit
        rows = rows[:limit]
    samples = []
    for row in rows:
        extra = {**extras.get(row.filename, {}), **row.extra}
        label = normalize_label(row.label)
        sample = Sample(split, name, row.filename, image_dir / row.filename, label)
        sample.type, sample.font, sample.answer = extra.get("type", ""), extra.get("font", ""), extra.get("answer", "")
        sample.family, sample.flags = extra.get("source", ""), extra.get("flags", "")
        stats.rows_read[(split, name)] += 1
        if not label:
            stats.problem("empty_label", sample, name, f"{label_file}: {row.filename}: label {row.label!r} is empty")
            continue
        samples.append(sample)
    return samples


# --------------------------------------------------------------------------------------------------- scan


def sniff_ext(data: bytes) -> str:
    """File extension of the image format, from the bytes (never from the name)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return ".gif"
    if data.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if data.startswith(b"BM"):
        return ".bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    fmt = Image.open(io.BytesIO(data)).format or "PNG"  # rarer formats: ask Pillow
    return FORMAT_EXT.get(fmt, "." + fmt.lower())


def average_hash(image: Image.Image) -> bytes:
    """Bits of "pixel brighter than the mean" on a small grayscale grid: equal for near-identical images."""
    small = np.asarray(image.convert("L").resize(NEAR_HASH_SIZE, Image.Resampling.BOX), dtype=np.float32)
    return np.packbits(small > small.mean()).tobytes()


def image_key(data: bytes) -> str:
    """Identity of an image for every duplicate rule: BLAKE2b-128 of its file bytes, hex."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def scan_one(sample: Sample, near_dupes: bool) -> tuple[str, str] | None:
    """Read, hash and decode one image, filling ``sample``; return ``(problem kind, detail)`` or ``None``."""
    candidates = [sample.path] + [sample.path.with_suffix(s) for s in ALT_SUFFIXES if s != sample.path.suffix]
    for path in candidates:  # the tutorial also accepts the same stem with another image suffix
        try:
            data = path.read_bytes()
            break
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        except OSError as e:
            return "unreadable_image", f"cannot read {path}: {e}"
    else:
        return "missing_file", f"{sample.path}: no such file"
    sample.path, sample.size = path, len(data)
    sample.key = image_key(data)
    try:
        image = load_image(data)  # the decoder training uses: same limits, GIF frames fused
        sample.ext = sniff_ext(data)
    except Exception as e:  # one bad file is a reported problem, not the end of a long merge
        return "unreadable_image", f"{path}: {e}"
    sample.width, sample.height = image.size
    if near_dupes:
        sample.near_key = average_hash(image)
    return None


def parallel(func: Callable[[list], list], items: list, workers: int, desc: str) -> Iterator:
    """``func`` over chunks of ``items`` in a thread pool, results in order, with a progress bar.

    Threads suffice: hashing, zlib decoding and file copies release the GIL.
    """
    chunks = [items[i : i + CHUNK] for i in range(0, len(items), CHUNK)]
    with tqdm(total=len(items), desc=desc, unit="img", disable=None, leave=False) as bar:
        if workers <= 1:
            results: Iterable = map(func, chunks)
        else:
            pool = ThreadPoolExecutor(workers)
            results = pool.map(func, chunks)
        try:
            for chunk, out in zip(chunks, results, strict=True):
                bar.update(len(chunk))
                yield from out
        finally:
            if workers > 1:
                pool.shutdown(cancel_futures=True)


def scan(samples: list[Sample], near_dupes: bool, workers: int, stats: Stats) -> list[Sample]:
    """Keep the samples whose image is there and decodes; the others become problems."""

    def work(chunk: list[Sample]) -> list[tuple[str, str] | None]:
        return [scan_one(s, near_dupes) for s in chunk]

    good = []
    for sample, error in zip(samples, parallel(work, samples, workers, "scan"), strict=True):
        if error:
            stats.problem(error[0], sample, sample.source, error[1])
        else:
            good.append(sample)
    return good


# --------------------------------------------------------------------------------------------------- plan


def filter_charset(samples: list[Sample], charset: Charset | None, stats: Stats) -> list[Sample]:
    if charset is None:
        return samples
    kept = []
    for s in samples:
        unknown = charset.unknown(s.label)
        if unknown:
            detail = f"{s.path}: label {s.label!r} has {''.join(sorted(unknown))!r} outside --charset"
            stats.problem("out_of_charset", s, s.source, detail)
        else:
            kept.append(s)
    return kept


def drop_keys(samples: list[Sample], keys: set[str] | frozenset[str], reason: str, stats: Stats) -> list[Sample]:
    """``samples`` without those whose image key is in ``keys``, each counted under ``reason``."""
    kept = []
    for s in samples:
        if s.key in keys:
            stats.dropped[(s.split, s.source, reason)] += 1
        else:
            kept.append(s)
    return kept


def drop_conflicts(samples: list[Sample], stats: Stats) -> list[Sample]:
    """Drop every copy of an image that carries two different labels anywhere: no label of it is trustworthy."""
    labels_of: dict[str, set[str]] = defaultdict(set)
    for s in samples:
        labels_of[s.key].add(s.label)
    bad = {k for k, labels in labels_of.items() if len(labels) > 1}
    copies: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.key in bad:
            copies[s.key].append(s)
    for key in sorted(bad):
        where = ", ".join(f"{s.split}/{s.source}/{s.filename}={s.label!r}" for s in copies[key])
        stats.conflicts.append(f"{key[:12]}: {where}")
    return drop_keys(samples, bad, "conflict", stats)


def drop_exact_duplicates(samples: list[Sample], dedupe_within: bool, stats: Stats) -> list[Sample]:
    """Remove from train every image that is in test; with ``dedupe_within`` keep one row per image in a split
    (the first), else count the duplicates kept."""
    test_keys = {s.key for s in samples if s.split == "test"}
    kept, seen = [], set()
    for s in samples:
        if s.split != "test" and s.key in test_keys:  # test keeps the image, train loses it
            stats.dropped[(s.split, s.source, "duplicate_cross_split")] += 1
        elif (s.split, s.key) in seen:
            if dedupe_within:
                stats.dropped[(s.split, s.source, "duplicate_within")] += 1
                continue
            stats.kept_exact_dupes[s.split] += 1
            kept.append(s)
        else:
            seen.add((s.split, s.key))
            kept.append(s)
    return kept


def drop_near_duplicates(samples: list[Sample], stats: Stats) -> list[Sample]:
    """Same label and same average hash count as a duplicate (test wins); same hash with another label is only
    listed in ``stats.near_mismatches``."""
    test_near = {(s.near_key, s.label) for s in samples if s.split == "test"}
    labels_of_hash: dict[bytes, dict[str, Sample]] = defaultdict(dict)
    kept, seen_near = [], set()
    for s in samples:
        first = labels_of_hash[s.near_key].setdefault(s.label, s)
        if len(labels_of_hash[s.near_key]) > 1 and first is s:  # a new label for this hash
            other = next(iter(labels_of_hash[s.near_key].values()))
            stats.near_mismatches.append(
                f"{s.split}/{s.source}/{s.filename}={s.label!r} looks like "
                f"{other.split}/{other.source}/{other.filename}={other.label!r} (kept both)"
            )
        if s.split != "test" and (s.near_key, s.label) in test_near:
            stats.dropped[(s.split, s.source, "near_cross_split")] += 1
        elif (s.split, s.near_key, s.label) in seen_near:
            stats.dropped[(s.split, s.source, "near_within")] += 1
        else:
            seen_near.add((s.split, s.near_key, s.label))
            kept.append(s)
    return kept


def dedupe(
    samples: list[Sample], dedupe_within: bool, near_dupes: bool, stats: Stats, excluded: frozenset[str] = frozenset()
) -> list[Sample]:
    """Apply the duplicate rules of the module docstring; ``samples`` are in source order.

    ``excluded``: hashes of images that must not be in the result (``--exclude``).
    """
    samples = drop_keys(samples, excluded, "excluded", stats)
    if dedupe_within:
        samples = drop_conflicts(samples, stats)
    samples = drop_exact_duplicates(samples, dedupe_within, stats)
    if near_dupes:
        samples = drop_near_duplicates(samples, stats)
    return samples


def carve_val(train: list[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Move ``fraction`` of the distinct train images of every (source, type) stratum to val.

    Copies of one image (kept without --dedupe) go to the same side, so val never shares an image with train.
    """
    if fraction <= 0:
        return train, []
    strata: dict[tuple[str, str], list[str]] = defaultdict(list)
    seen: set[str] = set()
    for s in train:
        if s.key not in seen:
            seen.add(s.key)
            strata[(s.family or s.source, s.type)].append(s.key)
    rng = random.Random(seed)
    val_keys: set[str] = set()
    for stratum in sorted(strata):
        keys = strata[stratum]
        val_keys.update(rng.sample(keys, round(fraction * len(keys))))
    return [s for s in train if s.key not in val_keys], [s for s in train if s.key in val_keys]


def hash_excluded(folders: list[str], workers: int) -> frozenset[str]:
    """BLAKE2b keys of every file in the image folders of ``--exclude`` (labels are not needed)."""
    files = []
    for folder in folders:
        _, image_dir = locate_source(Path(folder))
        files += sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    def work(chunk: list[Path]) -> list[str]:
        return [image_key(p.read_bytes()) for p in chunk]

    return frozenset(parallel(work, files, workers, "hash --exclude"))


def plan_splits(
    samples: list[Sample], args: argparse.Namespace, stats: Stats, excluded: frozenset[str] = frozenset()
) -> dict[str, list[Sample]]:
    """Filter, dedupe, shuffle, carve val and name the files: split -> rows in output order."""
    charset = Charset.load(args.charset) if args.charset else None
    samples = filter_charset(samples, charset, stats)
    samples = dedupe(samples, args.dedupe, args.near_dupes, stats, excluded)
    splits: dict[str, list[Sample]] = {}
    for split, seed in (("train", args.seed), ("test", args.seed + 1)):  # the tutorial's seeds
        if getattr(args, f"{split}_src"):
            rows = [s for s in samples if s.split == split]
            if not args.no_shuffle:
                random.Random(seed).shuffle(rows)
            splits[split] = rows
    if "train" in splits and args.val_fraction > 0:
        splits["train"], splits["val"] = carve_val(splits["train"], args.val_fraction, args.seed + 2)
        splits = {split: splits[split] for split in SPLIT_PREFIX if split in splits}  # train, val, test
    for split, rows in splits.items():
        for i, s in enumerate(rows, start=1):
            s.dest_name = f"{SPLIT_PREFIX[split]}_{i:08d}{s.ext}"
    return splits


def build_charset(splits: dict[str, list[Sample]], dests: dict[str, Path], args: argparse.Namespace) -> Charset:
    """Charset of every label in the dataset after this merge, including split roots not touched this time."""
    if args.charset:
        return Charset.load(args.charset)  # the given charset keeps its class ids
    labels = [s.label for rows in splits.values() for s in rows]
    for split, dest in dests.items():
        if split not in splits and (dest / "labels.txt").is_file():
            labels.extend(normalize_label(r.label) for r in read_labels(dest / "labels.txt").rows)
    return Charset.from_labels(labels)


# --------------------------------------------------------------------------------------------------- files


def copy_file(src: Path, dst: Path) -> None:
    """``shutil.copyfile`` without its per-call checks, which cost more than the copy of a small file."""
    if not hasattr(os, "sendfile"):  # pragma: no cover - not Linux/macOS
        shutil.copyfile(src, dst)
        return
    fd_in = os.open(src, os.O_RDONLY)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                while os.sendfile(fd_out, fd_in, None, 1 << 24):  # offset None: from the file position
                    pass
            except OSError:  # sendfile not supported between these files
                os.lseek(fd_in, 0, os.SEEK_SET)
                os.ftruncate(fd_out, 0)
                os.lseek(fd_out, 0, os.SEEK_SET)
                while chunk := os.read(fd_in, 1 << 20):
                    os.write(fd_out, chunk)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def stage_one(src: Path, dst: Path, mode: str) -> bool:
    """Put ``src`` at ``dst`` without touching ``src``; return True if a wanted hard link fell back to a copy.

    ``move`` links too: the source is removed only after the whole merge is in place (see ``clean_sources``).
    """
    if mode in ("link", "move"):
        try:
            os.link(src, dst)
            return False
        except OSError:  # other file system, or links not allowed
            copy_file(src, dst)
            return True
    copy_file(src, dst)
    return False


def write_meta(path: Path, rows: list[Sample]) -> None:
    def cell(value: object) -> str:
        return str(value).replace("\t", " ").replace("\n", " ")

    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(META_COLUMNS) + "\n")
        for s in rows:
            values = (s.dest_name, s.label, s.family or s.source, s.type, s.width, s.height, s.font, s.answer, s.flags)
            f.write("\t".join(map(cell, values)) + "\n")


def write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def swap_split(dest: Path) -> None:
    """Replace ``dest``'s images/ and label files by the staged ones; safe to repeat after an interruption."""
    partial = dest / PARTIAL
    if (partial / "images").is_dir():
        if (dest / "images").exists():
            shutil.rmtree(partial / "old_images", ignore_errors=True)
            os.rename(dest / "images", partial / "old_images")
        os.rename(partial / "images", dest / "images")
    for name in ("labels.txt", "meta.tsv", "charset.txt"):
        if (partial / name).is_file():
            os.replace(partial / name, dest / name)
    shutil.rmtree(partial / "old_images", ignore_errors=True)


def clean_sources(moves_file: Path, stats_notes: list[str]) -> None:
    """``move`` mode: delete each source file whose bytes are now in the destination."""
    left = 0
    with open(moves_file, encoding="utf-8") as f:
        pairs = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    for src, dst in tqdm(pairs, desc="remove moved sources", unit="img", disable=None, leave=False):
        src_path, dst_path = Path(src), Path(dst)
        if not src_path.exists():
            continue
        if dst_path.is_file() and (
            os.path.samefile(src_path, dst_path) or src_path.read_bytes() == dst_path.read_bytes()
        ):
            src_path.unlink()
        else:
            left += 1
    if left:
        stats_notes.append(f"move: {left} source files were kept because the destination does not match them")


# --------------------------------------------------------------------------------------------------- report


def count_rows(splits: dict[str, list[Sample]]) -> dict[str, dict[str, Counter]]:
    """split -> {"source": Counter, "type": ..., "size": ..., "label length": ..., "format": ...}."""
    out: dict[str, dict[str, Counter]] = {}
    for split, rows in splits.items():
        out[split] = {
            "source": Counter(s.source for s in rows),
            "type": Counter(s.type or "-" for s in rows),
            "size": Counter(f"{s.width}x{s.height}" for s in rows),
            "label length": Counter(str(len(s.label)) for s in rows),
            "format": Counter(s.ext.lstrip(".") for s in rows),
        }
    return out


def report_csv(path: Path, counts: dict, stats: Stats) -> None:
    import csv

    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["section", "split", "source", "key", "count"])
        for split, by in counts.items():
            for section, counter in by.items():
                for key, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])):
                    writer.writerow([f"kept by {section}", split, "", key, n])
        for (split, source), n in sorted(stats.rows_read.items()):
            writer.writerow(["rows read", split, source, "", n])
        for (split, source), n in sorted(stats.rows_limited.items()):
            writer.writerow(["rows past limit", split, source, "", n])
        for (split, source, reason), n in sorted(stats.dropped.items()):
            writer.writerow(["dropped", split, source, reason, n])
        for split, n in sorted(stats.kept_exact_dupes.items()):
            writer.writerow(["duplicates kept (no --dedupe)", split, "", "", n])
        for line in stats.conflicts:
            writer.writerow(["conflict", "", "", line, 1])
        for line in stats.near_mismatches:
            writer.writerow(["near-duplicate label mismatch", "", "", line, 1])
        for kind, split, source, detail in stats.problems:
            writer.writerow([f"problem: {kind}", split, source, detail, 1])


def report_chart(path: Path, counts: dict, stats: Stats) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    splits = list(counts)
    for ax, section in zip(axes.flat[:3], ("source", "label length", "size"), strict=True):
        keys = sorted({k for s in splits for k in counts[s][section]}, key=section_order)
        if section == "size":  # the ten most common sizes
            total = Counter()
            for s in splits:
                total.update(counts[s][section])
            keys = [k for k, _ in total.most_common(10)]
        width = 0.8 / max(len(splits), 1)
        for i, split in enumerate(splits):
            ax.bar(
                [x + i * width for x in range(len(keys))], [counts[split][section][k] for k in keys], width, label=split
            )
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(keys))], keys, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"images kept by {section}")
        ax.legend(fontsize=8)
    reasons = Counter()
    for (_, _, reason), n in stats.dropped.items():
        reasons[reason] += n
    ax = axes.flat[3]
    ax.barh(list(reasons) or ["(none)"], list(reasons.values()) or [0], color="tab:red")
    ax.set_title("rows dropped by reason")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def section_order(key: str) -> tuple:
    """Numbers and sizes numerically ("96x32" before "160x60"), everything else alphabetically."""
    parts = key.split("x")
    if all(part.isdigit() for part in parts):
        return (0, *map(int, parts))
    return (1, key)


def table_lines(headers: list[str], rows: list[list]) -> list[str]:
    """A markdown table (``models.report.md_table``) and the blank line after it, as report lines."""
    return [md_table(headers, rows), ""]


def sources_section(counts: dict, stats: Stats) -> list[str]:
    """Per (split, source): rows read, rows past the limit, rows kept and rows dropped by reason."""
    reasons = [r for r in PROBLEM_KINDS + DUPLICATE_KINDS if any(k[2] == r for k in stats.dropped)]
    rows = []
    for split, source in sorted(stats.rows_read):
        kept = counts.get(split, {}).get("source", Counter())[source]
        if split == "train" and "val" in counts:
            kept = f"{kept} (+{counts['val']['source'][source]} val)"
        rows.append(
            [split, source, stats.rows_read[(split, source)], stats.rows_limited[(split, source)], kept]
            + [stats.dropped[(split, source, r)] for r in reasons]
        )
    return ["## Sources", ""] + table_lines(["split", "source", "rows read", "past limit", "kept"] + reasons, rows)


def counts_sections(counts: dict) -> list[str]:
    """One table per section of ``count_rows`` (type, size, label length, format), a column per split."""
    splits = list(counts)
    lines = []
    for section in ("type", "size", "label length", "format"):
        keys = sorted({k for s in splits for k in counts[s][section]}, key=section_order)
        lines += [f"## By {section}", ""]
        lines += table_lines([section] + splits, [[k] + [counts[s][section][k] for s in splits] for k in keys])
    return lines


def duplicates_section(stats: Stats) -> list[str]:
    """Rows removed per duplicate rule, duplicates kept, and the images listed by hand (conflicts, near misses)."""
    lines = ["## Duplicates", ""]
    for reason in DUPLICATE_KINDS:
        n = sum(v for k, v in stats.dropped.items() if k[2] == reason)
        lines.append(f"- {reason.replace('_', ' ')}: {n} rows removed")
    for split, n in sorted(stats.kept_exact_dupes.items()):
        lines.append(f"- {split}: {n} exact duplicates kept (pass --dedupe to remove them)")
    lines.append("")
    if stats.conflicts:
        lines += ["Images with different labels (every copy dropped):", ""]
        lines += [f"- {c}" for c in stats.conflicts[:REPORT_LIST_LIMIT]] + [""]
    if stats.near_mismatches:
        lines += ["Same average hash, different labels (kept, check by eye):", ""]
        lines += [f"- {c}" for c in stats.near_mismatches[:REPORT_LIST_LIMIT]] + [""]
    return lines


def problems_section(stats: Stats) -> list[str]:
    """Problem counts by kind and the first ``REPORT_LIST_LIMIT`` problems (all of them are in the CSV)."""
    lines = ["## Problems", ""]
    kinds = Counter(p[0] for p in stats.problems)
    if not kinds:
        return lines + ["None.", ""]
    lines += table_lines(["problem", "rows"], [[k, n] for k, n in kinds.most_common()])
    shown = stats.problems[:REPORT_LIST_LIMIT]
    lines += [f"- {kind} ({split}/{source}): {detail}" for kind, split, source, detail in shown]
    if len(stats.problems) > len(shown):
        lines.append(f"- ... {len(stats.problems) - len(shown)} more in merge_report.csv")
    return lines + [""]


def report_markdown(path: Path, counts: dict, stats: Stats, args: argparse.Namespace, charset: Charset) -> None:
    """``merge_report.md``: command, charset, split sizes, then the sections above."""
    lines = ["# Merge report", "", f"Command: `{' '.join(args.argv)}`", ""]
    lines += [f"Charset: {len(charset)} symbols, written to `{args.charset_out}`.", ""]
    lines += ["## Splits", ""]
    lines += table_lines(["split", "images"], [[s, sum(by["source"].values())] for s, by in counts.items()])
    lines += sources_section(counts, stats) + counts_sections(counts)
    lines += duplicates_section(stats) + problems_section(stats)
    if stats.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in stats.notes] + [""]
    lines += ["![counts](merge_report.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def summary_lines(counts: dict, stats: Stats) -> list[str]:
    lines = [f"{split}: {sum(by['source'].values())} images" for split, by in counts.items()]
    removed = Counter()
    for (_, _, reason), n in stats.dropped.items():
        removed[reason] += n
    dupes = {r: removed[r] for r in DUPLICATE_KINDS if removed[r]}
    if dupes:
        lines.append("duplicates removed: " + ", ".join(f"{k} {v}" for k, v in dupes.items()))
    problems = {r: removed[r] for r in PROBLEM_KINDS if removed[r]}
    if problems:
        lines.append(
            "PROBLEMS (rows dropped, listed in the report): " + ", ".join(f"{k} {v}" for k, v in problems.items())
        )
    return lines + [f"note: {n}" for n in stats.notes]


# --------------------------------------------------------------------------------------------------- main


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train-dest", default="dataset/train", help="train split root (default %(default)s)")
    p.add_argument("--test-dest", default="dataset/test", help="test split root (default %(default)s)")
    p.add_argument("--val-dest", default=None, help="val split root (default: <train-dest>/../val)")
    p.add_argument("--train-src", action="append", nargs=2, metavar=("NAME", "PATH"), default=[])
    p.add_argument("--test-src", action="append", nargs=2, metavar=("NAME", "PATH"), default=[])
    p.add_argument("--copy-mode", choices=("copy", "move", "link"), default="copy", help="link = hard link")
    p.add_argument("--dedupe", action="store_true", help="one row per image within a split; drop conflicts")
    p.add_argument("--near-dupes", action="store_true", help="also drop same-label images with equal average hash")
    p.add_argument(
        "--exclude", action="append", default=[], metavar="DIR", help="drop images whose bytes are in DIR (repeatable)"
    )
    p.add_argument("--seed", type=int, default=42, help="train shuffle seed; test uses seed+1, val seed+2")
    p.add_argument("--no-shuffle", action="store_true", help="keep source order")
    p.add_argument("--limit-train-per-src", type=int, default=None, metavar="N", help="first N rows per source")
    p.add_argument("--limit-test-per-src", type=int, default=None, metavar="N")
    p.add_argument("--val-fraction", type=float, default=0.0, help="share of train moved to val (default 0)")
    p.add_argument("--charset", default=None, help="only keep labels within this charset.txt (and write it)")
    p.add_argument("--charset-out", default=None, help="default: <train-dest>/../charset.txt")
    p.add_argument("--report", default=None, metavar="DIR", help="report folder (default: <train-dest>/..)")
    p.add_argument("--workers", type=int, default=min(8, 2 * (os.cpu_count() or 1)), help="I/O threads")
    return p


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (``p.error``, exit 2) what cannot work: no source, a missing source, a move out of a destination."""
    if not args.train_src and not args.test_src:
        p.error("give at least one --train-src or --test-src")
    if not 0 <= args.val_fraction < 1:
        p.error("--val-fraction must be in [0, 1)")
    dests = [Path(d).resolve() for d in (args.train_dest, args.test_dest, args.val_dest)]
    if len(set(dests)) < 3:
        p.error("--train-dest, --test-dest and --val-dest must be different folders")
    for path in args.exclude:
        try:
            locate_source(Path(path))
        except FileNotFoundError as e:
            p.error(f"--exclude: {e}")
    for _, path in args.train_src + args.test_src:
        try:
            locate_source(Path(path))
        except FileNotFoundError as e:
            p.error(str(e))
        src = Path(path).resolve()
        if args.copy_mode == "move" and any(src == d or d in src.parents for d in dests):
            p.error(f"--copy-mode move: source {path} lies inside a destination; use copy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parsed and checked arguments, with the defaults that depend on ``--train-dest`` filled in."""
    p = make_parser()
    args = p.parse_args(argv)
    args.argv = ["tools/merge_datasets.py"] + list(sys.argv[1:] if argv is None else argv)
    train_dest = Path(args.train_dest)
    args.val_dest = args.val_dest or str(train_dest.parent / "val")
    args.charset_out = args.charset_out or str(train_dest.parent / "charset.txt")
    args.report = args.report or str(train_dest.parent)
    check_args(p, args)
    return args


def fingerprint(args: argparse.Namespace) -> str:
    """Identity of a merge: its arguments and the label files it reads (never modified by the merge)."""
    options = {k: v for k, v in vars(args).items() if k not in ("argv", "workers")}
    files = []
    for _, path in args.train_src + args.test_src:
        for name in LABEL_FILES:
            f = Path(path) / name
            if f.is_file():
                st = f.stat()
                files.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    text = json.dumps([options, [str(Path(d).resolve()) for d in (args.train_dest, args.test_dest)], files])
    return hashlib.sha256(text.encode()).hexdigest()


class PhaseClock:
    """Seconds per phase of a merge, kept in ``state["timings"]`` and printed at the end."""

    def __init__(self, state: dict) -> None:
        self.timings = state.setdefault("timings", {})
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.last, 2)
        self.last = now


def read_sources(args: argparse.Namespace, stats: Stats) -> list[Sample]:
    """Label rows of every ``--train-src`` then every ``--test-src``, in the order given."""
    samples: list[Sample] = []
    for split in ("train", "test"):
        limit = getattr(args, f"limit_{split}_per_src")
        for name, path in getattr(args, f"{split}_src"):
            samples += read_source(split, name, Path(path), limit, stats)
    return samples


def dest_folders(args: argparse.Namespace) -> dict[str, Path]:
    return {split: Path(getattr(args, f"{split}_dest")).resolve() for split in ("train", "val", "test")}


def note_stale_val(
    splits: dict[str, list[Sample]], dests: dict[str, Path], args: argparse.Namespace, stats: Stats
) -> None:
    """A val split left from an earlier merge may now share images with the new train: say so."""
    val_excluded = dests["val"] in {Path(d).resolve() for d in args.exclude}
    if "val" not in splits and "train" in splits and (dests["val"] / "labels.txt").is_file() and not val_excluded:
        stats.notes.append(
            f"{dests['val']} is from an earlier merge and was left as it is: it may overlap the new train"
        )


def stage_splits(
    splits: dict[str, list[Sample]], dests: dict[str, Path], charset: Charset, args: argparse.Namespace, stats: Stats
) -> list[tuple[str, Path]]:
    """Copy or link every split's images into ``<dest>/.partial`` with its label files; returns the moves
    ``(source file, final destination)`` that a ``move`` removes the sources of once the merge is in place."""
    moves = []
    link_fallbacks = 0
    for split, rows in splits.items():
        partial = dests[split] / PARTIAL
        (partial / "images").mkdir(parents=True)
        jobs = [(s.path, partial / "images" / s.dest_name) for s in rows]

        def work(chunk: list[tuple[Path, Path]]) -> list[bool]:
            return [stage_one(src, dst, args.copy_mode) for src, dst in chunk]

        link_fallbacks += sum(parallel(work, jobs, args.workers, f"stage {split}"))
        write_labels(partial / "labels.txt", ((s.dest_name, s.label) for s in rows))
        write_meta(partial / "meta.tsv", rows)
        charset.save(partial / "charset.txt")
        moves += [(os.path.abspath(s.path), dests[split] / "images" / s.dest_name) for s in rows]
    if link_fallbacks and args.copy_mode == "link":
        stats.notes.append(f"link: {link_fallbacks} files were copied because a hard link was not possible")
    not_merged = sum(stats.rows_read.values()) - len(moves)
    if args.copy_mode == "move" and not_merged:
        stats.notes.append(
            f"move: the files of {not_merged} rows not merged (duplicates, problems) stay in the sources"
        )
    return moves


def stage_reports(
    extra: Path, splits: dict[str, list[Sample]], charset: Charset, args: argparse.Namespace, stats: Stats
) -> dict:
    """Charset and ``merge_report.{md,csv,png}`` into the staging folder ``extra``; returns ``count_rows``."""
    extra.mkdir(parents=True, exist_ok=True)
    charset.save(extra / "charset.txt")
    counts = count_rows(splits)
    report_markdown(extra / "merge_report.md", counts, stats, args, charset)
    report_csv(extra / "merge_report.csv", counts, stats)
    report_chart(extra / "merge_report.png", counts, stats)
    return counts


def commit_plan(splits: dict, dests: dict[str, Path], extra: Path, args: argparse.Namespace) -> dict:
    """What ``commit`` needs, saved in the state file: split folders to swap, charset copies, files to place."""
    report_dir = Path(args.report).resolve()
    reports = ("merge_report.md", "merge_report.csv", "merge_report.png")
    return {
        "splits": {split: str(dests[split]) for split in splits},
        "charset_copies": [str(d) for s, d in dests.items() if s in splits or (d / "labels.txt").is_file()],
        "extras": [[str(extra / "charset.txt"), str(Path(args.charset_out).resolve())]]
        + [[str(extra / n), str(report_dir / n)] for n in reports],
    }


def build(args: argparse.Namespace, state_path: Path, state: dict) -> Stats:
    """Scan, plan and stage everything in <dest>/.partial; sources and current dests stay untouched."""
    stats = Stats()
    clock = PhaseClock(state)
    samples = read_sources(args, stats)
    clock.lap("read labels")
    samples = scan(samples, args.near_dupes, args.workers, stats)
    excluded = hash_excluded(args.exclude, args.workers)
    clock.lap("scan images")
    splits = plan_splits(samples, args, stats, excluded)
    dests = dest_folders(args)
    charset = build_charset(splits, dests, args)
    note_stale_val(splits, dests, args, stats)
    moves = stage_splits(splits, dests, charset, args, stats)
    clock.lap(f"{'link' if args.copy_mode != 'copy' else 'copy'} files")
    extra = dests["train"] / PARTIAL / "extra"
    counts = stage_reports(extra, splits, charset, args, stats)
    clock.lap("report")
    if args.copy_mode == "move":
        with open(extra / "moves.tsv", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(f"{src}\t{dst}\n" for src, dst in moves)
    state.update(phase="committing", **commit_plan(splits, dests, extra, args), summary=summary_lines(counts, stats))
    write_json_atomic(state_path, state)
    return stats


def commit(state_path: Path, state: dict) -> None:
    """Swap the staged splits in, place charset and report, then (move) remove the sources. Idempotent."""
    if state["phase"] == "committing":
        for dest in state["splits"].values():
            swap_split(Path(dest))
        for staged, final in state["extras"]:
            if Path(staged).exists():
                Path(final).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(staged, final)
        charset_out = state["extras"][0][1]
        for dest in state["charset_copies"]:
            if Path(dest).is_dir():
                shutil.copyfile(charset_out, Path(dest) / "charset.txt")
        state["phase"] = "cleaning" if state["copy_mode"] == "move" else "finishing"
        write_json_atomic(state_path, state)
    moves_file = Path(state["train_dest"]) / PARTIAL / "extra" / "moves.tsv"
    if state["phase"] == "cleaning":
        if moves_file.is_file():
            notes: list[str] = []
            clean_sources(moves_file, notes)
            state["summary"] += [f"note: {n}" for n in notes]
        state["phase"] = "finishing"
        write_json_atomic(state_path, state)
    for dest in [state["train_dest"], *state["splits"].values()]:
        shutil.rmtree(Path(dest) / PARTIAL, ignore_errors=True)
    state["phase"] = "done"
    write_json_atomic(state_path, state)


def finish_earlier_merge(train_dest: Path, state_path: Path, previous: dict, current: str) -> int | None:
    """Exit code when the state file settles this run (an interrupted commit to finish or refuse, a merge already
    done with these arguments); ``None`` when a fresh merge should start."""
    if previous["phase"] in ("committing", "cleaning", "finishing"):
        if previous["fingerprint"] != current:
            print(
                f"merge_datasets: an earlier merge into {train_dest} stopped while putting its result in place.\n"
                f"Finish it first by re-running it: {' '.join(previous['argv'])}",
                file=sys.stderr,
            )
            return 1
        print(f"resuming an interrupted merge ({previous['phase']})")
        commit(state_path, previous)
        print("\n".join(previous["summary"]))
        return 0
    if previous["phase"] == "done" and previous["fingerprint"] == current:
        print(f"{train_dest}: already merged from these sources with these arguments; nothing to do")
        print("\n".join(previous["summary"]))
        return 0
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    train_dest = Path(args.train_dest)
    state_path = train_dest / STATE_FILE
    current = fingerprint(args)
    if state_path.is_file():
        previous = json.loads(state_path.read_text(encoding="utf-8"))
        code = finish_earlier_merge(train_dest, state_path, previous, current)
        if code is not None:
            return code

    # A fresh start. Leftovers of an interrupted staging are copies or links: safe to throw away.
    for dest in {train_dest, Path(args.test_dest), Path(args.val_dest)}:
        shutil.rmtree(dest / PARTIAL, ignore_errors=True)
    train_dest.mkdir(parents=True, exist_ok=True)
    state = {
        "phase": "staging",
        "fingerprint": current,
        "argv": args.argv,
        "copy_mode": args.copy_mode,
        "train_dest": str(train_dest.resolve()),
    }
    write_json_atomic(state_path, state)
    build(args, state_path, state)
    commit(state_path, state)
    print("\n".join(state["summary"]))
    phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in state.get("timings", {}).items())
    print(f"report: {Path(args.report) / 'merge_report.md'}  ({time.perf_counter() - started:.1f} s: {phases})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
