"""tools/merge_datasets.py on small synthetic sources made with Pillow in tmp_path."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from models.charset import Charset, read_labels
from tools import merge_datasets


def png(seed: int, fmt: str = "PNG", size: tuple[int, int] = (48, 18)) -> bytes:
    """A distinct small image per seed (random pixels: no two seeds look alike)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    image = Image.fromarray(pixels)
    if fmt == "GIF":
        frames = [image.convert("P"), Image.fromarray(255 - pixels).convert("P")]
        frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100)
    else:
        image.save(out, fmt)
    return out.getvalue()


def make_source(root: Path, rows: list[tuple[str, str, bytes | None]], layout: str = "runner", extra: str = "") -> Path:
    """Write a source: rows are (filename, label, image bytes or None for a missing file).

    layout "runner": images/ + labels.txt + meta.tsv; "tutorial": images/ + labels.txt + charset.txt;
    "realdev": labels.tsv with a header row, images beside it. ``extra`` is appended to the label file raw.
    """
    images = root if layout == "realdev" else root / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name, _, data in rows:
        if data is not None:
            (images / name).write_bytes(data)
    if layout == "realdev":
        lines = ["filename\tlabel\ttype\tanswer\trunner_label\tflags"]
        lines += [f"{name}\t{label}\treal_type\t\t{label}\t" for name, label, _ in rows]
        (root / "labels.tsv").write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
        return root
    (root / "labels.txt").write_text("".join(f"{n}\t{lab}\n" for n, lab, _ in rows) + extra, encoding="utf-8")
    if layout == "runner":
        meta = ["filename\tlabel\ttype\twidth\theight\tfont\tanswer\tflags"]
        meta += [f"{n}\t{lab}\tspec\t48\t18\tDejaVu Sans\t\t{'edge_clip' if i == 1 else ''}"
                 for i, (n, lab, _) in enumerate(rows)]  # fmt: skip
        (root / "meta.tsv").write_text("\n".join(meta) + "\n", encoding="utf-8")
    else:
        (root / "charset.txt").write_text("0123456789+-=×÷？?", encoding="utf-8")
    return root


def run(tmp_path: Path, *extra: str, out: str = "out") -> Path:
    dest = tmp_path / out
    argv = ["--train-dest", str(dest / "train"), "--test-dest", str(dest / "test"), "--workers", "2", *extra]
    assert merge_datasets.main(argv) == 0
    return dest


def labels_of(split_root: Path) -> dict[str, str]:
    return {row.filename: row.label for row in read_labels(split_root / "labels.txt").rows}


def image_bytes(split_root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((split_root / "images").iterdir())}


def report_rows(dest: Path) -> list[dict[str, str]]:
    with open(dest / "merge_report.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def dropped(dest: Path, reason: str) -> int:
    return sum(int(r["count"]) for r in report_rows(dest) if r["section"] == "dropped" and r["key"] == reason)


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, Path]:
    """Two train sources and one test source; train "b" holds a copy of a test image (a leak)."""
    a = make_source(tmp_path / "src_a", [(f"a{i}.png", f"A{i}bc", png(i)) for i in range(12)])
    b = make_source(tmp_path / "src_b", [(f"b{i}.png", f"{i}×3=？", png(100 + i)) for i in range(8)])
    b_rows = (b / "labels.txt").read_text(encoding="utf-8")
    (b / "images" / "leak.png").write_bytes(png(200))
    (b / "labels.txt").write_text(b_rows + "leak.png\tT0xy\n", encoding="utf-8")
    t = make_source(tmp_path / "src_t", [(f"t{i}.png", f"T{i}xy", png(200 + i)) for i in range(6)])
    return {"a": a, "b": b, "t": t}


def src_args(sources: dict[str, Path]) -> list[str]:
    return [
        *("--train-src", "easy", str(sources["a"])),
        *("--train-src", "ruoyi", str(sources["b"])),
        *("--test-src", "easy", str(sources["t"])),
    ]


def test_test_image_is_removed_from_train(tmp_path, sources):
    dest = run(tmp_path, *src_args(sources))  # even without --dedupe
    train, test = image_bytes(dest / "train"), image_bytes(dest / "test")
    assert png(200) in test.values() and png(200) not in train.values()
    assert len(train) == 12 + 8 and len(test) == 6
    assert dropped(dest, "duplicate_cross_split") == 1
    assert set(labels_of(dest / "train")) == set(train)


def test_within_split_dedupe_and_conflicts(tmp_path):
    rows = [(f"x{i}.png", f"L{i}", png(i)) for i in range(5)]
    rows += [("copy.png", "L0", png(0))]  # same image, same label: a duplicate
    rows += [("c1.png", "Q1", png(50)), ("c2.png", "Q2", png(50))]  # same image, two labels: a conflict
    src = make_source(tmp_path / "s", rows)
    kept_all = run(tmp_path, "--train-src", "s", str(src), out="plain")
    assert len(labels_of(kept_all / "train")) == 8  # without --dedupe everything stays, but is counted
    assert any(r["section"].startswith("duplicates kept") for r in report_rows(kept_all))

    dest = run(tmp_path, "--train-src", "s", str(src), "--dedupe", out="dedup")
    labels = sorted(labels_of(dest / "train").values())
    assert labels == ["L0", "L1", "L2", "L3", "L4"]
    assert dropped(dest, "duplicate_within") == 1 and dropped(dest, "conflict") == 2
    assert "Q1" in (dest / "merge_report.md").read_text(encoding="utf-8")  # the conflict is listed


def test_labels_are_unified_and_meta_kept(tmp_path, sources):
    dest = run(tmp_path, *src_args(sources), "--no-shuffle")
    labels = labels_of(dest / "train")
    assert "8×3=？" not in "".join(labels.values())
    assert labels["tr_00000013.png"] == "0*3=?"  # first row of source b, after the 12 of source a
    with open(dest / "train" / "meta.tsv", encoding="utf-8") as f:
        meta = list(csv.DictReader(f, delimiter="\t"))
    assert list(meta[0]) == list(merge_datasets.META_COLUMNS)
    assert meta[0] == {
        "filename": "tr_00000001.png",
        "label": "A0bc",
        "source": "easy",
        "type": "spec",
        "width": "48",
        "height": "18",
        "font": "DejaVu Sans",
        "answer": "",
        "flags": "",
    }
    assert meta[1]["flags"] == "edge_clip"  # the runner's flag travels, so evaluate.py --exclude-flag works
    assert {m["source"] for m in meta} == {"easy", "ruoyi"}


def test_format_comes_from_the_bytes(tmp_path):
    gif, jpeg = png(1, "GIF"), png(2, "JPEG")
    src = make_source(tmp_path / "s", [("anim.png", "AB12", gif), ("photo.png", "CD34", jpeg), ("p.png", "EF", png(3))])
    dest = run(tmp_path, "--train-src", "s", str(src), "--no-shuffle")
    images = image_bytes(dest / "train")
    assert images == {"tr_00000001.gif": gif, "tr_00000002.jpg": jpeg, "tr_00000003.png": png(3)}
    assert labels_of(dest / "train")["tr_00000001.gif"] == "AB12"


def test_problems_are_counted_and_reported(tmp_path, capsys):
    rows = [(f"ok{i}.png", f"K{i}", png(i)) for i in range(4)]
    rows += [("broken.png", "BRK", b"\x89PNG\r\n\x1a\n not really a png"), ("gone.png", "GONE", None)]
    src = make_source(tmp_path / "s", rows, extra="lonely_name_without_label\n")
    dest = run(tmp_path, "--train-src", "s", str(src), "--charset", str(_charset(tmp_path, "K0123")))
    assert len(labels_of(dest / "train")) == 4
    for reason in ("bad_label_line", "missing_file", "unreadable_image"):
        assert dropped(dest, reason) == 1, reason
    problems = [r for r in report_rows(dest) if r["section"].startswith("problem:")]
    assert any("broken.png" in r["key"] for r in problems) and any("gone.png" in r["key"] for r in problems)
    assert any("lonely_name_without_label" in r["key"] for r in problems)
    assert "PROBLEMS" in capsys.readouterr().out
    assert "missing_file" in (dest / "merge_report.md").read_text(encoding="utf-8")


def _charset(tmp_path: Path, symbols: str) -> Path:
    path = tmp_path / "given_charset.txt"
    Charset(symbols).save(path)
    return path


def test_out_of_charset_labels_are_reported(tmp_path):
    src = make_source(tmp_path / "s", [("a.png", "AB", png(1)), ("b.png", "AZ", png(2))])
    dest = run(tmp_path, "--train-src", "s", str(src), "--charset", str(_charset(tmp_path, "AB")))
    assert list(labels_of(dest / "train").values()) == ["AB"]
    assert dropped(dest, "out_of_charset") == 1
    assert (dest / "charset.txt").read_text(encoding="utf-8") == "AB"  # the given charset, ids unchanged


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_copy_mode_leaves_sources_intact(tmp_path, sources):
    before = {k: snapshot(v) for k, v in sources.items()}
    run(tmp_path, *src_args(sources), "--dedupe", "--copy-mode", "copy")
    run(tmp_path, *src_args(sources), "--dedupe", "--copy-mode", "link", out="linked")
    assert {k: snapshot(v) for k, v in sources.items()} == before


def split_contents(dest: Path) -> dict:
    return {
        split: (labels_of(dest / split), image_bytes(dest / split), (dest / split / "meta.tsv").read_bytes())
        for split in ("train", "test")
    }


class Interrupt(RuntimeError):
    pass


def fail_after(monkeypatch, name: str, calls: int) -> None:
    """Make ``merge_datasets.<name>`` raise on its ``calls``-th call (simulates a crash or Ctrl-C there)."""
    real = getattr(merge_datasets, name)
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        count["n"] += 1
        if count["n"] >= calls:
            raise Interrupt(f"simulated interruption in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(merge_datasets, name, wrapper)


@pytest.mark.parametrize("where,calls", [("stage_one", 7), ("swap_split", 2)])
def test_interrupted_merge_resumes_to_the_same_result(tmp_path, sources, monkeypatch, where, calls):
    args = [*src_args(sources), "--dedupe", "--seed", "7"]
    reference = split_contents(run(tmp_path, *args, out="reference"))

    # An earlier, larger merge into the same place: its extra files must not survive.
    big = make_source(tmp_path / "big", [(f"g{i}.png", f"G{i}", png(500 + i)) for i in range(40)])
    run(tmp_path, "--train-src", "big", str(big), "--test-src", "big2", str(sources["t"]), out="resumed")

    with monkeypatch.context() as m:
        fail_after(m, where, calls)
        with pytest.raises(Interrupt):
            run(tmp_path, *args, out="resumed")
    resumed = run(tmp_path, *args, out="resumed")
    assert split_contents(resumed) == reference
    assert not any(p.name == merge_datasets.PARTIAL for p in resumed.rglob("*"))
    assert (resumed / "charset.txt").read_bytes() == (tmp_path / "reference" / "charset.txt").read_bytes()


def test_move_mode_removes_sources_only_after_the_merge(tmp_path, sources, monkeypatch):
    args = [*src_args(sources), "--dedupe"]
    reference = split_contents(run(tmp_path, *args, out="reference"))
    before = {k: snapshot(v) for k, v in sources.items()}
    with monkeypatch.context() as m:
        fail_after(m, "swap_split", 2)
        with pytest.raises(Interrupt):
            run(tmp_path, *args, "--copy-mode", "move", out="moved")
    assert {k: snapshot(v) for k, v in sources.items()} == before  # nothing removed yet

    dest = run(tmp_path, *args, "--copy-mode", "move", out="moved")
    assert split_contents(dest) == reference
    left = [p.name for p in (sources["b"] / "images").iterdir()]
    assert left == ["leak.png"]  # the row dropped as a leak stays in its source: nothing is lost
    assert not list((sources["a"] / "images").iterdir())
    # Re-running the finished move does nothing, instead of rebuilding from the emptied sources.
    assert split_contents(run(tmp_path, *args, "--copy-mode", "move", out="moved")) == reference


def test_reads_tutorial_and_realdev_layouts(tmp_path):
    tutorial = make_source(
        tmp_path / "tut", [("te_00000001.png", "8×3=？", png(1)), ("te_2.png", "9÷3=？", png(2))], "tutorial"
    )
    realdev = make_source(
        tmp_path / "real", [("r1.png", "4+2=?", png(3)), ("r2.gif", "AbCd", png(4, "GIF"))], "realdev"
    )
    dest = run(
        tmp_path, "--train-src", "tutorial", str(tutorial), "--test-src", "realdev", str(realdev), "--no-shuffle"
    )
    assert list(labels_of(dest / "train").values()) == ["8*3=?", "9/3=?"]
    assert labels_of(dest / "test") == {"te_00000001.png": "4+2=?", "te_00000002.gif": "AbCd"}
    meta = (dest / "test" / "meta.tsv").read_text(encoding="utf-8").splitlines()
    assert meta[1].split("\t")[2:4] == ["realdev", "real_type"]


def test_report_files_are_written(tmp_path, sources):
    dest = run(tmp_path, *src_args(sources), "--dedupe", "--report", str(tmp_path / "rep"))
    report = tmp_path / "rep"
    assert (report / "merge_report.png").read_bytes().startswith(b"\x89PNG")
    markdown = (report / "merge_report.md").read_text(encoding="utf-8")
    for heading in ("## Sources", "## By type", "## By size", "## By label length", "## Duplicates", "## Problems"):
        assert heading in markdown
    rows = report_rows_at(report)
    kept = {(r["split"], r["key"]): int(r["count"]) for r in rows if r["section"] == "kept by source"}
    assert kept == {("train", "easy"): 12, ("train", "ruoyi"): 8, ("test", "easy"): 6}
    sizes = [r for r in rows if r["section"] == "kept by size"]
    assert {r["key"] for r in sizes} == {"48x18"}
    assert (dest / "train" / "charset.txt").read_bytes() == (dest / "charset.txt").read_bytes()


def report_rows_at(folder: Path) -> list[dict[str, str]]:
    with open(folder / "merge_report.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_charset_is_deterministic(tmp_path, sources):
    one = run(tmp_path, *src_args(sources), "--seed", "1", out="one")
    reordered = [*("--test-src", "easy", str(sources["t"])), *("--train-src", "ruoyi", str(sources["b"]))]
    reordered += ["--train-src", "easy", str(sources["a"])]
    two = run(tmp_path, *reordered, "--seed", "2", out="two")
    charset = (one / "charset.txt").read_text(encoding="utf-8")
    assert charset == (two / "charset.txt").read_text(encoding="utf-8")
    all_labels = [*labels_of(one / "train").values(), *labels_of(one / "test").values()]
    assert charset == Charset.from_labels(all_labels).symbols
    assert charset == "0123456789ATbcxy*=?"  # digits, upper, lower, then symbols in SYMBOL_ORDER


def test_val_split_is_stratified_and_disjoint(tmp_path):
    a = make_source(tmp_path / "a", [(f"a{i}.png", f"A{i}", png(i)) for i in range(40)])
    b = make_source(tmp_path / "b", [(f"b{i}.png", f"B{i}", png(100 + i)) for i in range(20)])
    dest = run(tmp_path, "--train-src", "a", str(a), "--train-src", "b", str(b), "--val-fraction", "0.25")
    train, val = image_bytes(dest / "train"), image_bytes(dest / "val")
    assert len(train) == 45 and len(val) == 15
    assert not set(train.values()) & set(val.values())
    val_labels = list(labels_of(dest / "val").values())
    assert sum(label.startswith("A") for label in val_labels) == 10  # 25% of each source
    assert all(name.startswith("va_") for name in val)


def test_near_duplicates_follow_test(tmp_path):
    base = Image.new("RGB", (96, 32), (235, 235, 235))
    ImageDraw.Draw(base).text((8, 4), "SAME", fill=(20, 20, 20), font=ImageFont.load_default(size=22))
    tweaked = base.copy()
    tweaked.putpixel((0, 0), (0, 0, 0))  # one pixel differs: other bytes, same picture

    def encode(image: Image.Image) -> bytes:
        out = io.BytesIO()
        image.save(out, "PNG")
        return out.getvalue()

    train = make_source(tmp_path / "tr", [("n.png", "SAME", encode(tweaked)), ("o.png", "OTHER", png(9))])
    test = make_source(tmp_path / "te", [("n.png", "SAME", encode(base))])
    args = ["--train-src", "s", str(train), "--test-src", "s", str(test)]
    assert len(labels_of(run(tmp_path, *args, out="exact") / "train")) == 2
    dest = run(tmp_path, *args, "--near-dupes", out="near")
    assert list(labels_of(dest / "train").values()) == ["OTHER"]
    assert dropped(dest, "near_cross_split") == 1


def test_limit_per_source(tmp_path, sources):
    dest = run(tmp_path, *src_args(sources), "--limit-train-per-src", "3", "--limit-test-per-src", "2")
    assert len(labels_of(dest / "train")) == 6 and len(labels_of(dest / "test")) == 2
    limited = [r for r in report_rows(dest) if r["section"] == "rows past limit"]
    assert sum(int(r["count"]) for r in limited) == (12 - 3) + (9 - 3) + (6 - 2)


def test_missing_source_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as error:
        merge_datasets.main(["--train-src", "x", str(tmp_path / "nowhere")])
    assert error.value.code == 2


def test_half_committed_merge_blocks_a_different_one(tmp_path, sources, monkeypatch, capsys):
    args = [*src_args(sources), "--dedupe"]
    with monkeypatch.context() as m:
        fail_after(m, "swap_split", 2)
        with pytest.raises(Interrupt):
            run(tmp_path, *args)
    dest = tmp_path / "out"
    other = ["--train-dest", str(dest / "train"), "--test-dest", str(dest / "test"), *args, "--seed", "5"]
    assert merge_datasets.main(other) == 1  # refuses: the first merge must be finished first
    assert "re-running it" in capsys.readouterr().err
    run(tmp_path, *args)  # finishing it works, and then the other merge may replace it
    assert merge_datasets.main(other) == 0


def test_top_up_keeps_families_and_leaves_test_and_val_alone(tmp_path, sources):
    """A merged train split plus new images into a new train split: rows keep their family, test/val stay."""
    first = run(tmp_path, *src_args(sources), "--dedupe", "--val-fraction", "0.25")
    test_before, val_before = image_bytes(first / "test"), image_bytes(first / "val")
    new = [(f"n{i}.png", f"N{i}q", png(300 + i)) for i in range(5)]
    new += [("again_test.png", "T1xy", png(201)), ("again_val.png", "X", next(iter(val_before.values())))]
    extra = make_source(tmp_path / "src_new", new)
    argv = [
        *("--train-dest", str(first / "train_plus"), "--test-dest", str(first / "test")),
        *("--val-dest", str(first / "val"), "--workers", "2", "--dedupe", "--copy-mode", "link"),
        *("--train-src", "base", str(first / "train"), "--train-src", "easy", str(extra)),
        *("--exclude", str(first / "test"), "--exclude", str(first / "val"), "--report", str(tmp_path / "rep")),
    ]
    assert merge_datasets.main(argv) == 0
    plus = image_bytes(first / "train_plus")
    assert len(plus) == len(image_bytes(first / "train")) + 5  # the two copies of test/val images are gone
    assert not set(plus.values()) & (set(test_before.values()) | set(val_before.values()))
    assert image_bytes(first / "test") == test_before and image_bytes(first / "val") == val_before
    with open(first / "train_plus" / "meta.tsv", encoding="utf-8") as f:
        families = Counter(row["source"] for row in csv.DictReader(f, delimiter="\t"))
    with open(first / "train" / "meta.tsv", encoding="utf-8") as f:
        before = Counter(row["source"] for row in csv.DictReader(f, delimiter="\t"))
    assert families == before + Counter(easy=5) and "base" not in families
    assert dropped(tmp_path / "rep", "excluded") == 2


def test_exclude_must_exist(tmp_path, sources):
    with pytest.raises(SystemExit) as error:
        merge_datasets.main(["--train-src", "a", str(sources["a"]), "--exclude", str(tmp_path / "nowhere")])
    assert error.value.code == 2
